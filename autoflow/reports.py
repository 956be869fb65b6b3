"""Executed notebook → reports: PDF (nbconvert to asciidoc, via pandoc, then asciidoctor-pdf)
and self-contained HTML (nbconvert's HTML exporter with AutoFlow's template).

nbconvert, pandoc and asciidoctor-pdf stay behind this module: callers get :class:`ReportError`.
The report shows what a reader needs (markdown, printed text, tables, figures) and none of the
machinery (code, prompts, parameter cells, scrapbook scraps, warnings on stderr).
"""

from __future__ import annotations

import copy
import datetime as dt
import html as html_text
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from nbconvert.exporters import ASCIIDocExporter, HTMLExporter
from traitlets.config import Config

from autoflow.errors import ReportError
from autoflow.redaction import environment_without_secrets
from autoflow.spec.models import ReportSpec

__all__ = [
    "DEFAULT_TEMPLATE",
    "REQUIRED_TOOLS",
    "TEMPLATES_DIR",
    "HTML_TEMPLATE",
    "check_report_tools",
    "export_html",
    "export_pdf",
    "human_date",
    "prepare_notebook",
]

log = logging.getLogger(__name__)

#: AutoFlow's templates, shipped inside the package
TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
#: the default report template; user templates may ``{% extends %}`` it by this name
DEFAULT_TEMPLATE = "autoflow_report.asciidoc.j2"
THEME = TEMPLATES_DIR / "autoflow_report-theme.yml"
#: the HTML report's nbconvert template (a folder in :data:`TEMPLATES_DIR`, based on nbconvert's ``lab``)
HTML_TEMPLATE = "autoflow_report_html"
#: command -> Debian package that provides it
REQUIRED_TOOLS = {"pandoc": "pandoc", "asciidoctor-pdf": "ruby-asciidoctor-pdf"}
#: seconds asciidoctor-pdf may take for one report, and pandoc for one cell
PDF_TIMEOUT = 600
TOOL_TIMEOUT = 120

#: cells never shown: papermill's parameter cells and error banners, and cells the author hid
HIDDEN_CELL_TAGS = frozenset(
    {"parameters", "injected-parameters", "papermill-error-cell-tag", "remove-cell", "remove_cell"}
)
HIDDEN_OUTPUT_TAGS = frozenset({"remove-output", "remove_output"})
SCRAP_MIMETYPE_PREFIX = "application/scrapbook.scrap."
#: reprs that are noise in a report: ``<Figure size ...>``, ``[<matplotlib.lines.Line2D at 0x...>]``
NOISE_REPR = re.compile(r"^\s*[\[(]?<[^<>\n]*(?: at 0x[0-9a-fA-F]+|Figure size [^<>\n]*)>[\])]?\s*$")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
FENCE = re.compile(r"^\s*(```|~~~)")
#: asciidoc preprocessor directives, processed even inside literal blocks unless escaped
DIRECTIVE = re.compile(r"^((?:include|ifdef|ifndef|ifeval|endif)::)", re.M)
VBAR_PLACEHOLDER = "\ue000"
#: U+2212 before a number: reports use the ASCII hyphen-minus pandas and print() write, which
#: also survives being copied into a spreadsheet
UNICODE_MINUS = re.compile("\u2212(?=[0-9.])")
#: a table cell holding only text (no markup)
TABLE_CELL = re.compile(r"<td(?P<attrs>(?:\s[^<>]*)?)>(?P<text>[^<]*)</td>")
#: what a table cell of numbers holds: 1200, -3.5, 1,234.5, .5, 1e-06, 12 %, and pandas' missing values
NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:[,\u202f]\d{3})+|\d+|(?=\.\d))(?:\.\d*)?(?:[eE][-+]?\d+)?(?:\s?%)?|NaN|nan|<NA>|NaT|None|-?inf")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")  # fmt: skip
TABLE_ATTRIBUTES = re.compile(r"^\[(?=[^\n]*\]\n\|===$)", re.M)


