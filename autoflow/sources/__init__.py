"""Date sources: where the sensor learns which dates of data exist.

A source is chosen by ``type`` in a ``source:`` block of workflows.yml. Each type is one
:class:`~autoflow.sources.base.SourceType` in the registry: its keys, its checks (reported with
``workflows.yml:LINE:COL`` by the loader), its description and its factory. The built-ins
(``flowapi``, ``directory``, ``sql``, ``workflow``) register exactly as a plugin would;
third-party types register through the ``autoflow.date_sources`` entry-point group, each entry
point naming a ``SourceType`` (its ``name`` is the ``type:`` users write).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import date
from importlib.metadata import entry_points
from typing import Any

from autoflow.errors import DateSourceError
from autoflow.settings import Settings
from autoflow.sources.base import CheckContext, DateSource, SourceContext, SourceSpec, SourceType

__all__ = [
    "CDR_TYPES",
    "DateSource",
    "SourceContext",
    "SourceRegistry",
    "SourceSpec",
    "SourceType",
    "make_source",
    "source_registry",
    "union_of_dates",
]

ENTRY_POINT_GROUP = "autoflow.date_sources"

logger = logging.getLogger(__name__)


class SourceRegistry:
    """Source ``type`` name -> :class:`SourceType`. Entry points are loaded the first time a name is missing."""

    def __init__(self, entry_point_group: str | None = ENTRY_POINT_GROUP) -> None:
        self._types: dict[str, SourceType] = {}
        self._entry_point_group = entry_point_group
        self._entry_points_loaded = entry_point_group is None

    def register(self, source_type: SourceType) -> None:
        """Make ``type: <source_type.name>`` mean ``source_type`` (replacing any earlier one)."""
        self._types[source_type.name] = source_type

    def names(self) -> tuple[str, ...]:
        """Every registered type name, plugins included, sorted."""
        self._load_entry_points()
        return tuple(sorted(self._types))

    def find(self, name: str) -> SourceType | None:
        if name not in self._types:
            self._load_entry_points()
        return self._types.get(name)

    def get(self, name: str) -> SourceType:
        """The type called ``name``; DateSourceError listing the known types if there is none."""
        found = self.find(name)
        if found is None:
            raise DateSourceError(f"unknown date source type {name!r}: use one of {', '.join(self.names())}")
        return found

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self._entry_point_group is None:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self._entry_point_group):
            if ep.name in self._types:
                continue
            try:
                loaded = ep.load()
            except Exception as exc:  # a broken plugin must not stop the built-ins working
                logger.warning("date source plugin %r (%s) failed to load: %s: %s", ep.name, ep.value, type(exc).__name__, exc)
                continue
            if not isinstance(loaded, SourceType):
                logger.warning("date source plugin %r (%s) is a %s, not an autoflow.sources.SourceType: ignored", ep.name, ep.value, type(loaded).__name__)
                continue
            self._types[loaded.name] = loaded


# -- flowapi -------------------------------------------------------------------------------

#: the data types FlowAPI reports dates for
CDR_TYPES = ("calls", "sms", "mds", "topups")


def _quote_list(names: Iterable[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _check_flowapi(options: Mapping[str, Any], context: CheckContext) -> Mapping[str, Any] | None:
    kinds = options.get("cdr_types")
    if kinds is None:
        return {}
    if not isinstance(kinds, list) or not kinds:
        context.problem("cdr_types", f"'cdr_types' must be a non-empty list drawn from {_quote_list(CDR_TYPES)} (or omitted for all), not {_kind(kinds)}")
        return None
    chosen: list[str] = []
    ok = True
    for index, kind in enumerate(kinds):
        if kind not in CDR_TYPES:
            ok = False
            context.problem(("cdr_types", index), f"unknown CDR type {kind!r}{context.did_you_mean(str(kind), CDR_TYPES)}; use any of {_quote_list(CDR_TYPES)}")
        elif kind not in chosen:
            chosen.append(kind)
    return {"cdr_types": chosen} if ok else None


def _kind(value: Any) -> str:
    """How a plain option value's type reads in an error message."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        return "a date and time"
    if isinstance(value, dt.date):
        return "a date"
    names = {type(None): "null", str: "a string", bool: "a boolean", int: "an integer", float: "a number", dict: "a mapping", list: "a list"}
    return names.get(type(value), type(value).__name__)


