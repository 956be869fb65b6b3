"""Workflow parameter values: JSON-safe forms for notebooks and a typed, canonical hash.

YAML gives parameters as str, int, float, bool, None, dates, lists and mappings. Notebooks get
them JSON-safe (dates as ISO strings). The run history identifies a run by a hash over the
*typed* values, so ``2016-01-01`` (a date) and ``"2016-01-01"`` (a string) are different runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from typing import Any

JSONValue = Any


def to_json_safe(value: Any) -> JSONValue:
    """``value`` with dates/datetimes as ISO strings and tuples as lists, ready for JSON."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{type(value).__name__} is not a supported parameter type")


def to_typed_json(value: Any) -> JSONValue:
    """A JSON form that keeps types apart: dates become ``{"$date": "..."}``."""
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, Mapping):
        return {str(k): to_typed_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_typed_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"{type(value).__name__} is not a supported parameter type")


def from_typed_json(value: JSONValue) -> Any:
    """Inverse of :func:`to_typed_json`."""
    if isinstance(value, dict):
        if len(value) == 1 and "$date" in value:
            return dt.date.fromisoformat(value["$date"])
        if len(value) == 1 and "$datetime" in value:
            return dt.datetime.fromisoformat(value["$datetime"])
        return {k: from_typed_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_typed_json(v) for v in value]
    return value


def canonical_json(parameters: Mapping[str, Any]) -> str:
    """Stable text for a parameter mapping: sorted keys, typed values, no whitespace."""
    return json.dumps(to_typed_json(parameters), sort_keys=True, separators=(",", ":"))


def params_hash(parameters: Mapping[str, Any]) -> str:
    """Hex SHA-256 of :func:`canonical_json`; identifies a parameter set in the run history."""
    return hashlib.sha256(canonical_json(parameters).encode()).hexdigest()
