"""Date stencils: the pattern of dates, relative to a reference date, that a run needs.

A stencil is a list whose elements are a day offset (``int``), an absolute ``date``, or a
two-element list of those: an interval inclusive of both limits. Offsets and dates can be mixed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Union

Limit = Union[int, dt.date]
Element = Union[Limit, tuple[Limit, Limit]]


class InvalidDateIntervalError(ValueError):
    """An interval whose start is after its end."""


def _check_limit(value: Any) -> Limit:
    # bool is an int subclass, and datetime a date subclass: neither is a valid limit.
    if isinstance(value, bool) or isinstance(value, dt.datetime):
        raise TypeError(f"{value!r} is neither a day offset (integer) nor a date")
    if isinstance(value, (int, dt.date)):
        return value
    raise TypeError(f"{value!r} is neither a day offset (integer) nor a date")


def _resolve(limit: Limit, reference_date: dt.date) -> dt.date:
    if isinstance(limit, int):
        return reference_date + dt.timedelta(days=limit)
    return limit


class DateStencil:
    """A validated date stencil. ``DateStencil([0])`` (the default) needs just the reference date."""

    __slots__ = ("_elements",)

    def __init__(self, raw: Iterable[Any] = (0,)) -> None:
        if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
            raise TypeError(f"a date stencil must be a list, not {type(raw).__name__}")
        elements: list[Element] = []
        for item in raw:
            if isinstance(item, (list, tuple)):
                if len(item) != 2:
                    raise ValueError(
                        f"a date interval must have exactly 2 elements (start and end), not {len(item)}: {list(item)!r}"
                    )
                start, end = _check_limit(item[0]), _check_limit(item[1])
                same_kind = isinstance(start, int) == isinstance(end, int)
                if same_kind and start > end:  # type: ignore[operator]
                    raise InvalidDateIntervalError(f"interval [{start}, {end}] starts after it ends")
                elements.append((start, end))
            else:
                elements.append(_check_limit(item))
        self._elements: tuple[Element, ...] = tuple(elements)

    @property
    def elements(self) -> tuple[Element, ...]:
        return self._elements

    def as_date_pairs(self, reference_date: dt.date) -> list[tuple[dt.date, dt.date]]:
        """Inclusive ``(start, end)`` pairs in stencil order; single elements become ``(d, d)``.

        Raises :class:`InvalidDateIntervalError` when a mixed interval resolves backwards.
        """
        pairs = []
        for element in self._elements:
            if isinstance(element, tuple):
                start, end = _resolve(element[0], reference_date), _resolve(element[1], reference_date)
                if start > end:
                    raise InvalidDateIntervalError(
                        f"interval [{element[0]}, {element[1]}] resolves to {start} .. {end} "
                        f"at reference date {reference_date}, which runs backwards"
                    )
            else:
                start = end = _resolve(element, reference_date)
            pairs.append((start, end))
        return pairs

    def as_set_of_dates(self, reference_date: dt.date) -> set[dt.date]:
        """Every date the stencil covers at ``reference_date``."""
        dates: set[dt.date] = set()
        for start, end in self.as_date_pairs(reference_date):
            dates.update(start + dt.timedelta(days=n) for n in range((end - start).days + 1))
        return dates

    def dates_are_available(self, reference_date: dt.date, available_dates: Iterable[dt.date]) -> bool:
        """True when every stencil date is in ``available_dates`` (False if an interval runs backwards)."""
        try:
            pairs = self.as_date_pairs(reference_date)
        except InvalidDateIntervalError:
            return False
        available = available_dates if isinstance(available_dates, (set, frozenset)) else set(available_dates)
        for start, end in pairs:
            day = start
            while day <= end:
                if day not in available:
                    return False
                day += dt.timedelta(days=1)
        return True

    def as_json(self) -> list[Any]:
        """The stencil in JSON form (dates as ISO strings, intervals as lists)."""
        def conv(limit: Limit) -> Any:
            return limit.isoformat() if isinstance(limit, dt.date) else limit
        return [[conv(e[0]), conv(e[1])] if isinstance(e, tuple) else conv(e) for e in self._elements]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DateStencil) and self._elements == other._elements

    def __hash__(self) -> int:
        return hash(self._elements)

    def __repr__(self) -> str:
        return f"DateStencil({self.as_json()!r})"
