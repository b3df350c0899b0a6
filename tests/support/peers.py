"""Real DICOM peers for the interoperability tests, and the small helpers they need.

Everything here talks over loopback (127.0.0.1) only. A peer is a real program
(dcmtk's tools from Debian, pynetdicom's apps from PyPI) started with ``Popen``;
its stdout and stderr go to a log file so a failing test can show what the peer
said. A peer is considered up when its TCP port accepts a connection (polled, no
fixed sleeps) and it is stopped by its pid: terminate, wait, then kill.

dcmtk and pynetdicom are required, not optional: ``make test`` installs both. If
one is missing, :func:`require_executable` / :func:`require_module` raise
instead of letting tests skip silently.

This module imports fastdimse only inside the helpers at its end, so the peer fixtures can be checked
against each other before the library exists (see test_peers_sanity.py).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SUPPORT_DIR = Path(__file__).resolve().parent
PYTHON = sys.executable
PYNETDICOM_SCP_SCRIPT = SUPPORT_DIR / "pynetdicom_scp.py"

# Bounds on how long a peer may take; generous because the 2 CPU cores are shared
# with builds, but every wait has one.
PEER_START_TIMEOUT = 20.0
PEER_STOP_TIMEOUT = 5.0
CLIENT_RUN_TIMEOUT = 60.0


class PeerError(RuntimeError):
    """A real peer could not be found, started or run."""


def require_executable(name: str) -> str:
    """Return the path of a required program, or raise (never skip)."""
    path = shutil.which(name)
    if path is None:
        raise PeerError(
            f"required program {name!r} is not on PATH; install dcmtk "
            "(make test does: apt-get install dcmtk)"
        )
    return path


def require_module(name: str) -> None:
    """Raise unless the Python module ``name`` is importable by this interpreter."""
    if importlib.util.find_spec(name) is None:
        raise PeerError(
            f"required Python package {name!r} is not installed in {PYTHON}; "
            "make test installs it (pip install pynetdicom)"
        )


def free_port(host: str = HOST) -> int:
    """A TCP port that was free on ``host`` a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to (host, port) succeeds right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = PEER_START_TIMEOUT,
                  proc: subprocess.Popen | None = None, log_path: Path | None = None) -> None:
    """Poll until (host, port) accepts a TCP connection; raise PeerError after ``timeout``.

    If ``proc`` is given and exits while we wait, fail at once with its log.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        if port_answers(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise PeerError(
                f"process {proc.args!r} exited with {proc.returncode} before "
                f"{host}:{port} answered\n{_read_log(log_path)}"
            )
        if time.monotonic() >= deadline:
            raise PeerError(
                f"{host}:{port} did not answer within {timeout} s\n{_read_log(log_path)}"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


def wait_for_port_closed(host: str, port: int, timeout: float = PEER_STOP_TIMEOUT) -> bool:
    """Poll until (host, port) refuses connections; return False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_answers(host, port, timeout=0.2):
            return True
        time.sleep(0.05)
    return False


def _read_log(log_path: Path | None) -> str:
    if log_path is None:
        return ""
    try:
        return f"--- {log_path} ---\n" + log_path.read_text(errors="replace")
    except OSError as exc:
        return f"(log {log_path} unreadable: {exc})"


