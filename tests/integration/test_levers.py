"""Operator levers end to end, as an operator uses them: the retry policy and notifications in a
running service, `autoflow cancel` of a run in that service's process from another process,
`autoflow rerun` and `autoflow backfill`. Real kernels, a fake FlowAPI over HTTP, a JSON webhook
and an SMTP server on 127.0.0.1 receiving the notifications."""

from __future__ import annotations

import datetime as dt
import email.message
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_flowapi import FakeFlowAPI, date_range
from tests.integration.test_service import Deployment, _kernels, _wait_for
from tests.test_notifications import Webhook, mailbox, webhook  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]

D = dt.date


@pytest.fixture
def flowapi() -> Iterator[FakeFlowAPI]:
    with FakeFlowAPI({"calls": date_range(D(2016, 1, 1), D(2016, 1, 3))}) as fake:
        yield fake


def _policy(app: Deployment, hook: Webhook, smtp_port: int) -> None:
    """Two attempts per run, retried on the next tick; every event to the webhook, gave_up by email."""
    path = app.inputs / "workflows.yml"
    text = path.read_text().replace("  cdr_types: [calls]\n", "  cdr_types: [calls]\n  max_attempts: 2\n  retry_after: 0\n")
    text = text.replace("      date_stencil: [[-1, 0]]\n", "      date_stencil: [[-1, 0]]\n      late_data: {after: 4s}\n")
    text += (
        "notifications:\n"
        f"  - url: json://127.0.0.1:{hook.port}/all\n"
        "    events: [failure, gave_up, recovery, success, late_data]\n"
        f"  - url: mailto://127.0.0.1:{smtp_port}?from=autoflow@example.org&to=ops@example.org\n"
        "    events: [gave_up]\n"
    )
    path.write_text(text)


def _titles(hook: Webhook, seen: list[dict[str, object]]) -> list[str]:
    seen.extend(hook.all())
    return [str(m["title"]) for m in seen]


