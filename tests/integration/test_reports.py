"""PDF reports from executed notebooks: nbconvert, pandoc and asciidoctor-pdf for real."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from autoflow.errors import ReportError
from autoflow.notebooks import execute_notebook
from autoflow.reports import check_report_tools, export_html, export_pdf, html_to_asciidoc, prepare_notebook
from autoflow.spec.models import ReportSpec
from tests.nbfactory import cell, write_notebook

CODE_MARKER = "DISTINCTIVE_CODE_MARKER_7f3a"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One executed notebook with a heading, text, a table, a figure, glue and noise to hide."""
    folder = tmp_path_factory.mktemp("report-notebook")
    source = write_notebook(
        folder / "flows_report.ipynb",
        "md:# Daily flows report\n\nThis report shows **flows above normal** by region.\n\n## Summary",
        f"import warnings\nimport pandas as pd\nimport matplotlib.pyplot as plt\nimport scrapbook as sb\n{CODE_MARKER} = 1\n"
        "print(f'Reference date: {reference_date}')\nwarnings.warn('stderr noise for nobody')",
        "df = pd.DataFrame({'region': ['North', 'South'], 'flows': [1200, 830], 'share': ['a|b', 'c']})"
        ".set_index('region')\nsb.glue('total_flows', 987654321)\ndf",
        "md:## 2. Flows by region",
        "fig, ax = plt.subplots(figsize=(5, 2.5))\nax.bar(df.index, df.flows)\nplt.show()",
        "import io\nfrom IPython.display import SVG, Image, display\nbuf = io.BytesIO()\n"
        "fig, ax = plt.subplots(figsize=(3, 1.5)); ax.plot([1, 3, 2]); fig.savefig(buf, format='jpeg'); plt.close(fig)\n"
        "display(Image(buf.getvalue(), format='jpeg'))\n"
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"300\" height=\"60\">"
        "<text x=\"10\" y=\"40\" font-size=\"20\">SVG-FIGURE-TEXT</text></svg>'))",
        "plt.plot([1, 2])",
        "print('include::/etc/passwd[]')",
        parameters="reference_date = '2000-01-01'",
    )
    return execute_notebook(source, folder / "flows_report__daily__2016-01-07.ipynb", {"reference_date": "2016-01-07"})


def pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


def content_lines(text: str) -> list[str]:
    """The PDF's non-blank lines without its running header ("generated at ...")."""
    return [line.strip() for line in text.splitlines() if line.strip() and not GENERATED_AT.search(line)]


GENERATED_AT = re.compile(r"generated at \d{4}-\d\d-\d\d \d\d:\d\d UTC$")


def pdf_images(pdf: Path) -> list[str]:
    listing = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    return listing.splitlines()[2:]  # two header lines, then one line per image


def test_report_shows_heading_text_table_and_figure_and_nothing_else(executed: Path, tmp_path: Path) -> None:
    pdf = export_pdf(executed, tmp_path / "reports" / "flows.pdf")
    assert pdf == tmp_path / "reports" / "flows.pdf"
    text = pdf_text(pdf)
    lines = content_lines(text)
    assert lines[0] == "Daily flows report"  # the title, from the first heading
    pages = text.count("\f")
    assert text.count("Daily flows report") == 1 + pages  # title and running footers, not a section
    assert "flows above normal" in text and "Summary" in text
    assert "2. Flows by region" in text  # a numbered heading stays a heading, not a list
    assert "Reference date: 2016-01-07" in text
    table_row = next(line for line in lines if line.startswith("North"))
    assert table_row.split() == ["North", "1200", "a|b"]  # one row of three cells: "|" kept in its cell
    assert "flows" in text and "share" in text
    images = pdf_images(pdf)
    assert len(images) >= 2  # the matplotlib PNG and the JPEG
    assert any(row.split()[8] == "jpeg" for row in images), images
    assert "SVG-FIGURE-TEXT" in text  # SVG is embedded as vector graphics, its text stays text
    # no code, prompts, parameter cells, scraps, stderr or object reprs
    for absent in (CODE_MARKER, "plt.subplots", "In [", "Out[", "2000-01-01", "reference_date =", "987654321",
                   "stderr noise", "Line2D", "<Figure"):
        assert absent not in text, absent
    # printed text is shown literally, never interpreted as an asciidoc include
    assert "include::/etc/passwd[]" in text
    assert "root:" not in text


def test_only_the_pdf_is_left_behind(executed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out_dir = tmp_path / "reports"
    export_pdf(executed, out_dir / "only.pdf")
    assert sorted(p.name for p in out_dir.iterdir()) == ["only.pdf"]
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in executed.parent.iterdir()) == sorted(
        ["flows_report.ipynb", "flows_report__daily__2016-01-07.ipynb"]
    )


def test_title_argument_replaces_the_heading(executed: Path, tmp_path: Path) -> None:
    text = pdf_text(export_pdf(executed, tmp_path / "t.pdf", title="Weekly summary for partners"))
    assert content_lines(text)[0] == "Weekly summary for partners"
    assert "Daily flows report" in text  # the notebook's own heading stays, as a section


