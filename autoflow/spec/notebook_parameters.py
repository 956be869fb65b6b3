"""A notebook's ``parameters`` cell as papermill reads it, without a kernel.

papermill injects values in a new cell right after the first cell tagged ``parameters``; with no
such cell it injects them at the top, where the notebook's own assignments overwrite them. The
loader uses this to check the contract between workflows.yml and each notebook at start-up.

papermill finds the cell and the language's translator, whose inspector (what
``papermill.inspection`` uses) lists the names; for a Python cell that parses, Python's own
parser lists them instead, since papermill's line-by-line reader skips ``a = b = None``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import logging
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

PARAMETERS_TAG = "parameters"
#: how to tag a cell, for error messages
HOW_TO_TAG = (
    "in JupyterLab 4 select the cell that assigns the defaults, open the property inspector "
    "(the gear icon, 'Common Tools') and add 'parameters' under Cell Tags"
)
_LIGHT_PACKAGE = "_autoflow_papermill"


@dataclass(frozen=True)
class ParametersCell:
    """The first cell tagged ``parameters``: its index, type and the names papermill finds in it."""

    index: int
    #: names assigned in the cell, in order; None when papermill cannot inspect the language or it is not code
    names: tuple[str, ...] | None
    #: the cell's type: papermill injects after the first tagged cell of any type, but only a code cell's
    #: assignments come before the injected values
    cell_type: str = "code"

    @property
    def is_code(self) -> bool:
        return self.cell_type == "code"


def _translators() -> Any:
    """papermill's translator registry (what ``papermill.inspection`` uses).

    Importing ``papermill`` itself takes about a second (its engines and I/O handlers pull in
    nbclient, jupyter_client, pyarrow...), which ``autoflow validate`` cannot afford; the
    translators need none of that, so when papermill is not loaded yet its ``translators``
    module is loaded on its own, under a private package name.
    """
    loaded: Any = sys.modules.get("papermill.translators") or sys.modules.get(f"{_LIGHT_PACKAGE}.translators")
    if loaded is None:
        try:
            spec = importlib.util.find_spec("papermill")
            if spec is None or not spec.submodule_search_locations:
                raise ImportError("papermill")
            package = types.ModuleType(_LIGHT_PACKAGE)
            package.__path__ = list(spec.submodule_search_locations)
            sys.modules[_LIGHT_PACKAGE] = package
            loaded = importlib.import_module(f"{_LIGHT_PACKAGE}.translators")
        except Exception:  # a papermill laid out differently: pay for the full import
            sys.modules.pop(_LIGHT_PACKAGE, None)
            loaded = importlib.import_module("papermill.translators")
    return loaded.papermill_translators


@contextmanager
def _quiet(translator: Any) -> Iterator[None]:
    """Hide the translator module's "Unable to parse line" warnings: Python's parser reads those lines.

    The same whichever papermill answers (the real one imported earlier, or the private copy).
    """
    logger = logging.getLogger(getattr(translator, "__module__", None) or "papermill.translators")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _source(cell: Mapping[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def parameters_cell(notebook: Mapping[str, Any]) -> ParametersCell | None:
    """The notebook's (JSON content's) first cell tagged ``parameters``, or None when none is."""
    found_cells = notebook.get("cells")
    cells: list[Any] = found_cells if isinstance(found_cells, list) else []
    index = next(
        (
            i
            for i, cell in enumerate(cells)
            if isinstance(cell, dict)
            and isinstance(cell.get("metadata"), dict)
            and isinstance(cell["metadata"].get("tags"), list)
            and PARAMETERS_TAG in cell["metadata"]["tags"]
        ),
        -1,
    )
    if index < 0:
        return None
    cell_type = str(cells[index].get("cell_type"))
    if cell_type != "code":
        return ParametersCell(index, None, cell_type)
    metadata = _mapping(notebook.get("metadata"))
    kernelspec = _mapping(metadata.get("kernelspec"))
    language_info = _mapping(metadata.get("language_info"))
    kernel_name = kernelspec.get("name") or "python3"
    language = language_info.get("name") or kernelspec.get("language") or "python"
    source = _source(cells[index])
    try:
        translator = _translators().find_translator(kernel_name, language)
        with _quiet(translator):
            found = translator.inspect({"source": source})
    except Exception:  # no translator for the language, or it cannot inspect: names unknown
        return ParametersCell(index, None)
    names = [p.name for p in found]
    if translator.__name__ == "PythonTranslator":  # both readers miss some forms: a name either finds is defined
        names = (_python_assignments(source) or []) + names
    return ParametersCell(index, tuple(dict.fromkeys(names)))


def _python_assignments(source: str) -> list[str] | None:
    """Names a Python cell assigns at its top level, or None when it does not parse.

    papermill's line reader skips ``a = b = None`` and lines inside ``if``/``try``/``with``
    blocks; Python's own parser reads them. Assignments inside those blocks count (not inside a
    ``def`` or ``class`` body, though the function's or class's name does); ``config.x = 1`` or
    ``d['k'] = 1`` assign to an existing object and define nothing.
    """
    try:
        tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    except (SyntaxError, ValueError):
        return None
    return _statement_names(tree.body)


def _statement_names(statements: list[ast.stmt]) -> list[str]:
    names: list[str] = []
    for statement in statements:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(statement.name)
        elif isinstance(statement, ast.Assign):
            for target in statement.targets:
                names += _target_names(target)
        elif isinstance(statement, (ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor)):
            names += _target_names(statement.target)
        if isinstance(statement, (ast.With, ast.AsyncWith)):
            for item in statement.items:
                names += _target_names(item.optional_vars) if item.optional_vars is not None else []
        if isinstance(statement, (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try, ast.TryStar)):
            for block in ("body", "orelse", "finalbody"):
                names += _statement_names(getattr(statement, block, []))
            for handler in getattr(statement, "handlers", []):
                names += _statement_names(handler.body)
    return names


def _target_names(target: ast.expr) -> list[str]:
    """The names an assignment target binds: through tuples, lists and ``*rest``, not attributes or items."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [name for element in target.elts for name in _target_names(element)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


__all__ = ["HOW_TO_TAG", "PARAMETERS_TAG", "ParametersCell", "parameters_cell"]
