"""Workflow runs on a Prefect work pool (``AUTOFLOW_WORK_POOL``): submitted, tended, never waited for.

The service claims a run in the run store as always, then hands it to Prefect: a flow run of the
``workflow-run`` deployment on the pool, created with the attempt's identity as its idempotency
key, so submitting twice cannot make two flow runs. Whichever worker picks it up runs
:func:`autoflow.flows.workflow_run`, which takes the attempt's lease (recording itself as the
attempt's executor), heartbeats it and records its end: the service does not wait.

Until a worker takes it, an attempt is *queued*: its flow run is ``Scheduled`` or ``Pending``
in Prefect (waiting for a worker, or for a slot of the deployment's concurrency limit). The
service's :meth:`WorkPool.tend` keeps queued attempts' leases fresh while Prefect still holds
them, and fails those whose flow run Prefect ended before any worker started them. Attempts
declared abandoned (their executor stopped heartbeating) have their flow run cancelled in
Prefect, so the Prefect UI does not show them running forever.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import logging
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from autoflow.errors import AutoFlowError
from autoflow.settings import Settings
from autoflow.store import Attempt, RunStore

log = logging.getLogger(__name__)

FLOW_NAME = "workflow-run"
DEPLOYMENT_NAME = "autoflow"
#: the flow as a module path: workers import it from the installed package, no code to pull
ENTRYPOINT = "autoflow.flows.workflow_run"
#: seconds a worker's process may take from accepting a flow run to taking its attempt, at least
#: (the run lease, if longer): a Python start-up and AutoFlow's imports, on a busy machine
MIN_START_BOUND = 120.0


class WorkPoolError(AutoFlowError):
    """The Prefect work pool or its API cannot be used."""


def check_pool_settings(settings: Settings) -> None:
    """Refuse a work pool its workers could not share: no Prefect server, or a run history
    in a SQLite file (only processes on this machine can reach it; warned, not refused)."""
    import os

    from autoflow.errors import SettingsError

    if not os.environ.get("PREFECT_API_URL"):
        raise SettingsError(
            f"AUTOFLOW_WORK_POOL={settings.work_pool!r} needs a Prefect server the workers share: "
            "set PREFECT_API_URL (e.g. http://prefect:4200/api)"
        )
    if settings.db_url.startswith("sqlite"):
        log.warning(
            "the run history is a SQLite file (%s): only workers on this machine can reach it; "
            "set AUTOFLOW_DB_URI to a PostgreSQL database for workers on other machines",
            settings.db_url_masked,
        )


def idempotency_key(attempt: Attempt) -> str:
    """The attempt's identity: the same run and attempt number always give the same key."""
    return f"autoflow:{attempt.workflow}:{attempt.params_hash}:{attempt.reference_date.isoformat()}:{attempt.attempt}"


@dataclass(frozen=True)
class FlowRunState:
    """A flow run's state in Prefect, as much as tending needs."""

    type: str
    name: str
    message: str
    since: dt.datetime

    def problem(self, now: dt.datetime, start_bound: float) -> str | None:
        """Why its attempt must not wait any longer, or None while it may."""
        if self.type == "SCHEDULED":
            return None
        if self.type in ("PENDING", "RUNNING"):
            age = (now - self.since).total_seconds()
            if age <= start_bound:
                return None
            return f"has been {self.name} for {age:.0f} s without starting the run (its worker or process went away)"
        return f"ended {self.name} before a worker started the run" + (f": {self.message}" if self.message else "")


@dataclass(frozen=True)
class PoolStatus:
    """What Prefect says about the pool, for ``autoflow status`` and ``plan``."""

    pool: str
    online_workers: list[str]


def _client() -> Any:
    """Prefect's synchronous API client (for the API named by PREFECT_API_URL)."""
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _state_type(flow_run: object) -> str | None:
    state = getattr(flow_run, "state", None)
    kind = getattr(state, "type", None)
    return None if kind is None else str(getattr(kind, "value", kind))


