"""Ploomber: one DAG of NotebookRunner tasks, compute-DATE >> render-DATE for every run.

    python benchmarks/contenders/ploomber_dag.py INPUTS_DIR OUTPUTS_DIR RUNS_JSON PROCESSES

Runs in Ploomber's own virtualenv. PROCESSES > 1 builds with Ploomber's Parallel executor
(a process pool), 1 with its default Serial executor.
"""

import json
import sys
from pathlib import Path

from ploomber import DAG
from ploomber.executors import Parallel, Serial
from ploomber.products import File
from ploomber.tasks import NotebookRunner


def main() -> int:
    inputs, outputs, runs_file = (Path(a) for a in sys.argv[1:4])
    processes = int(sys.argv[4])
    outputs.mkdir(parents=True, exist_ok=True)
    executor = Parallel(processes=processes) if processes > 1 else Serial()
    dag = DAG(executor=executor)
    for run in json.loads(runs_file.read_text()):
        date = run["reference_date"]
        compute_out = outputs / f"compute-{date}.ipynb"
        compute = NotebookRunner(
            inputs / "compute.ipynb", File(compute_out), dag, name=f"compute-{date}",
            params={"reference_date": date, "date_ranges": run["date_ranges"]},
            kernelspec_name="python3", papermill_params={"progress_bar": False},
        )
        render = NotebookRunner(
            inputs / "render.ipynb", File(outputs / f"render-{date}.ipynb"), dag, name=f"render-{date}",
            params={"reference_date": date, "compute_notebook": str(compute_out)},
            kernelspec_name="python3", papermill_params={"progress_bar": False},
        )
        compute >> render
    dag.build(force=True, show_progress=False)  # raises DAGBuildError if any task failed
    return 0


if __name__ == "__main__":
    sys.exit(main())
