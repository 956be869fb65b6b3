"""workflows.yml reloaded while the service runs, without a restart.

Before every tick (and every :data:`CHECK_INTERVAL` seconds while it waits for one) the service
asks a :class:`ConfigReloader` to look at workflows.yml and the files it names. A cheap
:class:`Fingerprint` (size and modification time of each) says whether anything changed; only
then is the file loaded and validated again. A valid change is applied at once and summarised in
one log line; an invalid one is logged once, with every problem, and the service goes on with the
last valid configuration until the file is fixed. :attr:`ConfigReloader.state` is what the
heartbeat tells ``autoflow health``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from autoflow.errors import AutoFlowError, ConfigError
from autoflow.heartbeat import ConfigState
from autoflow.spec.changes import describe_changes
from autoflow.spec.loader import CONFIG_FILENAME, files_named_in
from autoflow.spec.models import AutoFlowConfig

__all__ = ["CHECK_INTERVAL", "ConfigReloader", "Fingerprint", "fingerprint"]

log = logging.getLogger(__name__)

#: seconds between two looks at workflows.yml while the service waits for its next tick
CHECK_INTERVAL = 30.0

#: (st_mtime_ns, st_size) of a file, or None when it does not exist (or cannot be looked at)
Stat = tuple[int, int] | None


def _stat(path: Path) -> Stat:
    try:
        stat = path.stat()
    except (OSError, ValueError):
        return None
    return (stat.st_mtime_ns, stat.st_size)


@dataclass(frozen=True)
class Fingerprint:
    """workflows.yml and the files it names, each with its :data:`Stat`: equal fingerprints mean
    nothing was saved since (a file added to or dropped from the set counts as a change)."""

    stats: Mapping[str, Stat]

    def changed_files(self, earlier: Fingerprint) -> list[str]:
        """File names (not paths) that differ from ``earlier``: saved, created, deleted, or newly named."""
        paths = sorted(set(self.stats) | set(earlier.stats))
        return [Path(p).name for p in paths if self.stats.get(p, ()) != earlier.stats.get(p, ())]


def fingerprint(config_file: Path, files: Iterable[Path], *, known: Fingerprint | None = None) -> Fingerprint:
    """The :class:`Fingerprint` of ``config_file`` and ``files``; stats already in ``known`` are reused
    (taken before a load, so a file saved while it was being read shows as a change next time)."""
    measured = known.stats if known is not None else {}
    paths = [str(config_file), *sorted({str(f) for f in files} - {str(config_file)})]
    return Fingerprint({p: measured[p] if p in measured else _stat(Path(p)) for p in paths})


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)




class ConfigReloader:
    """Keeps the service on the last valid workflows.yml: :meth:`check` reloads it when it changed.

    ``load`` reads and validates workflows.yml (raising :class:`ConfigError`); ``apply`` makes
    the service run with a new configuration and raises :class:`AutoFlowError`, changing
    nothing, when it cannot (a notification secret is missing, say): that counts as invalid
    too, and is tried again at every check until it works or the file changes.
    """

    def __init__(
        self,
        config: AutoFlowConfig,
        *,
        load: Callable[[], AutoFlowConfig],
        apply: Callable[[AutoFlowConfig], None],
        now: Callable[[], dt.datetime] = _utc_now,
    ) -> None:
        #: the configuration the service runs
        self.config = config
        self._load = load
        self._apply = apply
        self._now = now
        self._file = config.inputs_dir / CONFIG_FILENAME
        self._fingerprint = fingerprint(self._file, config.named_files)
        self._state = ConfigState(valid=True, loaded_at=now())
        #: a valid configuration that could not be applied yet (tried again at each check)
        self._pending: AutoFlowConfig | None = None

    @property
    def state(self) -> ConfigState:
        """Whether workflows.yml on disk is what the service runs (for the heartbeat)."""
        return self._state

    def check(self) -> bool:
        """Reload workflows.yml if it or a file it names changed; True when something was logged
        (the configuration or :attr:`state` changed)."""
        measured = fingerprint(self._file, map(Path, self._fingerprint.stats))
        if measured == self._fingerprint:
            if self._pending is not None:
                return self._try(self._pending, [])
            if not self._state.valid:
                log.debug("workflows.yml is unchanged and still invalid; running the configuration loaded at %s", self._clock(self._state.loaded_at))
            return False
        changed = [name for name in measured.changed_files(self._fingerprint) if name != CONFIG_FILENAME]
        self._fingerprint, self._pending = measured, None  # (should loading fail unexpectedly: not again until it changes)
        try:
            loaded = self._load()
        except ConfigError as exc:
            self._fingerprint = fingerprint(self._file, files_named_in(self.config.inputs_dir), known=measured)
            self._invalid([str(p) for p in exc.problems], "workflows.yml is invalid", "workflows.yml changed but is still invalid")
            return True
        self._fingerprint = fingerprint(self._file, loaded.named_files, known=measured)
        return self._try(self._keep_schedule(loaded), changed)

    def _keep_schedule(self, loaded: AutoFlowConfig) -> AutoFlowConfig:
        """``loaded``, but with the running schedule when it says ``schedule: null`` (run once and exit),
        which a running service cannot switch to."""
        schedule = self.config.sensor.schedule
        if loaded.sensor.schedule is not None or schedule is None:
            return loaded
        log.warning(
            "workflows.yml now says 'schedule: null' (one tick, then exit), which cannot apply to a running service; "
            "keeping the schedule '%s' (stop the service and start it again to run once)", schedule,
        )  # fmt: skip
        return dataclasses.replace(loaded, sensor=dataclasses.replace(loaded.sensor, schedule=schedule))

    def _try(self, config: AutoFlowConfig, changed: list[str]) -> bool:
        """Apply ``config``; True when that (or a new reason it cannot be applied) was logged."""
        retry = config is self._pending
        try:
            self._apply(config)
        except AutoFlowError as exc:
            self._pending = config
            problems = str(exc).splitlines() or [type(exc).__name__]
            if retry and not self._state.valid and list(self._state.problems) == problems:
                log.debug("workflows.yml still cannot be applied: %s", problems[0])
                return False
            self._invalid(problems, "workflows.yml is valid but cannot be applied", "workflows.yml still cannot be applied")
            return True
        summary = "; ".join(describe_changes(self.config, config)) or "no change to the configuration"
        if changed:
            summary += f" (files changed: {', '.join(changed)})"
        if self._state.valid:
            log.info("workflows.yml reloaded: %s", summary)
        else:
            log.info("workflows.yml is valid again; reloaded: %s", summary)
        self.config, self._pending = config, None
        self._state = ConfigState(valid=True, loaded_at=self._now())
        return True

    def _clock(self, moment: dt.datetime) -> str:
        """``19:31:05 UTC``, with the date in front when it is not today's."""
        moment = moment.astimezone(dt.timezone.utc)
        same_day = moment.date() == self._now().astimezone(dt.timezone.utc).date()
        return f"{moment:%H:%M:%S} UTC" if same_day else f"{moment:%Y-%m-%d %H:%M:%S} UTC"

    def _invalid(self, problems: list[str], first: str, again: str) -> None:
        """Record and log (as ``first``, or ``again`` when it was invalid already) that workflows.yml
        cannot be used, with every problem line."""
        state = self._state
        since = state.invalid_since if not state.valid and state.invalid_since is not None else self._now()
        self._state = ConfigState(valid=False, loaded_at=state.loaded_at, problems=tuple(problems), invalid_since=since)
        log.error(
            "%s (%d problem%s); the service keeps running the configuration loaded at %s until it is fixed:\n%s",
            first if state.valid else again, len(problems), "" if len(problems) == 1 else "s",
            self._clock(state.loaded_at), "\n".join(problems),
        )  # fmt: skip
