"""A throw-away PostgreSQL server for the tests (and the benchmark).

:func:`start_postgres` runs Debian's ``initdb`` and ``pg_ctl`` (``make test`` installs
the ``postgresql`` package when it is missing) in a fresh temporary folder, as an
unprivileged user: initdb refuses to run as root, so under root (CI) the server runs
as the ``postgres`` user that the Debian package creates, through ``runuser``, and the
folder is handed to that user. The server listens on 127.0.0.1 only, on a free port,
with its unix socket inside the folder; it is stopped by its postmaster pid
(``PgServer.stop``), and the folder is removed.

Fixtures (imported by conftest.py): ``pg_server`` (one per test session, started only
when a test asks for it) and ``pg_url`` (a fresh, empty database per test).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.peers import HOST, PeerError, free_port, wait_for_port

SUPERUSER = "fastdimse"


def pg_bindir() -> str:
    """The folder of initdb/pg_ctl/postgres: Debian keeps them off PATH, in
    /usr/lib/postgresql/<version>/bin (the newest one is taken)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    which = shutil.which("initdb")
    if which:
        return os.path.dirname(which)
    raise PeerError("PostgreSQL's initdb is not installed; make test installs it "
                    "(apt-get install postgresql)")


@dataclass
class PgServer:
    base: Path
    port: int
    pid: int
    bindir: str

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def url_of(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name``; returns its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT to the postmaster, by pid), wait for it to go, then
        remove the folder. SIGKILL if it does not stop in time."""
        if self.pid:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, 10.0)):
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while _alive(self.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not _alive(self.pid):
                    break
            self.pid = 0
        shutil.rmtree(self.base, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's process of that pid
        return True
    # A zombie child of ours (pg_ctl's postmaster is not our child, but be safe).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _as_user(argv: list[str]) -> tuple[list[str], str | None]:
    """argv run as an unprivileged user: as is when we are not root, else as the
    ``postgres`` user (Debian's package creates it) through runuser."""
    if os.geteuid() != 0:
        return argv, None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PeerError("running as root and there is no 'postgres' user to run the "
                        "test server as (apt-get install postgresql creates it)") from None
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", "postgres", "--", *argv], "postgres"


def _run(argv: list[str], log: Path, timeout: float) -> None:
    argv, _ = _as_user(argv)
    with open(log, "ab") as out:
        rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            timeout=timeout, cwd="/").returncode
    if rc != 0:
        raise PeerError(f"{argv} failed ({rc}): {log.read_text(errors='replace')[-2000:]}")


def start_postgres(*, durable: bool = False, max_connections: int = 100) -> PgServer:
    """initdb + pg_ctl start in a new temporary folder; returns once the server
    accepts connections. ``durable=False`` turns fsync off (the tests kill our
    processes, never the database server); the benchmark passes True."""
    bindir = pg_bindir()
    base = Path(tempfile.mkdtemp(prefix="fastdimse-pg-"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    log.touch()
    _, user = _as_user([])
    if user is not None:
        pw = pwd.getpwnam(user)
        for p in (base, sock, log):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(base, 0o700)
    try:
        _run([f"{bindir}/initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust",
              "-E", "UTF8", "--locale=C", "--no-sync"], log, timeout=120)
        port = free_port()
        opts = (f"-c listen_addresses={HOST} -p {port} -k {sock} "
                f"-c max_connections={max_connections} -c shared_buffers=64MB"
                + ("" if durable else " -c fsync=off -c full_page_writes=off"))
        _run([f"{bindir}/pg_ctl", "start", "-w", "-t", "60", "-D", str(data), "-l", str(log),
              "-o", opts], log, timeout=90)
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except BaseException:
        _kill_leftover(data)
        shutil.rmtree(base, ignore_errors=True)
        raise
    server = PgServer(base, port, pid, bindir)
    try:
        wait_for_port(HOST, port, timeout=30)
    except BaseException:
        server.stop()
        raise
    return server


def _kill_leftover(data: Path) -> None:
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError, IndexError):
        pass


_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server():
    """One PostgreSQL server for the session (started on first use), stopped by pid."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh empty database on the session's server, as a postgresql:// URL."""
    return pg_server.create_database(f"t{os.getpid()}_{next(_counter)}")
