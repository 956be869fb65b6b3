"""AutoFlow's console logging: one readable line per decision, third-party chatter kept out.

Prefect replaces the root logger's handlers when it is imported; :func:`setup_logging` is
idempotent and is called again after that, so the console stays AutoFlow's.
"""

from __future__ import annotations

import logging
import sys

#: loggers whose records duplicate AutoFlow's own lines or are Prefect internals: console at DEBUG only
NOISY_PREFIXES = ("prefect", "uvicorn", "fastapi", "httpx", "httpcore", "hpack", "h2", "papermill", "nbclient", "traitlets", "alembic")
FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


class _ConsoleFilter(logging.Filter):
    """AutoFlow's records at its level; others at ERROR, noisy ones only when debugging."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == "autoflow" or name.startswith("autoflow."):
            return record.levelno >= self.level
        if self.level <= logging.DEBUG:
            return True
        if name.startswith(NOISY_PREFIXES):
            return False
        return record.levelno >= logging.ERROR


class _AutoFlowHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marker type, so set-up can find and replace its own handler."""


def setup_logging(level_name: str = "INFO") -> None:
    """Route log records to stderr through AutoFlow's filter; safe to call repeatedly."""
    level = getattr(logging, level_name.upper(), logging.INFO)
    handler = _AutoFlowHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, "%Y-%m-%d %H:%M:%S"))
    handler.addFilter(_ConsoleFilter(level))
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not _is_console(h)] + [handler]
    root.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.INFO)
    logging.getLogger("autoflow").setLevel(level)
    for name in ("uvicorn", "fastapi", "prefect"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [h for h in logger.handlers if not _is_console(h)]
        if name != "prefect":
            logger.propagate = True
    logging.captureWarnings(True)


def _is_console(handler: logging.Handler) -> bool:
    """A handler writing to the terminal (ours or Prefect's), not Prefect's API log handler."""
    if isinstance(handler, _AutoFlowHandler):
        return True
    kind = type(handler).__name__
    return kind in ("PrefectConsoleHandler", "StreamHandler", "_SafeStreamHandler", "RichHandler")
