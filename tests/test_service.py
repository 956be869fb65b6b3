"""The service loop's use of the reloader, without Prefect runs: a new schedule moves the next tick at once."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path

import pytest

from autoflow import service as service_module
from autoflow.service import Service
from autoflow.settings import Settings
from autoflow.spec.loader import load_config
from autoflow.spec.models import AutoFlowConfig
from tests.nbfactory import write_notebook

WORKFLOWS = """\
workflows:
  - name: w
    notebooks:
      a: {filename: a.ipynb}
available_dates_sensor:
  schedule: SCHEDULE
  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}
  workflows: [{workflow_name: w}]
"""


class FakeSensor:
    def __init__(self) -> None:
        self.configs: list[AutoFlowConfig] = []

    def reconfigure(self, config: AutoFlowConfig) -> None:
        self.configs.append(config)


def test_a_new_schedule_moves_the_next_tick_while_the_service_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(service_module, "CHECK_INTERVAL", 0.05)
    monkeypatch.delenv("AUTOFLOW_TEST_TICK_SECONDS", raising=False)
    write_notebook(tmp_path / "a.ipynb", "print(1)")
    (tmp_path / "workflows.yml").write_text(WORKFLOWS.replace("SCHEDULE", "'0 0 1 1 *'"))  # once a year
    settings = Settings(inputs_dir_raw=str(tmp_path), outputs_dir_raw=str(tmp_path / "outputs"))
    service = Service(load_config(tmp_path), settings)
    sensor = FakeSensor()
    service.sensor = sensor  # type: ignore[assignment]
    caplog.set_level(logging.INFO, logger="autoflow")

    def edit_then_stop() -> None:
        (tmp_path / "workflows.yml").write_text(WORKFLOWS.replace("SCHEDULE", "'* * * * *'"))
        for _ in range(200):  # until the tick was moved (10 s at most)
            if sum("next tick at" in r.getMessage() for r in caplog.records) > 1:
                break
            time.sleep(0.05)
        service.stop_requested.set()

    threading.Timer(0.2, edit_then_stop).start()
    started = dt.datetime.now(dt.timezone.utc)
    assert service._wait_for_tick(None) is False  # stopped while waiting
    ticks = [dt.datetime.strptime(r.getMessage(), "next tick at %Y-%m-%d %H:%M:%S UTC").replace(tzinfo=dt.timezone.utc) for r in caplog.records if r.getMessage().startswith("next tick at")]
    assert len(ticks) == 2 and ticks[0].month == 1 and ticks[0].day == 1
    assert ticks[1] - started < dt.timedelta(seconds=61)  # the new schedule, not next January
    assert "workflows.yml reloaded: schedule '0 0 1 1 *' → '* * * * *'" in caplog.text
    assert [c.sensor.schedule for c in sensor.configs] == ["* * * * *"] and service.config is sensor.configs[0]
