"""Indexed ingest on PostgreSQL beside SQLite (issue 9, item 7).

    .venv/bin/python -m benches.bench_index_pg [--n 20000] [--files 2000] [--out FILE]

Starts its own PostgreSQL (tests/support/pgserver.py: initdb + pg_ctl in a temporary folder on
a loopback port, fsync on, stopped by pid at the end) and measures:

1. ``add_instances`` alone, in batches of 500 (what the storage SCP's indexer hands
   over; each batch committed before the call returns): SQLiteIndex, PostgresIndex,
   and PostgresIndex written by 2 processes at once (same patient and study, as two
   SCPs behind one load balancer would see).
2. End to end: our SCU stores small files into a DICOMSCP (storage_dir, default
   SQLite index / ``index="postgresql://..."``); a success answer means the instance's
   index row is committed.

Prints a Markdown table and writes it to benches/results-index-pg.md (or --out).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
BATCH = 500


def items(n: int, tag: str, folder: str):
    """Keyword dicts as the SCP's indexer passes them: 1 patient, 1 study, 10 series."""
    study = f"1.2.826.0.1.3680043.9.{tag}.1"
    for i in range(n):
        yield (f"{folder}/{tag}-{i}.dcm", {
            "PatientID": "BENCH", "PatientName": "Bench^Mark", "PatientBirthDate": "19700101",
            "PatientSex": "O", "StudyInstanceUID": study, "StudyDate": "20260101",
            "StudyTime": "120000", "AccessionNumber": "A1", "StudyID": "1",
            "StudyDescription": "bench", "SeriesInstanceUID": f"{study}.{i % 10}",
            "Modality": "CT", "SeriesNumber": str(i % 10), "SOPInstanceUID": f"{study}.{i % 10}.{i}",
            "SOPClassUID": CT, "InstanceNumber": str(i), "TransferSyntaxUID": EXPLICIT,
        }, EXPLICIT)


def add_all(index, n: int, tag: str, folder: str) -> float:
    batch, t0 = [], time.perf_counter()
    for item in items(n, tag, folder):
        batch.append(item)
        if len(batch) == BATCH:
            assert index.add_instances(batch) == []
            batch = []
    if batch:
        assert index.add_instances(batch) == []
    return time.perf_counter() - t0


def _pg_writer(url: str, n: int, tag: str, folder: str, start, out) -> None:
    from fastdimse.qr.postgres import PostgresIndex

    with PostgresIndex(url, folder, location=f"w{tag}") as index:
        start.wait()
        out.put(add_all(index, n, tag, folder))


def bench_add(server, n: int, scratch: Path) -> list[tuple[str, int, float]]:
    from fastdimse.qr import SQLiteIndex
    from fastdimse.qr.postgres import PostgresIndex

    rows = []
    with SQLiteIndex(scratch / "sqlite") as index:
        rows.append(("add_instances, SQLite (WAL, synchronous=NORMAL)", n,
                     add_all(index, n, "1", str(scratch))))
    with PostgresIndex(server.create_database("b1"), scratch / "pg") as index:
        rows.append(("add_instances, PostgreSQL (1 process)", n,
                     add_all(index, n, "2", str(scratch))))
        assert index.count("IMAGE") == n
    url = server.create_database("b2")
    PostgresIndex(url, scratch / "pg2").close()  # schema first
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_pg_writer, args=(url, n // 2, f"3{i}", str(scratch), start, out))
             for i in range(2)]
    for p in procs:
        p.start()
    took = max(out.get(timeout=600) for _ in procs)  # each from the common start
    for p in procs:
        p.join(60)
    rows.append(("add_instances, PostgreSQL (2 processes at once)", n // 2 * 2, took))
    return rows


def bench_store(server, files: int, scratch: Path) -> list[tuple[str, int, float]]:
    from tests.support import qr_helpers as q
    from fastdimse import DICOMSCP, DICOMSCU, Entity
    from tests.support.peers import HOST, free_port, wait_for_port

    src = scratch / "src"
    truth = q.write_archive(src, q.bulk_truth(files, tag=77))
    rows = []
    for name, kwargs in (("SQLite", {}), ("PostgreSQL", {"index": server.create_database("b3")})):
        storage = scratch / f"store-{name}"
        scp = DICOMSCP(Entity("BENCH", HOST, free_port()), storage_dir=storage, **kwargs)
        scp.listen_for_incoming_associations(keep_listener_running=True)
        try:
            wait_for_port(HOST, scp.port, timeout=10)
            t0 = time.perf_counter()
            results = DICOMSCU(Entity("SENDER", HOST, 0)).store(
                Entity("BENCH", HOST, scp.port), [str(src)])
            took = time.perf_counter() - t0
            assert sum(r.is_success for r in results) == len(truth)
        finally:
            scp.stop()
            if hasattr(scp.backend, "close"):
                scp.backend.close()
        rows.append((f"C-STORE fastdimse SCU -> DICOMSCP, {name} index", len(truth), took))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--out", default=str(ROOT / "benches" / "results-index-pg.md"))
    args = ap.parse_args(argv)
    from tests.support import pgserver

    scratch = Path(tempfile.mkdtemp(prefix="fastdimse-bench-pg-"))
    server = pgserver.start_postgres(durable=True)
    try:
        rows = bench_add(server, args.n, scratch) + bench_store(server, args.files, scratch)
        version = server_version(server)
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    lines = ["| what | instances | seconds | instances/s |", "|---|---:|---:|---:|"]
    lines += [f"| {w} | {n} | {t:.2f} | {n / t:,.0f} |" for w, n, t in rows]
    table = "\n".join(lines)
    print(table)
    Path(args.out).write_text(
        "# Indexed ingest: PostgreSQL beside SQLite\n\n"
        f"`benches/bench_index_pg.py` on {platform.node()}, {os.cpu_count()} cores, "
        f"{version}, fsync on, server on loopback, batches of {BATCH}; "
        f"{time.strftime('%Y-%m-%d %H:%M')}.\n\n" + table + "\n")
    return 0


def server_version(server) -> str:
    import psycopg

    with psycopg.connect(server.url) as conn:
        return "PostgreSQL " + conn.execute("SHOW server_version").fetchone()[0]


if __name__ == "__main__":
    sys.exit(main())
