"""Available dates from another workflow's runs: the reference dates for which it succeeded.

``source: {type: workflow, workflow: daily-region-report}`` makes a date available once
``daily-region-report`` succeeded for it, as the run history says now (its latest attempt): a
failed date becomes available when a retry or a rerun succeeds, on the next tick. With a date
stencil (``date_stencil: [[-6, 0]]``) a weekly report runs once seven daily runs succeeded.

Which runs count: with ``parameters`` (one mapping, or a list of them), a date is available
when the run with each listed parameter set succeeded; without, when the run of every
parameter set the sensor's entries give that workflow succeeded (every region's run, for a
roll-up), or, when no entry runs it, any of its runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from autoflow.parameters import canonical_json, params_hash

if TYPE_CHECKING:
    from autoflow.store import RunStore

__all__ = ["WorkflowSource"]


class WorkflowSource:
    """Reference dates for which ``workflow`` succeeded with every one of ``parameter_sets``."""

    def __init__(self, workflow: str, store: RunStore | None, parameter_sets: Sequence[Mapping[str, Any]] = ()) -> None:
        self.workflow = workflow
        self.store = store
        #: empty: any run of the workflow counts
        self.parameter_sets = tuple(dict(p) for p in parameter_sets)
        self._digests = tuple(dict.fromkeys(params_hash(p) for p in self.parameter_sets))

    def describe(self) -> str:
        return f"the run history: runs of '{self.workflow}' that succeeded{self._which()}"

    def _which(self) -> str:
        if not self.parameter_sets:
            return ""
        shown = "; ".join(canonical_json(p) for p in self.parameter_sets[:3])
        more = f" and {len(self.parameter_sets) - 3} more" if len(self.parameter_sets) > 3 else ""
        return f" with each of the parameters {shown}{more}"

    def __repr__(self) -> str:
        return f"WorkflowSource({self.workflow!r}, parameter_sets={self.parameter_sets!r})"

    def available_dates(self) -> dict[str, list[dt.date]]:
        """``{"workflow NAME": sorted dates}``; RunStoreError (a DateSourceError's sibling) when the history can't be read."""
        if self.store is None:  # no run history yet: nothing has succeeded
            return {f"workflow {self.workflow}": []}
        succeeded = self.store.succeeded_dates(self.workflow)
        if not self._digests:
            days = set().union(*succeeded.values()) if succeeded else set()
        else:
            days = set(succeeded.get(self._digests[0], ()))
            for digest in self._digests[1:]:
                days &= succeeded.get(digest, set())
        return {f"workflow {self.workflow}": sorted(days)}
