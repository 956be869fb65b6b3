"""Every workflows.yml rule, each checked with the line (and column) it reports."""

import datetime as dt
import json
import os
import textwrap
from pathlib import Path

import pytest

from autoflow import DateStencil
from autoflow.errors import ConfigError
from autoflow.spec.loader import load_config, load_config_text
from autoflow.spec.models import AutoFlowConfig, ReportSpec
from autoflow.spec.schedule import describe
from tests.configs import NOTEBOOK, VALID, make_inputs, notebook_with_parameters

@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return make_inputs(tmp_path)


def load(inputs: Path, text: str) -> AutoFlowConfig:
    return load_config_text(textwrap.dedent(text).encode(), inputs_dir=inputs)


def problems(inputs: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(inputs, text)
    return [str(p) for p in info.value.problems]


def has(found: list[str], line: int, *fragments: str, col: int | None = None) -> bool:
    prefix = f"workflows.yml:{line}:" + (f"{col}:" if col else "")
    return any(p.startswith(prefix) and all(f in p for f in fragments) for p in found)


def test_valid_file_builds_typed_models(inputs: Path) -> None:
    config = load(inputs, VALID)
    wf = config.workflows["flows"]
    assert list(wf.notebooks) == ["run", "report"]
    assert wf.execution_order() == ("run", "report")
    assert wf.dependencies("report") == ("run",)
    assert wf.workflow_parameters == {"country_name"}
    report = wf.notebooks["report"]
    assert report.path == (inputs / "b.ipynb").resolve()
    assert report.output is not None and report.output.template == (inputs / "custom.tpl").resolve()
    assert report.timeout == 600.0 and report.retries == 2
    entry = config.sensor.workflows[0]
    assert entry.parameters == {"country_name": "Nepal"}
    assert entry.earliest_date == dt.date(2016, 1, 1)
    assert entry.date_stencil == DateStencil([[dt.date(2016, 1, 1), dt.date(2016, 1, 3)], -3, [-2, 0]])
    assert config.sensor.schedule == "0 2 * * *"
    assert config.sensor.cdr_types == ("calls", "sms")
    assert config.sensor.source.type == "flowapi"


def test_models_are_frozen(inputs: Path) -> None:
    config = load(inputs, VALID)
    with pytest.raises(AttributeError):
        config.sensor.schedule = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.workflows["x"] = None  # type: ignore[index]


def test_minimal_file_defaults(inputs: Path) -> None:
    config = load(
        inputs,
        """
        workflows:
          - name: w
            notebooks:
              a: {filename: a.ipynb}
        available_dates_sensor:
          schedule: null
          workflows:
            - workflow_name: w
        """,
    )
    entry = config.sensor.workflows[0]
    assert config.sensor.schedule is None and config.sensor.cdr_types is None
    assert entry.date_stencil == DateStencil([0]) and entry.earliest_date is None
    assert config.workflows["w"].notebooks["a"].output is None


def test_empty_file(inputs: Path) -> None:
    assert has(problems(inputs, ""), 1, "empty", col=1)
    assert has(problems(inputs, "# just a comment\n"), 1, "empty")


def test_yaml_syntax_error_position(inputs: Path) -> None:
    found = problems(inputs, "workflows: [a, b\navailable_dates_sensor: 1\n")
    assert len(found) == 1 and found[0].startswith("workflows.yml:2:") and "YAML syntax error" in found[0]


def test_duplicate_key_is_a_syntax_error(inputs: Path) -> None:
    found = problems(inputs, "workflows: []\nworkflows: []\n")
    assert has(found, 2, "duplicate key")


def test_not_utf8(inputs: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(b"workflows:\n  - name: caf\xe9\n", inputs_dir=inputs)
    assert str(info.value).startswith("workflows.yml:2:14:") and "UTF-8" in str(info.value)


def test_missing_sections_and_wrong_top_type(inputs: Path) -> None:
    found = problems(inputs, "workflows: []\n")
    assert has(found, 1, "'workflows' must be a non-empty list")
    assert has(found, 1, "missing the required key 'available_dates_sensor'")
    assert has(problems(inputs, "- 1\n- 2\n"), 1, "must be a mapping")


def test_unknown_keys_with_suggestion(inputs: Path) -> None:
    text = VALID.replace("    notebooks:\n", "    notebook:\n", 1).replace("  schedule:", "  schedul:")
    found = problems(inputs, text)
    assert has(found, 3, "unknown key 'notebook'", "did you mean 'notebooks'", col=5)
    assert has(found, 21, "unknown key 'schedul'", "did you mean 'schedule'", col=3)
    # one typo, one problem: not also "missing 'notebooks'", nor "workflow 'flows' is not defined"
    assert len(found) == 2, found


def test_misspelt_workflows_section_is_one_problem(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("workflows:\n  - name", "workflow:\n  - name"))
    assert len(found) == 1, found
    assert has(found, 1, "unknown key 'workflow'", "did you mean 'workflows'", col=1)


def test_workflow_without_notebooks_is_not_called_undefined(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("    notebooks:\n", "    notebooks_: 1\n    unused:\n", 1))
    assert not any("not defined" in p for p in found), found


def test_wrong_types(inputs: Path) -> None:
    text = VALID.replace("timeout: 600", "timeout: soon").replace("retries: 2", "retries: 1.5")
    text = text.replace("cdr_types: [calls, sms]", "cdr_types: calls").replace("name: flows", "name: [flows]")
    found = problems(inputs, text)
    assert has(found, 2, "workflow 'name' must be a non-empty string, not a list")
    assert has(found, 18, "'timeout'", "greater than 0")
    assert has(found, 19, "'retries'", "whole number")
    assert has(found, 22, "'cdr_types' must be a non-empty list")


def test_every_problem_reported_at_once(inputs: Path) -> None:
    text = VALID.replace("a.ipynb", "missing.ipynb").replace("format: pdf", "format: docx").replace("sms]", "smss]")
    found = problems(inputs, text)
    assert has(found, 5, "does not exist")
    assert has(found, 16, "output format 'docx'")
    assert has(found, 22, "unknown CDR type 'smss'", "did you mean 'sms'")
    assert len(found) == 3


def test_duplicate_workflow_names(inputs: Path) -> None:
    text = VALID.replace(
        "available_dates_sensor:",
        "  - name: flows\n    notebooks:\n      x: {filename: a.ipynb}\navailable_dates_sensor:",
    )
    assert has(problems(inputs, text), 20, "duplicate workflow name 'flows'", "line 2")


@pytest.mark.parametrize("label", ["reference_date", "date_ranges", "flowapi_url"])
def test_label_clashes_with_automatic_name(inputs: Path, label: str) -> None:
    text = VALID.replace("      run:\n", f"      {label}:\n").replace("upstream: run", f"upstream: {label}")
    assert has(problems(inputs, text), 4, f"notebook label '{label}' clashes", col=7)


def test_circular_dependency_names_the_cycle(inputs: Path) -> None:
    found = problems(
        inputs,
        """
        workflows:
          - name: w
            notebooks:
              a: {filename: a.ipynb, parameters: {x: c}}
              b: {filename: a.ipynb, parameters: {x: a}}
              c: {filename: b.ipynb, parameters: {x: b}}
        available_dates_sensor: {schedule: null, workflows: [{workflow_name: w}]}
        """,
    )
    assert any("circular dependency" in p and "a -> c -> b -> a" in p for p in found), found


def test_self_dependency(inputs: Path) -> None:
    text = VALID.replace("upstream: run", "upstream: report")
    assert has(problems(inputs, text), 14, "refers to the notebook itself")


@pytest.mark.parametrize(
    ("filename", "fragment"),
    [
        ("missing.ipynb", "does not exist"),
        ("notes.txt", "must end in .ipynb"),
        ("not_a_notebook.ipynb", "is not a Jupyter notebook"),
        ("broken.ipynb", "not valid JSON"),
        ("../outside.ipynb", "outside the inputs directory"),
        ("/etc/passwd.ipynb", "absolute path"),
        ("[a.ipynb]", "must be a file name"),
    ],
)
def test_bad_notebook_files(inputs: Path, filename: str, fragment: str) -> None:
    (inputs.parent / "outside.ipynb").write_text(json.dumps(NOTEBOOK))
    text = VALID.replace("filename: a.ipynb", f"filename: '{filename}'" if not filename.startswith("[") else f"filename: {filename}")
    assert has(problems(inputs, text), 5, fragment, col=19)


def test_symlink_pointing_out_is_rejected(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "nb.ipynb"
    outside.write_text(json.dumps(NOTEBOOK))
    os.symlink(outside, inputs / "link.ipynb")
    (inputs / "sub").mkdir()
    os.symlink(inputs / "a.ipynb", inputs / "sub" / "inside.ipynb")
    assert has(problems(inputs, VALID.replace("filename: a.ipynb", "filename: link.ipynb")), 5, "outside the inputs directory")
    assert load(inputs, VALID.replace("filename: a.ipynb", "filename: sub/inside.ipynb"))  # links within are fine


def test_bad_templates(inputs: Path) -> None:
    assert has(problems(inputs, VALID.replace("custom.tpl", "nope.tpl")), 17, "report template", "does not exist")
    assert has(problems(inputs, VALID.replace("custom.tpl", "../x.tpl")), 17, "outside the inputs directory")


def test_output_format_must_be_pdf_or_html(inputs: Path) -> None:
    assert has(problems(inputs, VALID.replace("format: pdf", "format: docx")), 16, "output format 'docx'", "'pdf', 'html'", col=19)
    assert has(problems(inputs, VALID.replace("format: pdf", "format: htm")), 16, "(did you mean 'html'?)")


def test_output_formats(inputs: Path) -> None:
    config = load(inputs, VALID)
    output = config.workflows["flows"].notebooks["report"].output
    assert output is not None and output.formats == ("pdf",)
    config = load(inputs, VALID.replace("format: pdf", "formats: [pdf, html]"))
    output = config.workflows["flows"].notebooks["report"].output
    assert output is not None and output.formats == ("pdf", "html") and output.template is not None
    no_template = VALID.replace("          template: custom.tpl\n", "")
    output = load(inputs, no_template.replace("format: pdf", "format: html")).workflows["flows"].notebooks["report"].output
    assert output is not None and output.formats == ("html",) and output.template is None


@pytest.mark.parametrize(
    ("output", "line", "col", "fragments"),
    [
        ("formats: [pdf, pdf]", 16, 26, ("names 'pdf' twice",)),
        ("formats: []", 16, 20, ("non-empty list", "an empty list")),
        ("formats: pdf", 16, 20, ("non-empty list", "not a string")),
        ("formats: [pdf, word]", 16, 26, ("output format 'word'",)),
        ("format: pdf\n          formats: [html]", 17, 11, ("both 'format' and 'formats'",)),
        ("fromat: pdf", 16, 11, ("unknown key 'fromat'", "did you mean 'format'")),
        ("formats: [html]", 17, 11, ("'template'", "PDF's asciidoc template", "makes no PDF")),
    ],
)
def test_bad_output_formats(inputs: Path, output: str, line: int, col: int, fragments: tuple[str, ...]) -> None:
    found = problems(inputs, VALID.replace("format: pdf", output))
    assert has(found, line, *fragments, col=col), found
    assert len(found) == 1, found


def test_output_without_a_format(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("          format: pdf\n", ""))
    assert has(found, 16, "missing the required key 'format' (or 'formats', a list)"), found


def test_report_block(inputs: Path) -> None:
    assert load(inputs, VALID).report == ReportSpec()
    config = load(inputs, VALID + "report:\n  organisation: Example Analytics\n  generated_at: false\n")
    assert config.report == ReportSpec(organisation="Example Analytics", generated_at=False)
    assert load(inputs, VALID + "report:\n").report == ReportSpec()


@pytest.mark.parametrize(
    ("block", "line", "col", "fragments"),
    [
        ("report:\n  organization: X\n", 30, 3, ("unknown key 'organization' in 'report'", "did you mean 'organisation'")),
        ("report:\n  organisation: 12\n", 30, 17, ("'organisation' of 'report' must be a non-empty string", "not an integer")),
        ("report:\n  generated_at: yes please\n", 30, 17, ("'generated_at' of 'report' must be true or false",)),
        ("report: [organisation]\n", 29, 9, ("'report' must be a mapping",)),
        ("reports:\n  organisation: X\n", 29, 1, ("unknown key 'reports'", "did you mean 'report'")),
    ],
)
def test_bad_report_block(inputs: Path, block: str, line: int, col: int, fragments: tuple[str, ...]) -> None:
    found = problems(inputs, VALID + block)
    assert has(found, line, *fragments, col=col), found
    assert len(found) == 1, found


@pytest.mark.parametrize("cron", ["0 2 * *", "61 * * * *", "every day", "* * * * * * *"])
def test_invalid_cron(inputs: Path, cron: str) -> None:
    assert has(problems(inputs, VALID.replace('"0 2 * * *"', f'"{cron}"')), 21, "schedule", col=13)


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("0 25 * * *", "schedule '0 25 * * *': hour 25 is out of range 0-23"),
        ("61 2 * * *", "minute 61 is out of range 0-59"),
        ("0 2 0 * *", "day of month 0 is out of range 1-31"),
        ("0 2 * 1-13 *", "month 13 is out of range 1-12"),
        ("0 2 * * 1,8", "day of week 8 is out of range 0-7"),
        ("@reboot", "use one of @yearly"),
    ],
)
def test_cron_names_the_field_out_of_range(inputs: Path, cron: str, fragment: str) -> None:
    found = problems(inputs, VALID.replace('"0 2 * * *"', f'"{cron}"'))
    assert found == [f"workflows.yml:21:13: {found[0].split(': ', 1)[1]}"] and fragment in found[0]


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 2 * * *", "every day at 02:00 (UTC)"),
        ("@daily", "every day at 00:00 (UTC)"),
        ("@midnight", "every day at 00:00 (UTC)"),
        ("@hourly", "every hour (UTC)"),
        ("@weekly", "every Sunday at 00:00 (UTC)"),
        ("@monthly", "every month on day 1 at 00:00 (UTC)"),
        ("@yearly", "every year on 1 January at 00:00 (UTC)"),
        ("@annually", "every year on 1 January at 00:00 (UTC)"),
        ("*/15 * * * *", "every 15 minutes (UTC)"),
    ],
)
def test_schedules_are_described_in_words(inputs: Path, cron: str, words: str) -> None:
    assert describe(load(inputs, VALID.replace('"0 2 * * *"', f'"{cron}"')).sensor.schedule) == words


