"""The temporary Prefect server AutoFlow starts when PREFECT_API_URL is unset."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest

from autoflow.prefect_env import TemporaryServer, prefect_api
from autoflow.runs import run_in_worker_thread


@pytest.mark.slow
def test_a_port_taken_before_the_server_binds_it_is_replaced(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = TemporaryServer(tmp_path / "prefect-server.log")
    taken = server.port
    with socket.socket() as blocker:  # another process gets there between _free_port() and the bind
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", taken))
        blocker.listen()
        try:
            with caplog.at_level("INFO", logger="autoflow"):
                server.start(timeout=170)
            assert server.port != taken
            with urllib.request.urlopen(f"{server.api_url}/health", timeout=10) as response:
                assert json.loads(response.read()) is True
            assert f"port {taken} was taken meanwhile" in caplog.text
        finally:
            server.stop()
    assert server.process is None


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
