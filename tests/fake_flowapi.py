"""A fake FlowAPI speaking real HTTP on 127.0.0.1, for tests, benchmarks and manual runs.

It serves ``GET /api/0/available_dates`` as FlowAPI does (``{"available_dates": {type: [ISO
dates]}}``), checks the bearer token's HS256 signature (401 when absent or bad, 403 when its
claims don't grant available_dates), and can be told to misbehave through :attr:`FakeFlowAPI.mode`.
It never logs requests, so Authorization headers appear nowhere.

Standalone::

    python -m tests.fake_flowapi --port 9090 --dates 2016-01-01..2016-01-07 --cdr-types calls,sms --print-token
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Literal, Self

import jwt
import pytest

Mode = Literal["ok", "500", "401", "garbage", "hang"]
MODES: tuple[str, ...] = ("ok", "500", "401", "garbage", "hang")
AVAILABLE_DATES_PATH = "/api/0/available_dates"
#: the FlowAPI scope that grants available_dates (FlowAuth's "<action>&<query kind>" form)
AVAILABLE_DATES_SCOPE = "get_result&available_dates"
AUDIENCE = "fake-flowapi"


def date_range(first: date, last: date) -> list[date]:
    """Every date from ``first`` to ``last``, inclusive."""
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


#: what the ``fake_flowapi`` fixture serves
DEFAULT_DATES: dict[str, list[date]] = {
    "calls": list(date_range(date(2016, 1, 1), date(2016, 1, 7))),
    "sms": list(date_range(date(2016, 1, 1), date(2016, 1, 3))) + [date(2016, 1, 5)],
}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so no idle keep-alive thread outlives stop()
    protocol_version = "HTTP/1.0"
    timeout = 10

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the default would write every request line to stderr."""

    def do_GET(self) -> None:
        fake = self.server.fake
        fake._record(self.path)
        mode = fake.mode
        if mode == "hang":
            fake._stopping.wait(fake.hang_seconds)
            return  # close without an answer
        if mode == "500":
            return self._json(500, {"status": "error", "msg": "Internal server error (fake)"})
        if mode == "garbage":
            return self._send(200, b"<html>this is not JSON", "application/json")
        if mode == "401":
            return self._json(401, {"msg": "Token has expired (fake)"})
        if self.path.split("?")[0] != AVAILABLE_DATES_PATH:
            return self._json(404, {"status": "error", "msg": f"{self.path} not found"})
        refusal = fake._refusal(self.headers.get("Authorization"))
        if refusal is not None:
            return self._json(*refusal)
        return self._json(200, {"available_dates": fake._dates_json()})

    def _json(self, status: int, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], fake: FakeFlowAPI) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class FakeFlowAPI:
    """A FlowAPI stand-in on 127.0.0.1 (port 0 picks a free one), run in a daemon thread."""

    def __init__(
        self,
        dates: Mapping[str, Iterable[date | str]] | None = None,
        *,
        port: int = 0,
        secret: str | None = None,
        hang_seconds: float = 3600.0,
    ) -> None:
        #: signs and checks tokens (HS256)
        self.secret = secret or secrets.token_hex(32)
        #: cdr type -> dates (date objects or ISO strings), served as given; mutable while running
        self.dates: dict[str, list[date | str]] = {k: list(v) for k, v in (dates or {}).items()}
        #: "ok" | "500" | "401" | "garbage" (invalid JSON) | "hang" (no answer until stop())
        self.mode: Mode = "ok"
        #: how long "hang" waits at most (stop() ends it at once)
        self.hang_seconds = hang_seconds
        #: request paths served, in order (never headers)
        self.requests: list[str] = []
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeFlowAPI is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._port), self)
        self._port = self._server.server_address[1]  # a restart after stop() serves the same URL
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"FakeFlowAPI:{self._server.server_address[1]}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, ending any hanging request, and free the port."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()  # joins the handler threads, which the event has released
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def make_token(
        self,
        sub: str = "autoflow",
        claims: Mapping[str, Any] | None = None,
        *,
        lifetime: timedelta = timedelta(days=1),
        secret: str | None = None,
    ) -> str:
        """An HS256 JWT shaped like FlowAuth's: sub, iat, nbf, exp, jti, aud and ``user_claims``
        (role -> scopes) granting available_dates. ``claims`` adds or overrides claims;
        ``secret`` signs with another key (to test a bad signature)."""
        now = datetime.now(timezone.utc)
        payload: dict[str, Any] = {
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
            "aud": AUDIENCE,
            "user_claims": {"autoflow": [AVAILABLE_DATES_SCOPE]},
        }
        payload.update(claims or {})
        return jwt.encode(payload, secret or self.secret, algorithm="HS256")

    # -- used by the handler --------------------------------------------------------------

    def _record(self, path: str) -> None:
        with self._lock:
            self.requests.append(path)

    def _dates_json(self) -> dict[str, list[str]]:
        return {
            kind: [d.isoformat() if isinstance(d, date) else str(d) for d in values]
            for kind, values in list(self.dates.items())
        }

    def _refusal(self, authorization: str | None) -> tuple[int, dict[str, str]] | None:
        """(status, body) if the Authorization header does not allow available_dates."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != "Bearer" or not token:
            return 401, {"msg": "Missing Authorization Header"}
        try:
            claims = jwt.decode(
                token, self.secret, algorithms=["HS256"], audience=AUDIENCE,
                options={"require": ["sub", "exp"]},
            )
        except jwt.ExpiredSignatureError:
            return 401, {"msg": "Token has expired"}
        except jwt.InvalidTokenError:
            return 401, {"msg": "Invalid token"}
        roles = claims.get("user_claims")
        scopes = roles.values() if isinstance(roles, dict) else []
        if not any(AVAILABLE_DATES_SCOPE in role for role in scopes if isinstance(role, list)):
            return 403, {"msg": "'get_result' access denied for 'available_dates'"}
        return None


@pytest.fixture
def fake_flowapi() -> Iterator[FakeFlowAPI]:
    """A started FakeFlowAPI serving :data:`DEFAULT_DATES`; stopped afterwards."""
    with FakeFlowAPI(DEFAULT_DATES) as fake:
        yield fake


# -- standalone ----------------------------------------------------------------------------


def parse_dates(text: str) -> list[date]:
    """``2016-01-01..2016-01-07,2016-01-10`` -> those dates (ranges inclusive), sorted."""
    found: set[date] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        first, sep, last = part.partition("..")
        start = date.fromisoformat(first)
        found.update(date_range(start, date.fromisoformat(last)) if sep else [start])
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_flowapi", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9090, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--dates", default="2016-01-01..2016-01-07",
                        help="dates and inclusive ranges, e.g. 2016-01-01..2016-01-07,2016-01-10")
    parser.add_argument("--cdr-types", default="calls", help="comma-separated cdr types, e.g. calls,sms")
    parser.add_argument("--mode", choices=MODES, default="ok", help="how to answer")
    parser.add_argument("--secret", help="token signing key (default: random; fix it to reuse tokens)")
    parser.add_argument("--print-token", action="store_true", help="also print a valid FLOWAPI_TOKEN")
    args = parser.parse_args(argv)
    try:
        dates = parse_dates(args.dates)
    except ValueError as exc:
        parser.error(f"--dates: {exc}")
    kinds = [k.strip() for k in args.cdr_types.split(",") if k.strip()]
    fake = FakeFlowAPI({k: list(dates) for k in kinds}, port=args.port, secret=args.secret)
    fake.mode = args.mode
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    with fake:
        print(f"FLOWAPI_URL={fake.url}", flush=True)
        if args.print_token:
            print(f"FLOWAPI_TOKEN={fake.make_token(lifetime=timedelta(days=365))}", flush=True)
        span = f"{dates[0]}..{dates[-1]} ({len(dates)} dates)" if dates else "no dates"
        print(f"serving {', '.join(kinds) or 'no cdr types'}: {span}; Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            while not done.wait(0.2):  # short waits keep the signal handlers responsive
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
