"""One Prefect API server for the whole test session (a pytest plugin).

Starting a temporary server costs 7-20 s here; every test that runs flows, in this process or
in an ``autoflow`` subprocess, shares this one through PREFECT_API_URL instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    from autoflow.prefect_env import TemporaryServer, configure_environment

    configure_environment()
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    server = TemporaryServer(Path(home) / "server.log")
    server.start()
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_HOME: str(home)}):
            yield server.api_url
    finally:
        from autoflow.prefect_env import drain_prefect_workers

        drain_prefect_workers()  # log lines still queued go now, not at exit to a server that is gone
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
