"""The temporary Prefect server AutoFlow starts when PREFECT_API_URL is unset."""

from __future__ import annotations

import socket
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from prefect import flow, task
from prefect.client.schemas.objects import State
from prefect.states import Failed

from autoflow import deferred
from autoflow.prefect_env import TemporaryServer, prefect_api, wait_for_api
from autoflow.runs import run_in_worker_thread


def test_the_servers_port_is_held_from_the_moment_it_is_chosen(tmp_path: Path) -> None:
    # AutoFlow binds the socket and hands it to the server: nothing can take the port while the
    # server starts (kernels pick ports meanwhile), and the API's URL is final before it answers
    server = TemporaryServer(tmp_path / "prefect-server.log")
    try:
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", server.port))
        assert server.api_url == f"http://127.0.0.1:{server.port}/api"
    finally:
        server.stop()
    assert server.socket.fileno() == -1  # closed: never started, nothing left bound
    with socket.socket() as other:
        other.bind(("127.0.0.1", server.port))


def test_flow_runs_in_any_thread_share_the_one_prefect_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prefect's engines use the client of the current SyncClientContext; without one, each flow
    # run (every tick) built a client whose SSL context loads the CA bundle. No request is made.
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    from prefect.client.orchestration import get_client
    from prefect.context import SyncClientContext

    with prefect_api(tmp_path):
        client = get_client(sync_client=True)
        with SyncClientContext.get_or_create() as engine_context:  # what a flow run's engine does
            assert engine_context.client is client
        assert run_in_worker_thread(lambda: get_client(sync_client=True), "autoflow-tick") is client
    assert SyncClientContext.get() is None  # closed with the block


log = logging.getLogger("autoflow.tests.deferred")


@task(name="step", task_run_name="{label}", persist_result=False)
def step(label: str, until_prefect_answers: bool = False) -> str | State:
    log.info("step %s: running", label)
    if until_prefect_answers:  # started before the server answered; ends after its flow run is in Prefect
        assert wait_for_api(170)
        deadline = time.monotonic() + 60
        while deferred.flow_run_id() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    if label == "bad":
        return Failed(message="step bad failed on purpose")
    return label.upper()


@flow(name="deferred-check", persist_result=False, validate_parameters=False)
def check_flow(n: int) -> dict[str, Any]:
    futures = {label: deferred.submit(step, label, label == "early") for label in ("early", "bad")}
    for future in futures.values():
        future.wait()
    log.info("check %d: flow run %s", n, deferred.flow_run_id())
    return {label: future.state.type.value for label, future in futures.items()}


@pytest.mark.slow
def test_a_flow_run_that_starts_before_the_server_answers_is_recorded_in_prefect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    recorded: list[str] = []
    with prefect_api(tmp_path / "logs", wait=False):
        assert deferred.needed()  # the server is still starting (7 s and more)
        state = run_in_worker_thread(
            lambda: deferred.run_flow(check_flow, {"n": 1}, name="check-1", max_workers=2, on_recorded=recorded.append), "autoflow-run"
        )
        assert state.is_completed() and state.data == {"early": "COMPLETED", "bad": "FAILED"}
        assert not deferred.needed()  # the step waited for the server
        # once it answers, a flow run is an ordinary Prefect one
        later = run_in_worker_thread(lambda: check_flow(2, return_state=True), "autoflow-run")
        assert later.is_completed()
        deferred.finish_recording(60)
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

        client = get_client(sync_client=True)
        (flow_run_id,) = recorded
        flow_run = client.read_flow_run(flow_run_id)
        assert flow_run.name == "check-1" and flow_run.parameters == {"n": 1} and flow_run.state is not None
        assert flow_run.state.type.value == "COMPLETED"
        history = client.read_flow_run_states(flow_run_id)
        assert [s.type.value for s in history] == ["RUNNING", "COMPLETED"]
        assert "before the Prefect server answered" in (history[0].message or "")  # Prefect stamps states when it gets them
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
        assert {t.name: t.state.type.value for t in tasks if t.state is not None} == {"early": "COMPLETED", "bad": "FAILED"}
        (bad,) = [t for t in tasks if t.name == "bad"]
        assert bad.state is not None and bad.state.message == "step bad failed on purpose"
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id])))
        by_task = {t.id: t.name for t in tasks}
        said = {(by_task.get(line.task_run_id), line.message) for line in logs}
        assert {("early", "step early: running"), ("bad", "step bad: running")} <= said
        # the flow's own line, once Prefect had its flow run: the run knew its id
        assert (None, f"check 1: flow run {flow_run_id}") in said
        assert client.read_flow_run(later.state_details.flow_run_id).name != "check-1"
