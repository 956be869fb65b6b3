"""Virtualenvs the harness builds for itself under ``benchmarks/.venvs/`` (git-ignored).

- ``ploomber``: Ploomber 0.23.3, with the notebooks' own packages (pandas, matplotlib,
  scrapbook, ipykernel, papermill, ...) pinned to the versions in AutoFlow's requirements.lock,
  so every contender's kernels run the same code.
- ``tools``: py-spy (sampling profiler). Never added to AutoFlow's lock.

Each is built once and rebuilt when its package list changes (a marker file records it).
Packages come from the package index pip is configured with; no index is named here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from benchmarks.common import REPO, VENVS, base_env, log

PLOOMBER_VERSION = "0.23.3"
#: packages whose versions Ploomber's kernels must share with AutoFlow's
KERNEL_PACKAGES = ("pandas", "matplotlib", "scrapbook", "ipykernel", "papermill", "nbclient", "nbformat",
                   "jupyter-client", "numpy", "pyzmq", "tornado", "ipython")  # fmt: skip
TOOLS = ("py-spy==0.4.3",)  # exact, like every other version the benchmarks run
BASE_PYTHON = "python3.11"


def locked_versions(names: tuple[str, ...]) -> list[str]:
    """``name==version`` for each of ``names`` found in requirements.lock."""
    lock = (REPO / "requirements.lock").read_text()
    pins = []
    for name in names:
        match = re.search(rf"^{re.escape(name)}==([^\s;]+)", lock, re.MULTILINE | re.IGNORECASE)
        if match:
            pins.append(f"{name}=={match.group(1)}")
    return pins


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_venv(name: str, packages: list[str], *, build: bool = True) -> Path | None:
    """The interpreter of venv ``name`` holding ``packages``; built if missing and ``build``."""
    venv = VENVS / name
    marker = venv / ".bench-packages.json"
    wanted = json.dumps(sorted(packages))
    if marker.is_file() and marker.read_text() == wanted and _python(venv).exists():
        return _python(venv)
    if not build:
        return None
    log(f"building {venv} with {' '.join(packages)} (once; a few minutes)")
    if venv.exists():
        subprocess.run(["rm", "-rf", str(venv)], check=True)
    base = BASE_PYTHON if _which(BASE_PYTHON) else sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    env = base_env(PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(
        [str(_python(venv)), "-m", "pip", "install", "--quiet", *packages],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        tail = "\n".join(line for line in result.stderr.splitlines() if "is ignored" not in line)[-2000:]
        raise RuntimeError(f"could not build {venv}: pip failed:\n{tail}")
    marker.write_text(wanted)
    return _python(venv)


def _which(program: str) -> bool:
    from shutil import which

    return which(program) is not None


def ploomber_python(*, build: bool = True) -> Path | None:
    return ensure_venv("ploomber", [f"ploomber=={PLOOMBER_VERSION}", *locked_versions(KERNEL_PACKAGES)], build=build)


def py_spy(*, build: bool = True) -> Path | None:
    python = ensure_venv("tools", list(TOOLS), build=build)
    return None if python is None else python.parent / "py-spy"
