"""Available dates from FlowKit's FlowAPI, through flowclient.

Every failure (FlowAPI unreachable, slow, refusing the token, answering nonsense) becomes one
:class:`~autoflow.errors.DateSourceError` with a one-line message; the token is redacted from
anything quoted, and no flowclient/httpx exception escapes.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import flowclient
import httpx
from flowclient.errors import FlowclientConnectionError

from autoflow.errors import DateSourceError
from autoflow.settings import Secret, mask_url

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
#: longest piece of a server's own error text quoted in our messages
MAX_QUOTED = 200


class _ErrorStatus(Exception):
    """Raised from an httpx response hook so flowclient never handles (or prints) error replies."""

    def __init__(self, status: int, detail: str, location: str | None) -> None:
        super().__init__(status)
        self.status = status
        self.detail = detail
        self.location = location


def _reject_non_200(response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    response.read()
    detail = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("msg"):
        detail = str(body["msg"])
    raise _ErrorStatus(response.status_code, detail, response.headers.get("location"))


class FlowAPISource:
    """Dates per cdr type from FlowAPI's ``available_dates`` endpoint."""

    def __init__(
        self,
        url: str,
        token: Secret,
        *,
        ssl_certificate: str | None = None,
        cdr_types: tuple[str, ...] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = url.rstrip("/")
        self._token = token
        self.ssl_certificate = ssl_certificate
        self.cdr_types = cdr_types
        self.timeout = timeout
        #: the SSL context and the version (mtime, ctime) of the certificate file it was loaded from
        self._ssl: tuple[object, ssl.SSLContext] | None = None
        #: the last "no data for cdr types" warning, so it is not repeated every tick
        self._unknown_said: tuple[tuple[str, ...], str] | None = None

    def describe(self) -> str:
        kinds = ", ".join(self.cdr_types) if self.cdr_types is not None else "all cdr types"
        return f"FlowAPI at {mask_url(self.url)} ({kinds})"

    def __repr__(self) -> str:
        return f"FlowAPISource({mask_url(self.url)!r}, cdr_types={self.cdr_types!r})"

    def available_dates(self) -> dict[str, list[date]]:
        """Sorted dates per requested cdr type (every type FlowAPI knows when none were named)."""
        raw = self._fetch()
        return self._select(self._parse(raw))

    # -- the network boundary ----------------------------------------------------------------

    # Each failure below sets `problem` and is raised after its `except` block, so the
    # DateSourceError has no __context__: flowclient's own messages can quote the token.

    def _verify(self) -> ssl.SSLContext:
        """The SSL context for FlowAPI, made once and again only when SSL_CERTIFICATE_FILE changes:
        loading certificates takes milliseconds and ~0.7 MiB that every tick would leave behind."""
        version = self._certificate_version()
        if self._ssl is None or self._ssl[0] != version or version == "unreadable":
            self._ssl = (version, self._load_ssl())
        return self._ssl[1]

    def _certificate_version(self) -> object:
        if not self.ssl_certificate:
            return None
        try:
            found = os.stat(self.ssl_certificate)
        except OSError:
            return "unreadable"  # _load_ssl says what is wrong
        return (found.st_mtime_ns, found.st_size)

    def _load_ssl(self) -> ssl.SSLContext:
        if not self.ssl_certificate:
            return httpx.create_ssl_context()  # what httpx makes for verify=True
        try:
            return ssl.create_default_context(cafile=self.ssl_certificate)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "strerror", None) or self._quote(str(exc))
            problem = (
                f"cannot load SSL_CERTIFICATE_FILE {self.ssl_certificate} ({reason}): "
                "check it is a readable PEM certificate"
            )
        raise DateSourceError(problem)

    def _connect(self) -> Any:
        verify = self._verify()
        try:
            return flowclient.connect(url=self.url, token=self._token.get(), ssl_certificate=verify)
        except FlowclientConnectionError as exc:  # its message quotes the whole token
            what = "has no user identity ('sub' claim)" if "identity" in str(exc) else "is not a valid JWT"
            problem = f"FLOWAPI_TOKEN {what}: check it is a FlowAPI token issued by FlowAuth"
        except Exception as exc:  # not quoted: it might hold the token too
            problem = (
                f"cannot set up a connection to FlowAPI at {mask_url(self.url)} ({type(exc).__name__}): "
                "check FLOWAPI_URL and FLOWAPI_TOKEN"
            )
        raise DateSourceError(problem)

    def _fetch(self) -> Any:
        where = f"FlowAPI at {mask_url(self.url)}"
        connection = self._connect()
        session = connection.session
        session.timeout = httpx.Timeout(self.timeout)
        session.event_hooks["response"] = [_reject_non_200]
        logger.debug("asking %s for available dates", where)
        problem: str
        try:
            # event_types=None: we filter ourselves so that unknown types can be reported
            return flowclient.get_available_dates(connection=connection)
        except _ErrorStatus as exc:
            problem = self._status_message(where, exc)
        except FlowclientConnectionError as exc:
            problem = self._connection_message(where, exc)
        except ValueError:
            problem = f"{where} answered available_dates with invalid JSON: check FLOWAPI_URL points at FlowAPI"
        except (KeyError, TypeError):
            problem = (
                f"{where} answered without an 'available_dates' object: check FLOWAPI_URL points at FlowAPI"
            )
        except Exception as exc:  # the boundary: no third-party type escapes
            problem = (
                f"{where}: available_dates failed ({type(exc).__name__}: {self._quote(str(exc))}): "
                "check FLOWAPI_URL and that FlowAPI is healthy"
            )
        finally:
            session.close()
        raise DateSourceError(problem)

    def _status_message(self, where: str, exc: _ErrorStatus) -> str:
        said = f": {self._quote(exc.detail)}" if exc.detail else ""
        status = exc.status
        if status in (401, 403):
            return (
                f"{where} refused the token ({status}{said}): "
                "check FLOWAPI_TOKEN is current and grants access to available_dates"
            )
        if status == 404:
            return f"{where} has no available_dates endpoint (404): check FLOWAPI_URL is FlowAPI's root address"
        if 300 <= status < 400:
            to = f" to {mask_url(exc.location)}" if exc.location else ""
            return f"{where} redirected available_dates ({status}{to}): check FLOWAPI_URL is FlowAPI's own address"
        if status >= 500:
            return f"{where} failed to answer available_dates ({status}{said}): check FlowAPI and FlowDB are healthy"
        return f"{where} rejected the available_dates request ({status}{said}): check FLOWAPI_URL"

    def _connection_message(self, where: str, exc: FlowclientConnectionError) -> str:
        cause = exc.__context__
        if isinstance(cause, httpx.TimeoutException):
            return (
                f"{where} did not answer available_dates within {self.timeout:g}s: "
                "check FlowAPI is running and not overloaded"
            )
        reason = self._quote(str(cause) if cause is not None else str(exc)) or type(cause).__name__
        hint = "check FLOWAPI_URL and that FlowAPI is running"
        if self.url.lower().startswith("https://"):
            hint += " (and SSL_CERTIFICATE_FILE, for TLS errors)"
        return f"{where} could not be reached ({reason}): {hint}"

    def _quote(self, text: str) -> str:
        """``text`` on one line, shortened, with the token (and its parts) redacted."""
        token = self._token.get()
        if token:
            text = text.replace(token, "***")
            for part in token.split("."):
                if len(part) >= 16:
                    text = text.replace(part, "***")
        text = " ".join(text.split())
        return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 1] + "…"

    # -- pure helpers -------------------------------------------------------------------------

    def _parse(self, raw: Any) -> dict[str, list[date]]:
        where = f"FlowAPI at {mask_url(self.url)}"
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise DateSourceError(
                f"{where} sent 'available_dates' as {type(raw).__name__}, not an object: check FLOWAPI_URL"
            )
        parsed: dict[str, list[date]] = {}
        for kind, values in raw.items():
            if values is None:
                values = []
            if not isinstance(values, list):
                raise DateSourceError(
                    f"{where} sent {type(values).__name__} as the dates of {kind!r}, not a list: check FlowAPI"
                )
            dates = set()
            for value in values:
                day = _to_date(value)
                if day is None:
                    raise DateSourceError(
                        f"{where} sent {self._quote(repr(value))} as a date of {kind!r}, "
                        "not YYYY-MM-DD: check FlowAPI"
                    )
                dates.add(day)
            parsed[str(kind)] = sorted(dates)
        return parsed

    def _select(self, available: dict[str, list[date]]) -> dict[str, list[date]]:
        if self.cdr_types is None:
            return available
        unknown = [t for t in self.cdr_types if t not in available]
        if unknown:
            known = ", ".join(sorted(available)) or "none"
            said = (tuple(unknown), known)
            # once per change, not every tick: a service ticking hourly would repeat it for ever
            level = logging.DEBUG if said == self._unknown_said else logging.WARNING
            self._unknown_said = said
            logger.log(
                level,
                "%s has no data for cdr type(s) %s (it has: %s); check the sensor's cdr_types",
                self.describe(), ", ".join(unknown), known,
            )
        return {t: available[t] for t in self.cdr_types if t in available}


def _to_date(value: object) -> date | None:
    """An ISO date (or the date of an ISO datetime) string as a date; None if it is neither."""
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value).date()
    except ValueError:
        return None
