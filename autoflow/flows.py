"""The Prefect flow for one workflow run: notebooks in dependency order, then reports (PDF, HTML).

``workflow_run`` is a module-level flow whose parameters are plain JSON; it loads its spec from
the inputs directory and owns its attempt's life through an :class:`~autoflow.lease.AttemptLease`
(checks the attempt is still current, heartbeats it, records its end), so running it as a
deployment on a Prefect worker instead of in AutoFlow's process changes where it runs, nothing
else. Each notebook and each report is a Prefect task; independent notebooks run concurrently
(up to ``AUTOFLOW_MAX_PARALLEL_NOTEBOOKS``); a failed notebook stops only what depends on it.
Notebooks are executed by a :class:`NotebookRunner` and reports exported by a
:class:`ReportExporter` (papermill and nbconvert by default).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import queue
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prefect import flow, task
from prefect.context import get_run_context
from prefect.futures import PrefectFuture
from prefect.client.schemas.objects import State
from prefect.states import Cancelled, Completed, Failed
from prefect.task_runners import ThreadPoolTaskRunner

from autoflow import __version__
from autoflow import deferred
from autoflow import runtime as runtimes
from autoflow.errors import AutoFlowError, NotebookExecutionError, ReportError
from autoflow.lease import AttemptLease, StaleAttempt
from autoflow.notebooks import ExecutionLimits, build_parameters, execute_notebook, output_stem
from autoflow.notebooks.kernel_pool import KernelKey, notebook_kernels
from autoflow.notebooks.watchdog import cancel_reason, stop_all_notebooks
from autoflow.parameters import from_typed_json, to_json_safe
from autoflow.reports import export_html, export_pdf
from autoflow.runtime import RunRuntime
from autoflow.settings import Settings
from autoflow.spec.models import NotebookSpec, OutputSpec, ReportSpec, WorkflowSpec

log = logging.getLogger(__name__)

#: seconds between a failed notebook attempt and its retry
RETRY_DELAY_SECONDS = 2.0


@dataclass
class RunOutcome:
    """What a workflow run produced. ``error`` is None on success."""

    notebooks: list[str] = field(default_factory=list)
    reports: list[str] = field(default_factory=list)
    error: str | None = None
    duration: float = 0.0
    #: stopped by ``autoflow cancel`` (``error`` says by whom)
    cancelled: bool = False

    @property
    def success(self) -> bool:
        return self.error is None

    def as_json(self) -> dict[str, Any]:
        return {
            "notebooks": self.notebooks, "reports": self.reports, "error": self.error, "duration": self.duration,
            "cancelled": self.cancelled,
        }  # fmt: skip


@dataclass(frozen=True)
class RunRequest:
    """Everything one workflow run needs, as values (the flow's parameters, typed)."""

    workflow: str
    parameters: Mapping[str, Any]
    reference_date: dt.date
    date_ranges: tuple[tuple[dt.date, dt.date], ...]
    attempt_id: int | None = None

    def flow_parameters(self) -> dict[str, Any]:
        """Plain-JSON parameters for :func:`workflow_run`."""
        from autoflow.parameters import to_typed_json

        return {
            "workflow": self.workflow,
            "parameters": to_typed_json(dict(self.parameters)),
            "reference_date": self.reference_date.isoformat(),
            "date_ranges": [[a.isoformat(), b.isoformat()] for a, b in self.date_ranges],
            "attempt_id": self.attempt_id,
        }


# -- the seams to papermill and nbconvert ----------------------------------------------------


class NotebookRunner(Protocol):
    """Executes one notebook: writes the executed copy to ``output`` or raises
    :class:`~autoflow.errors.NotebookExecutionError` (with any copy it left as ``output_path``)."""

    def __call__(
        self, notebook: Path, output: Path, parameters: Mapping[str, Any], *, timeout: float | None,
        limits: ExecutionLimits, metadata: Mapping[str, Any],
    ) -> object: ...  # fmt: skip


class ReportExporter(Protocol):
    """Turns an executed notebook into a report of ``format`` (``pdf``, ``html``) at ``target``, or
    raises :class:`~autoflow.errors.ReportError`. ``template`` is the PDF's asciidoc template."""

    def __call__(
        self, executed: Path, target: Path, *, format: str, template: Path | None, title: str | None, report: ReportSpec
    ) -> object: ...


@dataclass(frozen=True)
class PapermillRunner:
    """The default :class:`NotebookRunner`: papermill on a real kernel."""

    #: kernels to start ahead, once this notebook has its own: those of the notebooks waiting for it
    next_kernels: tuple[KernelKey, ...] = ()

    def __call__(
        self, notebook: Path, output: Path, parameters: Mapping[str, Any], *, timeout: float | None,
        limits: ExecutionLimits, metadata: Mapping[str, Any],
    ) -> object:  # fmt: skip
        return execute_notebook(
            notebook, output, parameters, timeout=timeout, limits=limits, metadata=metadata, then_expect=self.next_kernels
        )


@dataclass(frozen=True)
class NbconvertExporter:
    """The default :class:`ReportExporter`: nbconvert; for PDF, asciidoc and asciidoctor-pdf."""

    def __call__(
        self, executed: Path, target: Path, *, format: str, template: Path | None, title: str | None, report: ReportSpec
    ) -> object:
        if format == "html":
            return export_html(executed, target, title=title, report=report)
        return export_pdf(executed, target, template=template, title=title, report=report)


#: the name :class:`NbconvertExporter` had while it made only PDFs
PdfExporter = NbconvertExporter


# -- tasks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFailure:
    """A notebook or report that failed: the message and any executed copy it left."""

    message: str
    output: str | None = None
    #: reports a partly failed report task did make (its other formats)
    reports: tuple[str, ...] = ()


def _failed(message: str, output: str | None = None, reports: tuple[str, ...] = ()) -> State:
    # A returned Failed state marks the task failed in Prefect without a traceback on the console.
    return Failed(message=message, data=TaskFailure(message, output, reports))


@task(name="notebook", task_run_name="{label}", persist_result=False)
def notebook_task(
    label: str,
    notebook: NotebookSpec,
    parameters: dict[str, Any],
    notebooks_dir: Path,
    stem_args: dict[str, Any],
    metadata: dict[str, Any],
    limits: ExecutionLimits = ExecutionLimits(),
    runner: NotebookRunner = PapermillRunner(),
) -> str | State:
    """Execute one notebook, with ``notebook.retries`` extra attempts; each attempt keeps its own copy."""
    attempts = notebook.retries + 1
    for attempt in range(1, attempts + 1):
        started = dt.datetime.now(dt.timezone.utc)
        output = notebooks_dir / f"{output_stem(notebook.filename, started_at=started, **stem_args)}.ipynb"
        log.info("notebook %s: running %s -> %s", label, notebook.filename, output)
        try:
            runner(notebook.path, output, parameters, timeout=notebook.timeout, limits=limits, metadata=metadata)
        except NotebookExecutionError as exc:
            kept = str(exc.output_path) if exc.output_path else None
            if attempt < attempts and exc.retryable:  # a notebook without a parameters cell stays so
                log.warning("notebook %s: attempt %d of %d failed, retrying in %.0f s: %s", label, attempt, attempts, RETRY_DELAY_SECONDS, exc)
                time.sleep(RETRY_DELAY_SECONDS)
                continue
            # the message itself is the run's error, logged once when the run ends
            log.error("notebook %s: failed after %.1f s", label, (dt.datetime.now(dt.timezone.utc) - started).total_seconds())
            return _failed(str(exc), kept)
        log.info("notebook %s: done in %.1f s", label, (dt.datetime.now(dt.timezone.utc) - started).total_seconds())
        return str(output)
    raise AssertionError("unreachable")


@task(name="report", task_run_name="report-{label}", persist_result=False)
def report_task(
    label: str,
    executed: str,
    reports_dir: Path,
    output: OutputSpec,
    report: ReportSpec = ReportSpec(),
    title: str | None = None,
    exporter: ReportExporter = NbconvertExporter(),
) -> list[str] | State:
    """Turn an executed notebook into ``reports/<same stem>.pdf`` and/or ``.html``, as ``output``
    asks (titled by its first heading unless ``title``); returns the files made.

    Every format is attempted; if any fails the task fails with the first failure's message
    (the others that failed are named after it), and the files that were made are kept.
    """
    made: list[str] = []
    errors: list[str] = []
    for fmt in output.formats:
        target = reports_dir / f"{Path(executed).stem}.{fmt}"
        log.info("report %s: converting %s -> %s", label, Path(executed).name, target)
        try:
            exporter(Path(executed), target, format=fmt, template=output.template, title=title, report=report)
        except ReportError as exc:
            errors.append(str(exc))
            continue
        made.append(str(target))
    if errors:
        log.error("report %s: failed", label)  # the message is the run's error, logged when the run ends
        return _failed(f"report {label}: {'; '.join(errors)}", reports=tuple(made))
    return made


# -- the flow ---------------------------------------------------------------------------------


def flow_run_name(parameters: Mapping[str, Any]) -> str:
    """A ``workflow-run`` flow run's name, from its parameters: ``<workflow>-<reference date>``."""
    return f"{parameters['workflow']}-{parameters['reference_date']}"


def _flow_run_name() -> str:
    return flow_run_name(get_run_context().flow_run.parameters)  # type: ignore[union-attr]


def _settings(inputs_dir: str | None, outputs_dir: str | None, lease_seconds: float | None = None) -> Settings:
    settings = Settings.from_env()
    overrides: dict[str, object] = {k: v for k, v in (("inputs_dir_raw", inputs_dir), ("outputs_dir_raw", outputs_dir)) if v}
    if lease_seconds:
        overrides["run_lease_seconds"] = float(lease_seconds)
    return Settings(**{**settings.__dict__, **overrides}) if overrides else settings


@flow(name="workflow-run", flow_run_name=_flow_run_name, persist_result=False, validate_parameters=False, log_prints=False)
def workflow_run(
    workflow: str,
    parameters: dict[str, Any],
    reference_date: str,
    date_ranges: list[list[str]],
    attempt_id: int | None = None,
    inputs_dir: str | None = None,
    outputs_dir: str | None = None,
    lease_seconds: float | None = None,
) -> dict[str, Any]:
    """Run ``workflow`` once for ``reference_date``; returns :meth:`RunOutcome.as_json`.

    ``parameters`` are in typed JSON form (:func:`autoflow.parameters.to_typed_json`). With an
    ``attempt_id`` the flow holds that attempt's lease for as long as it runs and records its
    end in the run store; if the attempt is no longer the current one it executes nothing and
    the flow run ends Cancelled. The flow run fails (in Prefect) when any notebook or report
    fails; the outcome still lists every output written.
    """
    settings = _settings(inputs_dir, outputs_dir, lease_seconds)
    request = RunRequest(
        workflow=workflow,
        parameters=from_typed_json(parameters),
        reference_date=dt.date.fromisoformat(reference_date),
        date_ranges=tuple((dt.date.fromisoformat(a), dt.date.fromisoformat(b)) for a, b in date_ranges),
        attempt_id=attempt_id,
    )
    installed = runtimes.installed()
    runtime = installed if installed is not None and installed.serves(settings) else RunRuntime(settings)
    try:
        if attempt_id is None:
            outcome = _run(runtime, request)
        else:
            try:
                outcome = _run_attempt(runtime, request, attempt_id, own_process=runtime is not installed)
            except StaleAttempt as exc:
                log.warning("%s", exc)
                return Cancelled(message=str(exc))  # type: ignore[return-value]
    finally:
        if runtime is not installed:
            runtime.close()
    if outcome.cancelled:  # Prefect shows the flow run cancelled too
        return Cancelled(message=outcome.error, data=outcome.as_json())  # type: ignore[return-value]
    if not outcome.success:
        return Failed(message=outcome.error, data=outcome.as_json())  # type: ignore[return-value]
    return Completed(data=outcome.as_json())  # type: ignore[return-value]


def _run(runtime: RunRuntime, request: RunRequest) -> RunOutcome:
    try:
        config = runtime.config()
    except AutoFlowError as exc:
        return RunOutcome(error=f"cannot load workflows.yml: {exc}")
    spec = config.workflows.get(request.workflow)
    if spec is None:
        return RunOutcome(error=f"workflow '{request.workflow}' is no longer defined in workflows.yml")
    return execute_workflow(spec, request, runtime.settings, report=config.report)


def _run_attempt(runtime: RunRuntime, request: RunRequest, attempt_id: int, *, own_process: bool = False) -> RunOutcome:
    """:func:`_run` inside the attempt's lease; logs and records how it ended.

    ``own_process``: this process exists for this run (a Prefect worker's flow run), so when it
    is stopped (SIGTERM) every notebook it executes is stopped too; in the service, other runs go on.
    """
    label = f"{request.workflow} for {request.reference_date.isoformat()} (attempt id {attempt_id})"
    lease = AttemptLease(
        runtime.store, attempt_id, lease_seconds=runtime.settings.run_lease_seconds, tracker=runtime.leases,
        flow_run_id=deferred.flow_run_id(),  # a deferred flow run's is recorded once Prefect has it
    )  # fmt: skip
    with lease:
        if lease.attempt is not None:
            label = f"{request.workflow} for {request.reference_date.isoformat()} (attempt {lease.attempt.attempt})"
        started = time.monotonic()
        try:
            outcome = _run(runtime, request)
        except BaseException as exc:
            if not isinstance(exc, Exception) and own_process:  # SIGTERM (Prefect's TerminationSignal), Ctrl-C, SystemExit
                lease.__exit__(type(exc), exc, exc.__traceback__)  # recorded first: a kill may follow soon
                stopped = stop_all_notebooks()
                log.warning("run %s: interrupted (%s); stopped %d running notebook(s)", label, type(exc).__name__, stopped)
            raise
        outcome.duration = time.monotonic() - started
        cancelled = lease.cancel_request is not None and not outcome.success
        if cancelled:
            outcome.cancelled = True
            if not outcome.error or "cancelled by" not in outcome.error:
                outcome.error = f"cancelled by {lease.cancel_request}" + (f"; {outcome.error}" if outcome.error else "")
        recorded = lease.finish(
            success=outcome.success, error=outcome.error, notebooks=outcome.notebooks, reports=outcome.reports, cancelled=cancelled
        )
    if recorded:
        runtime.run_ended(attempt_id, rebuild_site=not own_process)
    if not recorded:
        log.warning("run %s: ended, but its attempt was no longer running (declared abandoned meanwhile): its end is not recorded", label)
    if outcome.success:
        outputs = ", ".join([*outcome.notebooks, *outcome.reports])
        log.info("run %s: succeeded in %.1f s; outputs: %s", label, outcome.duration, outputs)
    elif outcome.cancelled:
        log.warning("run %s: cancelled after %.1f s: %s", label, outcome.duration, outcome.error)
    else:
        log.error("run %s: failed after %.1f s: %s", label, outcome.duration, outcome.error)
    return outcome


def execute_workflow(
    workflow: WorkflowSpec,
    request: RunRequest,
    settings: Settings,
    *,
    runner: NotebookRunner = PapermillRunner(),
    exporter: ReportExporter = NbconvertExporter(),
    report: ReportSpec = ReportSpec(),
) -> RunOutcome:
    """Schedule the notebook and report tasks of one run and wait for them all; ``report`` is the
    config's ``report:`` block, shown in every report."""
    started = time.monotonic()
    notebooks_dir, reports_dir = settings.notebooks_dir, settings.reports_dir
    notebooks_dir.mkdir(parents=True, exist_ok=True)
    reports_dir.mkdir(parents=True, exist_ok=True)
    metadata = {
        "workflow": workflow.name,
        "parameters": to_json_safe(dict(request.parameters)),
        "reference_date": request.reference_date.isoformat(),
        "date_ranges": [[a.isoformat(), b.isoformat()] for a, b in request.date_ranges],
        "attempt_id": request.attempt_id,
        "autoflow_version": __version__,
    }
    stem_args = {"workflow": workflow.name, "reference_date": request.reference_date, "parameters": request.parameters}
    order = workflow.execution_order()
    waiting = {label: set(workflow.dependencies(label)) for label in order}
    nb_deps = workflow.dependencies
    done: dict[str, str] = {}
    #: what failed ("notebook"/"report", label) -> its message, in the order they failed
    failed: dict[tuple[str, str], str] = {}
    #: notebooks not run because a notebook they depend on failed or was not run
    not_run: list[str] = []
    outcome = RunOutcome()
    #: notebooks whose task was submitted (running, or done)
    submitted: set[str] = set()
    pre_start = isinstance(runner, PapermillRunner)
    finished: queue.Queue[tuple[str, str, PrefectFuture[Any]]] = queue.Queue()
    running = 0

    def submit(kind: str, label: str, future: PrefectFuture[Any]) -> None:
        future.add_done_callback(lambda f: finished.put((kind, label, f)))

    while waiting or running:
        ready: list[str] = []
        for label in [lb for lb in order if lb in waiting]:
            deps = waiting[label]
            blocked = sorted(d for d in deps if ("notebook", d) in failed or d in not_run)
            if blocked:
                del waiting[label]
                not_run.append(label)
                log.info("notebook %s was not run because %s did not succeed", label, ", ".join(blocked))
            elif cancel_reason(request.attempt_id) is not None:  # cancelled: start no more notebooks
                del waiting[label]
                not_run.append(label)
            elif deps <= done.keys():
                del waiting[label]
                ready.append(label)
        submitted.update(ready)
        #: the notebooks that can start once those starting now end: their kernels start meanwhile
        upcoming = [lb for lb in order if lb in waiting and waiting[lb] <= submitted] if pre_start else []
        for label in ready:
            nb = workflow.notebooks[label]
            params = build_parameters(
                nb,
                workflow_parameters=request.parameters,
                reference_date=request.reference_date,
                date_ranges=request.date_ranges,
                flowapi_url=settings.flowapi_url,
                upstream_paths={d: Path(done[d]) for d in nb_deps(label)},
            )
            # each upcoming notebook's kernel is asked for once, by the first notebook it waits for
            after = [lb for lb in upcoming if label in waiting[lb]]
            upcoming = [lb for lb in upcoming if lb not in after]
            notebook_runner = dataclasses.replace(runner, next_kernels=tuple(notebook_kernels(workflow, after))) if after else runner
            # the flow run's id: None outside a flow (tests), and in a deferred one until Prefect has it
            nb_metadata = {**metadata, "prefect_flow_run_id": deferred.flow_run_id(), "notebook": label}
            task = deferred.submit(notebook_task, label, nb, params, notebooks_dir, stem_args, nb_metadata, ExecutionLimits.from_settings(settings), notebook_runner)
            submit("notebook", label, task)
            running += 1
        if not running:
            break
        kind, label, future = finished.get()
        running -= 1
        future.wait()  # the done callback can fire before Prefect has the final state
        state = future.state
        value = state.result(raise_on_failure=False) if state.is_completed() or state.is_failed() else None
        if not state.is_completed():
            failure = value if isinstance(value, TaskFailure) else TaskFailure(f"{kind} {label} crashed: {state.message}")
            failed[(kind, label)] = failure.message
            if failure.output:
                outcome.notebooks.append(failure.output)
            outcome.reports.extend(failure.reports)
            continue
        if kind == "report":
            outcome.reports.extend(str(path) for path in value)
            continue
        done[label] = str(value)
        outcome.notebooks.append(str(value))
        output = workflow.notebooks[label].output
        if output is not None:
            submit("report", label, deferred.submit(report_task, label, str(value), reports_dir, output, report, None, exporter))
            running += 1
    if failed:
        rank = {label: i for i, label in enumerate(order)}  # notebooks in file order, then reports
        ordered = sorted(failed, key=lambda key: (key[0] != "notebook", rank[key[1]]))
        outcome.error = summarise_failures({key: failed[key] for key in ordered}, not_run)
    outcome.duration = time.monotonic() - started
    return outcome


def summarise_failures(failed: Mapping[tuple[str, str], str], not_run: Sequence[str]) -> str:
    """The run's error: the first failure's whole message, then the names of the other notebooks
    and reports that failed, then those not run because of them (which are not failures)."""
    first = next(iter(failed.values()))
    others = [label if kind == "notebook" else f"report {label}" for kind, label in list(failed)[1:]]
    error = first
    if others:
        error += f"; {len(others)} more failed: {', '.join(others)}"
    if not_run:
        error += f"; not run because of {'the failures' if others else 'it'}: {', '.join(not_run)}"
    return error


def workflow_run_with_runner(max_parallel_notebooks: int) -> Any:
    """:func:`workflow_run` with a thread pool sized for this machine."""
    return workflow_run.with_options(task_runner=ThreadPoolTaskRunner(max_workers=max_parallel_notebooks))  # type: ignore[arg-type]
