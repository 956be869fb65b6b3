"""Date sources: where the sensor learns which dates of data exist.

A source is chosen by ``type`` in workflows.yml and built by a factory from the registry. The
built-ins (``flowapi``, ``directory``) register exactly as a plugin would; third-party sources
register through the ``autoflow.date_sources`` entry-point group, each entry point naming a
:data:`SourceFactory`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

from autoflow.errors import DateSourceError
from autoflow.settings import Settings
from autoflow.spec.models import SourceSpec

__all__ = [
    "DateSource",
    "SourceFactory",
    "SourceRegistry",
    "make_source",
    "source_registry",
    "union_of_dates",
]

ENTRY_POINT_GROUP = "autoflow.date_sources"

logger = logging.getLogger(__name__)


@runtime_checkable
class DateSource(Protocol):
    """Something that knows which dates of data exist."""

    def available_dates(self) -> dict[str, list[date]]:
        """Sorted available dates per data type (e.g. cdr type); raises DateSourceError."""
        ...

    def describe(self) -> str:
        """One line for logs, e.g. ``FlowAPI at https://host (calls, sms)``; never secrets."""
        ...


class SourceFactory(Protocol):
    """Builds a date source from its workflows.yml spec and the settings."""

    def __call__(
        self,
        spec: SourceSpec,
        *,
        settings: Settings,
        inputs_dir: Path,
        cdr_types: tuple[str, ...] | None,
    ) -> DateSource: ...


class SourceRegistry:
    """Source ``type`` name -> factory. Entry points are loaded the first time a name is missing."""

    def __init__(self, entry_point_group: str | None = ENTRY_POINT_GROUP) -> None:
        self._factories: dict[str, SourceFactory] = {}
        self._entry_point_group = entry_point_group
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str, factory: SourceFactory) -> None:
        """Make ``type: name`` build sources with ``factory`` (replacing any earlier one)."""
        self._factories[name] = factory

    def types(self) -> tuple[str, ...]:
        """Every registered type name, plugins included, sorted."""
        self._load_entry_points()
        return tuple(sorted(self._factories))

    def get(self, name: str) -> SourceFactory:
        """The factory for ``name``; DateSourceError listing the known types if there is none."""
        if name not in self._factories:
            self._load_entry_points()
        try:
            return self._factories[name]
        except KeyError:
            raise DateSourceError(
                f"unknown date source type {name!r}: use one of {', '.join(self.types())}"
            ) from None

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self._entry_point_group is None:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self._entry_point_group):
            if ep.name in self._factories:
                continue
            try:
                self._factories[ep.name] = ep.load()
            except Exception as exc:  # a broken plugin must not stop the built-ins working
                logger.warning(
                    "date source plugin %r (%s) failed to load: %s: %s",
                    ep.name, ep.value, type(exc).__name__, exc,
                )


def _flowapi_source(
    spec: SourceSpec, *, settings: Settings, inputs_dir: Path, cdr_types: tuple[str, ...] | None
) -> DateSource:
    # imported here: flowclient pulls in pandas, which `autoflow validate` should not pay for
    from autoflow.sources.flowapi import FlowAPISource

    url, token = settings.required_flowapi
    return FlowAPISource(
        url, token, ssl_certificate=settings.ssl_certificate_file, cdr_types=cdr_types
    )


def _directory_source(
    spec: SourceSpec, *, settings: Settings, inputs_dir: Path, cdr_types: tuple[str, ...] | None
) -> DateSource:
    from autoflow.sources.directory import DirectorySource

    if not spec.pattern:
        where = f"{spec.position}: " if spec.position else ""
        raise DateSourceError(
            f"{where}a 'directory' source needs a 'pattern', e.g. 'data/calls_{{date:%Y-%m-%d}}.csv'"
        )
    return DirectorySource(spec.pattern, inputs_dir=inputs_dir)


#: the process-wide registry :func:`make_source` uses
source_registry = SourceRegistry()
source_registry.register("flowapi", _flowapi_source)
source_registry.register("directory", _directory_source)


def make_source(
    spec: SourceSpec,
    *,
    settings: Settings,
    inputs_dir: Path,
    cdr_types: tuple[str, ...] | None,
) -> DateSource:
    """Build the date source ``spec`` describes (SettingsError if e.g. FLOWAPI_URL is unset)."""
    factory = source_registry.get(spec.type)
    return factory(spec, settings=settings, inputs_dir=inputs_dir, cdr_types=cdr_types)


def union_of_dates(available: Mapping[str, Iterable[date]]) -> frozenset[date]:
    """Every date available for at least one data type."""
    return frozenset(d for dates in available.values() for d in dates)
