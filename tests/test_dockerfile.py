"""The Dockerfile and .dockerignore, read as text (tests/container builds and runs the image)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")]
    return [" ".join(part.strip() for part in block.split("\\\n")) for block in re.split(r"(?<!\\)\n", "\n".join(lines)) if block.strip()]


def test_base_image_and_command() -> None:
    steps = instructions()
    assert steps[0] == "FROM debian:bookworm-slim AS runtime"
    assert [s for s in steps if s.startswith("FROM ") and " AS " not in s] == ["FROM runtime"], "the image is the last stage, on runtime"
    assert steps[-5:-2] == [
        'HEALTHCHECK --interval=60s --timeout=30s --start-period=5m --retries=3 CMD ["python", "-m", "autoflow", "health"]',
        'ENTRYPOINT ["tini", "--"]',
        'CMD ["python", "-m", "autoflow"]',
    ]


def test_uv_is_the_version_the_makefile_uses() -> None:
    makefile = re.search(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M)
    assert makefile is not None
    assert re.findall(r"uv==(\S+)", DOCKERFILE) == [makefile.group(1)]


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    steps = instructions()
    lock = next(i for i, s in enumerate(steps) if s.startswith("COPY") and "requirements.lock" in s)
    install = next(i for i, s in enumerate(steps) if "uv pip install" in s and "requirements.lock" in s)
    code = next(i for i, s in enumerate(steps) if s.startswith("COPY autoflow "))
    assert lock < install < code
    assert "--constraint requirements.lock" in steps[install]


def test_nothing_of_the_build_machine_is_written_into_the_image() -> None:
    for leak in ("/etc/ssl/certs/ca-certificates.crt", "pip.conf", "index-url", "trusted-host"):
        assert leak not in DOCKERFILE
    secret_uses = [s for s in instructions() if "build_ca_bundle" in s]
    assert secret_uses and all(s.startswith("RUN --mount=type=secret,id=build_ca_bundle ") for s in secret_uses)
    assert not [s for s in instructions() if s.startswith(("ENV", "ARG")) and re.search(r"CERT|INDEX|PROXY", s)]


def test_the_service_runs_as_a_fixed_non_root_user() -> None:
    steps = instructions()
    assert "ARG AUTOFLOW_UID=1000 AUTOFLOW_GID=1000" in steps
    assert "USER ${AUTOFLOW_UID}:${AUTOFLOW_GID}" in steps
    user = steps.index("USER ${AUTOFLOW_UID}:${AUTOFLOW_GID}")
    assert not [s for s in steps[user:] if s.startswith("RUN")], "nothing runs as the user at build time"


def test_dockerignore_sends_only_what_the_build_needs() -> None:
    patterns = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert patterns[0] == "*", "everything is excluded unless listed"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"autoflow", "pyproject.toml", "README.md", "requirements.lock"}
    copied = {word.rstrip("/") for s in instructions() if s.startswith("COPY ") and "--from" not in s for word in s.split()[1:-1]}
    assert copied == allowed, "the context holds exactly what the Dockerfile copies"
