"""Notifications, asserted from what real servers on 127.0.0.1 received: a JSON webhook over HTTP
(Apprise ``json://``) and email over SMTP (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import logging
import queue
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from autoflow.notifications import NotificationError, Notifier
from autoflow.parameters import params_hash
from autoflow.settings import Secret, Settings
from autoflow.spec.models import AutoFlowConfig, NotificationSpec, SensorEntry, SensorSpec, frozen_map
from autoflow.store.attempts import Attempt

DAY = dt.date(2024, 3, 9)
DEFAULT = frozenset({"failure", "gave_up", "recovery", "late_data"})


@dataclass
class Webhook:
    """A JSON webhook: every POST's path, headers and JSON body, in arrival order."""

    port: int
    received: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    #: when set, each request waits for ``release`` before it is answered
    block: bool = False
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "hook", events: tuple[str, ...] | None = None) -> NotificationSpec:
        return spec(f"json://127.0.0.1:{self.port}/{path}", events)

    def all(self) -> list[dict[str, Any]]:
        found = []
        while not self.received.empty():
            found.append(self.received.get_nowait())
        return found


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if hook.block:
                hook.entered.set()
                hook.release.wait(30)
            hook.received.put({"path": self.path, "authorization": self.headers.get("Authorization"), **body})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    hook.release.set()
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[int, list[email.message.EmailMessage]]]:
    """An SMTP server on 127.0.0.1: (its port, the messages it accepted)."""
    messages: list[email.message.EmailMessage] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())  # aiosmtpd 1.4 cannot take port 0
    controller.start()
    yield controller.port, messages
    controller.stop()


def spec(url: str, events: tuple[str, ...] | None = None, line: int = 3) -> NotificationSpec:
    from autoflow.errors import Position

    return NotificationSpec(url_template=url, events=frozenset(events) if events else DEFAULT, position=Position("workflows.yml", line, 5))


def notifier(tmp_path: Path, *targets: NotificationSpec, env: dict[str, str] | None = None, **settings: Any) -> Notifier:
    config = AutoFlowConfig(
        inputs_dir=tmp_path, workflows=frozen_map(), sensor=SensorSpec(schedule=None, workflows=()), notifications=targets
    )
    made = Notifier(config, Settings(secrets_dir=tmp_path / "secrets", **settings), env=env or {})
    made.check()
    return made


def attempt(state: str, number: int = 1, error: str | None = None, **changes: Any) -> Attempt:
    values: dict[str, Any] = dict(
        id=number, workflow="daily-report", parameters={"country": "Nepal"}, params_hash="h", reference_date=DAY,
        date_ranges=[(DAY, DAY)], state=state, attempt=number, started_at=dt.datetime(2024, 3, 10, 2),
        finished_at=dt.datetime(2024, 3, 10, 2, 5), heartbeat_at=dt.datetime(2024, 3, 10, 2, 5), owner="me",
        error=error, notebooks=["/outputs/notebooks/daily-report/2024-03-09/report.ipynb"], reports=[],
        flow_run_id=None, trigger="sensor", executor="worker-1 (pid 42)",
    )  # fmt: skip
    values.update(changes)
    return Attempt(**values)


def test_failure_names_workflow_date_attempt_reason_host_notebook(tmp_path: Path, webhook: Webhook) -> None:
    sender = notifier(tmp_path, webhook.url())
    failed = attempt("failed", 2, error="NotebookExecutionError: cell 4 raised KeyError: 'calls'\nTraceback...")
    sender.run_ended(failed, previous=attempt("failed", 1), gave_up=False, notebook="/outputs/run.ipynb", max_attempts=3)
    sender.close()
    [message] = webhook.all()
    assert message["title"] == "AutoFlow: daily-report for 2024-03-09 failed (attempt 2 of 3)"
    assert message["type"] == "failure"
    body = message["message"]
    for line in (
        "Workflow: daily-report",
        "Reference date: 2024-03-09",
        "Attempt: 2 of 3",
        "Reason: NotebookExecutionError: cell 4 raised KeyError: 'calls'",
        "Parameters: country=Nepal",
        "Notebook: /outputs/run.ipynb",
        f"Host: {socket.gethostname()}",
        "Executed by: worker-1 (pid 42)",
    ):
        assert line in body.splitlines()
    assert "Traceback" not in body


