"""The inputs the benchmarks write are valid AutoFlow configuration.

``make bench-quick`` runs only in CI's last step; a benchmark whose generated workflows.yml no
longer passes validation (say, a stricter notebook check) would otherwise be found there.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from autoflow.spec.loader import load_config
from benchmarks import b3_tick, workload


def test_b1_workload_inputs_load(tmp_path: Path) -> None:
    config = load_config(workload.write_inputs(tmp_path / "b1"))
    assert [w for w in config.workflows] == ["backlog"]


def test_b3_inputs_load_with_every_entry(tmp_path: Path) -> None:
    inputs = b3_tick.write_inputs(tmp_path / "b3", 3, dt.date(2016, 1, 1))
    config = load_config(inputs)
    assert [dict(e.parameters)["region"] for e in config.sensor.workflows] == ["region-00", "region-01", "region-02"]
