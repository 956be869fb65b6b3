"""The shipped examples: valid workflows.yml, notebooks that take the parameters they are given."""

from __future__ import annotations

import ast
import datetime as dt
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autoflow.spec.loader import load_config
from tests.example_checks import EXPECTED_DATES, LOCAL_EXAMPLE, REPO

EXAMPLES = {"inputs": REPO / "examples" / "inputs", "local": LOCAL_EXAMPLE}


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_passes_validate(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "autoflow", "validate", "--inputs", str(EXAMPLES[name])],
        capture_output=True, text=True, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: 1 workflow:") and "1 PDF report" in done.stdout


def parameters_cell(path: Path) -> set[str]:
    """Names the notebook's ``parameters`` cell assigns (papermill overrides these)."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    return {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets if isinstance(target, ast.Name)}


@pytest.mark.parametrize("name", EXAMPLES)
def test_notebooks_declare_every_parameter_they_are_given(name: str) -> None:
    config = load_config(EXAMPLES[name])
    for workflow in config.workflows.values():
        for notebook in workflow.notebooks.values():
            declared = parameters_cell(notebook.path)
            assert set(notebook.parameters) <= declared, f"{notebook.filename} lacks defaults for {set(notebook.parameters) - declared}"
            nb = nbformat.read(notebook.path, as_version=4)
            assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{notebook.filename}: ship it without outputs"
            for cell in nb.cells:
                if cell.cell_type == "code":  # valid Python, IPython magics aside
                    ast.parse("\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith("%")))


def test_flowkit_example_reads_the_token_from_secrets_not_parameters() -> None:
    config = load_config(EXAMPLES["inputs"])
    assert config.sensor.source.type == "flowapi"
    for notebook in config.workflows["flows-above-normal"].notebooks.values():
        source = "\n".join(c.source for c in nbformat.read(notebook.path, as_version=4).cells)
        assert 'flowclient.connect(\n    url=flowapi_url,\n    token=environ["FLOWAPI_TOKEN"]' in source
        assert "from get_secret_or_env_var import environ" in source
        assert not any("token" in p.lower() for p in notebook.parameters)


def test_local_example_data() -> None:
    """One small CSV per day, 1-10 March 2024, with 6 March missing: the dates the example runs for."""
    files = sorted((LOCAL_EXAMPLE / "data").glob("calls_*.csv"))
    days = [dt.date.fromisoformat(f.stem.removeprefix("calls_")) for f in files]
    assert days == [dt.date(2024, 3, d) for d in range(1, 11) if d != 6]
    assert all(1_000 < f.stat().st_size < 10_000 for f in files)
    assert all(f.read_text().splitlines()[0] == "region,hour,calls,callers" for f in files)
    config = load_config(LOCAL_EXAMPLE)
    assert config.sensor.schedule is None and config.sensor.source.type == "directory"
    entry = config.sensor.workflows[0]
    runnable = [
        d for d in days
        if all(day in days for start, end in entry.date_stencil.as_date_pairs(d) for day in _each_day(start, end))
    ]  # fmt: skip
    assert [d.isoformat() for d in runnable] == list(EXPECTED_DATES)


def _each_day(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def test_outputs_directory_is_empty_but_kept() -> None:
    outputs = REPO / "examples" / "outputs"
    assert (outputs / ".gitignore").read_text().split() == ["*", "!.gitignore"]


def test_validate_rejects_the_local_example_without_its_parameters_tag(tmp_path: Path) -> None:
    """Untagged, papermill would inject the values at the top and the notebook would overwrite them."""
    inputs = tmp_path / "local"
    inputs.mkdir()
    for name in ("workflows.yml", "analyse_calls.ipynb", "daily_report.ipynb"):
        (inputs / name).write_bytes((LOCAL_EXAMPLE / name).read_bytes())
    nb = nbformat.read(inputs / "analyse_calls.ipynb", as_version=4)
    for cell in nb.cells:
        cell.metadata["tags"] = [t for t in cell.metadata.get("tags", []) if t != "parameters"]
    nbformat.write(nb, inputs / "analyse_calls.ipynb")
    done = subprocess.run(
        [sys.executable, "-m", "autoflow", "validate", "--inputs", str(inputs)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("autoflow: error: local/workflows.yml:13:19: notebook 'analysis' (local/analyse_calls.ipynb) has no cell tagged 'parameters'")
    assert "Cell Tags" in done.stderr and "Traceback" not in done.stderr
