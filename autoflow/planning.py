"""Which workflow runs are due, and why every other candidate is not. Pure: no I/O.

A *candidate* is (sensor entry, reference date) for every available date. It is due when the
date is on or after the entry's ``earliest_date``, every date of its stencil is available, and
its latest attempt is absent, failed (its retry wait over, attempts left), or abandoned (running
with a heartbeat older than the lease). A cancelled run, or one that has given up, waits for
``autoflow rerun``. Due runs come oldest reference date first. A candidate whose stencil reaches back before
the first available date is not planned rather than waiting: that data is not expected to come
(should it come after all, the next plan sees it and the run becomes due).

Every skipped candidate is counted by kind (:attr:`Plan.skip_counts`); with ``detail=True`` each
also gets a :class:`SkippedRun` with its full reason. A tick over ten years of dates and dozens
of sensor entries has hundreds of thousands of candidates, so the sensor asks for the detail only
when it logs it (DEBUG); ``autoflow plan`` always does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from autoflow.parameters import params_hash
from autoflow.spec.models import SensorEntry

DatePair = tuple[dt.date, dt.date]
#: (workflow name, params_hash, reference date): identifies a run across its attempts
RunId = tuple[str, str, dt.date]


class PriorAttempt(Protocol):
    """What planning needs to know about the latest attempt of a run."""

    @property
    def state(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def heartbeat_at(self) -> dt.datetime | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def id(self) -> int: ...
    @property
    def finished_at(self) -> dt.datetime | None: ...
    @property
    def budget_from(self) -> int:
        """The attempt the retry budget counts from (the latest an operator started; else 1)."""
    @property
    def failures(self) -> int:
        """Failed attempts since ``budget_from`` that count against ``max_attempts`` (not lost ones)."""


@dataclass(frozen=True)
class DueRun:
    workflow: str
    parameters: Mapping[str, Any]
    params_hash: str
    reference_date: dt.date
    date_ranges: tuple[DatePair, ...]
    #: the latest attempt number seen (0 if never run); the claim takes this + 1
    previous_attempt: int
    reason: str

    @property
    def run_id(self) -> RunId:
        return (self.workflow, self.params_hash, self.reference_date)


@dataclass(frozen=True)
class SkippedRun:
    workflow: str
    parameters: Mapping[str, Any]
    reference_date: dt.date
    reason: str
    #: one of the kinds below
    kind: str = ""


#: kinds of skip, as counted in Plan.skip_counts
ALREADY_SUCCEEDED = "already succeeded"
RUNNING_NOW = "running now"
WAITING_FOR_DATA = "waiting for data"
#: the stencil reaches back before the first available date: data that is not expected to come
BEFORE_FIRST_DATA = "needing data from before the first available date"
BEFORE_EARLIEST_DATE = "before earliest_date"
STENCIL_DOES_NOT_APPLY = "stencil does not apply"
WAITING_FOR_RETRY = "waiting for retry"
GAVE_UP = "gave up"
CANCELLED = "cancelled"
CATCH_UP = "catch_up: latest"
OVER_TICK_LIMIT = "over max_runs_per_tick"
#: the longest wait between two attempts of a run, however many failed
MAX_RETRY_DELAY = 86400.0


def attempts_used(prior: PriorAttempt) -> int:
    """Failed attempts of the run's current retry budget (attempts whose process was stopped or
    died, interrupted or abandoned, are not the run's fault and do not count)."""
    return prior.failures


def retry_delay(retry_after: float, used: int) -> float:
    """Seconds to wait after the ``used``-th failed attempt: ``retry_after`` doubling per attempt, capped at a day."""
    if retry_after <= 0:
        return 0.0
    return min(retry_after * 2.0 ** max(used - 1, 0), MAX_RETRY_DELAY)


def gave_up(prior: PriorAttempt, max_attempts: int) -> bool:
    """The run failed and has used every attempt its retry policy allows (until ``autoflow rerun``)."""
    return prior.state == "failed" and not _lost(prior.error) and attempts_used(prior) >= max_attempts


