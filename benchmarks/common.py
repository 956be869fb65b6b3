"""What every benchmark needs: paths, statistics, the machine, process sampling, servers.

The harness runs with AutoFlow's own interpreter (``.venv/bin/python -m benchmarks``); other
interpreters (Ploomber's, the profilers') live in ``benchmarks/.venvs/`` (see environments.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
VENVS = BENCH_DIR / ".venvs"
WORK = BENCH_DIR / ".work"
RESULTS = BENCH_DIR / "results"
#: AutoFlow's interpreter: the one running the harness
PYTHON = sys.executable

#: Prefect and Ploomber must never try the internet, nor ask about updates
QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PLOOMBER_STATS_ENABLED": "false",
    "PLOOMBER_VERSION_CHECK_DISABLED": "true",
}


def log(message: str) -> None:
    """Progress on stderr, with the time and the 1-minute load."""
    print(f"[bench {time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", file=sys.stderr, flush=True)


def base_env(**extra: str) -> dict[str, str]:
    """The harness's environment without AutoFlow/FlowAPI/Prefect settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOFLOW_", "FLOWAPI_", "PREFECT_"))}
    env.pop("VIRTUAL_ENV", None)
    env.update(QUIET_ENV)
    env.update(extra)
    return env


# -- statistics -------------------------------------------------------------------------------


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max, quartiles and the values themselves (rounded) of ``values``."""
    vals = sorted(float(v) for v in values)
    if not vals:
        return {"n": 0}
    if len(vals) >= 2:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    else:
        q1 = q3 = vals[0]
    return {
        "n": len(vals),
        "median": round(statistics.median(vals), 4),
        "min": round(vals[0], 4),
        "max": round(vals[-1], 4),
        "q1": round(q1, 4),
        "q3": round(q3, 4),
        "mean": round(statistics.fmean(vals), 4),
        "values": [round(v, 4) for v in values],
    }


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, Any]:
    """Ratio of medians, plus the spread of the per-round ratios (round i: numerators[i] / denominators[i])."""
    pairs = [(a, b) for a, b in zip(numerators, denominators) if b]
    if not pairs:
        return {"n": 0}
    per_round = [a / b for a, b in pairs]
    return {
        "n": len(pairs),
        "of_medians": round(statistics.median([a for a, _ in pairs]) / statistics.median([b for _, b in pairs]), 3),
        "per_round": summarize(per_round),
    }


def spread_text(summary: Mapping[str, Any], unit: str = "s", digits: int = 2) -> str:
    """``median (min–max, n=N)`` for a table cell."""
    if not summary or not summary.get("n"):
        return "—"
    f = f"{{:.{digits}f}}"
    med, lo, hi = (f.format(summary[k]) for k in ("median", "min", "max"))
    return f"{med} {unit} ({lo}–{hi}, n={summary['n']})".replace(" ()", "")


# -- the machine ------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} (Linux {platform.release()})"
    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": os_name,
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
    }


def version_of(package: str, python: str | None = None) -> str | None:
    """The installed version of ``package`` here, or in the interpreter ``python``."""
    if python is None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None
    code = f"import importlib.metadata as m\ntry: print(m.version({package!r}))\nexcept Exception: print('')"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out or None


class LoadMonitor:
    """Samples the 1-minute load average every few seconds while a benchmark runs."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-load", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> LoadMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])

    def summary(self) -> dict[str, Any]:
        return summarize(self.samples) | {"values": None}


# -- processes --------------------------------------------------------------------------------


@dataclass
class TreeSample:
    """What sampling a process tree saw."""

    peak_main_rss: int = 0
    peak_tree_rss: int = 0
    #: epoch seconds at which the first ipykernel process of the tree was created
    first_kernel_created: float | None = None
    max_kernels: int = 0
    samples: int = 0
    #: pid -> (create time, user + system CPU seconds at its last sample): a lower bound of each
    #: process's CPU, to check that getrusage(RUSAGE_CHILDREN) saw every descendant
    cpu_seen: dict[int, tuple[float, float]] = field(default_factory=dict)

    def sampled_cpu(self) -> float:
        """CPU seconds of the tree as last sampled, summed over every process seen (a lower bound)."""
        return sum(cpu for _, cpu in self.cpu_seen.values())

    def still_running(self) -> list[int]:
        """Processes of the tree that outlived its root (orphans: their CPU escapes RUSAGE_CHILDREN)."""
        alive = []
        for pid, (created, _) in self.cpu_seen.items():
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        return alive


