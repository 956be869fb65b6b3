"""Write small notebooks for tests.

Cells are strings of code; a string starting with ``"md:"`` is a markdown cell, and a
:func:`raw` string is a raw cell. The parameters cell (tagged ``parameters``, as papermill
expects) comes first::

    write_notebook(tmp_path / "a.ipynb", "print(x)", "md:# A heading", parameters="x = 1")
"""

from __future__ import annotations

from pathlib import Path

import nbformat

MARKDOWN = "md:"


def cell(source: str, *, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """A code cell, or a markdown cell when ``source`` starts with ``md:``."""
    if source.startswith(MARKDOWN):
        made = nbformat.v4.new_markdown_cell(source[len(MARKDOWN) :].lstrip("\n"))
    else:
        made = nbformat.v4.new_code_cell(source)
    if tags:
        made.metadata["tags"] = list(tags)
    return made


def make_notebook(*cells: str | nbformat.NotebookNode, parameters: str | None = None) -> nbformat.NotebookNode:
    """A notebook of ``cells`` (strings or ready-made cells), after a ``parameters`` cell if given."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    if parameters is not None:
        nb.cells.append(cell(parameters, tags=("parameters",)))
    nb.cells.extend(c if isinstance(c, nbformat.NotebookNode) else cell(c) for c in cells)
    return nb


def write_notebook(path: Path, *cells: str | nbformat.NotebookNode, parameters: str | None = None) -> Path:
    """Write :func:`make_notebook` of ``cells`` to ``path`` (parents created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(make_notebook(*cells, parameters=parameters), path)
    return path
