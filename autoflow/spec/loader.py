"""workflows.yml → :class:`~autoflow.spec.models.AutoFlowConfig`, checking every rule at once.

Every problem is collected (not just the first) and raised together as one
:class:`~autoflow.errors.ConfigError`, each with ``workflows.yml:LINE:COL``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import os
from pathlib import Path
from typing import Any

from autoflow.date_stencil import DateStencil
from autoflow.errors import ConfigError, Position, Problem
from autoflow.parameters import canonical_json
from autoflow.spec.durations import parse_duration
from autoflow.spec.models import (
    AUTOMATIC_PARAMETERS,
    CATCH_UP,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_AFTER,
    OUTPUT_FORMATS,
    DEFAULT_NOTIFICATION_EVENTS,
    NOTIFICATION_EVENTS,
    AutoFlowConfig,
    NotebookSpec,
    NotificationSpec,
    OutputSpec,
    ReportSpec,
    SensorEntry,
    SensorSpec,
    SourceSpec,
    WorkflowSpec,
    frozen_map,
)
from autoflow.spec.durations import parse_duration
from autoflow.spec.notebook_parameters import HOW_TO_TAG, parameters_cell
from autoflow.spec.notification_urls import template_problem
from autoflow.spec.schedule import cron_problem
from autoflow.spec.yamlfile import MAX_FILE_BYTES, Node, YAMLFileError, check_size, parse, to_plain, type_name

CONFIG_FILENAME = "workflows.yml"

# key -> required?  (keys are checked in this order)
TOP_KEYS = {"workflows": True, "available_dates_sensor": True, "notifications": False, "report": False}
WORKFLOW_KEYS = {"name": True, "notebooks": True}
NOTEBOOK_KEYS = {"filename": True, "parameters": False, "output": False, "timeout": False, "retries": False}
#: 'format' or 'formats' is required (checked in _output)
OUTPUT_KEYS = {"format": False, "formats": False, "template": False}
REPORT_KEYS = {"organisation": False, "generated_at": False}
#: the run policy: per sensor entry, with defaults at the top of the sensor block
POLICY_KEYS = {"max_attempts": False, "retry_after": False, "catch_up": False}
SENSOR_KEYS = {"schedule": True, "cdr_types": False, "workflows": True, "source": False, **POLICY_KEYS, "max_runs_per_tick": False}
ENTRY_KEYS = {"workflow_name": True, "parameters": False, "earliest_date": False, "date_stencil": False, "source": False, **POLICY_KEYS, "late_data": False}
NOTIFICATION_KEYS = {"url": True, "events": False}
LATE_DATA_KEYS = {"after": True}


def _quote_list(names: Any) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _did_you_mean(word: str, candidates: Any) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Checker:
    """Collects problems while the models are built."""

    def __init__(self, inputs_dir: Path, file: str = CONFIG_FILENAME) -> None:
        self.inputs_dir = inputs_dir
        #: the inputs directory as messages show it (where the shown workflows.yml lies)
        self.shown_inputs_dir = Path(file).parent
        self.real_inputs_dir = inputs_dir.resolve()
        self.problems: list[Problem] = []
        #: workflows that are defined but invalid: sensor entries naming them aren't checked further
        self.broken_workflows: set[str] = set()
        #: False when some workflow's name could not be read: "not defined" may then be wrong
        self.workflow_names_known = True

    def add(self, pos: Position, message: str) -> None:
        self.problems.append(Problem(pos, message))

    # -- structure -------------------------------------------------------------------------

    def mapping(self, node: Node, what: str, keys: dict[str, bool]) -> bool:
        """Check ``node`` is a mapping with only ``keys`` and all required ones present."""
        if not node.is_mapping:
            self.add(node.pos, f"{what} must be a mapping with keys {_quote_list(keys)}, not {type_name(node.value)}")
            return False
        suggested: set[str] = set()
        for key in node.value:
            if not isinstance(key, str) or key not in keys:
                close = difflib.get_close_matches(str(key), [k for k in keys if k not in node.value], n=1, cutoff=0.6)
                suggested.update(close)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.add(
                    node.key_pos(key),
                    f"unknown key '{key}' in {what}{hint}; allowed keys are {_quote_list(keys)}",
                )
        for key, required in keys.items():
            if required and key not in node.value and key not in suggested:  # a misspelt key is reported once
                self.add(node.pos, f"{what} is missing the required key '{key}'")
        return True

    def string(self, parent: Node, key: str, what: str) -> str | None:
        node = parent.child(key)
        if not isinstance(node.value, str) or not node.value.strip():
            self.add(node.pos, f"{what} must be a non-empty string, not {type_name(node.value)}")
            return None
        return str(node.value)

    def plain(self, node: Node, what: str) -> Any:
        """``node.value`` as plain Python, or a problem and None."""
        try:
            return to_plain(node.value)
        except TypeError as exc:
            self.add(node.pos, f"{what} is {exc}; use a string, number, boolean, date, list or mapping")
        except ValueError as exc:
            self.add(node.pos, f"{what} {exc}")
        return None

    # -- files -----------------------------------------------------------------------------

    def input_file(self, node: Node, what: str, suffixes: tuple[str, ...]) -> Path | None:
        """Resolve a filename that must name a file inside the inputs directory."""
        if not isinstance(node.value, str) or not node.value.strip():
            self.add(node.pos, f"{what} must be a file name (a string), not {type_name(node.value)}")
            return None
        name = str(node.value)
        control = next((c for c in name if ord(c) < 0x20 or ord(c) == 0x7F), None)
        if control is not None:
            self.add(node.pos, f"{what} {name!r} contains the control character {control!r}; file names cannot")
            return None
        if os.path.isabs(name):
            self.add(node.pos, f"{what} '{name}' is an absolute path; give a path relative to the inputs directory")
            return None
        path = self.inputs_dir / name
        try:
            return self._existing_input(node, what, name, path, suffixes)
        except (OSError, RuntimeError, ValueError) as exc:  # too long, a link loop...
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.add(node.pos, f"{what} '{name}' cannot be used as a file name: {reason}")
            return None

    def _existing_input(self, node: Node, what: str, name: str, path: Path, suffixes: tuple[str, ...]) -> Path | None:
        real = path.resolve()
        if not real.is_relative_to(self.real_inputs_dir):
            self.add(
                node.pos,
                f"{what} '{name}' lies outside the inputs directory {self.inputs_dir}; "
                "copy the file into it (links pointing out are not followed)",
            )
            return None
        if suffixes and path.suffix.lower() not in suffixes:
            self.add(node.pos, f"{what} '{name}' must end in {' or '.join(suffixes)}")
            return None
        if not real.is_file():
            hint = ""
            if real.parent.is_dir():
                names = [p.name for p in real.parent.iterdir() if p.suffix.lower() in suffixes or not suffixes]
                hint = _did_you_mean(real.name, names)
            self.add(node.pos, f"{what} '{name}' does not exist in the inputs directory {self.inputs_dir}{hint}")
            return None
        return real

    def notebook_file(self, node: Node, label: str) -> tuple[Path, dict[str, Any]] | None:
        """The notebook's resolved path and JSON content, or a problem and None."""
        path = self.input_file(node, f"notebook '{label}' filename", (".ipynb",))
        if path is None:
            return None
        try:
            content = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not valid JSON"
            self.add(node.pos, f"notebook '{label}' file '{node.value}' cannot be read as a notebook: {reason}")
            return None
        if (
            not isinstance(content, dict)
            or not isinstance(content.get("cells"), list)
            or not isinstance(content.get("nbformat"), int)
            or content["nbformat"] < 4
        ):
            self.add(
                node.pos,
                f"notebook '{label}' file '{node.value}' is not a Jupyter notebook (nbformat 4 with a list of cells); "
                "save it from Jupyter",
            )
            return None
        return path, content

    def notebook_contract(
        self, node: Node, label: str, content: dict[str, Any], passed: dict[str, Position]
    ) -> tuple[str, ...] | None:
        """Check the notebook's ``parameters`` cell defines every name in ``passed`` (name -> key position).

        Returns the names the cell defines (None when it has none or its language can't be inspected).
        """
        shown = self.shown_inputs_dir / str(node.value)
        cell = parameters_cell(content)
        if cell is None:
            if passed:
                self.add(
                    node.pos,
                    f"notebook '{label}' ({shown}) has no cell tagged 'parameters', so the values workflows.yml "
                    f"passes it ({_quote_list(passed)}) would be overwritten by the notebook's own assignments; "
                    f"tag the cell that assigns them: {HOW_TO_TAG}",
                )
            return None
        if not cell.is_code and passed:
            self.add(
                node.pos,
                f"notebook '{label}' ({shown}): its first cell tagged 'parameters' is a {cell.cell_type} cell, "
                "so the values workflows.yml passes would be overwritten by the code that follows; "
                f"remove the tag there and tag the code cell that assigns the defaults, not the heading: {HOW_TO_TAG}",
            )
            return None
        if cell.names is None:
            return None
        for name, pos in passed.items():
            if name not in cell.names:
                close = difflib.get_close_matches(name, cell.names, n=1, cutoff=0.6)
                fix = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else f"add it to the notebook's parameters cell (it defines {_quote_list(cell.names) or 'nothing'})"
                )
                self.add(pos, f"workflows.yml passes '{name}' to notebook '{label}' but {shown} does not define it in its parameters cell; {fix}")
        return cell.names


