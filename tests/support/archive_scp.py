"""A fastdimse Q/R archive in its own process, for the tests that kill it.

    python archive_scp.py STORAGE_DIR PORT [AE_TITLE] [--known AE=HOST:PORT ...] [--fsync]
                          [--index postgresql://... [--location NAME]]

Serves storage, the index (SQLite in STORAGE_DIR, or the PostgreSQL database of
--index, with this SCP's files recorded under --location), C-FIND, C-MOVE and C-GET on
127.0.0.1 until killed or sent SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("storage")
    ap.add_argument("port", type=int)
    ap.add_argument("ae", nargs="?", default="ARCHIVE")
    ap.add_argument("--known", action="append", default=[])
    ap.add_argument("--fsync", action="store_true")
    ap.add_argument("--index", default=None)
    ap.add_argument("--location", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    from fastdimse import DICOMSCP, Entity

    known = []
    for spec in args.known:
        ae, addr = spec.split("=", 1)
        host, port = addr.rsplit(":", 1)
        known.append(Entity(ae, host, int(port)))
    scp = DICOMSCP(Entity(args.ae, "127.0.0.1", args.port), storage_dir=args.storage,
                   known_entities=known, fsync=args.fsync, index=args.index,
                   storage_location=args.location)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    scp.listen_for_incoming_associations(keep_listener_running=True)
    print("serving", flush=True)
    while not done.wait(0.2):
        pass
    scp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
