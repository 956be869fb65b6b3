"""Bad workflows.yml at scale: only ConfigError ever comes out, always with a position, in bounded memory.

- Fuzzing (hypothesis, 1,600 examples): whole documents built from plausible and implausible
  values in every slot, structural mutations of a valid file, and raw bytes spliced into it.
- Hostile files: a YAML alias bomb, a 50 MB file, deep nesting of every kind, too many values,
  non-UTF-8 bytes and forbidden characters — each rejected with one clear line at the right
  place, its peak memory measured (tracemalloc in this process, ru_maxrss for `autoflow validate`).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from autoflow.errors import ConfigError
from autoflow.spec.loader import load_config, load_config_text
from autoflow.spec.models import AutoFlowConfig
from tests.configs import VALID, make_inputs
from tests.faults.conftest import Figures
from tests.test_spec_fuzz import BASE, mutate

pytestmark = pytest.mark.slow

EXAMPLES = {"documents": 800, "mutations": 500, "bytes": 300}
_counts: dict[str, int] = {"examples": 0, "config_errors": 0, "valid": 0}


def check(text: bytes, inputs: Path) -> AutoFlowConfig | ConfigError:
    """Load ``text``; anything but a config or a well-formed ConfigError fails the test."""
    _counts["examples"] += 1
    try:
        config = load_config_text(text, inputs_dir=inputs)
    except ConfigError as exc:
        _counts["config_errors"] += 1
        assert exc.problems
        lines = text.count(b"\n") + 2
        for problem in exc.problems:
            assert 1 <= problem.position.line <= lines, problem
            assert problem.position.col >= 1, problem
            assert str(problem).startswith("workflows.yml:"), problem
            assert "\n" not in problem.message and problem.message.strip(), problem
        return exc
    _counts["valid"] += 1
    return config


def dump(doc: Any) -> bytes:
    out = io.StringIO()
    YAML(typ="safe", pure=True).dump(doc, out)
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_inputs(tmp_path_factory.mktemp("abuse"))
    outside = tmp_path_factory.mktemp("outside") / "secret.ipynb"
    outside.write_text((root / "a.ipynb").read_text())
    os.symlink(outside, root / "link_out.ipynb")
    (root / "sub").mkdir()
    os.symlink(root / "a.ipynb", root / "sub" / "link_in.ipynb")
    return root


# -- strategies: a value for every slot of workflows.yml, good or bad -------------------------

texts = st.text(max_size=12)
names = st.one_of(st.sampled_from(["flows", "w", "run", "report", "reference_date", "date_ranges", "flowapi_url", "", " ", "a b", "x" * 300]), texts)
filenames = st.one_of(
    st.sampled_from([
        "a.ipynb", "b.ipynb", "sub/link_in.ipynb", "link_out.ipynb", "../a.ipynb", "sub/../a.ipynb", "sub/../../a.ipynb",
        "/etc/passwd", "/tmp/a.ipynb", "notes.txt", "broken.ipynb", "not_a_notebook.ipynb", "missing.ipynb", "A.IPYNB",
        "custom.tpl", ".", "sub", "~/a.ipynb", "a.ipynb\x00", "a.ipynb\n",
    ]),  # fmt: skip
    texts,
    st.integers(),
    st.none(),
)
crons = st.one_of(
    st.none(),
    st.sampled_from(["0 2 * * *", "* * * * *", "61 * * * *", "@daily", "@reboot", "0 2 * *", "*/0 * * * *", "0 2 * * * *", "", "0 2 31 2 *"]),
    texts,
    st.integers(),
)
dates = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))
offsets = st.one_of(st.integers(-10**6, 10**6), dates, st.text(max_size=4), st.none(), st.floats(allow_nan=True))
stencils = st.one_of(st.lists(st.one_of(offsets, st.lists(offsets, max_size=3)), max_size=4), offsets)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), texts, dates)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(texts, inner, max_size=3)), max_leaves=6)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy``'s value, or the key left out (None here), or a value of the wrong kind."""
    return st.one_of(strategy, strategy, strategy, st.just(None), values)