def load_config(inputs_dir: Path, *, display_name: str | None = None) -> AutoFlowConfig:
    """Read and validate ``inputs_dir/workflows.yml``; raise ConfigError listing every problem."""
    path = inputs_dir / CONFIG_FILENAME
    file = display_name or str(path)
    try:
        with path.open("rb") as handle:
            check_size(os.fstat(handle.fileno()).st_size, file)  # before reading: it could be huge
            data = handle.read(MAX_FILE_BYTES + 1)
    except YAMLFileError as exc:
        raise ConfigError([exc.problem]) from None
    except FileNotFoundError:
        if not inputs_dir.is_dir():
            message = f"the inputs directory {inputs_dir} does not exist; set AUTOFLOW_INPUTS_DIR to the folder holding {CONFIG_FILENAME}"
        else:
            message = f"there is no {CONFIG_FILENAME} in {inputs_dir}; create one (see the README's workflows.yml reference)"
        raise ConfigError([Problem(Position(file, 1, 1), message)]) from None
    except OSError as exc:
        raise ConfigError([Problem(Position(file, 1, 1), f"cannot read {CONFIG_FILENAME}: {exc.strerror}")]) from None
    return load_config_text(data, inputs_dir=inputs_dir, file=file)


def load_config_text(data: bytes, *, inputs_dir: Path, file: str = CONFIG_FILENAME) -> AutoFlowConfig:
    """Validate YAML ``data`` as a workflows.yml whose files live in ``inputs_dir``."""
    try:
        root = parse(data, file)
    except YAMLFileError as exc:
        raise ConfigError([exc.problem]) from None
    if root is None:
        raise ConfigError(
            [Problem(Position(file, 1, 1), f"{CONFIG_FILENAME} is empty; it needs 'workflows' and 'available_dates_sensor'")]
        )
    check = _Checker(inputs_dir, file)
    workflows: dict[str, WorkflowSpec] = {}
    sensor: SensorSpec | None = None
    notifications: tuple[NotificationSpec, ...] = ()
    report = ReportSpec()
    if check.mapping(root, CONFIG_FILENAME, TOP_KEYS):
        if "workflows" in root.value:
            workflows = _workflows(check, root.child("workflows"))
        else:
            check.workflow_names_known = False
        if "available_dates_sensor" in root.value:
            sensor = _sensor(check, root.child("available_dates_sensor"), workflows)
        if "notifications" in root.value:
            notifications = _notifications(check, root.child("notifications"))
        if "report" in root.value:
            report = _report(check, root.child("report"))
    if check.problems or sensor is None:
        raise ConfigError(check.problems)
    config = AutoFlowConfig(
        inputs_dir=inputs_dir, workflows=frozen_map(workflows), sensor=sensor, notifications=notifications, report=report
    )
    from autoflow.redaction import hide_config_secrets

    hide_config_secrets(config.secret_names)  # a process that reads the config keeps its secrets from notebooks
    return config


