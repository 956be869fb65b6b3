"""What a report keeps of a notebook (pure; no pandoc, no asciidoctor)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import nbformat

from autoflow.reports import asciidoc_text, human_date, literal_block, prepare_notebook
from autoflow.spec.models import ReportSpec
from tests.nbfactory import cell, make_notebook


def with_outputs(source: str, *outputs: nbformat.NotebookNode, tags: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    made = cell(source, tags=tags)
    made.outputs = list(outputs)
    return made


def stream(text: str, name: str = "stdout") -> nbformat.NotebookNode:
    return nbformat.v4.new_output("stream", name=name, text=text)


def display(data: dict[str, object], kind: str = "display_data") -> nbformat.NotebookNode:
    if kind == "execute_result":
        return nbformat.v4.new_output(kind, data=data, execution_count=1)
    return nbformat.v4.new_output(kind, data=data)


def sections(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    return [
        (c.metadata["autoflow"]["section_level"], c.metadata["autoflow"]["section_title"])
        for c in nb.cells
        if "autoflow" in c.metadata
    ]


def test_machinery_is_dropped_and_content_kept() -> None:
    nb = make_notebook(
        with_outputs("x = 1", stream("from the parameters cell"), tags=("parameters",)),
        with_outputs("x = 2", stream("injected"), tags=("injected-parameters",)),
        with_outputs(
            "work()",
            stream("kept text\n"),
            stream("a warning\n", name="stderr"),
            display({"application/scrapbook.scrap.json+json": {"name": "n", "data": 1}}),
            display({"text/plain": "[<matplotlib.lines.Line2D at 0x7f00aa>]"}, kind="execute_result"),
            display({"text/plain": "<Figure size 640x480 with 1 Axes>", "image/png": "iVBOR"}),
            display({"text/plain": "<Figure size 640x480 with 1 Axes>"}),
            display({"text/plain": "42"}, kind="execute_result"),
        ),
        with_outputs("hidden()", stream("secret-ish"), tags=("remove-output",)),
        with_outputs("gone()", stream("gone"), tags=("remove-cell",)),
    )
    prepared, _ = prepare_notebook(nb)
    assert [c.source for c in prepared.cells] == ["work()", "hidden()"]
    kept = prepared.cells[0].outputs
    assert [o.output_type for o in kept] == ["stream", "display_data", "execute_result"]
    assert kept[0].text == "kept text\n"
    assert "image/png" in kept[1].data
    assert kept[2].data["text/plain"] == "42"
    assert prepared.cells[1].outputs == []
    assert len(nb.cells) == 5 and len(nb.cells[2].outputs) == 7  # the original is untouched


def test_title_is_the_first_heading_and_leaves_the_body() -> None:
    nb = make_notebook("md:Some intro.\n\n# Daily flows\n\nText after.\n\n## Summary\n\n### Detail")
    prepared, resources = prepare_notebook(nb)
    assert resources["autoflow"]["title"] == "Daily flows"
    assert all("Daily flows" not in c.source for c in prepared.cells)
    # the title was the only "#": "##" becomes a top-level section
    assert sections(prepared) == [(1, "Summary"), (2, "Detail")]
    texts = [c.source for c in prepared.cells if "autoflow" not in c.metadata]
    assert [t.split() for t in texts] == [["Some", "intro.", "Text", "after."]]


def test_explicit_title_keeps_the_notebook_headings() -> None:
    nb = make_notebook("md:# Daily flows\n\n## Summary")
    prepared, resources = prepare_notebook(nb, title="For partners")
    assert resources["autoflow"]["title"] == "For partners"
    assert sections(prepared) == [(1, "Daily flows"), (2, "Summary")]


def test_explicit_title_equal_to_the_heading_is_not_repeated() -> None:
    prepared, resources = prepare_notebook(make_notebook("md:# Daily flows\n\n## Summary"), title="Daily flows")
    assert resources["autoflow"]["title"] == "Daily flows"
    assert sections(prepared) == [(1, "Summary")]


def test_heading_levels_never_skip_and_fences_are_not_headings() -> None:
    nb = make_notebook(
        "md:# Title",
        "md:#### Deep first\n\n```python\n# a comment, not a heading\n```",
        "md:# Second top\n\n### Skipped a level",
    )
    prepared, resources = prepare_notebook(nb)
    assert resources["autoflow"]["title"] == "Title"
    # another "#" remains, so no shift; levels may go down by one at most
    assert sections(prepared) == [(1, "Deep first"), (1, "Second top"), (2, "Skipped a level")]
    assert any("# a comment, not a heading" in c.source for c in prepared.cells)


def test_without_headings_the_fallback_title_is_used() -> None:
    _, resources = prepare_notebook(make_notebook("print(1)"), fallback_title="flows_report")
    assert resources["autoflow"]["title"] == "flows_report"


def test_pandas_index_name_row_is_merged_into_the_header() -> None:
    html = (
        '<table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">\n      <th></th>\n'
        "      <th>flows</th>\n    </tr>\n    <tr>\n      <th>region</th>\n      <th></th>\n    </tr>\n  </thead>\n"
        "  <tbody>\n    <tr>\n      <th>North</th>\n      <td>1</td>\n    </tr>\n  </tbody>\n</table>"
    )
    nb = make_notebook(with_outputs("df", display({"text/html": html, "text/plain": "df"}, kind="execute_result")))
    prepared, _ = prepare_notebook(nb)
    merged = prepared.cells[0].outputs[0].data["text/html"]
    assert merged.count("<tr") == 2  # one header row, one body row
    assert "<th>region</th>" in merged and "<th>flows</th>" in merged


def test_literal_block_cannot_be_closed_or_turned_into_an_include() -> None:
    block = literal_block("before\n....\n......\ninclude::/etc/passwd[]\nafter")
    lines = block.splitlines()
    assert lines[0] == "[subs=specialchars]"
    assert lines[1] == lines[-1] == "......."  # longer than any run of dots inside
    assert "\\include::/etc/passwd[]" in lines


def test_only_stale_report_workspaces_are_swept(tmp_path: Path) -> None:
    import os
    import time

    from autoflow.reports import sweep_stale_workspaces

    stale = tmp_path / ".autoflow-report-dead"
    (stale / "images").mkdir(parents=True)
    (stale / "report.adoc").write_text("= half done")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    busy = tmp_path / ".autoflow-report-busy"  # another process converting right now
    busy.mkdir()
    report = tmp_path / "old-report.pdf"
    report.write_bytes(b"%PDF-1.4")
    os.utime(report, (old, old))
    half_written = tmp_path / ".autoflow-report-0a1b.html"  # an HTML report's temporary file
    half_written.write_text("<html>")
    os.utime(half_written, (old, old))
    assert sweep_stale_workspaces(tmp_path) == 2
    assert not stale.exists() and not half_written.exists() and busy.is_dir() and report.is_file()
    assert sweep_stale_workspaces(tmp_path / "missing") == 0


def test_reference_date_is_written_for_people_and_the_header_comes_from_the_run_record() -> None:
    assert human_date(dt.date(2024, 3, 9)) == "9 March 2024"
    assert human_date(dt.date(2016, 12, 31)) == "31 December 2016"
    nb = make_notebook("md:# T")
    nb.metadata["autoflow"] = {"workflow": "flows", "reference_date": "2024-03-09", "parameters": {"country": "Nepal", "n": 3}}
    at = dt.datetime(2024, 3, 10, 6, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    _, resources = prepare_notebook(nb, report=ReportSpec(organisation="Example Analytics"), generated=at)
    facts = resources["autoflow"]
    assert facts["reference_date_text"] == "9 March 2024 (2024-03-09)"
    assert facts["workflow"] == "flows" and facts["parameters"] == ["country = Nepal", "n = 3"]
    assert facts["organisation"] == "Example Analytics"
    assert facts["generated_at_text"] == "generated at 2024-03-10 04:30 UTC"
    _, resources = prepare_notebook(nb, report=ReportSpec(generated_at=False), generated=at)
    assert resources["autoflow"]["generated_at_text"] is None and resources["autoflow"]["organisation"] is None
    _, resources = prepare_notebook(make_notebook("md:# T"))  # not run by AutoFlow: no header facts
    assert resources["autoflow"]["reference_date_text"] is None and resources["autoflow"]["parameters"] == []


def test_minus_signs_are_ascii_everywhere_and_number_cells_are_marked() -> None:
    table = (
        '<table class="dataframe"><tbody><tr><th>a</th><td>\u22121.5</td><td>text</td><td>1,234.5</td>'
        '<td>NaN</td><td><b>7</b></td><td class="data row0">12 %</td><td>-</td></tr></tbody></table>'
    )
    nb = make_notebook(
        "md:Change of \u22123 % since \u2212 last week",
        with_outputs("x", stream("delta \u22122.5\n"), display({"text/html": table, "text/plain": "\u22121.5"})),
    )
    prepared, _ = prepare_notebook(nb)
    assert prepared.cells[0].source == "Change of -3 % since \u2212 last week"  # a dash between words stays
    stream_out, table_out = prepared.cells[1].outputs
    assert stream_out.text == "delta -2.5\n" and table_out.data["text/plain"] == "-1.5"
    html = table_out.data["text/html"]
    number = 'class="number" style="text-align: right"'
    assert f"<td {number}>-1.5</td>" in html and f"<td {number}>1,234.5</td>" in html and f"<td {number}>NaN</td>" in html
    assert "<td>text</td>" in html and "<td><b>7</b></td>" in html and "<td>-</td>" in html
    assert '<td class="number data row0" style="text-align: right">12 %</td>' in html


def test_asciidoc_text_is_shown_as_written() -> None:
    assert asciidoc_text("a_b *c* {x}") == "pass:c[a_b *c* {x}]"
    assert asciidoc_text("x]y") == "pass:c[x\\]y]"
    assert asciidoc_text("ends\\") == "pass:c[ends\\ ]"