@pytest.mark.parametrize(("text", "line", "col"), [("workflows:\n\t- name: x\n", 2, 1), ("a:\n  b:\t1\n", 2, 5)])
def test_tabs_say_indent_with_spaces(inputs: Path, text: str, line: int, col: int) -> None:
    found = problems(inputs, text)
    assert found == [f"workflows.yml:{line}:{col}: YAML syntax error: a tab character here; indent with spaces, not tabs (YAML does not allow tabs for indentation)"]


def test_schedule_is_required_but_may_be_null(inputs: Path) -> None:
    assert has(problems(inputs, VALID.replace('  schedule: "0 2 * * *"\n', "")), 21, "missing the required key 'schedule'")
    assert load(inputs, VALID.replace('"0 2 * * *"', "null")).sensor.schedule is None
    assert has(problems(inputs, VALID.replace('"0 2 * * *"', "5")), 21, "cron string")


def test_sensor_entry_naming_undefined_workflow(inputs: Path) -> None:
    assert has(problems(inputs, VALID.replace("workflow_name: flows", "workflow_name: flow")), 24, "'flow', which is not defined", "did you mean 'flows'")


def test_sensor_parameter_missing(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("        country_name: Nepal\n", "        {}\n").replace("      parameters:\n        {}", "      parameters: {}"))
    assert found == [
        "workflows.yml:24:7: sensor entry for workflow 'flows' is missing parameter(s) 'country_name' that its "
        "notebooks need; add them under 'parameters'"
    ]


