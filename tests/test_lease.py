"""AttemptLease on a real run store: every way out of the block records the attempt's end."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from autoflow.lease import AttemptLease, LeaseTracker, StaleAttempt
from autoflow.store import Attempt, RunStore

DAY = dt.date(2016, 1, 1)


@pytest.fixture
def store(sqlite_url: str) -> Iterator[RunStore]:
    with RunStore(sqlite_url, lease_seconds=60) as store:
        store.upgrade()
        yield store


def claim(store: RunStore) -> Attempt:
    attempt = store.claim(workflow="w", parameters={}, reference_date=DAY, date_ranges=[(DAY, DAY)], previous_attempt=0, owner="elsewhere:1:2016-01-01T00:00:00+00:00")
    assert attempt is not None
    return attempt


def state_of(store: RunStore, attempt: Attempt) -> tuple[str, str | None]:
    now = store.attempt(attempt.id)
    assert now is not None
    return now.state, now.error


def test_success_is_recorded_and_the_tracker_follows(store: RunStore) -> None:
    attempt, tracker = claim(store), LeaseTracker()
    with AttemptLease(store, attempt.id, lease_seconds=60, tracker=tracker, flow_run_id="f-1") as lease:
        assert tracker.active == {attempt.id}
        assert lease.finish(success=True, notebooks=["a.ipynb"])
    assert tracker.active == set() and tracker.busy_since() is not None
    record = store.attempt(attempt.id)
    assert record is not None and record.state == "success" and record.notebooks == ["a.ipynb"] and record.flow_run_id == "f-1"


@pytest.mark.parametrize(
    ("raised", "error_start"),
    [(RuntimeError("engine broke"), "the workflow run crashed: RuntimeError: engine broke"), (KeyboardInterrupt(), "interrupted:"), (SystemExit(1), "interrupted:")],
)
def test_no_way_out_leaves_the_attempt_running(store: RunStore, raised: BaseException, error_start: str) -> None:
    attempt = claim(store)
    with pytest.raises(type(raised)):
        with AttemptLease(store, attempt.id, lease_seconds=60):
            raise raised
    state, error = state_of(store, attempt)
    assert state == "failed" and error is not None and error.startswith(error_start), error


def test_leaving_without_an_end_records_one(store: RunStore) -> None:
    attempt = claim(store)
    with AttemptLease(store, attempt.id, lease_seconds=60):
        pass
    assert state_of(store, attempt) == ("failed", "the workflow run ended without recording how")


def test_an_attempt_no_longer_current_is_refused_and_left_as_it_was(store: RunStore) -> None:
    attempt = claim(store)
    store.interrupt([attempt.id], "cancelled by hand")
    before = store.attempt(attempt.id)
    tracker = LeaseTracker()
    with pytest.raises(StaleAttempt, match="no longer the current one: it is failed \\(cancelled by hand\\)"):
        with AttemptLease(store, attempt.id, lease_seconds=60, tracker=tracker, flow_run_id="f-2"):
            raise AssertionError("the block must not run")
    assert store.attempt(attempt.id) == before and tracker.active == set()
    with pytest.raises(StaleAttempt, match="no such attempt"):
        AttemptLease(store, 999, lease_seconds=60).__enter__()
