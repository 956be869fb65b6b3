"""DirectorySource and check_pattern, against real files in a temporary directory."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from autoflow.errors import DateSourceError
from autoflow.sources import DateSource, SourceContext, make_source, union_of_dates
from autoflow.sources.directory import FILES_KEY, DirectorySource, check_pattern
from autoflow.settings import Settings
from autoflow.spec.models import SourceSpec


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


def dates_of(pattern: str, inputs: Path) -> list[date]:
    return DirectorySource(pattern, inputs_dir=inputs).available_dates()[FILES_KEY]


def test_flat_pattern_finds_dates_with_gaps_sorted(tmp_path: Path) -> None:
    touch(tmp_path, "data/calls_2016-01-03.csv", "data/calls_2016-01-01.csv", "data/calls_2016-01-05.csv")

    assert dates_of("data/calls_{date:%Y-%m-%d}.csv", tmp_path) == [
        date(2016, 1, 1), date(2016, 1, 3), date(2016, 1, 5)
    ]


def test_files_that_do_not_parse_are_ignored(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "data/calls_2016-01-02.csv",
        "data/calls_2016-02-30.csv",  # no such day
        "data/calls_2016-1-4.csv",  # not what %m-%d writes
        "data/calls_backup.csv",
        "data/calls_2016-01-06.csv.bak",
        "data/sms_2016-01-07.csv",
        "data/calls_2016-01-08.csvx",
    )

    assert dates_of("data/calls_{date:%Y-%m-%d}.csv", tmp_path) == [date(2016, 1, 2)]


def test_date_parts_may_span_directories(tmp_path: Path) -> None:
    touch(
        tmp_path,
        "data/2016/01/31/calls.csv",
        "data/2016/02/01/calls.csv",
        "data/2016/02/02/sms.csv",  # another file name: not a calls date
        "data/2016/02/calls.csv",  # too shallow
        "data/2016/02/03/extra/calls.csv",  # too deep
    )

    assert dates_of("data/{date:%Y/%m/%d}/calls.csv", tmp_path) == [date(2016, 1, 31), date(2016, 2, 1)]


def test_day_of_year_and_two_digit_year(tmp_path: Path) -> None:
    touch(tmp_path, "d/16-001.txt", "d/16-060.txt", "d/16-367.txt")

    # 2016 is a leap year: day 60 is 29 February; day 367 does not exist
    assert dates_of("d/{date:%y-%j}.txt", tmp_path) == [date(2016, 1, 1), date(2016, 2, 29)]


def test_repeated_directives_must_agree(tmp_path: Path) -> None:
    touch(tmp_path, "d/2016/2016-03-01.csv", "d/2015/2016-03-02.csv")

    assert dates_of("d/{date:%Y/%Y-%m-%d}.csv", tmp_path) == [date(2016, 3, 1)]


def test_month_names_must_be_spelled_as_strftime_writes_them(tmp_path: Path) -> None:
    touch(tmp_path, "d/01-Jan-2016.csv", "d/02-jan-2016.csv", "d/03-Feb-2016.csv")

    assert dates_of("d/{date:%d-%b-%Y}.csv", tmp_path) == [date(2016, 1, 1), date(2016, 2, 3)]


def test_glob_characters_in_the_pattern_are_literal(tmp_path: Path) -> None:
    touch(tmp_path, "d[1]/x_20160101*.csv", "d1/x_20160102*.csv", "d[1]/x_20160103-.csv")

    assert dates_of("d[1]/x_{date:%Y%m%d}*.csv", tmp_path) == [date(2016, 1, 1)]


def test_absolute_pattern_ignores_inputs_dir(tmp_path: Path) -> None:
    touch(tmp_path, "elsewhere/2016-01-09.csv")
    pattern = f"{tmp_path}/elsewhere/{{date:%Y-%m-%d}}.csv"

    assert dates_of(pattern, tmp_path / "inputs-that-do-not-exist") == [date(2016, 1, 9)]


def test_existing_empty_directory_gives_no_dates(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()

    assert DirectorySource("data/{date:%Y-%m-%d}.csv", inputs_dir=tmp_path).available_dates() == {FILES_KEY: []}


def test_missing_base_directory_is_a_date_source_error_naming_it(tmp_path: Path) -> None:
    source = DirectorySource("missing/calls_{date:%Y-%m-%d}.csv", inputs_dir=tmp_path)

    with pytest.raises(DateSourceError) as err:
        source.available_dates()
    message = str(err.value)
    assert str(tmp_path / "missing") in message
    assert "\n" not in message


def test_files_appearing_later_are_found_on_the_next_call(tmp_path: Path) -> None:
    touch(tmp_path, "d/2016-01-01.csv")
    source = DirectorySource("d/{date:%Y-%m-%d}.csv", inputs_dir=tmp_path)
    assert source.available_dates()[FILES_KEY] == [date(2016, 1, 1)]

    touch(tmp_path, "d/2016-01-02.csv")

    assert source.available_dates()[FILES_KEY] == [date(2016, 1, 1), date(2016, 1, 2)]


def test_invalid_pattern_is_rejected_at_construction(tmp_path: Path) -> None:
    with pytest.raises(DateSourceError, match="does not determine a date"):
        DirectorySource("d/{date:%Y-%m}.csv", inputs_dir=tmp_path)


def test_describe_names_the_full_pattern(tmp_path: Path) -> None:
    source = DirectorySource("d/{date:%Y-%m-%d}.csv", inputs_dir=tmp_path)

    assert isinstance(source, DateSource)
    assert source.describe() == f"files matching {tmp_path}/d/{{date:%Y-%m-%d}}.csv"


def test_make_source_builds_a_directory_source_relative_to_inputs(tmp_path: Path) -> None:
    touch(tmp_path, "d/2016-01-04.csv")
    source = make_source(SourceSpec(type="directory", options={"pattern": "d/{date:%Y-%m-%d}.csv"}), SourceContext(Settings(), tmp_path))

    available = source.available_dates()

    assert available == {FILES_KEY: [date(2016, 1, 4)]}
    assert union_of_dates(available) == frozenset({date(2016, 1, 4)})


def test_make_source_rejects_an_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(DateSourceError, match="unknown date source type 'ftp'.*directory.*flowapi"):
        make_source(SourceSpec(type="ftp"), SourceContext(Settings(), tmp_path))


def test_union_of_dates_merges_types() -> None:
    available = {"calls": [date(2016, 1, 1), date(2016, 1, 2)], "sms": [date(2016, 1, 2), date(2016, 1, 3)]}

    assert union_of_dates(available) == {date(2016, 1, 1), date(2016, 1, 2), date(2016, 1, 3)}
    assert union_of_dates({}) == frozenset()


@pytest.mark.parametrize(
    "pattern",
    [
        "data/calls_{date:%Y-%m-%d}.csv",
        "data/{date:%Y/%m/%d}/calls.csv",
        "/abs/{date:%Y%j}.parquet",
        "{date:%d %B %y}.txt",
        "d/{date:%a %d %b %Y}.csv",
        "d/{date:%Y/%Y-%m-%d}.csv",
        "d/{date:%Y-%m-%d}_100%%.csv",
        "d/100%_{date:%Y-%m-%d}.csv",  # a percent sign outside the field is plain text
    ],
)
def test_check_pattern_accepts(pattern: str) -> None:
    assert check_pattern(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("", "empty"),
        ("data/calls.csv", "needs one {date:FORMAT} field"),
        ("data/{date}.csv", "needs one {date:FORMAT} field"),
        ("data/{day:%Y-%m-%d}.csv", "needs one {date:FORMAT} field"),
        ("{date:%Y}/{date:%m-%d}.csv", "has 2 {date:...} fields"),
        ("data/{x}/{date:%Y-%m-%d}.csv", "braces outside"),
        ("data/{date:%Y-%m-%d}}.csv", "braces outside"),
        ("data/{date:}.csv", "no format"),
        ("data/{date:%Y-%m-%d %H}.csv", "unsupported directive '%H'"),
        ("data/{date:%Y-%m-%d%}.csv", "lone '%'"),
        ("data/{date:%Y-%m}.csv", "does not determine a date"),
        ("data/{date:%m-%d}.csv", "does not determine a date"),
        ("data/{date:%Y-%d}.csv", "does not determine a date"),
        ("data/{date:%y}.csv", "does not determine a date"),
    ],
)
def test_check_pattern_rejects(pattern: str, expected: str) -> None:
    problem = check_pattern(pattern)

    assert problem is not None
    assert expected in problem
    assert "\n" not in problem
