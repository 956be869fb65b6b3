"""A workflow's notebook dependency graph, drawn with Graphviz.

Nodes are notebooks (label and file; those with a report are marked), edges run from the
notebook read to the notebook reading it. :func:`workflow_dot` is pure; :func:`render` needs
Graphviz's ``dot`` program and raises :class:`GraphError` saying how to install it.
"""

from __future__ import annotations

import shutil
import subprocess

import graphviz

from autoflow.errors import AutoFlowError
from autoflow.redaction import environment_without_secrets
from autoflow.spec.models import WorkflowSpec

#: output formats ``render`` produces (besides DOT itself, which needs no program)
FORMATS = ("svg", "png", "dot")
INSTALL_HINT = "install Graphviz's dot program: sudo apt-get install graphviz (Debian/Ubuntu)"
#: seconds ``dot`` may take for one graph
DOT_TIMEOUT = 60


class GraphError(AutoFlowError):
    """The graph could not be drawn (Graphviz missing or failing)."""


def workflow_graph(workflow: WorkflowSpec) -> graphviz.Digraph:
    """The dependency graph of ``workflow``'s notebooks, in execution order."""
    graph = graphviz.Digraph(name=workflow.name, graph_attr={"rankdir": "LR", "label": workflow.name, "labelloc": "t", "fontname": "sans-serif"})
    graph.attr("node", shape="box", style="rounded,filled", fillcolor="#eef2f7", color="#4a5d7a", fontname="sans-serif")
    graph.attr("edge", color="#4a5d7a")
    for label in workflow.execution_order():
        notebook = workflow.notebooks[label]
        lines = [label, notebook.filename]
        attributes: dict[str, str] = {}
        if notebook.output is not None:
            lines.append(f"→ {' + '.join(f.upper() for f in notebook.output.formats)} report")
            attributes = {"shape": "note", "fillcolor": "#fff4d6", "color": "#a06a00", "class": "report"}
        graph.node(label, "\\n".join(lines), **attributes)
    for label in workflow.execution_order():
        for dependency in workflow.dependencies(label):
            graph.edge(dependency, label)
    return graph


def workflow_dot(workflow: WorkflowSpec) -> str:
    """The graph as DOT source (needs no Graphviz program)."""
    return str(workflow_graph(workflow).source)


def render(workflow: WorkflowSpec, fmt: str = "svg") -> bytes:
    """The graph drawn as ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise GraphError(f"cannot draw a graph as {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "dot":
        return workflow_dot(workflow).encode()
    dot = shutil.which("dot")
    if dot is None:
        raise GraphError(f"drawing a workflow graph needs Graphviz; {INSTALL_HINT}")
    # our own call rather than graphviz's pipe(): the program gets no secret from our environment
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}"], input=workflow_dot(workflow).encode(), capture_output=True, timeout=DOT_TIMEOUT,
            env=environment_without_secrets(), check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GraphError(f"Graphviz could not draw {workflow.name}: {exc}; {INSTALL_HINT}") from None
    if done.returncode != 0:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or [f"exit status {done.returncode}"])[0]
        raise GraphError(f"Graphviz could not draw {workflow.name}: {why}; {INSTALL_HINT}")
    return done.stdout


def svg_for_html(workflow: WorkflowSpec) -> str:
    """The SVG drawing without its XML prologue, for embedding in an HTML page."""
    text = render(workflow, "svg").decode()
    start = text.find("<svg")
    return text[start:] if start >= 0 else text
