"""B3 a tick at scale: one tick's reads and planning with years of dates and a long run history.

For each size (available dates, attempts in the history) and each database (SQLite file,
PostgreSQL on 127.0.0.1:5432), alternating between the two databases:

- a workflows.yml with 50 sensor entries of one workflow (parameter ``region``), stencil
  [[-6, 0]], ``earliest_date`` where the history begins;
- the fake FlowAPI serving every date (the default ``flowapi`` source, over HTTP);
- the history inserted directly with the store's schema: for every entry, one run per date from
  ``earliest_date`` to the day before the newest (1 in 20 runs failed once and then
  succeeded, 1 in 200 is failed and due for a retry); the newest date is new, so every tick has
  50 + a few due runs, as in a deployment that keeps up;
- timed in-process, with one RunStore per database kept open as the service keeps it:
  ``expire_abandoned()`` + ``autoflow.scan.current_plan()`` (what a tick reads and plans before
  claiming), with ``RunStore.count_statements()``; and its parts: the date source, the store's
  ``latest_states`` (the history read), the pure ``planning.plan``;
- ``autoflow plan`` as a whole process on the largest size.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.common import PYTHON, base_env, fake_flowapi, log, run_process, summarize
from benchmarks.context import Bench

WORKFLOW = "tick"
STENCIL_DAYS = 6  # [[-6, 0]]
ADMIN_CONNINFO = os.environ.get("AUTOFLOW_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")

HEADER = """\
# AutoFlow benchmark B3: one workflow, {entries} sensor entries (written by benchmarks/b3_tick.py)
workflows:
  - name: tick
    notebooks:
      compute:
        filename: compute.ipynb
        parameters: {{reference_date: reference_date, date_ranges: date_ranges, region: region}}
available_dates_sensor:
  schedule: "0 2 * * *"
  cdr_types: [calls]
  workflows:
"""
ENTRY = """\
    - workflow_name: tick
      parameters: {{region: region-{index:02d}}}
      earliest_date: {earliest}
      date_stencil: [[-6, 0]]
