"""Sensor.reconfigure: the service's sensor switched to a reloaded workflows.yml between ticks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoflow.errors import SettingsError
from autoflow.sensor import Sensor
from autoflow.sources import DateSource
from autoflow.settings import Settings
from autoflow.spec.loader import load_config_text
from autoflow.spec.models import AutoFlowConfig
from autoflow.store import RunStore
from tests.nbfactory import write_notebook

WORKFLOWS = """\
workflows:
  - name: w
    notebooks:
      a: {filename: a.ipynb}
available_dates_sensor:
  schedule: '* * * * *'
  source: SOURCE
  workflows: [{workflow_name: w}]
"""


def only(sensor: Sensor) -> DateSource:
    (source,) = sensor.sources.values()
    return source


def test_reconfigure_swaps_the_source_and_the_runtimes_config_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWAPI_URL", raising=False)
    inputs = tmp_path / "inputs"
    write_notebook(inputs / "a.ipynb", "print(1)")
    for day in ("2016-01-01", "2016-01-02"):
        (inputs / "one").mkdir(exist_ok=True)
        (inputs / "one" / f"{day}.csv").write_text("")
    (inputs / "two").mkdir()
    (inputs / "two" / "2016-01-03.csv").write_text("")

    def config(source: str) -> AutoFlowConfig:
        return load_config_text(WORKFLOWS.replace("SOURCE", source).encode(), inputs_dir=inputs)

    first = config("{type: directory, pattern: 'one/{date:%Y-%m-%d}.csv'}")
    settings = Settings(inputs_dir_raw=str(inputs), outputs_dir_raw=str(tmp_path / "outputs"))
    os.makedirs(settings.outputs_dir, exist_ok=True)
    with RunStore(settings.db_url) as store:
        sensor = Sensor(first, settings, store)
        try:
            assert [d.isoformat() for d in only(sensor).available_dates()["files"]] == ["2016-01-01", "2016-01-02"]
            second = config("{type: directory, pattern: 'two/{date:%Y-%m-%d}.csv'}")
            sensor.reconfigure(second)
            assert sensor.config is second and sensor.runtime.config() is second
            assert [d.isoformat() for d in only(sensor).available_dates()["files"]] == ["2016-01-03"]

            source = only(sensor)
            with pytest.raises(SettingsError, match="FLOWAPI_URL"):
                sensor.reconfigure(config("{type: flowapi}"))  # the source cannot be built: nothing changes
            assert sensor.config is second and sensor.runtime.config() is second and only(sensor) is source
        finally:
            sensor.close()
