"""The report site in a real browser: real executed notebooks, a real run history, headless Chromium.

The history is recorded with RunStore (SQLite) by hand, without Prefect; the notebooks are
executed on a real kernel. The site is served by ``http.server`` on 127.0.0.1, crawled (every
``href`` and ``src`` must answer 200), and Debian's Chromium dumps the index's DOM and takes
screenshots into the test's folder (and into docs/ when AUTOFLOW_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import html.parser
import http.server
import os
import shutil
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoflow.notebooks import execute_notebook, output_stem
from autoflow.site import build_site
from autoflow.spec.models import AutoFlowConfig, NotebookSpec, OutputSpec, SensorSpec, WorkflowSpec
from autoflow.store import Attempt, RunStore
from tests.nbfactory import write_notebook

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ANALYSIS = (
    "md:# Calls by day",
    "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nimport pandas as pd\n"
    "frame = pd.DataFrame({'day': ['Mon', 'Tue', 'Wed'], 'calls': [3, 5, 4]})\n"
    "SECRET_CODE_MARKER = 1\n"
    "fig, ax = plt.subplots(figsize=(4, 2.5))\nax.bar(frame['day'], frame['calls'])\nax.set_title(f'Calls up to {reference_date}')\nplt.show()",
    "frame",
)


@dataclass
class History:
    config: AutoFlowConfig
    outputs: Path
    store: RunStore
    #: (workflow, reference date) -> the state the index must show
    expected: dict[tuple[str, str], str]


def _config(inputs: Path) -> AutoFlowConfig:
    def notebook(label: str, filename: str, parameters: dict[str, str], report: bool = False) -> NotebookSpec:
        return NotebookSpec(label, filename, inputs / filename, parameters=parameters, output=OutputSpec() if report else None)

    daily = WorkflowSpec("daily", {
        "analysis": notebook("analysis", "analysis.ipynb", {"reference_date": "reference_date"}),
        "report": notebook("report", "summary.ipynb", {"analysis": "analysis"}, report=True),
    })  # fmt: skip
    weekly = WorkflowSpec("weekly", {"totals": notebook("totals", "analysis.ipynb", {"reference_date": "reference_date"})})
    return AutoFlowConfig(inputs_dir=inputs, workflows={"daily": daily, "weekly": weekly}, sensor=SensorSpec(schedule=None, workflows=()))


def _pdf(path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.set_title(title)
    fig.savefig(path, format="pdf")
    plt.close(fig)
    return path


def _record(store: RunStore, workflow: str, day: dt.date, state: str, *, notebooks: list[Path] = [], reports: list[Path] = [], error: str | None = None, previous: int = 0) -> Attempt:  # noqa: B006
    attempt = store.claim(workflow=workflow, parameters={}, reference_date=day, date_ranges=[(day, day)], previous_attempt=previous, owner="test")
    assert attempt is not None
    if state != "running":
        store.finish(attempt.id, success=state == "success", cancelled=state == "cancelled", error=error, notebooks=[str(p) for p in notebooks], reports=[str(p) for p in reports])
    return attempt


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    root = tmp_path_factory.mktemp("site")
    inputs, outputs = root / "inputs", root / "outputs"
    write_notebook(inputs / "analysis.ipynb", *ANALYSIS, parameters="reference_date = '2016-01-01'")
    write_notebook(inputs / "summary.ipynb", "md:# Summary", "print('all good')", parameters="analysis = None")
    write_notebook(inputs / "broken.ipynb", "raise ValueError('no data for this day')", parameters="reference_date = None")
    config = _config(inputs)
    notebooks, reports = outputs / "notebooks", outputs / "reports"
    reports.mkdir(parents=True)
    started = dt.datetime(2016, 1, 5, 2, 0, tzinfo=dt.timezone.utc)

    def executed(source: str, workflow: str, day: dt.date, minute: int) -> Path:
        return notebooks / f"{output_stem(source, workflow, day, {}, started + dt.timedelta(minutes=minute))}.ipynb"

    day1, day2, day3 = dt.date(2016, 1, 1), dt.date(2016, 1, 2), dt.date(2016, 1, 3)
    # real kernels: one analysis with a figure, one summary, one failure; the other runs copy them
    analysis1 = execute_notebook(inputs / "analysis.ipynb", executed("analysis.ipynb", "daily", day1, 1), {"reference_date": day1.isoformat()})
    summary1 = execute_notebook(inputs / "summary.ipynb", executed("summary.ipynb", "daily", day1, 1), {"analysis": str(analysis1)})
    failed = executed("analysis.ipynb", "daily", day1, 0)
    with pytest.raises(Exception):
        execute_notebook(inputs / "broken.ipynb", failed, {"reference_date": day1.isoformat()})
    analysis2 = shutil.copy(analysis1, executed("analysis.ipynb", "daily", day2, 2))
    summary2 = shutil.copy(summary1, executed("summary.ipynb", "daily", day2, 2))
    weekly1 = shutil.copy(analysis1, executed("analysis.ipynb", "weekly", day3, 3))
    pdf1 = _pdf(reports / f"{Path(summary1).stem}.pdf", "Summary for 2016-01-01")
    html1 = reports / f"{Path(summary1).stem}.html"
    html1.write_text("<!DOCTYPE html><html><body><h1>Summary for 2016-01-01</h1></body></html>")
    pdf2 = _pdf(reports / f"{Path(summary2).stem}.pdf", "Summary for 2016-01-02")

    store = RunStore(f"sqlite:///{root / 'history.db'}")
    store.upgrade()
    _record(store, "daily", day1, "failed", notebooks=[failed], error="notebook analysis.ipynb failed in cell 2: ValueError: no data for this day\nTraceback (most recent call last):\n  ...")
    _record(store, "daily", day1, "success", notebooks=[analysis1, summary1], reports=[pdf1, html1], previous=1)
    _record(store, "daily", day2, "success", notebooks=[Path(analysis2), Path(summary2)], reports=[pdf2])
    _record(store, "daily", day3, "running")
    _record(store, "weekly", day3, "success", notebooks=[Path(weekly1)])
    _record(store, "weekly", dt.date(2016, 1, 10), "cancelled", error="cancelled by alice before it started")
    expected = {
        ("daily", "2016-01-01"): "success", ("daily", "2016-01-02"): "success", ("daily", "2016-01-03"): "running",
        ("weekly", "2016-01-03"): "success", ("weekly", "2016-01-10"): "cancelled",
    }  # fmt: skip
    yield History(config, outputs, store, expected)
    store.close()


@pytest.fixture(scope="module")
def site(history: History) -> Path:
    index = build_site(history.config, history.store.history(), history.outputs, now=dt.datetime(2016, 1, 5, 3, tzinfo=dt.timezone.utc))
    assert index == history.outputs / "site" / "index.html"
    return index.parent


@pytest.fixture(scope="module")
def server(site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src", "xlink:href") and value and not value.startswith(("data:", "#")):
                self.links.append(value)


def _chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "Debian's chromium is needed: sudo apt-get install chromium (make test-deps installs it)"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--hide-scrollbars", "--window-size=1100,900", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=True)


def test_every_link_on_every_page_resolves(server: str, site: Path) -> None:
    seen, queue, pages = set(), [server + "index.html"], 0
    while queue:
        url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        assert url.startswith(server), f"a link leaves the site: {url}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                kind, body = response.headers.get_content_type(), response.read()
        except urllib.error.HTTPError as exc:
            pytest.fail(f"{url}: HTTP {exc.code}")
        if kind == "text/html":
            pages += 1
            parser = _Links()
            parser.feed(body.decode())
            assert not any(link.startswith(("http:", "https:", "//", "/")) for link in parser.links), f"{url}: not a relative link in {parser.links}"
            queue += [urllib.parse.urljoin(url, urllib.parse.urldefrag(link).url) for link in parser.links]
    assert pages >= 2 + 2 + 5  # index, two workflow pages, rendered notebooks (and the HTML report)
    assert not any(p.is_symlink() for p in site.rglob("*")), "no symlinks: a read-only mount of the site alone must serve it"


def test_index_in_the_browser_lists_each_workflow_and_date_with_its_state(server: str, history: History, tmp_path: Path) -> None:
    dom = _chromium("--dump-dom", server + "index.html").stdout
    parser = _Dates()
    parser.feed(dom)
    assert parser.workflows == ["daily", "weekly"]
    assert parser.states == history.expected
    assert "latest/daily/report.pdf" in dom and "latest/daily/report.html" in dom


def test_latest_links_are_the_newest_successful_report(site: Path, history: History) -> None:
    reports = history.outputs / "reports"
    newest_pdf = next(p for p in reports.glob("summary__daily__2016-01-02*.pdf"))
    assert (site / "latest" / "daily" / "report.pdf").read_bytes() == newest_pdf.read_bytes()
    # the 2nd of January has no HTML report: the 1st's is the latest
    assert b"Summary for 2016-01-01" in (site / "latest" / "daily" / "report.html").read_bytes()
    assert not (site / "latest" / "weekly").exists(), "weekly's notebook makes no report"


def test_workflow_page_shows_graph_runs_and_errors(site: Path) -> None:
    page = (site / "workflows" / "daily.html").read_text()
    assert "<svg" in page and "analysis.ipynb" in page and "PDF report" in page
    runs = [line for line in page.splitlines() if line.startswith("<tr id=\"run-")]
    assert [r.split('"')[1] for r in runs] == ["run-4", "run-3", "run-2", "run-1"], "newest first"
    assert "<summary>notebook analysis.ipynb failed in cell 2: ValueError: no data for this day</summary>" in page
    assert "Traceback (most recent call last)" in page


def test_rendered_notebook_has_the_figure_and_no_code(site: Path, server: str) -> None:
    rendered = sorted((site / "notebooks").glob("analysis__daily__2016-01-01*.html"))
    assert len(rendered) == 2  # the failed attempt's and the successful one's
    for path in rendered:
        text = path.read_text()
        body = text[text.index("<body"):]
        assert "SECRET_CODE_MARKER" not in body and "import matplotlib" not in body, "no code on a rendered notebook"
        assert 'class="highlight' not in body and "jp-InputPrompt" not in body
        assert "<script src=" not in text and "cdn" not in text.lower(), "nothing fetched from the network"
    success = max(rendered, key=lambda p: p.name)
    text = success.read_text()
    assert "data:image/png;base64," in text and "Calls by day" in text and "<table" in text
    failure = min(rendered, key=lambda p: p.name).read_text()
    assert "no data for this day" in failure


def test_screenshots(server: str, site: Path, tmp_path: Path) -> None:
    shots = {"index.png": server + "index.html", "workflow.png": server + "workflows/daily.html"}
    for name, url in shots.items():
        _chromium(f"--screenshot={tmp_path / name}", url)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshots: {tmp_path}")
    if os.environ.get("AUTOFLOW_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(tmp_path / "index.png", REPO / "docs" / "site-index.png")
        shutil.copy(tmp_path / "workflow.png", REPO / "docs" / "site-workflow.png")


def test_a_rebuild_rewrites_only_what_changed(tmp_path: Path, history: History) -> None:
    outputs = tmp_path / "outputs"
    shutil.copytree(history.outputs / "notebooks", outputs / "notebooks")
    shutil.copytree(history.outputs / "reports", outputs / "reports")
    store = RunStore(f"sqlite:///{tmp_path / 'history.db'}")
    store.upgrade()
    day = dt.date(2016, 1, 2)
    notebooks = sorted((outputs / "notebooks").glob("*__weekly__*"))
    _record(store, "weekly", day, "success", notebooks=notebooks)
    _record(store, "daily", day, "success", notebooks=sorted((outputs / "notebooks").glob("*__daily__2016-01-02*")))
    now = dt.datetime(2016, 1, 5, 3, tzinfo=dt.timezone.utc)
    site = build_site(history.config, store.history(), outputs, now=now).parent

    def inodes() -> dict[str, int]:
        return {str(p.relative_to(site)): p.stat().st_ino for p in site.rglob("*") if p.is_file()}

    before = inodes()
    _record(store, "daily", dt.date(2016, 1, 3), "failed", error="boom")
    assert build_site(history.config, store.history(), outputs, now=now) == site / "index.html"
    after = inodes()
    changed = {name for name in before if after.get(name) != before[name]}
    assert "index.html" in changed and "workflows/daily.html" in changed
    assert "workflows/weekly.html" not in changed and "style.css" not in changed
    rendered = {name for name in before if name.startswith("notebooks/")}
    assert rendered and not rendered & changed, "unchanged notebooks are not rendered again"
    assert [p.name for p in outputs.iterdir() if p.name.startswith("site")] == ["site"], "no temporary folder left"
    store.close()


class _Dates(html.parser.HTMLParser):
    """The index's workflows, and each date's state as its list item's class and text say."""

    def __init__(self) -> None:
        super().__init__()
        self.workflows: list[str] = []
        self.states: dict[tuple[str, str], str] = {}
        self._in: str | None = None
        self._item: tuple[str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section" and (attributes.get("id") or "").startswith("workflow-"):
            self.workflows.append(str(attributes["id"])[len("workflow-"):])
        if tag == "li" and "state" in (attributes.get("class") or ""):
            self._item = (str(attributes["class"]).split()[1], [])

    def handle_data(self, data: str) -> None:
        if self._item is not None:
            self._item[1].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._item is not None:
            state, texts = self._item
            words = "".join(texts).split()
            assert words[1] == state, f"the colour ({state}) and the text ({words[1]}) agree"
            self.states[(self.workflows[-1], words[0])] = state
            self._item = None


def test_the_stacks_nginx_configuration_serves_the_site_alone(site: Path, tmp_path: Path) -> None:
    """config/nginx.conf run by this machine's nginx (the stack's image cannot be pulled here)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (sudo apt-get install nginx-light; make test-deps does)")
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outputs = site.parent
    server = (REPO / "config" / "nginx.conf").read_text()
    server = server.replace("root /mounts/outputs/site;", f"root {site};").replace("listen 8080;", f"listen 127.0.0.1:{port};")
    (tmp_path / "site.conf").write_text(server)
    (tmp_path / "nginx.conf").write_text(
        f"daemon off; user {getpass.getuser()}; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ include /etc/nginx/mime.types; access_log off; client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path};\n"
        f"fastcgi_temp_path {tmp_path}; uwsgi_temp_path {tmp_path}; scgi_temp_path {tmp_path}; include {tmp_path}/site.conf; }}\n"
    )
    process = subprocess.Popen([nginx, "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}/"

        def status(path: str) -> tuple[int, str]:
            for _ in range(50):
                try:
                    with urllib.request.urlopen(base + path, timeout=5) as response:
                        return response.status, response.headers.get("Cache-Control", "")
                except urllib.error.HTTPError as exc:
                    return exc.code, ""
                except urllib.error.URLError:
                    if process.poll() is not None:
                        pytest.fail(f"nginx stopped: {process.stderr.read().decode() if process.stderr else ''}")
                    threading.Event().wait(0.1)
            pytest.fail("nginx did not answer")

        assert status("") == (200, "no-cache")
        assert status("workflows/daily.html")[0] == 200
        report = next((site / "reports").iterdir()).name
        assert status(f"reports/{report}") == (200, "public, max-age=86400")
        assert status("notebooks/")[0] in (403, 404), "no directory listing"
        assert status(".autoflow-site.json")[0] == 404
        (outputs / "secret.txt").write_text("not for the web")
        assert status("../secret.txt")[0] in (400, 404) and status("%2e%2e/secret.txt")[0] in (400, 404)
    finally:
        process.terminate()
        process.wait(timeout=10)
