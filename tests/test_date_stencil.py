import datetime as dt

import pytest

from autoflow import DateStencil, InvalidDateIntervalError

D = dt.date


def test_readme_example() -> None:
    stencil = DateStencil([[D(2016, 1, 1), D(2016, 1, 3)], -3, [-2, 0]])
    pairs = stencil.as_date_pairs(D(2016, 1, 7))
    assert [[a.isoformat(), b.isoformat()] for a, b in pairs] == [
        ["2016-01-01", "2016-01-03"],
        ["2016-01-04", "2016-01-04"],
        ["2016-01-05", "2016-01-07"],
    ]


def test_default_is_the_reference_date() -> None:
    assert DateStencil().as_date_pairs(D(2020, 5, 5)) == [(D(2020, 5, 5), D(2020, 5, 5))]
    assert DateStencil() == DateStencil([0])


def test_set_of_dates_intervals_are_inclusive() -> None:
    stencil = DateStencil([[-2, 0], D(2016, 1, 1)])
    assert stencil.as_set_of_dates(D(2016, 1, 10)) == {D(2016, 1, 8), D(2016, 1, 9), D(2016, 1, 10), D(2016, 1, 1)}


def test_mixed_interval() -> None:
    stencil = DateStencil([[D(2016, 1, 1), -3]])
    assert stencil.as_date_pairs(D(2016, 1, 7)) == [(D(2016, 1, 1), D(2016, 1, 4))]


def test_mixed_interval_backwards_at_some_reference_dates() -> None:
    stencil = DateStencil([[D(2016, 1, 5), -1]])
    assert stencil.as_date_pairs(D(2016, 1, 6)) == [(D(2016, 1, 5), D(2016, 1, 5))]
    with pytest.raises(InvalidDateIntervalError):
        stencil.as_date_pairs(D(2016, 1, 5))
    assert stencil.dates_are_available(D(2016, 1, 5), {D(2016, 1, 4), D(2016, 1, 5)}) is False


def test_mixed_interval_other_way_round() -> None:
    stencil = DateStencil([[-1, D(2016, 1, 10)]])
    assert stencil.as_set_of_dates(D(2016, 1, 9)) == {D(2016, 1, 8), D(2016, 1, 9), D(2016, 1, 10)}
    with pytest.raises(InvalidDateIntervalError):
        stencil.as_date_pairs(D(2016, 1, 12))


def test_leap_day_and_year_boundary() -> None:
    stencil = DateStencil([[-1, 0]])
    assert stencil.as_date_pairs(D(2016, 3, 1)) == [(D(2016, 2, 29), D(2016, 3, 1))]
    assert stencil.as_set_of_dates(D(2017, 1, 1)) == {D(2016, 12, 31), D(2017, 1, 1)}
    assert DateStencil([-366]).as_date_pairs(D(2017, 1, 1)) == [(D(2016, 1, 1), D(2016, 1, 1))]


def test_dates_are_available() -> None:
    stencil = DateStencil([[-2, 0]])
    available = {D(2016, 1, 1), D(2016, 1, 2), D(2016, 1, 3), D(2016, 1, 5)}
    assert stencil.dates_are_available(D(2016, 1, 3), available)
    assert not stencil.dates_are_available(D(2016, 1, 5), available)
    assert stencil.dates_are_available(D(2016, 1, 3), sorted(available))  # any iterable


@pytest.mark.parametrize("raw", [["1"], [1.5], [None], [True], [[0, False]], [dt.datetime(2016, 1, 1)]])
def test_type_errors(raw: list) -> None:
    with pytest.raises(TypeError):
        DateStencil(raw)


@pytest.mark.parametrize("raw", ["0", 0, None, {"a": 1}])
def test_not_a_list(raw: object) -> None:
    with pytest.raises(TypeError):
        DateStencil(raw)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [[[1]], [[1, 2, 3]], [[]]])
def test_interval_length(raw: list) -> None:
    with pytest.raises(ValueError) as info:
        DateStencil(raw)
    assert not isinstance(info.value, InvalidDateIntervalError)


@pytest.mark.parametrize("raw", [[[0, -1]], [[D(2016, 1, 2), D(2016, 1, 1)]]])
def test_backwards_interval(raw: list) -> None:
    with pytest.raises(InvalidDateIntervalError):
        DateStencil(raw)


def test_equality_and_hash() -> None:
    assert DateStencil([[-1, 0], 3]) == DateStencil([(-1, 0), 3])
    assert DateStencil([1]) != DateStencil([2])
    assert len({DateStencil([1]), DateStencil([1])}) == 1
    assert DateStencil([D(2016, 1, 1), [-1, 0]]).as_json() == ["2016-01-01", [-1, 0]]