def test_sensor_parameter_unused(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("country_name: Nepal", "country_name: Nepal\n        contry_name: x"))
    assert has(found, 27, "parameter 'contry_name' is not used", "did you mean 'country_name'")


def test_misspelt_sensor_parameter_is_one_problem(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("country_name: Nepal", "contry_name: Nepal"))
    assert found == [
        "workflows.yml:26:9: parameter 'contry_name' is not used by any notebook of workflow 'flows' "
        "(did you mean 'country_name'?); its notebooks use 'country_name'"
    ]


@pytest.mark.parametrize("name", ["reference_date", "date_ranges", "flowapi_url"])
def test_sensor_parameter_automatic(inputs: Path, name: str) -> None:
    found = problems(inputs, VALID.replace("country_name: Nepal", f"country_name: Nepal\n        {name}: x"))
    assert has(found, 27, f"'{name}' is supplied automatically")


def test_notebook_parameter_referring_to_nothing(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("upstream: run", "upstream: runn"))
    assert has(found, 14, "refers to 'runn'", "did you mean 'run'", col=21)
    assert len(found) == 1, found  # not also "sensor entry is missing parameter 'runn'; add it"


def test_workflow_not_in_sensor_may_take_any_parameters(inputs: Path) -> None:
    text = VALID.replace(
        "available_dates_sensor:",
        "  - name: manual\n    notebooks:\n      x: {filename: a.ipynb, parameters: {country: anything}}\navailable_dates_sensor:",
    )
    assert load(inputs, text).workflows["manual"].workflow_parameters == {"anything"}


