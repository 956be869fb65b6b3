"""AutoFlow's own record of a one-shot run: the run history and the notebooks' stamped timings.

Every figure here comes from what AutoFlow wrote: ``started_at``/``finished_at`` of each attempt
in the run history (claim time, and the time the flow recorded its end), and each executed
notebook's ``metadata.autoflow`` (``started_at``, ``finished_at``, ``duration_seconds``, stamped
around papermill's execution of that notebook, kernel start included).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class NotebookTiming:
    label: str
    started: float
    finished: float
    duration: float


@dataclass
class RunTiming:
    """One attempt: when it was claimed and finished, and its notebooks (epoch seconds)."""

    reference_date: str
    state: str
    started: float
    finished: float | None
    notebooks: list[NotebookTiming] = field(default_factory=list)

    @property
    def wall(self) -> float | None:
        return None if self.finished is None else self.finished - self.started

    def notebook_busy(self) -> float:
        """Seconds during which at least one of the run's notebooks was executing (union of intervals)."""
        busy, end = 0.0, float("-inf")
        for nb in sorted(self.notebooks, key=lambda n: n.started):
            start = max(nb.started, end)
            if nb.finished > start:
                busy += nb.finished - start
            end = max(end, nb.finished)
        return busy

    def overhead(self) -> float | None:
        """The run's wall time beyond its notebooks' own execution (claim to recorded end)."""
        return None if self.wall is None else self.wall - self.notebook_busy()

    def phases(self) -> dict[str, float] | None:
        """Claim → first notebook, gaps between notebooks, last notebook → recorded end."""
        if self.finished is None or not self.notebooks:
            return None
        nbs = sorted(self.notebooks, key=lambda n: n.started)
        gaps, end = 0.0, nbs[0].finished
        for nb in nbs[1:]:
            gaps += max(0.0, nb.started - end)
            end = max(end, nb.finished)
        return {
            "claim_to_first_notebook": nbs[0].started - self.started,
            "between_notebooks": gaps,
            "last_notebook_to_recorded_end": self.finished - end,
        }


def _epoch(moment: dt.datetime | str) -> float:
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


def _notebook_timing(path: str) -> NotebookTiming | None:
    try:
        meta = json.loads(Path(path).read_text())["metadata"]["autoflow"]
        return NotebookTiming(
            meta.get("notebook", Path(path).name.split("__")[0]),
            _epoch(meta["started_at"]),
            _epoch(meta["finished_at"]),
            float(meta["duration_seconds"]),
        )
    except (OSError, KeyError, ValueError, TypeError):
        return None


def read_runs(db_url: str) -> list[RunTiming]:
    """Every attempt in the run history at ``db_url``, oldest claim first, with notebook timings."""
    from autoflow.store import RunStore

    with RunStore(db_url) as store:
        attempts = store.history()
    runs = []
    for attempt in attempts:
        run = RunTiming(
            attempt.reference_date.isoformat(),
            attempt.state,
            _epoch(attempt.started_at),
            None if attempt.finished_at is None else _epoch(attempt.finished_at),
        )
        run.notebooks = [t for t in map(_notebook_timing, attempt.notebooks) if t is not None]
        runs.append(run)
    return sorted(runs, key=lambda r: r.started)


def timeline(runs: list[RunTiming], launched_at: float, exited_at: float) -> dict[str, Any]:
    """Where a one-shot process's wall time went, from AutoFlow's own timestamps."""
    if not runs:
        return {}
    first_claim = min(r.started for r in runs)
    finished = [r.finished for r in runs if r.finished is not None]
    last_end = max(finished) if finished else None
    first_nb = min((nb.started for r in runs for nb in r.notebooks), default=None)
    return {
        "start_to_first_claim": first_claim - launched_at,
        "start_to_first_notebook": None if first_nb is None else first_nb - launched_at,
        "first_claim_to_last_end": None if last_end is None else last_end - first_claim,
        "last_end_to_exit": None if last_end is None else exited_at - last_end,
        "notebook_seconds": sum(nb.duration for r in runs for nb in r.notebooks),
        "runs": len(runs),
        "succeeded": sum(r.state == "success" for r in runs),
    }


def per_run_overheads(runs: list[RunTiming], *, skip_first: int = 1) -> dict[str, list[float]]:
    """Per-run figures for steady state (the first ``skip_first`` claims of the process left out).

    ``cycle_overhead`` is only meaningful when runs are sequential: the time from one claim to
    the next, minus the notebooks of the first (it includes the flow's tear-down after its
    recorded end, and the next claim).
    """
    done = [r for r in runs if r.finished is not None and r.notebooks]
    steady = done[skip_first:]
    out: dict[str, list[float]] = {"overhead": [], "claim_to_first_notebook": [], "between_notebooks": [],
                                   "last_notebook_to_recorded_end": [], "notebook_busy": [], "wall": [],
                                   "cycle_overhead": [], "recorded_end_to_next_claim": []}  # fmt: skip
    for run in steady:
        out["overhead"].append(run.overhead() or 0.0)
        out["notebook_busy"].append(run.notebook_busy())
        out["wall"].append(run.wall or 0.0)
        for key, value in (run.phases() or {}).items():
            out[key].append(value)
    for run, nxt in zip(done, done[1:]):
        if run in steady and run.finished is not None:
            out["cycle_overhead"].append(nxt.started - run.started - run.notebook_busy())
            out["recorded_end_to_next_claim"].append(nxt.started - run.finished)
    return out
