"""How long a workflow run may take at most: the bound ``autoflow health`` holds a busy tick to. Pure.

Every notebook try is bounded by its ``timeout`` (``AUTOFLOW_NOTEBOOK_TIMEOUT`` when it has none)
and its kernel's start by ``AUTOFLOW_KERNEL_START_TIMEOUT``; a report's conversion by its tools'
timeouts. The bound adds them up as if nothing ran in parallel, with a margin, so a run that
exceeds it is hung rather than slow.
"""

from __future__ import annotations

from autoflow.settings import Settings
from autoflow.spec.models import AutoFlowConfig, NotebookSpec, WorkflowSpec

#: one report's conversion (its PDF tool times out after 600 s, the others after 120 s)
REPORT_SECONDS = 15 * 60.0
#: between two tries of a notebook (flows.RETRY_DELAY_SECONDS, with room to spare)
RETRY_PAUSE_SECONDS = 10.0
#: claiming, recording and scheduling around the notebooks of one run
RUN_MARGIN_SECONDS = 5 * 60.0


def notebook_bound(notebook: NotebookSpec, settings: Settings) -> float:
    """Seconds ``notebook`` may take with all its tries, kernel starts and its report."""
    tries = notebook.retries + 1
    per_try = (notebook.timeout or settings.notebook_timeout) + settings.kernel_start_timeout
    report = REPORT_SECONDS if notebook.output is not None else 0.0
    return tries * per_try + notebook.retries * RETRY_PAUSE_SECONDS + report


def workflow_bound(workflow: WorkflowSpec, settings: Settings) -> float:
    """Seconds one run of ``workflow`` may take: its notebooks one after the other, plus a margin."""
    return sum(notebook_bound(nb, settings) for nb in workflow.notebooks.values()) + RUN_MARGIN_SECONDS


def longest_allowed_run(config: AutoFlowConfig | None, settings: Settings) -> float:
    """The longest any run of ``config``'s workflows may take, in seconds.

    Without a config (``autoflow health`` could not load it): the bound of a workflow of one
    notebook with the default timeout and a report.
    """
    if config is None or not config.workflows:
        return settings.notebook_timeout + settings.kernel_start_timeout + REPORT_SECONDS + RUN_MARGIN_SECONDS
    return max(workflow_bound(workflow, settings) for workflow in config.workflows.values())
