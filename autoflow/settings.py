"""Environment variables and Docker secrets, read once into a frozen :class:`Settings`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from autoflow.errors import SettingsError

DEFAULT_SECRETS_DIR = Path("/run/secrets")
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

#: what each variable is for, used in "missing variable" messages
DESCRIPTIONS = {
    "AUTOFLOW_INPUTS_DIR": "the directory holding workflows.yml and the notebooks (or pass --inputs DIR)",
    "AUTOFLOW_OUTPUTS_DIR": "the directory where executed notebooks and PDF reports are written (or pass --outputs DIR)",
    "AUTOFLOW_DB_PASSWORD": "the database password, substituted for '{}' in AUTOFLOW_DB_URI",
    "FLOWAPI_URL": "the FlowAPI address the sensor asks for available dates",
    "FLOWAPI_TOKEN": "the FlowAPI access token (environment variable or /run/secrets/FLOWAPI_TOKEN)",
}


class Secret:
    """A string that never shows itself in ``repr``/``str``; call :meth:`get` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("secrets are not picklable")


def _positive_number(env: Mapping[str, str], name: str, default: float, *, integer: bool) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise SettingsError(f"{name}={raw!r} is not {kind}; set it to {kind} greater than 0") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0")
    return value


def default_kernel_pool() -> int:
    """Kernels waiting at most by default: one per core. Two per core made a 2-thread backlog ~4 %
    faster but its peak memory 2.0-2.3x a plain 2-thread papermill loop's (1.6x with one per core):
    a waiting kernel holds ~50 MB."""
    return os.cpu_count() or 1


def _kernel_pool(env: Mapping[str, str]) -> int:
    raw = env.get("AUTOFLOW_KERNEL_POOL")
    if raw is None or raw.strip() == "":
        return default_kernel_pool()
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise SettingsError(
            f"AUTOFLOW_KERNEL_POOL={raw!r} is not a whole number of 0 or more; "
            f"set it to the most kernels to start ahead of need, or 0 for none"
        )
    return value


def read_secret(name: str, env: Mapping[str, str], secrets_dir: Path) -> Secret | None:
    """``secrets_dir/NAME`` when that file exists (trailing newline stripped), else ``env[NAME]``."""
    path = secrets_dir / name
    if path.is_file():
        try:
            return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as exc:
            raise SettingsError(f"cannot read secret {name} from {path}: {exc.strerror}") from None
    value = env.get(name)
    return None if value is None else Secret(value)


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, at, host = rest.rpartition("@")
    user, colon, _ = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}{at}{host}"


