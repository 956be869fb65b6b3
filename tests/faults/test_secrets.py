"""Secrets: a distinctive FLOWAPI_TOKEN and database password never show up anywhere they should not.

The database is a PostgreSQL cluster of the suite's own with a role whose password is checked
(SCRAM), so the password really is used. Every command runs at DEBUG, with failures: a notebook
that raises, FlowAPI refusing the token, FlowAPI quoting the token back in its error, a wrong
database password, a password written straight into AUTOFLOW_DB_URI. Afterwards neither secret
may appear in any file under the outputs directory, any line AutoFlow printed, `status --json`,
a pg_dump of the run history, the Prefect server's database or log, or the command line of any
process AutoFlow started (sampled from /proc while each command ran). The database password may
not be in the environment of those processes either; the token may, for kernels and what they start, by design
(notebooks need it to query FlowAPI).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import time
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from tests.fake_flowapi import FakeFlowAPI, date_range
from tests.faults.conftest import Figures
from tests.faults.harness import CommandLines, Deployment, OwnPostgres, tracebacks

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]

WORKFLOWS = """\
workflows:
  - name: good
    notebooks:
      query:
        filename: query.ipynb
        parameters: {flowapi_url: flowapi_url, reference_date: reference_date}
      report:
        filename: report.ipynb
        parameters: {upstream: query}
        output: {format: pdf}
  - name: bad
    notebooks:
      fails: {filename: fails.ipynb, parameters: {reference_date: reference_date}}
available_dates_sensor:
  schedule: null
  cdr_types: [calls]
  retry_after: 0  # 'bad' fails at every run of the service: each run executes its notebook again
  workflows:
    - {workflow_name: good}
    - {workflow_name: bad}