def test_gave_up_is_sent_once_also_to_a_target_for_failures_only(tmp_path: Path, webhook: Webhook) -> None:
    sender = notifier(tmp_path, webhook.url("all"), webhook.url("failures", ("failure",)), webhook.url("successes", ("success",)))
    sender.run_ended(attempt("failed", 3, error="boom"), previous=attempt("failed", 2), gave_up=True, notebook=None)
    sender.close()
    messages = sorted(webhook.all(), key=lambda m: m["path"])
    assert [m["path"] for m in messages] == ["/all", "/failures"]
    for message in messages:
        assert message["title"] == "AutoFlow: daily-report for 2024-03-09 gave up after 3 attempts"
        assert message["type"] == "failure"
        assert "Notebook: /outputs/notebooks/daily-report/2024-03-09/report.ipynb" in message["message"]


def test_recovery_after_a_failure_and_success_only_where_asked(tmp_path: Path, webhook: Webhook) -> None:
    sender = notifier(
        tmp_path, webhook.url("default"), webhook.url("success", ("success",)), webhook.url("both", ("success", "recovery"))
    )
    sender.run_ended(attempt("success", 2), previous=attempt("failed", 1, error="x"), gave_up=False, notebook=None)
    sender.close()
    by_path = {m["path"]: m for m in webhook.all()}
    assert set(by_path) == {"/default", "/success", "/both"}  # one message per target
    assert by_path["/default"]["title"] == "AutoFlow: daily-report for 2024-03-09 recovered (attempt 2)"
    assert by_path["/both"]["title"] == by_path["/default"]["title"]
    assert by_path["/success"]["title"] == "AutoFlow: daily-report for 2024-03-09 succeeded (attempt 2)"
    assert {m["type"] for m in by_path.values()} == {"success"}


def test_default_events_leave_out_success_and_cancelled_runs_send_nothing(tmp_path: Path, webhook: Webhook) -> None:
    sender = notifier(tmp_path, webhook.url("default"), webhook.url("success", ("success",)))
    sender.run_ended(attempt("success"), previous=None, gave_up=False, notebook=None)
    sender.run_ended(attempt("success", 2), previous=attempt("success"), gave_up=False, notebook=None)
    sender.run_ended(attempt("cancelled", error="stopped"), previous=None, gave_up=False, notebook=None)
    sender.close()
    messages = webhook.all()
    assert [m["path"] for m in messages] == ["/success", "/success"]
    assert messages[0]["title"] == "AutoFlow: daily-report for 2024-03-09 succeeded"


def test_email_over_smtp(tmp_path: Path, mailbox: tuple[int, list[email.message.EmailMessage]]) -> None:
    port, messages = mailbox
    url = f"mailto://127.0.0.1:{port}?from=autoflow@example.org&to=ops@example.org"
    sender = notifier(tmp_path, spec(url))
    sender.run_ended(attempt("failed", 1, error="kernel died"), previous=None, gave_up=False, notebook="/out/a.ipynb")
    sender.close()
    [message] = messages
    assert message["Subject"] == "AutoFlow: daily-report for 2024-03-09 failed (attempt 1)"
    assert message["To"] == "ops@example.org"
    text = message.get_body(("plain",))
    assert text is not None
    lines = text.get_content().splitlines()
    assert "Reason: kernel died" in lines and "Notebook: /out/a.ipynb" in lines


