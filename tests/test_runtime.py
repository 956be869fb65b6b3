"""RunRuntime: one config and one run store for the workflow runs of a process."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from autoflow.errors import ConfigError
from autoflow.notifications import NotificationError
from autoflow.runtime import RunRuntime
from autoflow.settings import Settings
from autoflow.spec.loader import load_config, load_config_text
from autoflow.store import RunStore
from tests.nbfactory import write_notebook

WORKFLOWS = "workflows:\n  - name: {name}\n    notebooks:\n      a: {{filename: a.ipynb}}\navailable_dates_sensor: {{schedule: null, workflows: [{{workflow_name: {name}}}]}}\n"


def test_the_config_is_reused_until_workflows_yml_changes_and_close_closes_only_its_own_store(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    write_notebook(inputs / "a.ipynb", "print(1)", parameters="x = 1")
    (inputs / "workflows.yml").write_text(WORKFLOWS.format(name="first"))
    settings = Settings(inputs_dir_raw=str(inputs), outputs_dir_raw=str(tmp_path / "out"))
    runtime = RunRuntime(settings)
    config = runtime.config()
    assert runtime.config() is config and list(config.workflows) == ["first"]
    (inputs / "workflows.yml").write_text(WORKFLOWS.format(name="second"))
    os.utime(inputs / "workflows.yml", ns=(1, 1))  # a change even within the clock's resolution
    assert list(runtime.config().workflows) == ["second"]
    store = runtime.store
    assert runtime.store is store and runtime.serves(settings)
    runtime.close()
    assert runtime.store is not store  # closed, and a new one on the next use
    runtime.close()
    with RunStore(settings.db_url) as borrowed:
        shared = RunRuntime(settings, store=borrowed)
        shared.close()
        assert shared.store is borrowed  # the caller's store stays the caller's


def test_a_runtime_given_a_config_runs_with_it_until_given_another(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    write_notebook(inputs / "a.ipynb", "print(1)", parameters="x = 1")
    (inputs / "workflows.yml").write_text(WORKFLOWS.format(name="first"))
    settings = Settings(inputs_dir_raw=str(inputs), outputs_dir_raw=str(tmp_path / "out"), secrets_dir=tmp_path / "no-secrets")
    first = load_config(inputs)
    runtime = RunRuntime(settings, config=first)
    (inputs / "workflows.yml").write_text("workflows: [broken\n")  # what the service has not accepted
    assert runtime.config() is first
    second = load_config_text(WORKFLOWS.format(name="second").encode(), inputs_dir=inputs)
    runtime.use_config(second)
    assert runtime.config() is second

    hooked = load_config_text((WORKFLOWS.format(name="second") + "notifications:\n  - url: json://localhost/${HOOK_TOKEN}\n").encode(), inputs_dir=inputs)
    with pytest.raises(NotificationError, match="HOOK_TOKEN"):
        runtime.use_config(hooked)  # a target it cannot use: nothing changes
    assert runtime.config() is second and runtime.notifier._specs == ()
    (tmp_path / "no-secrets").mkdir()
    (tmp_path / "no-secrets" / "HOOK_TOKEN").write_text("t0ken")
    runtime.use_config(hooked)
    assert runtime.config() is hooked and len(runtime.notifier._specs) == 1
    runtime.close()


def test_a_runtime_following_the_file_keeps_its_valid_config_when_the_file_breaks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inputs = tmp_path / "inputs"
    write_notebook(inputs / "a.ipynb", "print(1)", parameters="x = 1")
    (inputs / "workflows.yml").write_text(WORKFLOWS.format(name="first"))
    settings = Settings(inputs_dir_raw=str(inputs), outputs_dir_raw=str(tmp_path / "out"))
    runtime = RunRuntime(settings)  # a flow run in a process of its own (a Prefect worker's)
    config = runtime.config()
    (inputs / "workflows.yml").write_text(WORKFLOWS.format(name="first").replace("a.ipynb", "gone.ipynb"))
    caplog.set_level(logging.WARNING, logger="autoflow")
    assert runtime.config() is config and runtime.config() is config
    (warning,) = [r.getMessage() for r in caplog.records]  # once per version of the file
    assert "workflows.yml is invalid now (1 problem; first: " in warning and "gone.ipynb" in warning
    assert "keeps the configuration it loaded before" in warning

    with pytest.raises(ConfigError, match="gone.ipynb"):  # a fresh process has nothing to keep
        RunRuntime(settings).config()
