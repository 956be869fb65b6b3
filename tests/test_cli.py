"""The command line: exit codes, one-line errors, no tracebacks, and no Prefect import in validate."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.configs import VALID, make_inputs, notebook_with_parameters


def autoflow(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "AUTOFLOW_SECRETS_DIR": "/nonexistent"}
    return subprocess.run(
        [sys.executable, "-m", "autoflow", *args], capture_output=True, text=True, env={**base, **(env or {})}, cwd=cwd, timeout=60
    )


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    inputs = make_inputs(tmp_path)
    (inputs / "workflows.yml").write_text(VALID)
    return inputs


def test_help_and_version() -> None:
    assert "validate" in autoflow("--help").stdout
    result = autoflow("--version")
    assert result.returncode == 0 and result.stdout.startswith("autoflow ")


def test_console_script_is_the_same_program(inputs: Path) -> None:
    script = Path(sys.executable).parent / "autoflow"
    result = subprocess.run([str(script), "validate", "--inputs", str(inputs)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 1 workflow")


def test_validate_summary(inputs: Path) -> None:
    result = autoflow("validate", env={"AUTOFLOW_INPUTS_DIR": str(inputs)})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "1 workflow: 'flows' (2 notebooks, 1 PDF report)" in out
    assert "1 entry" in out and "FlowAPI (calls, sms)" in out
    assert "at 02:00 (UTC); next tick" in out
    assert "A run gets 3 attempts (retried 10 min after a failure, doubling)." in out


def test_validate_inputs_option_before_or_after(inputs: Path) -> None:
    assert autoflow("--inputs", str(inputs), "validate").returncode == 0
    assert autoflow("validate", "--inputs", str(inputs)).returncode == 0


def test_validate_reports_every_problem_and_exits_2(inputs: Path) -> None:
    bad = VALID.replace("a.ipynb", "missing.ipynb").replace("sms]", "smss]").replace("format: pdf", "format: docx")
    (inputs / "workflows.yml").write_text(bad)
    result = autoflow("validate", cwd=inputs.parent, env={"AUTOFLOW_INPUTS_DIR": str(inputs)})
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(":" in line and "workflows.yml:" in line for line in lines)
    assert lines[0].startswith(f"{inputs.name}/workflows.yml:5:19: ")  # relative to the working directory
    assert "Traceback" not in result.stderr


def test_yaml_syntax_error_exit_2(inputs: Path) -> None:
    (inputs / "workflows.yml").write_text("workflows: [\n")
    result = autoflow("validate", "--inputs", str(inputs))
    assert result.returncode == 2 and "YAML syntax error" in result.stderr and "Traceback" not in result.stderr


def test_missing_inputs_variable() -> None:
    result = autoflow("validate")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "autoflow: error: AUTOFLOW_INPUTS_DIR is not set: it is the directory holding workflows.yml "
        "and the notebooks (or pass --inputs DIR)"
    )


def test_bad_setting_is_one_line() -> None:
    result = autoflow("validate", env={"AUTOFLOW_LOG_LEVEL": "loud", "AUTOFLOW_INPUTS_DIR": "/tmp"})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_unknown_command_exit_2() -> None:
    result = autoflow("frobnicate")
    assert result.returncode == 2 and "unknown command 'frobnicate'" in result.stderr


def test_validate_does_not_import_prefect(inputs: Path) -> None:
    code = (
        "import sys; from autoflow.cli.main import main; "
        f"rc = main(['validate', '--inputs', {str(inputs)!r}]); "
        "heavy = [m for m in ('prefect', 'papermill', 'sqlalchemy', 'nbconvert', 'pandas') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_validate_verbose_lists_parameters_left_at_their_defaults(inputs: Path) -> None:
    (inputs / "b.ipynb").write_text(json.dumps(notebook_with_parameters("upstream = None\nthreshold = 0.5  # percent")))
    quiet = autoflow("validate", "--inputs", str(inputs), cwd=inputs)
    assert quiet.returncode == 0 and "threshold" not in quiet.stdout
    result = autoflow("validate", "--verbose", "--inputs", str(inputs), cwd=inputs)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "Notebook parameters workflows.yml does not pass (the notebook's default is used):",
        "  flows / report (b.ipynb): 'threshold'",
    ]
