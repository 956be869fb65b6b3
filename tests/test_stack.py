"""docker-stack.yml: everything it references is declared, and it wires AutoFlow as documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / "docker-stack.yml"
#: a line the user uncomments for FlowAPI behind HTTPS with a private CA
CERTIFICATE_LINE = re.compile(r"^(\s*)# (.*?)\s*# certificate\s*$")
VARIABLE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def load(text: str) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(text)
    return data


def with_certificate(text: str) -> str:
    """The stack file with the "certificate" lines uncommented, as its header says to do."""
    return "\n".join(CERTIFICATE_LINE.sub(r"\1\2", line) for line in text.splitlines())


def interpolate(value: str, env: dict[str, str]) -> str:
    """``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` as docker stack deploy expands them."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name", "op", "arg")
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return VARIABLE.sub(one, value)


@pytest.fixture(params=["as shipped", "with the certificate"])
def stack(request: pytest.FixtureRequest) -> dict[str, Any]:
    text = STACK.read_text()
    return load(text if request.param == "as shipped" else with_certificate(text))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """target -> long-form mount, short forms ("src:dst[:mode]") converted."""
    found = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            volume = {"type": "volume" if not source.startswith(("/", ".", "$")) else "bind", "source": source,
                      "target": target, "read_only": mode == ["ro"]}  # fmt: skip
        found[volume["target"]] = volume
    return found


def test_everything_referenced_is_declared(stack: dict[str, Any]) -> None:
    declared = {kind: set(stack.get(kind) or {}) for kind in ("secrets", "volumes", "networks", "configs")}
    assert set(stack["services"]) == {"autoflow", "autoflow-worker", "autoflow_postgres", "prefect", "site"}
    for name, service in stack["services"].items():
        secrets = {s if isinstance(s, str) else s["source"] for s in service.get("secrets") or []}
        assert secrets <= declared["secrets"], f"{name}: undeclared secrets {secrets - declared['secrets']}"
        networks = set(service.get("networks") or [])
        assert networks and networks <= declared["networks"], f"{name}: networks {networks}"
        named = {m["source"] for m in mounts(service).values() if m.get("type", "volume") == "volume"}
        assert named <= declared["volumes"], f"{name}: undeclared volumes {named - declared['volumes']}"
        configs = {c if isinstance(c, str) else c["source"] for c in service.get("configs") or []}
        assert configs <= declared["configs"], f"{name}: undeclared configs {configs - declared['configs']}"
    for config in (stack.get("configs") or {}).values():
        assert (REPO / config["file"]).is_file(), f"config file {config['file']} is missing"
    for kind, names in declared.items():
        used = set()
        for service in stack["services"].values():
            items = service.get(kind) or []
            used |= {m["source"] for m in mounts(service).values()} if kind == "volumes" else {
                i if isinstance(i, str) else i["source"] for i in items}  # fmt: skip
        assert names <= used, f"declared but unused {kind}: {names - used}"


def test_autoflow_service(stack: dict[str, Any]) -> None:
    autoflow = stack["services"]["autoflow"]
    env = environment(autoflow)
    assert env["AUTOFLOW_INPUTS_DIR"] == "/mounts/inputs" and env["AUTOFLOW_OUTPUTS_DIR"] == "/mounts/outputs"
    assert env["AUTOFLOW_DB_URI"] == "postgresql://autoflow:{}@autoflow_postgres:5432/autoflow"
    assert env["FLOWAPI_URL"].startswith("${FLOWAPI_URL:?")
    assert "AUTOFLOW_DB_PASSWORD" not in env and "FLOWAPI_TOKEN" not in env, "secrets belong in secrets, not the environment"
    assert {"AUTOFLOW_DB_PASSWORD", "FLOWAPI_TOKEN"} <= set(autoflow["secrets"])
    volumes = mounts(autoflow)
    inputs, outputs = volumes["/mounts/inputs"], volumes["/mounts/outputs"]
    assert inputs["read_only"] is True and outputs.get("read_only", False) is False
    assert inputs["source"].startswith("${AUTOFLOW_INPUTS_DIR:?") and outputs["source"].startswith("${AUTOFLOW_OUTPUTS_DIR:?")
    if "SSL_CERTIFICATE_FILE" in env:
        assert env["SSL_CERTIFICATE_FILE"] == "/run/secrets/SSL_CERTIFICATE_FILE"
        assert "SSL_CERTIFICATE_FILE" in autoflow["secrets"] and "SSL_CERTIFICATE_FILE" in stack["secrets"]


def test_database_matches_the_uri(stack: dict[str, Any]) -> None:
    services = stack["services"]
    uri = urlsplit(environment(services["autoflow"])["AUTOFLOW_DB_URI"])
    postgres = services["autoflow_postgres"]
    env = environment(postgres)
    assert uri.hostname in services and services[uri.hostname] is postgres
    assert (uri.username, uri.path.lstrip("/"), uri.port) == (env["POSTGRES_USER"], env["POSTGRES_DB"], 5432)
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/AUTOFLOW_DB_PASSWORD" and "AUTOFLOW_DB_PASSWORD" in postgres["secrets"]
    assert "POSTGRES_PASSWORD" not in env
    data = mounts(postgres)["/var/lib/postgresql/data"]
    assert data["type"] == "volume" and data["source"] in stack["volumes"], "the run history must survive the container"
    assert set(postgres["networks"]) & set(services["autoflow"]["networks"])


def test_prefect_server(stack: dict[str, Any]) -> None:
    services = stack["services"]
    prefect, autoflow = services["prefect"], services["autoflow"]
    assert prefect["image"] == autoflow["image"]
    shell, flag, script = prefect["command"]
    assert (shell, flag) == ("sh", "-c")
    password, command = script.split(" exec ")
    assert password == 'PREFECT_SERVER_DATABASE_PASSWORD="$$(cat /run/secrets/AUTOFLOW_DB_PASSWORD)"'  # $$: a literal $ in a stack file
    words = command.split()
    assert words[:3] == ["prefect", "server", "start"] and words[words.index("--host") + 1] == "0.0.0.0"
    port = words[words.index("--port") + 1]
    api = urlsplit(environment(autoflow)["PREFECT_API_URL"])
    assert (api.hostname, str(api.port), api.path) == ("prefect", port, "/api")
    assert set(prefect["networks"]) & set(autoflow["networks"])
    assert any(str(p).startswith(f"{port}:") or str(p) == port for p in prefect["ports"]), "the UI port is published"
    home = re.search(r"PREFECT_HOME=(\S+)", (REPO / "Dockerfile").read_text())
    assert home is not None
    volume = mounts(prefect)[home.group(1)]
    assert volume["type"] == "volume" and volume["source"] in stack["volumes"], "the Prefect server's files must survive the container"
    assert prefect["healthcheck"]["test"] != ["CMD", "python", "-m", "autoflow", "health"]


def test_prefect_server_state_is_in_its_own_postgres_database(stack: dict[str, Any]) -> None:
    services = stack["services"]
    prefect, postgres = services["prefect"], services["autoflow_postgres"]
    env, pg = environment(prefect), environment(postgres)
    assert env["PREFECT_SERVER_DATABASE_DRIVER"] == "postgresql+asyncpg"
    assert services[env["PREFECT_SERVER_DATABASE_HOST"]] is postgres and env["PREFECT_SERVER_DATABASE_PORT"] == "5432"
    assert env["PREFECT_SERVER_DATABASE_USER"] == pg["POSTGRES_USER"]
    assert env["PREFECT_SERVER_DATABASE_NAME"] not in (pg["POSTGRES_DB"], ""), "not the run history's database"
    assert "PREFECT_SERVER_DATABASE_PASSWORD" not in env and "AUTOFLOW_DB_PASSWORD" in prefect["secrets"]
    assert set(prefect["networks"]) & set(postgres["networks"])
    (init,) = [c for c in postgres["configs"] if c["target"].startswith("/docker-entrypoint-initdb.d/")]
    sql = (REPO / stack["configs"][init["source"]]["file"]).read_text()
    assert f"CREATE DATABASE {env['PREFECT_SERVER_DATABASE_NAME']} OWNER {pg['POSTGRES_USER']};" in sql


def test_workers_execute_what_the_sensor_submits(stack: dict[str, Any]) -> None:
    services = stack["services"]
    sensor, worker = services["autoflow"], services["autoflow-worker"]
    assert worker["image"] == sensor["image"] and worker["command"] == ["python", "-m", "autoflow", "worker"]
    assert environment(worker) == environment(sensor), "the same settings: database, directories, Prefect API, pool"
    assert environment(sensor)["AUTOFLOW_WORK_POOL"].startswith("${AUTOFLOW_WORK_POOL:-")
    assert worker["secrets"] == sensor["secrets"]
    assert mounts(worker) == mounts(sensor), "the same inputs (read-only) and outputs at the same paths"
    assert worker["deploy"]["replicas"] == 2
    assert {"database", "prefect"} <= set(worker["networks"])
    assert worker["healthcheck"]["test"] != ["CMD", "python", "-m", "autoflow", "health"], "the image's check is the sensor's"


def test_required_variables() -> None:
    text = STACK.read_text()
    required = {m.group("name") for m in VARIABLE.finditer(text) if m.group("op") == ":?"}
    assert required == {"FLOWAPI_URL", "AUTOFLOW_INPUTS_DIR", "AUTOFLOW_OUTPUTS_DIR"}
    env = {"FLOWAPI_URL": "https://flowapi.test", "AUTOFLOW_INPUTS_DIR": "/srv/in", "AUTOFLOW_OUTPUTS_DIR": "/srv/out"}
    stack = load(interpolate(text, env))
    autoflow = stack["services"]["autoflow"]
    assert environment(autoflow)["FLOWAPI_URL"] == "https://flowapi.test"
    assert mounts(autoflow)["/mounts/inputs"]["source"] == "/srv/in"
    for name in env:
        with pytest.raises(KeyError, match=name):
            interpolate(text, {k: v for k, v in env.items() if k != name})


def test_certificate_lines_uncomment_cleanly() -> None:
    text = STACK.read_text()
    marked = [line for line in text.splitlines() if CERTIFICATE_LINE.match(line)]
    assert len(marked) == 4
    stack = load(with_certificate(text))
    assert "SSL_CERTIFICATE_FILE" in stack["secrets"] and "SSL_CERTIFICATE_FILE" in environment(stack["services"]["autoflow"])


def test_site_is_served_read_only_by_nginx(stack: dict[str, Any]) -> None:
    site, autoflow = stack["services"]["site"], stack["services"]["autoflow"]
    name, _, tag = site["image"].partition(":")
    assert name == "nginx" and re.fullmatch(r"\d+\.\d+(\.\d+)?(-alpine)?", tag), "the official image, at a pinned version"
    outputs = mounts(site)["/mounts/outputs"]
    assert outputs["read_only"] is True and outputs["source"] == mounts(autoflow)["/mounts/outputs"]["source"]
    assert len(mounts(site)) == 1 and not site.get("secrets"), "nothing but the outputs, read-only"
    (config,) = site["configs"]
    assert config["target"] == "/etc/nginx/conf.d/default.conf"
    conf = (REPO / stack["configs"][config["source"]]["file"]).read_text()
    directives = [line.split("#")[0].strip().rstrip(";") for line in conf.splitlines()]
    assert "root /mounts/outputs/site" in directives and "autoindex off" in directives and "index index.html" in directives
    assert "disable_symlinks on" in directives and not any(d.startswith("alias") for d in directives)
    (port,) = site["ports"]
    published, _, inside = str(port).rpartition(":")
    assert f"listen {inside}" in directives
    assert interpolate(published, {}) == "8080" and interpolate(published, {"AUTOFLOW_SITE_PORT": "9000"}) == "9000"
    assert not set(site["networks"]) & (set(autoflow["networks"]) | {"database", "prefect"}), "the web server reaches nothing else"