"""


def _regions(entries: int) -> list[str]:
    return [f"region-{i:02d}" for i in range(entries)]


def write_inputs(directory: Path, entries: int, earliest: dt.date) -> Path:
    workload.write_inputs(directory, extra_compute_parameters=("region",))
    text = HEADER.format(entries=entries) + "".join(ENTRY.format(index=i, earliest=earliest.isoformat()) for i in range(entries))
    (directory / "workflows.yml").write_text(text)
    return directory


def history_rows(dates: list[dt.date], entries: int, attempts: int) -> tuple[list[dict[str, Any]], dt.date]:
    """The rows to insert, and the earliest_date that goes with them."""
    from autoflow.parameters import params_hash, to_typed_json

    n = len(dates)
    per_entry = max(1, min(n - STENCIL_DAYS - 1, round(attempts / (entries * 1.05))))
    first = n - 1 - per_entry
    earliest = dates[first]
    rows: list[dict[str, Any]] = []
    base = dt.datetime(2016, 1, 1, 2, 0, tzinfo=dt.timezone.utc)
    for e, region in enumerate(_regions(entries)):
        params = {"region": region}
        typed, digest = to_typed_json(params), params_hash(params)
        for j, day in enumerate(dates[first : n - 1]):
            ranges = [[(day - dt.timedelta(days=STENCIL_DAYS)).isoformat(), day.isoformat()]]
            started = base + dt.timedelta(days=(day - dates[0]).days, seconds=e * 30)
            if j % 20 == 7:
                states = ["failed", "success"]
            elif j % 200 == 100:
                states = ["failed"]
            else:
                states = ["success"]
            for attempt, state in enumerate(states, start=1):
                start = started + dt.timedelta(minutes=attempt)
                rows.append({
                    "workflow": WORKFLOW, "parameters": typed, "params_hash": digest, "reference_date": day,
                    "date_ranges": ranges, "state": state, "attempt": attempt, "started_at": start,
                    "finished_at": start + dt.timedelta(seconds=42), "heartbeat_at": start + dt.timedelta(seconds=42),
                    "owner": "bench-host:1234:2016-01-01T00:00:00+00:00",
                    "error": "notebook compute failed in cell 2 (In [2]) with RuntimeError: no data" if state == "failed" else None,
                    "notebooks": [f"/srv/autoflow/notebooks/compute__tick__{day.isoformat()}__{digest[:8]}__x.ipynb"],
                    "reports": [], "flow_run_id": secrets.token_hex(16), "trigger": "sensor",
                })  # fmt: skip
    return rows, earliest


def _insert(url: str, rows: list[dict[str, Any]]) -> None:
    import sqlalchemy as sa

    from autoflow.store.schema import run_attempts

    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for i in range(0, len(rows), 10_000):
                connection.execute(run_attempts.insert(), rows[i : i + 10_000])
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(sa.text("ANALYZE autoflow_run_attempts"))
    finally:
        engine.dispose()


class Databases:
    """A SQLite file and a fresh PostgreSQL database per size; the PostgreSQL ones dropped at the end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pg_names: list[str] = []

    def sqlite(self, tag: str) -> str:
        path = self.root / f"{tag}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"

    def postgres(self, tag: str) -> str:
        import psycopg
        from psycopg import sql
        from psycopg.conninfo import conninfo_to_dict

        name = f"autoflow_bench_{tag}_{secrets.token_hex(4)}"
        with psycopg.connect(ADMIN_CONNINFO, autocommit=True, connect_timeout=10) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.pg_names.append(name)
        info = conninfo_to_dict(ADMIN_CONNINFO)
        return f"postgresql+psycopg://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}"

    def drop(self) -> None:
        import psycopg
        from psycopg import sql

        if not self.pg_names:
            return
        with psycopg.connect(ADMIN_CONNINFO, autocommit=True, connect_timeout=10) as connection:
            for name in self.pg_names:
                connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _measure(config: Any, settings: Any, store: Any, source: Any) -> dict[str, Any]:
    from autoflow.planning import plan
    from autoflow.scan import current_plan
    from autoflow.sources import union_of_dates

    with store.count_statements() as statements:
        started = time.perf_counter()
        store.expire_abandoned()
        result = current_plan(config, settings, store, {config.sensor.source: source}).plan
        tick = time.perf_counter() - started
    counted = len(statements)
    t0 = time.perf_counter()
    dates = union_of_dates(source.available_dates())
    t1 = time.perf_counter()
    latest = store.latest_states({e.workflow_name for e in config.sensor.workflows})
    t2 = time.perf_counter()
    plan(config.sensor.workflows, dates, latest, now=dt.datetime.now(dt.timezone.utc), lease_seconds=settings.run_lease_seconds, detail=False)
    t3 = time.perf_counter()
    return {
        "tick_reads_and_plan": tick,
        "statements": counted,
        "statement_kinds": sorted({s.split()[0].upper() for s in statements}),
        "due": len(result.due),
        "skipped": result.skipped_total,
        "date_source": t1 - t0,
        "history_read": t2 - t1,
        "history_rows": len(latest),
        "plan_pure": t3 - t2,
    }


def _area(file: str, function: str) -> str:
    """Which part of a tick a profiled function belongs to."""
    path = file.replace("\\", "/")
    for marker, area in (
        ("autoflow/store/attempts.py", "decoding rows into Attempts (autoflow/store/attempts.py)"),
        ("autoflow/parameters.py", "typed JSON / parameter hashing (autoflow/parameters.py)"),
        ("autoflow/store/schema.py", "UTCDateTime result processing (autoflow/store/schema.py)"),
        ("autoflow/planning.py", "planning (autoflow/planning.py)"),
        ("autoflow/date_stencil.py", "date stencils (autoflow/date_stencil.py)"),
        ("autoflow/store/", "run store (autoflow/store/)"),
        ("sqlalchemy/", "SQLAlchemy (statement compilation, result rows)"),
        ("psycopg", "database driver"),
        ("sqlite3", "database driver"),
        ("flowclient/", "date source (flowclient, HTTP, JSON)"),
        ("requests/", "date source (flowclient, HTTP, JSON)"),
        ("urllib3/", "date source (flowclient, HTTP, JSON)"),
        ("json/", "JSON decoding"),
        ("datetime", "date/datetime parsing"),
    ):  # fmt: skip
        if marker in path:
            return area
    if file == "~":
        if "sqlite3" in function or "psycopg" in function or "fetch" in function or "execute" in function:
            return "database driver"
        if "fromisoformat" in function or "datetime" in function or "date" in function:
            return "date/datetime parsing"
        if "json" in function or "loads" in function:
            return "JSON decoding"
        return "built-ins (" + function.split(" of ")[0].strip("<>").replace("method ", "").replace("built-in ", "") + ")"
    return "other Python"


