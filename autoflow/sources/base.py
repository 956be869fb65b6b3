"""What a date source is, as the rest of AutoFlow sees it: its workflows.yml block, its checks and its factory.

Each ``type:`` of date source is one :class:`SourceType`: the keys its ``source:`` block takes,
a check of that block that reports problems by key (the loader turns them into
``workflows.yml:LINE:COL``), a one-line description for ``autoflow validate``, the settings it
needs at start, and a factory. Nothing here imports the spec loader: the loader asks the
registry (:mod:`autoflow.sources`), never the other way round.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from autoflow.errors import Position

if TYPE_CHECKING:
    from autoflow.settings import Settings
    from autoflow.store import RunStore

__all__ = ["CheckContext", "DateSource", "SourceContext", "SourceSpec", "SourceType"]


@runtime_checkable
class DateSource(Protocol):
    """Something that knows which dates of data exist."""

    def available_dates(self) -> dict[str, list[dt.date]]:
        """Sorted available dates per data type (e.g. cdr type); raises DateSourceError."""
        ...

    def describe(self) -> str:
        """One line for logs, e.g. ``FlowAPI at https://host (calls, sms)``; never secrets."""
        ...


def _plain_json(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


@dataclass(frozen=True, eq=False)
class SourceSpec:
    """A validated ``source:`` block: its ``type`` and its other keys as plain values."""

    type: str = "flowapi"
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    position: Position | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.options, MappingProxyType):
            object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    @property
    def key(self) -> str:
        """Equal for equal blocks: one source object serves every entry with the same block."""
        return json.dumps([self.type, dict(self.options)], sort_keys=True, default=_plain_json)

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourceSpec) and self.key == other.key


class CheckContext(Protocol):
    """What a source type's check sees besides its block (given by the workflows.yml loader)."""

    #: the inputs directory (relative paths in a block are relative to it)
    inputs_dir: Path
    @property
    def workflow_names(self) -> Sequence[str]:
        """Names of the workflows defined in workflows.yml."""
        ...

    def problem(self, where: str | Sequence[str | int] | None, message: str) -> None:
        """Report ``message`` at the value of key ``where`` (a path into nested lists and
        mappings, e.g. ``("cdr_types", 2)``), or at the block itself when ``where`` is None."""
        ...

    def did_you_mean(self, word: str, candidates: Sequence[str]) -> str:
        """`` (did you mean 'x'?)`` for the closest candidate, or ``""``."""
        ...


@dataclass(frozen=True)
class SourceContext:
    """What a factory gets besides the spec."""

    settings: Settings
    inputs_dir: Path
    #: the run history (a ``workflow`` source reads it); None when there is none yet
    store: RunStore | None = None
    #: the sensor entries' parameters per workflow name (``workflow`` sources wait for each set)
    entry_parameters: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)


def _no_settings(spec: SourceSpec, settings: Settings) -> None:
    return None


def _no_upstream(spec: SourceSpec) -> tuple[str, ...]:
    return ()


@dataclass(frozen=True)
class SourceType:
    """One kind of date source, as registered under its ``type`` name.

    ``check`` gets the block's keys other than ``type`` as plain Python values (dates as
    ``datetime.date``), reports every problem through ``context.problem`` and returns the
    options to keep (or None when there were problems). Unknown and missing keys are reported
    by the loader from ``keys`` before ``check`` runs.
    """

    name: str
    #: one line for the README and ``validate``'s "use one of" hints
    summary: str
    #: option key -> required? (besides ``type``)
    keys: Mapping[str, bool]
    check: Callable[[Mapping[str, Any], CheckContext], Mapping[str, Any] | None]
    create: Callable[[SourceSpec, SourceContext], DateSource]
    #: what the source reads, for ``autoflow validate``, e.g. "files matching 'data/*.csv'"
    describe: Callable[[SourceSpec], str]
    #: a block in YAML flow style, shown when required keys are missing
    example: str = ""
    #: raises SettingsError naming what is missing (e.g. FLOWAPI_URL) before anything starts
    check_settings: Callable[[SourceSpec, Settings], None] = _no_settings
    #: workflows whose runs the source reads: a cycle through them is a validation error
    upstream: Callable[[SourceSpec], tuple[str, ...]] = _no_upstream
