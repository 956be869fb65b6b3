"""workflows.yml changed under one running service: valid changes take effect on the next tick,
invalid ones are reported once while the last valid configuration goes on running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autoflow.errors import RunStoreError
from autoflow.settings import Settings
from autoflow.store import RunStore
from tests.nbfactory import write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]

ALPHA = """\
workflows:
  - name: alpha
    notebooks:
      a: {filename: a.ipynb, parameters: {reference_date: reference_date}}
available_dates_sensor:
  schedule: '*/5 * * * *'
  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}
  workflows:
    - workflow_name: alpha
      date_stencil: [[-2, 0]]
"""
# (b) a second workflow and its sensor entry
WITH_BETA = ALPHA.replace(
    "available_dates_sensor:\n",
    "  - name: beta\n    notebooks:\n      b: {filename: b.ipynb, parameters: {reference_date: reference_date, region: region}}\n"
    "available_dates_sensor:\n",
) + "    - workflow_name: beta\n      parameters: {region: north}\n      earliest_date: 2016-01-03\n"
# (c) alpha needs one day less of data: 2016-01-02 becomes due (2016-01-01 still lacks 2015-12-31)
NARROWER = WITH_BETA.replace("date_stencil: [[-2, 0]]", "date_stencil: [[-1, 0]]").replace("'*/5 * * * *'", "'*/7 * * * *'")
# (d) broken: a YAML syntax error, then a sensor entry naming no workflow
SYNTAX_ERROR = NARROWER.replace("date_stencil: [[-1, 0]]", "date_stencil: [[-1, 0]")
UNKNOWN_WORKFLOW = NARROWER.replace("workflow_name: beta", "workflow_name: betta")


class Service:
    """One ``python -m autoflow`` over a directory date source, ticking every 2 s, its log in a file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs = root / "inputs"
        self.outputs = root / "outputs"
        write_notebook(self.inputs / "a.ipynb", "print('alpha', reference_date)", parameters="reference_date = None")
        write_notebook(self.inputs / "b.ipynb", "print('beta', reference_date, region)", parameters="reference_date = None\nregion = None")
        for day in ("2016-01-01", "2016-01-02", "2016-01-03"):
            self.add_data(day)
        self.save(ALPHA)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AUTOFLOW_", "FLOWAPI_"))},
            "AUTOFLOW_INPUTS_DIR": str(self.inputs),
            "AUTOFLOW_OUTPUTS_DIR": str(self.outputs),
            "AUTOFLOW_SECRETS_DIR": str(root / "no-secrets"),
            "AUTOFLOW_TEST_TICK_SECONDS": "2",
        }
        self.log_path = root / "service.log"
        self.process: subprocess.Popen[str] | None = None

    def add_data(self, day: str) -> None:
        (self.inputs / "data").mkdir(parents=True, exist_ok=True)
        (self.inputs / "data" / f"{day}.csv").write_text("calls\n")

    def save(self, text: str) -> None:
        """Replace workflows.yml at once, as an editor saving a whole file does."""
        partial = self.inputs / ".workflows.yml.partial"
        partial.write_text(text)
        os.replace(partial, self.inputs / "workflows.yml")

    def start(self) -> None:
        with self.log_path.open("w") as log:  # the child has its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "autoflow"], env=self.env, cwd=self.root, stdout=subprocess.DEVNULL, stderr=log, text=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self, fragment: str) -> list[str]:
        return [line for line in self.log().splitlines() if fragment in line]

    def runs(self) -> set[tuple[str, str, str]]:
        """(workflow, reference date, state) of every attempt in the run history."""
        with RunStore(Settings.from_env(self.env).db_url) as store:
            try:
                return {(a.workflow, a.reference_date.isoformat(), a.state) for a in store.history()}
            except RunStoreError:  # not created yet
                return set()

    def health(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "autoflow", "health"], env=self.env, cwd=self.root, capture_output=True, text=True, timeout=60)

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert self.process is not None and self.process.poll() is None, f"the service ended while waiting for {what}:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.log()[-3000:]}"
            time.sleep(0.2)

    def wait_for_ticks(self, n: int) -> None:
        """Until ``n`` more ticks have begun (each logs where it asks for dates)."""
        seen = len(self.lines("tick: asking"))
        self.wait_for(f"{n} more ticks", lambda: len(self.lines("tick: asking")) >= seen + n)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    service = Service(tmp_path)
    yield service
    if service.process is not None and service.process.poll() is None:
        service.process.kill()
        service.process.wait(timeout=30)


