"""Build AutoFlow's image from the repository's Dockerfile with buildah, and run it, without Docker.

There is no Docker engine here and no registry to pull ``debian:bookworm-slim`` from, so a
stand-in is made with ``debootstrap --variant=minbase bookworm`` from the Debian mirror apt uses
on this machine, trimmed as the official slim image is, and stored under that name. The
Dockerfile is built unchanged (``buildah bud --isolation chroot --storage-driver vfs``); what
only this machine needs (its CA bundle, so pip and uv can reach the package index) is given as
the optional build secret ``build_ca_bundle``, which never lands in a layer.

Everything lives in its own buildah storage under ``~/.cache/autoflow-test-container/``
(``$AUTOFLOW_TEST_CONTAINER_CACHE``). The base is made once a day (its tag is the date); a new
day's base starts the storage afresh, so the cache never holds more than one day's layers. Within
a day, layers are reused: a change to AutoFlow's code rebuilds only the last few small layers.

A build is skipped when nothing it reads has changed since the last one (see
:func:`context_digest`).

By hand::

    python -m tests.container.harness build                 # prints the image name
    python -m tests.container.harness run examples/local /tmp/outputs
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("AUTOFLOW_TEST_CONTAINER_CACHE") or "~/.cache/autoflow-test-container").expanduser()
#: the name the Dockerfile's FROM line resolves to
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
BASE_TAG_PREFIX = "localhost/autoflow-test-base:"
IMAGE = "localhost/autoflow-test:latest"
SUITE = "bookworm"
#: the build secret the Dockerfile reads (optional there)
CA_SECRET_ID = "build_ca_bundle"
DEFAULT_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
#: what debuerreotype's slimming leaves out of Debian's -slim images
SLIM_DPKG_CONFIG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""


class HarnessError(RuntimeError):
    """A step of building or running the image failed; the message says which and why."""


# -- the Debian mirror apt uses here ---------------------------------------------------------


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]


def _one_line_sources(text: str) -> list[AptSource]:
    found = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 3 or words[0] != "deb":
            continue
        if words[1].startswith("["):  # options: [arch=amd64 signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = ["deb", *words[1:]]
        if len(words) >= 3:
            found.append(AptSource(words[1], (words[2],)))
    return found


def _deb822_sources(text: str) -> list[AptSource]:
    found = []
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.append(AptSource(uri, tuple(fields.get("suites", "").split())))
    return found


def apt_sources(paths: Sequence[Path] = APT_SOURCES) -> list[AptSource]:
    """Every ``deb`` source configured for apt, in apt's reading order."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    found: list[AptSource] = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        found += _deb822_sources(text) if file.suffix == ".sources" else _one_line_sources(text)
    return found


def debian_mirrors(sources: Sequence[AptSource] | None = None) -> tuple[str, str | None]:
    """(mirror for ``bookworm``, mirror for ``bookworm-security`` or None), as apt has them here."""
    sources = apt_sources() if sources is None else sources
    main = next((s.uri for s in sources if SUITE in s.suites), None)
    if main is None:
        raise HarnessError(f"apt has no '{SUITE}' source on this machine (looked in {', '.join(map(str, APT_SOURCES))})")
    security = next((s.uri for s in sources if f"{SUITE}-security" in s.suites), None)
    return main, security


# -- buildah ----------------------------------------------------------------------------------