def test_late_data_once_per_staleness(tmp_path: Path, webhook: Webhook) -> None:
    sender = notifier(tmp_path, webhook.url("late"), webhook.url("failures", ("failure",)))
    entries = [
        SensorEntry("daily-report", frozen_map({"country": "Nepal"}), late_data_after=2 * 86400),
        SensorEntry("no-late-data-key"),
    ]
    t0 = dt.datetime(2024, 3, 10, 2)
    ticks = [  # (days after t0, newest date of entry 0)
        (0, DAY), (1, DAY), (2, DAY), (3, DAY),  # stale at day 2: one message
        (3.5, DAY + dt.timedelta(days=1)), (4, DAY + dt.timedelta(days=1)),  # a new date: quiet again
        (5.5, DAY + dt.timedelta(days=1)), (9, DAY + dt.timedelta(days=1)),  # stale again at 5.5: one more
    ]  # fmt: skip
    for days, newest in ticks:
        sender.check_late_data(entries, {0: newest, 1: None}, t0 + dt.timedelta(days=days))
    sender.close()
    messages = webhook.all()
    assert [m["path"] for m in messages] == ["/late", "/late"]
    assert [m["title"] for m in messages] == ["AutoFlow: no new data for daily-report for 2 days"] * 2
    assert {m["type"] for m in messages} == {"warning"}
    assert "Newest reference date: 2024-03-09" in messages[0]["message"]
    assert "Newest reference date: 2024-03-10" in messages[1]["message"]
    assert "Parameters: country=Nepal" in messages[0]["message"]


def test_late_data_survives_a_restart(tmp_path: Path, webhook: Webhook) -> None:
    """How long an entry has been stale, and that it was told about, outlive the process."""
    config = AutoFlowConfig(
        inputs_dir=tmp_path, workflows=frozen_map(), sensor=SensorSpec(schedule=None, workflows=()), notifications=(webhook.url("late"),)
    )
    state = tmp_path / "outputs" / ".autoflow" / "late-data.json"
    entries = [SensorEntry("daily-report", late_data_after=2 * 86400)]
    t0 = dt.datetime(2024, 3, 10, 2)
    for days in (0, 1, 2.5, 3):  # a new process at every tick
        sender = Notifier(config, Settings(secrets_dir=tmp_path / "secrets"), env={}, state_file=state)
        sender.check()
        sender.check_late_data(entries, {0: DAY}, t0 + dt.timedelta(days=days))
        sender.close()
    assert [m["title"] for m in webhook.all()] == ["AutoFlow: no new data for daily-report for 2 days 12 h"]
    state.write_text("{not json")
    sender = Notifier(config, Settings(secrets_dir=tmp_path / "secrets"), env={}, state_file=state)
    sender.check_late_data(entries, {0: DAY}, t0)  # a broken file: starts afresh, says so, never raises
    sender.close()
    assert json.loads(state.read_text())["daily-report:" + params_hash({})]["notified"] is False


def test_late_data_when_no_date_ever_arrived(tmp_path: Path, webhook: Webhook) -> None:
    sender = notifier(tmp_path, webhook.url())
    entries = [SensorEntry("daily-report", late_data_after=3600)]
    t0 = dt.datetime(2024, 3, 10, 2)
    for minutes in (0, 30, 60, 90):
        sender.check_late_data(entries, {0: None}, t0 + dt.timedelta(minutes=minutes))
    sender.check_late_data(entries, {}, t0 + dt.timedelta(minutes=200))  # its source failed: the clock keeps running
    sender.close()
    [message] = webhook.all()
    assert "Newest reference date: none yet" in message["message"]


def test_secrets_come_from_the_environment_and_docker_secrets_and_are_never_logged(
    tmp_path: Path, webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "HOOK_PASSWORD").write_text("s3cret-password-value\n")
    env = {"HOOK_PATH": "path-token-0123456789"}
    good = spec(f"json://autoflow:${{HOOK_PASSWORD}}@127.0.0.1:{webhook.port}/${{HOOK_PATH}}")
    closed = spec(f"json://autoflow:${{HOOK_PASSWORD}}@127.0.0.1:{free_port()}/${{HOOK_PATH}}", line=9)
    sender = notifier(tmp_path, good, closed, env=env)
    sender.run_ended(attempt("failed", error="boom"), previous=None, gave_up=False, notebook=None)
    sender.close()
    [message] = webhook.all()
    assert message["path"] == "/path-token-0123456789"
    import base64

    assert base64.b64decode(message["authorization"].split()[1]).decode() == "autoflow:s3cret-password-value"
    assert "workflows.yml:9:5 (json://127.0.0.1:" in caplog.text  # the undeliverable one was logged...
    for secret in ("s3cret-password-value", "path-token-0123456789"):
        assert secret not in caplog.text  # ...without its secrets
        assert secret not in repr(sender) and secret not in repr(sender._targets)


