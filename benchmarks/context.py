"""One benchmark session: its sizes (quick or full), working directory, servers and errors."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks import workload
from benchmarks.common import RESULTS, PrefectServer, base_env, fake_flowapi, log


@dataclass(frozen=True)
class Config:
    mode: str
    b1_dates: int
    b1_rounds: int
    warmup: bool
    ploomber: str  # "build" | "if-built" | "no"
    ploomber_serial: bool
    b2_repeats: int
    profile: str  # "build" | "if-built" | "no"
    #: (available dates, attempts in the history) per size
    b3_sizes: tuple[tuple[int, int], ...]
    b3_entries: int
    b3_repeats: int
    b3_cli_repeats: int
    b4_repeats: int
    idle_ticks: int
    #: B7: repeats of each ``autoflow trigger`` setting (after one dropped)
    b7_repeats: int = 5
    #: B1: only these contenders (None: all that can run)
    b1_contenders: tuple[str, ...] | None = None
    #: B5: runs, seconds each notebook waits, and the worker slots compared
    b5_runs: int = 40
    b5_pause: float = 10.0
    b5_slots: tuple[int, ...] = (1, 2, 4)
    tracemalloc: bool = False
    #: memory: keep and count by type the reference-cycle garbage of idle ticks 101-120
    gc_garbage: bool = False
    #: memory: also run the idle ticks on AutoFlow at this git commit (before a fix), alternating
    memory_before: str | None = None
    max_parallel_runs: int = 2
    process_timeout: float = 1800.0

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


FULL = Config(
    mode="full", b1_dates=24, b1_rounds=5, warmup=True, ploomber="build", ploomber_serial=False,
    b2_repeats=2, profile="build", b3_sizes=((365, 10_000), (3_650, 100_000)), b3_entries=50,
    b3_repeats=5, b3_cli_repeats=3, b4_repeats=10, idle_ticks=150,
)  # fmt: skip
QUICK = replace(
    FULL, mode="quick", b1_dates=4, b1_rounds=1, warmup=False, ploomber="if-built", ploomber_serial=False,
    b2_repeats=1, profile="no", b3_sizes=((100, 1_000), (365, 10_000)), b3_repeats=2, b3_cli_repeats=1,
    b4_repeats=3, idle_ticks=10, b7_repeats=1, process_timeout=900.0, b5_runs=6, b5_pause=2.0, b5_slots=(1, 2),
)  # fmt: skip


@dataclass
class Bench:
    cfg: Config
    work: Path
    results_dir: Path = RESULTS
    ploomber_python: Path | None = None
    py_spy: Path | None = None
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prefect: PrefectServer | None = None
    flowapi: tuple[str, str] | None = None
    warm_flowapi: tuple[str, str] | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def b1_dates(self) -> list[dt.date]:
        return workload.available_dates(self.cfg.b1_dates)

    @property
    def b1_inputs(self) -> Path:
        return self.work / "b1-inputs"

    def error(self, message: str) -> None:
        log(f"ERROR: {message}")
        self.errors.append(message)

    def start_servers(self) -> None:
        """The fake FlowAPIs (B1 dates; warm-up dates) and the already-running Prefect server."""
        workload.write_inputs(self.b1_inputs)
        self.flowapi = self._stack.enter_context(fake_flowapi(self.b1_dates))
        self.warm_flowapi = self._stack.enter_context(fake_flowapi(self.b1_dates[:3]))
        log("starting the benchmark's Prefect server (the 'already running' one)")
        self.prefect = self._stack.enter_context(PrefectServer(self.work / "prefect-server-home", self.work / "prefect-server.log"))
        log(f"Prefect server up in {self.prefect.startup_seconds:.1f} s at {self.prefect.api_url}")

    def close(self) -> None:
        self._stack.close()

    def prefect_description(self) -> str:
        if self.prefect is None:
            return "none"
        return (
            f"autoflow-api: a Prefect {_prefect_version()} API server (uvicorn prefect.server.api.server:create_app, "
            f"no UI, SQLite in its own PREFECT_HOME) started by the harness before B1 and kept running "
            f"(it took {self.prefect.startup_seconds:.1f} s to start); autoflow-temp: AutoFlow's own temporary server, "
            "started by each process"
        )

    def sqlite_url(self, outputs: Path) -> str:
        return f"sqlite:///{outputs / 'autoflow.db'}"

    def autoflow_env(self, outputs: Path, *, api: bool, warmup: bool = False, inputs: Path | None = None, **extra: str) -> dict[str, str]:
        """The environment of a ``python -m autoflow`` contender writing to ``outputs``."""
        flowapi = self.warm_flowapi if warmup else self.flowapi
        assert flowapi is not None and self.prefect is not None, "start_servers() first"
        env = base_env(
            AUTOFLOW_INPUTS_DIR=str(inputs or self.b1_inputs),
            AUTOFLOW_OUTPUTS_DIR=str(outputs),
            AUTOFLOW_SECRETS_DIR=str(self.work / "no-secrets"),
            AUTOFLOW_MAX_PARALLEL_RUNS=str(self.cfg.max_parallel_runs),
            FLOWAPI_URL=flowapi[0],
            FLOWAPI_TOKEN=flowapi[1],
            # one client home for every AutoFlow process, as a user's ~/.prefect would be;
            # the temporary servers keep their database there too
            PREFECT_HOME=str(self.work / "prefect-client-home"),
        )
        if api:
            env["PREFECT_API_URL"] = self.prefect.api_url
        env.update(extra)
        return env


def _prefect_version() -> str:
    from benchmarks.common import version_of

    return version_of("prefect") or "?"