def stop_process(proc: subprocess.Popen, timeout: float = PEER_STOP_TIMEOUT) -> None:
    """Stop one process by its pid: SIGTERM, wait, then SIGKILL and reap."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@dataclass
class Peer:
    """A running peer process: what it is, where it listens, where it logs."""

    name: str
    ae_title: str
    host: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    argv: list[str] = field(default_factory=list)
    # A regex the peer's log matches once per association it accepts ("" if unknown).
    accepted_pattern: str = ""
    # The maximum PDU length the peer announces in its A-ASSOCIATE-AC (None if unknown).
    max_pdu: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        """Everything the peer has written to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 10.0) -> list[str]:
        """Poll the log until ``pattern`` (a regex) has matched ``count`` times; return the matches.

        Peers write their log after they answer, so a test that has its response
        may still have to wait a moment for the line.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = re.findall(pattern, self.log())
            if len(found) >= count or time.monotonic() >= deadline:
                if len(found) < count:
                    raise AssertionError(
                        f"{self.name}: wanted {count} x {pattern!r} in its log within "
                        f"{timeout} s, found {len(found)}\n{self.log()}")
                return found
            time.sleep(0.05)

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc)
        _close_log(self.proc)


def _close_log(proc: subprocess.Popen) -> None:
    fh = getattr(proc, "_fastdimse_log", None)
    if fh is not None and not fh.closed:
        fh.close()


def start_process(argv: list[str], *, port: int, log_dir: Path, name: str,
                  ae_title: str = "", host: str = HOST,
                  timeout: float = PEER_START_TIMEOUT,
                  env: dict[str, str] | None = None, cwd: Path | None = None) -> Peer:
    """Start ``argv`` with stdout+stderr to ``log_dir/<name>.log`` and wait for its port.

    Returns a :class:`Peer`; the caller must call ``peer.stop()`` (the fixtures do,
    in their teardown). If the port never answers, the process is stopped before
    the error is raised, so nothing is left running.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log_fh = open(log_path, "wb")
    try:
        proc = subprocess.Popen(
            argv, stdout=log_fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd,
        )
    except BaseException:
        log_fh.close()
        raise
    proc._fastdimse_log = log_fh  # type: ignore[attr-defined]
    peer = Peer(name=name, ae_title=ae_title, host=host, port=port, proc=proc,
                log_path=log_path, argv=list(argv))
    try:
        wait_for_port(host, port, timeout=timeout, proc=proc, log_path=log_path)
    except BaseException:
        peer.stop()
        raise
    return peer


# --- the peers themselves -------------------------------------------------------------

DCMTK_STORESCP_MAX_PDU = 32768
PYNETDICOM_ECHOSCP_MAX_PDU = 20000


def start_dcmtk_storescp(log_dir: Path, *, ae_title: str = "STORESCP",
                         port: int | None = None,
                         max_pdu: int = DCMTK_STORESCP_MAX_PDU) -> Peer:
    """dcmtk storescp: serves Verification (and storage) and accepts any called AE title."""
    exe = require_executable("storescp")
    port = free_port() if port is None else port
    out_dir = log_dir / "storescp-out"
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "-v", "-aet", ae_title, "-od", str(out_dir), "-ta", "10", "-td", "10",
            "-ts", "20", "-pdu", str(max_pdu), str(port)]
    peer = start_process(argv, port=port, log_dir=log_dir, name=f"dcmtk-storescp-{port}",
                         ae_title=ae_title)
    peer.accepted_pattern = DCMTK_STORESCP_ACCEPTED
    peer.max_pdu = max_pdu
    return peer


def start_pynetdicom_echoscp(log_dir: Path, *, ae_title: str = "ECHOSCP",
                             port: int | None = None,
                             max_pdu: int = PYNETDICOM_ECHOSCP_MAX_PDU) -> Peer:
    """pynetdicom's own ``echoscp`` app (``python -m pynetdicom echoscp``), bound to loopback."""
    require_module("pynetdicom")
    port = free_port() if port is None else port
    argv = [PYTHON, "-m", "pynetdicom", "echoscp", "-v", "-aet", ae_title,
            "-ba", HOST, "-ta", "10", "-td", "10", "-tn", "20", "-pdu", str(max_pdu), str(port)]
    peer = start_process(argv, port=port, log_dir=log_dir,
                         name=f"pynetdicom-echoscp-{port}", ae_title=ae_title)
    peer.accepted_pattern = PYNETDICOM_ECHOSCP_ACCEPTED
    peer.max_pdu = max_pdu
    return peer


def start_pynetdicom_scp(log_dir: Path, *, ae_title: str = "PYNDSCP",
                         require_called_ae: bool = False,
                         allowed_calling_aes: list[str] | None = None,
                         port: int | None = None) -> Peer:
    """A pynetdicom Verification SCP (tests/support/pynetdicom_scp.py) that can reject associations.

    ``require_called_ae``: reject when the called AE title is not ``ae_title``
    (pynetdicom answers result 1, source 1, reason 7).
    ``allowed_calling_aes``: reject other calling AE titles (result 1, source 1, reason 3).
    """
    require_module("pynetdicom")
    port = free_port() if port is None else port
    argv = [PYTHON, str(PYNETDICOM_SCP_SCRIPT), "--aet", ae_title, "--bind", HOST,
            "--port", str(port)]
    if require_called_ae:
        argv.append("--require-called-ae")
    for ae in allowed_calling_aes or []:
        argv += ["--allow-calling", ae]
    peer = start_process(argv, port=port, log_dir=log_dir, name=f"pynetdicom-scp-{port}",
                         ae_title=ae_title)
    peer.accepted_pattern = PYNETDICOM_ECHOSCP_ACCEPTED
    return peer


