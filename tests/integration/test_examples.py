"""The shipped examples, run end to end as a user runs them: ``python -m autoflow`` in a subprocess.

examples/local needs nothing but itself. examples/inputs needs a FlowAPI: here a small stand-in
that answers the four requests its notebooks make (run, poll, get, geography) as FlowAPI does.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import scrapbook as sb

from tests.example_checks import EXPECTED_DATES, LOCAL_EXAMPLE, REPO, check_local_example_outputs, pdf_image_count, pdf_text

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api_url")]

FLOWKIT_EXAMPLE = REPO / "examples" / "inputs"


def autoflow(*args: str, inputs: Path, outputs: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOFLOW_", "FLOWAPI_"))}
    env.update(
        AUTOFLOW_INPUTS_DIR=str(inputs),
        AUTOFLOW_OUTPUTS_DIR=str(outputs),
        AUTOFLOW_SECRETS_DIR=str(outputs.parent / "no-secrets"),
        **(extra_env or {}),
    )
    return subprocess.run([sys.executable, "-m", "autoflow", *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=900, check=False)


def test_local_example(tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    done = autoflow(inputs=LOCAL_EXAMPLE, outputs=outputs)
    assert done.returncode == 0, done.stderr[-5000:]
    assert f"tick done: {len(EXPECTED_DATES)} due, {len(EXPECTED_DATES)} succeeded, 0 failed" in done.stderr
    check_local_example_outputs(outputs)
    # the report site, rebuilt after every run: every date listed as it ended, the path said at the end
    index = outputs / "site" / "index.html"
    assert f"report site: {index}" in done.stderr
    page = index.read_text()
    for day in EXPECTED_DATES:
        assert f'<li class="state success"><a href="workflows/daily-call-activity.html#run-' in page and f">{day}</a>" in page, day

    again = autoflow(inputs=LOCAL_EXAMPLE, outputs=outputs)  # everything has run: nothing is due
    assert again.returncode == 0, again.stderr[-5000:]
    assert f"{len(EXPECTED_DATES)} already succeeded" in again.stderr
    assert len(list((outputs / "notebooks").iterdir())) == 2 * len(EXPECTED_DATES)


# -- a stand-in FlowAPI for the FlowKit example ------------------------------------------------

#: pcod -> (name, x, y of a unit square on the map)
AREAS = {"NP.01": ("Northport", 0, 1), "RB.02": ("Riverbend", 1, 1), "EV.03": ("Eastvale", 0, 0), "HM.04": ("Highmoor", 1, 0)}
#: extra subscribers who moved into Riverbend by the reference date: its inflow above normal
INTO_RIVERBEND = 25


class StubFlowAPI(ThreadingHTTPServer):
    """FlowAPI's run / poll / get / geography endpoints, with made-up flows; only ``token`` may use it."""

    daemon_threads = True

    def __init__(self, token: str, focal_date: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.focal_date = focal_date
        self.queries: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def flows(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        into_focal = dates(spec["to_location"]) == [self.focal_date]
        return [
            {"pcod_from": a, "pcod_to": b, "value": 10 + 3 * i + j + (INTO_RIVERBEND if into_focal and b == "RB.02" and a != b else 0)}
            for i, a in enumerate(AREAS) for j, b in enumerate(AREAS)
        ]  # fmt: skip

    def geography(self) -> dict[str, Any]:
        features = [
            {"type": "Feature", "properties": {"pcod": code, "name": name},
             "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + 1, y], [x + 1, y + 1], [x, y + 1], [x, y]]]}}
            for code, (name, x, y) in AREAS.items()
        ]  # fmt: skip
        return {"type": "FeatureCollection", "features": features}


def dates(location: dict[str, Any]) -> list[str]:
    """The days of a modal_location spec (one daily_location per day)."""
    return [daily["date"] for daily in location["locations"]]


class _Handler(BaseHTTPRequestHandler):
    server: StubFlowAPI
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""

    def _reply(self, status: int, body: object = None, location: str | None = None) -> None:
        payload = json.dumps(body if body is not None else {}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(payload)

    def _authorised(self) -> bool:
        self.server.requests.append(f"{self.command} {self.path}")
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            self._reply(401, {"msg": "Invalid token"})
            return False
        return True

    def do_POST(self) -> None:
        if not self._authorised():
            return
        if self.path != "/api/0/run":
            return self._reply(404, {"msg": "not found"})
        spec = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        query_id = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
        self.server.queries[query_id] = spec
        self._reply(202, {"query_id": query_id}, location=f"/api/0/poll/{query_id}")

    def do_GET(self) -> None:
        if not self._authorised():
            return
        _, _, _, kind, *rest = self.path.split("/")
        name = rest[0] if rest else ""
        if kind == "poll" and name in self.server.queries:
            return self._reply(303, {"status": "completed"}, location=f"/api/0/get/{name}")
        if kind == "get" and name in self.server.queries:
            return self._reply(200, {"query_id": name, "query_result": self.server.flows(self.server.queries[name])})
        if kind == "geography" and name == "admin2":
            return self._reply(200, self.server.geography())
        self._reply(404, {"msg": f"{self.path} not found"})


@pytest.fixture
def flowapi() -> Iterator[StubFlowAPI]:
    token = jwt.encode({"sub": "autoflow-example-test", "identity": "secret-canary-7c1e"}, "a-signing-key-the-stand-in-never-checks", algorithm="HS256")
    server = StubFlowAPI(token, focal_date="2016-01-04")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_flowkit_example_against_a_stand_in_flowapi(tmp_path: Path, flowapi: StubFlowAPI) -> None:
    outputs = tmp_path / "outputs"
    done = autoflow(
        "trigger", "flows-above-normal", "--date", "2016-01-04", "--param", "aggregation_unit=admin2",
        inputs=FLOWKIT_EXAMPLE, outputs=outputs, extra_env={"FLOWAPI_URL": flowapi.url, "FLOWAPI_TOKEN": flowapi.token},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-5000:]
    notebooks = sorted((outputs / "notebooks").iterdir())
    reports = sorted((outputs / "reports").iterdir())
    assert [p.name.split("__")[0] for p in notebooks] == ["flows_report", "run_flows"] and len(reports) == 1

    # the two flows queries: from the benchmark period to the day before, and to the reference date
    assert flowapi.requests.count("POST /api/0/run") == 2
    specs = sorted(flowapi.queries.values(), key=lambda s: dates(s["to_location"]))
    assert {s["query_kind"] for s in specs} == {"flows"}
    assert [dates(s["from_location"]) for s in specs] == [["2016-01-01", "2016-01-02"]] * 2
    assert [dates(s["to_location"]) for s in specs] == [["2016-01-03"], ["2016-01-04"]]
    assert {d["aggregation_unit"] for s in specs for d in s["to_location"]["locations"]} == {"admin2"}
    run_flows = sb.read_notebook(str(notebooks[1])).scraps
    assert set(run_flows["query_ids"].data.values()) == set(flowapi.queries)

    text = pdf_text(reports[0])
    assert "Flows above normal" in text and "Inflows above normal" in text and "Outflows above normal" in text
    inflows = text.split("Inflows above normal", 1)[1].split("Outflows above normal", 1)[0]
    assert "Riverbend" in inflows and str(3 * INTO_RIVERBEND) in inflows  # three areas send 25 more each
    assert pdf_image_count(reports[0]) >= 2, "a map each for inflows and outflows"

    for path in [*notebooks, *reports, outputs / "autoflow.db"]:
        assert flowapi.token.encode() not in path.read_bytes(), f"the FlowAPI token is in {path}"
    assert flowapi.token not in done.stdout + done.stderr
