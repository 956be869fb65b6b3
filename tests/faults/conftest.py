"""Fixtures for the fault suite: a PostgreSQL of its own, and the figures it reports.

Every test adds what it checked to the session's :class:`Figures`; at the end they are written
as JSON to ``$AUTOFLOW_FAULTS_SUMMARY`` (default: ``faults-summary.json`` in pytest's base
temporary directory) and printed, for tests/faults/README.md.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import OwnPostgres


class Figures:
    """Counters per test module: trials, runs checked, duplicates, lost, tracebacks, leaks."""

    KEYS = ("trials", "runs_checked", "duplicates", "lost", "tracebacks", "leaks")

    def __init__(self) -> None:
        self.by_area: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.started = time.monotonic()

    def add(self, area: str, **counts: int) -> None:
        with self._lock:
            entry = self.by_area.setdefault(area, {key: 0 for key in self.KEYS})
            for key, value in counts.items():
                entry[key] = entry.get(key, 0) + value

    def note(self, area: str, key: str, value: Any) -> None:
        with self._lock:
            self.by_area.setdefault(area, {k: 0 for k in self.KEYS})[key] = value

    def as_json(self) -> dict[str, Any]:
        totals = {key: sum(int(area.get(key, 0)) for area in self.by_area.values()) for key in self.KEYS}
        return {"totals": totals, "areas": self.by_area, "seconds": round(time.monotonic() - self.started, 1)}


_figures = Figures()


@pytest.fixture(scope="session")
def figures() -> Figures:
    return _figures


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _figures.by_area:
        return
    target = os.environ.get("AUTOFLOW_FAULTS_SUMMARY")
    if target:
        path = Path(target)
    else:
        path = Path(session.config._tmp_path_factory.getbasetemp()) / "faults-summary.json"  # type: ignore[attr-defined]
    path.write_text(json.dumps(_figures.as_json(), indent=2, sort_keys=True) + "\n")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"fault suite figures: {json.dumps(_figures.as_json()['totals'])} -> {path}")


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[OwnPostgres]:
    """A PostgreSQL cluster of the suite's own (tests may stop and start it; it is started again after each)."""
    server = OwnPostgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def running_own_postgres(own_postgres: OwnPostgres) -> Iterator[OwnPostgres]:
    """:func:`own_postgres`, guaranteed running before and after the test."""
    if not own_postgres.running():
        own_postgres.start()
    yield own_postgres
    if not own_postgres.running():
        own_postgres.start()
