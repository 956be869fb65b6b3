"""A valid workflows.yml and the inputs directory it needs, for config and CLI tests."""

import json
from pathlib import Path

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def notebook_with_parameters(source: str) -> dict[str, object]:
    """A notebook whose only cell, tagged ``parameters``, is ``source``."""
    cell: dict[str, object] = {"cell_type": "code", "execution_count": None, "id": "p", "metadata": {"tags": ["parameters"]}, "outputs": [], "source": source}
    return {**NOTEBOOK, "cells": [cell]}


#: the parameters cells of the notebooks VALID names
PARAMETER_CELLS = {"a.ipynb": "country = 'x'\nday = None\nranges = []\nurl = None", "b.ipynb": "upstream = None"}

VALID = """\
workflows:
  - name: flows
    notebooks:
      run:
        filename: a.ipynb
        parameters:
          country: country_name
          day: reference_date
          ranges: date_ranges
          url: flowapi_url
      report:
        filename: b.ipynb
        parameters:
          upstream: run
        output:
          format: pdf
          template: custom.tpl
        timeout: 600
        retries: 2
available_dates_sensor:
  schedule: "0 2 * * *"
  cdr_types: [calls, sms]
  workflows:
    - workflow_name: flows
      parameters:
        country_name: Nepal
      earliest_date: 2016-01-01
      date_stencil: [[2016-01-01, 2016-01-03], -3, [-2, 0]]
"""


def make_inputs(tmp_path: Path) -> Path:
    """An inputs directory with the files VALID names, plus some broken ones."""
    for name, source in PARAMETER_CELLS.items():
        (tmp_path / name).write_text(json.dumps(notebook_with_parameters(source)))
    (tmp_path / "custom.tpl").write_text("{% extends 'asciidoc/index.asciidoc.j2' %}")
    (tmp_path / "not_a_notebook.ipynb").write_text('{"hello": 1}')
    (tmp_path / "broken.ipynb").write_text("{not json")
    (tmp_path / "notes.txt").write_text("x")
    return tmp_path
