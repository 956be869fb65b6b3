"""Paths: files outside the inputs directory are refused; AutoFlow writes nothing outside the outputs directory.

What AutoFlow can honestly guarantee: notebooks and templates named in workflows.yml are read
only from inside the inputs directory (``..``, absolute paths and links pointing out are
refused when the file is validated), and every file AutoFlow itself keeps is written under the
outputs directory. It cannot sandbox notebooks: a kernel runs as AutoFlow's user, in the
notebook's folder, and writes wherever that user may (IPython and matplotlib keep their own
caches in $HOME). While a kernel runs, its connection file lives in $TMPDIR (jupyter_client
removes it when the kernel stops).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from autoflow.errors import ConfigError
from autoflow.spec.loader import load_config_text
from tests.configs import VALID, make_inputs
from tests.faults.conftest import Figures
from tests.faults.harness import Deployment

# -- refused paths --------------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """inputs/ (with links of every kind) beside outside/ (a notebook and a template out of bounds)."""
    inputs, outside = tmp_path / "inputs", tmp_path / "outside"
    inputs.mkdir()
    make_inputs(inputs)
    outside.mkdir()
    (outside / "out.ipynb").write_text((inputs / "a.ipynb").read_text())
    (outside / "out.tpl").write_text("{% extends 'asciidoc/index.asciidoc.j2' %}")
    (inputs / "sub").mkdir()
    for name in ("out.ipynb", "out.tpl"):
        os.symlink(outside / name, inputs / f"link_{name}")  # a link pointing out
        os.symlink(inputs / f"link_{name}", inputs / "sub" / f"chain_{name}")  # a link to a link pointing out
        os.symlink(f"../../outside/{name}", inputs / "sub" / f"relative_{name}")  # a relative link pointing out
    os.symlink(outside, inputs / "linkdir")  # a folder pointing out
    os.symlink(inputs / "a.ipynb", inputs / "sub" / "inside.ipynb")  # a link that stays inside: fine
    os.symlink(inputs / "custom.tpl", inputs / "sub" / "inside.tpl")
    os.symlink(tmp_path / "nowhere.ipynb", inputs / "dangling.ipynb")
    return inputs


OUTSIDE = "outside the inputs directory"
REFUSED = {
    "../outside/{name}": OUTSIDE,
    "sub/../../outside/{name}": OUTSIDE,
    "link_{name}": OUTSIDE,
    "sub/chain_{name}": OUTSIDE,
    "sub/relative_{name}": OUTSIDE,
    "linkdir/{name}": OUTSIDE,
    "{outside}/{name}": "is an absolute path",
    "{inputs}/a.ipynb": "is an absolute path",  # absolute even though it is inside
}


@pytest.mark.parametrize("kind", ["notebook", "template"])
@pytest.mark.parametrize("pattern", list(REFUSED))
def test_files_outside_the_inputs_directory_are_refused_with_their_position(layout: Path, kind: str, pattern: str, figures: Figures) -> None:
    name = "out.ipynb" if kind == "notebook" else "out.tpl"
    value = pattern.format(name=name, outside=layout.parent / "outside", inputs=layout)
    if kind == "template":
        value = value.replace("a.ipynb", "custom.tpl")
    text = VALID.replace("filename: a.ipynb", f"filename: '{value}'") if kind == "notebook" else VALID.replace("custom.tpl", f"'{value}'")
    with pytest.raises(ConfigError) as info:
        load_config_text(text.encode(), inputs_dir=layout)
    figures.add("paths", trials=1)
    line = 5 if kind == "notebook" else 17
    assert [(p.position.line, REFUSED[pattern] in p.message) for p in info.value.problems] == [(line, True)], str(info.value)


@pytest.mark.parametrize("value", ["sub/inside.ipynb", "sub/../a.ipynb", "./a.ipynb"])
def test_paths_that_stay_inside_are_accepted(layout: Path, value: str) -> None:
    config = load_config_text(VALID.replace("filename: a.ipynb", f"filename: '{value}'").encode(), inputs_dir=layout)
    assert config.workflows["flows"].notebooks["run"].path == (layout / "a.ipynb").resolve()


def test_a_dangling_link_is_refused(layout: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(VALID.replace("filename: a.ipynb", "filename: dangling.ipynb").encode(), inputs_dir=layout)
    assert any(p.position.line == 5 for p in info.value.problems), str(info.value)


# -- nothing written outside the outputs directory ----------------------------------------------

WORKFLOWS = """\
workflows:
  - name: report
    notebooks:
      first:
        filename: first.ipynb
        parameters: {reference_date: reference_date}
      summary:
        filename: summary.ipynb
        parameters: {upstream: first}
        output: {format: pdf, template: report.tpl}
  - name: broken
    notebooks:
      bad: {filename: bad.ipynb}
  - name: wanders
    notebooks:
      nb: {filename: wanders.ipynb, parameters: {target: target}}
