"""Which parameters and dates a run by hand gets: its sensor entry's, with the command line's overrides."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from autoflow.errors import UsageError
from autoflow.spec.loader import load_config
from autoflow.spec.models import AutoFlowConfig
from autoflow.triggering import ManualRun, resolve_manual_run
from tests.nbfactory import write_notebook

WORKFLOWS = """\
workflows:
  - name: single
    notebooks:
      nb: {filename: nb.ipynb, parameters: {region: region, n: n, ranges: date_ranges}}
  - name: double
    notebooks:
      nb: {filename: nb.ipynb, parameters: {region: region, n: n}}
  - name: adhoc
    notebooks:
      nb: {filename: nb.ipynb, parameters: {region: region, n: n}}
available_dates_sensor:
  schedule: null
  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}
  workflows:
    - workflow_name: single
      parameters: {region: north, n: 2}
      date_stencil: [[-2, 0]]
    - workflow_name: double
      parameters: {region: north, n: 1}
    - workflow_name: double
      parameters: {region: south, n: 5}
      date_stencil: [-1]
"""
DAY = dt.date(2016, 1, 7)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> AutoFlowConfig:
    inputs = tmp_path_factory.mktemp("inputs")
    write_notebook(inputs / "nb.ipynb", "print(region, n)", parameters="region = n = ranges = None")
    (inputs / "workflows.yml").write_text(WORKFLOWS)
    return load_config(inputs)


def test_the_only_sensor_entry_gives_parameters_and_stencil(config: AutoFlowConfig) -> None:
    run = resolve_manual_run(config, "single", "2016-01-07")
    assert run == ManualRun("single", {"region": "north", "n": 2}, DAY, ((dt.date(2016, 1, 5), DAY),))


def test_param_overrides_the_entry_and_stencil_overrides_its_stencil(config: AutoFlowConfig) -> None:
    run = resolve_manual_run(config, "single", "2016-01-07", param_pairs=["n=3", "region=2016-01-01"], stencil_text="[0]")
    assert run.parameters == {"region": dt.date(2016, 1, 1), "n": 3}  # values read as YAML
    assert run.date_ranges == ((DAY, DAY),)


def test_entry_picks_one_of_several(config: AutoFlowConfig) -> None:
    second = resolve_manual_run(config, "double", "2016-01-07", entry_number=2)
    assert second.parameters == {"region": "south", "n": 5} and second.date_ranges == ((dt.date(2016, 1, 6),) * 2,)
    first = resolve_manual_run(config, "double", "2016-01-07", entry_number=1, param_pairs=["n=9"])
    assert first.parameters == {"region": "north", "n": 9} and first.date_ranges == ((DAY, DAY),)


def test_no_sensor_entry_takes_parameters_from_the_command_line(config: AutoFlowConfig) -> None:
    run = resolve_manual_run(config, "adhoc", "2016-01-07", param_pairs=["region=east", "n=4"])
    assert run.parameters == {"region": "east", "n": 4} and run.date_ranges == ((DAY, DAY),)


@pytest.mark.parametrize(
    ("workflow", "kwargs", "message"),
    [
        ("double", {}, "workflow double has 2 sensor entries; pick one with --entry 1 (region=north, n=1) or --entry 2 (region=south, n=5)"),
        ("double", {"entry_number": 3}, "--entry 3: workflow double has 2 sensor entries; pick a number from 1 to 2"),
        ("adhoc", {"entry_number": 1, "param_pairs": ["region=x", "n=1"]}, "--entry 1: workflow adhoc has no sensor entry; leave out --entry"),
        ("adhoc", {"param_pairs": ["n=1"]}, "missing parameter(s) region: pass each as --param NAME=VALUE"),
        ("single", {"param_pairs": ["m=1"]}, "parameter 'm' is not used by this workflow (its parameters: n, region)"),
        ("single", {"param_pairs": ["n"]}, "--param 'n' must look like NAME=VALUE"),
        ("nope", {}, "unknown workflow 'nope'; workflows.yml defines: single, double, adhoc"),
    ],
)
def test_mistakes_say_what_to_do(config: AutoFlowConfig, workflow: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_manual_run(config, workflow, "2016-01-07", **kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)
