"""The workflow-run flow owns its attempt: real flow, real kernel, real PostgreSQL, no launcher around it.

The flow is started as a Prefect worker would start it: with plain JSON parameters, in a process
where no AutoFlow service installed anything, for an attempt claimed by someone else.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest

from autoflow.store import Attempt, RunStore
from tests.integration.test_workflow_run import make_inputs

pytestmark = [pytest.mark.usefixtures("prefect_api_url"), pytest.mark.postgres]

DAY = dt.date(2016, 1, 1)
LEASE = 4.0  # seconds: more than the flow takes to start, and the notebook sleeps for several leases
WORKFLOWS = """
workflows:
  - name: w
    notebooks:
      s: {filename: sleepy.ipynb}
available_dates_sensor: {schedule: null, workflows: [{workflow_name: w}]}
"""


@pytest.fixture
def setup(tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, RunStore]:
    inputs = make_inputs(tmp_path, WORKFLOWS, {"sleepy.ipynb": ("x = 1", ["import time\ntime.sleep(%s)" % (2.5 * LEASE)])})
    monkeypatch.setenv("AUTOFLOW_DB_URI", postgres_url)
    monkeypatch.setenv("AUTOFLOW_RUN_LEASE_SECONDS", str(LEASE))
    return inputs, tmp_path / "out", RunStore(postgres_url, lease_seconds=LEASE)


def claim(store: RunStore) -> Attempt:
    store.upgrade()
    attempt = store.claim(workflow="w", parameters={}, reference_date=DAY, date_ranges=[(DAY, DAY)], previous_attempt=0, owner="elsewhere:1:2016-01-01T00:00:00+00:00")
    assert attempt is not None
    return attempt


def start_flow(inputs: Path, outputs: Path, attempt_id: int) -> tuple[threading.Thread, list[Any]]:
    from autoflow.flows import workflow_run_with_runner

    states: list[Any] = []
    parameters = {"workflow": "w", "parameters": {}, "reference_date": DAY.isoformat(), "date_ranges": [[DAY.isoformat()] * 2], "attempt_id": attempt_id}
    flow = workflow_run_with_runner(1)
    context = contextvars.copy_context()

    def body() -> None:
        states.append(context.run(lambda: flow(**parameters, inputs_dir=str(inputs), outputs_dir=str(outputs), return_state=True)))

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, states


@pytest.mark.slow
def test_the_flow_heartbeats_its_attempt_past_the_lease_and_records_its_end(setup: tuple[Path, Path, RunStore]) -> None:
    inputs, outputs, store = setup
    with store:
        attempt = claim(store)
        thread, states = start_flow(inputs, outputs, attempt.id)
        beats_while_running: set[dt.datetime] = set()
        expired: list[Attempt] = []
        while thread.is_alive():
            thread.join(timeout=LEASE / 3)
            now = store.attempt(attempt.id)
            assert now is not None
            if now.flow_run_id is None:
                continue  # the flow has not taken its lease yet (the claim's own heartbeat still counts)
            expired += store.expire_abandoned()  # what the next tick of any service would do
            if now.state == "running":
                beats_while_running.add(now.heartbeat_at)
        assert not expired, expired
        final = store.attempt(attempt.id)
        assert final is not None
        assert final.state == "success", final.error
        assert len(final.notebooks) == 1 and Path(final.notebooks[0]).exists()
        assert final.finished_at is not None and (final.finished_at - final.started_at).total_seconds() > 2 * LEASE
        assert len(beats_while_running) >= 3 and max(beats_while_running) - attempt.heartbeat_at > dt.timedelta(seconds=LEASE)
        assert final.flow_run_id is not None and final.flow_run_id == str(states[0].state_details.flow_run_id)
        assert states[0].is_completed()


def test_a_flow_for_an_attempt_no_longer_current_executes_nothing(setup: tuple[Path, Path, RunStore]) -> None:
    inputs, outputs, store = setup
    with store:
        attempt = claim(store)
        [abandoned] = store.expire_abandoned(now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=10 * LEASE))
        before = store.attempt(attempt.id)
        assert before is not None and before.state == "failed"
        thread, states = start_flow(inputs, outputs, attempt.id)
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert states[0].is_cancelled() and "no longer the current one" in str(states[0].message)
        assert not list((outputs / "notebooks").glob("*.ipynb")) if (outputs / "notebooks").exists() else True
        assert store.attempt(attempt.id) == before  # the record is left as it was
