"""What is due now: ask the date source and the run history, then plan (no Prefect needed)."""

from __future__ import annotations

import datetime as dt
import logging

from autoflow.planning import Plan, plan
from autoflow.settings import Settings
from autoflow.sources import DateSource, union_of_dates
from autoflow.spec.models import AutoFlowConfig
from autoflow.store import RunStore

log = logging.getLogger(__name__)


def current_plan(config: AutoFlowConfig, settings: Settings, store: RunStore | None, source: DateSource, *, detail: bool = False) -> Plan:
    """Due runs and skip counts as of now (``detail``: each skip's reason too); no ``store``: no history yet.

    Reads only, in a fixed number of statements whatever the number of dates; raises
    DateSourceError / RunStoreError.
    """
    available = source.available_dates()
    dates = union_of_dates(available)
    counts = ", ".join(f"{kind}: {len(days)}" for kind, days in sorted(available.items())) or "none"
    span = f" from {min(dates)} to {max(dates)}" if dates else ""
    log.info("dates seen: %d distinct date(s)%s (%s)", len(dates), span, counts)
    workflows = {entry.workflow_name for entry in config.sensor.workflows}
    history = store.latest_states(workflows) if store is not None else {}
    return plan(
        config.sensor.workflows,
        dates,
        history,
        now=dt.datetime.now(dt.timezone.utc),
        lease_seconds=settings.run_lease_seconds,
        detail=detail,
        max_runs_per_tick=config.sensor.max_runs_per_tick,
    )
