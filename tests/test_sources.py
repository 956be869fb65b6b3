"""The source registry: each type's workflows.yml block checked with positions, per-entry sources,
cycles through ``workflow`` sources, the ``workflow`` source over a real run history, and a
third-party source type registered through an entry point."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autoflow.parameters import params_hash
from autoflow.planning import plan
from autoflow.redaction import environment_without_secrets
from autoflow.scan import build_sources, current_plan
from autoflow.settings import Settings
from autoflow.sources import SourceContext, SourceRegistry, make_source, source_registry
from autoflow.sources.workflow import WorkflowSource
from autoflow.spec.models import SensorEntry, SourceSpec
from autoflow.store import RunStore, owner_id
from tests.configs import make_inputs
from tests.test_spec import has, load, problems

DAY = dt.date(2024, 3, 4)

TWO = """\
workflows:
  - name: daily
    notebooks:
      run: {filename: b.ipynb}
  - name: weekly
    notebooks:
      run: {filename: b.ipynb}
available_dates_sensor:
  schedule: null
  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}
  workflows:
    - workflow_name: daily
    - workflow_name: weekly
      source: {type: workflow, workflow: daily}
      date_stencil: [[-6, 0]]
"""


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return make_inputs(tmp_path)


def test_an_entry_has_its_own_source_and_the_others_the_sensors(inputs: Path) -> None:
    config = load(inputs, TWO)
    daily, weekly = config.sensor.workflows
    assert daily.source is None and config.sensor.source_for(daily).type == "directory"
    assert weekly.source == SourceSpec("workflow", {"workflow": "daily"})
    assert weekly.source is not None and weekly.source.position is not None and weekly.source.position.line == 14
    assert list(config.sensor.sources().values()) == [[0], [1]]


def test_the_original_cdr_types_key_is_every_flowapi_sources_default(inputs: Path) -> None:
    text = TWO.replace("  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}\n", "  cdr_types: [sms]\n")
    text = text.replace("    - workflow_name: daily\n", "    - workflow_name: daily\n      source: {type: flowapi, cdr_types: [calls]}\n")
    config = load(inputs, text)
    assert config.sensor.cdr_types == ("sms",)
    assert config.sensor.source_for(config.sensor.workflows[0]).get("cdr_types") == ["calls"]  # its own wins
    both = text.replace("  cdr_types: [sms]\n", "  cdr_types: [sms]\n  source: {type: flowapi, cdr_types: [mds]}\n")
    assert load(inputs, both).sensor.cdr_types == ("mds",)  # the source's own cdr_types win


@pytest.mark.parametrize(
    ("block", "line", "fragments"),
    [
        ("{type: workflow}", 14, ["a 'workflow' source needs 'workflow', e.g. {type: workflow, workflow: daily-report}"]),
        ("{type: workflow, workflow: dialy}", 14, ["'workflow' names 'dialy', which is not defined", "did you mean 'daily'"]),
        ("{type: workflow, workflow: daily, parameters: [3]}", 14, ["each parameter set of a workflow source must be a mapping"]),
        ("{type: workflow, workflow: daily, pattern: x}", 14, ["unknown key 'pattern' in the 'workflow' 'source' of a sensor entry", "allowed keys are 'type', 'workflow', 'parameters'"]),
        ("{type: workflw, workflow: daily}", 14, ["unknown date source type 'workflw'", "did you mean 'workflow'", "'sql'"]),
        ("{type: directory, pattern: 'data/x.csv'}", 14, ["'pattern' 'data/x.csv'", "{date:FORMAT}"]),
        ("{type: flowapi, cdr_types: [calls, smss]}", 14, ["unknown CDR type 'smss'", "did you mean 'sms'"]),
        ("weekly", 14, ["'source' of a sensor entry must be a mapping with a 'type'"]),
        ("{type: sql, uri: 'sqlite:///d.db', query: 'DELETE FROM t'}", 14, ["the query is a DELETE statement; a date source only reads"]),
        ("{type: sql, uri: 'postgresql://reader:pw@db/cdr', table: t, column: c}", 14, ["postgresql://reader:***@db/cdr has a password written in it"]),
        ("{type: sql, uri: 'sqlite:///d.db', table: t}", 14, ["'table' needs a 'column'"]),
        ("{type: sql, table: t, column: c}", 14, ["a 'sql' source needs 'uri', e.g. {type: sql, uri: "]),
    ],
)
def test_each_source_type_reports_its_mistakes_where_they_are(inputs: Path, block: str, line: int, fragments: list[str]) -> None:
    text = TWO.replace("source: {type: workflow, workflow: daily}", f"source: {block}")
    found = problems(inputs, text)
    assert has(found, line, *fragments), found
    assert len(found) == 1, found


def test_workflows_waiting_for_each_other_are_a_validation_error(inputs: Path) -> None:
    self_loop = TWO.replace("source: {type: workflow, workflow: daily}", "source: {type: workflow, workflow: weekly}")
    assert has(problems(inputs, self_loop), 14, "workflow 'weekly' waits for its own runs")
    cycle = TWO.replace("    - workflow_name: daily\n", "    - workflow_name: daily\n      source: {type: workflow, workflow: weekly}\n")
    found = problems(inputs, cycle)
    assert len(found) == 1 and has(found, 15, "daily -> weekly -> daily", "no run in this cycle could ever start"), found
    # the sensor's own source counts for every entry without one
    via_sensor = TWO.replace("{type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}", "{type: workflow, workflow: weekly}")
    found = problems(inputs, via_sensor)
    assert len(found) == 1 and has(found, 14, "daily -> weekly -> daily"), found


def test_cdr_types_with_no_flowapi_source_is_a_mistake(inputs: Path) -> None:
    text = TWO.replace("  schedule: null\n", "  schedule: null\n  cdr_types: [calls]\n")
    assert has(problems(inputs, text), 10, "'cdr_types' applies to a 'flowapi' source, and this sensor reads none")


def test_validate_describes_each_source(inputs: Path, tmp_path: Path) -> None:
    from autoflow.cli.validate import summary

    said = summary(load(inputs, TWO), dt.datetime(2024, 3, 4, tzinfo=dt.timezone.utc))
    assert "checks files matching 'data/{date:%Y-%m-%d}.csv'" in said
    assert "1 entry with a source of its own: 'weekly' waits for the dates 'daily' succeeded for" in said


# -- the workflow source over a real run history ------------------------------------------------


def succeed(store: RunStore, workflow: str, day: dt.date, parameters: dict[str, object] | None = None, *, ok: bool = True) -> None:
    attempt = store.claim(workflow=workflow, parameters=parameters or {}, reference_date=day, date_ranges=[(day, day)], previous_attempt=0, owner=owner_id())
    if attempt is None:  # a second attempt at the same run
        previous = store.latest_attempts([workflow])
        prior = next(a for k, a in previous.items() if k.reference_date == day and k.params_hash == params_hash(parameters or {}))
        attempt = store.claim(workflow=workflow, parameters=parameters or {}, reference_date=day, date_ranges=[(day, day)], previous_attempt=prior.attempt, owner=owner_id())
    assert attempt is not None
    assert store.finish(attempt.id, success=ok, error=None if ok else "boom")


def test_workflow_source_reads_the_latest_state_of_each_run(run_store: RunStore) -> None:
    run_store.upgrade()
    for i in range(7):
        succeed(run_store, "daily", DAY + dt.timedelta(days=i), ok=i != 3)
    succeed(run_store, "other", DAY + dt.timedelta(days=9))
    source = WorkflowSource("daily", run_store)
    days = source.available_dates()["workflow daily"]
    assert days == [DAY + dt.timedelta(days=i) for i in range(7) if i != 3]
    succeed(run_store, "daily", DAY + dt.timedelta(days=3))  # the failed date is retried and succeeds
    assert DAY + dt.timedelta(days=3) in source.available_dates()["workflow daily"]
    succeed(run_store, "daily", DAY, ok=False)  # a rerun of a succeeded date failed: no longer available
    assert DAY not in source.available_dates()["workflow daily"]
    assert WorkflowSource("daily", None).available_dates() == {"workflow daily": []}


def test_workflow_source_waits_for_every_parameter_set(run_store: RunStore) -> None:
    run_store.upgrade()
    for region in ("north", "south"):
        succeed(run_store, "regional", DAY, {"region": region})
    succeed(run_store, "regional", DAY + dt.timedelta(days=1), {"region": "north"})
    both = WorkflowSource("regional", run_store, [{"region": "north"}, {"region": "south"}])
    assert both.available_dates() == {"workflow regional": [DAY]}
    north = WorkflowSource("regional", run_store, [{"region": "north"}])
    assert north.available_dates() == {"workflow regional": [DAY, DAY + dt.timedelta(days=1)]}
    assert "north" in both.describe() and "south" in both.describe()


def test_a_weekly_entry_is_due_once_seven_daily_runs_succeeded(inputs: Path, tmp_path: Path) -> None:
    text = TWO.replace("    - workflow_name: daily\n", "    - workflow_name: daily\n      parameters: {}\n")
    config = load(inputs, text)
    settings = Settings(outputs_dir_raw=str(tmp_path / "out"))
    (inputs / "data").mkdir()
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        store.upgrade()
        sources = build_sources(config, settings, store)
        for i in range(6):
            (inputs / "data" / f"{DAY + dt.timedelta(days=i)}.csv").touch()
            succeed(store, "daily", DAY + dt.timedelta(days=i))
        (inputs / "data" / f"{DAY + dt.timedelta(days=6)}.csv").touch()
        scan = current_plan(config, settings, store, sources, detail=True)
        assert [(r.workflow, r.reference_date) for r in scan.plan.due] == [("daily", DAY + dt.timedelta(days=6))]
        assert {s.kind for s in scan.plan.skipped if s.workflow == "weekly"} == {"needing data from before the first available date"}
        succeed(store, "daily", DAY + dt.timedelta(days=6))
        scan = current_plan(config, settings, store, sources, detail=True)
        assert [(r.workflow, r.reference_date, r.date_ranges) for r in scan.plan.due] == [
            ("weekly", DAY + dt.timedelta(days=6), ((DAY, DAY + dt.timedelta(days=6)),))
        ]
        assert scan.newest_dates() == {0: DAY + dt.timedelta(days=6), 1: DAY + dt.timedelta(days=6)}


def test_a_failing_source_leaves_only_its_own_entries_out(inputs: Path, tmp_path: Path) -> None:
    config = load(inputs, TWO)  # the directory source's data/ folder does not exist: it fails
    settings = Settings(outputs_dir_raw=str(tmp_path / "out"))
    with RunStore(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        store.upgrade()
        for i in range(7):
            succeed(store, "daily", DAY + dt.timedelta(days=i))
        scan = current_plan(config, settings, store, build_sources(config, settings, store))
    assert [r.workflow for r in scan.plan.due] == ["weekly"]
    assert len(scan.errors) == 1 and "data" in scan.errors[0]
    assert 0 not in scan.newest_dates()


def test_planning_gives_each_entry_its_own_dates() -> None:
    entries = [SensorEntry("a"), SensorEntry("b")]
    result = plan(entries, [DAY], {}, now=dt.datetime.now(dt.timezone.utc), lease_seconds=60, per_entry=[None, [DAY + dt.timedelta(days=1)]])
    assert [(r.workflow, r.reference_date) for r in result.due] == [("a", DAY), ("b", DAY + dt.timedelta(days=1))]
    assert result.available_dates == {DAY, DAY + dt.timedelta(days=1)}


# -- secrets a source names ----------------------------------------------------------------------


def test_a_secret_the_config_names_is_hidden_from_child_processes(inputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGION_DB_PASSWORD", "s3cret-region-password")
    assert "REGION_DB_PASSWORD" in environment_without_secrets()
    text = TWO.replace(
        "source: {type: workflow, workflow: daily}",
        "source: {type: sql, uri: 'postgresql://reader:{}@127.0.0.1:1/cdr', password_secret: REGION_DB_PASSWORD, table: calls, column: day}",
    )
    config = load(inputs, text)
    assert config.secret_names == {"REGION_DB_PASSWORD"}
    assert "REGION_DB_PASSWORD" not in environment_without_secrets()


# -- a third-party source type -------------------------------------------------------------------

PLUGIN = '''
import datetime as dt
from autoflow.sources import SourceType

class Fixed:
    def __init__(self, days):
        self.days = days
    def available_dates(self):
        return {"fixed": sorted(self.days)}
    def describe(self):
        return f"{len(self.days)} fixed date(s)"

def check(options, context):
    days = options["days"]
    if not isinstance(days, list) or not all(isinstance(d, dt.date) for d in days):
        context.problem("days", "'days' must be a list of dates such as 2024-03-04")
        return None
    return {"days": days}

FIXED = SourceType(
    name="fixed",
    summary="a fixed list of dates",
    keys={"days": True},
    check=check,
    create=lambda spec, context: Fixed(spec.get("days")),
    describe=lambda spec: f"{len(spec.get('days'))} fixed date(s)",
)
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """A distribution on ``sys.path`` whose ``autoflow.date_sources`` entry point names a source type."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "autoflow_fixed_dates.py").write_text(PLUGIN)
    dist = site / "autoflow_fixed_dates-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: autoflow-fixed-dates\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[autoflow.date_sources]\nfixed = autoflow_fixed_dates:FIXED\n")
    return site