def files_named_in(inputs_dir: Path) -> frozenset[Path]:
    """The notebook and template files ``inputs_dir/workflows.yml`` names, read as far as it can be
    even when it is invalid (so a reloader can watch for a missing notebook to appear): paths in
    the inputs directory, not checked. Empty when the file cannot be read or parsed."""
    try:
        with (inputs_dir / CONFIG_FILENAME).open("rb") as handle:
            root = parse(handle.read(MAX_FILE_BYTES + 1), CONFIG_FILENAME)  # a bigger file is refused unread
    except (OSError, YAMLFileError):
        return frozenset()
    workflows = root.value.get("workflows") if root is not None and root.is_mapping else None
    names: list[object] = []
    for workflow in workflows if isinstance(workflows, list) else ():
        notebooks = workflow.get("notebooks") if isinstance(workflow, dict) else None
        for notebook in notebooks.values() if isinstance(notebooks, dict) else ():
            if not isinstance(notebook, dict):
                continue
            output = notebook.get("output")
            names += [notebook.get("filename"), output.get("template") if isinstance(output, dict) else None]
    return frozenset(inputs_dir / name for name in names if isinstance(name, str) and name.strip() and "\0" not in name)


# -- workflows --------------------------------------------------------------------------------


def _workflows(check: _Checker, node: Node) -> dict[str, WorkflowSpec]:
    """Valid workflows by name; the names of invalid ones go to ``check.broken_workflows``."""
    if not node.is_sequence or len(node.value) == 0:
        check.add(node.pos, f"'workflows' must be a non-empty list of workflows (each with 'name' and 'notebooks'), not {type_name(node.value)}")
        check.workflow_names_known = False
        return {}
    workflows: dict[str, WorkflowSpec] = {}
    first_seen: dict[str, Position] = {}
    for item in node.elements():
        if not check.mapping(item, "a workflow", WORKFLOW_KEYS):
            check.workflow_names_known = False
            continue
        name = check.string(item, "name", "workflow 'name'") if "name" in item.value else None
        if name is None:
            check.workflow_names_known = False
        usable = name is not None
        if name is not None and name in first_seen:
            seen = first_seen[name]
            check.add(item.child("name").pos, f"duplicate workflow name '{name}' (first defined at line {seen.line}); workflow names must be unique")
            usable = False
        elif name is not None:
            first_seen[name] = item.child("name").pos
        if "notebooks" not in item.value:
            if name is not None:
                check.broken_workflows.add(name)
            continue
        notebooks = _notebooks(check, item.child("notebooks"), name or "?")
        if usable and name is not None and notebooks is not None:
            workflows[name] = WorkflowSpec(name=name, notebooks=frozen_map(notebooks), position=item.pos)
        elif name is not None:
            check.broken_workflows.add(name)
    return workflows


def _notebooks(check: _Checker, node: Node, workflow: str) -> dict[str, NotebookSpec] | None:
    what = f"'notebooks' of workflow '{workflow}'"
    if not node.is_mapping or len(node.value) == 0:
        check.add(node.pos, f"{what} must be a non-empty mapping from labels to notebooks, not {type_name(node.value)}")
        return None
    labels = [str(k) for k in node.value]
    notebooks: dict[str, NotebookSpec] = {}
    ok = True
    for label, item in node.items():
        if not isinstance(label, str) or not label:
            check.add(node.key_pos(label), f"notebook label {label!r} must be a non-empty string")
            ok = False
            continue
        if label in AUTOMATIC_PARAMETERS:
            check.add(
                node.key_pos(label),
                f"notebook label '{label}' clashes with the automatic parameter '{label}'; rename the notebook "
                f"(labels must differ from {_quote_list(AUTOMATIC_PARAMETERS)})",
            )
            ok = False
        spec = _notebook(check, item, label, workflow, labels)
        if spec is None:
            ok = False
        else:
            notebooks[label] = spec
    if not _dependencies_ok(check, node, workflow):
        ok = False
    return notebooks if ok else None


