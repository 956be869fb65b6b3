"""Notebook parameters and output names (pure; no kernel)."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from autoflow.errors import UsageError
from autoflow.notebooks import build_parameters, output_stem
from autoflow.notebooks.failures import _failing_line
from autoflow.parameters import params_hash
from autoflow.spec.models import NotebookSpec, frozen_map

REF = dt.date(2016, 1, 7)
RANGES = [(dt.date(2016, 1, 1), dt.date(2016, 1, 3)), (dt.date(2016, 1, 4), dt.date(2016, 1, 4))]
STARTED = dt.datetime(2026, 11, 23, 19, 15, 0, 123456, tzinfo=dt.timezone.utc)


def spec(**parameters: str) -> NotebookSpec:
    return NotebookSpec(
        label="report", filename="report.ipynb", path=Path("/inputs/report.ipynb"), parameters=frozen_map(parameters)
    )


def build(notebook: NotebookSpec, **overrides: object) -> dict[str, object]:
    kwargs: dict[str, object] = dict(
        workflow_parameters={},
        reference_date=REF,
        date_ranges=RANGES,
        flowapi_url="http://flowapi:9090",
        upstream_paths={},
    )
    kwargs.update(overrides)
    return build_parameters(notebook, **kwargs)  # type: ignore[arg-type]


def test_automatic_parameters_are_iso_strings_and_the_url() -> None:
    values = build(spec(ref="reference_date", ranges="date_ranges", url="flowapi_url"))
    assert values == {
        "ref": "2016-01-07",
        "ranges": [["2016-01-01", "2016-01-03"], ["2016-01-04", "2016-01-04"]],
        "url": "http://flowapi:9090",
    }


def test_missing_flowapi_url_is_passed_as_none() -> None:
    assert build(spec(url="flowapi_url"), flowapi_url=None) == {"url": None}


def test_upstream_label_becomes_the_absolute_path_as_text(tmp_path: Path) -> None:
    executed = tmp_path / "notebooks" / "run_flows__w__2016-01-07.ipynb"
    values = build(spec(first="run_flows"), upstream_paths={"run_flows": executed})
    assert values == {"first": str(executed)}
    assert isinstance(values["first"], str) and Path(values["first"]).is_absolute()


def test_relative_upstream_path_is_made_absolute() -> None:
    values = build(spec(first="run_flows"), upstream_paths={"run_flows": Path("out/x.ipynb")})
    assert Path(str(values["first"])).is_absolute()
    assert str(values["first"]).endswith("out/x.ipynb")


def test_workflow_parameters_are_made_json_safe() -> None:
    params = {
        "day": dt.date(2016, 1, 2),
        "day_text": "2016-01-02",
        "when": dt.datetime(2016, 1, 2, 3, 4, 5),
        "nested": {"dates": (dt.date(2016, 1, 1), 3), "flag": True, "none": None},
        "ratio": 0.25,
        "count": 12,
    }
    nb = spec(a="day", b="day_text", c="when", d="nested", e="ratio", f="count")
    values = build(nb, workflow_parameters=params)
    assert values == {
        "a": "2016-01-02",
        "b": "2016-01-02",
        "c": "2016-01-02T03:04:05",
        "d": {"dates": ["2016-01-01", 3], "flag": True, "none": None},
        "e": 0.25,
        "f": 12,
    }
    assert json.loads(json.dumps(values)) == values


def test_label_wins_over_a_workflow_parameter_of_the_same_name(tmp_path: Path) -> None:
    values = build(
        spec(x="other"), workflow_parameters={"other": "text"}, upstream_paths={"other": tmp_path / "o.ipynb"}
    )
    assert values == {"x": str(tmp_path / "o.ipynb")}


def test_unknown_reference_is_a_usage_error_naming_it() -> None:
    with pytest.raises(UsageError) as caught:
        build(spec(where="country"), workflow_parameters={"region": "x"})
    message = str(caught.value)
    assert "'country'" in message and "'where'" in message and "'report'" in message
    assert "\n" not in message


def test_unsupported_workflow_parameter_type_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="'blob'"):
        build(spec(b="blob"), workflow_parameters={"blob": object()})


def test_no_parameters_gives_an_empty_mapping() -> None:
    assert build(spec()) == {}


# --- output_stem ---------------------------------------------------------------------------


def test_output_stem_format() -> None:
    params = {"country": "nepal", "day": dt.date(2016, 1, 1)}
    stem = output_stem("flows_report.ipynb", "daily-flows", REF, params, STARTED)
    assert stem == f"flows_report__daily-flows__2016-01-07__{params_hash(params)[:8]}__20261123T191500123456Z"


def test_output_stem_converts_to_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    stem = output_stem("a.ipynb", "w", REF, {}, dt.datetime(2026, 1, 1, 1, 0, 0, 5, tzinfo=plus_two))
    assert stem.endswith("__20251231T230000000005Z")


def test_output_stem_rejects_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        output_stem("a.ipynb", "w", REF, {}, dt.datetime(2026, 1, 1))


@pytest.mark.parametrize(
    "workflow",
    ["a/b", "../../etc", "with space", "tab\tand\nnewline", "x__y___z", "Übersicht: 2016?", "*", "", "a" * 300, "é/..\\c:"],
)
def test_output_stem_is_filename_safe(workflow: str) -> None:
    stem = output_stem("my notebook.ipynb", workflow, REF, {}, STARTED)
    fields = stem.split("__")
    assert len(fields) == 5, stem
    assert re.fullmatch(r"[A-Za-z0-9._-]+", stem), stem
    assert fields[1] and not fields[1].startswith("."), stem
    assert len(stem.encode()) < 200
    assert fields[0] == "my-notebook"


def test_output_stem_keeps_plain_names_readable() -> None:
    assert output_stem("run_flows.ipynb", "Übersicht 2016", REF, {}, STARTED).split("__")[:2] == [
        "run_flows",
        "Ubersicht-2016",
    ]


def test_output_stem_hash_tells_dates_from_strings() -> None:
    as_date = output_stem("a.ipynb", "w", REF, {"day": dt.date(2016, 1, 1)}, STARTED)
    as_text = output_stem("a.ipynb", "w", REF, {"day": "2016-01-01"}, STARTED)
    assert as_date != as_text
    assert as_date.split("__")[3] != as_text.split("__")[3]


def test_output_stem_hash_ignores_key_order() -> None:
    one = output_stem("a.ipynb", "w", REF, {"a": 1, "b": 2}, STARTED)
    two = output_stem("a.ipynb", "w", REF, {"b": 2, "a": 1}, STARTED)
    assert one == two


# IPython's tracebacks as papermill reports them (PapermillExecutionError.traceback), colours and all
TRACEBACK_IN_THE_CELL = [
    "\x1b[31m-----------\x1b[39m",
    "\x1b[31mZeroDivisionError\x1b[39m                         Traceback (most recent call last)",
    "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[5]\x1b[39m\x1b[32m, line 4\x1b[39m\n\x1b[32m      1\x1b[39m y = \x1b[32m1\x1b[39m\n"
    "\x1b[32m----> \x1b[39m\x1b[32m4\x1b[39m total = calls / days\n",
    "\x1b[31mZeroDivisionError\x1b[39m: division by zero",
]
TRACEBACK_IN_A_FUNCTION_OF_ANOTHER_CELL = [
    "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[5]\x1b[39m\x1b[32m, line 1\x1b[39m\n\x1b[32m----> \x1b[39m\x1b[32m1\x1b[39m print(f(\x1b[32m1\x1b[39m))\n",
    "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[4]\x1b[39m\x1b[32m, line 2\x1b[39m, in \x1b[36mf\x1b[39m\x1b[34m(x)\x1b[39m\n"
    "\x1b[32m      1\x1b[39m \x1b[38;5;28;01mdef\x1b[39;00m f(x):\n\x1b[32m----> \x1b[39m\x1b[32m2\x1b[39m     \x1b[38;5;28;01mreturn\x1b[39;00m x / days\n",
    "\x1b[36mFile \x1b[39m\x1b[32m/usr/lib/python3.11/json/decoder.py:337\x1b[39m, in \x1b[36mdecode\x1b[39m\n\x1b[32m--> \x1b[39m\x1b[32m337\x1b[39m     obj = 1\n",
    "\x1b[31mZeroDivisionError\x1b[39m: division by zero",
]
SYNTAX_ERROR = ["  \x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[3]\x1b[39m\x1b[32m, line 1\x1b[39m\n\x1b[31m    \x1b[39m\x1b[31mx = (1\x1b[39m\n          ^\n\x1b[31mSyntaxError\x1b[39m\x1b[31m:\x1b[39m incomplete input\n"]


@pytest.mark.parametrize(
    "traceback, count, expected",
    [
        (TRACEBACK_IN_THE_CELL, 5, "line 4: `total = calls / days`"),
        (TRACEBACK_IN_A_FUNCTION_OF_ANOTHER_CELL, 5, "at line 2 of In [4]: `return x / days`"),
        (SYNTAX_ERROR, 3, "line 1: `x = (1`"),
        (["\x1b[31mKeyboardInterrupt\x1b[39m: "], 2, None),
    ],
)
def test_the_failing_line_is_the_last_frame_in_the_notebooks_code(traceback: list[str], count: int, expected: str | None) -> None:
    assert _failing_line(traceback, count) == expected
