"""Flow runs that start before the Prefect API answers, recorded in Prefect as soon as it does.

A one-off run (``autoflow trigger``, a service with ``schedule: null``, a backfill or rerun)
without ``PREFECT_API_URL`` starts AutoFlow's temporary Prefect server, which takes seconds to
answer. Its runs do not wait for it: until it answers (:func:`autoflow.prefect_env.api_ready`)
a flow (the sensor's tick, a workflow run) runs here, in this process, without Prefect's engine:
the flow's own function, its tasks on a thread pool of the flow's size, exactly the code a
Prefect flow run executes. What happens is queued (the flow run and its task runs starting and
ending, with their states, and AutoFlow's log lines with their times) and a recorder thread
replays it into Prefect once the server answers, then forwards what follows as it happens. So
every run is in Prefect, under the same flow and task names as one Prefect executed: its run
history's ``flow_run_id`` names it, and its log lines keep their own times. Prefect stamps states
with the time it receives them, so a state recorded late says when it really began or ended.

Runs that start once the API answers are ordinary Prefect flow runs. Leaving
:func:`~autoflow.prefect_env.prefect_api` waits for the recorder (:func:`finish_recording`).
If the server never answers, the runs still complete and are in the run history; the recorder
says once that they are not in Prefect.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import datetime as dt
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.states import Completed, Crashed, Failed, Running

from autoflow.prefect_env import api_ready, api_start_remaining, deferred_run_ended, wait_for_api

log = logging.getLogger(__name__)

#: a state recorded this many seconds after it happened says when it happened
LATE_SECONDS = 1.0


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(eq=False)
class DeferredFlowRun:
    """One flow run executing without Prefect's engine (see the module's docstring)."""

    flow: Any
    name: str | None
    parameters: Mapping[str, Any]
    max_workers: int
    #: told the flow run's id once Prefect has it (the run history keeps it)
    on_recorded: Callable[[str], None] | None = None
    #: Prefect's id, once the recorder created the flow run
    flow_run_id: uuid.UUID | None = None
    #: the recorder could not create it: nothing more of it is sent
    unrecorded: bool = False
    logs_refused: bool = False
    _pool: concurrent.futures.ThreadPoolExecutor | None = field(default=None, repr=False)
    #: the recorder of the prefect_api block it started in
    recorder: _Recorder = field(default_factory=lambda: _recorder, repr=False)

    def submit(self, task: Any, *args: Any) -> TaskFuture:
        """Run ``task``'s function on this flow run's thread pool (Prefect's ``task.submit``)."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="autoflow-task")
        label = str(args[0]) if args else task.name
        name = task.task_run_name.format(label=label) if isinstance(task.task_run_name, str) else task.name
        future = TaskFuture(uuid.uuid4())
        context = contextvars.copy_context()
        future.inner = self._pool.submit(context.run, self._run_task, future, task, label, name, args)
        return future

    def _run_task(self, future: TaskFuture, task: Any, label: str, name: str, args: tuple[Any, ...]) -> None:
        token = _current.set((self, future.task_run_id))
        self.recorder.put(("task_started", self, future.task_run_id, task, label, name, _now()))
        state: State = Crashed(message="interrupted")
        try:
            value = task.fn(*args)
            state = value if isinstance(value, State) else Completed(data=value)
        except Exception as exc:  # what Prefect's engine makes of a task that raised
            log.exception("task %s crashed", name)
            state = Failed(message=f"Task run encountered an exception {type(exc).__name__}: {exc}")
        finally:
            _current.reset(token)
            future.state = state
            self.recorder.put(("task_ended", self, future.task_run_id, state, _now()))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class TaskFuture:
    """A deferred task run's future, with what ``execute_workflow`` uses of a ``PrefectFuture``."""

    def __init__(self, task_run_id: uuid.UUID) -> None:
        self.task_run_id = task_run_id
        self.inner: concurrent.futures.Future[None] | None = None
        self.state: State = Running()

    def add_done_callback(self, callback: Callable[[TaskFuture], object]) -> None:
        assert self.inner is not None
        self.inner.add_done_callback(lambda _inner: callback(self))

    def wait(self, timeout: float | None = None) -> None:
        assert self.inner is not None
        concurrent.futures.wait([self.inner], timeout=timeout)


#: the deferred flow run (and task run) the current thread works for
_current: contextvars.ContextVar[tuple[DeferredFlowRun, uuid.UUID | None] | None] = contextvars.ContextVar(
    "autoflow_deferred_run", default=None
)


def call_flow(
    flow: Any, parameters: Mapping[str, Any], *, name: str | None, max_workers: int, on_recorded: Callable[[str], None] | None = None
) -> State:
    """``flow(**parameters, return_state=True)``, by Prefect's engine once the Prefect API
    answers; before (a one-off's temporary server still starting), by :func:`run_flow`."""
    if api_ready():
        state: State = flow(**parameters, return_state=True)
        return state
    return run_flow(flow, parameters, name=name, max_workers=max_workers, on_recorded=on_recorded)


def needed() -> bool:
    """Whether a flow run starting now must run without Prefect's engine."""
    return not api_ready()


def current() -> DeferredFlowRun | None:
    """The deferred flow run this code runs in (None in a Prefect flow run, or outside any)."""
    if FlowRunContext.get() is not None:
        return None
    found = _current.get()
    return found[0] if found is not None else None


def detach() -> None:
    """In the current context: outside any deferred flow run (a workflow run is not the tick's)."""
    _current.set(None)


def submit(task: Any, *args: Any) -> Any:
    """``task.submit(*args)`` in a Prefect flow run; on the thread pool of a deferred one."""
    run = current()
    return task.submit(*args) if run is None else run.submit(task, *args)


def flow_run_id() -> str | None:
    """The current flow run's Prefect id: a Prefect flow run's, or a deferred one's once recorded."""
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None:
        return str(context.flow_run.id)
    run = current()
    return str(run.flow_run_id) if run is not None and run.flow_run_id is not None else None


def run_flow(
    flow: Any, parameters: Mapping[str, Any], *, name: str | None, max_workers: int, on_recorded: Callable[[str], None] | None = None
) -> State:
    """Run ``flow`` with ``parameters`` here, without Prefect's engine; queue it for Prefect.

    Returns the flow run's final state, as ``flow(..., return_state=True)`` would.
    """
    _install_log_handler()
    run = DeferredFlowRun(flow, name, dict(parameters), max_workers, on_recorded)
    token = _current.set((run, None))
    run.recorder.put(("flow_started", run, _now()))
    state: State | None = None
    try:
        value = flow.fn(**parameters)
        state = value if isinstance(value, State) else Completed(data=value)
    except Exception as exc:  # the flow's own code failed: Prefect would fail the flow run
        log.exception("flow run %s crashed", name or flow.name)
        state = Failed(message=f"Flow run encountered an exception: {type(exc).__name__}: {exc}")
    except BaseException as exc:  # interrupted (Ctrl-C, SIGTERM): Prefect would call it crashed
        state = Crashed(message=f"interrupted: {type(exc).__name__}")
        raise
    finally:
        run.close()
        _current.reset(token)
        if state is not None:
            run.recorder.put(("flow_ended", run, state, _now()))
        deferred_run_ended()
    return state


def start_recording() -> None:
    """A recorder for the :func:`~autoflow.prefect_env.prefect_api` block starting now."""
    global _recorder
    _recorder = _Recorder()


def finish_recording(timeout: float) -> None:
    """Wait (up to ``timeout`` s) until everything queued so far is in Prefect, or known not to be;
    what is queued later is dropped."""
    _recorder.finish(timeout)


# -- the recorder -----------------------------------------------------------------------------

#: the end of the recorder's queue
_STOP = ("stop", None)


class _Recorder:
    """The thread of one ``prefect_api`` block that replays deferred flow runs into Prefect once
    it answers. It starts with the first event; after :meth:`finish`, events are dropped."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._finished = False
        self._runs = 0

    def put(self, event: tuple[Any, ...]) -> None:
        with self._lock:
            if self._finished:
                return
            if self._thread is None:
                context = contextvars.copy_context()  # Prefect's settings (its API URL) and client
                context.run(_current.set, None)
                self._thread = threading.Thread(target=context.run, args=(self._loop,), name="autoflow-prefect-record", daemon=True)
                self._thread.start()
            if event[0] == "flow_started":
                self._runs += 1
            self._queue.put(event)

    def finish(self, timeout: float) -> None:
        with self._lock:
            self._finished = True
            thread = self._thread
            if thread is None:
                return
            self._queue.put(_STOP)
        if not wait_for_api(0.5) and api_start_remaining() > 0:
            log.info("waiting up to %.0f s for the temporary Prefect server to answer, to record %d flow run(s) in it", timeout, self._runs)
        thread.join(timeout)
        if thread.is_alive():
            log.warning("gave up waiting for Prefect to take the record of the runs that started before it answered")

    def _loop(self) -> None:
        from prefect.client.orchestration import get_client

        if not wait_for_api():
            self._discard()
            return
        client = get_client(sync_client=True)
        held: tuple[Any, ...] | None = None
        while True:
            if held is not None:
                event, held = held, None
            else:
                event = self._queue.get()
            if event is _STOP:
                return
            run = event[1]
            if run.unrecorded:
                continue
            if event[0] == "log":  # the log lines queued meanwhile go in one request
                logs = [(run, event[2])]
                while held is None:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more[0] == "log":
                        logs.append((more[1], more[2]))
                    else:
                        held = more  # the stop included: handled next, in order
                event = ("logs", run, logs)
            try:
                self._apply(client, event)
            except Exception as exc:  # Prefect refused or went away: the run history still has the run
                if event[0] == "flow_started":
                    run.unrecorded = True
                elif event[0] == "logs":
                    if run.logs_refused:
                        continue
                    run.logs_refused = True  # said once per run
                log.warning("could not record %s of flow run %s in Prefect: %s: %s", event[0], run.name or run.flow.name, type(exc).__name__, exc)

    def _discard(self) -> None:
        runs: set[int] = set()
        while (event := self._queue.get()) is not _STOP:
            runs.add(id(event[1]))
        if runs:
            log.warning("%d flow run(s) are not in Prefect: its server never answered", len(runs))

    def _apply(self, client: Any, event: tuple[Any, ...]) -> None:
        kind, run = event[0], event[1]
        if kind == "logs":
            from prefect.client.schemas.actions import LogCreate

            lines = [LogCreate(**line, flow_run_id=owner.flow_run_id) for owner, line in event[2] if owner.flow_run_id is not None]
            if lines:
                client.create_logs(lines)
            return
        if kind == "flow_started":
            at = event[2]
            flow_run = client.create_flow_run(run.flow, name=run.name, parameters=dict(run.parameters), state=Running(message=_late("started", at)))
            run.flow_run_id = flow_run.id
            if run.on_recorded is not None:
                try:
                    run.on_recorded(str(flow_run.id))
                except Exception as exc:  # the run is in Prefect all the same: go on recording it
                    log.warning("flow run %s is in Prefect as %s, but that could not be noted: %s", run.name or run.flow.name, flow_run.id, exc)
        elif run.flow_run_id is None:
            return
        elif kind == "task_started":
            _, _, task_run_id, task, label, name, at = event
            client.create_task_run(task, run.flow_run_id, label, id=task_run_id, name=name, state=Running(message=_late("started", at)))
        elif kind == "task_ended":
            _, _, task_run_id, state, at = event
            client.set_task_run_state(task_run_id, _as_sent(state, at), force=True)
        elif kind == "flow_ended":
            _, _, state, at = event
            client.set_flow_run_state(run.flow_run_id, _as_sent(state, at), force=True)


def _late(what: str, at: dt.datetime) -> str | None:
    if (_now() - at).total_seconds() <= LATE_SECONDS:
        return None
    return f"{what} at {at.strftime('%H:%M:%S')} UTC, before the Prefect server answered"


def _as_sent(state: State, at: dt.datetime) -> State:
    """``state`` without its data (results live in the run history), saying when it happened if late."""
    message = state.message or _late("ended", at)
    return State(type=state.type, name=state.name, message=message)


_recorder = _Recorder()
_recorder.finish(0)  # until a prefect_api block starts one, nothing is recorded


class _LogCapture(logging.Handler):
    """AutoFlow's log lines in a deferred flow run, for Prefect (as its API log handler would)."""

    def emit(self, record: logging.LogRecord) -> None:
        found = _current.get()
        if found is None or FlowRunContext.get() is not None:
            return
        run, task_run_id = found
        try:
            message = record.getMessage()
        except Exception:
            return
        line = {
            "name": record.name, "level": record.levelno, "message": message,
            "timestamp": dt.datetime.fromtimestamp(record.created, dt.timezone.utc), "task_run_id": task_run_id,
        }  # fmt: skip
        try:
            run.recorder.put(("log", run, line))
        except Exception:  # e.g. no new thread at interpreter shutdown: never the caller's problem
            self.handleError(record)


_capture = _LogCapture()
_capture_lock = threading.Lock()


def _install_log_handler() -> None:
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED

    if not PREFECT_LOGGING_TO_API_ENABLED.value():  # as Prefect's own API log handler
        return
    logger = logging.getLogger("autoflow")
    with _capture_lock:
        if _capture not in logger.handlers:
            logger.addHandler(_capture)


