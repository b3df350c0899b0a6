"""Helper processes for the sender-memory test and benchmark (tests/behaviour/test_store_streaming.py,
benches/bench_sender_rss.py).

``sink``: a fastdimse storage SCP (no Q/R index) writing into ``--out``; it runs until
SIGTERM. ``send``: one ``DICOMSCU.store`` of ``--root`` (as a generator of paths, or the
folder itself), then one line of JSON on stdout: the summary, the process's peak RSS
(VmHWM) and the largest VmRSS sampled every 20 ms from a thread, the RSS before the
store, and when the first result came. Run in its own process, so the memory measured
is the sender's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def _paths(root: str):
    """The files under ``root``, walked lazily, sorted per folder."""
    stack = [root]
    while stack:
        d = stack.pop()
        entries = sorted(os.scandir(d), key=lambda e: e.name, reverse=True)
        for e in entries:
            if e.is_dir():
                stack.append(e.path)
        for e in reversed(entries):
            if not e.is_dir():
                yield e.path


def sink(args) -> int:
    import fastdimse

    scp = fastdimse.DICOMSCP(fastdimse.Entity(args.aet, "127.0.0.1", args.port),
                             storage_dir=args.out, query_retrieve=False)
    scp.listen_for_incoming_associations()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    scp.stop()
    return 0


def send(args) -> int:
    import fastdimse

    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _status_kb("VmRSS"))

    before = _status_kb("VmRSS")
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    first = [None]
    t0 = time.perf_counter()

    def progress(r) -> None:
        if first[0] is None:
            first[0] = time.perf_counter() - t0

    scu = fastdimse.DICOMSCU(fastdimse.Entity("RSSSCU", "127.0.0.1", 0))
    remote = fastdimse.Entity(args.called, "127.0.0.1", args.port)
    items = _paths(args.root) if args.mode == "generator" else args.root
    summary = scu.store(remote, items, results="summary", on_progress=progress if args.first else None,
                        parallel=args.parallel)
    elapsed = time.perf_counter() - t0
    done.set()
    sampler.join()
    print(json.dumps({
        "total": summary.total, "completed": summary.completed, "failed": summary.failed,
        "bytes": summary.bytes, "associations": summary.associations, "elapsed": elapsed,
        "first_result": first[0], "rss_before_kb": before, "rss_max_kb": max(peak[0], _status_kb("VmRSS")),
        "hwm_kb": _status_kb("VmHWM"),
        "reasons": sorted({f.reason or "" for f in summary.failures})[:3],
    }))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["sink", "send"])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--aet", default="RSSSINK")
    ap.add_argument("--called", default="RSSSINK")
    ap.add_argument("--out")
    ap.add_argument("--root")
    ap.add_argument("--mode", choices=["generator", "folder"], default="generator")
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--first", action="store_true", help="time the first result (on_progress)")
    args = ap.parse_args(argv)
    return sink(args) if args.kind == "sink" else send(args)


if __name__ == "__main__":
    sys.exit(main())