def check_report_tools() -> None:
    """Raise :class:`ReportError` unless pandoc and asciidoctor-pdf are on ``PATH``."""
    missing = {command: package for command, package in REQUIRED_TOOLS.items() if shutil.which(command) is None}
    if missing:
        named = ", ".join(f"{command} (Debian package {package})" for command, package in missing.items())
        raise ReportError(
            f"cannot make PDF reports: {named} not found on PATH; "
            f"install with: apt-get install {' '.join(missing.values())}"
        )


#: a report's working folder older than this (seconds) was left by a process that died
STALE_WORKSPACE_SECONDS = 3600.0
WORKSPACE_PREFIX = ".autoflow-report-"


def sweep_stale_workspaces(reports_dir: Path, *, older_than: float = STALE_WORKSPACE_SECONDS) -> int:
    """Remove report working folders (and half-written HTML files) a killed process left in
    ``reports_dir``; returns how many.

    Only those untouched for ``older_than`` seconds go, so conversions running in another
    AutoFlow process that shares the outputs directory are left alone.
    """
    removed = 0
    cutoff = time.time() - older_than
    try:
        candidates = [p for p in Path(reports_dir).glob(f"{WORKSPACE_PREFIX}*") if not p.is_symlink()]
    except OSError:
        return 0
    for path in candidates:
        try:
            if path.stat().st_mtime < cutoff:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed += 1
        except OSError as exc:
            log.warning("cannot remove the unfinished report folder %s: %s", path, exc.strerror or exc)
    if removed:
        log.info("removed %d unfinished report folder(s) left in %s by a stopped AutoFlow process", removed, reports_dir)
    return removed


def export_pdf(
    notebook_path: Path,
    pdf_path: Path,
    *,
    template: Path | None = None,
    title: str | None = None,
    report: ReportSpec | None = None,
) -> Path:
    """Write a PDF report of the executed notebook ``notebook_path`` to ``pdf_path``; returns it.

    ``template`` is a Jinja asciidoc template file (extending ``asciidoc/index.asciidoc.j2`` or
    :data:`DEFAULT_TEMPLATE`); by default AutoFlow's. The title is ``title``, else the notebook's
    first heading. ``report`` adds the organisation line and the time it was generated to each
    page's header. Intermediate files live in a hidden temporary folder beside the PDF; only the
    PDF is kept, renamed into place when complete.
    """
    check_report_tools()
    notebook_path, pdf_path = Path(notebook_path), Path(pdf_path)
    name = notebook_path.name
    nb = _read_notebook(notebook_path)
    if template is not None and not Path(template).is_file():
        raise ReportError(f"report template {template} does not exist; fix 'output.template' in workflows.yml")
    prepared, resources = prepare_notebook(
        nb, title=title, fallback_title=_fallback_title(name), report=report, generated=dt.datetime.now(dt.timezone.utc)
    )

    try:
        pdf_path.parent.mkdir(parents=True, exist_ok=True)
        # Work beside the PDF, not in /tmp: the finished file is renamed into place (never seen
        # half-written), and a process killed meanwhile leaves its scraps in the outputs directory.
        workspace = tempfile.TemporaryDirectory(prefix=WORKSPACE_PREFIX, dir=pdf_path.parent)
    except OSError as exc:
        raise ReportError(f"cannot write the report of {name} to {pdf_path}: {exc.strerror}") from None
    with workspace as tmp:
        workdir = Path(tmp)
        body, resources = _asciidoc(prepared, resources, template, name)
        adoc = workdir / "report.adoc"
        adoc.write_text(body, encoding="utf-8")
        for filename, data in resources.get("outputs", {}).items():
            target = workdir / filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data if isinstance(data, bytes) else str(data).encode())
        built = workdir / "report.pdf"
        header = resources["autoflow"]
        running = {"autoflow-organisation": header["organisation"] or "", "autoflow-generated": header["generated_at_text"] or ""}
        _asciidoctor_pdf(adoc, built, name, running)
        try:
            os.replace(built, pdf_path)
        except OSError as exc:
            raise ReportError(f"cannot write the report of {name} to {pdf_path}: {exc.strerror}") from None
    return pdf_path


