"""AutoFlow's secrets: which variables hold them, and removing their values from text and notebooks.

The one place that knows the secrets (FLOWAPI_TOKEN, AUTOFLOW_DB_PASSWORD) and the settings that
may contain one (AUTOFLOW_DB_URI can have the password written into it). Child processes get
:func:`environment_without_secrets`; text and notebooks that leave AutoFlow go through a
:class:`Redactor` made from :class:`~autoflow.settings.Settings`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from typing import Any

from autoflow.errors import SettingsError
from autoflow.settings import Settings

__all__ = ["SECRET_NAMES", "SECRET_VARIABLES", "Redactor", "environment_without_secrets"]

#: the secrets AutoFlow reads (environment variable or Docker secret of that name)
SECRET_NAMES = ("AUTOFLOW_DB_PASSWORD", "FLOWAPI_TOKEN")
#: variables that hold a secret or may contain one, hidden from processes that do not need them
SECRET_VARIABLES = (*SECRET_NAMES, "AUTOFLOW_DB_URI", "PREFECT_API_KEY")
#: secrets shorter than this are not searched for (they would match ordinary text)
MIN_REDACTED_SECRET_LENGTH = 8


def environment_without_secrets(env: Mapping[str, str] | None = None, *, keep: Collection[str] = ()) -> dict[str, str]:
    """``env`` (default ``os.environ``) without :data:`SECRET_VARIABLES`, except those in ``keep``."""
    env = os.environ if env is None else env
    hidden = set(SECRET_VARIABLES) - set(keep)
    return {name: value for name, value in env.items() if name not in hidden}


class Redactor:
    """Replaces the values of AutoFlow's secrets with ``[NAME redacted]``."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self._secrets = {
            name: value for name, value in secrets.items() if value and len(value) >= MIN_REDACTED_SECRET_LENGTH
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        """A redactor for the secrets in ``settings`` (the token and the database password)."""
        found = {"AUTOFLOW_DB_PASSWORD": settings.db_password, "FLOWAPI_TOKEN": settings.flowapi_token}
        return cls({name: secret.get() for name, secret in found.items() if secret is not None})

    @classmethod
    def from_env(cls) -> Redactor:
        """A redactor for the secrets of this process's settings; none if they cannot be read.

        An unreadable setting is the settings check's to report, not the redactor's.
        """
        try:
            return cls.from_settings(Settings.from_env())
        except SettingsError:
            return cls({})

    def __repr__(self) -> str:
        return f"Redactor({sorted(self._secrets)})"

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, text: str) -> str:
        """``text`` with every secret value replaced by ``[NAME redacted]``."""
        return str(self._replace(text, set()))

    def notebook(self, nb: Any) -> set[str]:
        """Replace secret values in ``nb`` (a notebook, or any JSON-like node) in place; returns the names found."""
        found: set[str] = set()
        if not self._secrets:
            return found
        text = json.dumps(nb, default=str)
        if any(value in text or json.dumps(value)[1:-1] in text for value in self._secrets.values()):
            self._replace(nb, found)
        return found

    def _replace(self, node: Any, found: set[str]) -> Any:
        if isinstance(node, str):
            for name, value in self._secrets.items():
                if value in node:
                    node = node.replace(value, f"[{name} redacted]")
                    found.add(name)
            return node
        if isinstance(node, list):
            return [self._replace(item, found) for item in node]
        if isinstance(node, dict):
            for key in list(node):
                node[key] = self._replace(node[key], found)
        return node
