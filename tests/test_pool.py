"""How long a submitted run may wait in Prefect before AutoFlow gives up on it (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from autoflow.pool import MIN_START_BOUND, FlowRunState, WorkPool, idempotency_key
from autoflow.settings import Settings
from autoflow.store import Attempt

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.timezone.utc)


def state(kind: str, name: str, seconds_ago: float, message: str = "") -> FlowRunState:
    return FlowRunState(kind, name, message, NOW - dt.timedelta(seconds=seconds_ago))


def test_scheduled_waits_for_a_worker_as_long_as_it_takes() -> None:
    assert state("SCHEDULED", "Scheduled", 86_400).problem(NOW, 120) is None
    assert state("SCHEDULED", "AwaitingConcurrencySlot", 3_600).problem(NOW, 120) is None


@pytest.mark.parametrize("kind, name", [("PENDING", "Pending"), ("RUNNING", "Running")])
def test_starting_up_is_bounded(kind: str, name: str) -> None:
    assert state(kind, name, 119).problem(NOW, 120) is None
    problem = state(kind, name, 300).problem(NOW, 120)
    assert problem == f"has been {name} for 300 s without starting the run (its worker or process went away)"


def test_an_ended_flow_run_says_how() -> None:
    assert state("CRASHED", "Crashed", 1, "Flow run infrastructure exited with non-zero status code -9.").problem(NOW, 120) == (
        "ended Crashed before a worker started the run: Flow run infrastructure exited with non-zero status code -9."
    )
    assert state("CANCELLED", "Cancelled", 1).problem(NOW, 120) == "ended Cancelled before a worker started the run"


def test_the_start_bound_is_the_lease_or_two_minutes(tmp_path: object) -> None:
    short = Settings(work_pool="p", run_lease_seconds=30, outputs_dir_raw="/tmp/x")
    long = Settings(work_pool="p", run_lease_seconds=600, outputs_dir_raw="/tmp/x")
    assert WorkPool(short, store=None).start_bound == MIN_START_BOUND  # type: ignore[arg-type]
    assert WorkPool(long, store=None).start_bound == 600  # type: ignore[arg-type]


def test_the_idempotency_key_is_the_attempts_identity() -> None:
    base = dict(
        id=7, workflow="daily", parameters={}, params_hash="ab" * 32, reference_date=dt.date(2024, 1, 2), date_ranges=[],
        state="running", attempt=2, started_at=NOW, finished_at=None, heartbeat_at=NOW, owner="h:1:x", error=None,
        notebooks=[], reports=[], flow_run_id=None, trigger="sensor",
    )  # fmt: skip
    key = idempotency_key(Attempt(**base))  # type: ignore[arg-type]
    assert key == f"autoflow:daily:{'ab' * 32}:2024-01-02:2"
    assert idempotency_key(Attempt(**{**base, "id": 99})) == key  # type: ignore[arg-type]  # the same attempt from another database row
    assert idempotency_key(Attempt(**{**base, "attempt": 3})) != key  # type: ignore[arg-type]
