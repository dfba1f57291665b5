"""A real PostgreSQL server for tests and benchmarks: Debian's binaries, a throwaway cluster on 127.0.0.1.

    server = start_postgres()       # initdb into a temp dir, start on a free port, create the database
    server.url                      # "postgresql+asyncpg://florence@127.0.0.1:PORT/florence" (SQLAlchemy)
    server.dsn                      # "postgresql://florence@127.0.0.1:PORT/florence" (libpq, asyncpg, psql)
    server.create_database("other") # another database on the same server; returns its SQLAlchemy URL
    server.stop(); server.start()   # the same data dir and port: what was committed survives
    server.close()                  # stop and remove everything

Fixture ``postgres`` (session scope) is a running server; tests/conftest.py registers this module with
``pytest_plugins``, so any test asks for it by name. A test that stops it starts it again (try/finally).

The binaries are the highest version under /usr/lib/postgresql (Debian's ``postgresql`` package, which
scripts/test installs). PostgreSQL refuses to run as root, so as root the server runs as the system user
``florence-pg``, created on first use. Auth is trust, on 127.0.0.1 and a socket in the temp dir only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port, stop_process, tail

POSTGRES_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "florence-pg"
ROLE = "florence"
DATABASE = "florence"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 120.0
# Durability is not what tests measure; without it initdb and commits skip the disk flushes. Data still
# survives stop()/start(), and even a SIGKILL: only an OS crash loses it.
SERVER_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


class PostgresError(RuntimeError):
    """PostgreSQL is missing, or could not be initialised, started or reached; the message says why."""


def postgres_bin_dir(root: Path = POSTGRES_ROOT) -> Path:
    """Debian's newest installed server; /usr/local or PATH may hold an unrelated client or server."""
    versions = [path.parent for path in root.glob("*/bin/postgres") if path.parents[1].name.isdigit()]
    if not versions:
        raise PostgresError(
            f"no PostgreSQL server under {root}: apt-get install postgresql (scripts/test installs it)"
        )
    return max(versions, key=lambda bin_dir: int(bin_dir.parent.name))


def server_user() -> str | None:
    """The OS user the server runs as: ours, or ``florence-pg`` when we are root (postgres refuses root)."""
    if os.geteuid() != 0:
        return None
    if not _user_exists(SERVER_USER):
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_USER]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        # Another session may have created it meanwhile: the user existing is what counts.
        if result.returncode and not _user_exists(SERVER_USER):
            raise PostgresError(f"could not create the user {SERVER_USER}: {result.stderr.strip()}")
    return SERVER_USER


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path  # the temp dir: data/, socket/, postgres.log
    port: int
    user: str | None  # None: the server runs as this process's user
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    @property
    def dsn(self) -> str:
        return f"postgresql://{ROLE}@{HOST}:{self.port}/{DATABASE}"

    def url_for(self, database: str) -> str:
        return f"postgresql+asyncpg://{ROLE}@{HOST}:{self.port}/{database}"

    def init(self) -> None:
        """An empty cluster whose superuser is ``florence``, trusted without a password."""
        self.socket_dir.mkdir()
        self._give_to_server_user(self.root, self.socket_dir)
        self._run(
            self._bin("initdb"), "-D", str(self.data_dir), "-U", ROLE, "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
            **self._as_server_user(),
        )  # fmt: skip

    def start(self) -> None:
        """Start the server on this data dir and port, and wait until it accepts connections."""
        if self.process is not None:
            raise PostgresError("the server is already running")
        command = [self._bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        command += ["-k", str(self.socket_dir), "-c", f"listen_addresses={HOST}"]
        for setting in SERVER_SETTINGS:
            command += ["-c", setting]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, **self._as_server_user()
            )
        self._wait_ready()

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as when a database goes away mid-run."""
        if self.process is None:
            return
        # stop_process's SIGTERM alone is a "smart" shutdown, which waits for every pooled connection to
        # close; SIGINT first makes it fast, and the SIGTERM that follows is then ignored.
        self.process.send_signal(signal.SIGINT)
        stop_process(self.process)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; returns its SQLAlchemy URL."""
        self._run(self._bin("createdb"), "-h", HOST, "-p", str(self.port), "-U", ROLE, name)
        return self.url_for(name)

    def _wait_ready(self) -> None:
        assert self.process is not None
        # Through our own socket: on 127.0.0.1 some other server on the port could answer for ours. The
        # postmaster binds TCP before the socket, so a ready socket means TCP is listening too.
        probe = [self._bin("pg_isready"), "-q", "-h", str(self.socket_dir), "-p", str(self.port), "-U", ROLE]
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code, self.process = self.process.returncode, None
                raise PostgresError(f"postgres exited with {code}:\n{tail(self.log_path)}")
            if subprocess.run(probe, check=False).returncode == 0:
                return
            time.sleep(0.05)
        self.stop()
        raise PostgresError(f"postgres not ready in {READY_TIMEOUT_S:g} s:\n{tail(self.log_path)}")

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _as_server_user(self) -> dict[str, Any]:
        if self.user is None:
            return {}
        # Root's supplementary groups would follow the server otherwise.
        return {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid, "extra_groups": []}

    def _give_to_server_user(self, *paths: Path) -> None:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, *command: str, **as_user: Any) -> None:
        result = subprocess.run(
            command, capture_output=True, text=True, cwd=self.root, timeout=COMMAND_TIMEOUT_S, check=False,
            **as_user,
        )  # fmt: skip
        if result.returncode:
            name = Path(command[0]).name
            raise PostgresError(f"{name} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


def start_postgres() -> PostgresServer:
    """A new cluster in a temp dir, running on a free port, with the database ``florence`` created."""
    bin_dir, user = postgres_bin_dir(), server_user()
    server = PostgresServer(bin_dir, Path(tempfile.mkdtemp(prefix="florence-pg-")), free_port(), user)
    try:
        server.init()
        server.start()
        server.create_database(DATABASE)
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except (PostgresError, OSError, subprocess.SubprocessError) as exc:
        failure = f"PostgreSQL could not be started:\n{exc}"
    else:
        failure = ""
    # Failed outside the except block, so the report shows the reason once, without a chained traceback.
    if failure:
        pytest.fail(failure, pytrace=False)
    try:
        yield server
    finally:
        server.close()