def _notebook(check: _Checker, node: Node, label: str, workflow: str, labels: list[str]) -> NotebookSpec | None:
    what = f"notebook '{label}' of workflow '{workflow}'"
    if not check.mapping(node, what, NOTEBOOK_KEYS):
        return None
    before = len(check.problems)
    file = check.notebook_file(node.child("filename"), label) if "filename" in node.value else None
    parameters: dict[str, str] = {}
    positions: dict[str, Position] = {}
    key_positions: dict[str, Position] = {}
    if "parameters" in node.value:
        params = node.child("parameters")
        if params.value is None:
            pass
        elif not params.is_mapping:
            check.add(params.pos, f"'parameters' of {what} must be a mapping from notebook parameter names to values, not {type_name(params.value)}")
        else:
            for name, value in params.items():
                if not isinstance(name, str) or not name.isidentifier():
                    check.add(params.key_pos(name), f"notebook parameter name {name!r} in {what} is not a valid Python variable name")
                elif not isinstance(value.value, str) or not value.value:
                    check.add(
                        value.pos,
                        f"parameter '{name}' of {what} must name a workflow parameter, another notebook's label or an "
                        f"automatic parameter ({_quote_list(AUTOMATIC_PARAMETERS)}), not {type_name(value.value)}",
                    )
                elif value.value == label:
                    check.add(value.pos, f"parameter '{name}' of {what} refers to the notebook itself; a notebook cannot depend on itself")
                else:
                    parameters[name] = str(value.value)
                    positions[name] = value.pos
                if isinstance(name, str) and name.isidentifier():
                    key_positions[name] = params.key_pos(name)
    output = _output(check, node.child("output"), what) if "output" in node.value else None
    timeout: float | None = None
    if "timeout" in node.value:
        t = node.child("timeout")
        if t.value is not None:
            if isinstance(t.value, bool) or not isinstance(t.value, (int, float)) or t.value <= 0:
                check.add(t.pos, f"'timeout' of {what} must be a number of seconds greater than 0, not {t.value!r}")
            else:
                timeout = float(t.value)
    retries = 0
    if "retries" in node.value:
        r = node.child("retries")
        if isinstance(r.value, bool) or not isinstance(r.value, int) or r.value < 0:
            check.add(r.pos, f"'retries' of {what} must be a whole number 0 or more, not {r.value!r}")
        else:
            retries = int(r.value)
    declared = check.notebook_contract(node.child("filename"), label, file[1], key_positions) if file else None
    if len(check.problems) > before or file is None:
        return None
    return NotebookSpec(
        label=label,
        filename=str(node.value["filename"]),
        path=file[0],
        parameters=frozen_map(parameters),
        output=output,
        timeout=timeout,
        retries=retries,
        position=node.pos,
        parameter_positions=frozen_map(positions),
        declared_parameters=declared,
    )


def _output(check: _Checker, node: Node, what: str) -> OutputSpec | None:
    """A notebook's ``output``: ``format: pdf|html`` or ``formats: [pdf, html]``, and the PDF's template."""
    if node.value is None:
        return None
    if not check.mapping(node, f"'output' of {what}", OUTPUT_KEYS):
        return None
    formats: tuple[str, ...] | None = None
    if "format" in node.value and "formats" in node.value:
        check.add(
            node.key_pos("formats"),
            f"'output' of {what} has both 'format' and 'formats'; keep one (formats: [pdf, html] makes both)",
        )
    elif "format" in node.value:
        f = node.child("format")
        formats = (str(f.value),) if _output_format(check, f, what) else None
    elif "formats" in node.value:
        formats = _output_formats(check, node.child("formats"), what)
    elif all(key in OUTPUT_KEYS for key in node.value):  # a misspelt key is reported once, by check.mapping
        check.add(node.pos, f"'output' of {what} is missing the required key 'format' (or 'formats', a list)")
    template: Path | None = None
    if "template" in node.value and node.value["template"] is not None:
        template = check.input_file(node.child("template"), f"report template of {what}", ())
        if template is None:
            return None
        if formats is not None and "pdf" not in formats:
            check.add(
                node.key_pos("template"),
                f"'template' of {what} is the PDF's asciidoc template, but this output makes no PDF; "
                "remove 'template' or add 'pdf' to the formats",
            )
            return None
    return OutputSpec(formats=formats, template=template) if formats else None


def _output_format(check: _Checker, node: Node, what: str) -> bool:
    if node.value in OUTPUT_FORMATS:
        return True
    check.add(
        node.pos,
        f"output format {node.value!r} of {what} is not supported{_did_you_mean(str(node.value), OUTPUT_FORMATS)}; "
        f"use {_quote_list(OUTPUT_FORMATS)}",
    )
    return False


def _output_formats(check: _Checker, node: Node, what: str) -> tuple[str, ...] | None:
    if not node.is_sequence or len(node.value) == 0:
        shown = "an empty list" if node.is_sequence else type_name(node.value)
        check.add(node.pos, f"'formats' of {what} must be a non-empty list drawn from {_quote_list(OUTPUT_FORMATS)}, not {shown}")
        return None
    formats: list[str] = []
    ok = True
    for item in node.elements():
        if not _output_format(check, item, what):
            ok = False
        elif item.value in formats:
            check.add(item.pos, f"'formats' of {what} names {item.value!r} twice; list each format once")
            ok = False
        else:
            formats.append(str(item.value))
    return tuple(formats) if ok else None