# --- the clients ----------------------------------------------------------------------

def _run(argv: list[str], timeout: float) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired as exc:  # subprocess.run kills the child itself
        out = exc.stdout.decode(errors="replace") if exc.stdout else ""
        raise PeerError(f"{argv!r} did not finish within {timeout} s\n{out}") from None
    return done.returncode, done.stdout.decode(errors="replace")


def run_dcmtk_echoscu(port: int, *, calling_ae: str = "ECHOSCU", called_ae: str = "ANY-SCP",
                      host: str = HOST, repeat: int = 1, extra: list[str] | None = None,
                      timeout: float = CLIENT_RUN_TIMEOUT) -> tuple[int, str]:
    """Run dcmtk ``echoscu -v -aet CALLING -aec CALLED host port``; return (returncode, output)."""
    exe = require_executable("echoscu")
    argv = [exe, "-v", "-aet", calling_ae, "-aec", called_ae, "-to", "10", "-ta", "10",
            "-td", "10"]
    if repeat != 1:
        argv += ["--repeat", str(repeat)]
    argv += list(extra or []) + [host, str(port)]
    return _run(argv, timeout)


def run_pynetdicom_echoscu(port: int, *, calling_ae: str = "ECHOSCU",
                           called_ae: str = "ANY-SCP", host: str = HOST, repeat: int = 1,
                           extra: list[str] | None = None,
                           timeout: float = CLIENT_RUN_TIMEOUT) -> tuple[int, str]:
    """Run ``python -m pynetdicom echoscu -v``; return (returncode, output).

    Its exit code is 0 whenever an association was established, even if the echo
    failed, so callers must also look for ``Status: Success`` in the output.
    """
    require_module("pynetdicom")
    argv = [PYTHON, "-m", "pynetdicom", "echoscu", "-v", "-aet", calling_ae,
            "-aec", called_ae, "-ta", "10", "-td", "10", "-tn", "10"]
    if repeat != 1:
        argv += ["--repeat", str(repeat)]
    argv += list(extra or []) + [host, str(port)]
    return _run(argv, timeout)


PYNETDICOM_ECHO_SUCCESS = "Received Echo Response (Status: 0x0000 - Success)"
DCMTK_ECHO_SUCCESS = "Received Echo Response (Success)"
# What the SCPs print (with -v) for each C-ECHO-RQ they receive, dcmtk and pynetdicom alike.
PEER_ECHO_RECEIVED = r"Received Echo Request \(MsgID (\d+)\)"
# The line each SCP prints once per association it accepts (dcmtk storescp prints
# "Association Received" also for bare TCP connections such as our port probe).
DCMTK_STORESCP_ACCEPTED = r"Association Acknowledged"
PYNETDICOM_ECHOSCP_ACCEPTED = r"Accepting Association"

# What dcmtk echoscu 3.6.7 prints (with -v) when the peer answers A-ASSOCIATE-RJ.
DCMTK_REJECTED = "Association Rejected"
DCMTK_REJECT_PERMANENT_USER = "Result: Rejected Permanent, Source: Service User"
DCMTK_CALLED_AE_NOT_RECOGNIZED = "Reason: Called AE Title Not Recognized"
DCMTK_CALLING_AE_NOT_RECOGNIZED = "Reason: Calling AE Title Not Recognized"


# --- the fastdimse side (fastdimse is imported only when these are called) ------------

SCP_AE = "FDSCP"
SCU_AE = "FDSCU"


@dataclass
class RunningSCP:
    """A started DICOMSCP, the Entity it was given, and the port it listens on."""

    scp: object
    entity: object
    port: int

    @property
    def ae_title(self) -> str:
        return self.entity.ae_title

    def remote(self, ae_title: str | None = None):
        """The Entity an SCU uses to reach this SCP (optionally with another called AE)."""
        from fastdimse import Entity

        return Entity(ae_title or self.entity.ae_title, HOST, self.port)


def make_scu(ae_title: str = SCU_AE, **kwargs):
    """Our DICOMSCU calling as ``ae_title``, with short timeouts so failures are quick."""
    from fastdimse import DICOMSCU, Entity

    opts = dict(connect_timeout=10.0, acse_timeout=10.0, dimse_timeout=10.0,
                network_timeout=20.0)
    opts.update(kwargs)
    return DICOMSCU(Entity(ae_title, HOST, 0), **opts)


