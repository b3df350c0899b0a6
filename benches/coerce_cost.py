"""What tag coercion costs on the C-STORE path (not part of ``make bench``).

Stores the same CT-sized instances (512 x 512 x 16 bits, about 0.5 MB each, explicit VR
little endian) to dcmtk ``storescp --ignore`` (receives, stores nothing: the sender is
what is measured), alternating plain and coerced runs in the same process, and prints
the median instances/s and MB/s of each and their ratio. Plain store of files this size
goes with sendfile(2); a coerced one is read through the PDU buffer.

    .venv/bin/python -m benches.coerce_cost [--count 1000] [--rounds 7] [--parallel 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastdimse import DICOMSCU, Entity
from tests.support import peers
from tests.support import storedata as sd

COERCE = [("PatientID", "X123"), ("IssuerOfPatientID", "SITE")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--parallel", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fd-coerce-") as tmp:
        root = Path(tmp)
        base = sd.make_image(sd.CT_IMAGE, patient_id="OLD1", rows=512, columns=512)
        files = []
        for i in range(args.count):
            ds = base.copy()
            ds.SOPInstanceUID = sd.new_uid()
            files.append(sd.write_instance(ds, root / "src" / f"{i:05d}.dcm"))
        size = sum(len(sd.dataset_bytes(f)) for f in files[:1]) * len(files)
        peer = peers.start_dcmtk_storage_scp(root / "logs", root / "out", ae_title="STORESCP",
                                             extra=["--ignore"])
        try:
            scu = DICOMSCU(Entity("BENCH", "127.0.0.1", 0))
            dest = peers.peer_entity(peer)
            times: dict[str, list[float]] = {"plain": [], "coerced": []}
            scu.store(dest, files[:10])  # warm the page cache and the peer
            for _ in range(args.rounds):
                for name, kw in (("plain", {}), ("coerced", {"coerce": COERCE})):
                    t0 = time.perf_counter()
                    s = scu.store(dest, files, results="summary", parallel=args.parallel, **kw)
                    dt = time.perf_counter() - t0
                    assert s.completed == len(files), (name, list(s.failures)[:3])
                    times[name].append(dt)
        finally:
            peer.stop()
    print(f"{args.count} instances of {size / args.count / 1e6:.2f} MB, {args.rounds} rounds, "
          f"parallel {args.parallel}, into storescp --ignore")
    print("| store | instances/s | MB/s |")
    print("|---|---:|---:|")
    med = {k: statistics.median(v) for k, v in times.items()}
    print("seconds per round:", {k: [round(t, 3) for t in v] for k, v in times.items()})
    for name, dt in med.items():
        print(f"| {name} | {args.count / dt:,.0f} | {size / dt / 1e6:,.0f} |")
    print(f"coerced / plain throughput: {med['plain'] / med['coerced']:.2f}")


if __name__ == "__main__":
    main()
