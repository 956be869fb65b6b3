"""What changed between two configurations, in words, for the service's reload log line. Pure.

The models are frozen dataclasses whose positions are ``compare=False``, so moving a block
within workflows.yml is no change; a sensor entry is known by its workflow and parameters
(as the run history knows its runs), so changing an entry's parameters removes one entry and
adds another.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from autoflow.parameters import canonical_json
from autoflow.spec.models import AutoFlowConfig, SensorEntry, SensorSpec, WorkflowSpec

__all__ = ["describe_changes", "describe_entry"]


def describe_entry(entry: SensorEntry) -> str:
    """``sensor entry 'daily' (region=north)``: how the change summary names an entry."""
    params = ", ".join(f"{name}={value}" for name, value in entry.parameters.items())
    return f"sensor entry '{entry.workflow_name}'" + (f" ({params})" if params else "")


def describe_changes(old: AutoFlowConfig, new: AutoFlowConfig) -> list[str]:
    """One phrase per change from ``old`` to ``new`` (empty when they are equal), in a fixed order:
    workflows, sensor entries, schedule, source, the sensor's other keys, notifications, report."""
    changes = _workflows(old.workflows, new.workflows)
    changes += _entries(old.sensor.workflows, new.sensor.workflows)
    changes += _sensor(old.sensor, new.sensor)
    if old.notifications != new.notifications:
        before, after = len(old.notifications), len(new.notifications)
        changes.append(f"notifications changed ({_targets(before)} → {_targets(after)})" if before != after else "notifications changed")
    if old.report != new.report:
        changes.append("report block changed")
    return changes


def _targets(n: int) -> str:
    return f"{n} target{'' if n == 1 else 's'}"


def _workflows(old: Mapping[str, WorkflowSpec], new: Mapping[str, WorkflowSpec]) -> list[str]:
    changes = [f"workflow '{name}' added" for name in new if name not in old]
    changes += [f"workflow '{name}' removed" for name in old if name not in new]
    for name, workflow in new.items():
        before = old.get(name)
        if before is not None and before != workflow:
            changes.append(f"workflow '{name}' changed{_notebook_changes(before, workflow)}")
    return changes


def _notebook_changes(old: WorkflowSpec, new: WorkflowSpec) -> str:
    parts = [f"'{label}' added" for label in new.notebooks if label not in old.notebooks]
    parts += [f"'{label}' removed" for label in old.notebooks if label not in new.notebooks]
    parts += [
        f"'{label}' changed" for label, notebook in new.notebooks.items() if label in old.notebooks and old.notebooks[label] != notebook
    ]
    if not parts and list(old.notebooks) != list(new.notebooks):
        parts = ["order"]
    return f" (notebooks: {', '.join(parts)})" if parts else ""


def _entry_key(entry: SensorEntry) -> tuple[str, str]:
    return entry.workflow_name, canonical_json(entry.parameters)


def _entries(old: tuple[SensorEntry, ...], new: tuple[SensorEntry, ...]) -> list[str]:
    before = {_entry_key(e): e for e in old}
    after = {_entry_key(e): e for e in new}
    changes = [f"{describe_entry(e)} added" for key, e in after.items() if key not in before]
    changes += [f"{describe_entry(e)} removed" for key, e in before.items() if key not in after]
    for key, entry in after.items():
        previous = before.get(key)
        if previous is not None and previous != entry:
            changes.append(f"{describe_entry(entry)} changed: {', '.join(_differing_fields(previous, entry))}")
    return changes


def _differing_fields(old: Any, new: Any) -> list[str]:
    """Names of the compared fields of two dataclasses of one type whose values differ."""
    return [
        f.name for f in dataclasses.fields(old) if f.compare and getattr(old, f.name) != getattr(new, f.name)
    ]


def _sensor(old: SensorSpec, new: SensorSpec) -> list[str]:
    changes = []
    if old.schedule != new.schedule:
        changes.append(f"schedule {_quoted(old.schedule)} → {_quoted(new.schedule)}")
    if old.source != new.source:
        changes.append(f"source {_source(old)} → {_source(new)}")
    if old.max_runs_per_tick != new.max_runs_per_tick:
        changes.append(f"max_runs_per_tick {old.max_runs_per_tick} → {new.max_runs_per_tick}")
    return changes


def _quoted(schedule: str | None) -> str:
    return "null" if schedule is None else f"'{schedule}'"


def _source(sensor: SensorSpec) -> str:
    from autoflow.sources import source_registry

    found = source_registry.find(sensor.source.type)
    return found.describe(sensor.source) if found is not None else sensor.source.type
