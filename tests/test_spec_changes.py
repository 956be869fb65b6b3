"""describe_changes: what changed between two configurations, in the words of the reload log line."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoflow.spec.changes import describe_changes
from autoflow.spec.loader import load_config_text
from autoflow.spec.models import AutoFlowConfig
from tests.configs import VALID, make_inputs

WEEKLY = """\
  - name: weekly
    notebooks:
      only: {filename: b.ipynb, parameters: {upstream: region}}
"""
WEEKLY_ENTRY = """\
    - workflow_name: weekly
      parameters: {region: north}
"""


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return make_inputs(tmp_path)


def load(inputs: Path, text: str) -> AutoFlowConfig:
    return load_config_text(text.encode(), inputs_dir=inputs)


def with_weekly(text: str) -> str:
    """``text`` with the workflow 'weekly' and its sensor entry (region=north) added."""
    return text.replace("available_dates_sensor:\n", WEEKLY + "available_dates_sensor:\n") + WEEKLY_ENTRY


def test_equal_configurations_have_no_changes_even_when_blocks_moved(inputs: Path) -> None:
    assert describe_changes(load(inputs, VALID), load(inputs, VALID)) == []
    moved = "# a comment moves every line down\n\n" + VALID.replace("  cdr_types: [calls, sms]\n", "").replace(
        '  schedule: "0 2 * * *"\n', '  cdr_types: [calls, sms]\n  schedule: "0 2 * * *"\n'
    )
    assert describe_changes(load(inputs, VALID), load(inputs, moved)) == []  # positions are not compared


def test_added_and_removed_workflows_and_entries_are_named(inputs: Path) -> None:
    old, new = load(inputs, VALID), load(inputs, with_weekly(VALID))
    assert describe_changes(old, new) == ["workflow 'weekly' added", "sensor entry 'weekly' (region=north) added"]
    assert describe_changes(new, old) == ["workflow 'weekly' removed", "sensor entry 'weekly' (region=north) removed"]


def test_a_changed_entry_names_its_fields_and_new_parameters_are_another_entry(inputs: Path) -> None:
    old = load(inputs, with_weekly(VALID))
    stencil = load(inputs, with_weekly(VALID).replace("      parameters: {region: north}\n", "      parameters: {region: north}\n      date_stencil: [[-1, 0]]\n      max_attempts: 5\n"))
    assert describe_changes(old, stencil) == ["sensor entry 'weekly' (region=north) changed: date_stencil, max_attempts"]
    south = load(inputs, with_weekly(VALID).replace("{region: north}", "{region: south}"))
    assert describe_changes(old, south) == ["sensor entry 'weekly' (region=south) added", "sensor entry 'weekly' (region=north) removed"]


def test_changed_workflow_names_its_notebooks(inputs: Path) -> None:
    old = load(inputs, VALID)
    new = load(inputs, VALID.replace("        timeout: 600\n", "        timeout: 900\n"))
    assert describe_changes(old, new) == ["workflow 'flows' changed (notebooks: 'report' changed)"]


def test_schedule_source_and_the_other_blocks(inputs: Path) -> None:
    old = load(inputs, VALID)
    text = (
        VALID.replace('"0 2 * * *"', "'*/5 * * * *'")
        .replace("  cdr_types: [calls, sms]\n", "  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}\n  max_runs_per_tick: 3\n")
        + "notifications:\n  - url: json://localhost:9/hook\nreport: {organisation: Flowminder}\n"
    )
    assert describe_changes(old, load(inputs, text)) == [
        "schedule '0 2 * * *' → '*/5 * * * *'",
        "source FlowAPI (calls, sms) → files matching 'data/{date:%Y-%m-%d}.csv'",
        "max_runs_per_tick None → 3",
        "notifications changed (0 targets → 1 target)",
        "report block changed",
    ]
    null = load(inputs, VALID.replace('"0 2 * * *"', "null"))
    assert describe_changes(old, null) == ["schedule '0 2 * * *' → null"]