class TreeSampler:
    """Samples the RSS of a process and all its descendants (kernels, servers) in a thread."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.result = TreeSample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)
        self._seen: dict[int, bool] = {}

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> TreeSample:
        self._stop.set()
        self._thread.join()
        return self.result

    def _is_kernel(self, proc: psutil.Process) -> bool:
        known = self._seen.get(proc.pid)
        if known is None:
            try:
                known = any("ipykernel" in part for part in proc.cmdline())
            except psutil.Error:
                return False
            self._seen[proc.pid] = known
        return known

    def _cpu(self, proc: psutil.Process) -> None:
        times = proc.cpu_times()  # own CPU only: children_* would count reaped kernels twice
        self.result.cpu_seen[proc.pid] = (proc.create_time(), times.user + times.system)

    def _run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        result = self.result
        while not self._stop.is_set():
            try:
                main = root.memory_info().rss
                procs = root.children(recursive=True)
                self._cpu(root)
            except psutil.Error:
                return
            tree, kernels = main, 0
            for proc in procs:
                try:
                    tree += proc.memory_info().rss
                    self._cpu(proc)
                    if self._is_kernel(proc):
                        kernels += 1
                        created = proc.create_time()
                        if result.first_kernel_created is None or created < result.first_kernel_created:
                            result.first_kernel_created = created
                except psutil.Error:
                    continue
            result.peak_main_rss = max(result.peak_main_rss, main)
            result.peak_tree_rss = max(result.peak_tree_rss, tree)
            result.max_kernels = max(result.max_kernels, kernels)
            result.samples += 1
            self._stop.wait(self.interval)


@dataclass
class ProcessRun:
    """One timed subprocess."""

    command: list[str]
    wall: float
    returncode: int
    launched_at: float
    tree: TreeSample = field(default_factory=TreeSample)
    stdout_tail: str = ""
    stderr_tail: str = ""
    #: user + system CPU seconds of the process and every descendant it reaped (getrusage
    #: RUSAGE_CHILDREN of the harness, before and after; the harness runs one contender at a time)
    cpu: float = 0.0
    #: descendants still running after the process exited (their CPU is not in ``cpu``)
    orphans: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def first_kernel_after(self) -> float | None:
        """Seconds from launch to the first notebook kernel's creation (None if none seen)."""
        if self.tree.first_kernel_created is None:
            return None
        return self.tree.first_kernel_created - self.launched_at


def run_process(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
    log_file: Path,
    sample: bool = True,
) -> ProcessRun:
    """Run ``command``, timing it from just before the fork to its exit; output goes to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "wb") as out:
        before = _children_cpu()
        launched_at = time.time()
        started = time.perf_counter()
        proc = subprocess.Popen(list(command), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sampler = TreeSampler(proc.pid).start() if sample else None
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
            returncode = proc.wait()
            out.write(f"\n[bench] killed after {timeout:.0f} s\n".encode())
        wall = time.perf_counter() - started
        cpu = _children_cpu() - before
        tree = sampler.stop() if sampler else TreeSample()
    text = log_file.read_text(errors="replace")
    return ProcessRun(list(command), wall, returncode, launched_at, tree, "", text[-3000:], cpu, tree.still_running())


def _children_cpu() -> float:
    """User + system CPU seconds of every descendant this process has reaped so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_of_tree(pid: int) -> float:
    """User + system CPU seconds a running process and its live descendants have used so far."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


def kill_tree(pid: int) -> None:
    """Kill ``pid`` and its descendants (only processes this harness started)."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- servers the contenders talk to -----------------------------------------------------------


class PrefectServer:
    """A Prefect API server (uvicorn, no UI) started by the harness, with its own PREFECT_HOME.

    The same command AutoFlow's temporary server uses, so "an already-running server" differs
    from AutoFlow's own only in who started it and when.
    """

    def __init__(self, home: Path, log_path: Path) -> None:
        self.home = home
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout: float = 240.0) -> PrefectServer:
        import prefect

        self.home.mkdir(parents=True, exist_ok=True)
        env = base_env(PREFECT_HOME=str(self.home), PREFECT_UI_ENABLED="0")
        app_dir = str(Path(prefect.__file__).parent.parent)
        started = time.perf_counter()
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [PYTHON, "-m", "uvicorn", "--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app",
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Prefect server exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        self.startup_seconds = time.perf_counter() - started
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Prefect server did not answer within {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> PrefectServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def fake_flowapi(dates: Sequence[dt.date], cdr_type: str = "calls") -> Iterator[tuple[str, str]]:
    """The test suite's FakeFlowAPI (real HTTP on 127.0.0.1) serving ``dates``; yields (url, token)."""
    sys.path.insert(0, str(REPO)) if str(REPO) not in sys.path else None
    from tests.fake_flowapi import FakeFlowAPI

    with FakeFlowAPI({cdr_type: list(dates)}) as fake:
        yield fake.url, fake.make_token(sub="autoflow-benchmark", lifetime=dt.timedelta(days=2))


def utc(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)