def _create_flowapi(spec: SourceSpec, context: SourceContext) -> DateSource:
    # imported here: flowclient pulls in pandas, which `autoflow validate` should not pay for
    from autoflow.sources.flowapi import FlowAPISource

    url, token = context.settings.required_flowapi
    kinds = spec.get("cdr_types")
    return FlowAPISource(url, token, ssl_certificate=context.settings.ssl_certificate_file, cdr_types=tuple(kinds) if kinds else None)


def _describe_flowapi(spec: SourceSpec) -> str:
    kinds = spec.get("cdr_types")
    return f"FlowAPI ({', '.join(kinds) if kinds else 'all CDR types'})"


def _flowapi_settings(spec: SourceSpec, settings: Settings) -> None:
    settings.required_flowapi  # noqa: B018 - raises SettingsError naming FLOWAPI_URL / FLOWAPI_TOKEN


FLOWAPI = SourceType(
    name="flowapi",
    summary="dates FlowKit's FlowAPI has data for (FLOWAPI_URL, FLOWAPI_TOKEN), per CDR type",
    keys={"cdr_types": False},
    check=_check_flowapi,
    create=_create_flowapi,
    describe=_describe_flowapi,
    check_settings=_flowapi_settings,
)

# -- directory -----------------------------------------------------------------------------


def _check_directory(options: Mapping[str, Any], context: CheckContext) -> Mapping[str, Any] | None:
    from autoflow.sources.directory import check_pattern

    pattern = options["pattern"]
    if not isinstance(pattern, str):
        context.problem("pattern", f"'pattern' must be a string such as 'data/calls_{{date:%Y-%m-%d}}.csv', not {_kind(pattern)}")
        return None
    problem = check_pattern(pattern)
    if problem:
        context.problem("pattern", f"'pattern' {pattern!r}: {problem}")
        return None
    return {"pattern": pattern}


def _create_directory(spec: SourceSpec, context: SourceContext) -> DateSource:
    from autoflow.sources.directory import DirectorySource

    return DirectorySource(spec.get("pattern"), inputs_dir=context.inputs_dir)


DIRECTORY = SourceType(
    name="directory",
    summary="dates of the files matching a pattern such as 'data/calls_{date:%Y-%m-%d}.csv'",
    keys={"pattern": True},
    check=_check_directory,
    create=_create_directory,
    describe=lambda spec: f"files matching '{spec.get('pattern')}'",
    example="{type: directory, pattern: 'data/calls_{date:%Y-%m-%d}.csv'}",
)

# -- workflow ------------------------------------------------------------------------------


def _check_workflow(options: Mapping[str, Any], context: CheckContext) -> Mapping[str, Any] | None:
    name = options["workflow"]
    ok = True
    if not isinstance(name, str) or not name.strip():
        context.problem("workflow", f"'workflow' must name a workflow defined under 'workflows', not {_kind(name)}")
        ok = False
    elif name not in context.workflow_names:
        context.problem("workflow", f"'workflow' names '{name}', which is not defined{context.did_you_mean(name, context.workflow_names)}; a workflow source reads the runs of a workflow defined under 'workflows'")
        ok = False
    sets: list[dict[str, Any]] = []
    if options.get("parameters") is not None:
        given = options["parameters"]
        listed = given if isinstance(given, list) else [given]
        if not listed:
            context.problem("parameters", "'parameters' must be a mapping of parameter names to values, or a non-empty list of such mappings")
            ok = False
        for index, item in enumerate(listed):
            where: tuple[str | int, ...] = ("parameters", index) if isinstance(given, list) else ("parameters",)
            if not isinstance(item, dict) or any(not isinstance(k, str) for k in item):
                context.problem(where, f"each parameter set of a workflow source must be a mapping of parameter names to values, not {_kind(item)}")
                ok = False
            else:
                sets.append(item)
    if not ok:
        return None
    return {"workflow": name, **({"parameters": sets} if sets else {})}


