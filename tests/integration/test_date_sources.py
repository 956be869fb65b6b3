"""Date sources end to end through one running service: a ``sql`` source on the real PostgreSQL
(its password a Docker secret), a ``sql`` query on a SQLite file, and ``workflow`` sources that
chain workflows — a roll-up that waits for every region's run, a three-day summary that waits
for one region's runs — with a failed upstream date picked up once its retry succeeds."""

from __future__ import annotations

import datetime as dt
import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.databases import postgres_url_for
from tests.fake_flowapi import FakeFlowAPI
from tests.integration.test_service import Deployment, _wait_for
from tests.nbfactory import write_notebook

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.usefixtures("prefect_api_url")]

D = dt.date
PASSWORD = "loads-db-secret-7731"  # trust authentication accepts it; it must never show anywhere

WORK = """\
import pathlib
marker = pathlib.Path(flag_dir) / f"{tag}-{reference_date}.fail"
if marker.exists():
    raise RuntimeError(f"no good data for {tag} on {reference_date}")
"""

WORKFLOWS = """\
workflows:
  - name: region
    notebooks:
      work: {filename: work.ipynb, parameters: {reference_date: reference_date, flag_dir: flag_dir, tag: tag}}
  - name: rollup
    notebooks:
      work: {filename: work.ipynb, parameters: {reference_date: reference_date, flag_dir: flag_dir, tag: tag}}
  - name: summary
    notebooks:
      work: {filename: work.ipynb, parameters: {reference_date: reference_date, flag_dir: flag_dir, tag: tag}}
  - name: extra
    notebooks:
      work: {filename: work.ipynb, parameters: {reference_date: reference_date, flag_dir: flag_dir, tag: tag}}
available_dates_sensor:
  schedule: '* * * * *'
  max_attempts: 5
  retry_after: 0
  source: {type: sql, uri: 'URI', password_secret: LOADS_DB_PASSWORD, table: public.loads, column: loaded_at}
  workflows:
    - workflow_name: region
      parameters: {flag_dir: FLAGS, tag: north}
    - workflow_name: region
      parameters: {flag_dir: FLAGS, tag: south}
    - workflow_name: rollup
      parameters: {flag_dir: FLAGS, tag: rollup}
      source: {type: workflow, workflow: region}
    - workflow_name: summary
      parameters: {flag_dir: FLAGS, tag: summary}
      source: {type: workflow, workflow: region, parameters: {flag_dir: FLAGS, tag: north}}
      date_stencil: [[-2, 0]]
    - workflow_name: extra
      parameters: {flag_dir: FLAGS, tag: extra}
      source: {type: sql, uri: 'sqlite:///dates.db', query: "SELECT day FROM batches WHERE complete = 1"}
"""


