"""The floor: a plain Python loop calling papermill.execute_notebook, one notebook after another.

    python benchmarks/contenders/floor.py INPUTS_DIR OUTPUTS_DIR RUNS_JSON

Runs with AutoFlow's interpreter (so the same papermill and the same kernel environment).
"""

import json
import sys
from pathlib import Path
from typing import Any

import papermill


def run_date(inputs: Path, outputs: Path, run: dict[str, Any]) -> None:
    """One date of the backlog: compute, then render reading compute's executed copy."""
    date = run["reference_date"]
    compute = outputs / f"compute-{date}.ipynb"
    papermill.execute_notebook(
        str(inputs / "compute.ipynb"), str(compute), kernel_name="python3", progress_bar=False,
        parameters={"reference_date": date, "date_ranges": run["date_ranges"]},
    )
    papermill.execute_notebook(
        str(inputs / "render.ipynb"), str(outputs / f"render-{date}.ipynb"), kernel_name="python3",
        progress_bar=False, parameters={"reference_date": date, "compute_notebook": str(compute)},
    )


def main() -> int:
    inputs, outputs, runs_file = (Path(a) for a in sys.argv[1:4])
    outputs.mkdir(parents=True, exist_ok=True)
    for run in json.loads(runs_file.read_text()):
        run_date(inputs, outputs, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
