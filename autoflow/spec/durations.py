"""Durations in workflows.yml: a number of seconds, or a number with a unit (``30s``, ``10m``,
``2h``, ``1d``, ``2 days``, ``90 minutes``)."""

from __future__ import annotations

import re

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
EXAMPLES = "a number of seconds or a duration such as 30s, 10m, 2h, 1d or '2 days'"


def parse_duration(value: object) -> float:
    """Seconds in ``value``; ValueError (saying what is accepted) for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"must be {EXAMPLES}, not {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"must be 0 or more, not {value!r}")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value.lower())
        if match and (match.group(2) in _UNITS or match.group(2) == ""):
            return float(match.group(1)) * _UNITS.get(match.group(2), 1)
    raise ValueError(f"must be {EXAMPLES}, not {value!r}")


def describe_duration(seconds: float) -> str:
    """``seconds`` for people: ``10 min``, ``2 h``, ``1 day``, ``1 h 30 min``, ``45 s``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    parts = []
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''}")
    if seconds:
        parts.append(f"{seconds} s")
    return " ".join(parts[:2])
