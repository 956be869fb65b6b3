"""The report site: a static folder of HTML pages over the run history, under ``OUTPUTS/site/``.

:func:`build_site` writes every page into ``site.tmp-XXXX/`` and then swaps it in for ``site/``
(a reader sees the old site or the new one, never half a page); a lock file makes two builds at
once take turns. Pages whose bytes did not change, and executed notebooks whose file did not
change (path, size, modification time), are carried over from the previous site by hard link,
so only what changed is written. Every link is relative: the folder works from any web server
or straight from disk, and holds copies (hard links) of what it shows, never symlinks.

The site::

    index.html                         each workflow: latest reports, reference dates by state
    style.css
    workflows/<workflow>.html          the graph, then every attempt, newest first
    notebooks/<executed stem>.html     executed notebooks rendered (outputs only, images embedded)
    reports/<report file>              the attempts' reports (.pdf, .html)
    latest/<workflow>/<label>.pdf|html the latest successful report of each reporting notebook
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from autoflow.notebooks.naming import output_stem
from autoflow.spec.models import AutoFlowConfig, WorkflowSpec
from autoflow.store.attempts import Attempt

log = logging.getLogger(__name__)

SITE_DIR = "site"
#: what the previous build rendered from which notebook file (carried over when unchanged)
MANIFEST = ".autoflow-site.json"
TEMPLATES = Path(__file__).parent / "templates" / "site"
STATES = ("success", "failed", "running", "cancelled")


@dataclass(frozen=True)
class Link:
    """A file in the site: its text, and its href relative to the site root (None: not available)."""

    text: str
    href: str | None


@dataclass
class RunRow:
    """One attempt as the workflow page shows it."""

    attempt: Attempt
    anchor: str
    duration: str
    reports: list[Link] = field(default_factory=list)
    notebooks: list[Link] = field(default_factory=list)

    @property
    def error_first_line(self) -> str:
        return (self.attempt.error or "").strip().splitlines()[0] if (self.attempt.error or "").strip() else ""


@dataclass
class WorkflowPage:
    name: str
    href: str
    spec: WorkflowSpec | None
    graph_svg: str | None = None
    graph_problem: str | None = None
    runs: list[RunRow] = field(default_factory=list)
    #: the latest attempt of every run (workflow, parameters, reference date), newest date first
    dates: list[tuple[str, list[RunRow]]] = field(default_factory=list)
    latest: list[Link] = field(default_factory=list)


def site_name(text: str) -> str:
    """``text`` as a file name: letters, digits, ``.``, ``_`` and ``-`` kept, anything else ``-``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-")
    return name or "unnamed"


def build_site(
    config: AutoFlowConfig, attempts: Sequence[Attempt], outputs_dir: Path, *, now: dt.datetime | None = None
) -> Path:
    """(Re)generate the report site from ``attempts`` (the run history) under ``outputs_dir/site``.

    Returns the path of its ``index.html``. Time and work grow linearly with the history.
    """
    outputs_dir = Path(outputs_dir)
    now = now or dt.datetime.now(dt.timezone.utc)
    with _locked(outputs_dir):
        _remove_leftovers(outputs_dir)
        site = outputs_dir / SITE_DIR
        tmp = Path(tempfile.mkdtemp(prefix=f"{SITE_DIR}.tmp-", dir=outputs_dir))
        try:
            _Builder(config, site, tmp, now).build(attempts)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; a web server must read it
            _swap(tmp, site)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return site / "index.html"


@contextmanager
def _locked(outputs_dir: Path) -> Iterator[None]:
    lock_dir = outputs_dir / ".autoflow"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "site.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_leftovers(outputs_dir: Path) -> None:
    """Folders a build killed half-way left behind (only ever called holding the lock)."""
    for leftover in outputs_dir.glob(f"{SITE_DIR}.*-*"):
        if leftover.is_dir() and not leftover.is_symlink() and re.fullmatch(rf"{SITE_DIR}\.(tmp|old)-\w+", leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)


