"""Available dates from a directory of dated files, e.g. ``data/calls_{date:%Y-%m-%d}.csv``.

A pattern is a path with one ``{date:FORMAT}`` field whose FORMAT uses strftime directives; the
field may span directories (``data/{date:%Y/%m/%d}/calls.csv``). A date is available when the
path the pattern gives for it exists, spelled exactly as ``date.strftime(FORMAT)`` writes it.
Files are found with one glob built from the pattern, then a regex and strptime confirm each name.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from autoflow.errors import DateSourceError

__all__ = ["FILES_KEY", "SUPPORTED_DIRECTIVES", "DirectorySource", "check_pattern"]

#: the one data type a directory source reports
FILES_KEY = "files"

#: directive -> regex for what strftime writes for it
SUPPORTED_DIRECTIVES: dict[str, str] = {
    "Y": r"\d{4}",
    "y": r"\d{2}",
    "m": r"\d{2}",
    "d": r"\d{2}",
    "j": r"\d{3}",
    "b": r"[^\W\d_]+",
    "B": r"[^\W\d_]+",
    "a": r"[^\W\d_]+",
    "A": r"[^\W\d_]+",
}
_FIELD = re.compile(r"\{date:([^{}]*)\}")
_EXAMPLE = "e.g. 'data/calls_{date:%Y-%m-%d}.csv'"

#: a parsed FORMAT: literal text, or a directive letter
_Token = tuple[str, str]  # ("lit", text) | ("dir", letter)


def _tokenize(fmt: str) -> list[_Token]:
    """FORMAT as literals and directives; ValueError naming the first unsupported directive."""
    tokens: list[_Token] = []
    literal = ""
    i = 0
    while i < len(fmt):
        char = fmt[i]
        if char != "%":
            literal += char
            i += 1
            continue
        if i + 1 == len(fmt):
            raise ValueError("the {date:...} format ends with a lone '%'; write '%%' for a percent sign")
        letter = fmt[i + 1]
        i += 2
        if letter == "%":
            literal += "%"
            continue
        if letter not in SUPPORTED_DIRECTIVES:
            supported = " ".join(f"%{d}" for d in SUPPORTED_DIRECTIVES)
            raise ValueError(f"unsupported directive '%{letter}' in the {{date:...}} field; use {supported}")
        if literal:
            tokens.append(("lit", literal))
            literal = ""
        tokens.append(("dir", letter))
    if literal:
        tokens.append(("lit", literal))
    return tokens


def check_pattern(pattern: str) -> str | None:
    """What is wrong with a directory source pattern, as one line; None if it is usable."""
    if not pattern.strip():
        return f"the pattern is empty; give a path with one {{date:FORMAT}} field, {_EXAMPLE}"
    fields = list(_FIELD.finditer(pattern))
    if not fields:
        return f"the pattern needs one {{date:FORMAT}} field, {_EXAMPLE}"
    if len(fields) > 1:
        return (
            f"the pattern has {len(fields)} {{date:...}} fields; use exactly one "
            "(it may span directories, e.g. 'data/{date:%Y/%m/%d}/calls.csv')"
        )
    field = fields[0]
    rest = pattern[: field.start()] + pattern[field.end():]
    if "{" in rest or "}" in rest:
        return "the pattern has braces outside its {date:...} field; only one {date:FORMAT} field is allowed"
    fmt = field.group(1)
    if not fmt:
        return f"the {{date:...}} field has no format, {_EXAMPLE}"
    try:
        letters = {value for kind, value in _tokenize(fmt) if kind == "dir"}
    except ValueError as exc:
        return str(exc)
    has_year = bool(letters & {"Y", "y"})
    has_month_day = bool(letters & {"m", "b", "B"}) and "d" in letters
    if not (has_year and (has_month_day or "j" in letters)):
        return (
            f"the format {fmt!r} does not determine a date; it needs a year (%Y or %y) and "
            "either a month and day (%m/%b/%B and %d) or a day of the year (%j)"
        )
    return None


@dataclass(frozen=True)
class _CompiledPattern:
    base: Path
    glob: str
    regex: re.Pattern[str]
    fmt: str
    #: the distinct directives, in order, for strptime
    letters: tuple[str, ...]


def _compile(full_pattern: str) -> _CompiledPattern:
    field = _FIELD.search(full_pattern)
    assert field is not None  # check_pattern ran first
    prefix, fmt, suffix = full_pattern[: field.start()], field.group(1), full_pattern[field.end():]
    slash = prefix.rfind("/")
    base, rel_prefix = (prefix[:slash] or "/", prefix[slash + 1:]) if slash >= 0 else (".", prefix)

    glob_parts = [glob.escape(rel_prefix)]
    regex_parts = [re.escape(rel_prefix), "(?P<field>"]
    letters: list[str] = []
    for kind, value in _tokenize(fmt):
        if kind == "lit":
            glob_parts.append(glob.escape(value))
            regex_parts.append(re.escape(value))
        elif value in letters:
            glob_parts.append("*")
            regex_parts.append(f"(?P=d_{value})")
        else:
            letters.append(value)
            glob_parts.append("*")
            regex_parts.append(f"(?P<d_{value}>{SUPPORTED_DIRECTIVES[value]})")
    glob_parts.append(glob.escape(suffix))
    regex_parts += [")", re.escape(suffix)]
    return _CompiledPattern(
        base=Path(base),
        glob="".join(glob_parts),
        regex=re.compile("".join(regex_parts)),
        fmt=fmt,
        letters=tuple(letters),
    )


class DirectorySource:
    """The dates whose files exist, under the single data type :data:`FILES_KEY`."""

    def __init__(self, pattern: str, *, inputs_dir: Path) -> None:
        problem = check_pattern(pattern)
        if problem:
            raise DateSourceError(f"directory source pattern {pattern!r}: {problem}")
        self.pattern = pattern
        full = pattern if os.path.isabs(pattern) else f"{str(inputs_dir).rstrip('/')}/{pattern}"
        self.full_pattern = full
        self._compiled = _compile(full)

    def describe(self) -> str:
        return f"files matching {self.full_pattern}"

    def __repr__(self) -> str:
        return f"DirectorySource({self.full_pattern!r})"

    def available_dates(self) -> dict[str, list[date]]:
        """``{"files": sorted dates whose files exist}``; DateSourceError if the base directory is missing."""
        compiled = self._compiled
        if not compiled.base.is_dir():
            raise DateSourceError(
                f"the data directory {compiled.base} does not exist: check the directory source "
                f"pattern {self.pattern!r} and that the data is mounted there"
            )
        found: set[date] = set()
        for name in glob.glob(compiled.glob, root_dir=compiled.base):
            day = self._date_of(name.replace(os.sep, "/"))
            if day is not None:
                found.add(day)
        return {FILES_KEY: sorted(found)}

    def _date_of(self, relative_path: str) -> date | None:
        compiled = self._compiled
        match = compiled.regex.fullmatch(relative_path)
        if match is None:
            return None
        values = " ".join(match.group(f"d_{letter}") for letter in compiled.letters)
        directives = " ".join(f"%{letter}" for letter in compiled.letters)
        try:
            day = datetime.strptime(values, directives).date()
        except ValueError:
            return None
        # only the exact spelling strftime gives counts (no "jan" for "Jan", no weekday mismatch)
        return day if day.strftime(compiled.fmt) == match.group("field") else None