def _raw_dependencies(node: Node) -> dict[str, list[str]]:
    """label -> labels it reads, straight from the YAML (so cycles are found even in broken specs)."""
    deps: dict[str, list[str]] = {}
    for label, item in node.value.items():
        params = item.get("parameters") if isinstance(item, dict) else None
        refs = params.values() if isinstance(params, dict) else ()
        deps[str(label)] = [r for r in refs if isinstance(r, str) and r in node.value and r != label]
    return deps


def _dependencies_ok(check: _Checker, node: Node, workflow: str) -> bool:
    """Report each circular dependency between a workflow's notebooks once."""
    deps = _raw_dependencies(node)
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []
    reported: set[frozenset[str]] = set()

    def visit(label: str) -> None:
        state[label] = 1
        path.append(label)
        for dep in deps[label]:
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    check.add(
                        node.key_pos(dep),
                        f"circular dependency between notebooks of workflow '{workflow}': "
                        f"{' -> '.join(cycle)}; a notebook cannot (indirectly) read its own output",
                    )
            elif dep not in state:
                visit(dep)
        path.pop()
        state[label] = 2

    for label in deps:
        if label not in state:
            visit(label)
    return not reported


# -- sensor -----------------------------------------------------------------------------------


def _sensor(check: _Checker, node: Node, workflows: dict[str, WorkflowSpec]) -> SensorSpec | None:
    if not check.mapping(node, "'available_dates_sensor'", SENSOR_KEYS):
        return None
    before = len(check.problems)
    schedule: str | None = None
    if "schedule" in node.value:
        s = node.child("schedule")
        if s.value is not None:
            if not isinstance(s.value, str):
                check.add(s.pos, f"'schedule' must be a cron string such as '0 2 * * *' or null, not {type_name(s.value)}")
            else:
                problem = cron_problem(str(s.value).strip())
                if problem:
                    check.add(s.pos, problem)
                schedule = str(s.value).strip()
    source = _source(check, node.child("source"), "'available_dates_sensor'", workflows) if "source" in node.value else SourceSpec()
    defaults = _policy(check, node, {"max_attempts": DEFAULT_MAX_ATTEMPTS, "retry_after": DEFAULT_RETRY_AFTER, "catch_up": "all"})
    max_runs = _count(check, node.child("max_runs_per_tick"), "max_runs_per_tick") if "max_runs_per_tick" in node.value else None
    entries: list[SensorEntry] = []
    if "workflows" in node.value:
        w = node.child("workflows")
        if not w.is_sequence or len(w.value) == 0:
            check.add(w.pos, f"'workflows' of 'available_dates_sensor' must be a non-empty list of entries with 'workflow_name', not {type_name(w.value)}")
        else:
            misspelt = _misspelt_references(check, workflows, w)
            entries = [e for e in (_entry(check, item, workflows, misspelt, defaults) for item in w.elements()) if e is not None]
            _duplicate_entries(check, entries)
            if "cdr_types" in node.value and source is not None:
                source, entries = _sensor_cdr_types(check, node, source, entries)
            if source is not None:
                _source_cycles(check, entries, source)
    if len(check.problems) > before or source is None:
        return None
    return SensorSpec(schedule=schedule, workflows=tuple(entries), source=source, position=node.pos, max_runs_per_tick=max_runs)


def _count(check: _Checker, node: Node, key: str) -> int | None:
    """A whole number of 1 or more (``null``: no bound)."""
    if node.value is None:
        return None
    if isinstance(node.value, bool) or not isinstance(node.value, int) or node.value < 1:
        check.add(node.pos, f"'{key}' must be a whole number of 1 or more, not {node.value!r}")
        return None
    return int(node.value)


def _policy(check: _Checker, node: Node, defaults: dict[str, Any]) -> dict[str, Any]:
    """``max_attempts``, ``retry_after`` and ``catch_up`` of a sensor block or entry, over ``defaults``."""
    policy = dict(defaults)
    if "max_attempts" in node.value:
        count = _count(check, node.child("max_attempts"), "max_attempts")
        if count is not None:
            policy["max_attempts"] = count
        elif node.value["max_attempts"] is None:
            check.add(node.child("max_attempts").pos, "'max_attempts' must be a whole number of 1 or more, not null")
    if "retry_after" in node.value:
        r = node.child("retry_after")
        try:
            policy["retry_after"] = parse_duration(r.value)
        except ValueError as exc:
            check.add(r.pos, f"'retry_after' {exc} (0: retry on the next tick)")
    if "catch_up" in node.value:
        c = node.child("catch_up")
        if c.value not in CATCH_UP:
            check.add(c.pos, f"'catch_up' must be {' or '.join(repr(v) for v in CATCH_UP)}, not {c.value!r}{_did_you_mean(str(c.value), CATCH_UP)}")
        else:
            policy["catch_up"] = str(c.value)
    return policy


class _SourceChecks:
    """The :class:`~autoflow.sources.base.CheckContext` a source type's check reports through."""

    def __init__(self, check: _Checker, node: Node, workflows: dict[str, WorkflowSpec]) -> None:
        self._check = check
        self._node = node
        self.inputs_dir = check.inputs_dir
        self.workflow_names = [*workflows, *sorted(check.broken_workflows)]
        self.problems = 0

    def problem(self, where: Any, message: str) -> None:
        self.problems += 1
        path = [where] if isinstance(where, (str, int)) else list(where or ())
        node = self._node
        for step in path:
            try:
                node = node.child(step)
            except (KeyError, IndexError, TypeError, AttributeError):
                break
        self._check.add(node.pos, message)

    def did_you_mean(self, word: str, candidates: Any) -> str:
        return _did_you_mean(word, candidates)


