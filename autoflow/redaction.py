"""AutoFlow's secrets: which variables hold them, and removing their values from text and notebooks.

The one place that knows the secrets (FLOWAPI_TOKEN, AUTOFLOW_DB_PASSWORD) and the settings that
may contain one (AUTOFLOW_DB_URI can have the password written into it). Child processes get
:func:`environment_without_secrets`; text and notebooks that leave AutoFlow go through a
:class:`Redactor` made from :class:`~autoflow.settings.Settings`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from autoflow.errors import SettingsError
from autoflow.settings import DEFAULT_SECRETS_DIR, Settings, read_secret

__all__ = [
    "SECRET_NAMES", "SECRET_VARIABLES", "URI_PASSWORD_NAME", "Redactor", "environment_without_secrets", "hide_config_secrets", "secret_names", "uri_password",
]  # fmt: skip

#: the secrets AutoFlow reads (environment variable or Docker secret of that name)
SECRET_NAMES = ("AUTOFLOW_DB_PASSWORD", "FLOWAPI_TOKEN")
#: variables that hold a secret or may contain one, hidden from processes that do not need them
SECRET_VARIABLES = (*SECRET_NAMES, "AUTOFLOW_DB_URI", "PREFECT_API_KEY")
#: how a password written into AUTOFLOW_DB_URI shows once redacted
URI_PASSWORD_NAME = "AUTOFLOW_DB_URI password"
#: secrets shorter than this are not searched for (they would match ordinary text)
MIN_REDACTED_SECRET_LENGTH = 8
#: secrets workflows.yml names (a sql source's ``password_secret``, ``${NAME}`` in notification
#: URLs), added by :func:`hide_config_secrets` whenever this process loads a configuration
_config_secrets: set[str] = set()


def hide_config_secrets(names: Iterable[str]) -> None:
    """Treat the variables / Docker secrets ``names`` like AutoFlow's own secrets from now on in this
    process: hidden from child processes, redacted from notebooks and logs. Names are never forgotten
    (a reload that drops one must not expose a value a notebook could still read)."""
    _config_secrets.update(names)


def secret_names() -> tuple[str, ...]:
    """Every secret name this process knows: AutoFlow's own and those its configuration named."""
    return (*SECRET_NAMES, *sorted(_config_secrets - set(SECRET_NAMES)))


def environment_without_secrets(env: Mapping[str, str] | None = None, *, keep: Collection[str] = ()) -> dict[str, str]:
    """``env`` (default ``os.environ``) without :data:`SECRET_VARIABLES`, except those in ``keep``."""
    env = os.environ if env is None else env
    hidden = (set(SECRET_VARIABLES) | _config_secrets) - set(keep)
    return {name: value for name, value in env.items() if name not in hidden}


def uri_password(uri: str | None) -> str | None:
    """The password written into a database URI (``postgresql://user:PASSWORD@host/db``), if any."""
    if not uri or "://" not in uri:
        return None
    try:
        password = urlsplit(uri).password
    except ValueError:  # not a URL the database would accept either
        return None
    return password or None


class Redactor:
    """Replaces the values of AutoFlow's secrets with ``[NAME redacted]``."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        pairs = secrets.items() if isinstance(secrets, Mapping) else secrets
        #: (name, value) pairs, longest value first so a secret containing another is replaced whole
        self._secrets = sorted(
            {(name, value) for name, value in pairs if value and len(value) >= MIN_REDACTED_SECRET_LENGTH},
            key=lambda pair: (-len(pair[1]), pair[0]),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        """A redactor for the secrets in ``settings``: the token, the database password and one written into the URI."""
        found = {"AUTOFLOW_DB_PASSWORD": settings.db_password, "FLOWAPI_TOKEN": settings.flowapi_token}
        secrets = [(name, secret.get()) for name, secret in found.items() if secret is not None]
        return cls(secrets + _uri_secrets(settings.db_uri_raw))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Redactor:
        """A redactor for this process's secrets (``env``, default ``os.environ``, and the secrets directory).

        Each secret is read on its own, so an invalid setting or one unreadable secret file never
        leaves the others unredacted (reporting those is the settings check's job).
        """
        env = os.environ if env is None else env
        secrets_dir = Path(env.get("AUTOFLOW_SECRETS_DIR") or DEFAULT_SECRETS_DIR)
        secrets: list[tuple[str, str]] = []
        for name in secret_names():
            try:
                secret = read_secret(name, env, secrets_dir)
            except (SettingsError, ValueError):  # unreadable, or not UTF-8 text
                continue
            if secret is not None:
                secrets.append((name, secret.get()))
        return cls(secrets + _uri_secrets(env.get("AUTOFLOW_DB_URI")))

    def __repr__(self) -> str:
        return f"Redactor({sorted({name for name, _ in self._secrets})})"

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
        if any(value in text or json.dumps(value)[1:-1] in text for _, value in self._secrets):
            self._replace(nb, found)
        return found

    def _replace(self, node: Any, found: set[str]) -> Any:
        if isinstance(node, str):
            for name, value in self._secrets:
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


def _uri_secrets(uri: str | None) -> list[tuple[str, str]]:
    """The password in the database URI, as written and percent-decoded (``{}`` is the password placeholder)."""
    password = uri_password(uri)
    if password is None or password == "{}":
        return []
    return [(URI_PASSWORD_NAME, password), (URI_PASSWORD_NAME, unquote(password))]
