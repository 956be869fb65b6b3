"""Which workflow runs are due, and why every other candidate is not. Pure: no I/O.

A *candidate* is (sensor entry, reference date) for every available date. It is due when the
date is on or after the entry's ``earliest_date``, every date of its stencil is available, and
its latest attempt is absent, failed, or abandoned (running with a heartbeat older than the
lease). Due runs come oldest reference date first. A candidate whose stencil reaches back before
the first available date is not planned rather than waiting: that data is not expected to come
(should it come after all, the next plan sees it and the run becomes due).

Every skipped candidate is counted by kind (:attr:`Plan.skip_counts`); with ``detail=True`` each
also gets a :class:`SkippedRun` with its full reason. A tick over ten years of dates and dozens
of sensor entries has hundreds of thousands of candidates, so the sensor asks for the detail only
when it logs it (DEBUG); ``autoflow plan`` always does.
"""

from __future__ import annotations

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
) -> Plan:
    """Due runs (oldest reference date first), skip counts, and (``detail``) every skip's reason."""
    available = frozenset(available_dates)
    ordered = sorted(available)
    stale_before = now - dt.timedelta(seconds=lease_seconds)
    due: list[tuple[dt.date, int, DueRun]] = []
    skipped: list[SkippedRun] = []
    counts: Counter[tuple[str, str]] = Counter()
    for index, entry in enumerate(entries):
        name = entry.workflow_name
        digest = params_hash(entry.parameters)
        stencil = entry.date_stencil
        earliest = entry.earliest_date
        entry_counts: Counter[str] = Counter()

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
                error = prior.error.splitlines()[0] if prior.error else "no error recorded"
                reason, previous = f"retry: attempt {prior.attempt} failed ({error})", prior.attempt
            run = DueRun(
                workflow=name,
                parameters=entry.parameters,
                params_hash=digest,
                reference_date=day,
                date_ranges=tuple(pairs),
                previous_attempt=previous,
                reason=reason,
            )
            due.append((day, index, run))
        for kind, n in entry_counts.items():
            counts[(name, kind)] += n
    due.sort(key=lambda item: (item[0], item[1]))
    return Plan(due=tuple(run for _, _, run in due), skipped=tuple(skipped), available_dates=available, skip_counts=dict(counts))
