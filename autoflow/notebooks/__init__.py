"""Notebook parameters, output names, and execution with papermill on a real kernel.

papermill, nbclient and jupyter_client stay behind this package: callers get
:class:`~autoflow.errors.NotebookExecutionError`, never their exceptions, and their log records
arrive through :mod:`logging` at DEBUG.

- :mod:`.naming`: the values injected into a notebook and the names of its copies (pure);
- :mod:`.kernels`: starting a kernel (this environment's Python, no secrets);
- :mod:`.kernel_pool`: kernels started ahead of need, each used by one notebook;
- :mod:`.engine`: papermill's engine with AutoFlow's time and output budgets;
- :mod:`.watchdog`: each execution in a thread of its own, bounded from the calling thread;
- :mod:`.execution` and :mod:`.failures`: running a notebook, and a failure as one line.
"""

from autoflow.notebooks.execution import DEFAULT_MAX_OUTPUT_BYTES, ExecutionLimits, execute_notebook
from autoflow.notebooks.naming import build_parameters, output_stem

__all__ = ["DEFAULT_MAX_OUTPUT_BYTES", "ExecutionLimits", "build_parameters", "execute_notebook", "output_stem"]
