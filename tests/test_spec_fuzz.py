"""Property: whatever is done to a valid workflows.yml, only ConfigError (with positions) comes out."""

import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from autoflow.errors import ConfigError
from autoflow.spec.loader import load_config_text
from tests.configs import VALID, make_inputs

_yaml = YAML(typ="safe")
BASE = _yaml.load(VALID)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 1, 1)),
    st.sampled_from(["a.ipynb", "b.ipynb", "../x.ipynb", "/etc/passwd", "pdf", "flows", "run", "reference_date",
                     "0 2 * * *", "calls", "-1", "2016-13-01", "{}", "[", "&a", "*a", "!!binary x"]),
)
garbage = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, prefix + (i,))
    return found


def mutate(doc: Any, data: st.DataObject) -> Any:
    import copy

    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        path = data.draw(st.sampled_from(paths(doc)), label="path")
        op = data.draw(st.sampled_from(["delete", "replace", "insert"]), label="op")
        if not path:
            if op == "replace":
                doc = data.draw(garbage)
            continue
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if op == "delete":
            del parent[last]
        elif op == "replace":
            parent[last] = data.draw(garbage, label="value")
        elif isinstance(parent[last], dict):
            parent[last][data.draw(st.text(max_size=10), label="key")] = data.draw(garbage, label="value")
        elif isinstance(parent[last], list):
            parent[last].append(data.draw(garbage, label="value"))
    return doc


def dump(doc: Any) -> bytes:
    out = io.StringIO()
    YAML(typ="safe").dump(doc, out)
    return out.getvalue().encode()


def check(text: bytes, inputs: Path) -> None:
    try:
        load_config_text(text, inputs_dir=inputs)
    except ConfigError as exc:
        assert exc.problems
        lines = text.count(b"\n") + 2
        for problem in exc.problems:
            assert 1 <= problem.position.line <= lines, problem
            assert problem.position.col >= 1, problem
            assert str(problem).startswith("workflows.yml:")
            assert "\n" not in problem.message


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("fuzz"))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_structural_mutations_only_give_config_errors(inputs: Path, data: st.DataObject) -> None:
    check(dump(mutate(BASE, data)), inputs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, len(VALID)), junk=st.binary(max_size=12))
def test_raw_byte_injection_only_gives_config_errors(inputs: Path, position: int, junk: bytes) -> None:
    raw = VALID.encode()
    check(raw[:position] + junk + raw[position:], inputs)
