"""Indexed, crash-safe ingest against dcmtk (`make bench` runs it).

    python -m benches.bench_ingest [--n 2000] [--postgres | --index postgresql://...] [--out FILE]

``--n`` small instances (4x4 16-bit CT, ~1.5 KB each, one series) are sent over one
association into each receiver, and the rate is counted from the sender's start to its
exit (storescu) or to ``store()`` returning (our SCU):

- dcmtk ``storescu`` -> dcmtk ``storescp`` (unindexed: files only, the floor of a
  storage SCP),
- dcmtk ``storescu`` -> dcmtk ``dcmqrscp`` (dcmtk's Q/R archive: files and its index),
- dcmtk ``storescu`` -> the fastdimse archive (``DICOMSCP(storage_dir=...)`` in its own
  process: files and the SQLite index, each success answered only after its index row is
  committed), and the same with ``--index URL`` (PostgreSQL) when given,
- our SCU (window 16) -> the fastdimse archive.

dcmtk to dcmtk runs with TCP_NODELAY=1 on both sides (its best; without it every
C-STORE waits on a delayed ACK), dcmtk into fastdimse as users run it (no TCP_NODELAY).
Every receiver writes to /dev/shm. Prints a Markdown table and appends it to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from tests.support import peers
from tests.support import qr_helpers as q
from tests.support.peers import HOST, PYTHON, SUPPORT_DIR, free_port


def _env(nodelay: bool = False) -> dict:
    """The environment for dcmtk: as users run it (Nagle on), or with TCP_NODELAY=1."""
    env = dict(os.environ)
    env.pop("TCP_NODELAY", None)
    if nodelay:
        env["TCP_NODELAY"] = "1"
    return env


def storescu(port: int, called: str, src: Path, nodelay: bool = False) -> float:
    argv = ["storescu", "-aet", "BENCH", "-aec", called, "+sd", "+r", HOST, str(port), str(src)]
    t = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          env=_env(nodelay), timeout=3600)
    dt = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(done.stdout.decode(errors="replace")[-2000:])
    return dt


def our_scu(port: int, called: str, src: Path) -> float:
    from fastdimse import DICOMSCU, Entity

    t = time.perf_counter()
    results = DICOMSCU(Entity("BENCH", HOST, 0)).store(Entity(called, HOST, port), [str(src)])
    dt = time.perf_counter() - t
    bad = [r for r in results if not r.is_success]
    if bad:
        raise RuntimeError(f"{len(bad)} failed: {bad[0].reason}")
    return dt


def archive(log_dir: Path, storage: Path, index: str | None) -> peers.Peer:
    port = free_port()
    argv = [PYTHON, str(SUPPORT_DIR / "archive_scp.py"), str(storage), str(port), "ARCHIVE"]
    if index:
        argv += ["--index", index]
    return peers.start_process(argv, port=port, log_dir=log_dir, name=f"archive-{port}",
                               env=_env())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--index", default=None, help="a PostgreSQL URL for the extra rows")
    ap.add_argument("--postgres", action="store_true",
                    help="start a PostgreSQL (tests/support/pgserver.py, fsync on) for the extra rows")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    n = args.n
    src = Path(f"/dev/shm/fastdimse-bench-ingest-{n}")
    if not src.exists():
        q.write_archive(src, q.bulk_truth(n, tag=77))
    rows = []
    server = None
    if args.postgres and not args.index:
        from tests.support import pgserver

        server = pgserver.start_postgres(durable=True)
    scratch = Path(tempfile.mkdtemp(prefix="fd-ingest-", dir="/dev/shm"))
    logs = scratch / "logs"
    try:
        def run(name: str, start, send) -> None:
            out = scratch / f"case{len(rows)}"
            peer = start(out)
            try:
                dt = send(peer.port)
            finally:
                peer.stop()
            rows.append((name, dt))
            print(f"{name}: {n / dt:,.0f}/s", flush=True)

        def start_storescp(out: Path) -> peers.Peer:
            out.mkdir(parents=True)
            port = free_port()
            return peers.start_process(["storescp", "-aet", "STORESCP", "+B", "-od", str(out), str(port)],
                                       port=port, log_dir=logs, name="storescp", env=_env(True))

        run("storescu -> storescp (unindexed; TCP_NODELAY=1 both)", start_storescp,
            lambda port: storescu(port, "STORESCP", src, nodelay=True))
        def start_dcmqrscp(out: Path) -> peers.Peer:
            from benches.qr import dcmqrscp_config

            out.mkdir(parents=True)
            port = free_port()
            cfg = dcmqrscp_config(str(scratch / "dcmqrscp.cfg"), port, {"DCMQR": str(out)}, {"NOWHERE": 1})
            return peers.start_process(["dcmqrscp", "-c", cfg, str(port)], port=port,
                                       log_dir=logs, name="dcmqrscp", env=_env(True))

        run("storescu -> dcmqrscp (dcmtk Q/R archive, indexed; TCP_NODELAY=1 both)", start_dcmqrscp,
            lambda port: storescu(port, "DCMQR", src, nodelay=True))
        run("storescu (default, Nagle on) -> fastdimse archive (SQLite, crash-safe)",
            lambda out: archive(logs, out, None), lambda port: storescu(port, "ARCHIVE", src))
        run("fastdimse SCU -> fastdimse archive (SQLite, crash-safe)",
            lambda out: archive(logs, out, None), lambda port: our_scu(port, "ARCHIVE", src))
        if args.index or server is not None:
            urls = iter([args.index] * 2 if args.index else
                        [server.create_database("ingest1"), server.create_database("ingest2")])
            run("storescu (default, Nagle on) -> fastdimse archive (PostgreSQL, crash-safe)",
                lambda out: archive(logs, out, next(urls)), lambda port: storescu(port, "ARCHIVE", src))
            run("fastdimse SCU -> fastdimse archive (PostgreSQL, crash-safe)",
                lambda out: archive(logs, out, next(urls)), lambda port: our_scu(port, "ARCHIVE", src))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if server is not None:
            server.stop()
    base = {name: dt for name, dt in rows}
    qr = base["storescu -> dcmqrscp (dcmtk Q/R archive, indexed; TCP_NODELAY=1 both)"]
    lines = [f"## Indexed ingest, {n} small instances, one association", "",
             "dcmtk to dcmtk with TCP_NODELAY=1 on both sides (without it each C-STORE waits"
             " on a delayed ACK: ~11/s); dcmtk into fastdimse as users run it.", "",
             "| case | wall s | instances/s | x dcmqrscp |", "|---|---|---|---|"]
    for name, dt in rows:
        lines.append(f"| {name} | {dt:.3f} | {n / dt:,.0f} | {qr / dt:.2f}x |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