@pytest.mark.parametrize(
    ("stencil", "col", "fragment"),
    [
        ("[[0, -1]]", 22, "starts after it ends"),
        ("[[2016-01-03, 2016-01-01]]", 22, "starts after it ends"),
        ("[0, 'x']", 25, "neither a day offset"),
        ("[0, [1, 2, 3]]", 25, "exactly 2 elements"),
        ("[1.5]", 22, "neither a day offset"),
        ("[true]", 22, "neither a day offset"),
        ("[2016-02-30]", 22, "'2016-02-30', which is not a valid date"),
        ("7", 21, "must be a list"),
    ],
)
def test_invalid_date_stencils(inputs: Path, stencil: str, col: int, fragment: str) -> None:
    text = VALID.replace("[[2016-01-01, 2016-01-03], -3, [-2, 0]]", stencil)
    assert has(problems(inputs, text), 28, fragment, col=col)


@pytest.mark.parametrize("value", ["2016-13-01", "yesterday", "2016-01-01 10:00:00", "5"])
def test_invalid_earliest_date(inputs: Path, value: str) -> None:
    assert has(problems(inputs, VALID.replace("earliest_date: 2016-01-01", f"earliest_date: {value}")), 27, "'earliest_date' must be a date")


def test_quoted_iso_earliest_date_is_accepted(inputs: Path) -> None:
    config = load(inputs, VALID.replace("earliest_date: 2016-01-01", "earliest_date: '2016-01-05'"))
    assert config.sensor.workflows[0].earliest_date == dt.date(2016, 1, 5)