def peer_entity(peer: Peer, ae_title: str | None = None):
    """The fastdimse Entity of a running real peer."""
    from fastdimse import Entity

    return Entity(ae_title or peer.ae_title, peer.host, peer.port)


# --- storage peers (C-STORE) ----------------------------------------------------------

def start_dcmtk_storage_scp(log_dir: Path, out_dir: Path, *, ae_title: str = "STORESCP",
                            port: int | None = None, max_pdu: int = DCMTK_STORESCP_MAX_PDU,
                            extra: list[str] | None = None) -> Peer:
    """dcmtk storescp writing what it receives into ``out_dir`` (``-od``).

    ``extra``: more storescp options, e.g. ``["+B"]`` (write the data set bit-preserving,
    exactly as received) or ``["+xi"]`` (accept implicit VR little endian only).
    """
    exe = require_executable("storescp")
    port = free_port() if port is None else port
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "-v", "-aet", ae_title, "-od", str(out_dir), "-ta", "10", "-td", "30",
            "-ts", "60", "-pdu", str(max_pdu), *(extra or []), str(port)]
    peer = start_process(argv, port=port, log_dir=log_dir, name=f"dcmtk-storage-scp-{port}",
                         ae_title=ae_title)
    peer.accepted_pattern = DCMTK_STORESCP_ACCEPTED
    peer.max_pdu = max_pdu
    return peer


def start_pynetdicom_storescp(log_dir: Path, out_dir: Path, *, ae_title: str = "PYNDSTORE",
                              port: int | None = None,
                              extra: list[str] | None = None) -> Peer:
    """pynetdicom's ``storescp`` app (``python -m pynetdicom storescp -od out_dir``)."""
    require_module("pynetdicom")
    port = free_port() if port is None else port
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, "-m", "pynetdicom", "storescp", "-v", "-aet", ae_title, "-ba", HOST,
            "-od", str(out_dir), "-ta", "10", "-td", "30", "-tn", "60",
            *(extra or []), str(port)]
    peer = start_process(argv, port=port, log_dir=log_dir, name=f"pynetdicom-storescp-{port}",
                         ae_title=ae_title)
    peer.accepted_pattern = PYNETDICOM_ECHOSCP_ACCEPTED
    return peer


def run_dcmtk_storescu(port: int, paths: list[Path], *, calling_ae: str = "STORESCU",
                       called_ae: str = "ANY-SCP", host: str = HOST,
                       extra: list[str] | None = None,
                       timeout: float = CLIENT_RUN_TIMEOUT) -> tuple[int, str]:
    """dcmtk ``storescu -v`` (folders scanned recursively: ``+sd +r``); (returncode, output)."""
    exe = require_executable("storescu")
    argv = [exe, "-v", "-aet", calling_ae, "-aec", called_ae, "-to", "10", "-ta", "10",
            "-td", "30", "+sd", "+r", *(extra or []), host, str(port), *map(str, paths)]
    return _run(argv, timeout)


def run_pynetdicom_storescu(port: int, path: Path, *, calling_ae: str = "STORESCU",
                            called_ae: str = "ANY-SCP", host: str = HOST,
                            extra: list[str] | None = None,
                            timeout: float = CLIENT_RUN_TIMEOUT) -> tuple[int, str]:
    """``python -m pynetdicom storescu -v -r`` on one file or folder; (returncode, output).

    Like its echoscu, it exits 0 even when a store failed: callers must read the output.
    """
    require_module("pynetdicom")
    argv = [PYTHON, "-m", "pynetdicom", "storescu", "-v", "-r", "-aet", calling_ae,
            "-aec", called_ae, "-ta", "10", "-td", "30", "-tn", "60", *(extra or []),
            host, str(port), str(path)]
    return _run(argv, timeout)


# What dcmtk storescu (-v) and pynetdicom storescu (-v) print per C-STORE-RSP.
DCMTK_STORE_SUCCESS = r"Received Store Response \(Success\)"
PYNETDICOM_STORE_SUCCESS = r"Received Store Response \(Status: 0x0000 - Success\)"


def peak_rss_kb_of(pid: int) -> int:
    """Peak resident set size (VmHWM, KiB) of a running process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise PeerError(f"no VmHWM in /proc/{pid}/status")
