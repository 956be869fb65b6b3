"""The test harness cleans up after itself: it runs pytest in a subprocess, as a developer would.

- A test stopped by pytest-timeout does not leave the AutoFlow process it started (nor that
  process's own children) running.
- With nothing answering on the default server (AUTOFLOW_TEST_POSTGRES unset), PostgreSQL tests
  run on a throwaway cluster that is gone afterwards; an explicit AUTOFLOW_TEST_POSTGRES is never
  replaced.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.pgcluster import answers, free_port

ROOT = Path(__file__).resolve().parent.parent

FAKE_SERVICE = """\
import os, pathlib, subprocess, sys, time
kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
pathlib.Path(os.environ["PIDS_FILE"]).write_text(f"{os.getpid()} {kernel.pid}")
time.sleep(600)
"""

TIMING_OUT_TEST = """\
import os, pathlib, subprocess, sys, time

def test_gives_up_on_its_service():
    subprocess.Popen([sys.executable, "-m", "autoflow", "run"], cwd=os.environ["FAKE_PACKAGE_PARENT"])
    while not pathlib.Path(os.environ["PIDS_FILE"]).exists():
        time.sleep(0.05)
    time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _pytest(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_a_timed_out_test_ends_the_autoflow_process_it_started(tmp_path: Path) -> None:
    package = tmp_path / "fake" / "autoflow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_SERVICE)
    (tmp_path / "test_gives_up.py").write_text(TIMING_OUT_TEST)
    pids_file = tmp_path / "pids"
    env = {**os.environ, "FAKE_PACKAGE_PARENT": str(package.parent), "PIDS_FILE": str(pids_file)}
    # the suite's own settings (pyproject.toml) and process plugin, on a test file outside the suite
    done = _pytest(["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), "-p", "tests.processes", "--timeout", "5",
                    str(tmp_path / "test_gives_up.py")], env, timeout=300)  # fmt: skip
    assert done.returncode == 1 and "Timeout" in done.stdout and "1 failed" in done.stdout, done.stdout + done.stderr
    service, kernel = (int(pid) for pid in pids_file.read_text().split())
    left = [pid for pid in (service, kernel) if not _gone(pid)]
    for pid in left:  # do not leave them to the next test run either
        psutil.Process(pid).kill()
    assert not left, f"still running after the test timed out: {left} (service {service}, its child {kernel})"


@pytest.mark.slow
def test_postgres_tests_use_a_throwaway_cluster_when_nothing_answers() -> None:
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "AUTOFLOW_TEST_POSTGRES"}
    env["PGPORT"] = str(port)  # the default server (127.0.0.1 on libpq's port), where nothing answers
    done = _pytest(["tests/integration/test_store.py", "-q", "-k", "dropped_connections_are_replaced"], env, timeout=300)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    said = re.search(r"PostgreSQL for tests: a throwaway cluster on 127\.0\.0\.1:(\d+) in (\S+) \(nothing answered on 127\.0\.0\.1:(\d+)\)", done.stdout)
    assert said and said.group(3) == str(port), done.stdout
    cluster_port, cluster_dir = int(said.group(1)), said.group(2)
    assert not Path(cluster_dir).exists()
    left = []
    for process in psutil.process_iter(["cmdline"]):
        if cluster_dir in " ".join(process.info["cmdline"] or []):
            left.append(process.pid)
    assert not left, f"PostgreSQL processes of {cluster_dir} still running: {left}"
    assert not answers(f"host=127.0.0.1 port={cluster_port} user=postgres dbname=postgres")


@pytest.mark.slow
def test_an_explicit_postgres_that_is_unusable_is_not_replaced() -> None:
    """AUTOFLOW_TEST_POSTGRES names the server to test against: a stand-in would test something else."""
    port = free_port()
    env = {**os.environ, "AUTOFLOW_TEST_POSTGRES": f"host=127.0.0.1 port={port} user=postgres dbname=postgres"}
    done = _pytest(["tests/integration/test_store.py", "-q", "-k", "dropped_connections_are_replaced"], env, timeout=300)
    assert done.returncode == 1 and "throwaway cluster on" not in done.stdout, done.stdout + done.stderr
    assert f"PostgreSQL for tests: nothing answered on 127.0.0.1:{port} (AUTOFLOW_TEST_POSTGRES); start that server" in done.stdout
    check = subprocess.run([sys.executable, "-m", "tests.pgcluster", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert check.returncode == 3 and "AUTOFLOW_TEST_POSTGRES" in check.stdout  # make installs nothing for it