class WorkPool:
    """Submits claimed runs to the Prefect work pool ``settings.work_pool`` and tends them."""

    def __init__(self, settings: Settings, store: RunStore) -> None:
        if not settings.work_pool:
            raise ValueError("settings.work_pool is not set")
        self.name = settings.work_pool
        self.settings = settings
        self.store = store
        #: seconds a flow run may be Pending or Running before its process takes its attempt
        self.start_bound = max(settings.run_lease_seconds, MIN_START_BOUND)
        self._lock = threading.Lock()

    @property
    def deployment(self) -> str:
        return f"{FLOW_NAME}/{DEPLOYMENT_NAME}"

    def deploy(self) -> None:
        """Create the work pool (process type) if missing, and create or update the deployment.

        Idempotent: run at every service start. The deployment's concurrency limit is
        ``AUTOFLOW_MAX_PARALLEL_RUNS``: runs beyond it wait in Prefect for a slot.
        """
        from prefect.client.schemas.actions import WorkPoolCreate
        from prefect.exceptions import ObjectNotFound
        from prefect.workers.process import ProcessWorker

        workflow_run = importlib.import_module("autoflow.flows").workflow_run

        try:
            with _client() as client:
                try:
                    pool = client.read_work_pool(self.name)
                except ObjectNotFound:
                    template = ProcessWorker.get_default_base_job_template()
                    pool = client.create_work_pool(WorkPoolCreate(name=self.name, type="process", base_job_template=template))
                    log.info("created the Prefect work pool '%s' (process)", self.name)
                flow_id = client.create_flow_from_name(FLOW_NAME)
                client.create_deployment(
                    flow_id=flow_id,
                    name=DEPLOYMENT_NAME,
                    entrypoint=ENTRYPOINT,
                    work_pool_name=self.name,
                    concurrency_limit=self.settings.max_parallel_runs,
                    parameter_openapi_schema=workflow_run.parameters.model_dump(),
                    enforce_parameter_schema=False,
                    pull_steps=[],
                    description="One AutoFlow workflow run; submitted by the AutoFlow service, one flow run per run attempt.",
                    tags=["autoflow"],
                )
        except AutoFlowError:
            raise
        except Exception as exc:
            raise WorkPoolError(f"cannot set up the Prefect work pool '{self.name}': {type(exc).__name__}: {exc}") from exc
        log.info(
            "workflow runs go to the Prefect work pool '%s' (%s workers, deployment %s, at most %d at a time)",
            self.name, pool.type, self.deployment, self.settings.max_parallel_runs,
        )  # fmt: skip

    def submit(self, attempt: Attempt, flow_parameters: dict[str, object], flow_run_name: str) -> str:
        """Create the attempt's flow run on the pool and record its id on the attempt; returns the id."""
        from prefect.deployments import run_deployment

        try:
            flow_run = run_deployment(
                self.deployment,
                parameters=flow_parameters,
                flow_run_name=flow_run_name,
                timeout=0,
                as_subflow=False,
                idempotency_key=idempotency_key(attempt),
                tags=["autoflow"],
            )
        except Exception as exc:
            raise WorkPoolError(f"could not submit the run to the Prefect work pool '{self.name}': {type(exc).__name__}: {exc}") from exc
        flow_run_id = str(flow_run.id)  # type: ignore[union-attr]
        try:
            self.store.set_flow_run_id(attempt.id, flow_run_id)
        except AutoFlowError as exc:  # submitted all the same: its worker records it when it takes the attempt
            log.warning("could not record Prefect flow run %s on run attempt %d: %s", flow_run_id, attempt.id, exc)
        return flow_run_id

    def flow_run_states(self, flow_run_ids: Iterable[str]) -> dict[str, FlowRunState]:
        """flow run id -> its current Prefect state, for those Prefect knows."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        ids = [uuid.UUID(i) for i in flow_run_ids]
        found: dict[str, FlowRunState] = {}
        with _client() as client:
            for start in range(0, len(ids), 200):
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[start : start + 200])), limit=200)
                for run in runs:
                    state = run.state
                    if state is not None:
                        found[str(run.id)] = FlowRunState(_state_type(run) or "", state.name, state.message or "", state.timestamp)
        return found

    def tend(self, now: dt.datetime | None = None) -> None:
        """Keep queued attempts alive while Prefect holds their flow runs waiting; fail the others.

        Waiting: ``Scheduled`` (for a worker, or a slot of the concurrency limit) for as long as
        it takes; ``Pending`` or ``Running`` (a worker's process starting up) for up to
        :attr:`start_bound` seconds. A flow run Prefect ended, or that has been starting for
        longer (its worker or process went away), has its attempt failed with the reason, and is
        cancelled in Prefect; the next tick runs the run again. One Prefect API call, and a
        run-store statement per attempt kept or failed.
        """
        with self._lock:
            queued = self.store.queued()
            if not queued:
                return
            try:
                states = self.flow_run_states(a.flow_run_id for a in queued if a.flow_run_id)
            except Exception as exc:  # Prefect away: the leases allow for a missed beat or two
                log.warning("could not ask Prefect about %d queued run(s): %s", len(queued), exc)
                return
            now = now or dt.datetime.now(dt.timezone.utc)
            alive: list[int] = []
            failed: list[Attempt] = []
            for attempt in queued:
                state = states.get(attempt.flow_run_id or "")
                if state is None:
                    continue  # unknown to Prefect: its lease decides
                error = state.problem(now, self.start_bound)
                if error is None:
                    alive.append(attempt.id)
                    continue
                error = f"not started: its Prefect flow run {attempt.flow_run_id} {error}"
                if self.store.fail_unstarted(attempt.id, error):
                    log.warning("%s for %s (attempt %d) failed: %s", attempt.workflow, attempt.reference_date.isoformat(), attempt.attempt, error)
                    failed.append(dataclasses.replace(attempt, state="failed", error=error))
            self.store.heartbeat(alive)
        self.cancel_orphans(failed)

    def cancel_orphans(self, expired: Iterable[Attempt]) -> None:
        """Mark the Prefect flow runs of abandoned attempts cancelled (unless already ended)."""
        from prefect.states import Cancelled

        orphans = [a for a in expired if a.flow_run_id]
        if not orphans:
            return
        try:
            states = self.flow_run_states(a.flow_run_id for a in orphans if a.flow_run_id)
            with _client() as client:
                for attempt in orphans:
                    state = states.get(attempt.flow_run_id or "")
                    if state is None or state.type in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
                        continue
                    message = f"AutoFlow: run attempt {attempt.id} was {attempt.error or 'abandoned'}"
                    client.set_flow_run_state(uuid.UUID(attempt.flow_run_id or ""), Cancelled(message=message[:2000]), force=True)
                    log.info("cancelled Prefect flow run %s of abandoned run attempt %d", attempt.flow_run_id, attempt.id)
        except Exception as exc:  # only Prefect's view: the run store already has it right
            log.warning("could not cancel the Prefect flow runs of %d abandoned run attempt(s): %s", len(orphans), exc)

    @staticmethod
    def describe(settings: Settings) -> PoolStatus:
        """The pool's online workers (reads only; a pool not created yet has none)."""
        name = settings.work_pool or ""
        try:
            with _client() as client:
                try:
                    workers = client.read_workers_for_work_pool(name)
                except Exception as exc:
                    if type(exc).__name__ != "ObjectNotFound":
                        raise
                    workers = []  # the service creates the pool when it starts
        except Exception as exc:
            raise WorkPoolError(f"cannot ask Prefect about the work pool '{name}': {type(exc).__name__}: {exc}") from exc
        online = sorted(w.name for w in workers if str(getattr(w.status, "value", w.status)).upper() == "ONLINE")
        return PoolStatus(name, online)


class Tender:
    """A thread calling :meth:`WorkPool.tend` every third of the lease until stopped."""

    def __init__(self, pool: WorkPool, interval: float) -> None:
        self.pool = pool
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autoflow-pool-tender", daemon=True)

    def start(self) -> Tender:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.pool.tend()
            except Exception as exc:  # the next round may get through
                log.warning("could not tend the queued runs: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def cancel_flow_run(flow_run_id: str, reason: str) -> None:
    """Mark one Prefect flow run cancelled unless it has ended; never raises (only Prefect's view)."""
    from prefect.states import Cancelled

    try:
        with _client() as client:
            state = client.read_flow_run(uuid.UUID(flow_run_id)).state
            if state is not None and state.type.value in ("COMPLETED", "FAILED", "CANCELLED", "CRASHED"):
                return
            client.set_flow_run_state(uuid.UUID(flow_run_id), Cancelled(message=reason[:2000]), force=True)
            log.info("cancelled Prefect flow run %s", flow_run_id)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not cancel Prefect flow run %s: %s", flow_run_id, exc)
