import dataclasses
import datetime as dt
from dataclasses import dataclass

from autoflow import DateStencil
from autoflow.parameters import params_hash
from autoflow.planning import plan
from autoflow.spec.models import SensorEntry, frozen_map

D = dt.date
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Prior:
    state: str
    attempt: int = 1
    heartbeat_at: dt.datetime = NOW
    error: str | None = None
    id: int = 7
    finished_at: dt.datetime | None = None
    budget_from: int = 1
    #: failed attempts that count (the run store counts them; here: given, or every attempt if failed)
    failures: int = -1

    def __post_init__(self) -> None:
        if self.failures < 0:
            lost = (self.error or "").startswith(("interrupted", "abandoned", "not started"))
            object.__setattr__(self, "failures", self.attempt - self.budget_from + 1 if self.state == "failed" and not lost else 0)


def entry(workflow: str = "w", stencil: list[object] | None = None, earliest: dt.date | None = None, **params: object) -> SensorEntry:
    return SensorEntry(workflow, frozen_map(params), earliest, DateStencil(stencil if stencil is not None else [0]))


def days(start: int, end: int, month: int = 1) -> list[dt.date]:
    return [D(2016, month, d) for d in range(start, end + 1)]


def key(e: SensorEntry, day: dt.date) -> tuple[str, str, dt.date]:
    return (e.workflow_name, params_hash(e.parameters), day)


def test_every_available_date_is_due_oldest_first() -> None:
    result = plan([entry()], reversed(days(1, 3)), {}, now=NOW, lease_seconds=300)
    assert [r.reference_date for r in result.due] == days(1, 3)
    assert all(r.reason == "new" and r.previous_attempt == 0 for r in result.due)
    assert result.due[0].date_ranges == ((D(2016, 1, 1), D(2016, 1, 1)),)


def test_stencil_needs_every_date_and_says_which_are_missing() -> None:
    available = days(1, 3) + days(5, 8)
    result = plan([entry(stencil=[[-2, 0]])], available, {}, now=NOW, lease_seconds=300)
    assert [r.reference_date for r in result.due] == [D(2016, 1, 3), D(2016, 1, 7), D(2016, 1, 8)]
    reasons = {s.reference_date: s.reason for s in result.skipped}
    assert reasons[D(2016, 1, 5)] == "waiting for data: 2016-01-04 not available"


def test_stencil_reaching_before_the_first_available_date_is_not_waiting() -> None:
    available = days(1, 3) + days(5, 8)
    result = plan([entry(stencil=[[-2, 0]])], available, {}, now=NOW, lease_seconds=300)
    reasons = {s.reference_date: s.reason for s in result.skipped}
    assert reasons[D(2016, 1, 1)] == "needs 2015-12-30, 2015-12-31 before the first available date (2016-01-01): not planned"
    assert reasons[D(2016, 1, 2)] == "needs 2015-12-31 before the first available date (2016-01-01): not planned"
    assert result.skip_counts == {("w", "needing data from before the first available date"): 2, ("w", "waiting for data"): 2}


def test_stencil_dates_before_earliest_date_still_count() -> None:
    result = plan([entry(stencil=[-1, 0], earliest=D(2016, 1, 3))], days(1, 4), {}, now=NOW, lease_seconds=300)
    assert [r.reference_date for r in result.due] == [D(2016, 1, 3), D(2016, 1, 4)]
    assert {s.reference_date: s.reason for s in result.skipped}[D(2016, 1, 2)] == "before earliest_date 2016-01-03"


def test_history_decides() -> None:
    e = entry()
    stale = NOW - dt.timedelta(seconds=301)
    history = {
        key(e, D(2016, 1, 1)): Prior("success"),
        key(e, D(2016, 1, 2)): Prior("failed", attempt=2, error="boom\ntraceback"),
        key(e, D(2016, 1, 3)): Prior("running"),
        key(e, D(2016, 1, 4)): Prior("running", attempt=2, heartbeat_at=stale),
    }
    result = plan([e], days(1, 5), history, now=NOW, lease_seconds=300)
    due = {r.reference_date: r for r in result.due}
    assert set(due) == {D(2016, 1, 2), D(2016, 1, 4), D(2016, 1, 5)}
    assert due[D(2016, 1, 2)].previous_attempt == 2 and due[D(2016, 1, 2)].reason == "retry: attempt 2 failed (boom)"
    assert due[D(2016, 1, 4)].previous_attempt == 2 and due[D(2016, 1, 4)].reason.startswith("abandoned")
    skipped = {s.reference_date: s.reason for s in result.skipped}
    assert skipped[D(2016, 1, 1)] == "already succeeded (attempt 1)"
    assert skipped[D(2016, 1, 3)] == "running now (attempt 1)"


