"""Notification target URLs in workflows.yml: Apprise URLs with ``${NAME}`` references to secrets.

A reference names a Docker secret or an environment variable; it is filled in at start
(:mod:`autoflow.notifications`), so that tokens never need to be written into workflows.yml.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

#: ``${NAME}``; NAME as environment variables and Docker secrets spell it
REFERENCE = re.compile(r"\$\{([^}]*)\}")
VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: what a reference is replaced by when only the URL's shape is checked
PLACEHOLDER = "placeholder"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


@cache
def apprise_schemes() -> frozenset[str]:
    """Every URL scheme the installed Apprise can send to (``mailto``, ``slack``, ``json``, ...)."""
    from apprise.manager_plugins import NotificationManager

    return frozenset(str(s).lower() for s in NotificationManager().schemas())  # type: ignore[no-untyped-call]


def references(template: str) -> list[str]:
    """The names ``template`` refers to with ``${NAME}``, in order (repeats kept)."""
    return REFERENCE.findall(template)


def substitute(template: str, value: Callable[[str], str]) -> str:
    """``template`` with each ``${NAME}`` replaced by ``value(NAME)``."""
    return REFERENCE.sub(lambda m: value(m.group(1)), template)


def template_problem(template: str) -> str | None:
    """What is wrong with a notification URL as written in workflows.yml (None if nothing is)."""
    for name in references(template):
        if not VALID_NAME.fullmatch(name):
            return (
                f"'${{{name}}}' is not a valid secret reference; write ${{NAME}} where NAME is a Docker secret "
                "or environment variable name (letters, digits and _, not starting with a digit)"
            )
    if "${" in REFERENCE.sub("", template):
        return "a '${' is not closed; write secret references as ${NAME}"
    if template.startswith("${"):
        return None  # the whole URL (or its scheme) comes from a secret: checked when the service starts
    shaped = substitute(template, lambda _: PLACEHOLDER)
    match = _SCHEME.match(shaped)
    if match is None:
        return "it is not an Apprise URL such as 'mailto://…', 'slack://…' or 'json://host/path' (it has no 'scheme://')"
    scheme = match.group(1).lower()
    if REFERENCE.search(template[: match.end()]):
        return None  # the scheme itself comes from a secret: checked when the service starts
    if scheme not in apprise_schemes():
        close = _close_scheme(scheme)
        hint = f" (did you mean '{close}://'?)" if close else ""
        return f"'{scheme}://' is not a notification service Apprise knows{hint}; see the Apprise wiki for the URL of each service"
    return None


def _close_scheme(scheme: str) -> str | None:
    import difflib

    close = difflib.get_close_matches(scheme, sorted(apprise_schemes()), n=1, cutoff=0.6)
    return close[0] if close else None


def shown_url(url: str) -> str:
    """Only the scheme and host of ``url`` (``mailto://smtp.example.org``, ``json://127.0.0.1:8080``), for logs.

    Everything that may carry a token (user, password, path, query) is left out; so is the host
    when it is not a host name, as many services put a token there (``slack://TOKEN/...``).
    """
    match = _SCHEME.match(url)
    if match is None:
        return "(not a URL)"
    scheme = match.group(1).lower()
    authority = re.split(r"[/?#]", url[match.end():], maxsplit=1)[0]
    host = authority.rpartition("@")[2]
    return f"{scheme}://{host}" if _HOST.fullmatch(host) else f"{scheme}://…"


#: a host name with a dot, localhost or an IP address, with an optional port
_HOST = re.compile(r"(localhost|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:\d+)?")