def test_custom_template_file_is_used(executed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    extends_ours = inputs / "branded.asciidoc.j2"
    extends_ours.write_text(
        "{%- extends 'autoflow_report.asciidoc.j2' -%}\n"
        "{%- block body_footer -%}\n\nPREPARED-BY-TEMPLATE-MARKER\n{%- endblock body_footer -%}\n"
    )
    extends_nbconvert = inputs / "plain.asciidoc.j2"
    extends_nbconvert.write_text(
        "{%- extends 'asciidoc/index.asciidoc.j2' -%}\n"
        "{%- block header -%}\n= Plain\n\nPLAIN-NBCONVERT-MARKER\n\n{% endblock header -%}\n"
    )
    monkeypatch.chdir(tmp_path)  # templates are found by path, not from the current directory
    text = pdf_text(export_pdf(executed, tmp_path / "branded.pdf", template=extends_ours))
    assert "PREPARED-BY-TEMPLATE-MARKER" in text
    assert "Daily flows report" in text and CODE_MARKER not in text
    text = pdf_text(export_pdf(executed, tmp_path / "plain.pdf", template=extends_nbconvert.relative_to(tmp_path)))
    assert "PLAIN-NBCONVERT-MARKER" in text


def test_broken_template_is_a_report_error_with_its_line(executed: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.asciidoc.j2"
    broken.write_text("{%- extends 'autoflow_report.asciidoc.j2' -%}\n\n{% block header %}{{ oops( }}{% endblock %}\n")
    with pytest.raises(ReportError, match=r"broken\.asciidoc\.j2:3: ") as caught:
        export_pdf(executed, tmp_path / "x.pdf", template=broken)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "x.pdf").exists()


def test_template_extending_an_unknown_base_is_a_report_error(executed: Path, tmp_path: Path) -> None:
    old_style = tmp_path / "old.tpl"
    old_style.write_text("{%- extends 'asciidoc.tpl' -%}\n")
    with pytest.raises(ReportError, match=r"'asciidoc\.tpl' not found.*asciidoc/index\.asciidoc\.j2"):
        export_pdf(executed, tmp_path / "x.pdf", template=old_style)


def test_missing_template_file_is_a_report_error(executed: Path, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not exist"):
        export_pdf(executed, tmp_path / "x.pdf", template=tmp_path / "nope.j2")


def test_unreadable_notebook_is_a_report_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("not a notebook")
    with pytest.raises(ReportError, match="not a readable notebook"):
        export_pdf(bad, tmp_path / "x.pdf")


def bin_with(tmp_path: Path, *tools: str) -> Path:
    """A directory holding links to only the named tools from the real PATH."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, f"{tool} is needed for this test"
        (folder / tool).symlink_to(real)
    return folder


def test_missing_tools_name_the_debian_packages(executed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(bin_with(tmp_path)))
    with pytest.raises(ReportError) as caught:
        check_report_tools()
    message = str(caught.value)
    assert "pandoc" in message and "ruby-asciidoctor-pdf" in message and "apt-get install" in message
    with pytest.raises(ReportError, match="ruby-asciidoctor-pdf"):
        export_pdf(executed, tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_missing_asciidoctor_pdf_alone_is_named(executed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(bin_with(tmp_path, "pandoc")))
    with pytest.raises(ReportError) as caught:
        export_pdf(executed, tmp_path / "x.pdf")
    assert "ruby-asciidoctor-pdf" in str(caught.value)
    assert "Debian package pandoc" not in str(caught.value)


def test_missing_pandoc_alone_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(bin_with(tmp_path, "asciidoctor-pdf")))
    with pytest.raises(ReportError, match=r"pandoc \(Debian package pandoc\)") as caught:
        check_report_tools()
    assert "ruby-asciidoctor-pdf" not in str(caught.value)


def test_asciidoctor_failure_carries_the_gist_of_its_stderr(
    executed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = bin_with(tmp_path, "pandoc")
    fake = folder / "asciidoctor-pdf"
    fake.write_text("#!/bin/sh\necho 'asciidoctor: FATAL: the renderer ran out of ink' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ReportError, match=r"asciidoctor-pdf failed for .*exit 3.*ran out of ink") as caught:
        export_pdf(executed, tmp_path / "x.pdf")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "x.pdf").exists()


# -- reports of a notebook AutoFlow ran (its run record in the metadata), PDF polish and HTML --

ORGANISATION = "Example Analytics Unit"
RUN_RECORD = {"workflow": "daily-flows", "reference_date": "2024-03-09", "parameters": {"country_name": "Nepal"}}


@pytest.fixture(scope="module")
def executed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executed notebook with AutoFlow's run record: heading, table, figure, a removed cell."""
    folder = tmp_path_factory.mktemp("html-notebook")
    source = write_notebook(
        folder / "flows_report.ipynb",
        "md:# Daily flows report\n\nFlows by region.",
        f"import pandas as pd\nimport matplotlib.pyplot as plt\n{CODE_MARKER} = 1",
        "df = pd.DataFrame({'region': ['North', 'South'], 'flows': [1200, -830], 'note': ['calm', 'busy']})"
        ".set_index('region')\ndf",
        cell("print('REMOVED-CELL-OUTPUT')", tags=("remove-cell",)),
        "print('change: \u22123.5')",
        "md:## Chart",
        "fig, ax = plt.subplots(figsize=(4, 2))\nax.bar(df.index, df.flows)\nplt.show()",
        parameters="reference_date = '2000-01-01'",
    )
    return execute_notebook(
        source, folder / "flows_report__daily__2024-03-09.ipynb", {"reference_date": "2024-03-09"}, metadata=RUN_RECORD
    )


def test_html_report_is_one_self_contained_page_like_the_pdf(executed_run: Path, tmp_path: Path) -> None:
    html_path = export_html(executed_run, tmp_path / "reports" / "flows.html", report=ReportSpec(organisation=ORGANISATION))
    assert html_path == tmp_path / "reports" / "flows.html"
    assert sorted(p.name for p in html_path.parent.iterdir()) == ["flows.html"]  # nothing left beside it
    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert re.search(r'<meta content="width=device-width, initial-scale=1" name="viewport"/?>', page)
    assert "<title>Daily flows report</title>" in page and '<h1 class="title">Daily flows report</h1>' in page
    assert page.count("Daily flows report") == 2  # title tag and heading, not a section too
    assert "reference date 9 March 2024 (2024-03-09)" in page and "<em>daily-flows</em>" in page
    assert "Parameters: country_name = Nepal" in page
    assert f'<p class="organisation">{ORGANISATION}</p>' in page
    assert re.search(r'<span class="generated">generated at \d{4}-\d\d-\d\d \d\d:\d\d UTC</span>', page)
    assert '<img alt="Figure" src="data:image/png;base64,iVBOR' in page  # the figure, embedded
    assert re.search(r"<(script|link)\b", page) is None  # nothing to fetch, and no scripts at all
    assert re.search(r"""(src|href)=["']?(https?:)?//""", page) is None
    assert '<td class="number" style="text-align: right">1200</td>' in page
    assert '<td class="number" style="text-align: right">-830</td>' in page and "<td>calm</td>" in page
    assert "td.number { text-align: right" in page
    assert "change: -3.5" in page  # one minus sign for all
    assert "<h2" in page and "Chart" in page
    for absent in (CODE_MARKER, "plt.subplots", "In&nbsp;[", "In [", "Out[", "2000-01-01", "REMOVED-CELL-OUTPUT", "<Figure"):
        assert absent not in page, absent


def test_html_report_without_a_report_block_has_no_organisation_line(executed_run: Path, tmp_path: Path) -> None:
    page = export_html(executed_run, tmp_path / "x.html", title="For partners").read_text(encoding="utf-8")
    assert "<title>For partners</title>" in page and "Daily flows report" in page  # the heading stays a section
    assert 'class="organisation"' not in page and "generated at" in page
    page = export_html(executed_run, tmp_path / "y.html", report=ReportSpec(generated_at=False)).read_text(encoding="utf-8")
    assert "<footer" not in page and "generated at" not in page


def test_html_report_of_an_unreadable_notebook_is_a_report_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("not a notebook")
    with pytest.raises(ReportError, match="not a readable notebook"):
        export_html(bad, tmp_path / "x.html")
    assert list(tmp_path.iterdir()) == [bad]


def test_pdf_header_has_organisation_human_date_and_parameters(executed_run: Path, tmp_path: Path) -> None:
    pdf = export_pdf(executed_run, tmp_path / "flows.pdf", report=ReportSpec(organisation=ORGANISATION))
    text = pdf_text(pdf)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines[0].startswith(ORGANISATION) and GENERATED_AT.search(lines[0])
    assert lines[1] == "Daily flows report"
    assert "Workflow daily-flows · reference date 9 March 2024 (2024-03-09)" in text
    assert "Parameters: country_name = Nepal" in text
    assert "change: -3.5" in text and "\u2212" not in text
    assert "REMOVED-CELL-OUTPUT" not in text
    plain = pdf_text(export_pdf(executed_run, tmp_path / "plain.pdf", report=ReportSpec(generated_at=False)))
    assert ORGANISATION not in plain and "generated at" not in plain and "{autoflow-" not in plain


def test_pdf_tables_right_align_columns_of_numbers(executed_run: Path) -> None:
    import nbformat

    prepared, _ = prepare_notebook(nbformat.read(executed_run, as_version=4))
    table = next(o.data["text/html"] for c in prepared.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {}))
    attributes = html_to_asciidoc(table).splitlines()[0]
    assert re.search(r'cols="[^"]*,>[^,"]*,[^>,"]*"', attributes), attributes  # region, flows (right), note
