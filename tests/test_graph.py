"""autoflow/graph.py and ``autoflow graph``: the drawing's nodes and edges are the workflow's."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from autoflow.cli.main import main
from autoflow.graph import render, workflow_dot
from autoflow.spec.models import NotebookSpec, OutputSpec, WorkflowSpec

SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is needed: sudo apt-get install graphviz")


def _workflow() -> WorkflowSpec:
    def nb(label: str, parameters: dict[str, str], report: bool = False) -> NotebookSpec:
        return NotebookSpec(label, f"{label}.ipynb", Path(f"/in/{label}.ipynb"), parameters=parameters, output=OutputSpec() if report else None)

    return WorkflowSpec("flows", {
        "load": nb("load", {"day": "reference_date"}),
        "clean": nb("clean", {"raw": "load"}),
        "stats": nb("stats", {"raw": "load"}),
        "report": nb("report", {"a": "clean", "b": "stats"}, report=True),
    })  # fmt: skip


@needs_dot
def test_svg_nodes_and_edges_match_the_workflow() -> None:
    root = ET.fromstring(render(_workflow(), "svg"))
    nodes = {g.findtext(f"{SVG}title"): g for g in root.iter(f"{SVG}g") if "node" in (g.get("class") or "").split()}
    edges = {g.findtext(f"{SVG}title") for g in root.iter(f"{SVG}g") if g.get("class") == "edge"}
    assert set(nodes) == {"load", "clean", "stats", "report"}
    assert edges == {"load->clean", "load->stats", "clean->report", "stats->report"}
    for label, node in nodes.items():
        texts = [t.text for t in node.iter(f"{SVG}text")]
        assert texts[:2] == [label, f"{label}.ipynb"]
        assert ("→ PDF report" in texts) == (label == "report")
        assert ("report" in (node.get("class") or "").split()) == (label == "report")


def test_dot_needs_no_program() -> None:
    dot = workflow_dot(_workflow())
    assert dot.startswith('digraph flows {') and "load -> clean" in dot and "stats -> report" in dot


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    from tests.configs import VALID, make_inputs

    folder = tmp_path / "inputs"
    folder.mkdir()
    make_inputs(folder)
    (folder / "workflows.yml").write_text(VALID)
    return folder


def test_cli_unknown_workflow_is_a_usage_error(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--inputs", str(inputs), "graph", "nope"]) == 2
    assert capsys.readouterr().err.strip() == "autoflow: error: unknown workflow 'nope'; workflows.yml defines: flows"


@needs_dot
def test_cli_writes_svg(inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "flows.svg"
    assert main(["--inputs", str(inputs), "graph", "flows", "-o", str(out)]) == 0
    assert ET.parse(out).getroot().tag == f"{SVG}svg"
    assert main(["--inputs", str(inputs), "graph", "flows"]) == 0
    assert "run -> report" in capsys.readouterr().out
