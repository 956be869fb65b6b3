"""ConfigReloader and Fingerprint: workflows.yml looked at before every tick, reloaded only when it changed."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import pytest

from autoflow.errors import AutoFlowError
from autoflow.reload import ConfigReloader, fingerprint
from autoflow.spec.loader import CONFIG_FILENAME, files_named_in, load_config
from autoflow.spec.models import AutoFlowConfig
from tests.configs import VALID, make_inputs

WEEKLY = "  - name: weekly\n    notebooks:\n      only: {filename: c.ipynb}\n"
WEEKLY_ENTRY = "    - workflow_name: weekly\n"


def save(inputs: Path, text: str) -> None:
    """Write workflows.yml so that its fingerprint changes even within the clock's resolution."""
    path = inputs / CONFIG_FILENAME
    previous = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(previous + 1_000_000, previous + 1_000_000))


class Harness:
    """A reloader over a real inputs directory, counting loads and recording what it applied."""

    def __init__(self, inputs: Path) -> None:
        self.inputs = inputs
        self.loads = 0
        self.applied: list[AutoFlowConfig] = []
        self.refuse: str | None = None
        self.clock = dt.datetime(2026, 12, 4, 19, 31, tzinfo=dt.timezone.utc)
        self.reloader = ConfigReloader(load_config(inputs, display_name=CONFIG_FILENAME), load=self.load, apply=self.apply, now=lambda: self.clock)

    def load(self) -> AutoFlowConfig:
        self.loads += 1
        return load_config(self.inputs, display_name=CONFIG_FILENAME)

    def apply(self, config: AutoFlowConfig) -> None:
        if self.refuse:
            raise AutoFlowError(self.refuse)
        self.applied.append(config)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    inputs = make_inputs(tmp_path)
    (inputs / CONFIG_FILENAME).write_text(VALID)
    return inputs


@pytest.fixture
def harness(inputs: Path, caplog: pytest.LogCaptureFixture) -> Harness:
    caplog.set_level(logging.DEBUG, logger="autoflow")
    return Harness(inputs)


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "autoflow.reload" and r.levelno == level]


def test_fingerprint_covers_workflows_yml_and_the_files_it_names(inputs: Path) -> None:
    config = load_config(inputs)
    assert config.named_files == {(inputs / n).resolve() for n in ("a.ipynb", "b.ipynb", "custom.tpl")}
    first = fingerprint(inputs / CONFIG_FILENAME, config.named_files)
    assert fingerprint(inputs / CONFIG_FILENAME, config.named_files) == first
    (inputs / "b.ipynb").write_text((inputs / "b.ipynb").read_text() + " ")  # a notebook saved (size)
    second = fingerprint(inputs / CONFIG_FILENAME, config.named_files)
    assert second != first and second.changed_files(first) == ["b.ipynb"]
    os.utime(inputs / "custom.tpl", ns=(1, 1))  # a template touched (mtime)
    assert fingerprint(inputs / CONFIG_FILENAME, config.named_files).changed_files(second) == ["custom.tpl"]
    missing = fingerprint(inputs / CONFIG_FILENAME, [inputs / "c.ipynb"])
    (inputs / "c.ipynb").write_text("{}")
    assert fingerprint(inputs / CONFIG_FILENAME, [inputs / "c.ipynb"]).changed_files(missing) == ["c.ipynb"]
    assert fingerprint(inputs / CONFIG_FILENAME, []).changed_files(missing) == ["c.ipynb"]  # no longer named


def test_files_named_in_reads_an_invalid_file_as_far_as_it_can(inputs: Path) -> None:
    save(inputs, VALID.replace("available_dates_sensor:\n", WEEKLY + "available_dates_sensor:\n") + WEEKLY_ENTRY)
    assert files_named_in(inputs) == {inputs / n for n in ("a.ipynb", "b.ipynb", "custom.tpl", "c.ipynb")}
    save(inputs, "workflows: [unclosed\n")
    assert files_named_in(inputs) == frozenset()


