"""The values injected into a notebook and the names of its executed copies (pure)."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autoflow.errors import UsageError
from autoflow.parameters import params_hash, to_json_safe
from autoflow.spec.models import NotebookSpec

__all__ = ["build_parameters", "output_stem"]

def build_parameters(
    notebook: NotebookSpec,
    *,
    workflow_parameters: Mapping[str, Any],
    reference_date: dt.date,
    date_ranges: Sequence[tuple[dt.date, dt.date]],
    flowapi_url: str | None,
    upstream_paths: Mapping[str, Path],
) -> dict[str, Any]:
    """The JSON-safe values to inject into ``notebook``, one per entry of its ``parameters``.

    Each reference is, in this order: an upstream notebook's label (its executed path, absolute),
    ``reference_date`` (ISO string), ``date_ranges`` (``[[start, end], ...]`` ISO strings),
    ``flowapi_url``, or a workflow parameter (made JSON-safe). Raises :class:`UsageError` for a
    reference that is none of these.
    """
    automatic: dict[str, Any] = {
        "reference_date": reference_date.isoformat(),
        "date_ranges": [[start.isoformat(), end.isoformat()] for start, end in date_ranges],
        "flowapi_url": flowapi_url,
    }
    values: dict[str, Any] = {}
    for name, ref in notebook.parameters.items():
        if ref in upstream_paths:
            values[name] = str(Path(upstream_paths[ref]).absolute())
        elif ref in automatic:
            values[name] = automatic[ref]
        elif ref in workflow_parameters:
            try:
                values[name] = to_json_safe(workflow_parameters[ref])
            except TypeError as exc:
                raise UsageError(
                    f"workflow parameter {ref!r} (for {name!r} of notebook {notebook.label!r}) "
                    f"cannot be passed to a notebook: {exc}; use text, numbers, dates, lists or mappings"
                ) from None
        else:
            raise UsageError(
                f"notebook {notebook.label!r} needs {ref!r} for its parameter {name!r}, but no value "
                f"was given; add {ref!r} to the workflow's parameters"
            )
    return values


def _filename_part(text: str, *, limit: int = 80) -> str:
    """``text`` as a safe piece of a file name: ASCII letters, digits, ``.``, ``-``, single ``_``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text)
    safe = re.sub(r"_{2,}", "_", safe).strip("-._")
    return safe[:limit].rstrip("-._") or "x"


def output_stem(
    notebook_filename: str,
    workflow: str,
    reference_date: dt.date,
    parameters: Mapping[str, Any],
    started_at: dt.datetime,
) -> str:
    """``<notebook>__<workflow>__<YYYY-MM-DD>__<params hash[:8]>__<UTC time>`` for an output file.

    Both names are made filename-safe (and never contain ``__``, the field separator).
    ``started_at`` must be timezone-aware; it is written in UTC with microseconds.
    """
    if started_at.tzinfo is None or started_at.utcoffset() is None:
        raise ValueError("started_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
    stamp = started_at.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return "__".join(
        (
            _filename_part(Path(notebook_filename).stem),
            _filename_part(workflow),
            reference_date.isoformat(),
            params_hash(parameters)[:8],
            stamp,
        )
    )