available_dates_sensor:
  schedule: null
  source: {type: directory, pattern: 'data/{date:%Y-%m-%d}.csv'}
  workflows:
    - {workflow_name: report}
    - {workflow_name: broken}
    - {workflow_name: wanders, parameters: {target: MARKERS/chosen-by-the-notebook.txt}}
"""
NOTEBOOKS = {
    "first.ipynb": ("reference_date = None", ["import scrapbook as sb\nsb.glue('day', reference_date)"]),
    "summary.ipynb": ("upstream = None", ["md:# Summary", "import scrapbook as sb\nprint(sb.read_notebook(upstream).scraps['day'].data)"]),
    "bad.ipynb": (None, ["raise RuntimeError('bad on purpose')"]),
    "wanders.ipynb": ("target = None", ["open(target, 'w').write('the notebook chose to write here')"]),
}
#: what kernels (IPython, matplotlib) keep in $HOME for themselves, and Prefect's home folder
KERNEL_AND_PREFECT_HOME = (".ipython", ".cache/matplotlib", ".config/matplotlib", ".prefect")


def _tree(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Every path under ``root`` (but ``skip``) -> a digest of what it is (content, link target, folder)."""
    found: dict[str, str] = {}
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d not in skip]
        for name in dirs + files:
            path = here / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "link:" + os.readlink(path)
            elif path.is_dir():
                found[key] = "dir"
            else:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.usefixtures("prefect_api_url")
def test_autoflow_writes_nothing_outside_the_outputs_directory(tmp_path: Path, figures: Figures) -> None:
    sandbox = tmp_path / "sandbox"
    home, tmp = sandbox / "home", sandbox / "tmp"
    home.mkdir(parents=True)
    tmp.mkdir()
    app = Deployment(
        sandbox / "app", WORKFLOWS, NOTEBOOKS,
        env={"HOME": str(home), "TMPDIR": str(tmp), "PREFECT_HOME": str(home / ".prefect"), "AUTOFLOW_LOG_LEVEL": "DEBUG"},
    )  # fmt: skip
    (app.inputs / "report.tpl").write_text("{% extends 'autoflow_report.asciidoc.j2' %}")
    (app.inputs / "data").mkdir()
    for day in ("2016-01-01", "2016-01-02"):
        (app.inputs / "data" / f"{day}.csv").write_text("x\n")
    os.chmod(app.inputs, 0o555)  # as in Docker, where the inputs are mounted read-only
    try:
        before = _tree(sandbox, skip=(app.outputs, app.logs))
        commands = [("validate",), (), ("status", "--json"), ("trigger", "report", "--date", "2016-01-03")]
        codes = [app.run(*command, timeout=300).popen.returncode for command in commands]
        after = _tree(sandbox, skip=(app.outputs, app.logs))
    finally:
        os.chmod(app.inputs, 0o755)
    assert codes == [0, 1, 0, 0], app.all_logs()[-4000:]  # 'broken' fails, as it should
    added = sorted(set(after) - set(before))
    changed = sorted(k for k in set(after) & set(before) if after[k] != before[k])
    removed = sorted(set(before) - set(after))
    chosen = str((app.markers / "chosen-by-the-notebook.txt").relative_to(sandbox))
    kernels_own = tuple(str((home / part).relative_to(sandbox)) for part in KERNEL_AND_PREFECT_HOME)
    unexplained = [path for path in added if path != chosen and not path.startswith(kernels_own) and path != "home/.cache" and path != "home/.config"]
    figures.add("paths", trials=1, runs_checked=len(app.history()), leaks=len(unexplained) + len(changed) + len(removed))
    assert not unexplained, f"written outside the outputs directory: {unexplained}"
    assert not changed and not removed, (changed, removed)
    assert chosen in added  # the notebook's own write did happen: AutoFlow cannot prevent it
    assert not any(path.startswith("tmp/") for path in after), "files were left in TMPDIR"
    reports = list((app.outputs / "reports").iterdir())
    assert reports and all(p.suffix == ".pdf" for p in reports), reports  # no scraps beside the PDFs
    status = json.loads(app.run("status", "--json").stdout)
    assert {r["workflow"] for r in status} == {"report", "broken", "wanders"}
