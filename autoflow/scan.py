"""What is due now: ask the date sources and the run history, then plan (no Prefect needed)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from autoflow.errors import AutoFlowError
from autoflow.planning import Plan, plan
from autoflow.settings import Settings
from autoflow.sources import DateSource, SourceContext, make_source, source_registry, union_of_dates
from autoflow.spec.models import AutoFlowConfig, SensorEntry, SourceSpec
from autoflow.store import RunStore

log = logging.getLogger(__name__)


def _context(config: AutoFlowConfig, settings: Settings, store: RunStore | None) -> SourceContext:
    entry_parameters: dict[str, list[Mapping[str, object]]] = {}
    for entry in config.sensor.workflows:
        entry_parameters.setdefault(entry.workflow_name, []).append(dict(entry.parameters))
    return SourceContext(settings=settings, inputs_dir=config.inputs_dir, store=store, entry_parameters=entry_parameters)


def build_sources(config: AutoFlowConfig, settings: Settings, store: RunStore | None) -> dict[SourceSpec, DateSource]:
    """One date source per distinct ``source:`` block of the sensor and its entries."""
    context = _context(config, settings, store)
    return {spec: make_source(spec, context) for spec in config.sensor.sources()}


def entry_source(config: AutoFlowConfig, settings: Settings, store: RunStore | None, entry: SensorEntry) -> DateSource:
    """The date source of ``entry`` (its own, else the sensor's), e.g. for a backfill."""
    return make_source(config.sensor.source_for(entry), _context(config, settings, store))


def check_source_settings(config: AutoFlowConfig, settings: Settings) -> None:
    """Raise SettingsError naming what a source needs and lacks (FLOWAPI_URL, a password secret)."""
    for spec in config.sensor.sources():
        source_registry.get(spec.type).check_settings(spec, settings)


@dataclass(frozen=True)
class Scan:
    """A plan, and the sources that could not be asked (their entries were left out of it)."""

    plan: Plan
    errors: tuple[str, ...] = field(default=())
    #: each sensor entry's available dates (by index); None for an entry whose source failed
    entry_dates: tuple[frozenset[dt.date] | None, ...] = ()

    def newest_dates(self) -> dict[int, dt.date | None]:
        """Each entry's newest available date (entries whose source failed are left out)."""
        return {i: max(dates, default=None) for i, dates in enumerate(self.entry_dates) if dates is not None}


def current_plan(
    config: AutoFlowConfig, settings: Settings, store: RunStore | None, sources: Mapping[SourceSpec, DateSource], *, detail: bool = False
) -> Scan:
    """Due runs and skip counts as of now (``detail``: each skip's reason too); no ``store``: no history yet.

    Reads only, in a fixed number of statements whatever the number of dates. A source that
    fails leaves its entries out (the others are planned); when every source fails, its
    DateSourceError is raised. RunStoreError when the history can't be read.
    """
    groups = config.sensor.sources()
    per_entry: list[frozenset[dt.date] | None] = [None] * len(config.sensor.workflows)
    errors: list[str] = []
    failures: list[tuple[DateSource, list[int]]] = []
    failed: AutoFlowError | None = None
    for spec, indices in groups.items():
        source = sources[spec]
        try:
            available = source.available_dates()
        except AutoFlowError as exc:
            failed = exc
            errors.append(str(exc))
            failures.append((source, indices))
            continue  # its entries stay None: nothing of them is planned this tick
        dates = union_of_dates(available)
        counts = ", ".join(f"{kind}: {len(days)}" for kind, days in sorted(available.items())) or "none"
        span = f" from {min(dates)} to {max(dates)}" if dates else ""
        log.info("dates seen in %s: %d distinct date(s)%s (%s)", source.describe(), len(dates), span, counts)
        for i in indices:
            per_entry[i] = dates
    if failed is not None and len(errors) == len(groups):
        raise failed  # the tick fails, and says so once
    for source, indices in failures:  # the others go ahead: say which entries wait
        log.error("date source %s failed: %s; its %d sensor entr%s wait%s for the next tick", source.describe(), errors[failures.index((source, indices))],
                  len(indices), "y" if len(indices) == 1 else "ies", "s" if len(indices) == 1 else "")  # fmt: skip
    entries = config.sensor.workflows
    workflows = {entry.workflow_name for entry in entries}
    history = store.latest_states(workflows) if store is not None else {}
    result = plan(
        entries,
        (),
        history,
        now=dt.datetime.now(dt.timezone.utc),
        lease_seconds=settings.run_lease_seconds,
        detail=detail,
        max_runs_per_tick=config.sensor.max_runs_per_tick,
        per_entry=[frozenset() if dates is None else dates for dates in per_entry],
    )
    return Scan(result, tuple(errors), tuple(per_entry))
