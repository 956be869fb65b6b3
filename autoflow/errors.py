"""One exception tree for everything AutoFlow raises on purpose.

Third-party exceptions (ruamel.yaml, flowclient, SQLAlchemy, papermill, nbconvert) are
translated into these where they enter AutoFlow, so callers only ever handle ``AutoFlowError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class AutoFlowError(Exception):
    """Root of every error AutoFlow raises deliberately. ``str(err)`` is a one-line message."""

    #: process exit status when this error ends a command
    exit_code: int = 1


@dataclass(frozen=True, order=True)
class Position:
    """A place in a file, 1-based, as editors show it."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, and where."""

    position: Position
    message: str

    def __post_init__(self) -> None:
        # Messages quote what the user wrote; control characters in it must not break the
        # one-line-per-problem output (a key containing a newline, say).
        if not self.message.isprintable():
            printable = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.message)
            object.__setattr__(self, "message", printable)

    def __str__(self) -> str:
        return f"{self.position}: {self.message}"


class ConfigError(AutoFlowError):
    """workflows.yml is invalid. Carries every problem found, each with its position."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.position, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class SettingsError(AutoFlowError):
    """An environment variable or secret is missing or malformed."""

    exit_code = 2


class UsageError(AutoFlowError):
    """A command was called with bad arguments (unknown workflow, missing parameter...)."""

    exit_code = 2


class DateSourceError(AutoFlowError):
    """The available dates could not be fetched (FlowAPI down, 401, bad data, missing folder)."""


class RunStoreError(AutoFlowError):
    """The run history database could not be reached or is inconsistent."""


class NotebookExecutionError(AutoFlowError):
    """A notebook failed. The executed copy (with the error) is kept at ``output_path``.

    ``retryable`` is ``False`` when running it again cannot help (the notebook itself must change).
    """

    def __init__(
        self,
        message: str,
        *,
        notebook: str,
        output_path: Path | None = None,
        cell: int | None = None,
        retryable: bool = True,
    ) -> None:
        self.notebook = notebook
        self.output_path = output_path
        self.cell = cell
        self.retryable = retryable
        super().__init__(message)


class ReportError(AutoFlowError):
    """A notebook could not be turned into a PDF report."""
