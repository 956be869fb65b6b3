"""The image, for real: built from the unchanged Dockerfile with buildah, run on the example.

Slow the first time each day (a Debian base, apt, every dependency: several minutes); within a
day the layers are cached and only AutoFlow's own layers are rebuilt. See harness.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.container import harness
from tests.example_checks import LOCAL_EXAMPLE, REPO, check_local_example_outputs

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(3600)]

UID = GID = 1000  # the Dockerfile's default AUTOFLOW_UID / AUTOFLOW_GID
#: values set as secrets for the run: they must appear in no output and no log
CANARIES = {"AUTOFLOW_DB_PASSWORD": "canary-db-5f2e9c1a", "FLOWAPI_TOKEN": "canary-token-8d41b7e3"}
DEV_ONLY = ("pytest", "mypy", "hypothesis", "pytest-xdist", "pytest-timeout")

INSPECT_SCRIPT = """\
import importlib.metadata, json, os, shutil, subprocess
venv = "/opt/autoflow/venv"
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "venv_writable": os.access(venv + "/lib/python3.11/site-packages", os.W_OK),
    "outputs_writable": os.access("/mounts/outputs", os.W_OK),
    "home_owner": os.stat(os.path.expanduser("~")).st_uid,
    "distributions": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()},
    "tools": {t: shutil.which(t) for t in ("pandoc", "asciidoctor-pdf", "tini", "python", "autoflow")},
    "version": subprocess.run(["autoflow", "--version"], capture_output=True, text=True).stdout.strip(),
}))
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            pins[canonical(match.group(1))] = match.group(2)
    return pins


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    log = tmp_path_factory.mktemp("build") / "build.log"
    try:
        return harness.build_image(log=log)
    except harness.HarnessError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def config(image: str) -> dict[str, Any]:
    found: dict[str, Any] = harness.inspect_image(image)["Docker"]["config"]
    return found


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[harness.Container]:
    """One container for every command, as in Docker (the health check runs in the service's container)."""
    with harness.Container(image) as made:
        yield made


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("example") / "outputs"
    path.mkdir()
    os.chown(path, UID, GID)  # as the Dockerfile's header tells users to do for a bind mount
    return path


@dataclass(frozen=True)
class ExampleRun:
    outputs: Path
    done: subprocess.CompletedProcess[str]
    inputs_before: list[str]


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture(scope="module")
def example_run(container: harness.Container, outputs: Path) -> ExampleRun:
    """The image's own command on examples/local (schedule: null: one tick, then exit)."""
    before = listing(LOCAL_EXAMPLE)
    done = container.run(inputs=LOCAL_EXAMPLE, outputs=outputs, env=CANARIES, log=outputs.parent / "run.log")
    return ExampleRun(outputs, done, before)


def test_image_configuration(config: dict[str, Any]) -> None:
    assert config["User"] == f"{UID}:{GID}"
    assert config["Entrypoint"] == ["tini", "--"] and config["Cmd"] == ["python", "-m", "autoflow"]
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "autoflow", "health"]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["AUTOFLOW_INPUTS_DIR"] == "/mounts/inputs" and env["AUTOFLOW_OUTPUTS_DIR"] == "/mounts/outputs"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false" and env["DO_NOT_TRACK"] == "1"
    assert not {"SSL_CERT_FILE", "PIP_CERT", "PIP_INDEX_URL", "UV_INDEX_URL"} & env.keys(), "build settings leaked into the image"


def test_example_runs_in_the_container(example_run: ExampleRun) -> None:
    outputs, done = example_run.outputs, example_run.done
    assert done.returncode == 0, done.stdout[-5000:]
    assert "tick done: 5 due, 5 succeeded, 0 failed" in done.stdout
    assert "starting a temporary Prefect server" in done.stdout  # no PREFECT_API_URL: its own server
    check_local_example_outputs(outputs, service_outputs="/mounts/outputs")
    not_ours = [str(p) for p in [outputs, *outputs.rglob("*")] if (p.stat().st_uid, p.stat().st_gid) != (UID, GID)]
    assert not not_ours, f"written by another user than the image's: {not_ours}"
    assert (outputs / "logs" / "prefect-server.log").is_file()
    assert listing(LOCAL_EXAMPLE) == example_run.inputs_before, "the read-only inputs directory changed"


def test_secrets_appear_in_no_output(example_run: ExampleRun) -> None:
    files = [p for p in example_run.outputs.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files) and any(p.suffix == ".ipynb" for p in files)
    for secret in CANARIES.values():
        assert secret not in example_run.done.stdout
        leaks = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert not leaks, f"a secret was written to {leaks}"


def test_healthcheck_says_unhealthy_once_the_service_stopped(
    container: harness.Container, config: dict[str, Any], example_run: ExampleRun
) -> None:
    command = config["Healthcheck"]["Test"][1:]  # after "CMD"
    done = container.run(command, inputs=LOCAL_EXAMPLE, outputs=example_run.outputs)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("unhealthy: ") and "/mounts/outputs" in done.stdout


def test_image_contents(container: harness.Container, outputs: Path) -> None:
    done = container.run(["python", "-c", INSPECT_SCRIPT], inputs=LOCAL_EXAMPLE, outputs=outputs)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert (facts["uid"], facts["gid"], facts["home_owner"]) == (UID, GID, UID)
    assert facts["venv_writable"] is False, "the service user must not be able to change the code"
    assert facts["outputs_writable"] is True
    assert all(facts["tools"].values()), facts["tools"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert facts["version"] == f"autoflow {version}"

    installed = {canonical(name): v for name, v in facts["distributions"].items()}
    pins = locked_versions()
    unlocked = {name: v for name, v in installed.items() if name not in ("autoflow", "pip", "setuptools") and pins.get(name) != v}
    assert not unlocked, f"installed versions that requirements.lock does not pin: {unlocked}"
    assert installed["autoflow"] == version and installed["prefect"] == pins["prefect"]
    assert not [name for name in DEV_ONLY if name in installed], "development tools are in the image"


def first_lines(pem: str) -> set[str]:
    """The first base64 line of every certificate in ``pem`` (enough to recognise each)."""
    return {block.split("\n")[1] for block in pem.split("-----BEGIN CERTIFICATE-----\n")[1:]}


def test_build_secret_is_in_no_layer(container: harness.Container) -> None:
    bundle = harness.ca_bundle()
    assert bundle is not None, "this machine has no CA bundle to look for"
    with container.mounted() as rootfs:
        assert not list(rootfs.glob("run/secrets/*")), "a build secret was left in the image"
        shipped = [rootfs / "etc/ssl/certs/ca-certificates.crt", *rootfs.glob("opt/autoflow/venv/lib/python3.11/site-packages/**/cacert.pem")]
        known = set().union(*(first_lines(p.read_text()) for p in shipped))
        # certificates this machine trusts that no trust store of the image ships: the build's own
        extra = sorted(first_lines(bundle.read_text()) - known)
        assert extra, "the machine's CA bundle has nothing the image's trust stores lack: nothing to look for"
        found = subprocess.run(["grep", "-rlF", "--", "\n".join(extra), str(rootfs)], capture_output=True, text=True, check=False)
    assert found.returncode == 1, f"the build's CA bundle is in the image: {found.stdout}"
