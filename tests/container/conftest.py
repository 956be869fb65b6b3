"""The container tests build and run the real image (minutes, gigabytes): only on request.

They run with ``make test-container`` (``pytest -m container tests/container``); any other
selection leaves them out, so ``make test`` stays as fast as it was.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "container: builds and runs the Docker image with buildah (make test-container)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "container" in (config.getoption("markexpr") or "") or os.environ.get("AUTOFLOW_TEST_CONTAINER") == "1":
        return
    deselected = [item for item in items if item.get_closest_marker("container")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("container")]
