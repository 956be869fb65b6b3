"""Read py-spy's raw (collapsed-stack) output and say where each thread's time went.

py-spy records ``thread (TID): NAME;frame;frame;... COUNT`` lines (root first). Each sample is
given a *role* (which AutoFlow thread it was on) and a *category* (what the stack was doing),
by the rules in :func:`categorize`, most specific first. With ``--idle`` the samples are wall
time (a thread waiting on a socket counts); without, CPU time.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from benchmarks.common import REPO

#: leaf functions (the part after any class name) that mean the thread was waiting
WAIT_FUNCTIONS = frozenset({"wait", "_wait_for_tstate_lock", "get", "select", "poll", "join", "acquire", "_worker",
                            "recv_into", "recv", "readinto", "accept", "read", "result"})  # fmt: skip


def parse(path: Path) -> list[tuple[str, list[str], int]]:
    """(thread name, frames root first, sample count) for every line of a raw py-spy file."""
    samples = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        head, _, rest = stack.partition(";")
        name = head.split(": ", 1)[1] if ": " in head else head
        samples.append((name, rest.split(";") if rest else [], int(count)))
    return samples


def role(thread: str) -> str:
    if thread == "MainThread":
        return "main (start-up, then waiting)"
    if thread.startswith("autoflow-tick"):
        return "tick"
    if thread.startswith("autoflow-run"):
        return "workflow run"
    if thread.startswith("ThreadPoolExecutor"):
        return "notebook task"
    if thread.startswith("autoflow-heartbeat"):
        return "heartbeat"
    return "Prefect background"


def _file(frame: str) -> str:
    match = re.search(r"\(([^()]*):\d+\)$", frame)
    return match.group(1) if match else ""


def _function(frame: str) -> str:
    return frame.split(" (", 1)[0].rsplit(".", 1)[-1]


def _is_wait(frames: list[str]) -> bool:
    return bool(frames) and _function(frames[-1]) in WAIT_FUNCTIONS


def categorize(frames: list[str]) -> str:
    """What a stack was doing, most specific rule first."""
    text = ";".join(frames)
    if "execute_notebook (autoflow/notebooks/execution.py" in text:
        return "notebook execution (papermill + kernel)"
    for i, frame in enumerate(frames):
        if frame.startswith("execute_workflow (autoflow/flows.py") and i + 1 < len(frames):
            if _function(frames[i + 1]) in ("get", "wait"):
                return "run waiting for its notebook tasks"
    if "run_in_worker_thread (autoflow/runs.py" in text and _is_wait(frames) and "flows.py" not in text:
        return "waiting for the tick thread"
    if "Sensor.tick (autoflow/sensor.py" in text and _is_wait(frames) and "execute_workflow" not in text:
        return "tick waiting for its workflow runs"
    for i, frame in enumerate(frames):
        if "<frozen importlib._bootstrap>" in frame:
            under = categorize(frames[:i]) if i else "other"
            return "imports" if under in ("other", "idle") else f"imports, under {under}"
    files = [_file(f) for f in frames]
    if any(f.startswith("alembic/") for f in files):
        return "schema upgrade (Alembic)"
    if any(f.startswith(("autoflow/store/", "sqlalchemy/", "sqlite3/")) for f in files):
        return "run store (SQL)"
    if any(f.startswith(("flowclient/", "autoflow/sources/")) for f in files):
        return "date source (FlowAPI)"
    if "TemporaryServer.start" in text or "prefect_api (autoflow/prefect_env.py" in text and _is_wait(frames):
        return "waiting for the temporary Prefect server"
    prefect_files = [f for f in files if f.startswith(("prefect/", "httpx/", "httpcore/", "anyio/"))]
    if prefect_files:
        meaningful = [f for f in prefect_files if not f.startswith(("prefect/utilities/", "prefect/_internal/", "anyio/"))]
        deepest = (meaningful or prefect_files)[-1]
        if deepest.startswith(("prefect/client/", "httpx/", "httpcore/")) or "run_coro_as_sync (" in text:
            return "Prefect API calls (HTTP)"
        for prefix, name in (
            ("prefect/task_engine", "Prefect task engine"), ("prefect/task_runners", "Prefect task engine"),
            ("prefect/tasks", "Prefect task engine"), ("prefect/futures", "Prefect task engine"),
            ("prefect/flow_engine", "Prefect flow engine"), ("prefect/flows", "Prefect flow engine"),
            ("prefect/events", "Prefect events"), ("prefect/logging", "Prefect logging"),
            ("prefect/settings", "Prefect settings"), ("prefect/states", "Prefect states/results"),
            ("prefect/results", "Prefect states/results"), ("prefect/context", "Prefect context"),
        ):  # fmt: skip
            if deepest.startswith(prefix):
                return name
        return "Prefect other"
    autoflow = [f for f in files if f.startswith("autoflow/")]
    if autoflow:
        return f"AutoFlow ({autoflow[-1]})"
    if _is_wait(frames):
        return "idle"
    return "other"


def _hot_frame(frames: list[str]) -> str:
    """The deepest AutoFlow or Prefect frame of a stack (where to look in the code)."""
    for frame in reversed(frames):
        if _file(frame).startswith(("autoflow/", "prefect/")) and not _file(frame).startswith(("prefect/utilities/", "prefect/_internal/")):
            return frame
    return frames[-1] if frames else "?"


def summarize_profile(path: Path, rate: int, *, runs: int) -> dict[str, Any]:
    """Seconds per (role, category), per run for the run and task threads, and hot frames."""
    samples = parse(path)
    by_role: dict[str, Counter[str]] = defaultdict(Counter)
    hot: Counter[str] = Counter()
    for thread, frames, count in samples:
        r = role(thread)
        category = categorize(frames)
        if r == "Prefect background" and _is_wait(frames):
            category = "idle"
        by_role[r][category] += count
        if r in ("workflow run", "notebook task") and category not in (
            "notebook execution (papermill + kernel)", "run waiting for its notebook tasks", "idle",
        ):
            hot[_hot_frame(frames)] += count
    seconds = {r: {c: round(n / rate, 2) for c, n in cats.most_common()} for r, cats in by_role.items()}
    overhead: Counter[str] = Counter()
    for r in ("workflow run", "notebook task"):
        for c, n in by_role.get(r, Counter()).items():
            if c not in ("notebook execution (papermill + kernel)", "run waiting for its notebook tasks", "idle"):
                overhead[c] += n
    return {
        "file": str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path),
        "rate_hz": rate,
        "samples": sum(n for _, _, n in samples),
        "seconds_by_role": seconds,
        "run_and_task_threads_beyond_notebooks_per_run": {c: round(n / rate / max(runs, 1), 3) for c, n in overhead.most_common()},
        "hot_frames_per_run": [(f, round(n / rate / max(runs, 1), 3)) for f, n in hot.most_common(15)],
    }
