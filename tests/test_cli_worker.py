"""``autoflow worker`` refuses, in one line, to start where it could not execute runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "local"


def worker(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOFLOW_", "PREFECT_API_URL", "FLOWAPI_"))}
    base.update({"AUTOFLOW_INPUTS_DIR": str(EXAMPLE), "AUTOFLOW_OUTPUTS_DIR": str(tmp_path / "out"), "AUTOFLOW_SECRETS_DIR": str(tmp_path)})
    base.update(env)
    return subprocess.run([sys.executable, "-m", "autoflow", "worker", *args], env=base, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "args, env, code, message",
    [
        ((), {"PREFECT_API_URL": "http://127.0.0.1:9/api"}, 2, "no work pool: pass --pool NAME or set AUTOFLOW_WORK_POOL"),
        (("--pool", "p"), {}, 2, "a worker needs the Prefect server the service uses: set PREFECT_API_URL"),
        (("--pool", "p", "--limit", "0"), {"PREFECT_API_URL": "http://127.0.0.1:9/api"}, 2, "--limit 0 must be 1 or more"),
        ((), {"AUTOFLOW_WORK_POOL": "p", "PREFECT_API_URL": "http://127.0.0.1:9/api"}, 1, "there is no run history at sqlite:///"),
        ((), {"AUTOFLOW_WORK_POOL": "p", "PREFECT_API_URL": "http://127.0.0.1:9/api", "AUTOFLOW_INPUTS_DIR": "/nonexistent/inputs"}, 2, "/nonexistent/inputs"),
    ],
    ids=["no-pool", "no-prefect-server", "bad-limit", "no-run-history", "no-inputs"],
)
def test_a_worker_that_could_not_work_says_why_in_one_line(tmp_path: Path, args: tuple[str, ...], env: dict[str, str], code: int, message: str) -> None:
    done = worker(tmp_path, *args, **env)
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoflow: error: ") and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_the_service_will_not_submit_to_a_pool_without_a_shared_prefect_server(tmp_path: Path) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOFLOW_", "PREFECT_API_URL", "FLOWAPI_"))}
    base.update({"AUTOFLOW_INPUTS_DIR": str(EXAMPLE), "AUTOFLOW_OUTPUTS_DIR": str(tmp_path / "out"), "AUTOFLOW_WORK_POOL": "p"})
    done = subprocess.run([sys.executable, "-m", "autoflow"], env=base, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "autoflow: error: AUTOFLOW_WORK_POOL='p' needs a Prefect server the workers share: set PREFECT_API_URL (e.g. http://prefect:4200/api)"
    )
