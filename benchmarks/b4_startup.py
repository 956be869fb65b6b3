"""B4 start-up: ``autoflow validate`` as a whole process, and where its import time goes.

``autoflow validate`` runs on ``examples/inputs`` (or the example directory that exists, else
the B1 inputs), alternating with ``python -c pass`` (the interpreter's own floor) and
``python -c "import autoflow"``. ``python -X importtime`` then lists the heaviest imports.
The time from ``python -m autoflow`` to its first notebook kernel comes from B1 (process-tree
sampling: the creation time of the first ipykernel process).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import PYTHON, REPO, base_env, log, run_process, summarize
from benchmarks.context import Bench


def example_inputs(bench: Bench) -> Path:
    for candidate in (REPO / "examples" / "inputs", REPO / "examples" / "local"):
        if (candidate / "workflows.yml").is_file():
            return candidate
    return bench.b1_inputs


def run(bench: Bench) -> dict[str, Any]:
    inputs = example_inputs(bench)
    root = bench.work / "b4"
    env = base_env()
    commands = {
        "python -c pass": [PYTHON, "-c", "pass"],
        "python -c 'import autoflow'": [PYTHON, "-c", "import autoflow"],
        "autoflow validate": [PYTHON, "-m", "autoflow", "validate", "--inputs", str(inputs)],
    }
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(bench.cfg.b4_repeats + 1):  # the first round warms the page cache and is dropped
        for name, command in commands.items():
            proc = run_process(command, env=env, cwd=root if root.exists() else REPO, timeout=120,
                               log_file=root / f"{name.split()[-1].strip(chr(39))}-{i}.log", sample=False)  # fmt: skip
            if not proc.ok:
                bench.error(f"B4 {name}: exit {proc.returncode}: {proc.stderr_tail[-500:]}")
            if i:
                walls[name].append(proc.wall)
    result: dict[str, Any] = {
        "inputs": str(inputs.relative_to(REPO)) if inputs.is_relative_to(REPO) else str(inputs),
        "wall": {name: summarize(values) for name, values in walls.items()},
        "imports": import_times(commands["autoflow validate"], env, root),
    }
    log(f"B4 autoflow validate: median {result['wall']['autoflow validate'].get('median')} s")
    return result


def import_times(command: list[str], env: dict[str, str], root: Path, top: int = 12) -> dict[str, Any]:
    """``python -X importtime``: total import time and the heaviest top-level imports (cumulative)."""
    proc = run_process([command[0], "-X", "importtime", *command[1:]], env=env, cwd=root, timeout=120,
                       log_file=root / "importtime.log", sample=False)  # fmt: skip
    rows = []
    for line in (root / "importtime.log").read_text(errors="replace").splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        fields = line[len("import time:"):].split("|", 2)
        try:
            self_s, cumulative_s = int(fields[0]) / 1e6, int(fields[1]) / 1e6
        except (ValueError, IndexError):
            continue
        name = fields[2][1:]  # one space, then two per level of nesting
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, name.strip(), self_s, cumulative_s))
    # the output lists children before their parent; walking it backwards meets parents first
    by_package: dict[str, float] = {}
    from_autoflow: dict[str, float] = {}
    ancestors: list[str] = []
    for depth, name, _self_s, cumulative_s in reversed(rows):
        del ancestors[depth:]
        parent = ancestors[-1] if ancestors else ""
        package, parent_package = name.split(".")[0], parent.split(".")[0]
        if package != parent_package:
            by_package[package] = by_package.get(package, 0.0) + cumulative_s
            if parent_package == "autoflow":
                key = f"{parent} imports {name}"
                from_autoflow[key] = from_autoflow.get(key, 0.0) + cumulative_s
        ancestors.append(name)
    return {
        "ok": proc.ok,
        "total_seconds": round(sum(r[2] for r in rows), 3),
        "by_package": [{"package": p, "seconds": round(t, 3)} for p, t in sorted(by_package.items(), key=lambda kv: -kv[1])[:top]],
        "third_party_imported_by_autoflow": [{"import": k, "seconds": round(t, 3)} for k, t in sorted(from_autoflow.items(), key=lambda kv: -kv[1])[:top]],
    }
