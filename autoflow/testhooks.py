"""Hooks for AutoFlow's own fault tests (tests/faults). Each is off unless its variable is set.

- ``AUTOFLOW_TEST_FREEZE_AT=NAME[,NAME]``: on reaching a named point the process stops itself
  with SIGSTOP, so the test can SIGKILL it at exactly that moment. Points: ``claimed`` (a run
  is claimed, its flow not started yet) and ``recording-end`` (a run's end is written to the
  database but not committed).
- ``AUTOFLOW_TEST_TICK_SECONDS=N``: the service ticks every N seconds instead of on its cron
  schedule, so outage tests need not wait for minute boundaries.
- ``AUTOFLOW_TEST_PREFECT_AFTER_RUNS=N``: a temporary Prefect server a one-off does not wait
  for counts as answering only once N flow runs that ran without it have ended, so a test can
  have whole runs happen before it answers.
"""

from __future__ import annotations

import os
import signal

FREEZE_VARIABLE = "AUTOFLOW_TEST_FREEZE_AT"
TICK_VARIABLE = "AUTOFLOW_TEST_TICK_SECONDS"
PREFECT_AFTER_RUNS_VARIABLE = "AUTOFLOW_TEST_PREFECT_AFTER_RUNS"


def fault_point(name: str) -> None:
    """Stop this whole process here if ``AUTOFLOW_TEST_FREEZE_AT`` names ``name``; else nothing."""
    names = os.environ.get(FREEZE_VARIABLE)
    if names and name in names.split(","):
        os.kill(os.getpid(), signal.SIGSTOP)


def tick_seconds() -> float | None:
    """Seconds between ticks if ``AUTOFLOW_TEST_TICK_SECONDS`` is set (to a positive number), else None."""
    try:
        seconds = float(os.environ.get(TICK_VARIABLE) or 0)
    except ValueError:
        return None
    return seconds if seconds > 0 else None


def prefect_answers_after_runs() -> int:
    """``AUTOFLOW_TEST_PREFECT_AFTER_RUNS`` (0 unless set to a positive whole number)."""
    try:
        return max(0, int(os.environ.get(PREFECT_AFTER_RUNS_VARIABLE) or 0))
    except ValueError:
        return 0
