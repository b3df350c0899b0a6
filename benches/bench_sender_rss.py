"""Sender peak RSS against batch size (issue 9, item 2): `make bench` runs it.

For each size N (default 10^3, 10^4, 10^5, 10^6; ``--max-size`` caps it), N small
Part-10 files (one template, UIDs patched; tests/storedata.write_uid_copies) are written
under /dev/shm, and one sending process runs ``DICOMSCU.store`` of them into a fastdimse
storage SCP (no Q/R index, files on /dev/shm) in another process, twice: as a Python
generator of paths, and as the folder itself (walked in Rust). Reported per run: the
sender's peak RSS (VmHWM), its RSS before the store, the time to the first result, the
rate. The sender is tests/support/store_rss_worker.py, the same one the pass/fail test uses.

    .venv/bin/python -m benches.bench_sender_rss [--sizes 1000,10000,100000,1000000]
                                                 [--max-size N] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
from tests.support import storedata as sd
from tests.support.peers import SUPPORT_DIR

WORKER = SUPPORT_DIR / "store_rss_worker.py"
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the sink exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the sink never listened")


def run_size(n: int, base: Path) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix=f"fastdimse-rss-{n}-", dir=base))
    rows = []
    try:
        t0 = time.perf_counter()
        sd.write_uid_copies(work / "src", n)
        gen_s = time.perf_counter() - t0
        for mode in ("generator", "folder"):
            out = work / "out"
            port = free_port()
            sink = subprocess.Popen([PY, str(WORKER), "sink", "--port", str(port), "--out", str(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_port(port, sink)
                r = subprocess.run([PY, str(WORKER), "send", "--port", str(port), "--root", str(work / "src"),
                                    "--mode", mode, "--first"], capture_output=True, text=True, timeout=3600)
            finally:
                sink.send_signal(signal.SIGTERM)
                try:
                    sink.wait(30)
                except subprocess.TimeoutExpired:
                    sink.kill()
                    sink.wait()
            if r.returncode != 0:
                raise RuntimeError(r.stderr[-2000:])
            d = json.loads(r.stdout.strip().splitlines()[-1])
            d.update(n=n, mode=mode, generate_s=gen_s)
            rows.append(d)
            print(f"  {n:>9,} {mode:<9} peak {d['hwm_kb'] / 1024:6.1f} MiB  first result {d['first_result']:.3f} s  "
                  f"{d['completed']:,}/{d['total']:,} stored in {d['elapsed']:.1f} s", flush=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| instances | input | sender peak RSS (VmHWM) | RSS before store | growth during the store "
             "| first result | instances/s | stored |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for d in rows:
        growth = (d["hwm_kb"] - d["rss_before_kb"]) / 1024
        lines.append(
            f"| {d['n']:,} | {d['mode']} | {d['hwm_kb'] / 1024:.1f} MiB | {d['rss_before_kb'] / 1024:.1f} MiB "
            f"| {growth:.1f} MiB | {d['first_result']:.3f} s "
            f"| {d['total'] / d['elapsed']:,.0f} | {d['completed']:,}/{d['n']:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--max-size", type=int, default=None, help="skip sizes above this")
    ap.add_argument("--out", default=str(HERE / "results_sender_rss.md"))
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.max_size is not None:
        sizes = [s for s in sizes if s <= args.max_size]
    base = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())
    print(f"sender peak RSS: sizes {sizes}, files under {base}", flush=True)
    rows = []
    for n in sizes:
        rows.extend(run_size(n, base))
    text = table(rows)
    print(text)
    with open(args.out, "w") as f:
        f.write(f"# Sender peak RSS against batch size ({time.strftime('%Y-%m-%d %H:%M')}, "
                f"{os.cpu_count()} cores)\n\n`benches/bench_sender_rss.py --sizes {','.join(map(str, sizes))}`: "
                "one sending process, `DICOMSCU.store(..., results=\"summary\")` with an `on_progress` "
                "callback, into a fastdimse storage SCP in another process; files of 834 bytes on "
                "/dev/shm.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