def test_unsupported_parameter_value(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("country_name: Nepal", "country_name: !!binary aGVsbG8="))
    assert has(found, 26, "unsupported YAML value")


def test_typed_parameters(inputs: Path) -> None:
    text = VALID.replace("country_name: Nepal", "country_name: {day: 2016-01-01, n: [1, 2.5, true, null]}")
    assert load(inputs, text).sensor.workflows[0].parameters["country_name"] == {"day": dt.date(2016, 1, 1), "n": [1, 2.5, True, None]}


def test_duplicate_sensor_entries(inputs: Path) -> None:
    text = VALID + "    - workflow_name: flows\n      parameters: {country_name: Nepal}\n"
    assert has(problems(inputs, text), 29, "repeats the entry at line 24")


def test_invalid_notebook_parameter_name(inputs: Path) -> None:
    assert has(problems(inputs, VALID.replace("country: country_name", "my-country: country_name")), 7, "not a valid Python variable name")


def test_directory_source(inputs: Path) -> None:
    text = VALID.replace("available_dates_sensor:\n", "available_dates_sensor:\n  source: {type: directory, pattern: 'data/calls_{date:%Y-%m-%d}.csv'}\n")
    assert has(problems(inputs, text), 23, "'cdr_types' applies to a 'flowapi' source", "its source is 'directory'")
    text = text.replace("  cdr_types: [calls, sms]\n", "")
    assert load(inputs, text).sensor.source.get("pattern") == "data/calls_{date:%Y-%m-%d}.csv"
    bad = VALID.replace("available_dates_sensor:\n", "available_dates_sensor:\n  source: {type: directroy}\n")
    assert has(problems(inputs, bad), 21, "unknown date source type 'directroy'", "did you mean 'directory'")
    no_pattern = VALID.replace("available_dates_sensor:\n", "available_dates_sensor:\n  source: {type: directory}\n")
    assert has(problems(inputs, no_pattern), 21, "a 'directory' source needs 'pattern', e.g. {type: directory, pattern: ")
    bad_pattern = VALID.replace("available_dates_sensor:\n", "available_dates_sensor:\n  source: {type: directory, pattern: 'data/calls.csv'}\n")
    assert has(problems(inputs, bad_pattern), 21, "'pattern'")


def test_load_config_reads_the_file(inputs: Path) -> None:
    (inputs / "workflows.yml").write_text(VALID)
    assert "flows" in load_config(inputs).workflows
    (inputs / "notebooks-only").mkdir()
    with pytest.raises(ConfigError, match="no workflows.yml"):
        load_config(inputs / "notebooks-only")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(inputs / "nowhere")