notebooks = st.dictionaries(
    names,
    st.fixed_dictionaries(
        {"filename": filenames},
        optional={
            "parameters": maybe(st.dictionaries(names, names, max_size=4)),
            "output": maybe(st.fixed_dictionaries({"format": maybe(st.sampled_from(["pdf", "html", "PDF"]))}, optional={"template": filenames})),
            "timeout": maybe(st.one_of(st.integers(-5, 10**6), st.floats())),
            "retries": maybe(st.integers(-3, 100)),
            "unknown": values,
        },
    ),
    max_size=4,
)
workflows = st.lists(st.fixed_dictionaries({"name": names}, optional={"notebooks": maybe(notebooks), "extra": values}), max_size=3)
entries = st.lists(
    st.fixed_dictionaries(
        {"workflow_name": names},
        optional={
            "parameters": maybe(st.dictionaries(names, values, max_size=3)),
            "earliest_date": maybe(dates),
            "date_stencil": maybe(stencils),
        },
    ),
    max_size=3,
)
sources = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["flowapi", "directory", "sql", ""])}, optional={"pattern": maybe(st.sampled_from([
        "data/{date:%Y-%m-%d}.csv", "{date:%Y}/{date:%m}", "data/{date}", "../{date:%Y-%m-%d}", "/abs/{date:%Y-%m-%d}", "{date:%Q}", "x"]))}),
    values,
)  # fmt: skip
sensors = st.fixed_dictionaries(
    {"schedule": crons},
    optional={"cdr_types": maybe(st.lists(st.sampled_from(["calls", "sms", "mds", "topups", "", "CALLS"]), max_size=3)), "source": sources, "workflows": maybe(entries)},
)
documents = st.fixed_dictionaries({}, optional={"workflows": maybe(workflows), "available_dates_sensor": maybe(sensors), "other": values})