def _create_workflow(spec: SourceSpec, context: SourceContext) -> DateSource:
    from autoflow.sources.workflow import WorkflowSource

    name = spec.get("workflow")
    sets = spec.get("parameters") or context.entry_parameters.get(name, ())
    return WorkflowSource(name, context.store, sets)


def _describe_workflow(spec: SourceSpec) -> str:
    sets = spec.get("parameters")
    which = f" with {len(sets)} parameter set(s)" if sets else ""
    return f"the dates '{spec.get('workflow')}' succeeded for{which}"


WORKFLOW = SourceType(
    name="workflow",
    summary="reference dates for which another workflow's run succeeded (from the run history)",
    keys={"workflow": True, "parameters": False},
    check=_check_workflow,
    create=_create_workflow,
    describe=_describe_workflow,
    upstream=lambda spec: (str(spec.get("workflow")),),
    example="{type: workflow, workflow: daily-report}",
)

# -- sql -----------------------------------------------------------------------------------


def _check_sql(options: Mapping[str, Any], context: CheckContext) -> Mapping[str, Any] | None:
    from autoflow.sources.sql import check_options

    problems = check_options(options)
    for key, message in problems:
        context.problem(key, message)
    return None if problems else dict(options)


def _sql_password(spec: SourceSpec, settings: Settings) -> Any:
    import os

    from autoflow.errors import SettingsError
    from autoflow.settings import read_secret

    name = spec.get("password_secret")
    if not name:
        return None
    secret = read_secret(name, os.environ, settings.secrets_dir)
    if secret is None:
        raise SettingsError(f"{name} is not set: the sql date source's uri needs it for '{{}}' (an environment variable or /run/secrets/{name})")
    return secret


def _create_sql(spec: SourceSpec, context: SourceContext) -> DateSource:
    from autoflow.sources.sql import SQLSource

    source: DateSource = SQLSource(
        spec.get("uri"), _sql_password(spec, context.settings),
        table=spec.get("table"), column=spec.get("column"), query=spec.get("query"), base_dir=context.inputs_dir,
    )  # fmt: skip
    return source


def _describe_sql(spec: SourceSpec) -> str:
    from autoflow.settings import mask_url

    what = f"{spec.get('table')}.{spec.get('column')}" if spec.get("table") else "a query"
    return f"SQL database {mask_url(str(spec.get('uri')))} ({what})"


SQL = SourceType(
    name="sql",
    summary="distinct dates of a table column or a read-only SELECT in PostgreSQL or a SQLite file",
    keys={"uri": True, "password_secret": False, "table": False, "column": False, "query": False},
    check=_check_sql,
    create=_create_sql,
    describe=_describe_sql,
    example="{type: sql, uri: 'postgresql://reader:{}@db:5432/cdr', password_secret: CDR_DB_PASSWORD, table: calls, column: event_date}",
    check_settings=lambda spec, settings: (_sql_password(spec, settings), None)[1],
)

#: the process-wide registry :func:`make_source` and the workflows.yml loader use
source_registry = SourceRegistry()
for _builtin in (FLOWAPI, DIRECTORY, SQL, WORKFLOW):
    source_registry.register(_builtin)


def make_source(spec: SourceSpec, context: SourceContext) -> DateSource:
    """Build the date source ``spec`` describes (SettingsError if e.g. FLOWAPI_URL is unset)."""
    return source_registry.get(spec.type).create(spec, context)


def union_of_dates(available: Mapping[str, Iterable[date]]) -> frozenset[date]:
    """Every date available for at least one data type."""
    return frozenset(d for dates in available.values() for d in dates)
