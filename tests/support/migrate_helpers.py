"""Helpers of the ``fastdimse migrate`` tests: our servers as subprocesses, a storage SCP
that refuses some instances, and reading a migration journal.

``start_cli_server("qrscp", args, log_dir)`` runs ``fastdimse qrscp|scp`` (the installed
console script) and returns once it listens: the port comes from the line it prints,
then is polled. The caller stops it by pid (``server.stop()``).
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.peers import HOST, PYTHON, Peer, free_port, start_process, stop_process, wait_for_port

FASTDIMSE = Path(sys.executable).with_name("fastdimse")
REFUSING_SCP = Path(__file__).with_name("refusing_storescp.py")
_LISTENING = re.compile(r"listening on [0-9.]+:(\d+)")


@dataclass
class CliServer:
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)


def start_cli_server(command: str, args: list[str], log_dir: Path, timeout: float = 20.0) -> CliServer:
    log_dir.mkdir(parents=True, exist_ok=True)
    out = log_dir / f"{command}-{time.monotonic_ns()}.log"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([str(FASTDIMSE), command, "--host", HOST, "--port", "0", *args], stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while (m := _LISTENING.search(out.read_text(errors="replace"))) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise AssertionError(f"fastdimse {command} did not start:\n{out.read_text(errors='replace')}")
        time.sleep(0.05)
    port = int(m.group(1))
    wait_for_port(HOST, port, timeout=timeout, proc=proc)
    return CliServer(proc, port, out)


def start_refusing_scp(log_dir: Path, out_dir: Path, *, ae_title: str, port: int | None = None,
                       refuse_modality: str = "MR", status: int = 0xA700) -> Peer:
    """A pynetdicom storage SCP (refusing_storescp.py) writing into ``out_dir`` every
    instance except those of ``refuse_modality``, which it answers ``status``."""
    port = free_port() if port is None else port
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [PYTHON, str(REFUSING_SCP), "--port", str(port), "--aet", ae_title, "--out", str(out_dir),
            "--refuse-modality", refuse_modality, "--status", f"0x{status:04X}"]
    return start_process(argv, port=port, log_dir=log_dir, name=f"refusing-scp-{port}", ae_title=ae_title)


def journal_rows(path: Path) -> dict[str, dict]:
    """study_uid -> its journal row (read-only, as another process sees the journal)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        db.row_factory = sqlite3.Row
        return {r["study_uid"]: dict(r) for r in db.execute("SELECT * FROM studies")}
    finally:
        db.close()
