"""Cron schedules: validation, the next tick (UTC), and a description in words."""

from __future__ import annotations

import datetime as dt


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
        return (
            f"schedule {expression!r} is not a valid cron expression; "
            "e.g. '0 2 * * *' runs daily at 02:00 UTC, or use null to run once"
        )
    return None


def next_tick(expression: str, after: dt.datetime) -> dt.datetime:
    """The first time strictly after ``after`` (aware) that ``expression`` fires, in UTC."""
    from croniter import croniter

    start = after.astimezone(dt.timezone.utc)
    result: dt.datetime = croniter(expression, start).get_next(dt.datetime)
    return result.astimezone(dt.timezone.utc)


def describe(expression: str | None) -> str:
    """'every day at 02:00 (UTC)'-style text; 'once, then exit' for a null schedule."""
    if expression is None:
        return "once, then exit (schedule: null)"
    try:
        from cron_descriptor import ExpressionDescriptor, Options

        options = Options()
        options.use_24hour_time_format = True
        words = ExpressionDescriptor(expression, options).get_description()
    except Exception:  # the description is a nicety; the cron itself was validated
        words = expression
    return f"{words[0].lower()}{words[1:]} (UTC)" if words else expression
