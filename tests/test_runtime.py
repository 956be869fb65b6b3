"""RunRuntime: one config and one run store for the workflow runs of a process."""

from __future__ import annotations

import os
from pathlib import Path

from autoflow.runtime import RunRuntime
from autoflow.settings import Settings
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