def _source(check: _Checker, node: Node, owner: str, workflows: dict[str, WorkflowSpec]) -> SourceSpec | None:
    """A ``source:`` block (of the sensor or of one entry), checked by its type's own rules."""
    from autoflow.sources import source_registry

    what = f"'source' of {owner}"
    if not node.is_mapping:
        check.add(node.pos, f"{what} must be a mapping with a 'type' ({_quote_list(source_registry.names())}) and that type's keys, not {type_name(node.value)}")
        return None
    if "type" not in node.value:
        check.add(node.pos, f"{what} is missing the required key 'type'; use one of {_quote_list(source_registry.names())}")
        return None
    kind = node.value["type"]
    source_type = source_registry.find(kind) if isinstance(kind, str) else None
    if source_type is None:
        names = source_registry.names()
        check.add(node.child("type").pos, f"unknown date source type {kind!r}{_did_you_mean(str(kind), names)}; use {_quote_list(names)}")
        return None
    before = len(check.problems)
    missing = [key for key, required in source_type.keys.items() if required and key not in node.value]
    if missing:
        example = f", e.g. {source_type.example}" if source_type.example else ""
        check.add(node.pos, f"a '{kind}' source needs {_quote_list(missing)}{example}")
    check.mapping(node, f"the '{kind}' {what}", {"type": True, **dict.fromkeys(source_type.keys, False)})
    options: dict[str, Any] = {}
    for key, value in node.items():
        if key != "type" and key in source_type.keys:
            options[str(key)] = check.plain(value, f"'{key}' of the '{kind}' source")
    if len(check.problems) > before:
        return None
    checks = _SourceChecks(check, node, workflows)
    kept = source_type.check(options, checks)
    if kept is None or checks.problems:
        if not checks.problems:
            check.add(node.pos, f"the '{kind}' {what} is not valid")
        return None
    return SourceSpec(type=str(kind), options=kept, position=node.pos)


def _sensor_cdr_types(
    check: _Checker, node: Node, source: SourceSpec, entries: list[SensorEntry]
) -> tuple[SourceSpec | None, list[SensorEntry]]:
    """The sensor-level ``cdr_types`` (AutoFlow's original key): the ``cdr_types`` of every
    FlowAPI source of the sensor (its own and its entries') that names none itself."""
    import dataclasses

    from autoflow.sources import FLOWAPI

    flowapi = [spec for spec in (source, *(e.source for e in entries if e.source is not None)) if spec.type == "flowapi"]
    if not flowapi:
        check.add(node.key_pos("cdr_types"), f"'cdr_types' applies to a 'flowapi' source, and this sensor reads none (its source is '{source.type}'); remove it")
        return None, entries
    if node.value["cdr_types"] is None:
        return source, entries
    checks = _SourceChecks(check, node, {})
    kept = FLOWAPI.check({"cdr_types": check.plain(node.child("cdr_types"), "'cdr_types'")}, checks)
    if kept is None or checks.problems:
        return None, entries

    def with_kinds(spec: SourceSpec) -> SourceSpec:
        if spec.type != "flowapi" or spec.get("cdr_types") is not None:
            return spec
        return dataclasses.replace(spec, options={**spec.options, **kept})

    return with_kinds(source), [e if e.source is None else dataclasses.replace(e, source=with_kinds(e.source)) for e in entries]


def _source_cycles(check: _Checker, entries: list[SensorEntry], sensor_source: SourceSpec) -> None:
    """Report each cycle of workflows waiting for each other's runs through their sources once."""
    from autoflow.sources import source_registry

    reads: dict[str, dict[str, SourceSpec]] = {}  # workflow -> upstream workflow -> the source that reads it
    for entry in entries:
        spec = entry.source or sensor_source
        source_type = source_registry.find(spec.type)
        for upstream in source_type.upstream(spec) if source_type else ():
            reads.setdefault(entry.workflow_name, {}).setdefault(upstream, spec)
    reported: set[frozenset[str]] = set()

    def visit(name: str, path: list[str]) -> None:
        trail = [*path, name]
        for upstream, spec in reads.get(name, {}).items():
            if upstream not in trail:
                visit(upstream, trail)
                continue
            cycle = trail[trail.index(upstream):] + [upstream]
            if frozenset(cycle) in reported:
                continue
            reported.add(frozenset(cycle))
            where = spec.position or Position(CONFIG_FILENAME, 1, 1)
            if upstream == name and len(cycle) == 2:
                check.add(where, f"workflow '{name}' waits for its own runs through its 'workflow' source: no run could ever start; name another workflow")
            else:
                check.add(where, f"workflows wait for each other's runs through their sources: {' -> '.join(cycle)}; no run in this cycle could ever start")

    for name in sorted(reads):
        visit(name, [])