"""
NOTEBOOKS = {
    # uses the token as a notebook should (from its environment), and checks the database's secrets are hidden from it
    "query.ipynb": (
        "flowapi_url = None\nreference_date = None",
        [
            "import os, warnings\nimport flowclient\nimport scrapbook as sb\nwarnings.simplefilter('ignore')\n"
            "assert not any(name.startswith('AUTOFLOW_DB') for name in os.environ), 'the database settings reached the kernel'\n"
            "conn = flowclient.connect(url=flowapi_url, token=os.environ['FLOWAPI_TOKEN'])\n"
            "dates = flowclient.get_available_dates(connection=conn)\nsb.glue('dates', sorted(dates))\nprint(reference_date, sorted(dates))"
        ],
    ),
    "report.ipynb": ("upstream = None", ["md:# Dates", "import scrapbook as sb\nprint(sb.read_notebook(upstream).scraps['dates'].data)"]),
    "fails.ipynb": ("reference_date = None", ["raise RuntimeError(f'no data for {reference_date}')"]),
}


def _needles(secret: str) -> list[bytes]:
    """How ``secret`` could appear: as is, URL-quoted, and (for a JWT) each long part."""
    forms = {secret, quote(secret, safe=""), quote(secret)}
    forms |= {part for part in secret.split(".") if len(part) >= 16}
    return sorted(form.encode() for form in forms)


def _found(data: bytes, needles: list[bytes]) -> bool:
    return any(needle in data for needle in needles)


@pytest.mark.timeout(600)
def test_secrets_never_leak(tmp_path: Path, running_own_postgres: OwnPostgres, figures: Figures) -> None:
    server = running_own_postgres
    password = f"Pw/{secrets.token_hex(10)}:@%Z"  # characters that need URL quoting
    server.create_database("secrets", "autoflow_secrets", password)
    fake = FakeFlowAPI({"calls": date_range(dt.date(2016, 1, 1), dt.date(2016, 1, 2))}).start()
    token = fake.make_token(sub=f"faults-{secrets.token_hex(6)}")
    app = Deployment(
        tmp_path, WORKFLOWS, NOTEBOOKS, db_uri=server.url("secrets", "autoflow_secrets"),
        env={"FLOWAPI_URL": fake.url, "FLOWAPI_TOKEN": token, "AUTOFLOW_DB_PASSWORD": password, "AUTOFLOW_LOG_LEVEL": "DEBUG"},
    )  # fmt: skip
    wrong = f"Wrong-{secrets.token_hex(8)}"
    inline = app.env["AUTOFLOW_DB_URI"].replace("{}", quote(password, safe=""))
    own_prefect_home = tmp_path / "own-prefect-home"

    def echo_the_token(authorization: str | None) -> tuple[int, dict[str, str]]:
        return 401, {"msg": f"invalid token in header {authorization}"}  # a server that quotes it back

    steps: list[tuple[tuple[str, ...], dict[str, str], object, int]] = [
        # (command, extra environment, FlowAPI behaviour, expected exit status)
        ((), {}, "ok", 1),  # 'bad' fails, 'good' succeeds
        ((), {}, echo_the_token, 1),  # FlowAPI refuses the token (401) and quotes it back
        (("status", "--json"), {}, "ok", 0),
        (("trigger", "bad", "--date", "2016-01-05"), {}, "ok", 1),
        (("status",), {"AUTOFLOW_DB_PASSWORD": wrong}, "ok", 1),
        (("plan", "--json"), {"AUTOFLOW_DB_URI": inline}, "ok", 0),
        # no PREFECT_API_URL: AutoFlow starts a Prefect server of its own, a process that must get no secret
        ((), {"AUTOFLOW_DB_URI": inline, "PREFECT_API_URL": "", "PREFECT_HOME": str(own_prefect_home)}, "ok", 1),
    ]
    needles = _needles(token) + _needles(password) + _needles(wrong)
    environments_seen = 0
    db_needles = _needles(password) + _needles(wrong)
    leaks: list[str] = []
    outputs: list[str] = []
    processes = 0
    try:
        for command, extra, behaviour, expected in steps:
            fake.mode = "ok"
            fake.__dict__.pop("_refusal", None)
            if callable(behaviour):
                fake._refusal = behaviour  # type: ignore[method-assign]
            service = app.start(*command, env=extra)
            sampler = CommandLines(service.pid, interval=0.02)
            environments: dict[int, tuple[str, bytes, bool]] = {}
            own = " ".join(psutil.Process(service.pid).cmdline())
            while service.alive():
                for child in service.descendants():
                    try:
                        if " ".join(child.cmdline()) == own:  # forked, not yet exec'd: still AutoFlow itself
                            continue
                        environ = b"\0".join(f"{k}={v}".encode() for k, v in child.environ().items())
                        # what a notebook starts (e.g. `uname -p` run by a library) inherits its kernel's environment
                        of_kernel = any("ipykernel" in " ".join(parent.cmdline()) for parent in child.parents())
                        environments.setdefault(child.pid, (" ".join(child.cmdline()), environ, of_kernel))
                    except psutil.Error:
                        pass
                time.sleep(0.05)
            code = service.wait(300)
            seen = sampler.stop()
            environments_seen += len(environments)
            processes += len(seen)
            label = " ".join(command) or "run"
            assert code == expected, f"autoflow {label}: exit {code}\n{service.stderr[-3000:]}"
            outputs += [service.stdout, service.stderr]
            for pid, cmdline in seen.items():
                if _found(cmdline.encode(), needles):
                    leaks.append(f"command line of {pid} during {label}: {cmdline[:200]}")
            for pid, (cmdline, environ, of_kernel) in environments.items():
                forbidden = db_needles if "ipykernel" in cmdline or of_kernel else needles  # kernels get the token, by design
                if _found(environ, forbidden):
                    leaks.append(f"a secret is in the environment of {pid} ({cmdline[:80]}) during {label}")
            if _found((service.stdout + service.stderr).encode(), needles):
                leaks.append(f"printed by autoflow {label}")
            if not command:
                assert " DEBUG " in service.stderr, "debug logging was not on"
    finally:
        fake.stop()

    # the failures really happened, and said something useful
    everything = "\n".join(outputs)
    assert "no data for 2016-01-0" in everything
    assert "refused the token (401" in everything
    assert "password authentication failed" in everything
    history = app.history()
    assert {(a.workflow, a.state) for a in history} >= {("good", "success"), ("bad", "failed")}
    assert any(a.reports for a in history if a.workflow == "good")

    files = [p for p in app.outputs.rglob("*") if p.is_file()]
    leaks += [f"file {p}" for p in files if _found(p.read_bytes(), needles)]
    dump = server.dump("secrets")
    assert b"autoflow_run_attempts" in dump and b"no data for 2016-01-0" in dump
    if _found(dump, needles):
        leaks.append("pg_dump of the run history")
    prefect_home = Path(os.environ["PREFECT_HOME"])
    prefect_files = [p for home in (prefect_home, own_prefect_home) for p in home.rglob("*") if p.is_file()]
    assert any(p.name.startswith("prefect.db") for p in prefect_files), prefect_files
    leaks += [f"Prefect's {p.name}" for p in prefect_files if _found(p.read_bytes(), needles)]

    figures.add("secrets", trials=len(steps), runs_checked=len(history), leaks=len(leaks), tracebacks=tracebacks(everything))
    figures.note("secrets", "files, dumps and logs searched", len(files) + len(prefect_files) + 1 + len(outputs))
    figures.note("secrets", "process command lines sampled", processes)
    figures.note("secrets", "process environments sampled", environments_seen)
    assert not leaks, "\n".join(leaks)
    assert tracebacks(everything) == 0
