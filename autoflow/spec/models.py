"""Frozen, typed models of a validated workflows.yml. Built only by :mod:`autoflow.spec.loader`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from autoflow.date_stencil import DateStencil
from autoflow.errors import Position
from autoflow.parameters import params_hash
from autoflow.sources.base import SourceSpec as SourceSpec  # re-exported: entries and the sensor name their source

#: parameters AutoFlow supplies to notebooks by itself
AUTOMATIC_PARAMETERS = ("reference_date", "date_ranges", "flowapi_url")
#: report formats, in the order a report task makes them
OUTPUT_FORMATS = ("pdf", "html")
CATCH_UP = ("all", "latest")
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_RETRY_AFTER = 600.0
#: what a notification target can be told about
NOTIFICATION_EVENTS = ("failure", "gave_up", "recovery", "success", "late_data")
DEFAULT_NOTIFICATION_EVENTS = frozenset({"failure", "gave_up", "recovery", "late_data"})


def frozen_map(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class OutputSpec:
    """The reports made of one executed notebook."""

    #: one or more of :data:`OUTPUT_FORMATS`, each once
    formats: tuple[str, ...] = ("pdf",)
    #: the PDF's asciidoc template: absolute path inside the inputs directory, or None for ours
    template: Path | None = None


@dataclass(frozen=True)
class NotebookSpec:
    """One notebook task of a workflow."""

    label: str
    filename: str
    #: absolute, resolved path inside the inputs directory
    path: Path
    #: notebook parameter name -> a workflow parameter, another notebook's label, or an automatic name
    parameters: Mapping[str, str] = field(default_factory=frozen_map)
    output: OutputSpec | None = None
    timeout: float | None = None
    retries: int = 0
    position: Position | None = field(default=None, compare=False)
    parameter_positions: Mapping[str, Position] = field(default_factory=frozen_map, compare=False, repr=False)
    #: names defined by the notebook's ``parameters`` cell (papermill's reading of it); None
    #: when it has no such cell or papermill cannot inspect its language
    declared_parameters: tuple[str, ...] | None = field(default=None, compare=False)

    @property
    def defaulted_parameters(self) -> tuple[str, ...]:
        """Parameters the notebook defines but workflows.yml does not pass: their defaults are used."""
        return tuple(n for n in self.declared_parameters or () if n not in self.parameters)


@dataclass(frozen=True)
class WorkflowSpec:
    name: str
    #: label -> notebook, in file order
    notebooks: Mapping[str, NotebookSpec]
    position: Position | None = field(default=None, compare=False)

    def dependencies(self, label: str) -> tuple[str, ...]:
        """Labels of the notebooks ``label`` reads (its parameters that name another notebook)."""
        return tuple(
            dict.fromkeys(v for v in self.notebooks[label].parameters.values() if v in self.notebooks)
        )

    def execution_order(self) -> tuple[str, ...]:
        """Labels in a dependency-respecting order (file order among independent notebooks)."""
        done: dict[str, None] = {}

        def visit(label: str) -> None:
            if label in done:
                return
            for dep in self.dependencies(label):
                visit(dep)
            done[label] = None

        for label in self.notebooks:
            visit(label)
        return tuple(done)

    @property
    def workflow_parameters(self) -> frozenset[str]:
        """Names the notebooks need from the sensor entry / trigger (not labels, not automatic)."""
        return frozenset(
            v
            for nb in self.notebooks.values()
            for v in nb.parameters.values()
            if v not in self.notebooks and v not in AUTOMATIC_PARAMETERS
        )


@dataclass(frozen=True)
class SensorEntry:
    workflow_name: str
    parameters: Mapping[str, Any] = field(default_factory=frozen_map)
    earliest_date: dt.date | None = None
    date_stencil: DateStencil = field(default_factory=DateStencil)
    position: Position | None = field(default=None, compare=False)
    #: attempts a run gets before it gives up (a rerun starts a new budget)
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    #: seconds to wait after a failed attempt (doubling per attempt, capped at a day); 0: next tick
    retry_after: float = DEFAULT_RETRY_AFTER
    #: "all": every due date; "latest": only the newest due date, the others are skipped
    catch_up: str = "all"
    #: seconds without a new reference date before a ``late_data`` notification; None: never
    late_data_after: float | None = None
    #: this entry's own date source; None: the sensor's
    source: SourceSpec | None = None


@dataclass(frozen=True)
class SensorSpec:
    #: cron string, or None to tick once and exit
    schedule: str | None
    workflows: tuple[SensorEntry, ...]
    source: SourceSpec = field(default_factory=SourceSpec)
    position: Position | None = field(default=None, compare=False)
    #: at most this many runs start per tick (None: no bound)
    max_runs_per_tick: int | None = None

    @property
    def cdr_types(self) -> tuple[str, ...] | None:
        """The sensor's FlowAPI CDR types (None: every type FlowAPI knows, or not a FlowAPI source)."""
        kinds = self.source.get("cdr_types") if self.source.type == "flowapi" else None
        return tuple(kinds) if kinds else None

    def source_for(self, entry: SensorEntry) -> SourceSpec:
        """The date source that says which dates ``entry`` can run for."""
        return entry.source or self.source

    def sources(self) -> dict[SourceSpec, list[int]]:
        """Each distinct date source -> the indices of the entries it serves."""
        found: dict[SourceSpec, list[int]] = {}
        for index, entry in enumerate(self.workflows):
            found.setdefault(self.source_for(entry), []).append(index)
        return found

    def entry_for(self, workflow: str, digest: str) -> SensorEntry | None:
        """The entry that plans runs of ``workflow`` with parameters hashing to ``digest``, if any."""
        return next((e for e in self.workflows if e.workflow_name == workflow and params_hash(e.parameters) == digest), None)


@dataclass(frozen=True)
class NotificationSpec:
    """One notification target: an Apprise URL and the events it is sent."""

    #: the URL as written, ``${NAME}`` references to secrets not filled in (repr hides it all the same)
    url_template: str = field(repr=False)
    events: frozenset[str] = DEFAULT_NOTIFICATION_EVENTS
    position: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ReportSpec:
    """What every report shows besides the notebook: the top-level ``report:`` block."""

    #: a line naming who publishes the reports, in each report's header; None: no line
    organisation: str | None = None
    #: "generated at <UTC time>" in each report's header
    generated_at: bool = True
    position: Position | None = field(default=None, compare=False)


@dataclass(frozen=True)
class AutoFlowConfig:
    """A whole, validated workflows.yml."""

    inputs_dir: Path
    workflows: Mapping[str, WorkflowSpec]
    sensor: SensorSpec
    notifications: tuple[NotificationSpec, ...] = ()
    #: how every report looks (the top-level ``report:`` block)
    report: ReportSpec = ReportSpec()

    @property
    def secret_names(self) -> frozenset[str]:
        """Secrets workflows.yml refers to by name (a sql source's ``password_secret``,
        ``${NAME}`` in notification URLs): hidden from notebooks and redacted like AutoFlow's own."""
        from autoflow.spec.notification_urls import references

        names = {str(spec.get("password_secret")) for spec in self.sensor.sources() if spec.get("password_secret")}
        names.update(name for target in self.notifications for name in references(target.url_template))
        return frozenset(names)

    @property
    def named_files(self) -> frozenset[Path]:
        """The files workflows.yml names: every notebook and report template (resolved paths)."""
        notebooks = [nb for wf in self.workflows.values() for nb in wf.notebooks.values()]
        templates = [nb.output.template for nb in notebooks if nb.output is not None and nb.output.template is not None]
        return frozenset([*(nb.path for nb in notebooks), *templates])