def _run(command: Sequence[str], *, what: str, capture: bool = True, env: Mapping[str, str] | None = None,
         log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command``; :class:`HarnessError` naming ``what`` (with the end of its output) if it fails."""
    if log is not None:
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"\n$ {' '.join(command)}\n")
            out.flush()
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, text=True, env=env, check=False)
        if done.returncode != 0:
            tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
            raise HarnessError(f"{what} failed (exit {done.returncode}); the end of {log}:\n{tail}")
        return done
    done = subprocess.run(command, capture_output=capture, text=True, env=env, check=False)
    if done.returncode != 0:
        raise HarnessError(f"{what} failed (exit {done.returncode}): {(done.stderr or '')[-3000:]}")
    return done


def buildah_command(*args: str) -> list[str]:
    """A ``buildah`` command line on the harness's own storage (vfs driver, shared with nothing else)."""
    return ["buildah", "--root", str(CACHE / "storage"), "--runroot", str(CACHE / "runroot"), "--storage-driver", "vfs", *args]


def buildah(*args: str, what: str | None = None, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``buildah ARGS``; :class:`HarnessError` if it fails."""
    return _run(buildah_command(*args), what=what or f"buildah {args[0]}", log=log)


def image_exists(name: str) -> bool:
    return subprocess.run(buildah_command("inspect", "--type", "image", name), capture_output=True, check=False).returncode == 0


def inspect_image(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", name).stdout)
    return data


# -- the stand-in base image ------------------------------------------------------------------


def _slim(rootfs: Path, main: str, security: str | None) -> None:
    """Make a debootstrapped tree look like Debian's bookworm-slim image."""
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(SLIM_DPKG_CONFIG)
    for pattern in ("usr/share/doc/*/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*",
                    "var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "var/log/*.log"):  # fmt: skip
        for path in rootfs.glob(pattern):
            if path.name in ("copyright", "locale.alias"):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    sources = (
        f"Types: deb\nURIs: {main}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    if security:
        sources += (
            f"\nTypes: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(sources)
    # the build host's name servers and name are none of the image's business
    for name in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / name).unlink(missing_ok=True)


def _wipe_storage() -> None:
    if (CACHE / "storage").exists():
        subprocess.run(buildah_command("rm", "--all"), capture_output=True, check=False)
    for name in ("storage", "runroot"):
        shutil.rmtree(CACHE / name, ignore_errors=True)


def ensure_base(day: dt.date | None = None, *, log: Path | None = None) -> str:
    """Make sure ``debian:bookworm-slim`` is today's stand-in; returns its date tag."""
    tag = BASE_TAG_PREFIX + (day or dt.date.today()).strftime("%Y%m%d")
    if image_exists(tag):
        buildah("tag", tag, BASE_IMAGE)
        return tag
    if shutil.which("debootstrap") is None or shutil.which("buildah") is None:
        raise HarnessError("the container test needs debootstrap and buildah: apt-get install debootstrap buildah")
    _wipe_storage()  # yesterday's layers go: the cache holds one day's base and what was built on it
    CACHE.mkdir(parents=True, exist_ok=True)
    main, security = debian_mirrors()
    with tempfile.TemporaryDirectory(prefix="base-", dir=CACHE) as tmp:
        rootfs, tarball = Path(tmp) / "rootfs", Path(tmp) / "rootfs.tar"
        _run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), main], what=f"debootstrap from {main}", log=log)
        _slim(rootfs, main, security)
        _run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball),
             "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./run/*", "."],
            what="packing the base file system",
        )  # fmt: skip
        container = buildah("from", "scratch").stdout.strip()
        try:
            buildah("add", container, str(tarball), "/")
            buildah("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--cmd", "bash", container)  # fmt: skip
            buildah("commit", "--quiet", container, tag)
        finally:
            subprocess.run(buildah_command("rm", container), capture_output=True, check=False)
    buildah("tag", tag, BASE_IMAGE)
    return tag


# -- building and running the image ----------------------------------------------------------


def ca_bundle() -> Path | None:
    """This machine's CA bundle, for pip and uv inside the build (None if there is none)."""
    for candidate in (os.environ.get("AUTOFLOW_BUILD_CA_BUNDLE"), os.environ.get("SSL_CERT_FILE"), str(DEFAULT_CA_BUNDLE)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def context_digest(context: Path = REPO) -> str:
    """A digest of what the build reads: Dockerfile, .dockerignore and the paths the latter lets in.

    The .dockerignore is an allowlist ("*", then "!path" lines); caches in those paths don't count.
    """
    digest = hashlib.sha256()
    allowed = [line[1:].rstrip("/") for line in (context / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    for name in ("Dockerfile", ".dockerignore", *allowed):
        path = context / name
        for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                digest.update(f"{file.relative_to(context)}\0".encode() + file.read_bytes() + b"\0")
    return digest.hexdigest()


def build_image(tag: str = IMAGE, *, context: Path = REPO, log: Path | None = None) -> str:
    """Build ``context``'s Dockerfile as it is into ``tag``; returns ``tag``.

    Skipped when ``tag`` was last built today from the same context (even a build whose every
    layer is cached takes minutes with the vfs driver).
    """
    base = ensure_base(log=log)
    stamp, built = CACHE / "built.json", {"tag": tag, "base": base, "context": context_digest(context)}
    if stamp.is_file() and json.loads(stamp.read_text()) == built and image_exists(tag):
        return tag
    stamp.unlink(missing_ok=True)
    args = ["bud", "--isolation", "chroot", "--pull=never", "--layers", "--format", "docker",
            "-f", str(context / "Dockerfile"), "-t", tag]  # fmt: skip
    bundle = ca_bundle()
    if bundle is not None:
        args += ["--secret", f"id={CA_SECRET_ID},src={bundle}"]
    log = log or CACHE / "build.log"
    start = log.stat().st_size if log.exists() else 0
    buildah(*args, str(context), what=f"building {context / 'Dockerfile'}", log=log)
    stamp.write_text(json.dumps(built))
    with open(log, encoding="utf-8", errors="replace") as output:
        output.seek(start)
        _remove_unused_images(output.read())
    return tag


#: how buildah names each image a build step made or reused
_STEP_IMAGE = re.compile(r"^--> (?:Using cache )?([0-9a-f]{11,64})$", re.M)


def _remove_unused_images(build_output: str) -> None:
    """Remove the untagged images of earlier builds that this build did not use.

    With vfs every layer is a full copy, so each change to AutoFlow's code would otherwise leave
    gigabytes behind; the layers this build used stay, as the next build's cache.
    """
    used = set(_STEP_IMAGE.findall(build_output))
    images = json.loads(buildah("images", "--all", "--json").stdout)
    for image in sorted(images, key=lambda i: i["created"], reverse=True):  # children before parents
        if image.get("names") or any(image["id"].startswith(u) or u.startswith(image["id"]) for u in used):
            continue
        subprocess.run(buildah_command("rmi", image["id"]), capture_output=True, check=False)


def entrypoint_and_cmd(image: str) -> list[str]:
    """What ``docker run IMAGE`` would run: the image's entrypoint followed by its command."""
    config = inspect_image(image)["Docker"]["config"]
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


class Container:
    """A working container of ``image``: commands run in it as the image's user, and its files.

    One container serves many commands (as in Docker, where the HEALTHCHECK runs inside the
    service's container); with the vfs driver each container is a full copy of the image.
    """

    def __init__(self, image: str) -> None:
        self.image = image
        self.name = buildah("from", "--pull=never", image).stdout.strip()

    def run(
        self,
        command: Sequence[str] | None = None,
        *,
        inputs: Path,
        outputs: Path,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` (default: the image's entrypoint and command, as ``docker run`` would).

        ``inputs`` is mounted read-only at /mounts/inputs and ``outputs`` read-write at
        /mounts/outputs, as docker-stack.yml mounts them. With ``log``, stdout and stderr go there
        (and come back as ``stdout``). Returns the finished process, unchecked.
        """
        argv = list(command) if command is not None else entrypoint_and_cmd(self.image)
        args = ["run", "--isolation", "chroot",
                "--volume", f"{inputs}:/mounts/inputs:ro", "--volume", f"{outputs}:/mounts/outputs:rw"]  # fmt: skip
        for name, value in (env or {}).items():
            args += ["--env", f"{name}={value}"]
        full = buildah_command(*args, self.name, "--", *argv)
        if log is None:
            return subprocess.run(full, capture_output=True, text=True, check=False)
        with open(log, "a", encoding="utf-8") as out:
            done = subprocess.run(full, stdout=out, stderr=subprocess.STDOUT, text=True, check=False)
        return subprocess.CompletedProcess(full, done.returncode, log.read_text(encoding="utf-8", errors="replace"), "")

    @contextlib.contextmanager
    def mounted(self) -> Iterator[Path]:
        """The container's file system, mounted on the host for the block."""
        root = Path(buildah("mount", self.name).stdout.strip())
        try:
            yield root
        finally:
            buildah("umount", self.name)

    def remove(self) -> None:
        buildah("rm", self.name)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


# -- by hand ----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.container.harness", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="make the base if needed and build the image")
    run = commands.add_parser("run", help="run the image's command on an inputs directory")
    run.add_argument("inputs", type=Path)
    run.add_argument("outputs", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build_image())
            return 0
        args.outputs.mkdir(parents=True, exist_ok=True)
        with Container(IMAGE) as container:
            done = container.run(inputs=args.inputs.resolve(), outputs=args.outputs.resolve())
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done.returncode
    except HarnessError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
