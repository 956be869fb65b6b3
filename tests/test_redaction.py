"""Secret redaction (autoflow.redaction): which values are hidden, whatever else is wrong with the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoflow.redaction import Redactor
from autoflow.settings import Settings

TOKEN = "supersecrettoken123"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """This process's environment with no secrets but the ones a test sets, and an empty secrets directory."""
    for name in ("FLOWAPI_TOKEN", "AUTOFLOW_DB_PASSWORD", "AUTOFLOW_DB_URI", "AUTOFLOW_LOG_LEVEL", "AUTOFLOW_NOTEBOOK_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTOFLOW_SECRETS_DIR", str(tmp_path))
    return monkeypatch


@pytest.mark.parametrize("invalid", [("AUTOFLOW_NOTEBOOK_TIMEOUT", "6h"), ("AUTOFLOW_LOG_LEVEL", "loud")])
def test_an_invalid_setting_does_not_turn_redaction_off(env: pytest.MonkeyPatch, invalid: tuple[str, str]) -> None:
    env.setenv("FLOWAPI_TOKEN", TOKEN)
    env.setenv(*invalid)
    assert Redactor.from_env().text(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer [FLOWAPI_TOKEN redacted]"


def test_an_unreadable_secret_skips_only_that_secret(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "AUTOFLOW_DB_PASSWORD").write_bytes(b"\xff\xfe not text")
    env.setenv("FLOWAPI_TOKEN", TOKEN)
    assert TOKEN not in Redactor.from_env().text(TOKEN)


@pytest.mark.parametrize("written", ["pa%40ss-word-long", "plainpassword99"])
def test_a_password_written_into_the_database_uri_is_redacted(env: pytest.MonkeyPatch, written: str) -> None:
    env.setenv("AUTOFLOW_DB_URI", f"postgresql://autoflow:{written}@db:5432/autoflow")
    from_env = Redactor.from_env()
    from_settings = Redactor.from_settings(Settings.from_env())
    decoded = written.replace("%40", "@")
    for redactor in (from_env, from_settings):
        shown = redactor.text(f"could not connect with {written} / {decoded}")
        assert written not in shown and decoded not in shown
        assert "[AUTOFLOW_DB_URI password redacted]" in shown


def test_short_or_placeholder_uri_passwords_are_not_searched_for(env: pytest.MonkeyPatch) -> None:
    env.setenv("AUTOFLOW_DB_URI", "postgresql://autoflow:{}@db/autoflow")
    assert not Redactor.from_env()
    env.setenv("AUTOFLOW_DB_URI", "postgresql://autoflow:pw@db/autoflow")
    assert not Redactor.from_env()
    assert Redactor.from_env().text("pw") == "pw"


def test_notebook_redaction_names_what_it_found(env: pytest.MonkeyPatch) -> None:
    env.setenv("FLOWAPI_TOKEN", TOKEN)
    nb = {"cells": [{"source": [f"token = '{TOKEN}'\n"], "outputs": [{"text": "ok"}]}]}
    assert Redactor.from_env().notebook(nb) == {"FLOWAPI_TOKEN"}
    assert nb["cells"][0]["source"] == ["token = '[FLOWAPI_TOKEN redacted]'\n"]