def test_huge_file_rejected(inputs: Path) -> None:
    with pytest.raises(ConfigError, match="at most 1 MB"):
        load_config_text(b"# " + b"x" * 2_000_000, inputs_dir=inputs)


def test_alias_bomb_rejected(inputs: Path) -> None:
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        bomb.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i-1}"] * 10) + "]")
    text = VALID.replace("country_name: Nepal", "country_name: {" + "}") + "\n".join(bomb) + "\n"
    text = text.replace("country_name: {}", "country_name: *a8")
    text = "\n".join(bomb) + "\n" + VALID.replace("country_name: Nepal", "country_name: *a8")
    with pytest.raises(ConfigError) as info:
        load(inputs, text)
    assert any("more than" in str(p) for p in info.value.problems)


def test_deep_nesting_rejected(inputs: Path) -> None:
    with pytest.raises(ConfigError, match="nested more than 50 levels"):
        load_config_text(b"x: " + b"[" * 5000 + b"]" * 5000, inputs_dir=inputs)


def test_control_characters_in_names_stay_on_one_line(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("    notebooks:\n", '    "bad\\nkey": 1\n    notebooks:\n', 1))
    assert any("unknown key 'bad\\nkey'" in p for p in found), found
    assert all("\n" not in p for p in found)


def test_file_names_that_no_file_can_have(inputs: Path) -> None:
    os.symlink(inputs / "loop", inputs / "loop")
    assert has(problems(inputs, VALID.replace("filename: a.ipynb", 'filename: "a.ipynb\\0"')), 5, "control character '\\x00'")
    assert has(problems(inputs, VALID.replace("custom.tpl", '"custom\\ttpl"')), 17, "report template", "control character '\\t'")
    assert has(problems(inputs, VALID.replace("filename: a.ipynb", "filename: loop/a.ipynb")), 5, "cannot be used as a file name", "loop")
    assert has(problems(inputs, VALID.replace("filename: a.ipynb", f"filename: {'x' * 5000}.ipynb")), 5, "cannot be used as a file name")


# -- the notebook contract: papermill's reading of each notebook's parameters cell -------------