def _entry(
    check: _Checker, node: Node, workflows: dict[str, WorkflowSpec], misspelt: dict[str, set[str]], defaults: dict[str, Any]
) -> SensorEntry | None:
    """One sensor entry; ``misspelt`` (workflow -> references) were reported at their notebook already."""
    if not check.mapping(node, "a sensor entry", ENTRY_KEYS):
        return None
    before = len(check.problems)
    name = check.string(node, "workflow_name", "'workflow_name'") if "workflow_name" in node.value else None
    workflow = workflows.get(name) if name else None
    known = name is not None and workflow is not None
    if name is not None and workflow is None and name not in check.broken_workflows and check.workflow_names_known:
        check.add(
            node.child("workflow_name").pos,
            f"sensor entry names workflow '{name}', which is not defined{_did_you_mean(name, workflows)}; "
            "define it under 'workflows' or fix the name",
        )
    parameters: dict[str, Any] = {}
    suggested: set[str] = set()  # parameters the entry probably meant by a misspelt key
    if "parameters" in node.value and node.value["parameters"] is not None:
        params = node.child("parameters")
        if not params.is_mapping:
            check.add(params.pos, f"'parameters' of a sensor entry must be a mapping of parameter names to values, not {type_name(params.value)}")
        else:
            for key, value in params.items():
                if not isinstance(key, str):
                    check.add(params.key_pos(key), f"parameter name {key!r} must be a string")
                    continue
                if key in AUTOMATIC_PARAMETERS:
                    check.add(params.key_pos(key), f"parameter '{key}' is supplied automatically by AutoFlow; remove it from the sensor entry")
                    continue
                if workflow is not None and key not in workflow.workflow_parameters:
                    needed = sorted(workflow.workflow_parameters)
                    close = _close_parameter(key, workflow)
                    suggested.update(close)
                    uses = f"its notebooks use {_quote_list(needed)}" if needed else "its notebooks take no workflow parameters"
                    check.add(
                        params.key_pos(key),
                        f"parameter '{key}' is not used by any notebook of workflow '{workflow.name}'"
                        f"{_did_you_mean(key, close)}; {uses}",
                    )
                    continue
                plain = check.plain(value, f"parameter '{key}'")
                if plain is not None or value.value is None:
                    parameters[key] = plain
    if workflow is not None:
        given = set(node.value.get("parameters") or {}) if isinstance(node.value.get("parameters"), dict) else set()
        missing = sorted(workflow.workflow_parameters - given - suggested - misspelt.get(workflow.name, set()))
        if missing:
            check.add(
                node.pos,
                f"sensor entry for workflow '{workflow.name}' is missing parameter(s) {_quote_list(missing)} "
                "that its notebooks need; add them under 'parameters'",
            )
    earliest = _earliest_date(check, node.child("earliest_date")) if "earliest_date" in node.value else None
    stencil = _stencil(check, node.child("date_stencil")) if "date_stencil" in node.value else DateStencil()
    policy = _policy(check, node, defaults)
    late_data_after = _late_data(check, node.child("late_data")) if "late_data" in node.value else None
    source = None
    if "source" in node.value and node.value["source"] is not None:
        source = _source(check, node.child("source"), "a sensor entry", workflows)
    if len(check.problems) > before or not known or stencil is None or name is None:
        return None
    return SensorEntry(
        workflow_name=name,
        parameters=frozen_map(parameters),
        earliest_date=earliest,
        date_stencil=stencil,
        position=node.pos,
        **policy,
        late_data_after=late_data_after,
        source=source,
    )