def test_parameters_are_part_of_the_run_identity() -> None:
    a, b = entry(country="A"), entry(country="B")
    history = {key(a, D(2016, 1, 1)): Prior("success")}
    result = plan([a, b], days(1, 1), history, now=NOW, lease_seconds=300)
    assert [r.parameters["country"] for r in result.due] == ["B"]


def test_date_and_string_parameters_are_different_runs() -> None:
    as_date, as_text = entry(day=D(2016, 1, 1)), entry(day="2016-01-01")
    history = {key(as_date, D(2016, 1, 1)): Prior("success")}
    result = plan([as_date, as_text], days(1, 1), history, now=NOW, lease_seconds=300)
    assert [r.parameters["day"] for r in result.due] == ["2016-01-01"]


def test_mixed_interval_running_backwards_is_skipped_with_reason() -> None:
    result = plan([entry(stencil=[[D(2016, 1, 3), 0]])], days(1, 4), {}, now=NOW, lease_seconds=300)
    assert [r.reference_date for r in result.due] == [D(2016, 1, 3), D(2016, 1, 4)]
    assert any("does not apply" in s.reason for s in result.skipped if s.reference_date == D(2016, 1, 1))


def test_order_is_date_then_entry_order() -> None:
    result = plan([entry("b"), entry("a")], days(1, 2), {}, now=NOW, lease_seconds=300)
    assert [(r.reference_date.day, r.workflow) for r in result.due] == [(1, "b"), (1, "a"), (2, "b"), (2, "a")]


def test_no_dates_nothing_due() -> None:
    result = plan([entry()], [], {}, now=NOW, lease_seconds=300)
    assert result.due == () and result.skipped == ()


def test_without_detail_the_same_runs_are_due_and_skips_are_counted() -> None:
    entries = [entry(stencil=[[-2, 0]]), entry(earliest=D(2016, 1, 3), area="x")]
    available = [*days(1, 5), *days(7, 8)]
    history = {
        key(entries[0], D(2016, 1, 4)): Prior("success"),
        key(entries[0], D(2016, 1, 5)): Prior("running"),
        key(entries[1], D(2016, 1, 7)): Prior("failed", error="boom\nsecond line"),
        key(entries[1], D(2016, 1, 8)): Prior("running", heartbeat_at=NOW - dt.timedelta(hours=1)),
    }
    full = plan(entries, available, history, now=NOW, lease_seconds=300)
    lean = plan(entries, available, history, now=NOW, lease_seconds=300, detail=False)
    assert lean.due == full.due and lean.skipped == () and len(full.skipped) == full.skipped_total
    assert lean.skip_counts == full.skip_counts == {
        ("w", "waiting for data"): 2,  # 01-07, 01-08
        ("w", "needing data from before the first available date"): 2,  # 01-01, 01-02 (reach back to December)
        ("w", "already succeeded"): 1,
        ("w", "running now"): 1,
        ("w", "before earliest_date"): 2,
    }
    assert [(r.workflow, r.reference_date, r.reason.split(":")[0]) for r in full.due] == [
        ("w", D(2016, 1, 3), "new"),
        ("w", D(2016, 1, 3), "new"),
        ("w", D(2016, 1, 4), "new"),
        ("w", D(2016, 1, 5), "new"),
        ("w", D(2016, 1, 7), "retry"),
        ("w", D(2016, 1, 8), "abandoned"),
    ]
    assert "(boom)" in full.due[4].reason
    assert full.skips_by_kind()["waiting for data"] == 2


def policy_entry(**policy: object) -> SensorEntry:
    return dataclasses.replace(entry(), **policy)  # type: ignore[arg-type]