@dataclass(frozen=True)
class Settings:
    """Everything AutoFlow takes from its environment. Required values are checked on access."""

    inputs_dir_raw: str | None = None
    outputs_dir_raw: str | None = None
    log_level: str = "INFO"
    db_uri_raw: str | None = None
    db_password: Secret | None = field(default=None, repr=False)
    flowapi_url: str | None = None
    flowapi_token: Secret | None = field(default=None, repr=False)
    ssl_certificate_file: str | None = None
    max_parallel_notebooks: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_parallel_runs: int = 2
    run_lease_seconds: float = 300.0
    stop_grace_seconds: float = 60.0
    max_output_mb: float = 50.0
    #: seconds a notebook's kernel may take to start (per try) before the try counts as failed
    kernel_start_timeout: float = 60.0
    #: seconds a notebook may run, kernel start included, when workflows.yml gives it no ``timeout``
    notebook_timeout: float = 6 * 3600.0
    secrets_dir: Path = DEFAULT_SECRETS_DIR
    #: the Prefect work pool whose workers execute workflow runs; None: this process executes them
    work_pool: str | None = None
    #: kernels started ahead of need and waiting for a notebook, at most (0: no pre-started kernels)
    kernel_pool: int = field(default_factory=lambda: default_kernel_pool())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default ``os.environ``) and the secrets directory."""
        env = os.environ if env is None else env
        secrets_dir = Path(env.get("AUTOFLOW_SECRETS_DIR") or DEFAULT_SECRETS_DIR)
        level = (env.get("AUTOFLOW_LOG_LEVEL") or "INFO").strip().upper()
        if level == "WARN":
            level = "WARNING"
        if level not in LOG_LEVELS:
            raise SettingsError(
                f"AUTOFLOW_LOG_LEVEL={env.get('AUTOFLOW_LOG_LEVEL')!r} is not a log level; "
                f"use one of {', '.join(LOG_LEVELS)}"
            )
        return cls(
            inputs_dir_raw=env.get("AUTOFLOW_INPUTS_DIR") or None,
            outputs_dir_raw=env.get("AUTOFLOW_OUTPUTS_DIR") or None,
            log_level=level,
            db_uri_raw=env.get("AUTOFLOW_DB_URI") or None,
            db_password=read_secret("AUTOFLOW_DB_PASSWORD", env, secrets_dir),
            flowapi_url=env.get("FLOWAPI_URL") or None,
            flowapi_token=read_secret("FLOWAPI_TOKEN", env, secrets_dir),
            ssl_certificate_file=env.get("SSL_CERTIFICATE_FILE") or None,
            max_parallel_notebooks=int(
                _positive_number(env, "AUTOFLOW_MAX_PARALLEL_NOTEBOOKS", os.cpu_count() or 1, integer=True)
            ),
            max_parallel_runs=int(_positive_number(env, "AUTOFLOW_MAX_PARALLEL_RUNS", 2, integer=True)),
            run_lease_seconds=_positive_number(env, "AUTOFLOW_RUN_LEASE_SECONDS", 300.0, integer=False),
            stop_grace_seconds=_positive_number(env, "AUTOFLOW_STOP_GRACE_SECONDS", 60.0, integer=False),
            max_output_mb=_positive_number(env, "AUTOFLOW_MAX_OUTPUT_MB", 50.0, integer=False),
            kernel_start_timeout=_positive_number(env, "AUTOFLOW_KERNEL_START_TIMEOUT", cls.kernel_start_timeout, integer=False),
            notebook_timeout=_positive_number(env, "AUTOFLOW_NOTEBOOK_TIMEOUT", cls.notebook_timeout, integer=False),
            secrets_dir=secrets_dir,
            work_pool=(env.get("AUTOFLOW_WORK_POOL") or "").strip() or None,
            kernel_pool=_kernel_pool(env),
        )

    @staticmethod
    def _missing(name: str) -> SettingsError:
        return SettingsError(f"{name} is not set: it is {DESCRIPTIONS[name]}")

    @property
    def inputs_dir(self) -> Path:
        if not self.inputs_dir_raw:
            raise self._missing("AUTOFLOW_INPUTS_DIR")
        return Path(self.inputs_dir_raw).expanduser().resolve()

    @property
    def outputs_dir(self) -> Path:
        if not self.outputs_dir_raw:
            raise self._missing("AUTOFLOW_OUTPUTS_DIR")
        return Path(self.outputs_dir_raw).expanduser().resolve()

    @property
    def max_output_bytes(self) -> int:
        """Output one notebook may produce before AutoFlow interrupts it."""
        return int(self.max_output_mb * 2**20)

    @property
    def notebooks_dir(self) -> Path:
        return self.outputs_dir / "notebooks"

    @property
    def reports_dir(self) -> Path:
        return self.outputs_dir / "reports"

    @property
    def db_url(self) -> str:
        """The database URL to connect with, password filled in and the driver made explicit.

        Contains the password: never log it; log :attr:`db_url_masked`.
        """
        if not self.db_uri_raw:
            return f"sqlite:///{self.outputs_dir / 'autoflow.db'}"
        url = self.db_uri_raw
        if "{}" in url:
            if self.db_password is None:
                raise self._missing("AUTOFLOW_DB_PASSWORD")
            url = url.replace("{}", quote(self.db_password.get(), safe=""))
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                url = "postgresql+psycopg://" + url[len(plain):]
        return url

    @property
    def db_url_masked(self) -> str:
        if not self.db_uri_raw:
            return self.db_url
        return mask_url(self.db_uri_raw.replace("{}", "***"))

    @property
    def required_flowapi(self) -> tuple[str, Secret]:
        """(url, token) for the FlowAPI date source; raises naming whichever is missing."""
        if not self.flowapi_url:
            raise self._missing("FLOWAPI_URL")
        if self.flowapi_token is None:
            raise self._missing("FLOWAPI_TOKEN")
        return self.flowapi_url, self.flowapi_token