def test_a_missing_secret_is_an_error_at_start_naming_it(tmp_path: Path) -> None:
    with pytest.raises(NotificationError) as info:
        notifier(tmp_path, spec("slack://${SLACK_TOKEN_A}/${SLACK_TOKEN_B}"), env={"SLACK_TOKEN_A": "abcdefghi"})
    message = str(info.value)
    assert message.startswith("workflows.yml:3:5: notification URL refers to ${SLACK_TOKEN_B}")
    assert "\n" not in message and "abcdefghi" not in message and "slack://" not in message


def test_a_url_apprise_rejects_is_an_error_at_start(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "WHOLE_URL").write_text("json://")
    with pytest.raises(NotificationError, match=r"^workflows.yml:7:5: Apprise cannot send to the notification URL json://") as info:
        notifier(tmp_path, spec("${WHOLE_URL}", line=7))
    assert "\n" not in str(info.value)


def test_undeliverable_notifications_are_logged_once_per_tick(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    sender = notifier(tmp_path, spec(f"json://127.0.0.1:{free_port()}/secret-path"))  # nothing listens there
    for number in (1, 2):
        sender.run_ended(attempt("failed", number, error="boom"), previous=None, gave_up=False, notebook=None)
    sender.close()  # delivers (fails) what is queued, then logs as flush_tick does
    sender.flush_tick()  # nothing new: nothing logged
    sender.run_ended(attempt("failed", 3, error="boom"), previous=None, gave_up=True, notebook=None)
    sender.close()
    warnings = [r.getMessage() for r in caplog.records if r.name == "autoflow.notifications"]
    assert len(warnings) == 2
    assert "2 notification(s) could not be delivered" in warnings[0]
    assert "1 notification(s) could not be delivered" in warnings[1]
    assert all(w.startswith("notification target workflows.yml:3:5 (json://127.0.0.1:") for w in warnings)
    assert "secret-path" not in caplog.text
    assert not [r for r in caplog.records if r.name.startswith("apprise")]


def test_run_ended_does_not_wait_for_delivery(tmp_path: Path, webhook: Webhook) -> None:
    webhook.block = True
    sender = notifier(tmp_path, webhook.url())
    sender.run_ended(attempt("failed", error="boom"), previous=None, gave_up=False, notebook=None)
    # run_ended has returned; the webhook is still holding the request it received
    assert webhook.entered.wait(10)
    assert webhook.received.empty()
    webhook.release.set()
    sender.close()
    assert len(webhook.all()) == 1


def test_secrets_of_autoflow_are_redacted_and_long_reasons_shortened(tmp_path: Path, webhook: Webhook) -> None:
    token = "flowapi-token-abcdef-123456"
    sender = notifier(tmp_path, webhook.url(), flowapi_token=Secret(token))
    sender.run_ended(attempt("failed", error=f"401 with token {token} " + "x" * 500), previous=None, gave_up=False, notebook=None)
    sender.close()
    [message] = webhook.all()
    reason = next(line for line in message["message"].splitlines() if line.startswith("Reason: "))
    assert token not in message["message"] and "[FLOWAPI_TOKEN redacted]" in reason
    assert len(reason) <= len("Reason: ") + 300 and reason.endswith("…")


def test_no_targets_no_threads(tmp_path: Path) -> None:
    sender = notifier(tmp_path)
    sender.run_ended(attempt("failed", error="boom"), previous=None, gave_up=True, notebook=None)
    sender.check_late_data([SensorEntry("w", late_data_after=1)], {0: DAY}, dt.datetime(2024, 1, 1))
    sender.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("autoflow-notify")]