def test_notebook_without_parameters_cell_is_reported_at_its_filename(inputs: Path) -> None:
    (inputs / "a.ipynb").write_text(json.dumps({**NOTEBOOK, "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "source": "country = 'x'", "execution_count": None}]}))
    found = problems(inputs, VALID)
    assert len(found) == 1
    assert has(found, 5, "notebook 'run' (a.ipynb)", "no cell tagged 'parameters'", "'country', 'day'", "Cell Tags", col=19)


def test_parameters_tag_on_a_markdown_cell_is_reported(inputs: Path) -> None:
    """papermill injects after the first tagged cell of any type: a tagged heading lets the code below overwrite the values."""
    heading = {"cell_type": "markdown", "id": "h", "metadata": {"tags": ["parameters"]}, "source": "## Parameters"}
    code = notebook_with_parameters("country = 'x'\nday = None\nranges = []\nurl = None")
    cells: list[object] = [heading, *code["cells"]]  # type: ignore[misc]
    (inputs / "a.ipynb").write_text(json.dumps({**code, "cells": cells}))
    found = problems(inputs, VALID)
    assert len(found) == 1
    assert has(found, 5, "notebook 'run' (a.ipynb)", "is a markdown cell", "tag the code cell that assigns the defaults", "Cell Tags", col=19)


def test_notebook_without_parameters_cell_is_fine_when_nothing_is_passed(inputs: Path) -> None:
    (inputs / "plain.ipynb").write_text(json.dumps(NOTEBOOK))
    text = VALID.replace("available_dates_sensor:", "  - name: manual\n    notebooks:\n      x: {filename: plain.ipynb}\navailable_dates_sensor:")
    notebook = load(inputs, text).workflows["manual"].notebooks["x"]
    assert notebook.declared_parameters is None and notebook.defaulted_parameters == ()


def test_parameter_the_notebook_does_not_define_is_reported_at_its_key(inputs: Path) -> None:
    (inputs / "a.ipynb").write_text(json.dumps(notebook_with_parameters("country = 'x'\nday = None\nranges = []\nurl = None  # FlowAPI\nchange_threshold = 20")))
    found = problems(inputs, VALID.replace("          country: country_name", "          change_treshold: country_name"))
    assert found == [
        f"workflows.yml:7:11: workflows.yml passes 'change_treshold' to notebook 'run' but a.ipynb "
        "does not define it in its parameters cell; did you mean 'change_threshold'?"
    ]


def test_parameter_with_no_close_match_lists_what_the_notebook_defines(inputs: Path) -> None:
    found = problems(inputs, VALID.replace("          url: flowapi_url", "          zzz: flowapi_url"))
    assert has(found, 10, "passes 'zzz'", "defines 'country', 'day', 'ranges', 'url'", col=11)


def test_notebook_parameters_nothing_passes_keep_their_defaults(inputs: Path) -> None:
    (inputs / "b.ipynb").write_text(json.dumps(notebook_with_parameters("upstream = None\nthreshold: float = 0.5\nlabels = {\n  'a': 1,\n}")))
    report = load(inputs, VALID).workflows["flows"].notebooks["report"]
    assert report.declared_parameters == ("upstream", "threshold", "labels")
    assert report.defaulted_parameters == ("threshold", "labels")


def test_notebook_in_a_language_papermill_cannot_inspect_is_only_checked_for_its_tag(inputs: Path) -> None:
    r_notebook = notebook_with_parameters("country <- 'x'")
    r_notebook["metadata"] = {"kernelspec": {"name": "ir", "language": "R"}, "language_info": {"name": "R"}}
    (inputs / "a.ipynb").write_text(json.dumps(r_notebook))
    run = load(inputs, VALID).workflows["flows"].notebooks["run"]
    assert run.declared_parameters is None


def test_parameters_cell_with_chained_and_multiline_assignments(inputs: Path) -> None:
    """papermill's line reader skips lines with two '='; they still define parameters."""
    cell = "country = day = None\nranges = dict(\n  a=1,\n)  # several lines\nurl: str = 'http://x'\n%matplotlib inline"
    (inputs / "a.ipynb").write_text(json.dumps(notebook_with_parameters(cell)))
    # papermill's reader also takes the 'a=1' inside ranges' value: a name either reader finds counts
    assert load(inputs, VALID).workflows["flows"].notebooks["run"].declared_parameters == ("country", "day", "ranges", "url", "a")


def test_parameters_cell_that_is_not_valid_python_is_read_by_papermill(inputs: Path) -> None:
    (inputs / "a.ipynb").write_text(json.dumps(notebook_with_parameters("country = 'x'\nday = None\nranges = {{ template }}\nurl = None")))
    assert load(inputs, VALID).workflows["flows"].notebooks["run"].declared_parameters == ("country", "day", "ranges", "url")


# -- notifications and late_data -------------------------------------------------------------

NOTIFY = VALID + "notifications:\n"  # VALID has 28 lines: the first target is at line 30


def test_notifications_and_late_data_build_models(inputs: Path) -> None:
    text = NOTIFY + "  - url: 'json://127.0.0.1:8080/hook'\n  - url: slack://${SLACK_A}/${SLACK_B}/${SLACK_C}\n    events: [success, failure]\n  - url: ${WHOLE_URL}\n"
    config = load(inputs, text.replace("earliest_date: 2016-01-01", "earliest_date: 2016-01-01\n      late_data: {after: 2 days}"))
    hook, slack, whole = config.notifications
    assert hook.url_template == "json://127.0.0.1:8080/hook"
    assert hook.events == {"failure", "gave_up", "recovery", "late_data"}
    assert slack.events == {"success", "failure"} and "SLACK_A" not in repr(slack)
    assert whole.url_template == "${WHOLE_URL}"
    assert config.sensor.workflows[0].late_data_after == 2 * 86400


def test_no_notifications_by_default(inputs: Path) -> None:
    config = load(inputs, VALID)
    assert config.notifications == () and config.sensor.workflows[0].late_data_after is None


def test_unknown_notification_event(inputs: Path) -> None:
    found = problems(inputs, NOTIFY + "  - url: json://host/hook\n    events: [failure, gaveup]\n")
    assert found == [
        "workflows.yml:31:23: unknown notification event 'gaveup' (did you mean 'gave_up'?); "
        "use any of 'failure', 'gave_up', 'recovery', 'success', 'late_data'"
    ]


@pytest.mark.parametrize(
    ("target", "line", "col", "fragment"),
    [
        ("- events: [failure]", 30, 5, "a notification target is missing the required key 'url'"),
        ("- url: json://host\n    event: [failure]", 31, 5, "unknown key 'event' in a notification target (did you mean 'events'?)"),
        ("- url: json://host\n    events: []", 31, 13, "notification 'events' must be a non-empty list"),
        ("- url: 7", 30, 10, "notification 'url' must be a non-empty string, not an integer"),
        ("- url: slakc://a/b/c", 30, 10, "'slakc://' is not a notification service Apprise knows (did you mean 'slack://'?)"),
        ("- url: hooks.example.org/x", 30, 10, "it is not an Apprise URL"),
        ("- url: json://${1TOKEN}/x", 30, 10, "'${1TOKEN}' is not a valid secret reference"),
        ("- url: json://${}/x", 30, 10, "'${}' is not a valid secret reference"),
        ("- url: json://host/${TOKEN", 30, 10, "a '${' is not closed"),
        ("- just a string", 30, 5, "a notification target must be a mapping"),
    ],
)
def test_invalid_notification_targets(inputs: Path, target: str, line: int, col: int, fragment: str) -> None:
    found = problems(inputs, NOTIFY + "  " + target + "\n")
    assert has(found, line, fragment, col=col), found
    assert all("\n" not in p for p in found)


def test_notifications_must_be_a_list(inputs: Path) -> None:
    assert has(problems(inputs, VALID + "notifications: json://host\n"), 29, "'notifications' must be a list of targets", col=16)


@pytest.mark.parametrize(
    ("late_data", "col", "fragment"),
    [
        ("{after: 2 dayz}", 26, "'after' of 'late_data' must be a number of seconds or a duration such as 30s"),
        ("{after: 0}", 26, "'after' of 'late_data' must be longer than 0"),
        ("{aftr: 2d}", 19, "unknown key 'aftr' in 'late_data' of a sensor entry (did you mean 'after'?)"),
        ("2 days", 18, "'late_data' of a sensor entry must be a mapping with keys 'after'"),
    ],
)
def test_invalid_late_data(inputs: Path, late_data: str, col: int, fragment: str) -> None:
    text = VALID.replace("earliest_date: 2016-01-01", f"earliest_date: 2016-01-01\n      late_data: {late_data}")
    assert has(problems(inputs, text), 28, fragment, col=col), problems(inputs, text)


# -- run policy: retries, catch-up, bound per tick -------------------------------------------


def test_run_policy_defaults_and_per_entry_overrides(inputs: Path) -> None:
    default = load(inputs, VALID).sensor
    assert default.max_runs_per_tick is None
    assert (default.workflows[0].max_attempts, default.workflows[0].retry_after, default.workflows[0].catch_up) == (3, 600.0, "all")
    text = VALID.replace('cdr_types: [calls, sms]', 'cdr_types: [calls, sms]\n  max_attempts: 5\n  retry_after: 2h\n  catch_up: latest\n  max_runs_per_tick: 10')
    text += "    - workflow_name: flows\n      parameters: {country_name: Peru}\n      max_attempts: 1\n      retry_after: 0\n      catch_up: all\n"
    sensor = load(inputs, text).sensor
    first, second = sensor.workflows
    assert (first.max_attempts, first.retry_after, first.catch_up) == (5, 7200.0, "latest")  # the sensor's defaults
    assert (second.max_attempts, second.retry_after, second.catch_up) == (1, 0.0, "all")
    assert sensor.max_runs_per_tick == 10


def test_run_policy_mistakes_have_positions(inputs: Path) -> None:
    text = VALID.replace('cdr_types: [calls, sms]', 'cdr_types: [calls, sms]\n  max_runs_per_tick: 0\n  retry_after: soon')
    text = text.replace("earliest_date: 2016-01-01", "earliest_date: 2016-01-01\n      max_attempts: two\n      catch_up: lastest")
    found = problems(inputs, text)
    assert has(found, 23, "'max_runs_per_tick' must be a whole number of 1 or more, not 0", col=22)
    assert has(found, 24, "'retry_after' must be a number of seconds or a duration such as 30s, 10m, 2h, 1d", "not 'soon'", col=16)
    assert has(found, 30, "'max_attempts' must be a whole number of 1 or more, not 'two'", col=21)
    assert has(found, 31, "'catch_up' must be 'all' or 'latest', not 'lastest' (did you mean 'latest'?)", col=17)
    assert len(found) == 4, found
