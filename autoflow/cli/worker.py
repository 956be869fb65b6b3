"""``autoflow worker``: this machine executes workflow runs from a Prefect work pool.

Prefect's own process worker (``prefect worker start --type process``), started with AutoFlow's
environment: Prefect offline and quiet, AutoFlow's log lines in the Prefect UI, a shorter
polling interval. It first checks what its flow runs will need, so that a worker that cannot
execute runs says so at once instead of failing every run it picks up: a Prefect server
(``PREFECT_API_URL``), the run history (reachable, schema current), the inputs directory (at the
path the service uses), and an outputs directory it can write.

Stopping it (SIGTERM, as ``docker stop`` sends, or Ctrl-C) first interrupts the flow runs it is
executing: each records its attempt ``interrupted`` and kills its notebooks' kernels, and the
next tick of the service runs it again. Then Prefect's worker is stopped. (Prefect's worker
alone, stopped, may kill its flow-run processes before they can record anything; their attempts
would then wait for their lease to run out.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil

from autoflow.cli.app import Application
from autoflow.errors import SettingsError

HELP = "execute workflow runs from the Prefect work pool (AUTOFLOW_WORK_POOL), as a Prefect process worker"
#: seconds between a worker's polls for new flow runs, unless PREFECT_WORKER_QUERY_SECONDS says otherwise
DEFAULT_QUERY_SECONDS = "5"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("worker", help=HELP, description=HELP)
    parser.add_argument("--pool", metavar="NAME", help="the work pool (default: $AUTOFLOW_WORK_POOL)")
    parser.add_argument("--name", metavar="NAME", help="the worker's name in Prefect and the run history (default: host name and pid)")
    parser.add_argument("--limit", type=int, metavar="N", help="at most N runs at a time on this worker (default: no limit of its own)")


def worker_command(pool: str, name: str, limit: int | None) -> list[str]:
    """The Prefect command this worker runs."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", name]
    if limit is not None:
        command += ["--limit", str(limit)]
    return command


def run(app: Application, args: argparse.Namespace) -> int:
    from autoflow.prefect_env import configure_environment

    # a worker's log is Prefect's (which flow run it takes, how each ends): INFO unless set otherwise
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")
    configure_environment()
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", DEFAULT_QUERY_SECONDS)
    app.setup_logging()
    settings = app.settings
    pool = args.pool or settings.work_pool
    if not pool:
        raise SettingsError("no work pool: pass --pool NAME or set AUTOFLOW_WORK_POOL (the one the service submits to)")
    if args.limit is not None and args.limit < 1:
        raise SettingsError(f"--limit {args.limit} must be 1 or more")
    if not os.environ.get("PREFECT_API_URL"):
        raise SettingsError("a worker needs the Prefect server the service uses: set PREFECT_API_URL (e.g. http://prefect:4200/api)")
    app.load_config()  # the inputs directory the runs read, checked at the path the service gave
    outputs = settings.outputs_dir
    try:
        outputs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingsError(f"cannot create the outputs directory {outputs}: {exc.strerror}") from None
    if not os.access(outputs, os.W_OK):
        raise SettingsError(f"the outputs directory {outputs} is not writable by this worker")
    with app.read_history() as store:
        if store is None:
            app.abort(f"there is no run history at {settings.db_url_masked} yet: start the service first (it creates it)")
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    # the worker's flow runs take the directories from the service; these are for anything else
    os.environ["AUTOFLOW_INPUTS_DIR"] = str(settings.inputs_dir)
    os.environ["AUTOFLOW_OUTPUTS_DIR"] = str(outputs)
    # a run's independent notebooks at once, as in the service (Prefect's thread pool has no limit)
    os.environ["PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS"] = str(settings.max_parallel_notebooks)
    command = worker_command(pool, name, args.limit)
    print(f"autoflow: worker {name} on the Prefect work pool '{pool}' ({os.environ['PREFECT_API_URL']})", file=sys.stderr, flush=True)
    return supervise(command, grace=settings.stop_grace_seconds)


def _flow_runs(worker: psutil.Process) -> list[psutil.Process]:
    """The flow-run processes (``python -m prefect.engine``) the worker started."""
    found = []
    for process in worker.children(recursive=True):
        try:
            if "prefect.engine" in process.cmdline():
                found.append(process)
        except psutil.Error:
            continue
    return found


def supervise(command: list[str], *, grace: float) -> int:
    """Run Prefect's worker until it ends or this process is told to stop; returns the exit status."""
    from autoflow.prefect_env import die_with_parent

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            return
        stop.set()
        print(f"autoflow: {signal.Signals(signum).name} received: interrupting the runs in progress, then stopping the worker", file=sys.stderr, flush=True)

    # its own session: a terminal's Ctrl-C reaches this process, which stops the runs first
    worker = subprocess.Popen(command, start_new_session=True, preexec_fn=die_with_parent)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while worker.poll() is None and not stop.wait(0.5):
        pass
    if worker.poll() is not None:
        return worker.returncode
    interrupt_and_stop(worker, grace)
    return 0


def interrupt_and_stop(worker: subprocess.Popen[bytes], grace: float) -> None:
    """Stop the worker from taking new runs (SIGSTOP), SIGTERM its flow runs and wait up to
    ``grace`` s for them to record their end; then let the worker go on and stop it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGSTOP)  # no flow run can start between the two steps
    try:
        runs = _flow_runs(psutil.Process(worker.pid))
    except psutil.Error:
        runs = []
    for run in runs:
        with contextlib.suppress(psutil.Error):
            run.terminate()  # Prefect's engine turns it into an exception in the flow: recorded "interrupted"
    deadline = time.monotonic() + grace
    while runs and time.monotonic() < deadline:
        runs = [r for r in runs if _running(r)]  # a stopped worker cannot reap them: zombies are ended
        time.sleep(0.2)
    for run in runs:
        with contextlib.suppress(psutil.Error):
            run.kill()
    with contextlib.suppress(ProcessLookupError):
        os.kill(worker.pid, signal.SIGCONT)
    worker.terminate()
    try:
        worker.wait(timeout=max(grace, 10))
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
