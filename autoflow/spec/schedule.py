"""Cron schedules: validation, the next tick (UTC), and a description in words."""

from __future__ import annotations

import datetime as dt
import re

#: the five cron fields: name, lowest and highest value (croniter reads day-of-week 7 as Sunday)
FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
#: croniter's nicknames, as the five fields they stand for
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_EXAMPLE = "e.g. '0 2 * * *' runs daily at 02:00 UTC, or use null to run once"


def _out_of_range(expression: str) -> str | None:
    """'hour 25 is out of range 0-23' for the first number outside its field's range, or None."""
    for text, (name, low, high) in zip(expression.split(), FIELDS):
        for part in text.split(","):
            for number in re.findall(r"\d+", part.split("/", 1)[0]):
                if not low <= int(number) <= high:
                    return f"{name} {int(number)} is out of range {low}-{high}"
    return None


def cron_problem(expression: str) -> str | None:
    """Why ``expression`` is not a usable cron schedule, or None when it is."""
    from croniter import croniter

    fields = expression.split()
    if not expression.startswith("@") and len(fields) != 5:
        return (
            f"schedule {expression!r} has {len(fields)} fields; a cron schedule has 5 "
            "(minute hour day-of-month month day-of-week), e.g. '0 2 * * *' for 02:00 UTC daily, "
            "or use null to run once"
        )
    if not croniter.is_valid(expression):
        if expression.startswith("@"):
            return (
                f"schedule {expression!r} is not supported; use one of {', '.join(NICKNAMES)}, "
                f"or five cron fields ({_EXAMPLE})"
            )
        out_of_range = _out_of_range(expression)
        if out_of_range:
            return f"schedule {expression!r}: {out_of_range}; {_EXAMPLE}"
        return f"schedule {expression!r} is not a valid cron expression; {_EXAMPLE}"
    return None


def next_tick(expression: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` (aware) that ``expression`` fires, in UTC."""
    from croniter import croniter

    start = after.astimezone(dt.timezone.utc)
    result: dt.datetime = croniter(expression, start).get_next(dt.datetime)
    return result.astimezone(dt.timezone.utc)


def _words(expression: str) -> str:
    """cron_descriptor's description, with daily and weekly times read as 'every day at 02:00'."""
    from cron_descriptor import ExpressionDescriptor, Options

    options = Options()
    options.use_24hour_time_format = True
    words = ExpressionDescriptor(expression, options).get_description()
    days = expression.split()[2:]
    if days == ["*", "*", "*"] and words.startswith("At "):
        return f"every day at {words[3:]}"
    weekly = re.fullmatch(r"At (\d\d:\d\d), only on (\w+)", words)
    if weekly and days[:2] == ["*", "*"]:
        return f"every {weekly[2]} at {weekly[1]}"
    monthly = re.fullmatch(r"At (\d\d:\d\d), on day (\d+) of the month(?:, only in (\w+))?", words)
    if monthly and days[2] == "*":
        every = f"year on {monthly[2]} {monthly[3]}" if monthly[3] else f"month on day {monthly[2]}"
        return f"every {every} at {monthly[1]}"
    return f"{words[0].lower()}{words[1:]}" if words else expression


def describe(expression: str | None) -> str:
    """'every day at 02:00 (UTC)'-style text; 'once, then exit' for a null schedule."""
    if expression is None:
        return "once, then exit (schedule: null)"
    try:
        words = _words(NICKNAMES.get(expression.strip().lower(), expression))
    except Exception:  # the description is a nicety; the cron itself was validated
        words = expression
    return f"{words} (UTC)"