def test_a_plugin_registers_through_an_entry_point(plugin_path: Path, inputs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_path))
    registry = SourceRegistry()
    assert registry.names() == ("fixed",)  # a registry of its own: only what the entry points bring
    fixed = registry.get("fixed")
    source = fixed.create(SourceSpec("fixed", {"days": [DAY]}), SourceContext(Settings(), inputs))
    assert source.available_dates() == {"fixed": [DAY]}
    assert make_source(SourceSpec("directory", {"pattern": "d/{date:%Y-%m-%d}.csv"}), SourceContext(Settings(), inputs)).describe().startswith("files matching")
    assert source_registry.find("no-such-type") is None


def test_validate_checks_a_plugins_block_with_positions(plugin_path: Path, inputs: Path) -> None:
    text = TWO.replace("source: {type: workflow, workflow: daily}", "source: {type: fixed, days: [2024-03-04, soon]}")
    (inputs / "workflows.yml").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(plugin_path), "AUTOFLOW_INPUTS_DIR": str(inputs)}
    bad = subprocess.run([sys.executable, "-m", "autoflow", "validate"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().splitlines() == [f"autoflow: error: {inputs / 'workflows.yml'}:14:35: 'days' must be a list of dates such as 2024-03-04"], bad.stderr
    (inputs / "workflows.yml").write_text(text.replace(", soon", ""))
    good = subprocess.run([sys.executable, "-m", "autoflow", "validate"], env=env, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert "'weekly' waits for 1 fixed date(s)" in good.stdout
    assert "Traceback" not in bad.stderr + good.stderr