def test_a_failed_run_waits_retry_after_doubling_per_attempt_capped_at_a_day() -> None:
    e = policy_entry(max_attempts=20, retry_after=600.0)
    ended = NOW - dt.timedelta(minutes=15)
    history = {
        key(e, D(2016, 1, 1)): Prior("failed", attempt=1, error="boom", finished_at=ended),  # waits 10 min: due
        key(e, D(2016, 1, 2)): Prior("failed", attempt=2, error="boom", finished_at=ended),  # waits 20 min
        key(e, D(2016, 1, 3)): Prior("failed", attempt=15, error="boom", finished_at=NOW - dt.timedelta(hours=23)),  # a day at most
        key(e, D(2016, 1, 4)): Prior("failed", attempt=15, error="boom", finished_at=NOW - dt.timedelta(hours=25)),
        # its process was stopped or died: not the run's fault, so no wait (the attempt still counts)
        key(e, D(2016, 1, 5)): Prior("failed", attempt=2, error="interrupted: AutoFlow was stopped (SIGTERM)", finished_at=NOW),
        key(e, D(2016, 1, 6)): Prior("failed", attempt=2, error="abandoned: no heartbeat since ...", finished_at=NOW),
        key(e, D(2016, 1, 7)): Prior("failed", attempt=2, error="not started: the work pool 'p' had no live worker for 120 s", finished_at=NOW),
    }
    result = plan([e], days(1, 7), history, now=NOW, lease_seconds=300)
    assert [r.reference_date for r in result.due] == [D(2016, 1, 1), D(2016, 1, 4), D(2016, 1, 5), D(2016, 1, 6), D(2016, 1, 7)]
    skipped = {s.reference_date: s for s in result.skipped}
    assert skipped[D(2016, 1, 2)].kind == "waiting for retry"
    assert skipped[D(2016, 1, 2)].reason == "waiting for retry until 2026-01-01 12:05:00 UTC (failure 2 of 20 allowed: boom)"
    assert skipped[D(2016, 1, 3)].reason.startswith("waiting for retry until 2026-01-01 13:00:00 UTC")
    assert plan([policy_entry(retry_after=0.0)], days(2, 2), {key(e, D(2016, 1, 2)): Prior("failed", finished_at=NOW)}, now=NOW, lease_seconds=300).due


def test_a_run_gives_up_after_max_attempts_until_an_operator_starts_one() -> None:
    e = policy_entry(max_attempts=2, retry_after=0.0)
    history = {
        key(e, D(2016, 1, 1)): Prior("failed", attempt=1, error="boom", finished_at=NOW),
        key(e, D(2016, 1, 2)): Prior("failed", id=42, attempt=2, error="boom\ntrace", finished_at=NOW),
        # attempt 3 was a rerun: the budget counts from it, so attempt 3 failing leaves one more
        key(e, D(2016, 1, 3)): Prior("failed", attempt=3, budget_from=3, error="boom", finished_at=NOW),
        key(e, D(2016, 1, 4)): Prior("failed", attempt=4, budget_from=3, error="boom", finished_at=NOW),
        # attempts whose process was stopped or died are not the run's failures: they never give up
        key(e, D(2016, 1, 5)): Prior("running", attempt=5, heartbeat_at=NOW - dt.timedelta(hours=1)),
        key(e, D(2016, 1, 7)): Prior("failed", attempt=6, error="abandoned: no heartbeat", finished_at=NOW),
        key(e, D(2016, 1, 8)): Prior("failed", attempt=6, error="boom", finished_at=NOW, failures=1),
        key(e, D(2016, 1, 6)): Prior("cancelled", id=43, attempt=1, error="cancelled by ops on host at 2026-01-01T11:00:00 UTC"),
    }
    result = plan([e], days(1, 8), history, now=NOW, lease_seconds=300)
    assert [r.reference_date for r in result.due] == [D(2016, 1, 1), D(2016, 1, 3), D(2016, 1, 5), D(2016, 1, 7), D(2016, 1, 8)]
    skipped = {s.reference_date: s for s in result.skipped}
    assert skipped[D(2016, 1, 2)].reason == "gave up after 2 failed attempt(s) (last: boom); `autoflow rerun 42` runs it again"
    assert skipped[D(2016, 1, 4)].kind == "gave up"
    assert skipped[D(2016, 1, 6)].kind == "cancelled" and "`autoflow rerun 43`" in skipped[D(2016, 1, 6)].reason


