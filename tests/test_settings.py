from pathlib import Path
from urllib.parse import unquote

import pytest
import sqlalchemy

from autoflow.errors import SettingsError
from autoflow.settings import Settings

NASTY = "p@ss:w/rd?#%{}[] é"


def test_defaults(tmp_path: Path) -> None:
    s = Settings.from_env({"AUTOFLOW_OUTPUTS_DIR": str(tmp_path), "AUTOFLOW_SECRETS_DIR": str(tmp_path / "none")})
    assert s.log_level == "INFO"
    assert s.db_url == f"sqlite:///{tmp_path.resolve()}/autoflow.db"
    assert s.max_parallel_runs == 2 and s.run_lease_seconds == 300
    assert s.flowapi_token is None


@pytest.mark.parametrize("level", ["debug", "Debug", "DEBUG", " warning "])
def test_log_level_any_case(level: str) -> None:
    assert Settings.from_env({"AUTOFLOW_LOG_LEVEL": level}).log_level == level.strip().upper()


def test_bad_log_level() -> None:
    with pytest.raises(SettingsError, match="AUTOFLOW_LOG_LEVEL='loud' is not a log level"):
        Settings.from_env({"AUTOFLOW_LOG_LEVEL": "loud"})


def test_secret_file_wins_over_environment(tmp_path: Path) -> None:
    (tmp_path / "FLOWAPI_TOKEN").write_text("from-file\n")
    s = Settings.from_env({"FLOWAPI_TOKEN": "from-env", "AUTOFLOW_SECRETS_DIR": str(tmp_path)})
    assert s.flowapi_token is not None and s.flowapi_token.get() == "from-file"
    s = Settings.from_env({"FLOWAPI_TOKEN": "from-env", "AUTOFLOW_SECRETS_DIR": str(tmp_path / "elsewhere")})
    assert s.flowapi_token is not None and s.flowapi_token.get() == "from-env"


def test_password_substitution_escapes_every_special_character(tmp_path: Path) -> None:
    (tmp_path / "AUTOFLOW_DB_PASSWORD").write_text(NASTY)
    s = Settings.from_env(
        {"AUTOFLOW_DB_URI": "postgresql://autoflow:{}@db:5432/autoflow?application_name=x{y}", "AUTOFLOW_SECRETS_DIR": str(tmp_path)}
    )
    url = sqlalchemy.engine.make_url(s.db_url)
    assert url.drivername == "postgresql+psycopg"
    assert url.password == NASTY and url.host == "db" and url.database == "autoflow"
    assert url.query == {"application_name": "x{y}"}
    assert NASTY not in s.db_url_masked and unquote(s.db_url_masked).count(NASTY) == 0
    assert s.db_url_masked == "postgresql://autoflow:***@db:5432/autoflow?application_name=x{y}"


def test_uri_without_placeholder_is_used_as_is_but_masked() -> None:
    s = Settings.from_env({"AUTOFLOW_DB_URI": "postgresql://u:secretpw@h/db"})
    assert "secretpw" in s.db_url
    assert "secretpw" not in s.db_url_masked


def test_placeholder_without_password() -> None:
    s = Settings.from_env({"AUTOFLOW_DB_URI": "postgresql://u:{}@h/db", "AUTOFLOW_SECRETS_DIR": "/nonexistent"})
    with pytest.raises(SettingsError, match="AUTOFLOW_DB_PASSWORD is not set"):
        s.db_url


@pytest.mark.parametrize(
    ("attr", "name"),
    [("inputs_dir", "AUTOFLOW_INPUTS_DIR"), ("outputs_dir", "AUTOFLOW_OUTPUTS_DIR"), ("required_flowapi", "FLOWAPI_URL")],
)
def test_missing_variable_names_it_and_its_purpose(attr: str, name: str) -> None:
    s = Settings.from_env({"AUTOFLOW_SECRETS_DIR": "/nonexistent"})
    with pytest.raises(SettingsError) as info:
        getattr(s, attr)
    message = str(info.value)
    assert message.startswith(f"{name} is not set: it is ") and "\n" not in message


def test_missing_token() -> None:
    s = Settings.from_env({"FLOWAPI_URL": "http://x", "AUTOFLOW_SECRETS_DIR": "/nonexistent"})
    with pytest.raises(SettingsError, match="FLOWAPI_TOKEN is not set"):
        s.required_flowapi


def test_secrets_never_in_repr(tmp_path: Path) -> None:
    s = Settings.from_env({"FLOWAPI_TOKEN": "tok-SECRET-1", "AUTOFLOW_DB_PASSWORD": "pw-SECRET-2", "AUTOFLOW_SECRETS_DIR": str(tmp_path)})
    for text in (repr(s), str(s), repr(s.flowapi_token), str(s.db_password), f"{s.flowapi_token}"):
        assert "SECRET" not in text


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_numbers(value: str) -> None:
    with pytest.raises(SettingsError, match="AUTOFLOW_MAX_PARALLEL_RUNS"):
        Settings.from_env({"AUTOFLOW_MAX_PARALLEL_RUNS": value})


def test_output_limit_per_notebook() -> None:
    assert Settings.from_env({}).max_output_bytes == 50 * 2**20
    assert Settings.from_env({"AUTOFLOW_MAX_OUTPUT_MB": "0.5"}).max_output_bytes == 2**19
    with pytest.raises(SettingsError, match="AUTOFLOW_MAX_OUTPUT_MB"):
        Settings.from_env({"AUTOFLOW_MAX_OUTPUT_MB": "0"})


def test_config_env_file_names_every_setting_with_its_default(tmp_path: Path) -> None:
    """config/autoflow.env documents every variable Settings reads, and its values are the defaults."""
    import re

    repo = Path(__file__).resolve().parents[1]
    text = (repo / "config" / "autoflow.env").read_text()
    documented = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.M))
    source = (repo / "autoflow" / "settings.py").read_text()
    read = set(re.findall(r'"((?:AUTOFLOW|FLOWAPI|SSL)_[A-Z_]+)"', source)) - {"AUTOFLOW_DB_PASSWORD", "FLOWAPI_TOKEN"}
    assert read <= documented.keys(), f"not in config/autoflow.env: {sorted(read - documented.keys())}"
    assert not {"AUTOFLOW_DB_PASSWORD", "FLOWAPI_TOKEN"} & documented.keys(), "secrets do not belong in an env file"
    from_file = Settings.from_env({**documented, "AUTOFLOW_SECRETS_DIR": str(tmp_path)})
    defaults = Settings.from_env({k: documented[k] for k in ("AUTOFLOW_INPUTS_DIR", "AUTOFLOW_OUTPUTS_DIR")} | {"AUTOFLOW_SECRETS_DIR": str(tmp_path)})
    assert from_file == defaults
