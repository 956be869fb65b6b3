"""The parallel floor: the plain papermill loop of floor.py, over a few threads.

    python benchmarks/contenders/floor_threads.py INPUTS_DIR OUTPUTS_DIR RUNS_JSON THREADS

Dates go through a queue; each thread takes the next date and executes its compute notebook,
then its render notebook, then takes the next. No scheduler, no run history, no Prefect: the
honest bar for a scheduler that runs THREADS runs at once. Runs with AutoFlow's interpreter.
"""

import json
import queue
import sys
import threading
from pathlib import Path
from typing import Any

from floor import run_date  # this script's folder is on sys.path: the sequential loop's date


def main() -> int:
    inputs, outputs, runs_file = (Path(a) for a in sys.argv[1:4])
    threads = int(sys.argv[4])
    outputs.mkdir(parents=True, exist_ok=True)
    todo: queue.Queue[dict[str, Any]] = queue.Queue()
    for run in json.loads(runs_file.read_text()):
        todo.put(run)
    failures: list[BaseException] = []

    def work() -> None:
        while not failures:
            try:
                run = todo.get_nowait()
            except queue.Empty:
                return
            try:
                run_date(inputs, outputs, run)
            except BaseException as exc:  # noqa: BLE001 - stop every thread, report below
                failures.append(exc)

    pool = [threading.Thread(target=work, name=f"floor-{i}") for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    for exc in failures:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
