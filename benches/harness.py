"""Timing and process plumbing for `make bench`.

Theory of operation
-------------------
Every peer the benchmark starts (dcmtk tools, and Python workers from
``benches/workers.py``) is a :class:`Child`: a process we spawned, timed from spawn to
exit, whose peak resident memory we read when it ends, and which is stopped by its pid
when the block that owns it ends, whatever happened (``with Child(...) as c:``; an
``atexit`` hook stops any that are still registered).

Peak RSS. ``os.wait4`` gives a child's ``ru_maxrss``, but on Linux that figure starts
at the RSS of the process that forked it (the high-water mark of the parent's memory
survives fork and exec), so a child forked by this Python harness never reports less
than the harness's own RSS. We therefore spawn through GNU ``/usr/bin/time -f %M``,
a ~1 MB process that does the fork + exec + wait4 itself: the child's ``ru_maxrss`` is
then its own. If ``/usr/bin/time`` is missing we fall back to sampling ``VmHWM`` in
``/proc/<pid>/status`` every 5 ms (exact up to the last 5 ms before exit); the table
says which method was used.

Readiness. A server is ready when its port appears in LISTEN state in
``/proc/net/tcp`` (no probe connection that would show up in the peer's logs), polled
in a bounded loop that also notices if the server died.

Wall time. ``Child.wait`` blocks in ``waitpid`` (no polling interval added to the
measurement); a timer thread kills the child if it outlives its timeout.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = [
    "Child", "ChildFailed", "free_port", "wait_listening", "count_files", "scratch_dir",
    "log", "RSS_METHOD", "self_peak_rss_kb",
]

GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
RSS_METHOD = "wait4 via /usr/bin/time" if GNU_TIME else "VmHWM sampled every 5 ms"

_live: dict[int, "Child"] = {}
_log_dir: str | None = None
KEEP_LOGS = os.environ.get("FASTDIMSE_BENCH_KEEP_LOGS") == "1"


def run_log_dir() -> str:
    """This run's directory for the peers' logs; removed at exit unless
    FASTDIMSE_BENCH_KEEP_LOGS=1."""
    global _log_dir
    if _log_dir is None:
        _log_dir = tempfile.mkdtemp(prefix="fastdimse-bench-logs-")
    return _log_dir


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def self_peak_rss_kb() -> int | None:
    """This process's own peak RSS (VmHWM) in KiB, or None where /proc is missing."""
    return _read_hwm(os.getpid())


def _read_hwm(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class ChildFailed(RuntimeError):
    """A child exited badly or did not become ready; the message has its log's tail."""


class Child:
    """A spawned process, its wall time and its peak RSS.

    ``argv`` is run with ``env`` added to the environment (a value of None removes the
    variable); its stdout and stderr go to ``log_path`` (a temporary file if not given).
    Use as a context manager.
    """

    def __init__(self, argv: list[str], *, name: str, env: dict[str, str | None] | None = None,
                 log_dir: str | None = None, cwd: str | None = None):
        self.name = name
        self.argv = list(argv)
        fd, self.log_path = tempfile.mkstemp(prefix=f"{_slug(name)}-", suffix=".log", dir=log_dir or run_log_dir())
        os.close(fd)
        fd, self._rss_path = tempfile.mkstemp(prefix=f"{_slug(name)}-", suffix=".rss", dir=run_log_dir())
        os.close(fd)
        full_env = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        cmd = [GNU_TIME, "-f", "%M", "-o", self._rss_path, *self.argv] if GNU_TIME else self.argv
        self._log_file = open(self.log_path, "wb")
        self.returncode: int | None = None
        self.wall_s: float | None = None
        self._hwm: int | None = None
        self.timed_out = False
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        _live[self.proc.pid] = self
        self._poller = None
        if not GNU_TIME:
            self._poller = threading.Thread(target=self._poll_hwm, daemon=True)
            self._poller.start()

    # -- the real program's pid (under /usr/bin/time it is time's only child) --
    def target_pid(self, timeout: float = 2.0) -> int | None:
        if not GNU_TIME:
            return self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
                if kids:
                    return int(kids[0])
            except OSError:
                return None
            time.sleep(0.002)
        return None

    def _poll_hwm(self) -> None:
        pid = self.proc.pid
        while self.proc.returncode is None:
            v = _read_hwm(pid)
            if v is None:
                break
            self._hwm = v
            time.sleep(0.005)

    @property
    def running(self) -> bool:
        return self.returncode is None and self.proc.poll() is None

    def wait(self, timeout: float) -> int:
        """Block until the child exits (killing it after ``timeout`` s); return its code."""
        timer = threading.Timer(timeout, self._on_timeout)
        timer.daemon = True
        timer.start()
        try:
            rc = self.proc.wait()
        finally:
            timer.cancel()
        self.wall_s = time.perf_counter() - self.t0
        self._finish(rc)
        return rc

    def _finish(self, rc: int) -> None:
        self.returncode = rc
        _live.pop(self.proc.pid, None)
        self._log_file.close()

    def _on_timeout(self) -> None:
        self.timed_out = True
        self._kill()

    def _kill(self) -> None:
        pid = self.target_pid(timeout=0.2)
        for p in (pid, self.proc.pid):
            if p:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the program (by pid), SIGKILL after ``grace`` s; reap it. Idempotent."""
        if self.returncode is not None:
            return
        if self.proc.poll() is None:
            pid = self.target_pid()
            try:
                os.kill(pid or self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._kill()
                self.proc.wait(5)
        self.wall_s = time.perf_counter() - self.t0
        self._finish(self.proc.returncode)

    def peak_rss_kb(self) -> int | None:
        """Peak RSS of the program in KiB, once it has exited."""
        if not GNU_TIME:
            return self._hwm
        try:
            lines = Path(self._rss_path).read_text().split()
        except OSError:
            return None
        for tok in reversed(lines):
            if tok.isdigit():
                return int(tok)
        return None

    def output(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-n:])

    def cleanup(self) -> None:
        for p in (self.log_path, self._rss_path):
            try:
                os.unlink(p)
            except OSError:
                pass

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s)[:40]


@atexit.register
def _stop_all() -> None:
    for child in list(_live.values()):
        try:
            child.stop(grace=2.0)
        except Exception:
            pass
    if _log_dir is not None:
        if KEEP_LOGS:
            print(f"[bench] peer logs kept in {_log_dir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(_log_dir, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    hexport = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[3] == "0A" and parts[1].rsplit(":", 1)[1] == hexport:
                        return True
        except (OSError, StopIteration, IndexError):
            continue
    return False


def wait_listening(port: int, child: Child | None = None, timeout: float = 20.0) -> None:
    """Return once something listens on ``port``; raise ChildFailed if ``child`` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _listening(port):
            return
        if child is not None and not child.running:
            raise ChildFailed(f"{child.name} exited before listening on {port}:\n{child.tail()}")
        time.sleep(0.01)
    raise ChildFailed(f"nothing listening on port {port} after {timeout} s"
                      + (f"; {child.name} log:\n{child.tail()}" if child else ""))


def count_files(directory: str | os.PathLike, suffix: str | None = None) -> int:
    """Regular files under ``directory`` (recursively), optionally ending in ``suffix``."""
    n = 0
    for _root, _dirs, files in os.walk(directory):
        n += sum(1 for f in files if suffix is None or f.endswith(suffix))
    return n


def scratch_dir(tag: str) -> str:
    """A new empty directory under /dev/shm (else the temp dir) for an SCP to write to."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    return tempfile.mkdtemp(prefix=f"fastdimse-bench-{_slug(tag)}-", dir=base)
