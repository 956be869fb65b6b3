"""The temporary Prefect server AutoFlow starts when PREFECT_API_URL is unset."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest

from autoflow.prefect_env import TemporaryServer


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
