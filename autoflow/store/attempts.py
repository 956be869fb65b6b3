"""Run history rows as values: :class:`RunKey` names a run, :class:`Attempt` is one try at it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from autoflow.parameters import from_typed_json, to_json_safe


@dataclass(frozen=True)
class RunKey:
    """What identifies a run: the workflow, its parameters (hashed) and the reference date."""

    workflow: str
    params_hash: str
    reference_date: dt.date


@dataclass(frozen=True)
class Attempt:
    """One attempt at a run, as recorded in the run history (parameters decoded to typed values)."""

    id: int
    workflow: str
    parameters: Mapping[str, Any]
    params_hash: str
    reference_date: dt.date
    date_ranges: list[tuple[dt.date, dt.date]]
    state: str
    attempt: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    heartbeat_at: dt.datetime
    owner: str
    error: str | None
    notebooks: list[str]
    reports: list[str]
    flow_run_id: str | None
    trigger: str
    #: where it executes or executed (Prefect worker, host, pid); None until a process took its lease
    executor: str | None = None
    #: when ``autoflow cancel`` asked for this attempt to stop, and who asked (None: never asked)
    cancel_requested_at: dt.datetime | None = None
    cancel_requested_by: str | None = None

    @property
    def key(self) -> RunKey:
        return RunKey(self.workflow, self.params_hash, self.reference_date)

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe dict (dates and datetimes as ISO strings), e.g. for ``status --json``."""
        return {
            "id": self.id,
            "workflow": self.workflow,
            "reference_date": self.reference_date.isoformat(),
            "state": self.state,
            "attempt": self.attempt,
            "parameters": to_json_safe(self.parameters),
            "date_ranges": encode_date_ranges(self.date_ranges),
            "started_at": self.started_at.isoformat(),
            "finished_at": None if self.finished_at is None else self.finished_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "error": self.error,
            "notebooks": list(self.notebooks),
            "reports": list(self.reports),
            "owner": self.owner,
            "trigger": self.trigger,
            "flow_run_id": self.flow_run_id,
            "executor": self.executor,
            "cancel_requested_at": None if self.cancel_requested_at is None else self.cancel_requested_at.isoformat(),
            "cancel_requested_by": self.cancel_requested_by,
        }


def encode_date_ranges(date_ranges: Iterable[tuple[dt.date, dt.date]]) -> list[list[str]]:
    """``[(start, end), ...]`` as stored: a JSON list of ``[start, end]`` ISO pairs."""
    return [[start.isoformat(), end.isoformat()] for start, end in date_ranges]


def attempt_from_row(row: Mapping[Any, Any]) -> Attempt:
    """Decode a ``run_attempts`` row (a mapping of column name to value)."""
    return Attempt(
        id=row["id"],
        workflow=row["workflow"],
        parameters=from_typed_json(row["parameters"]),
        params_hash=row["params_hash"],
        reference_date=row["reference_date"],
        date_ranges=[
            (dt.date.fromisoformat(start), dt.date.fromisoformat(end)) for start, end in row["date_ranges"]
        ],
        state=row["state"],
        attempt=row["attempt"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        heartbeat_at=row["heartbeat_at"],
        owner=row["owner"],
        error=row["error"],
        notebooks=list(row["notebooks"]),
        reports=list(row["reports"]),
        flow_run_id=row["flow_run_id"],
        trigger=row["trigger"],
        executor=row.get("executor"),
        cancel_requested_at=row.get("cancel_requested_at"),
        cancel_requested_by=row.get("cancel_requested_by"),
    )