def test_catch_up_latest_runs_only_the_newest_due_date_and_max_runs_per_tick_bounds_a_tick() -> None:
    latest, every = policy_entry(catch_up="latest"), entry("other")
    history = {key(latest, D(2016, 1, 5)): Prior("success")}
    result = plan([latest, every], days(1, 5), history, now=NOW, lease_seconds=300)
    assert [(r.workflow, r.reference_date.day) for r in result.due] == [("other", d) for d in (1, 2, 3)] + [("w", 4), ("other", 4), ("other", 5)]
    skipped = {(s.workflow, s.reference_date.day): s.reason for s in result.skipped}
    assert skipped[("w", 1)] == "catch_up: latest (only the newest due date, 2016-01-04, runs)"
    bounded = plan([latest, every], days(1, 5), history, now=NOW, lease_seconds=300, max_runs_per_tick=2)
    assert [(r.workflow, r.reference_date.day) for r in bounded.due] == [("other", 1), ("other", 2)]
    assert bounded.skip_counts[("other", "over max_runs_per_tick")] == 3 and bounded.skip_counts[("w", "over max_runs_per_tick")] == 1
    lean = plan([latest, every], days(1, 5), history, now=NOW, lease_seconds=300, max_runs_per_tick=2, detail=False)
    assert lean.due == bounded.due and lean.skip_counts == bounded.skip_counts


def test_backfill_reprocesses_what_it_is_asked_to_and_says_why_the_rest_is_skipped() -> None:
    from autoflow.planning import plan_backfill

    e = policy_entry(max_attempts=1, catch_up="latest", earliest_date=D(2016, 1, 4), date_stencil=DateStencil([[-1, 0]]))
    available = [*days(1, 5), *days(7, 8)]
    history = {
        key(e, D(2016, 1, 2)): Prior("success", attempt=1),
        key(e, D(2016, 1, 3)): Prior("failed", id=3, attempt=1, error="boom", finished_at=NOW),  # gave up (max_attempts 1)
        key(e, D(2016, 1, 4)): Prior("cancelled", id=4, attempt=2, error="cancelled by ops"),
        key(e, D(2016, 1, 5)): Prior("running", attempt=1),  # running elsewhere: never claimed twice
    }

    def backfill(reprocess: str, **kw: object) -> tuple[list[tuple[int, str]], dict[int, str]]:
        result = plan_backfill(e, available, history, start=D(2016, 1, 2), end=D(2016, 1, 9), reprocess=reprocess, now=NOW, lease_seconds=300, **kw)  # type: ignore[arg-type]
        return [(r.reference_date.day, r.reason) for r in result.due], {s.reference_date.day: s.reason for s in result.skipped}

    due, skipped = backfill("missing")
    # no catch-up, earliest_date, attempt budget or retry wait: the operator asked for these dates
    assert due == [(3, "again: attempt 1 failed (boom)"), (4, "again: attempt 2 cancelled (cancelled by ops)"), (8, "new")]
    assert skipped == {
        2: "already succeeded (attempt 1)", 5: "running now (attempt 1)", 6: "waiting for data: 2016-01-06 not available",
        7: "waiting for data: 2016-01-06 not available", 9: "waiting for data: 2016-01-09 not available",
    }  # fmt: skip
    due, skipped = backfill("failed")
    assert [d for d, _ in due] == [3, 4] and skipped[8].startswith("never ran")
    due, skipped = backfill("all", newest_first=True)
    assert [d for d, _ in due] == [8, 4, 3, 2] and due[-1][1] == "again (--reprocess all): attempt 1 succeeded"
    assert due and all(r.previous_attempt == history[key(e, D(2016, 1, r.reference_date.day))].attempt
                       for r in plan_backfill(e, available, history, start=D(2016, 1, 2), end=D(2016, 1, 4), reprocess="all", now=NOW, lease_seconds=300).due)
