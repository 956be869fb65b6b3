"""Reading workflows.yml with ruamel.yaml, keeping the position of every node.

Only this module knows ruamel.yaml's types: it hands the loader plain Python values through
:class:`Node` views that answer "where is this?" for any key or item.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, MappingEndEvent, MappingStartEvent, ScalarEvent, SequenceEndEvent, SequenceStartEvent
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.scalarbool import ScalarBoolean

from autoflow.errors import Position, Problem

#: workflows.yml is a small hand-written file; anything bigger is a mistake (or an attack)
MAX_FILE_BYTES = 1_000_000
#: how deeply mappings and lists may nest
MAX_DEPTH = 50
#: scalar/collection nodes one value may expand to (guards against YAML alias "bombs")
MAX_VALUE_NODES = 100_000
#: values (scalars, lists, mappings, aliases) the file may hold: parsing one takes ~0.2 ms
MAX_NODES = 20_000


class InvalidDate(str):
    """A scalar shaped like a date that is not one (``2016-13-01``); validators reject it."""


class _Constructor(RoundTripConstructor):
    """ruamel's round-trip constructor, but an impossible date doesn't abort the whole parse."""

    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        try:
            return super().construct_yaml_timestamp(node, values)
        except ValueError:
            return InvalidDate(node.value)


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


class YAMLFileError(Exception):
    """The file could not be parsed at all; carries one :class:`Problem`."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(str(problem))


@dataclass(frozen=True)
class Node:
    """A YAML value plus where it stands in the file (``pos`` is its first character)."""

    value: Any
    pos: Position

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.value, CommentedMap)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.value, CommentedSeq)

    def key_pos(self, key: Any) -> Position:
        """Position of ``key`` in this mapping."""
        line, col = self.value.lc.key(key)
        return Position(self.pos.file, line + 1, col + 1)

    def child(self, key: Any) -> Node:
        """The value at ``key`` (a mapping key or a sequence index), with its position."""
        container = self.value
        item = container[key]
        if isinstance(item, (CommentedMap, CommentedSeq)):
            line, col = item.lc.line, item.lc.col
        elif isinstance(container, CommentedMap):
            line, col = container.lc.value(key)
        else:
            line, col = container.lc.item(key)
        return Node(item, Position(self.pos.file, line + 1, col + 1))

    def items(self) -> Iterator[tuple[Any, Node]]:
        for key in self.value:
            yield key, self.child(key)

    def elements(self) -> Iterator[Node]:
        for index in range(len(self.value)):
            yield self.child(index)


def type_name(value: Any) -> str:
    """How a YAML value's type reads in an error message."""
    if value is None:
        return "null"
    if isinstance(value, InvalidDate):
        return f"'{value}', which is not a valid date"
    if isinstance(value, (bool, ScalarBoolean)):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dt.datetime):
        return "a date and time"
    if isinstance(value, dt.date):
        return "a date"
    if isinstance(value, CommentedMap):
        return "a mapping"
    if isinstance(value, CommentedSeq):
        return "a list"
    return f"an unsupported YAML value ({type(value).__name__})"


def to_plain(value: Any, budget: list[int] | None = None) -> Any:
    """``value`` as plain Python (dict, list, str, int, float, bool, None, date, datetime).

    Raises ``TypeError`` for YAML values AutoFlow can't use (binary, sets, custom tags) and
    ``ValueError`` when aliases expand it beyond :data:`MAX_VALUE_NODES`.
    """
    budget = budget if budget is not None else [MAX_VALUE_NODES]
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"expands to more than {MAX_VALUE_NODES} values (YAML aliases?)")
    if isinstance(value, CommentedMap):
        return {to_plain(k, budget): to_plain(v, budget) for k, v in value.items()}
    if isinstance(value, CommentedSeq):
        return [to_plain(v, budget) for v in value]
    if value is None or isinstance(value, dt.date):  # dates and datetimes stay as they are
        return value
    if isinstance(value, (bool, ScalarBoolean)):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str) and not isinstance(value, InvalidDate):
        return str(value)
    raise TypeError(type_name(value))


def _position_of_byte(data: bytes, offset: int, file: str) -> Position:
    before = data[:offset]
    line = before.count(b"\n") + 1
    col = offset - (before.rfind(b"\n") + 1) + 1
    return Position(file, line, col)


def _position_of_character(text: str, index: int, file: str) -> Position:
    before = text[:index]
    return Position(file, before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1)


def _codepoint(character: int | str) -> str:
    return f"U+{character if isinstance(character, int) else ord(character[:1] or ' '):04X}"


def _check_shape(yaml: YAML, text: str, file: str) -> None:
    """Reject absurd nesting or size from the event stream, before the (recursive, slow) constructor sees it."""
    depth = nodes = 0
    for event in yaml.parse(text):
        if isinstance(event, (ScalarEvent, AliasEvent, MappingStartEvent, SequenceStartEvent)):
            nodes += 1
            if nodes > MAX_NODES:
                mark = event.start_mark
                message = f"the file holds more than {MAX_NODES} values; workflows.yml needs far fewer — is this the right file?"
                raise YAMLFileError(Problem(Position(file, mark.line + 1, mark.column + 1), message))
        if isinstance(event, (MappingStartEvent, SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                raise YAMLFileError(
                    Problem(Position(file, mark.line + 1, mark.column + 1), f"YAML is nested more than {MAX_DEPTH} levels deep; workflows.yml needs far fewer")
                )
        elif isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            depth -= 1


def check_size(size: int, file: str) -> None:
    """Raise :class:`YAMLFileError` if a file of ``size`` bytes is too big to be a workflows.yml."""
    if size > MAX_FILE_BYTES:
        raise YAMLFileError(
            Problem(
                Position(file, 1, 1),
                f"the file is {size / 1e6:.1f} MB; workflows.yml may be at most "
                f"{MAX_FILE_BYTES / 1e6:.0f} MB — is this the right file?",
            )
        )


def parse(data: bytes, file: str) -> Node | None:
    """Parse YAML ``data``; ``None`` for an empty document. Raises :class:`YAMLFileError`."""
    check_size(len(data), file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YAMLFileError(
            Problem(
                _position_of_byte(data, exc.start, file),
                f"byte 0x{data[exc.start]:02x} is not valid UTF-8: save the file as UTF-8",
            )
        ) from None
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    try:
        _check_shape(yaml, text, file)
        document = yaml.load(text)
    except ReaderError as exc:  # a character YAML does not allow (NUL, most control characters)
        raise YAMLFileError(
            Problem(_position_of_character(text, exc.position, file), f"character {_codepoint(exc.character)} is not allowed in YAML; remove it")
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        if "duplicate key" in problem:
            problem += "; each key may appear once in a mapping"
        elif "found character '\\t'" in problem:  # ruamel's scanner meets a tab where YAML forbids one
            problem = "a tab character here; indent with spaces, not tabs (YAML does not allow tabs for indentation)"
        raise YAMLFileError(Problem(Position(file, line, col), f"YAML syntax error: {problem}")) from None
    except RecursionError:
        raise YAMLFileError(
            Problem(Position(file, 1, 1), "YAML is nested too deeply to be a workflows.yml")
        ) from None
    except (YAMLError, ValueError, TypeError, OverflowError) as exc:
        message = " ".join(str(exc).split())
        raise YAMLFileError(Problem(Position(file, 1, 1), f"YAML error: {message}")) from None
    if document is None:
        return None
    if isinstance(document, (CommentedMap, CommentedSeq)):
        return Node(document, Position(file, document.lc.line + 1, document.lc.col + 1))
    return Node(document, Position(file, 1, 1))