def export_html(
    notebook_path: Path,
    html_path: Path,
    *,
    title: str | None = None,
    report: ReportSpec | None = None,
) -> Path:
    """Write a self-contained HTML report of the executed notebook ``notebook_path`` to ``html_path``.

    The same content, title and header as :func:`export_pdf`: figures embedded as data URIs, no
    scripts or styles fetched from elsewhere, readable on a phone. Written to a hidden file beside
    ``html_path`` and renamed into place when complete; returns ``html_path``.
    """
    notebook_path, html_path = Path(notebook_path), Path(html_path)
    name = notebook_path.name
    nb = _read_notebook(notebook_path)
    prepared, resources = prepare_notebook(
        nb, title=title, fallback_title=_fallback_title(name), report=report, generated=dt.datetime.now(dt.timezone.utc)
    )
    config = Config()
    config.TemplateExporter.exclude_input = True
    config.TemplateExporter.exclude_input_prompt = True
    config.TemplateExporter.exclude_output_prompt = True
    # nothing from a CDN: no require.js, MathJax or widget manager (the template links none either)
    config.HTMLExporter.require_js_url = ""
    config.HTMLExporter.mathjax_url = ""
    config.HTMLExporter.widget_renderer_url = ""
    exporter = HTMLExporter(
        config=config,
        extra_template_basedirs=[str(TEMPLATES_DIR)],  # never the current directory
        template_name=HTML_TEMPLATE,
    )
    try:
        body, _ = exporter.from_notebook_node(prepared, resources={**resources, "metadata": {"name": resources["autoflow"]["title"]}})
    except Exception as exc:  # noqa: BLE001 - nbconvert and jinja failures alike
        raise ReportError(f"cannot convert {name} to HTML: {type(exc).__name__}: {_gist(str(exc))}") from None
    try:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        # not mkstemp: its file is private (0600), a report is as readable as the umask allows
        temporary = html_path.with_name(f"{WORKSPACE_PREFIX}{uuid.uuid4().hex}.html")
        try:
            with temporary.open("x", encoding="utf-8") as out:
                out.write(body)
            os.replace(temporary, html_path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ReportError(f"cannot write the HTML report of {name} to {html_path}: {exc.strerror}") from None
    return html_path


def _read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one kind of failure here
        raise ReportError(f"cannot report on {path}: it is not a readable notebook ({_gist(str(exc))})") from None


def _fallback_title(notebook_name: str) -> str:
    return notebook_name.split("__")[0].removesuffix(".ipynb")


def human_date(day: dt.date) -> str:
    """``day`` as people write it, the same in every locale: ``9 March 2024``."""
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def header_facts(
    nb: nbformat.NotebookNode, report: ReportSpec | None = None, generated: dt.datetime | None = None
) -> dict[str, Any]:
    """What a report's header says besides its title, from the run record AutoFlow stamped into
    ``nb``'s metadata and the ``report:`` block; every value is plain text (templates escape it).

    ``workflow``, ``reference_date`` (ISO), ``reference_date_text`` ("9 March 2024 (2024-03-09)"),
    ``parameters`` ("name = value" strings), ``organisation`` and ``generated_at_text``
    ("generated at 2024-03-09 14:05 UTC"); each None (or empty) when unknown or turned off.
    """
    report = report or ReportSpec()
    run = nb.metadata.get("autoflow", {})
    run = run if isinstance(run, dict) else {}
    iso = run.get("reference_date")
    text = None
    if isinstance(iso, str):
        try:
            text = f"{human_date(dt.date.fromisoformat(iso))} ({iso})"
        except ValueError:
            text = iso
    parameters = run.get("parameters")
    shown = []
    if isinstance(parameters, dict):
        for key, value in parameters.items():
            shown.append(f"{key} = {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}")
    generated_text = None
    if report.generated_at and generated is not None:
        generated_text = f"generated at {generated.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    workflow = run.get("workflow")
    return {
        "workflow": str(workflow) if workflow else None,
        "reference_date": iso if isinstance(iso, str) else None,
        "reference_date_text": text,
        "parameters": shown,
        "organisation": report.organisation,
        "generated_at_text": generated_text,
    }


def prepare_notebook(
    nb: nbformat.NotebookNode,
    *,
    title: str | None = None,
    fallback_title: str = "Report",
    report: ReportSpec | None = None,
    generated: dt.datetime | None = None,
) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
    """A copy of ``nb`` holding only what the report shows, and the nbconvert resources for it.

    Drops parameter cells, papermill banners, scrapbook scraps, stderr, object reprs and cells or
    outputs tagged ``remove-cell``/``remove-output``. The title is ``title``, else the first
    markdown heading (which then leaves the body), else ``fallback_title``. Minus signs become
    ASCII hyphen-minus; table cells holding a number get ``class="number"`` (right-aligned).
    ``resources["autoflow"]`` holds the title and :func:`header_facts`.
    """
    nb = copy.deepcopy(nb)
    kept = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & HIDDEN_CELL_TAGS:
            continue
        if cell.cell_type == "code":
            cell.outputs = [] if tags & HIDDEN_OUTPUT_TAGS else [_clean(o) for o in cell.outputs if _shown(o)]
        elif cell.cell_type == "markdown":
            cell.source = _ascii_minus(cell.source)
        kept.append(cell)
    nb.cells = kept

    headings = _markdown_headings(nb)
    shift = 0
    if headings:
        cell, line, level, text = headings[0]
        if title is None or title.strip() == text:
            title = text
            lines = cell.source.splitlines()
            cell.source = "\n".join(lines[:line] + lines[line + 1 :])
            headings = _markdown_headings(nb)
            if level == 1 and all(other_level > 1 for _, _, other_level, _ in headings):
                shift = -1  # the title was the only "#": "##" becomes a top-level section
    nb.cells = _split_sections(nb.cells, headings, shift)
    facts = header_facts(nb, report, generated)
    return nb, {"autoflow": {"title": " ".join((title or fallback_title).split()) or "Report", **facts}}


def _split_sections(cells: list[Any], headings: list[tuple[Any, int, int, str]], shift: int) -> list[Any]:
    """``cells`` with every markdown heading in a cell of its own, its section level in metadata.

    pandoc renumbers the headings of each fragment it converts (a cell's first heading always
    becomes a top-level section), so levels are decided here, where the whole notebook is known:
    ``metadata.autoflow.section_level`` (1 is a top-level section) and ``.section_title``.
    """
    at: dict[int, dict[int, tuple[int, str]]] = {}
    previous = 0
    for cell, line, level, text in headings:
        previous = max(1, min(level + shift, previous + 1))  # asciidoc forbids skipping a level
        at.setdefault(id(cell), {})[line] = (previous, text)
    result = []
    for cell in cells:
        if id(cell) not in at:
            result.append(cell)
            continue
        chunk: list[str] = []
        for number, line in enumerate([*cell.source.splitlines(), None]):
            if line is not None and number not in at[id(cell)]:
                chunk.append(line)
                continue
            if "\n".join(chunk).strip():
                result.append(nbformat.v4.new_markdown_cell("\n".join(chunk)))
            chunk = []
            if line is not None:
                level, text = at[id(cell)][number]
                heading = nbformat.v4.new_markdown_cell(line)
                heading.metadata["autoflow"] = {"section_level": level, "section_title": text}
                result.append(heading)
    return result


def _shown(output: nbformat.NotebookNode) -> bool:
    if output.output_type == "stream":
        return output.get("name") == "stdout" and bool(str(output.get("text", "")).strip())
    if output.output_type in ("display_data", "execute_result"):
        data = output.get("data", {})
        if any(mime.startswith(SCRAP_MIMETYPE_PREFIX) for mime in data):
            return False
        shown = [m for m in data if m != "text/plain"]
        return bool(shown) or not NOISE_REPR.match(str(data.get("text/plain", "")))
    return bool(output.output_type == "error")


_INDEX_HEADER = re.compile(
    r"(<thead>\s*<tr[^>]*>\s*)<th>\s*</th>(.*?</tr>)\s*<tr>\s*<th>([^<]*)</th>(?:\s*<th>\s*</th>)*\s*</tr>",
    re.S,
)


def _clean(output: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Minus signs made consistent, numeric table cells marked, pandas' separate index-name
    header row merged into the column header row."""
    if output.output_type == "stream":
        output.text = _ascii_minus(str(output.get("text", "")))
        return output
    data = output.get("data", {})
    for mime in ("text/plain", "text/markdown", "text/html"):
        if isinstance(data.get(mime), str):
            data[mime] = _ascii_minus(data[mime])
    html = data.get("text/html")
    if isinstance(html, str) and 'class="dataframe"' in html:
        html = _INDEX_HEADER.sub(r"\1<th>\3</th>\2", html, count=1)
    if isinstance(html, str) and "<td" in html:
        data["text/html"] = TABLE_CELL.sub(_mark_number, html)
    return output


def _ascii_minus(text: str) -> str:
    return UNICODE_MINUS.sub("-", text)


def _mark_number(cell: re.Match[str]) -> str:
    """A ``<td>`` holding a number, with ``class="number"`` and the right alignment pandoc reads."""
    attrs, text = cell.group("attrs"), cell.group("text")
    if not NUMBER.fullmatch(html_text.unescape(text).strip()):
        return cell.group(0)
    if re.search(r"\sclass\s*=", attrs):
        attrs = re.sub(r"(\sclass\s*=\s*[\"']?)", r"\1number ", attrs, count=1)
    else:
        attrs += ' class="number"'
    if not re.search(r"\sstyle\s*=", attrs):
        attrs += ' style="text-align: right"'
    return f"<td{attrs}>{text}</td>"


def _markdown_headings(nb: nbformat.NotebookNode) -> list[tuple[Any, int, int, str]]:
    """(cell, line number, level, text) of every ATX heading outside code fences."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        fenced = False
        for number, line in enumerate(cell.source.splitlines()):
            if FENCE.match(line):
                fenced = not fenced
            elif not fenced and (match := HEADING.match(line)):
                found.append((cell, number, len(match.group(1)), match.group(2).strip()))
    return found


def literal_block(text: str) -> str:
    """``text`` as an asciidoc literal block that nothing inside can end or reinterpret."""
    longest = max((len(run) for run in re.findall(r"^\.{4,}(?=\s*$)", text, re.M)), default=3)
    fence = "." * max(4, longest + 1)
    text = DIRECTIVE.sub(r"\\\1", text)
    return f"[subs=specialchars]\n{fence}\n{text}\n{fence}"


def asciidoc_text(text: str) -> str:
    """Plain ``text`` shown as is in asciidoc inline content (no markup, attributes or macros)."""
    text = str(text).replace("]", "\\]")
    return f"pass:c[{text}{' ' if text.endswith(chr(92)) else ''}]"  # a final backslash would escape the "]"


def _tool_environment() -> dict[str, str]:
    return environment_without_secrets()  # pandoc and asciidoctor-pdf need none of AutoFlow's secrets


def pandoc(source: str, from_format: str, to_format: str = "asciidoc", extra_args: Any = None) -> str:
    """``source`` converted by pandoc; :class:`ReportError` with pandoc's message if it fails.

    Replaces nbconvert's ``convert_pandoc``, which ignores pandoc's exit status and lets its
    warnings through to the terminal.
    """
    command = ["pandoc", "-f", from_format, "-t", to_format, "--wrap=none", *(extra_args or [])]
    try:
        done = subprocess.run(
            command, input=source, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False, env=_tool_environment()
        )
    except FileNotFoundError:
        check_report_tools()
        raise
    except subprocess.TimeoutExpired:
        raise ReportError(f"pandoc took longer than {TOOL_TIMEOUT} s to convert {from_format} to {to_format}") from None
    if done.returncode != 0:
        raise ReportError(f"pandoc could not convert {from_format} to {to_format}: {_gist(done.stderr) or 'no message'}")
    if done.stderr.strip():
        log.debug("pandoc: %s", done.stderr.strip())
    return done.stdout.rstrip("\n")


def markdown_to_asciidoc(source: str, extra_args: Any = None) -> str:
    """A markdown cell as asciidoc."""
    return pandoc(source, "markdown+lists_without_preceding_blankline", "asciidoc", extra_args)


def heading_to_asciidoc(text: str) -> str:
    """A markdown heading's text as asciidoc inline text (``1. Intro`` stays a title, not a list)."""
    converted = markdown_to_asciidoc(f"# {text}")
    return next((line[3:] for line in converted.splitlines() if line.startswith("== ")), text)


def html_to_asciidoc(html: str) -> str:
    """HTML output (a pandas DataFrame, mostly) as asciidoc; tables fit their content."""
    # pandoc leaves "|" in table cells unescaped, which splits cells: carry it through as {vbar}
    converted = pandoc(html.replace("|", VBAR_PLACEHOLDER), "html", "asciidoc")
    converted = converted.replace(VBAR_PLACEHOLDER, "{vbar}")
    return TABLE_ATTRIBUTES.sub("[%autowidth.stretch,", converted)


#: Jinja filters for report templates (``convert_pandoc`` and ``markdown2asciidoc`` replace nbconvert's)
FILTERS = {
    "convert_pandoc": pandoc,
    "markdown2asciidoc": markdown_to_asciidoc,
    "heading_to_asciidoc": heading_to_asciidoc,
    "html_to_asciidoc": html_to_asciidoc,
    "literal_block": literal_block,
    "asciidoc_text": asciidoc_text,
}


def _asciidoc(
    nb: nbformat.NotebookNode, resources: dict[str, Any], template: Path | None, name: str
) -> tuple[str, dict[str, Any]]:
    paths = [str(TEMPLATES_DIR)]
    template_file = DEFAULT_TEMPLATE
    if template is not None:
        template = Path(template).absolute()
        paths.insert(0, str(template.parent))
        template_file = template.name
    config = Config()
    config.TemplateExporter.exclude_input = True
    config.TemplateExporter.exclude_input_prompt = True
    config.TemplateExporter.exclude_output_prompt = True
    exporter = ASCIIDocExporter(
        config=config,
        # never the current directory, which nbconvert searches by default
        extra_template_basedirs=[str(TEMPLATES_DIR)],
        extra_template_paths=paths,
        template_file=template_file,
    )
    for filter_name, function in FILTERS.items():
        exporter.register_filter(filter_name, function)
    resources = {**resources, "output_files_dir": "images", "unique_key": "figure"}
    try:
        return exporter.from_notebook_node(nb, resources=resources)
    except ReportError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        raise ReportError(
            f"report template {exc.filename or template_file}:{exc.lineno}: {_gist(exc.message or '')}; fix the template"
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise ReportError(
            f"cannot convert {name}: template {exc.name!r} not found; a report template must extend "
            f"'asciidoc/index.asciidoc.j2' or '{DEFAULT_TEMPLATE}'"
        ) from None
    except Exception as exc:  # noqa: BLE001 - nbconvert, pandoc and jinja failures alike
        raise ReportError(f"cannot convert {name} to asciidoc: {type(exc).__name__}: {_gist(str(exc))}") from None


def _asciidoctor_pdf(adoc: Path, pdf: Path, name: str, attributes: dict[str, str] | None = None) -> None:
    """``attributes`` are set for every template (the theme's running header reads them)."""
    command = [
        "asciidoctor-pdf",
        # the notebook's output is data, not instructions: no include:: of local files
        "--safe-mode",
        "secure",
        "--failure-level",
        "ERROR",
        *(arg for key, value in (attributes or {}).items() for arg in ("-a", f"{key}={value}")),
        "-a",
        f"pdf-theme={THEME}",
        "-a",
        f"pdf-themesdir={TEMPLATES_DIR}",
        "-o",
        str(pdf),
        str(adoc),
    ]
    try:
        done = subprocess.run(
            command, cwd=adoc.parent, capture_output=True, text=True, timeout=PDF_TIMEOUT, check=False, env=_tool_environment()
        )
    except FileNotFoundError:
        check_report_tools()
        raise
    except subprocess.TimeoutExpired:
        raise ReportError(f"asciidoctor-pdf took longer than {PDF_TIMEOUT} s for {name}; the report was not made") from None
    for line in done.stderr.splitlines():
        if line.strip():
            log.warning("asciidoctor-pdf (%s): %s", name, line.strip())
    if done.returncode != 0 or not pdf.is_file():
        raise ReportError(
            f"asciidoctor-pdf failed for {name} (exit {done.returncode}): {_gist(done.stderr) or 'no message'}"
        )


def _gist(text: str, limit: int = 240) -> str:
    """The last meaningful lines of a tool's message, as one short line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    gist = " | ".join(lines[-3:])
    return gist if len(gist) <= limit else "…" + gist[-(limit - 1) :]