def test_retry_policy_notifications_cancel_rerun_and_backfill(
    tmp_path: Path, flowapi: FakeFlowAPI, webhook: Webhook, mailbox: tuple[int, list[email.message.EmailMessage]]  # noqa: F811
) -> None:
    smtp_port, mails = mailbox
    app = Deployment(tmp_path, "", flowapi, schedule="'* * * * *'", extra_env={"AUTOFLOW_TEST_TICK_SECONDS": "2"})
    _policy(app, webhook, smtp_port)
    assert app.run("validate").returncode == 0
    (app.flags / "2016-01-03.fail").write_text("")
    received: list[dict[str, object]] = []

    # 1. A run that keeps failing is retried once (max_attempts: 2), then given up: the webhook
    #    hears each failure and the giving up, the mailbox only the giving up; late data once.
    log = tmp_path / "service.log"
    with log.open("w") as sink:  # a file, not a pipe: a ticking service writes more than a pipe holds
        service = subprocess.Popen([sys.executable, "-m", "autoflow"], env=app.env, stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: app.runs_by_date().get("2016-01-03") == ["failed", "failed"], timeout=240)
        _wait_for(lambda: any(t.startswith("AutoFlow: no new data for daily") for t in _titles(webhook, received)), timeout=60)
        time.sleep(6)  # more ticks: nothing is retried after giving up, late data is not repeated
        assert app.runs_by_date() == {"2016-01-02": ["success"], "2016-01-03": ["failed", "failed"]}
        titles = _titles(webhook, received)
        assert "AutoFlow: daily for 2016-01-03 failed (attempt 1 of 2)" in titles
        assert "AutoFlow: daily for 2016-01-03 gave up after 2 attempts" in titles, titles
        assert any(t.startswith("AutoFlow: daily for 2016-01-02 succeeded") for t in titles)
        assert sum(t.startswith("AutoFlow: no new data for daily") for t in titles) == 1, titles
        failure = next(m for m in received if "failed (attempt 1" in str(m["title"]))
        assert "no good data for 2016-01-03" in str(failure["message"]) and "work__daily__2016-01-03" in str(failure["message"])
        assert failure["type"] == "failure"
        _wait_for(lambda: len(mails) == 1, timeout=30)
        assert mails[0]["Subject"] == "AutoFlow: daily for 2016-01-03 gave up after 2 attempts"
        planned = app.run("plan", "--all")
        assert "gave up after 2 failed attempt(s)" in " ".join(planned.stdout.split()), planned.stdout
        gave_up = json.loads(app.run("status", "--json", "--state", "failed").stdout)
        assert [r["gave_up"] for r in gave_up] == [True, False]

        # 2. Cancel, from another process, a run executing in the service's process.
        (app.flags / "2016-01-04.slow").write_text("300")
        flowapi.dates["calls"].append(D(2016, 1, 4))
        _wait_for(lambda: app.runs_by_date().get("2016-01-04") == ["running"] and len(app.executed()) >= 4, timeout=120)
        time.sleep(2)  # its notebook is in the sleeping cell
        running = next(a for a in app.history() if a.reference_date == D(2016, 1, 4))
        kernels_before = _kernels()
        overlap = app.run("backfill", "daily", "--from", "2016-01-04", "--to", "2016-01-04", "--dry-run")
        assert "running now" in overlap.stdout and overlap.returncode == 0  # never claimed twice
        asked = time.monotonic()
        cancel = app.run("cancel", str(running.id))
        took = time.monotonic() - asked
        assert cancel.returncode == 0, cancel.stderr
        assert took < 10 + 5, f"cancel took {took:.1f} s"  # the 10 s, plus the command's own start
        record = next(a for a in app.history() if a.id == running.id)
        assert record.state == "cancelled" and record.error is not None and "cancelled by" in record.error
        (kept,) = record.notebooks
        notebook = json.loads(Path(kept).read_text())
        assert "cancelled by" in json.dumps(notebook["metadata"]["autoflow"]) and "KeyboardInterrupt" in json.dumps(notebook["cells"])
        _wait_for(lambda: not (_kernels() & kernels_before), timeout=20)
        time.sleep(5)  # more ticks: the sensor does not retry a cancelled run
        assert app.runs_by_date()["2016-01-04"] == ["cancelled"]
        assert not any("2016-01-04" in t for t in _titles(webhook, received))  # a cancel is no failure
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=120)
    assert "Traceback" not in log.read_text()

    # 3. Rerun the run that gave up, now that its data is good: a new attempt, and a recovery.
    (app.flags / "2016-01-03.fail").unlink()
    last_failed = max((a for a in app.history() if a.reference_date == D(2016, 1, 3)), key=lambda a: a.attempt)
    rerun = app.run("rerun", str(last_failed.id))
    assert rerun.returncode == 0, rerun.stderr
    assert "attempt 3" in rerun.stdout and "success" in rerun.stdout
    assert app.runs_by_date()["2016-01-03"] == ["failed", "failed", "success"]
    assert next(a for a in app.history() if a.reference_date == D(2016, 1, 3) and a.attempt == 3).trigger == "rerun"
    _wait_for(lambda: "AutoFlow: daily for 2016-01-03 recovered (attempt 3 of 4)" in _titles(webhook, received), timeout=30)

    # 4. Backfill: the dry run lists and claims nothing; then the cancelled date runs again.
    (app.flags / "2016-01-04.slow").unlink()
    dry = app.run("backfill", "daily", "--from", "2016-01-01", "--to", "2016-01-05", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = [" ".join(line.split()) for line in dry.stdout.splitlines()]
    assert any(line.startswith("run 2016-01-04 again: attempt 1 cancelled (notebook work.ipynb was cancelled") for line in lines), lines
    assert any(line.startswith("skip 2016-01-05 waiting for data") for line in lines)
    assert any(line.startswith("skip 2016-01-02 already succeeded") for line in lines)
    assert "dry run: nothing claimed" in lines and len(app.history()) == 5
    backfill = app.run("backfill", "daily", "--from", "2016-01-01", "--to", "2016-01-05", "--reprocess", "failed")
    assert backfill.returncode == 0, backfill.stderr
    assert app.runs_by_date()["2016-01-04"] == ["cancelled", "success"]
    assert [a.trigger for a in app.history() if a.reference_date == D(2016, 1, 4)] == ["backfill", "sensor"]
    # the report site, rebuilt after each run by whichever process ran it, shows the latest states
    page = (app.outputs / "site" / "index.html").read_text()
    for day in ("2016-01-02", "2016-01-03", "2016-01-04"):
        assert f">{day}</a> <span class=\"word\">success</span>" in page, day
    bad = app.run("backfill", "daily", "--from", "2016-01-05", "--to", "2016-01-01")
    assert bad.returncode == 2 and bad.stderr.strip() == "autoflow: error: --to 2016-01-01 is before --from 2016-01-05"