def _drop_nones(doc: Any) -> Any:
    """A ``None`` from :func:`maybe` means "key left out" at the top two levels of each slot."""
    if isinstance(doc, dict):
        return {k: _drop_nones(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        return [_drop_nones(v) for v in doc]
    return doc


@settings(max_examples=EXAMPLES["documents"], deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(document=documents)
def _fuzz_documents(inputs: Path, document: dict[str, Any]) -> None:
    check(dump(_drop_nones(document)), inputs)


@settings(max_examples=EXAMPLES["mutations"], deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def _fuzz_mutations(inputs: Path, data: st.DataObject) -> None:
    check(dump(mutate(BASE, data)), inputs)


@settings(max_examples=EXAMPLES["bytes"], deadline=None)
@given(position=st.integers(0, len(VALID)), junk=st.binary(min_size=1, max_size=16))
def _fuzz_bytes(inputs: Path, position: int, junk: bytes) -> None:
    raw = VALID.encode()
    check(raw[:position] + junk + raw[position:], inputs)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_fuzzed_workflows_yml_only_gives_config_errors_with_positions(kind: str, inputs: Path, figures: Figures) -> None:
    """Whole documents, mutations of a valid file, spliced bytes: every example loads or is a ConfigError."""
    fuzz = {"documents": _fuzz_documents, "mutations": _fuzz_mutations, "bytes": _fuzz_bytes}[kind]
    before = dict(_counts)
    fuzz(inputs)
    ran = {key: _counts[key] - before[key] for key in _counts}
    figures.add("workflows.yml fuzzing", trials=ran["examples"])
    figures.note("workflows.yml fuzzing", f"{kind}: rejected with ConfigError / accepted", f"{ran['config_errors']} / {ran['valid']}")
    assert ran["examples"] >= EXAMPLES[kind], ran  # hypothesis really ran them all
    assert ran["config_errors"] > 0


# -- hostile files ------------------------------------------------------------------------------

LAUGHS = "laugh0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"laugh{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
)


def _nested_block(levels: int) -> bytes:
    return "".join("  " * i + "a:\n" for i in range(levels)).encode()


HOSTILE: dict[str, tuple[Callable[[], bytes], str, tuple[int, int] | None]] = {
    # name: (file contents, what the one problem says, (line, col) it must point at, if exact)
    "alias bomb in a parameter": (
        lambda: ("x_defs:\n" + "".join(f"  {line}\n" for line in LAUGHS.splitlines()) + VALID.replace("country_name: Nepal", "country_name: *l9")).encode(),
        "expands to more than",
        None,
    ),
    "alias bomb as the document": (lambda: (LAUGHS + "all: *l9\n").encode(), "unknown key", None),
    "flow lists nested 100,000 deep": (lambda: b"[" * 100_000 + b"]" * 100_000, "nested more than 50 levels", (1, 51)),
    "flow mappings nested 50,000 deep": (lambda: b"{a: " * 50_000 + b"1" + b"}" * 50_000, "nested more than 50 levels", (1, 201)),
    "block mappings nested 600 deep": (lambda: _nested_block(600), "nested more than 50 levels", (51, 101)),
    "30,000 keys": (lambda: ("workflows:\n" + "".join(f"  k{i}: {i}\n" for i in range(30_000))).encode(), "more than 20000 values", None),
    "UTF-16 with a byte-order mark": (lambda: VALID.encode("utf-16"), "is not valid UTF-8", (1, 1)),
    "Latin-1 in a value": (lambda: VALID.replace("Nepal", "Népal").encode("latin-1"), "byte 0xe9 is not valid UTF-8", (26, 24)),
    "a lone continuation byte": (lambda: VALID.encode()[:40] + b"\x80" + VALID.encode()[40:], "byte 0x80 is not valid UTF-8", (3, 14)),
    "a NUL character": (lambda: VALID.replace("Nepal", "Ne\0pal").encode(), "character U+0000 is not allowed", (26, 25)),
    "an escape character": (lambda: VALID.replace("Nepal", "Ne\x1bpal").encode(), "character U+001B is not allowed", (26, 25)),
}


def _peak_of(function: Callable[[], object]) -> tuple[object, int]:
    """``function()``'s result (or exception) and the peak bytes it allocated (tracemalloc)."""
    tracemalloc.start()
    try:
        try:
            result: object = function()
        except Exception as exc:  # noqa: BLE001 - returned for the caller to judge
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_file_is_rejected_with_one_clear_line_in_bounded_memory(name: str, inputs: Path, figures: Figures) -> None:
    make, expected, where = HOSTILE[name]
    data = make()
    error, peak = _peak_of(lambda: load_config_text(data, inputs_dir=inputs))
    figures.add("hostile workflows.yml", trials=1)
    figures.note("hostile workflows.yml", f"peak MB: {name}", round(peak / 2**20, 1))
    assert isinstance(error, ConfigError), f"{type(error).__name__}: {error}"
    problems = error.problems
    assert any(expected in p.message for p in problems), [str(p) for p in problems]
    assert all("\n" not in p.message and len(p.message) < 300 for p in problems)
    if where is not None:
        (problem,) = problems
        assert (problem.position.line, problem.position.col) == where, str(problem)
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB to reject {len(data) / 2**20:.1f} MB"


@pytest.fixture
def fifty_megabytes(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "inputs").mkdir()
    inputs = make_inputs(tmp_path / "inputs")
    with open(inputs / "workflows.yml", "wb") as out:
        out.write(VALID.encode())
        chunk = b"# " + b"padding " * 127 + b"\n"
        for _ in range(50 * 2**20 // len(chunk)):
            out.write(chunk)
    yield inputs


@pytest.mark.timeout(120)
def test_a_50_megabyte_file_is_refused_before_it_is_read(fifty_megabytes: Path, figures: Figures) -> None:
    error, peak = _peak_of(lambda: load_config(fifty_megabytes, display_name="workflows.yml"))
    assert isinstance(error, ConfigError), error
    (problem,) = error.problems
    assert str(problem).startswith("workflows.yml:1:1: the file is 52.4 MB; workflows.yml may be at most 1 MB"), str(problem)
    assert peak < 4 * 2**20, f"{peak / 2**20:.1f} MB allocated: the file was read"
    figures.add("hostile workflows.yml", trials=1)
    figures.note("hostile workflows.yml", "peak MB: 50 MB file", round(peak / 2**20, 2))


def _validate(inputs: Path, tmp_path: Path) -> tuple[int, str, int]:
    """`autoflow validate` in a subprocess: (exit status, stderr, the peak RSS of that process in bytes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFLOW_")}
    err_path = tmp_path / "validate.err"
    with open(err_path, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "autoflow", "validate", "--inputs", str(inputs)], env=env, stdout=subprocess.DEVNULL, stderr=err
        )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, err_path.read_text(), usage.ru_maxrss * 1024


@pytest.mark.timeout(240)
def test_autoflow_validate_refuses_hostile_files_in_one_line(fifty_megabytes: Path, tmp_path: Path) -> None:
    code, err, rss = _validate(fifty_megabytes, tmp_path)
    assert code == 2 and err.count("\n") == 1 and "the file is 52.4 MB" in err, err
    assert rss < 512 * 2**20
    (tmp_path / "bomb").mkdir()
    bomb = make_inputs(tmp_path / "bomb")
    (bomb / "workflows.yml").write_bytes(HOSTILE["alias bomb in a parameter"][0]())
    code, err, _ = _validate(bomb, tmp_path)
    assert code == 2 and "expands to more than" in err and "Traceback" not in err, err
