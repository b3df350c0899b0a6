"""C-STORE throughput over TLS against plaintext (issue 13: the goal is at least 60 %).

One run, same data, same machine: N CT slices (512 x 512 x 16 bit, 0.5 MB each, the
benchmark's set a, benches/datagen.gen_ct) stored by ``DICOMSCU.store`` into a fastdimse
storage SCP (files on /dev/shm, its SQLite index on) plaintext, then over TLS 1.3
(certificates made by trustme), then over mutual TLS; each ``--repeat`` times, the best
kept. Under TLS the sender cannot use sendfile nor the receiver splice: the figure is
the cost of encryption plus buffered I/O. Prints a Markdown table (``--out`` appends it).

    .venv/bin/python -m benches.bench_tls [--n 200] [--parallel 1] [--repeat 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benches.datagen import gen_ct
from benches.harness import scratch_dir


def _store_rate(scu, remote, folder: Path, parallel: int) -> tuple[float, int]:
    start = time.perf_counter()
    summary = scu.store(remote, str(folder), parallel=parallel, results="summary")
    elapsed = time.perf_counter() - start
    if summary.failed or summary.completed != summary.total:
        raise RuntimeError(f"store failed: {summary}")
    return summary.bytes / elapsed / 1e6, summary.total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="CT slices (0.5 MB each)")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from fastdimse import DICOMSCP, DICOMSCU, Entity, TLSConfig
    from tests.support.tlscerts import make_certs

    work = Path(tempfile.mkdtemp(prefix="fastdimse-bench-tls-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    try:
        certs = make_certs(work / "certs")
        data = work / "ct"
        data.mkdir()
        gen_ct(data, args.n)
        server_tls = TLSConfig(cert=certs.server.cert, key=certs.server.key, ca=certs.ca)
        cases = [
            ("plaintext", None, None),
            ("TLS", server_tls, TLSConfig(ca=certs.ca)),
            ("mutual TLS", server_tls, TLSConfig(ca=certs.ca, cert=certs.client.cert, key=certs.client.key)),
        ]
        rows = []
        for name, stls, ctls in cases:
            store = Path(scratch_dir(f"tls-{name}"))
            scp = DICOMSCP(Entity("BENCH", "127.0.0.1", 0), storage_dir=store, tls=stls)
            scp.listen_for_incoming_associations()
            try:
                scu = DICOMSCU(Entity("BENCHSCU", "127.0.0.1", 0), tls=ctls)
                remote = Entity("BENCH", "127.0.0.1", scp.port)
                best, total = 0.0, 0
                for _ in range(args.repeat):
                    rate, total = _store_rate(scu, remote, data, args.parallel)
                    best = max(best, rate)
            finally:
                scp.stop()
                scp.close()
                shutil.rmtree(store, ignore_errors=True)
            rows.append((name, total, best))
            print(f"{name}: {best:.1f} MB/s", file=sys.stderr)
        plain = rows[0][2]
        lines = [f"### C-STORE over TLS ({args.n} x 0.5 MB CT, parallel={args.parallel}, best of {args.repeat})",
                 "", "| transport | instances | MB/s | of plaintext |", "|---|---|---|---|"]
        lines += [f"| {n} | {t} | {r:.1f} | {r / plain * 100:.0f} % |" for n, t, r in rows]
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write("\n" + text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
