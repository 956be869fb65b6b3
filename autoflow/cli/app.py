"""What every command shares: settings, logging, console output and how to stop with an error."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from autoflow.errors import AutoFlowError
from autoflow.settings import Settings

if TYPE_CHECKING:
    from autoflow.spec.models import AutoFlowConfig
    from autoflow.store import RunStore


class Abort(Exception):
    """Raised by :meth:`Application.abort`; ``main`` prints nothing more and exits with ``code``."""

    def __init__(self, code: int) -> None:
        self.code = code


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class Application:
    """Owns the settings, the log set-up and stderr/stdout for one command invocation."""

    def __init__(self, inputs_override: str | None = None, outputs_override: str | None = None) -> None:
        self._inputs_override = inputs_override
        self._outputs_override = outputs_override

    @cached_property
    def settings(self) -> Settings:
        """The environment's settings, with --inputs / --outputs in place of their variables."""
        settings = Settings.from_env()
        overrides = {"inputs_dir_raw": self._inputs_override, "outputs_dir_raw": self._outputs_override}
        overrides = {name: value for name, value in overrides.items() if value}
        return Settings(**{**settings.__dict__, **overrides}) if overrides else settings

    def setup_logging(self) -> None:
        """Log to stderr at AUTOFLOW_LOG_LEVEL; third-party chatter only at DEBUG."""
        from autoflow.logs import setup_logging

        setup_logging(self.settings.log_level)

    def load_config(self) -> AutoFlowConfig:
        from autoflow.spec.loader import CONFIG_FILENAME, load_config

        inputs = self.settings.inputs_dir
        return load_config(inputs, display_name=display_path(inputs / CONFIG_FILENAME))

    @contextmanager
    def read_history(self) -> Iterator[RunStore | None]:
        """The run history opened for reading only (nothing created or migrated); None when there is none yet.

        Aborts with what to do when the schema is older or newer than this AutoFlow's.
        """
        from autoflow.store import RunStore

        settings = self.settings
        display = settings.db_url_masked
        with RunStore(settings.db_url, lease_seconds=settings.run_lease_seconds, display_url=display, read_only=True) as store:
            schema = store.schema_status()
            if schema == "old":
                self.abort(f"the run history at {display} needs upgrading to this AutoFlow's schema; run `autoflow db upgrade` (the service does so when it starts), then try again")
            if schema == "newer":
                self.abort(f"the run history at {display} was written by a newer AutoFlow; run that version of AutoFlow")
            yield store if schema == "current" else None

    def error(self, message: str) -> None:
        print(f"autoflow: error: {message}" if "\n" not in message else message, file=sys.stderr)

    def abort(self, message: str, code: int = 1) -> NoReturn:
        self.error(message)
        raise Abort(code)

    def fail(self, exc: AutoFlowError) -> NoReturn:
        self.abort(str(exc), exc.exit_code)

    @staticmethod
    def is_debug() -> bool:
        return (os.environ.get("AUTOFLOW_LOG_LEVEL") or "").strip().upper() == "DEBUG"
