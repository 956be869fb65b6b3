"""What the workflow runs of one process share: settings, the parsed config, one run store, the leases held.

The service (or ``autoflow trigger``) builds one :class:`RunRuntime` and installs it, so its
workflow runs reuse its config and database connections; a flow run started elsewhere (a
Prefect worker) finds none installed and builds its own for its run only.

A runtime given a configuration runs with that one until its owner gives it another
(:meth:`RunRuntime.use_config`: the service, when it reloads workflows.yml), so its runs never
see a configuration the service's sensor does not. A runtime given none loads workflows.yml
itself, again whenever the file changes.
"""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)


def _config_key(inputs_dir: Path) -> tuple[int, int]:
    from autoflow.spec.loader import CONFIG_FILENAME

    try:
        stat = (inputs_dir / CONFIG_FILENAME).stat()
    except OSError:  # gone (loading it says so)
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


class RunRuntime:
    """Settings, config and run store for workflow runs; :meth:`close` closes the store it opened.

    ``config``: the configuration to run with until :meth:`use_config` gives another; without
    one, workflows.yml is loaded on first use and again whenever it changes. ``store``, when
    given, stays the caller's to close.
    """

    def __init__(self, settings: Settings, *, config: AutoFlowConfig | None = None, store: RunStore | None = None) -> None:
        self.settings = settings
        self.leases = LeaseTracker()
        self._lock = threading.Lock()
        self._config = config
        #: False: the owner gives the configuration (use_config); True: follow workflows.yml on disk
        self._follows_file = config is None
        self._config_key: tuple[int, int] | None = None
        #: the file (mtime, size) last found invalid while a valid configuration was held
        self._rejected_key: tuple[int, int] | None = None
        self._store = store
        self._owns_store = store is None
        self._notifier: Notifier | None = None
        self._site: SiteBuilder | None = None

    def config(self) -> AutoFlowConfig:
        """The configuration runs use now.

        Following workflows.yml: the file as it is now; when it no longer loads, the configuration
        loaded before (with a warning), or :class:`autoflow.errors.ConfigError` when there is none.
        """
        from autoflow.errors import ConfigError
        from autoflow.spec.loader import load_config

        with self._lock:
            if not self._follows_file and self._config is not None:
                return self._config
        key = _config_key(self.settings.inputs_dir)
        with self._lock:
            if self._config is not None and key in (self._config_key, self._rejected_key):
                return self._config
        try:
            config = load_config(self.settings.inputs_dir)
        except ConfigError as exc:
            with self._lock:
                held = self._config
                if held is None:
                    raise
                self._rejected_key = key
            count = len(exc.problems)
            log.warning(
                "workflows.yml is invalid now (%d problem%s; first: %s); this process keeps the configuration it loaded before",
                count, "" if count == 1 else "s", exc.problems[0] if exc.problems else exc,
            )  # fmt: skip
            return held
        with self._lock:
            self._config, self._config_key, self._rejected_key = config, key, None
        return config

    def use_config(self, config: AutoFlowConfig) -> None:
        """Run with ``config`` from now on (runs already executing keep the one they started with).

        When its notification targets differ, the new ones are checked first: a missing secret or
        a URL Apprise rejects raises :class:`autoflow.notifications.NotificationError` and nothing
        changes. The notifier of the old targets delivers what it has queued, then stops.
        """
        from autoflow.notifications import Notifier

        with self._lock:
            previous = self._config
        replace = previous is None or previous.notifications != config.notifications
        notifier: Notifier | None = None
        if replace and config.notifications:
            notifier = Notifier(config, self.settings, state_file=self._late_data_state)
            notifier.check()
        retired: Notifier | None = None
        with self._lock:
            self._config, self._follows_file = config, False
            if replace:
                retired, self._notifier = self._notifier, notifier
            site = self._site
        if retired is not None:
            retired.close()
        if site is not None and (previous is None or previous.workflows != config.workflows):
            site.request()  # workflows came, went or changed

    @property
    def _late_data_state(self) -> Path:
        return self.settings.outputs_dir / ".autoflow" / "late-data.json"

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
                self._notifier = Notifier(config, self.settings, state_file=self._late_data_state)
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
