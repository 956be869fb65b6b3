"""What a run started by hand runs: its sensor entry's parameters and date stencil, with the caller's overrides.

Pure: reads the parsed configuration and the command line's text, raises :class:`UsageError`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoflow.date_stencil import DateStencil
from autoflow.errors import UsageError
from autoflow.spec.models import AutoFlowConfig, SensorEntry, WorkflowSpec


@dataclass(frozen=True)
class ManualRun:
    """One workflow run asked for by hand, resolved to the values it runs with."""

    workflow: str
    parameters: Mapping[str, Any]
    reference_date: dt.date
    date_ranges: tuple[tuple[dt.date, dt.date], ...]


def read_value(text: str, what: str) -> Any:
    """``text`` read as a YAML value, as in workflows.yml (``3`` is a number, ``2016-01-01`` a date)."""
    from autoflow.spec.yamlfile import YAMLFileError, parse, to_plain

    try:
        node = parse(text.encode(), what)
        return None if node is None else to_plain(node.value)
    except (YAMLFileError, TypeError, ValueError) as exc:
        raise UsageError(f"{what}: cannot read {text!r}: {exc}") from None


def read_assignments(pairs: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` texts as a mapping of name to value (read by :func:`read_value`)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--param {pair!r} must look like NAME=VALUE")
        values[name] = read_value(raw, f"--param {name}")
    return values


def _describe(entry: SensorEntry) -> str:
    parameters = ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, default=str)}" for k, v in entry.parameters.items())
    return parameters or f"date stencil {json.dumps(entry.date_stencil.as_json(), default=str)}"


def find_workflow(config: AutoFlowConfig, name: str) -> WorkflowSpec:
    """The workflow called ``name``; UsageError naming the ones workflows.yml defines otherwise."""
    workflow = config.workflows.get(name)
    if workflow is None:
        raise UsageError(f"unknown workflow '{name}'; workflows.yml defines: {', '.join(config.workflows)}")
    return workflow


def choose_entry(config: AutoFlowConfig, workflow: str, number: int | None) -> SensorEntry | None:
    """The workflow's sensor entry: its only one, or the ``number``-th (1-based); None when it has none."""
    entries = [e for e in config.sensor.workflows if e.workflow_name == workflow]
    if number is not None:
        if not entries:
            raise UsageError(f"--entry {number}: workflow {workflow} has no sensor entry; leave out --entry and pass its parameters with --param")
        if not 1 <= number <= len(entries):
            count = f"{len(entries)} sensor entr{'y' if len(entries) == 1 else 'ies'}"
            raise UsageError(f"--entry {number}: workflow {workflow} has {count}; pick a number from 1 to {len(entries)}")
        return entries[number - 1]
    if len(entries) > 1:
        choices = [f"--entry {i} ({_describe(e)})" for i, e in enumerate(entries, start=1)]
        raise UsageError(f"workflow {workflow} has {len(entries)} sensor entries; pick one with {', '.join(choices[:-1])} or {choices[-1]}")
    return entries[0] if entries else None


def resolve_parameters(workflow: WorkflowSpec, entry: SensorEntry | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's parameters with ``overrides``; UsageError for an unknown or missing one."""
    needed = workflow.workflow_parameters
    for name in overrides:
        if name not in needed:
            known = ", ".join(sorted(needed)) or "none"
            raise UsageError(f"parameter '{name}' is not used by this workflow (its parameters: {known})")
    values = {**(entry.parameters if entry else {}), **overrides}
    missing = sorted(needed - values.keys())
    if missing:
        raise UsageError(f"missing parameter(s) {', '.join(missing)}: pass each as --param NAME=VALUE")
    return values


def resolve_manual_run(
    config: AutoFlowConfig,
    workflow_name: str,
    date_text: str,
    *,
    param_pairs: Sequence[str] = (),
    stencil_text: str | None = None,
    entry_number: int | None = None,
) -> ManualRun:
    """The run ``autoflow trigger`` asks for: the sensor entry's parameters and stencil unless overridden."""
    workflow = find_workflow(config, workflow_name)
    try:
        reference_date = dt.date.fromisoformat(date_text)
    except ValueError:
        raise UsageError(f"--date {date_text!r} is not a date like 2016-01-07") from None
    overrides = read_assignments(param_pairs)
    entry = choose_entry(config, workflow.name, entry_number)
    parameters = resolve_parameters(workflow, entry, overrides)
    if stencil_text is not None:
        try:
            stencil = DateStencil(read_value(stencil_text, "--stencil"))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--stencil {stencil_text!r}: {exc}") from None
    else:
        stencil = entry.date_stencil if entry else DateStencil()
    try:
        date_ranges = tuple(stencil.as_date_pairs(reference_date))
    except ValueError as exc:
        raise UsageError(f"the date stencil does not apply at {reference_date}: {exc}") from None
    return ManualRun(workflow.name, parameters, reference_date, date_ranges)
