"""What the workflow runs of one process share: settings, the parsed config, one run store, the leases held.

The service (or ``autoflow trigger``) builds one :class:`RunRuntime` and installs it, so its
workflow runs reuse its config and database connections; a flow run started elsewhere (a
Prefect worker) finds none installed and builds its own for its run only.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from autoflow.lease import LeaseTracker
from autoflow.settings import Settings
from autoflow.spec.models import AutoFlowConfig
from autoflow.store import RunStore

if TYPE_CHECKING:
    from autoflow.notifications import Notifier
    from autoflow.site import SiteBuilder


def _config_key(inputs_dir: Path) -> tuple[int, int]:
    from autoflow.spec.loader import CONFIG_FILENAME

    stat = (inputs_dir / CONFIG_FILENAME).stat()
    return (stat.st_mtime_ns, stat.st_size)


class RunRuntime:
    """Settings, config and run store for workflow runs; :meth:`close` closes the store it opened.

    ``config`` is reused while workflows.yml is unchanged (else reloaded); ``store``, when given,
    stays the caller's to close.
    """

    def __init__(self, settings: Settings, *, config: AutoFlowConfig | None = None, store: RunStore | None = None) -> None:
        self.settings = settings
        self.leases = LeaseTracker()
        self._lock = threading.Lock()
        self._config = config
        self._config_key = _config_key(settings.inputs_dir) if config is not None else None
        self._store = store
        self._owns_store = store is None
        self._notifier: Notifier | None = None
        self._site: SiteBuilder | None = None

    def config(self) -> AutoFlowConfig:
        """The parsed workflows.yml (raises :class:`autoflow.errors.ConfigError` if it no longer loads)."""
        from autoflow.spec.loader import load_config

        key = _config_key(self.settings.inputs_dir)
        with self._lock:
            if self._config is not None and key == self._config_key:
                return self._config
        config = load_config(self.settings.inputs_dir)
        with self._lock:
            self._config, self._config_key = config, key
        return config

    @property
    def store(self) -> RunStore:
        """The run store (opened on first use)."""
        with self._lock:
            if self._store is None:
                settings = self.settings
                self._store = RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=settings.db_url_masked)
            return self._store

    @property
    def notifier(self) -> Notifier:
        """The notifier of workflows.yml's ``notifications`` (made on first use; closed with the runtime)."""
        from autoflow.notifications import Notifier

        config = self.config()
        with self._lock:
            if self._notifier is None:
                state = self.settings.outputs_dir / ".autoflow" / "late-data.json"
                self._notifier = Notifier(config, self.settings, state_file=state)
            return self._notifier

    def rebuild_site(self) -> None:
        """Have the report site rebuilt in the background (made on first use; never raises)."""
        from autoflow.site import SiteBuilder

        with self._lock:
            if self._site is None:
                self._site = SiteBuilder(self.config, lambda: self.store.history(), self.settings.outputs_dir)
            site = self._site
        site.request()

    def run_ended(self, attempt_id: int, *, rebuild_site: bool = True) -> None:
        """A run attempt's end was recorded: notify it and (``rebuild_site``) rebuild the report site,
        both in the background. A worker's flow run leaves the site to the service, which watches
        for ended runs: its process would otherwise wait for the build before it could end."""
        self.notify_end(attempt_id)
        if rebuild_site:
            self.rebuild_site()

    def notify_end(self, attempt_id: int) -> None:
        """Send the notifications of a run attempt's end (in the background; never raises)."""
        from autoflow.notifications import notify_run_end

        try:
            config = self.config()
        except Exception:  # noqa: BLE001 - workflows.yml no longer loads: the run's error says so
            return
        if config.notifications:
            notify_run_end(self.notifier, config, self.store, attempt_id)

    def serves(self, settings: Settings) -> bool:
        """Whether runs with ``settings`` can use this runtime (same inputs, outputs and database)."""
        mine = self.settings
        return (mine.inputs_dir, mine.outputs_dir, mine.db_url) == (settings.inputs_dir, settings.outputs_dir, settings.db_url)

    def close(self) -> None:
        """Finish the report site's pending build and the notifications' deliveries, then close the
        run store if this runtime opened it (SQLite then folds its write-ahead log back into the
        database file and removes the -wal/-shm files)."""
        with self._lock:
            site, self._site = self._site, None
        if site is not None:
            site.close()  # first: the build reads the history through the store
        with self._lock:
            store, self._store = self._store, (None if self._owns_store else self._store)
            notifier, self._notifier = self._notifier, None
        if notifier is not None:
            notifier.close()
        if store is not None and self._owns_store:
            store.close()

    def __enter__(self) -> RunRuntime:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


_installed: RunRuntime | None = None
_installed_lock = threading.Lock()


def install(runtime: RunRuntime | None) -> RunRuntime | None:
    """Make ``runtime`` the one this process's workflow runs use (None: none); returns the previous one."""
    global _installed
    with _installed_lock:
        previous, _installed = _installed, runtime
    return previous


def installed() -> RunRuntime | None:
    """The runtime installed in this process, if any."""
    with _installed_lock:
        return _installed