def test_workflows_yml_is_reloaded_while_the_service_runs(service: Service) -> None:
    done = {("alpha", "2016-01-03", "success")}
    service.start()
    # (a) alpha's stencil [[-2, 0]]: only 2016-01-03 has the two days before it
    service.wait_for("alpha's first run", lambda: service.runs() == done)

    # (b) a new workflow and sensor entry run on a following tick
    service.save(WITH_BETA)
    done.add(("beta", "2016-01-03", "success"))
    service.wait_for("beta's run", lambda: service.runs() == done)
    (reloaded,) = service.lines("workflows.yml reloaded:")
    assert reloaded.endswith("workflows.yml reloaded: workflow 'beta' added; sensor entry 'beta' (region=north) added")

    # (c) a narrower stencil makes 2016-01-02 due; the new schedule is logged
    service.save(NARROWER)
    done.add(("alpha", "2016-01-02", "success"))
    service.wait_for("alpha's run for 2016-01-02", lambda: service.runs() == done)
    assert service.lines("workflows.yml reloaded:")[-1].endswith(
        "workflows.yml reloaded: sensor entry 'alpha' changed: date_stencil; schedule '*/5 * * * *' → '*/7 * * * *'"
    )

    # (d) a YAML syntax error: said once, with its position; the last valid configuration runs on
    service.save(SYNTAX_ERROR)
    service.wait_for("the error", lambda: bool(service.lines("workflows.yml is invalid")))
    log = service.log()
    assert re.search(r"ERROR +workflows\.yml is invalid \(1 problem\); the service keeps running the configuration loaded at \d\d:\d\d:\d\d UTC", log)
    assert "\ninputs/workflows.yml:14:5: YAML syntax error" in log, log[-2000:]
    service.add_data("2016-01-04")
    done |= {("alpha", "2016-01-04", "success"), ("beta", "2016-01-04", "success")}
    service.wait_for("the runs for 2016-01-04", lambda: service.runs() == done)
    service.wait_for_ticks(2)
    assert len(service.lines("workflows.yml is invalid")) == 1  # not repeated every tick
    health = service.health()
    assert health.returncode == 0, health.stdout + health.stderr
    assert health.stdout.startswith("healthy: heartbeat")
    assert re.search(
        r"\nworkflows\.yml on disk is invalid since \d{4}-\d\d-\d\d \d\d:\d\d UTC \(1 problem; first: inputs/workflows\.yml:14:5: YAML syntax error.*\); "
        r"the service runs the configuration loaded at \d\d:\d\d UTC\. Still healthy \(exit 0\)",
        health.stdout,
    ), health.stdout

    # ... and a sensor entry naming no workflow: said once more, as the file changed
    service.save(UNKNOWN_WORKFLOW)
    service.wait_for("the second error", lambda: bool(service.lines("workflows.yml changed but is still invalid (1 problem)")))
    assert "sensor entry names workflow 'betta', which is not defined (did you mean 'beta'?)" in service.log()
    assert "first: inputs/workflows.yml:14:22: sensor entry names workflow 'betta'" in service.health().stdout

    # (e) fixed: valid again, and health says nothing more
    service.save(NARROWER)
    service.wait_for("valid again", lambda: bool(service.lines("workflows.yml is valid again; reloaded: no change to the configuration")))
    service.wait_for_ticks(1)
    health = service.health()
    assert health.returncode == 0 and health.stdout.count("\n") == 1 and "workflows.yml" not in health.stdout, health.stdout

    assert service.stop() == 0
    assert service.runs() == done  # each run once; 2016-01-01 never had 2015-12-31
    log = service.log()
    assert len(service.lines("ERROR")) == 2 and "Traceback" not in log
