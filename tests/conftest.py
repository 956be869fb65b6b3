"""Shared pytest set-up. Fixtures live in plugin modules so each area owns its own."""

import os

# Prefect must never try the internet, and its temporary server needs time on a slow machine.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

import importlib.util

pytest_plugins = [
    m for m in ("tests.databases", "tests.fake_flowapi", "tests.prefect_server", "tests.processes") if importlib.util.find_spec(m)
]
