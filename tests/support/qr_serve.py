"""A stand-alone Q/R + storage SCP serving an index, for the load tests, `make soak` and
the index benchmark: ``python tests/support/qr_serve.py --dir STORAGE [--ae AE] [--port N]``.

It serves a :class:`fastdimse.DICOMSCP` with ``storage_dir=STORAGE`` (the default SQLite
index in that folder) on 127.0.0.1 until SIGTERM or SIGINT. The caller starts it in its
own process so that its open files, threads and RSS can be read from ``/proc/PID`` and
its file limit set (``resource.setrlimit`` in ``preexec_fn``); see :func:`start`.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ae", default="QRSCP")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-associations", type=int, default=64)
    ap.add_argument("--known", action="append", default=[],
                    help="a C-MOVE destination, AE=HOST:PORT (repeatable)")
    args = ap.parse_args(argv)

    from fastdimse import DICOMSCP, Entity

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    known = []
    for spec in args.known:
        ae, _, addr = spec.partition("=")
        host, _, port = addr.rpartition(":")
        known.append(Entity(ae, host, int(port)))
    scp = DICOMSCP(Entity(args.ae, "127.0.0.1", args.port), storage_dir=args.dir,
                   max_associations=args.max_associations, known_entities=known)
    scp.listen_for_incoming_associations(keep_listener_running=True)
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"serving {args.dir} as {args.ae} on port {scp.port}, file limit {soft}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        scp.stop()
        scp.backend.close()
    return 0


def start(storage_dir: str | os.PathLike, port: int, log_path: str | os.PathLike, *,
          ae_title: str = "QRSCP", nofile: int | None = None,
          python: str = sys.executable, known: dict[str, tuple[str, int]] | None = None,
          ) -> subprocess.Popen:
    """Start this script in a child process, its RLIMIT_NOFILE set to ``nofile`` (soft
    and hard) before it runs. The caller waits for the port and stops it by pid."""

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = open(log_path, "wb")
    try:
        return subprocess.Popen(
            [python, str(HERE / "qr_serve.py"), "--dir", str(storage_dir), "--ae", ae_title,
             "--port", str(port),
             *[f"--known={ae}={host}:{p}" for ae, (host, p) in (known or {}).items()]],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=limit if nofile is not None else None)
    finally:
        log.close()  # the child has its own copy


def proc_stats(pid: int) -> dict:
    """Open files, threads and RSS (KiB) of a running process, from /proc."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    out = {"fds": fds}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                out["rss_kb"] = int(line.split()[1])
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    return out


if __name__ == "__main__":
    sys.exit(main())