#: the store's latest-attempts query, written out (all columns), and the same with only what planning reads
LATEST_SQL = """
SELECT {columns} FROM autoflow_run_attempts AS r
WHERE r.workflow IN ('tick') AND NOT EXISTS (
  SELECT 1 FROM autoflow_run_attempts AS n
  WHERE n.workflow = r.workflow AND n.params_hash = r.params_hash
    AND n.reference_date = r.reference_date AND n.attempt > r.attempt)
"""
PLANNING_COLUMNS = "r.workflow, r.params_hash, r.reference_date, r.state, r.attempt, r.heartbeat_at, r.error"


def _sql_alone(url: str, repeats: int) -> dict[str, Any]:
    """The latest-attempts query through SQLAlchemy's driver-level API: no type processing, no Attempt objects."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    out: dict[str, Any] = {}
    try:
        with engine.connect() as connection:
            for name, columns in (("all columns, rows only", "r.*"), ("planning's columns only, rows only", PLANNING_COLUMNS)):
                times = []
                for _ in range(max(repeats, 1)):
                    started = time.perf_counter()
                    rows = connection.exec_driver_sql(LATEST_SQL.format(columns=columns)).fetchall()
                    times.append(time.perf_counter() - started)
                out[name] = summarize(times) | {"values": None, "rows": len(rows)}
    finally:
        engine.dispose()
    return out


def _cprofile(config: Any, settings: Any, store: Any, source: Any) -> dict[str, Any]:
    """Where one tick's reads and planning spend their time (cProfile, own time grouped by area)."""
    import cProfile
    import pstats
    from collections import Counter

    from autoflow.scan import current_plan

    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    store.expire_abandoned()
    current_plan(config, settings, store, {config.sensor.source: source})
    profiler.disable()
    wall = time.perf_counter() - started
    stats = pstats.Stats(profiler)
    areas: Counter[str] = Counter()
    functions = []
    for (file, line, function), (_cc, ncalls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        areas[_area(file, function)] += tottime
        short = file.split("site-packages/")[-1].split("/autoflow/", 1)[-1] if file != "~" else ""
        functions.append((tottime, ncalls, f"{short}:{line}({function})" if short else function))
    total = sum(areas.values()) or 1.0
    return {
        "wall_under_cprofile": round(wall, 3),
        "own_time_by_area": {a: {"seconds": round(t, 3), "share": round(t / total, 3)} for a, t in areas.most_common(12)},
        "top_functions": [{"function": f, "own_seconds": round(t, 3), "calls": n} for t, n, f in sorted(functions, reverse=True)[:15]],
    }


def run(bench: Bench) -> dict[str, Any]:
    from autoflow.settings import Settings
    from autoflow.sources import SourceContext, make_source
    from autoflow.spec.loader import load_config
    from autoflow.store import RunStore

    root = bench.work / "b3"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    databases = Databases(root)
    result: dict[str, Any] = {"entries": bench.cfg.b3_entries, "repeats": bench.cfg.b3_repeats, "sizes": []}
    kinds = ["sqlite", "postgresql"]
    try:
        import psycopg

        psycopg.connect(ADMIN_CONNINFO, connect_timeout=5).close()
    except Exception as exc:  # noqa: BLE001 - measure SQLite alone rather than nothing
        kinds = ["sqlite"]
        bench.error(f"B3: PostgreSQL is not reachable with {ADMIN_CONNINFO!r} ({exc}); measured SQLite only "
                    "(set AUTOFLOW_TEST_POSTGRES to a libpq connection string)")  # fmt: skip
    try:
        for n_dates, n_attempts in bench.cfg.b3_sizes:
            dates = workload.available_dates(n_dates)
            rows, earliest = history_rows(dates, bench.cfg.b3_entries, n_attempts)
            inputs = write_inputs(root / f"inputs-{n_dates}", bench.cfg.b3_entries, earliest)
            config = load_config(inputs)
            size: dict[str, Any] = {"dates": n_dates, "attempts": len(rows), "candidates": n_dates * bench.cfg.b3_entries,
                                    "earliest_date": earliest.isoformat(), "databases": {}}  # fmt: skip
            urls = {kind: databases.sqlite(f"size{n_dates}") if kind == "sqlite" else databases.postgres(f"size{n_dates}") for kind in kinds}
            with fake_flowapi(dates) as (url, token):
                env = {"AUTOFLOW_INPUTS_DIR": str(inputs), "AUTOFLOW_OUTPUTS_DIR": str(root / "outputs"), "FLOWAPI_URL": url,
                       "FLOWAPI_TOKEN": token, "AUTOFLOW_SECRETS_DIR": str(root / "no-secrets")}  # fmt: skip
                stores = {}
                for kind, db_url in urls.items():
                    settings = Settings.from_env({**env, "AUTOFLOW_DB_URI": db_url})
                    store = RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds)
                    store.upgrade()
                    started = time.perf_counter()
                    _insert(db_url, rows)
                    log(f"B3 {n_dates} dates: {len(rows)} attempts inserted into {kind} in {time.perf_counter() - started:.1f} s")
                    stores[kind] = (settings, store)
                source = make_source(config.sensor.source, SourceContext(stores["sqlite"][0], config.inputs_dir))
                samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in urls}
                for i in range(bench.cfg.b3_repeats + 1):  # the first of each is the cold one
                    for kind in (list(urls) if i % 2 == 0 else list(reversed(urls))):
                        settings, store = stores[kind]
                        samples[kind].append(_measure(config, settings, store, source))
                for kind, found in samples.items():
                    cold, warm = found[0], found[1:]
                    size["databases"][kind] = {
                        "cold_first_tick": round(cold["tick_reads_and_plan"], 4),
                        **{key: summarize([s[key] for s in warm]) | {"values": None}
                           for key in ("tick_reads_and_plan", "date_source", "history_read", "plan_pure")},
                        "statements": sorted({s["statements"] for s in found}),
                        "statement_kinds": found[-1]["statement_kinds"],
                        "history_rows": found[-1]["history_rows"],
                        "due": found[-1]["due"],
                        "skipped": found[-1]["skipped"],
                    }  # fmt: skip
                    med = size["databases"][kind]["tick_reads_and_plan"]["median"]
                    log(f"B3 {n_dates} dates on {kind}: tick reads + plan median {med:.3f} s, {found[-1]['statements']} statements, {found[-1]['due']} due")
                if (n_dates, n_attempts) == bench.cfg.b3_sizes[-1]:
                    size["profile"] = {kind: _cprofile(config, *stores[kind], source) for kind in urls}
                    size["sql_alone"] = {kind: _sql_alone(db_url, bench.cfg.b3_repeats) for kind, db_url in urls.items()}
                for _, store in stores.values():
                    store.close()
                if (n_dates, n_attempts) == bench.cfg.b3_sizes[-1]:
                    size["cli_plan"] = _cli_plan(bench, root, env, urls)
            result["sizes"].append(size)
    finally:
        try:
            databases.drop()
        except Exception as exc:  # noqa: BLE001 - report, never mask the benchmark's own result
            bench.error(f"B3: could not drop the benchmark's PostgreSQL databases {databases.pg_names}: {exc}")
    counts = {kind: sorted({c for s in result["sizes"] for c in s["databases"][kind]["statements"]}) for kind in kinds}
    result["statements_independent_of_dates"] = all(len(c) == 1 for c in counts.values())
    result["statement_counts"] = counts
    return result


def _cli_plan(bench: Bench, root: Path, env: dict[str, str], urls: dict[str, str]) -> dict[str, Any]:
    """``autoflow plan`` as a whole process (start-up, schema check, reads, plan, printing)."""
    walls: dict[str, list[float]] = {kind: [] for kind in urls}
    for i in range(bench.cfg.b3_cli_repeats):
        for kind in (list(urls) if i % 2 == 0 else list(reversed(urls))):
            proc = run_process([PYTHON, "-m", "autoflow", "plan"], env=base_env(**env, AUTOFLOW_DB_URI=urls[kind]), cwd=root,
                               timeout=600, log_file=root / f"cli-plan-{kind}-{i + 1}.log", sample=False)  # fmt: skip
            if not proc.ok:
                bench.error(f"B3 autoflow plan on {kind}: exit {proc.returncode}; log {root / f'cli-plan-{kind}-{i + 1}.log'}")
            walls[kind].append(proc.wall)
    return {kind: summarize(values) for kind, values in walls.items()}