@dataclass(frozen=True)
class Plan:
    due: tuple[DueRun, ...]
    #: every skipped candidate with its reason; empty unless planned with ``detail=True``
    skipped: tuple[SkippedRun, ...]
    available_dates: frozenset[dt.date]
    #: (workflow name, kind of skip) -> number of candidates skipped so
    skip_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)

    @property
    def skipped_total(self) -> int:
        return sum(self.skip_counts.values())

    def skips_by_kind(self) -> Counter[str]:
        kinds: Counter[str] = Counter()
        for (_, kind), n in self.skip_counts.items():
            kinds[kind] += n
        return kinds


def _missing(dates: Iterable[dt.date], available: frozenset[dt.date]) -> list[dt.date]:
    return sorted(d for d in dates if d not in available)


def _describe_dates(dates: Sequence[dt.date]) -> str:
    shown = ", ".join(d.isoformat() for d in dates[:3])
    more = f" and {len(dates) - 3} more" if len(dates) > 3 else ""
    return f"needs {shown}{more}"


def _describe_missing(missing: Sequence[dt.date]) -> str:
    shown = ", ".join(d.isoformat() for d in missing[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    return f"waiting for data: {shown}{more} not available"


def plan(
    entries: Sequence[SensorEntry],
    available_dates: Iterable[dt.date],
    history: Mapping[RunId, PriorAttempt],
    *,
    now: dt.datetime,
    lease_seconds: float,
    detail: bool = True,
    max_runs_per_tick: int | None = None,
    per_entry: Sequence[Iterable[dt.date] | None] | None = None,
) -> Plan:
    """Due runs (oldest reference date first), skip counts, and (``detail``) every skip's reason.

    ``available_dates`` are what every entry's source says, unless ``per_entry`` gives an
    entry (by index) its own: the dates of its own source (None there: ``available_dates``).

    A failed run is due again once its entry's ``retry_after`` (doubling per attempt) has passed
    since its end (at once when its process was stopped or died: interrupted, abandoned), until
    ``max_attempts`` attempts have failed (lost ones do not count; then it has given up); a cancelled run waits
    for ``autoflow rerun``. An entry with ``catch_up: latest`` runs only its newest due date; at
    most ``max_runs_per_tick`` runs are due in all (the oldest), the rest wait for a later tick.
    """
    shared = frozenset(available_dates)
    sets = [shared if per_entry is None or per_entry[i] is None else frozenset(per_entry[i] or ()) for i in range(len(entries))]
    stale_before = now - dt.timedelta(seconds=lease_seconds)
    due: list[tuple[dt.date, int, DueRun]] = []
    skipped: list[SkippedRun] = []
    counts: Counter[tuple[str, str]] = Counter()
    orders: dict[int, list[dt.date]] = {}  # entries sharing a source share its sorted dates
    for index, entry in enumerate(entries):
        available = sets[index]
        ordered = orders.get(id(available)) or orders.setdefault(id(available), sorted(available))
        name = entry.workflow_name
        digest = params_hash(entry.parameters)
        stencil = entry.date_stencil
        earliest = entry.earliest_date
        entry_counts: Counter[str] = Counter()
        entry_due: list[tuple[dt.date, int, DueRun]] = []

        def skip(day: dt.date, kind: str, reason: str | None = None) -> None:
            entry_counts[kind] += 1
            if detail:
                skipped.append(SkippedRun(name, entry.parameters, day, reason or kind, kind))  # noqa: B023

        for day in ordered:
            if earliest is not None and day < earliest:
                skip(day, BEFORE_EARLIEST_DATE, f"before earliest_date {earliest}")
                continue
            # the history first: most candidates of a long-running service have succeeded already
            prior = history.get((name, digest, day))
            if prior is not None and prior.state == "success":
                if detail:
                    skip(day, ALREADY_SUCCEEDED, f"already succeeded (attempt {prior.attempt})")
                else:
                    entry_counts[ALREADY_SUCCEEDED] += 1
                continue
            if prior is not None and prior.state == "running" and (prior.heartbeat_at is None or prior.heartbeat_at >= stale_before):
                skip(day, RUNNING_NOW, f"running now (attempt {prior.attempt})")
                continue
            if prior is not None and prior.state == "cancelled":
                skip(day, CANCELLED, f"cancelled (attempt {prior.attempt}, run id {prior.id}): {_first_line(prior.error)}; `autoflow rerun {prior.id}` runs it again")
                continue
            if prior is not None and prior.state == "failed" and not _lost(prior.error):
                used = attempts_used(prior)
                if used >= entry.max_attempts:
                    skip(day, GAVE_UP, f"gave up after {used} failed attempt(s) (last: {_first_line(prior.error)}); `autoflow rerun {prior.id}` runs it again")
                    continue
                if prior.finished_at is not None:
                    retry_at = prior.finished_at + dt.timedelta(seconds=retry_delay(entry.retry_after, used))
                    if retry_at > now:
                        skip(day, WAITING_FOR_RETRY, f"waiting for retry until {retry_at:%Y-%m-%d %H:%M:%S} UTC (failure {used} of {entry.max_attempts} allowed: {_first_line(prior.error)})")
                        continue
            try:
                pairs = stencil.as_date_pairs(day)
            except ValueError as exc:
                skip(day, STENCIL_DOES_NOT_APPLY, f"date stencil does not apply: {exc}")
                continue
            if pairs and min(start for start, _ in pairs) < ordered[0]:
                if detail:
                    before = [d for d in _missing(stencil.as_set_of_dates(day), available) if d < ordered[0]]
                    skip(day, BEFORE_FIRST_DATA, f"{_describe_dates(before)} before the first available date ({ordered[0]}): not planned")
                else:
                    entry_counts[BEFORE_FIRST_DATA] += 1
                continue
            if not stencil.dates_are_available(day, available):
                if detail:
                    skip(day, WAITING_FOR_DATA, _describe_missing(_missing(stencil.as_set_of_dates(day), available)))
                else:
                    entry_counts[WAITING_FOR_DATA] += 1
                continue
            if prior is None:
                reason, previous = "new", 0
            elif prior.state == "running":
                since = f" since {prior.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if prior.heartbeat_at else ""
                reason, previous = f"abandoned: attempt {prior.attempt} has had no heartbeat{since}", prior.attempt
            else:
                reason, previous = f"retry: attempt {prior.attempt} failed ({_first_line(prior.error)})", prior.attempt
            run = DueRun(
                workflow=name,
                parameters=entry.parameters,
                params_hash=digest,
                reference_date=day,
                date_ranges=tuple(pairs),
                previous_attempt=previous,
                reason=reason,
            )
            entry_due.append((day, index, run))
        if entry.catch_up == "latest" and len(entry_due) > 1:
            newest = entry_due[-1][0]
            for day, _, _ in entry_due[:-1]:
                skip(day, CATCH_UP, f"catch_up: latest (only the newest due date, {newest}, runs)")
            entry_due = entry_due[-1:]
        due.extend(entry_due)
        for kind, n in entry_counts.items():
            counts[(name, kind)] += n
    due.sort(key=lambda item: (item[0], item[1]))
    if max_runs_per_tick is not None and len(due) > max_runs_per_tick:
        for _, _, run in due[max_runs_per_tick:]:
            counts[(run.workflow, OVER_TICK_LIMIT)] += 1
            if detail:
                skipped.append(SkippedRun(run.workflow, run.parameters, run.reference_date, f"max_runs_per_tick ({max_runs_per_tick}) reached: due, runs on a later tick", OVER_TICK_LIMIT))
        due = due[:max_runs_per_tick]
    return Plan(due=tuple(run for _, _, run in due), skipped=tuple(skipped), available_dates=frozenset().union(shared, *sets), skip_counts=dict(counts))


#: how the errors of attempts that did not fail on their own merits begin: their process was
#: stopped or died (``lease``, ``RunStore.expire_abandoned``), or no process ever started them
#: (``RunStore.fail_unstarted``: a work pool without a worker, a flow run Prefect lost); they run
#: again without a wait and do not count towards ``max_attempts``
LOST_PREFIXES = ("interrupted", "abandoned", "not started")


def _lost(error: str | None) -> bool:
    return error is not None and error.startswith(LOST_PREFIXES)


def _first_line(error: str | None) -> str:
    return error.splitlines()[0] if error else "no error recorded"


#: what ``autoflow backfill --reprocess`` runs again
REPROCESS = ("missing", "failed", "all")
NOT_SELECTED = "not selected by --reprocess"


@dataclass(frozen=True)
class _Reopened:
    """A prior attempt presented to :func:`plan` as failed and retryable now (backfill asked for it)."""

    attempt: int
    id: int
    error: str | None
    state: str = "failed"
    heartbeat_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    failures: int = 0

    @property
    def budget_from(self) -> int:
        return self.attempt


def plan_backfill(
    entry: SensorEntry,
    available_dates: Iterable[dt.date],
    history: Mapping[RunId, PriorAttempt],
    *,
    start: dt.date,
    end: dt.date,
    reprocess: str,
    now: dt.datetime,
    lease_seconds: float,
    newest_first: bool = False,
) -> Plan:
    """The runs ``autoflow backfill`` starts for reference dates ``start``..``end``: the sensor's
    planning and stencils for one entry, with ``reprocess`` deciding which runs run again —
    ``missing``: those that never succeeded (failed, cancelled, given up or never run);
    ``failed``: those whose latest attempt failed or was cancelled; ``all``: every date, succeeded
    ones too. No retry wait, attempt budget, ``earliest_date`` or catch-up applies: the operator
    asked. A date whose stencil data is not available is skipped with the reason; a run running
    now is skipped.
    """
    if reprocess not in REPROCESS:
        raise ValueError(f"reprocess must be one of {REPROCESS}, not {reprocess!r}")
    available = frozenset(available_dates)
    digest = params_hash(entry.parameters)
    reopen = {"missing": ("failed", "cancelled"), "failed": ("failed", "cancelled"), "all": ("failed", "cancelled", "success")}[reprocess]
    selected: dict[RunId, PriorAttempt] = {}
    not_selected: list[SkippedRun] = []
    day = start
    while day <= end:
        prior = history.get((entry.workflow_name, digest, day))
        if prior is not None and prior.state in reopen:
            selected[(entry.workflow_name, digest, day)] = _Reopened(prior.attempt, prior.id, prior.error)
        elif prior is not None:
            selected[(entry.workflow_name, digest, day)] = prior
        elif reprocess == "failed":
            not_selected.append(SkippedRun(entry.workflow_name, entry.parameters, day, "never ran (--reprocess failed only runs failed or cancelled runs again)", NOT_SELECTED))
        day += dt.timedelta(days=1)
    opened = dataclasses.replace(entry, earliest_date=None, catch_up="all", max_attempts=2**31, retry_after=0.0)
    full = plan([opened], available, selected, now=now, lease_seconds=lease_seconds, detail=True)
    excluded = {s.reference_date for s in not_selected}
    was = {key[2]: prior for key, prior in history.items() if key in selected and isinstance(selected[key], _Reopened)}
    due = [
        r if r.reference_date not in was else dataclasses.replace(r, reason=_again(was[r.reference_date]))
        for r in full.due
        if start <= r.reference_date <= end and r.reference_date not in excluded
    ]
    skipped = [s for s in full.skipped if start <= s.reference_date <= end and s.reference_date not in excluded]
    seen = {r.reference_date for r in due} | {s.reference_date for s in skipped} | excluded
    day = start
    while day <= end:  # dates with no data at all are not candidates of the sensor: say so here
        if day not in seen:
            skipped.append(SkippedRun(entry.workflow_name, entry.parameters, day, f"waiting for data: {day} not available", WAITING_FOR_DATA))
        day += dt.timedelta(days=1)
    skipped.extend(not_selected)
    skipped.sort(key=lambda s: s.reference_date, reverse=newest_first)
    due.sort(key=lambda r: r.reference_date, reverse=newest_first)
    counts: Counter[tuple[str, str]] = Counter((s.workflow, s.kind) for s in skipped)
    return Plan(due=tuple(due), skipped=tuple(skipped), available_dates=available, skip_counts=dict(counts))


def _again(prior: PriorAttempt) -> str:
    if prior.state == "success":
        return f"again (--reprocess all): attempt {prior.attempt} succeeded"
    return f"again: attempt {prior.attempt} {prior.state} ({_first_line(prior.error)})"
