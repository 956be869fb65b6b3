"""The names a notebook's parameters cell defines, as the loader reads them (autoflow.spec.notebook_parameters)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autoflow.spec.notebook_parameters import parameters_cell
from tests.configs import notebook_with_parameters


def names(source: str) -> tuple[str, ...] | None:
    cell = parameters_cell(notebook_with_parameters(source))
    assert cell is not None
    return cell.names


def test_assignments_inside_blocks_define_names() -> None:
    assert names("y = 2\nif True:\n    x = 1") == ("y", "x")
    source = "try:\n    import yaml\n    a = 1\nexcept ImportError:\n    b = 2\nfinally:\n    c = 3\nwith open('f') as handle:\n    d = 4\nfor i in range(2):\n    e = i\nwhile False:\n    f = 0"
    assert set(names(source) or ()) == {"a", "b", "c", "handle", "d", "i", "e", "f"}


def test_attribute_and_item_assignments_define_nothing() -> None:
    assert names("config.x = 1\nd['k'] = 1\nlimit = 5") == ("limit",)


def test_unpacking_and_definitions() -> None:
    source = "first, *rest = [1, 2]\n[u, v] = 1, 2\ndef helper():\n    hidden = 1\nclass Options:\n    inner = 2"
    # papermill's line reader adds the indented 'hidden' and 'inner' after these
    assert (names(source) or ())[:6] == ("first", "rest", "u", "v", "helper", "Options")


@pytest.mark.parametrize("source", ["a = b = None\nc = 1", "a = dict(\n  x=1,\n)"])
def test_a_name_either_reader_finds_is_defined(source: str) -> None:
    assert "a" in (names(source) or ())


@pytest.mark.parametrize("first", ["import papermill", "pass"], ids=["papermill-imported-first", "private-translators"])
def test_papermill_line_warnings_stay_off_stderr(first: str) -> None:
    """papermill's reader warns about 'a = b = None'; Python's parser reads it, so the warning is noise."""
    script = (
        f"{first}\n"
        "from autoflow.spec.notebook_parameters import parameters_cell\n"
        "from tests.configs import notebook_with_parameters\n"
        "import logging\n"
        "print(parameters_cell(notebook_with_parameters('a = b = None')).names)\n"
        "logging.getLogger('papermill.translators').warning('still on')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "('a', 'b')"
    assert "Unable to parse" not in done.stderr
    if first != "pass":  # the level is restored after the inspection
        assert "still on" in done.stderr