def _earliest_date(check: _Checker, node: Node) -> dt.date | None:
    value = node.value
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        check.add(node.pos, f"'earliest_date' must be a date like 2016-01-01, not a date and time ({value})")
        return None
    if isinstance(value, dt.date):
        return dt.date(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    check.add(node.pos, f"'earliest_date' must be a date like 2016-01-01, not {value!r}")
    return None


def _stencil(check: _Checker, node: Node) -> DateStencil | None:
    if node.value is None:
        return DateStencil()
    if not node.is_sequence:
        check.add(node.pos, f"'date_stencil' must be a list of day offsets, dates or [start, end] intervals, not {type_name(node.value)}")
        return None
    ok = True
    for element in node.elements():
        try:
            DateStencil([to_plain(element.value)])
        except (TypeError, ValueError) as exc:
            ok = False
            check.add(element.pos, f"invalid date stencil element: {exc}; use a day offset (e.g. -1), a date (e.g. 2016-01-01) or a [start, end] pair of those")
    if not ok:
        return None
    return DateStencil(to_plain(node.value))


def _close_parameter(key: str, workflow: WorkflowSpec) -> list[str]:
    """The workflow parameter a misspelt sensor-entry key most likely means (a list of 0 or 1)."""
    return difflib.get_close_matches(key, sorted(workflow.workflow_parameters), n=1, cutoff=0.6)


def _misspelt_references(check: _Checker, workflows: dict[str, WorkflowSpec], entries: Node) -> dict[str, set[str]]:
    """Report notebook references that look like a misspelt notebook label or automatic parameter.

    A reference that no sensor entry supplies and that is close to a label (``analyis``) is a typo
    in the notebook, not a parameter every entry lacks: it is reported once, at the notebook, and
    the entries are not told to add it. Returns those references by workflow name.
    """
    supplied: dict[str, set[str]] = {}
    for entry in entries.value:
        if isinstance(entry, dict) and isinstance(entry.get("workflow_name"), str):
            params = entry.get("parameters")
            names = {str(k) for k in params} if isinstance(params, dict) else set()
            supplied.setdefault(entry["workflow_name"], set()).update(names)
    misspelt: dict[str, set[str]] = {}
    for workflow in workflows.values():
        if workflow.name not in supplied:
            continue  # only run by `autoflow trigger`, which names its parameters itself
        meant = {m for key in supplied[workflow.name] if key not in workflow.workflow_parameters for m in _close_parameter(key, workflow)}
        for notebook in workflow.notebooks.values():
            for name, ref in notebook.parameters.items():
                if ref not in workflow.workflow_parameters or ref in supplied[workflow.name] or ref in meant:
                    continue
                close = difflib.get_close_matches(ref, [*workflow.notebooks, *AUTOMATIC_PARAMETERS], n=1, cutoff=0.6)
                if not close:
                    continue  # a real workflow parameter: the entries that lack it say so
                misspelt.setdefault(workflow.name, set()).add(ref)
                pos = notebook.parameter_positions.get(name) or notebook.position
                assert pos is not None
                check.add(
                    pos,
                    f"parameter '{name}' of notebook '{notebook.label}' refers to '{ref}' (did you mean '{close[0]}'?), "
                    f"which is not a notebook label, an automatic parameter, or a parameter given by any sensor "
                    f"entry for workflow '{workflow.name}'",
                )
    return misspelt


def _duplicate_entries(check: _Checker, entries: list[SensorEntry]) -> None:
    seen: dict[tuple[str, str], SensorEntry] = {}
    for entry in entries:
        key = (entry.workflow_name, canonical_json(entry.parameters))
        if key in seen:
            first = seen[key].position
            assert entry.position is not None and first is not None
            check.add(
                entry.position,
                f"sensor entry repeats the entry at line {first.line} (same workflow '{entry.workflow_name}' and "
                "parameters); the runs would be the same — remove one or change its parameters",
            )
        else:
            seen[key] = entry


# -- notifications ----------------------------------------------------------------------------


def _notifications(check: _Checker, node: Node) -> tuple[NotificationSpec, ...]:
    """The top-level ``notifications`` list: Apprise URLs and the events each is sent."""
    if node.value is None:
        return ()
    if not node.is_sequence:
        check.add(node.pos, f"'notifications' must be a list of targets, each with 'url' and optional 'events', not {type_name(node.value)}")
        return ()
    targets: list[NotificationSpec] = []
    for item in node.elements():
        if not check.mapping(item, "a notification target", NOTIFICATION_KEYS):
            continue
        url = check.string(item, "url", "notification 'url'") if "url" in item.value else None
        if url is not None:
            problem = template_problem(url)
            if problem:
                check.add(item.child("url").pos, f"notification 'url': {problem}")
                url = None
        events = _events(check, item.child("events")) if "events" in item.value else DEFAULT_NOTIFICATION_EVENTS
        if url is not None and events is not None:
            targets.append(NotificationSpec(url_template=url, events=events, position=item.pos))
    return tuple(targets)


def _events(check: _Checker, node: Node) -> frozenset[str] | None:
    if not node.is_sequence or len(node.value) == 0:
        check.add(
            node.pos,
            f"notification 'events' must be a non-empty list drawn from {_quote_list(NOTIFICATION_EVENTS)} "
            f"(or omitted for {_quote_list(e for e in NOTIFICATION_EVENTS if e in DEFAULT_NOTIFICATION_EVENTS)}), "
            f"not {'an empty list' if node.is_sequence else type_name(node.value)}",
        )
        return None
    events: set[str] = set()
    ok = True
    for item in node.elements():
        if item.value not in NOTIFICATION_EVENTS:
            check.add(item.pos, f"unknown notification event {item.value!r}{_did_you_mean(item.value, NOTIFICATION_EVENTS)}; use any of {_quote_list(NOTIFICATION_EVENTS)}")
            ok = False
        else:
            events.add(str(item.value))
    return frozenset(events) if ok else None


def _late_data(check: _Checker, node: Node) -> float | None:
    """A sensor entry's ``late_data: {after: DURATION}`` in seconds (None when null or invalid)."""
    if node.value is None or not check.mapping(node, "'late_data' of a sensor entry", LATE_DATA_KEYS) or "after" not in node.value:
        return None
    after = node.child("after")
    try:
        seconds = parse_duration(after.value)
    except ValueError as exc:
        check.add(after.pos, f"'after' of 'late_data' {exc}")
        return None
    if seconds <= 0:
        check.add(after.pos, "'after' of 'late_data' must be longer than 0, such as '2 days'")
        return None
    return seconds


# -- report -----------------------------------------------------------------------------------


def _report(check: _Checker, node: Node) -> ReportSpec:
    """The top-level ``report`` block: what every report shows besides the notebook."""
    if node.value is None or not check.mapping(node, "'report'", REPORT_KEYS):
        return ReportSpec(position=node.pos)
    organisation: str | None = None
    if "organisation" in node.value and node.value["organisation"] is not None:
        organisation = check.string(node, "organisation", "'organisation' of 'report'")
        if organisation is not None and any(ord(c) < 0x20 or ord(c) == 0x7F for c in organisation):
            check.add(node.child("organisation").pos, "'organisation' of 'report' must be one line of text, without control characters")
            organisation = None
    generated_at = True
    if "generated_at" in node.value:
        flag = node.child("generated_at")
        if isinstance(flag.value, bool):
            generated_at = flag.value
        else:
            check.add(flag.pos, f"'generated_at' of 'report' must be true or false, not {type_name(flag.value)}")
    return ReportSpec(organisation=organisation.strip() if organisation else None, generated_at=generated_at, position=node.pos)


__all__ = ["CONFIG_FILENAME", "load_config", "load_config_text"]