@pytest.fixture
def loads_db(postgres_database: str) -> Iterator[str]:
    """The PostgreSQL database (the run history's too) with a ``loads`` table of timestamps."""
    with psycopg.connect(postgres_url_for(postgres_database).replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute("CREATE TABLE public.loads (loaded_at timestamptz, note text)")
        for day in (1, 2, 3):
            connection.execute("INSERT INTO public.loads VALUES (%s, 'ok')", (dt.datetime(2024, 3, day, 5, 30, tzinfo=dt.timezone.utc),))
        connection.execute("INSERT INTO public.loads VALUES (NULL, 'not loaded yet')")
    yield postgres_database


def _states(app: Deployment) -> dict[tuple[str, str, str], list[str]]:
    """(workflow, tag, date) -> the states of its attempts, in order."""
    found: dict[tuple[str, str, str], list[str]] = {}
    for a in sorted(app.history(), key=lambda a: (a.workflow, a.reference_date, a.attempt)):
        found.setdefault((a.workflow, str(a.parameters["tag"]), a.reference_date.isoformat()), []).append(a.state)
    return found


def _succeeded(app: Deployment, workflow: str, tag: str) -> set[str]:
    return {day for (wf, t, day), states in _states(app).items() if wf == workflow and t == tag and states[-1] == "success"}


def test_sql_and_workflow_sources_drive_one_service(tmp_path: Path, loads_db: str) -> None:
    db_uri = postgres_url_for(loads_db, password="{}").replace("postgresql+psycopg://", "postgresql://")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "LOADS_DB_PASSWORD").write_text(PASSWORD + "\n")
    with FakeFlowAPI({}) as flowapi:  # not read by these sources; Deployment wants one
        app = Deployment(
            tmp_path, db_uri, flowapi, schedule="'* * * * *'",
            extra_env={"AUTOFLOW_TEST_TICK_SECONDS": "2", "AUTOFLOW_SECRETS_DIR": str(secrets), "AUTOFLOW_DB_PASSWORD": PASSWORD},
        )  # fmt: skip
        write_notebook(app.inputs / "work.ipynb", WORK, parameters="reference_date = None\nflag_dir = None\ntag = None")
        (app.inputs / "workflows.yml").write_text(WORKFLOWS.replace("URI", db_uri).replace("FLAGS", str(app.flags)))
        with sqlite3.connect(app.inputs / "dates.db") as batches:
            batches.execute("CREATE TABLE batches (day TEXT, complete INTEGER)")
            batches.executemany("INSERT INTO batches VALUES (?, ?)", [("2024-03-01", 1), ("2024-03-02T23:59:00", 0)])
        (app.flags / "south-2024-03-02.fail").write_text("")

        validated = app.run("validate")
        assert validated.returncode == 0, validated.stderr
        said = " ".join(validated.stdout.split())
        assert "checks SQL database postgresql://postgres:***@127.0.0.1:" in said, said
        assert "'rollup' waits for the dates 'region' succeeded for" in said and "'extra' waits for SQL database sqlite:///dates.db (a query)" in said

        log = tmp_path / "service.log"
        with log.open("w") as sink:
            service = subprocess.Popen([sys.executable, "-m", "autoflow"], env=app.env, stdout=sink, stderr=subprocess.STDOUT, text=True)
        try:
            # 1. The regions run for the dates in the PostgreSQL table (timestamps, truncated; the
            #    NULL ignored); the roll-up only where both regions succeeded; the summary once
            #    north succeeded for three days; extra for the SQLite query's one complete date.
            _wait_for(lambda: _succeeded(app, "rollup", "rollup") == {"2024-03-01", "2024-03-03"}, timeout=240)
            _wait_for(lambda: _succeeded(app, "summary", "summary") == {"2024-03-03"}, timeout=60)
            states = _states(app)
            assert "failed" in states[("region", "south", "2024-03-02")]
            assert ("rollup", "rollup", "2024-03-02") not in states  # south has not succeeded for it
            assert _succeeded(app, "region", "north") == {"2024-03-01", "2024-03-02", "2024-03-03"}
            assert _succeeded(app, "extra", "extra") == {"2024-03-01"}

            # 2. The failed upstream date recovers on a retry: the roll-up for it runs next.
            (app.flags / "south-2024-03-02.fail").unlink()
            _wait_for(lambda: "2024-03-02" in _succeeded(app, "rollup", "rollup"), timeout=120)

            # 3. New rows: a date loaded into PostgreSQL, a batch completed in SQLite.
            with psycopg.connect(postgres_url_for(loads_db).replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
                connection.execute("INSERT INTO public.loads VALUES ('2024-03-04 00:10+00', 'ok')")
            with sqlite3.connect(app.inputs / "dates.db") as batches:
                batches.execute("UPDATE batches SET complete = 1")
            _wait_for(lambda: "2024-03-04" in _succeeded(app, "summary", "summary") and "2024-03-04" in _succeeded(app, "rollup", "rollup"), timeout=180)
            _wait_for(lambda: _succeeded(app, "extra", "extra") == {"2024-03-01", "2024-03-02"}, timeout=60)
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=120)

        summary = next(a for a in app.history() if a.workflow == "summary" and a.reference_date == D(2024, 3, 4))
        assert [list(r) for r in summary.date_ranges] == [[D(2024, 3, 2), D(2024, 3, 4)]]
        text = log.read_text()
        assert "Traceback" not in text
        assert "dates seen in SQL database postgresql://postgres:***@" in text
        assert "dates seen in the run history: runs of 'region' that succeeded" in text
        planned = app.run("plan", "--json")
        assert planned.returncode == 0, planned.stderr
        assert json.loads(planned.stdout)["due"] == []
        # the password: in no log, notebook, report or row of the run history
        for path in [log, *app.outputs.rglob("*")]:
            if path.is_file() and path.suffix not in {".db", ".db-wal", ".db-shm"}:
                assert PASSWORD not in path.read_text(errors="replace"), path
        assert all(PASSWORD not in json.dumps(a.as_json()) for a in app.history())