def test_nothing_is_loaded_while_nothing_changed(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    assert [harness.reloader.check() for _ in range(3)] == [False, False, False]
    assert harness.loads == 0 and harness.applied == [] and not caplog.records


def test_a_valid_change_is_applied_and_summarised_once(harness: Harness, inputs: Path, caplog: pytest.LogCaptureFixture) -> None:
    (inputs / "c.ipynb").write_text((inputs / "b.ipynb").read_text())
    save(inputs, VALID.replace("available_dates_sensor:\n", WEEKLY + "available_dates_sensor:\n").replace('"0 2 * * *"', "'*/5 * * * *'") + WEEKLY_ENTRY)
    harness.clock += dt.timedelta(minutes=5)
    assert harness.reloader.check() is True
    (applied,) = harness.applied
    assert list(applied.workflows) == ["flows", "weekly"] and harness.reloader.config is applied
    assert records(caplog, logging.INFO) == [
        "workflows.yml reloaded: workflow 'weekly' added; sensor entry 'weekly' added; schedule '0 2 * * *' → '*/5 * * * *'"
    ]
    assert harness.reloader.state.valid and harness.reloader.state.loaded_at == harness.clock
    assert harness.reloader.check() is False and harness.loads == 1
    (inputs / "c.ipynb").write_text((inputs / "c.ipynb").read_text() + " ")  # a notebook it names is saved
    assert harness.reloader.check() is True and harness.loads == 2
    assert records(caplog, logging.INFO)[-1] == "workflows.yml reloaded: no change to the configuration (files changed: c.ipynb)"


def test_an_invalid_change_is_logged_once_and_the_last_valid_config_kept(harness: Harness, inputs: Path, caplog: pytest.LogCaptureFixture) -> None:
    started = harness.reloader.config
    harness.clock += dt.timedelta(minutes=9)
    save(inputs, VALID.replace("workflow_name: flows", "workflow_name: flow").replace("cdr_types: [calls, sms]", "cdr_types: [calls, sms]]"))
    assert harness.reloader.check() is True
    (error,) = records(caplog, logging.ERROR)
    assert error.startswith("workflows.yml is invalid (1 problem); the service keeps running the configuration loaded at 19:31:00 UTC")
    assert "\nworkflows.yml:22:26: YAML syntax error" in error
    state = harness.reloader.state
    assert not state.valid and state.problems == tuple(error.split("\n")[1:]) and state.invalid_since == harness.clock
    assert state.loaded_at == dt.datetime(2026, 12, 4, 19, 31, tzinfo=dt.timezone.utc)
    assert harness.applied == [] and harness.reloader.config is started

    for _ in range(3):  # every tick: no new error, no load
        assert harness.reloader.check() is False
    assert len(records(caplog, logging.ERROR)) == 1 and harness.loads == 1
    assert "unchanged and still invalid" in records(caplog, logging.DEBUG)[-1]

    harness.clock += dt.timedelta(minutes=1)
    save(inputs, VALID.replace("workflow_name: flows", "workflow_name: flow"))  # now a semantic error
    assert harness.reloader.check() is True
    again = records(caplog, logging.ERROR)[-1]
    assert again.startswith("workflows.yml changed but is still invalid (1 problem)")
    assert "\nworkflows.yml:24:22: sensor entry names workflow 'flow', which is not defined (did you mean 'flows'?)" in again
    assert harness.reloader.state.invalid_since == harness.clock - dt.timedelta(minutes=1)  # since it first broke

    save(inputs, VALID)
    assert harness.reloader.check() is True
    assert records(caplog, logging.INFO)[-1] == "workflows.yml is valid again; reloaded: no change to the configuration"
    assert harness.reloader.state.valid and harness.reloader.state.problems == () and len(harness.applied) == 1


def test_a_notebook_named_by_an_invalid_file_is_watched_until_it_appears(harness: Harness, inputs: Path, caplog: pytest.LogCaptureFixture) -> None:
    save(inputs, VALID.replace("available_dates_sensor:\n", WEEKLY + "available_dates_sensor:\n") + WEEKLY_ENTRY)
    assert harness.reloader.check() is True
    assert "'c.ipynb' does not exist" in records(caplog, logging.ERROR)[-1]
    assert harness.reloader.check() is False
    (inputs / "c.ipynb").write_text((inputs / "b.ipynb").read_text())  # workflows.yml itself is unchanged
    assert harness.reloader.check() is True
    assert records(caplog, logging.INFO)[-1] == (
        "workflows.yml is valid again; reloaded: workflow 'weekly' added; sensor entry 'weekly' added (files changed: c.ipynb)"
    )


def test_schedule_null_keeps_the_running_schedule_and_applies_the_rest(harness: Harness, inputs: Path, caplog: pytest.LogCaptureFixture) -> None:
    save(inputs, VALID.replace('"0 2 * * *"', "null").replace("Nepal", "Peru"))
    assert harness.reloader.check() is True
    (warning,) = records(caplog, logging.WARNING)
    assert "'schedule: null'" in warning and "cannot apply to a running service; keeping the schedule '0 2 * * *'" in warning
    (applied,) = harness.applied
    assert applied.sensor.schedule == "0 2 * * *" and applied.sensor.workflows[0].parameters == {"country_name": "Peru"}
    assert records(caplog, logging.INFO) == [
        "workflows.yml reloaded: sensor entry 'flows' (country_name=Peru) added; sensor entry 'flows' (country_name=Nepal) removed"
    ]


def test_a_change_that_cannot_be_applied_is_tried_again_at_each_check(harness: Harness, inputs: Path, caplog: pytest.LogCaptureFixture) -> None:
    harness.refuse = "workflows.yml:31:5: notification URL refers to ${HOOK_TOKEN}, which is neither a Docker secret nor an environment variable"
    save(inputs, VALID.replace("Nepal", "Peru"))
    harness.clock += dt.timedelta(days=1)
    assert harness.reloader.check() is True
    (error,) = records(caplog, logging.ERROR)
    assert error.startswith(
        "workflows.yml is valid but cannot be applied (1 problem); the service keeps running the configuration loaded at 2026-12-04 19:31:00 UTC"
    )  # another day: with the date
    assert error.endswith(harness.refuse)
    assert not harness.reloader.state.valid and harness.reloader.state.problems == (harness.refuse,)
    assert harness.reloader.check() is False and len(records(caplog, logging.ERROR)) == 1  # tried again, said once
    harness.refuse = None  # the secret was created
    assert harness.reloader.check() is True and harness.loads == 1
    assert records(caplog, logging.INFO)[-1].startswith("workflows.yml is valid again; reloaded: sensor entry 'flows' (country_name=Peru) added")
    assert harness.reloader.state.valid and harness.applied[0].sensor.workflows[0].parameters == {"country_name": "Peru"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "- just a list\n",
        "workflows: 3\n",
        "workflows: [1, [2], {notebooks: [a.ipynb]}, {notebooks: {a: 1, b: [x], c: {filename: [1]}}}]\n",
        "workflows: [{notebooks: {a: {filename: \"x\\0y.ipynb\", output: [template]}, b: {output: {template: 7}}}}]\n",
        "workflows: [{notebooks: {a: {filename: a.ipynb, output: {template: t.tpl}}}}]\n",
        "&a [*a]\n",
    ],
)
def test_files_named_in_never_fails(inputs: Path, text: str) -> None:
    save(inputs, text)
    named = files_named_in(inputs)
    assert named <= {inputs / "a.ipynb", inputs / "t.tpl"}
    assert (named == {inputs / "a.ipynb", inputs / "t.tpl"}) == ("t.tpl" in text)
