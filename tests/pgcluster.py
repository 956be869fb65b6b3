"""Throwaway PostgreSQL clusters for tests: ``initdb`` in a temporary directory, on a free 127.0.0.1 port.

- :class:`Cluster`: one such cluster, which a test may stop and start (never the shared server).
- :func:`why_unusable`: why the tests cannot connect with a libpq connection string, if they cannot.
- ``python -m tests.pgcluster check``: exit status 0 when the tests have a PostgreSQL (they can
  connect to the configured server, or ``initdb`` is there to make one), 1 when installing PostgreSQL
  would give them one (``make test-deps`` does), 3 when an explicit AUTOFLOW_TEST_POSTGRES is unusable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil

DEFAULT_CONNINFO = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


def configured_conninfo() -> str:
    """The server the tests are configured to use: AUTOFLOW_TEST_POSTGRES, else the local default (on $PGPORT if set)."""
    explicit = os.environ.get("AUTOFLOW_TEST_POSTGRES")
    if explicit:
        return explicit
    port = os.environ.get("PGPORT")
    return DEFAULT_CONNINFO.replace("port=5432", f"port={port}") if port and port.isdigit() else DEFAULT_CONNINFO


def server_bin() -> Path | None:
    """PostgreSQL's server binaries: AUTOFLOW_TEST_PG_BIN, else where ``initdb`` is on PATH, else Debian's newest."""
    if os.environ.get("AUTOFLOW_TEST_PG_BIN"):
        return Path(os.environ["AUTOFLOW_TEST_PG_BIN"])
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    return debian[-1].parent if debian else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(conninfo: str) -> bool:
    """Whether a PostgreSQL server answers at ``conninfo`` (it may still refuse the connection)."""
    from psycopg import pq
    from psycopg.conninfo import make_conninfo

    return pq.PGconn.ping(make_conninfo(conninfo, connect_timeout=5).encode()) != pq.Ping.NO_RESPONSE


def why_unusable(conninfo: str) -> str | None:
    """None when the tests can connect with ``conninfo``; else why not, for a message."""
    import psycopg

    try:
        psycopg.connect(conninfo, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        if not answers(conninfo):
            return f"nothing answered on {where(conninfo)}"
        reason = " ".join(str(exc).split()).rpartition("FATAL: ")[2] or type(exc).__name__
        return f"{where(conninfo)} refused the connection ({reason})"
    return None


def where(conninfo: str) -> str:
    """``host:port`` of a libpq connection string, for messages."""
    from psycopg.conninfo import conninfo_to_dict

    info = conninfo_to_dict(conninfo)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"


def _as_postgres(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL server binary, as the postgres user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)


class Cluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1:<free port>, started at once; :meth:`close` removes it.

    With ``password`` (the default) TCP connections need a password (SCRAM; the admin's is
    :attr:`admin_password`); without, everyone is trusted, as on a developer's own server.
    """

    def __init__(self, *, password: bool = True, prefix: str = "autoflow-pg-") -> None:
        pg_bin = server_bin()
        if pg_bin is None or not (pg_bin / "initdb").exists():
            raise RuntimeError(
                f"no initdb found{f' in {pg_bin}' if pg_bin else ''}: install PostgreSQL's server "
                "(Debian: sudo apt-get install postgresql) or set AUTOFLOW_TEST_PG_BIN to its bin directory"
            )
        self.bin = pg_bin
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        try:
            self._initdb(password)
            self.start()
        except BaseException:
            self.close()
            raise

    def _initdb(self, password: bool) -> None:
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "sockets"
        self.socket_dir.mkdir()
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.admin_password: str | None = "admin-" + os.urandom(8).hex() if password else None
        pwfile = self.dir / "pwfile"
        pwfile.write_text(f"{self.admin_password or ''}\n")
        if os.geteuid() == 0:
            for path in (self.dir, self.socket_dir, pwfile):
                shutil.chown(path, "postgres")
        auth = ["--auth-host=scram-sha-256", f"--pwfile={pwfile}"] if password else ["--auth-host=trust"]
        done = _as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth-local=trust", *auth, "-E", "UTF8", "--no-sync"])
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr}")

    @property
    def conninfo(self) -> str:
        """A libpq connection string for the admin, to the maintenance database."""
        secret = f" password={self.admin_password}" if self.admin_password else ""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres{secret}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"])
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stdout} {done.stderr} {log}")

    def stop(self, mode: str = "fast") -> None:
        done = _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"])
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl stop failed: {done.stdout} {done.stderr}")

    def running(self) -> bool:
        return _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]).returncode == 0

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)

    def create_database(self, name: str, owner: str, password: str) -> None:
        """A role ``owner`` with ``password`` (stored as SCRAM) owning a new database ``name``."""
        from psycopg import sql

        with self.admin() as connection:
            exists = connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone()
            statement = "ALTER ROLE {} LOGIN PASSWORD {}" if exists else "CREATE ROLE {} LOGIN PASSWORD {}"
            connection.execute(sql.SQL(statement).format(sql.Identifier(owner), sql.Literal(password)))
            connection.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))

    def url(self, database: str, user: str, password: str = "{}") -> str:
        """A ``postgresql://`` URL as a user writes AUTOFLOW_DB_URI (``{}`` for AUTOFLOW_DB_PASSWORD)."""
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def dump(self, database: str) -> bytes:
        """pg_dump of ``database`` (schema and data), through the local socket."""
        done = _as_postgres([str(self.bin / "pg_dump"), "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", database])
        if done.returncode != 0:
            raise RuntimeError(f"pg_dump failed: {done.stderr}")
        return done.stdout.encode()

    def close(self) -> None:
        """Stop the server (at once) and remove its directory; the postmaster is killed if pg_ctl cannot stop it."""
        data = getattr(self, "data", None)
        if data is not None and (data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
            postmaster = self.postmaster()
            if postmaster is not None:
                with contextlib.suppress(psutil.Error):
                    postmaster.send_signal(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def postmaster(self) -> psutil.Process | None:
        """The process postmaster.pid names, if it is a PostgreSQL server of this cluster's data directory.

        A stale postmaster.pid can name a pid the system has since given to another process.
        """
        try:
            process = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
            name, command = process.name(), process.cmdline()
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        is_postgres = name in ("postgres", "postmaster") or any(Path(part).name in ("postgres", "postmaster") for part in command[:1])
        return process if is_postgres and str(self.data) in command else None


def main(argv: list[str]) -> int:
    """``check``: 0 when the tests have a PostgreSQL (the configured server answers, or initdb can make one);
    1 when installing PostgreSQL would give them one; 3 when an explicit AUTOFLOW_TEST_POSTGRES is unusable."""
    if argv != ["check"]:
        print("usage: python -m tests.pgcluster check", file=sys.stderr)
        return 2
    reason = why_unusable(configured_conninfo())
    if reason is None:
        return 0
    if os.environ.get("AUTOFLOW_TEST_POSTGRES"):  # never replaced by a throwaway cluster
        print(f"PostgreSQL for tests: {reason} (AUTOFLOW_TEST_POSTGRES); start that server or fix the variable.")
        return 3
    pg_bin = server_bin()
    if pg_bin is not None and (pg_bin / "initdb").exists():
        return 0
    print(f"PostgreSQL for tests: {reason} (AUTOFLOW_TEST_POSTGRES) and there is no initdb to start a throwaway cluster.")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