def _swap(new: Path, site: Path) -> None:
    if site.exists():
        away = Path(tempfile.mkdtemp(prefix=f"{SITE_DIR}.old-", dir=site.parent))
        os.rename(site, away / SITE_DIR)
        os.rename(new, site)
        shutil.rmtree(away, ignore_errors=True)
    else:
        os.rename(new, site)


def _place(source: Path, target: Path) -> None:
    """``source`` at ``target``: a hard link when the filesystem allows, else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class _Builder:
    """One build: reads the previous site, writes the new one into ``tmp``."""

    def __init__(self, config: AutoFlowConfig, previous: Path, tmp: Path, now: dt.datetime) -> None:
        self.config, self.previous, self.tmp, self.now = config, previous, tmp, now
        self.names: dict[str, dict[str, str]] = {"notebooks": {}, "reports": {}}  # source path -> site path
        self.taken: set[str] = set()
        self.manifest: dict[str, Any] = {"notebooks": {}}
        try:
            self.old_manifest: dict[str, Any] = json.loads((previous / MANIFEST).read_text())
        except (OSError, ValueError):
            self.old_manifest = {"notebooks": {}}
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True,
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        )  # fmt: skip
        self.env.filters["href"] = lambda path, root="": root + quote(path)
        self._exporter: Any = None
        self.written = 0
        self.kept = 0

    # --- files -----------------------------------------------------------------------------------

    def write(self, rel: str, content: bytes) -> None:
        """Write a page, or keep the previous site's copy when it has the same bytes."""
        target, old = self.tmp / rel, self.previous / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if old.is_file() and not old.is_symlink() and old.stat().st_size == len(content) and old.read_bytes() == content:
                os.link(old, target)
                self.kept += 1
                return
        except OSError:
            pass
        target.write_bytes(content)
        self.written += 1

    def _name(self, kind: str, source: str, suffix: str) -> str:
        """A stable site path for ``source`` under ``kind/`` (unique even when two stems clash)."""
        known = self.names[kind].get(source)
        if known is not None:
            return known
        stem = site_name(Path(source).stem)
        name, n = f"{kind}/{stem}{suffix}", 1
        while name in self.taken:
            n += 1
            name = f"{kind}/{stem}-{n}{suffix}"
        self.taken.add(name)
        self.names[kind][source] = name
        return name

    def notebook(self, source: str) -> Link:
        path = Path(source)
        try:
            stat = path.stat()
        except OSError:
            return Link(path.name, None)
        if source in self.names["notebooks"]:  # two attempts sharing an executed notebook
            return Link(path.name, self.names["notebooks"][source])
        rel = self._name("notebooks", source, ".html")
        key = {"source": source, "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
        self.manifest["notebooks"][rel] = key
        old = self.previous / rel
        if self.old_manifest.get("notebooks", {}).get(rel) == key and old.is_file():
            _place(old, self.tmp / rel)
            self.kept += 1
        else:
            self.write(rel, self.render_notebook(path))
        return Link(path.name, rel)

    def report(self, source: str) -> Link:
        path = Path(source)
        if not path.is_file():
            return Link(path.name, None)
        rel = self._name("reports", source, path.suffix.lower())
        if not (self.tmp / rel).exists():
            _place(path, self.tmp / rel)
        return Link(path.name, rel)

    def render_notebook(self, path: Path) -> bytes:
        if self._exporter is None:
            self._exporter = _notebook_exporter()
        try:
            body, _resources = self._exporter.from_filename(str(path))
            return str(body).encode()
        except Exception as exc:  # noqa: BLE001 - a page that says so instead of no site at all
            log.warning("cannot render %s for the report site: %s", path, exc)
            page = self.env.get_template("unrendered.html.j2").render(name=path.name, reason=str(exc).splitlines()[0] if str(exc) else type(exc).__name__, root="../", now=_when(self.now))
            return page.encode()

    # --- pages -----------------------------------------------------------------------------------

    def build(self, attempts: Sequence[Attempt]) -> None:
        by_workflow: dict[str, list[Attempt]] = defaultdict(list)
        for attempt in sorted(attempts, key=lambda a: a.id):
            by_workflow[attempt.workflow].append(attempt)
        names = [*self.config.workflows, *sorted(set(by_workflow) - set(self.config.workflows))]
        pages = [self.workflow_page(name, by_workflow.get(name, [])) for name in names]
        self.write("style.css", (TEMPLATES / "style.css").read_bytes())
        index = self.env.get_template("index.html.j2").render(workflows=pages, now=_when(self.now), root="", states=STATES)
        self.write("index.html", index.encode())
        for page in pages:
            html = self.env.get_template("workflow.html.j2").render(page=page, now=_when(self.now), root="../")
            self.write(page.href, html.encode())
        (self.tmp / MANIFEST).write_text(json.dumps(self.manifest, sort_keys=True, indent=1))
        log.info("report site: %d files written, %d unchanged", self.written, self.kept)

    def workflow_page(self, name: str, attempts: list[Attempt]) -> WorkflowPage:
        spec = self.config.workflows.get(name)
        page = WorkflowPage(name=name, href=f"workflows/{site_name(name)}.html", spec=spec)
        if spec is not None:
            from autoflow.graph import GraphError, svg_for_html

            try:
                page.graph_svg = svg_for_html(spec)
            except GraphError as exc:
                page.graph_problem = str(exc)
        rows = [self.run_row(attempt) for attempt in attempts]  # oldest first
        latest_of_run: dict[tuple[str, dt.date], RunRow] = {}
        for row in rows:
            key = (row.attempt.params_hash, row.attempt.reference_date)
            if key not in latest_of_run or row.attempt.attempt >= latest_of_run[key].attempt.attempt:
                latest_of_run[key] = row
        by_month: dict[str, list[RunRow]] = defaultdict(list)
        for row in sorted(latest_of_run.values(), key=lambda r: (r.attempt.reference_date, r.attempt.params_hash), reverse=True):
            by_month[row.attempt.reference_date.strftime("%Y-%m")].append(row)
        page.dates = list(by_month.items())
        page.runs = rows[::-1]
        page.latest = self.latest_reports(name, spec, rows)
        return page

    def run_row(self, attempt: Attempt) -> RunRow:
        return RunRow(
            attempt=attempt,
            anchor=f"run-{attempt.id}",
            duration=_duration(attempt, self.now),
            reports=[self.report(path) for path in attempt.reports],
            notebooks=[self.notebook(path) for path in attempt.notebooks],
        )

    def latest_reports(self, name: str, spec: WorkflowSpec | None, rows: list[RunRow]) -> list[Link]:
        """``latest/<workflow>/<label><suffix>``: the newest successful run's report of each notebook."""
        if spec is None:
            return []
        prefixes = _report_prefixes(spec)
        chosen: dict[str, tuple[Path, Link]] = {}  # site path -> (file, link)
        successes = sorted((r for r in rows if r.attempt.state == "success"), key=lambda r: (r.attempt.reference_date, r.attempt.id))
        for row in successes:  # oldest first: newer ones replace older ones
            for source, link in zip(row.attempt.reports, row.reports):
                label = prefixes.get(Path(source).name.split("__")[0])
                if label is None and len(set(prefixes.values())) == 1:
                    label = next(iter(prefixes.values()))
                if label is None or link.href is None:
                    continue
                rel = f"latest/{site_name(name)}/{site_name(label)}{Path(source).suffix.lower()}"
                chosen[rel] = (self.tmp / link.href, Link(f"{label}{Path(source).suffix.lower()} ({row.attempt.reference_date})", rel))
        links = []
        for rel, (file, link) in sorted(chosen.items()):
            _place(file, self.tmp / rel)
            links.append(link)
        return links


def _report_prefixes(spec: WorkflowSpec) -> dict[str, str]:
    """The first field of a report's file name -> the label of the notebook it comes from."""
    stamp = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
    return {
        output_stem(nb.filename, spec.name, stamp.date(), {}, stamp).split("__")[0]: label
        for label, nb in spec.notebooks.items()
        if nb.output is not None
    }


def _when(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _duration(attempt: Attempt, now: dt.datetime) -> str:
    end = attempt.finished_at or (now if attempt.state == "running" else None)
    if end is None:
        return ""
    seconds = max(0, int((end - attempt.started_at).total_seconds()))
    text = f"{seconds // 3600}h {seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
    return text + (" so far" if attempt.finished_at is None else "")


def _notebook_exporter() -> Any:
    """nbconvert's HTML exporter: outputs only, images embedded, no script or style from the network."""
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    config = Config()
    config.TemplateExporter.exclude_input = True
    config.TemplateExporter.exclude_input_prompt = True
    config.TemplateExporter.exclude_output_prompt = True
    config.HTMLExporter.embed_images = True
    config.HTMLExporter.extra_template_paths = [str(TEMPLATES / "nbconvert")]
    config.HTMLExporter.template_file = "autoflow_notebook.html.j2"
    return HTMLExporter(config=config)  # type: ignore[no-untyped-call]



class SiteBuilder:
    """Rebuilds the report site in a background thread whenever asked (:meth:`request`), coalescing
    requests that arrive while a build runs into one more build; never raises into the caller.

    ``history`` reads the run history, ``config`` the current workflows.yml; :meth:`close` waits
    (at most ``timeout``) for a requested build to be written, so a process that ends right after a
    run (a Prefect worker's flow run) still leaves an up-to-date site.
    """

    def __init__(self, config: Callable[[], AutoFlowConfig], history: Callable[[], Sequence[Attempt]], outputs_dir: Path) -> None:
        self._config = config
        self._history = history
        self._outputs_dir = outputs_dir
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        with self._lock:
            if self._stopping:
                return
            self._idle.clear()
            self._wanted.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="autoflow-site", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            with self._lock:
                self._wanted.clear()
            try:
                started = time.monotonic()
                index = build_site(self._config(), self._history(), self._outputs_dir)
                log.debug("report site rebuilt in %.1f s: %s", time.monotonic() - started, index)
            except Exception as exc:  # noqa: BLE001 - the site is a view; a failure never fails a run
                log.warning("could not rebuild the report site: %s: %s", type(exc).__name__, exc)
            with self._lock:
                if not self._wanted.is_set():
                    self._idle.set()
                if self._stopping and not self._wanted.is_set():
                    return

    def close(self, timeout: float = 120.0) -> None:
        """Wait for the builds asked for so far (at most ``timeout`` seconds), then stop."""
        with self._lock:
            self._stopping = True
        if not self._idle.wait(timeout):
            log.warning("the report site is still being rebuilt after %.0f s; leaving it to finish", timeout)


class SiteWatcher:
    """For runs executed elsewhere (Prefect workers): a thread that looks every ``interval`` seconds
    whether a run has ended (``ended_mark`` changed) and then asks for a rebuild."""

    def __init__(self, ended_mark: Callable[[], object], rebuild: Callable[[], None], interval: float = 5.0) -> None:
        self._ended_mark = ended_mark
        self._rebuild = rebuild
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="autoflow-site-watch", daemon=True)

    def start(self) -> SiteWatcher:
        self._thread.start()
        return self

    def _loop(self) -> None:
        seen: object = None
        while not self._stop.wait(self._interval):
            try:
                mark = self._ended_mark()
            except Exception as exc:  # noqa: BLE001 - looked at again next time
                log.debug("could not tell whether a run ended: %s", exc)
                continue
            if mark != seen:
                seen = mark
                self._rebuild()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
