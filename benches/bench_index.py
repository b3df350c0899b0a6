"""The Q/R index as the archive grows (`make bench` runs it with --sizes 10000,100000,1000000).

    python -m benches.bench_index [--sizes 10000,100000,1000000] [--queries 50]
                                  [--ingest 20000] [--match-all] [--out FILE]

1. Ingest end to end: ``--ingest`` small instances (fresh UIDs) sent by our DICOMSCU
   (Datasets in memory, parallel=2) into an SCP process (tests/support/qr_serve.py: DICOMSCP with
   storage_dir and the default SQLite index); the rate counts from the first C-STORE to the
   moment the index, read by a separate connection, holds every instance.
2. The archive is then filled **by SQLiteIndex.add_instances directly** (no network, no
   files: rows only) in batches of 256, in the same index file the SCP serves, up to each
   size of ``--sizes``; the add rate is reported per step. Shape: patients of 2 studies x 4
   series x 50 instances (400 instances per patient, 200 per study, 50 per series).
3. At each size, C-FIND latency through the network (our SCU -> the SCP process, one
   association per query, like a PACS client), p50/p95 over ``--queries`` random keys,
   for a PatientID key and a StudyInstanceUID key at STUDY, SERIES and IMAGE level
   (Patient Root; the STUDY query asks for every derived key too), and at IMAGE level
   with the series' UID too ("IMAGE+series", the hierarchical query: 50 matches).
4. ``--match-all``: at the largest size, one IMAGE-level C-FIND matching every instance,
   streamed; the SCP's peak RSS sampled from /proc while it runs.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


from tests.support import qr_serve
from tests.support.peers import HOST, free_port, stop_process, wait_for_port

CT = "1.2.840.10008.5.1.4.1.1.2"
ELE = "1.2.840.10008.1.2.1"
ROOT = "1.2.826.0.1.3680043.10.1047.88."
PER_SERIES, SERIES_PER_STUDY, STUDIES_PER_PATIENT = 50, 4, 2
PER_PATIENT = PER_SERIES * SERIES_PER_STUDY * STUDIES_PER_PATIENT


def uids_of(i: int) -> tuple[str, str, str, str]:
    se = i // PER_SERIES
    st = se // SERIES_PER_STUDY
    p = st // STUDIES_PER_PATIENT
    return f"BP{p:07d}", f"{ROOT}1.{st}", f"{ROOT}2.{se}", f"{ROOT}3.{i}"


def header(i: int) -> dict:
    pid, study, series, sop = uids_of(i)
    return {"SOPClassUID": CT, "SOPInstanceUID": sop, "PatientID": pid,
            "PatientName": f"Bench^{pid}", "PatientBirthDate": "19700101", "PatientSex": "O",
            "StudyInstanceUID": study, "StudyDate": "20240101", "StudyTime": "120000",
            "AccessionNumber": f"A{study[-8:]}", "StudyID": "1", "StudyDescription": "bench",
            "SeriesInstanceUID": series, "Modality": "CT", "SeriesNumber": str(i // PER_SERIES % 4 + 1),
            "SeriesDescription": "bench series", "InstanceNumber": str(i % PER_SERIES + 1),
            "TransferSyntaxUID": ELE}


def fill(index, start: int, stop: int, batch: int = 256) -> float:
    t0 = time.perf_counter()
    for b in range(start, stop, batch):
        items = [(f"/bench/{i}.dcm", header(i), ELE) for i in range(b, min(stop, b + batch))]
        bad = index.add_instances(items)
        if bad:
            raise RuntimeError(bad[:3])
    return time.perf_counter() - t0


def ingest_end_to_end(storage: Path, port: int, n: int) -> dict:
    from pydicom.dataset import Dataset, FileMetaDataset

    from fastdimse import DICOMSCU, Entity
    from fastdimse.qr import SQLiteIndex

    def dataset(i):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ELE
        ds.file_meta.MediaStorageSOPClassUID = CT
        ds.file_meta.MediaStorageSOPInstanceUID = f"{ROOT}9.{i}"
        for k, v in header(i).items():
            if k != "TransferSyntaxUID":
                setattr(ds, k, v)
        ds.SOPInstanceUID = f"{ROOT}9.{i}"
        ds.PatientID, ds.StudyInstanceUID = "INGEST", f"{ROOT}8.{i // 1000}"
        ds.SeriesInstanceUID = f"{ROOT}7.{i // 100}"
        return ds

    # Files written first (not timed): the SCU streams files, as in an archive migration.
    src = storage.parent / "ingest-src"
    src.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        ds = dataset(i)
        ds.Rows = ds.Columns = 2
        ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
        ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
        ds.PixelData = b"\0" * 8
        path = src / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))
    scu = DICOMSCU(Entity("BENCHSCU", HOST, 0))
    t0 = time.perf_counter()
    results = scu.store(Entity("QRSCP", HOST, port), paths, parallel=2)
    t1 = time.perf_counter()
    bad = [r for r in results if not r.is_success]
    if bad:
        raise RuntimeError(f"{len(bad)} C-STOREs failed: {bad[0].status} {bad[0].reason}")
    with SQLiteIndex(storage, pool_size=1) as index:
        while index.count() < n:
            time.sleep(0.01)
    t2 = time.perf_counter()
    return {"instances": n, "acknowledged_per_s": n / (t1 - t0), "indexed_per_s": n / (t2 - t0)}


def latency(port: int, held: int, queries: int, rng: random.Random) -> dict:
    from fastdimse import DICOMSCU, Entity

    scu = DICOMSCU(Entity("BENCHSCU", HOST, 0))
    remote = Entity("QRSCP", HOST, port)
    out = {}
    for key in ("PatientID", "StudyInstanceUID"):
        for level in ("STUDY", "SERIES", "IMAGE", "IMAGE+series"):
            times, matches = [], []
            for _ in range(queries):
                pid, study, series, _sop = uids_of(rng.randrange(held))
                ident = {"PatientID": pid} if key == "PatientID" else {"StudyInstanceUID": study}
                ident.update({"StudyInstanceUID": ident.get("StudyInstanceUID", ""),
                              "StudyDate": "", "PatientName": ""})
                if level == "IMAGE+series":  # the hierarchical way: one series' instances
                    ident.update(StudyInstanceUID=study, SeriesInstanceUID=series)
                if level == "STUDY":
                    ident.update(ModalitiesInStudy="", SOPClassesInStudy="",
                                 NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="")
                if level in ("SERIES", "IMAGE"):
                    ident.update(SeriesInstanceUID="", Modality="")
                elif level == "IMAGE+series":
                    ident["Modality"] = ""
                if level == "SERIES":
                    ident["NumberOfSeriesRelatedInstances"] = ""
                if level.startswith("IMAGE"):
                    ident.update(SOPInstanceUID="", InstanceNumber="")
                t0 = time.perf_counter()
                got = sum(1 for _ in scu.find(remote, ident, level.split("+")[0], "patient"))
                times.append(time.perf_counter() - t0)
                matches.append(got)
            times.sort()
            out[(key, level)] = {"p50_ms": 1000 * statistics.median(times),
                                 "p95_ms": 1000 * times[max(0, int(len(times) * 0.95) - 1)],
                                 "matches": statistics.median(matches)}
    return out


def match_all(port: int, pid: int, held: int) -> dict:
    from fastdimse import DICOMSCU, Entity

    peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], qr_serve.proc_stats(pid)["rss_kb"])
            done.wait(0.2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    n = sum(1 for _ in DICOMSCU(Entity("BENCHSCU", HOST, 0)).find(
        Entity("QRSCP", HOST, port), {"SOPInstanceUID": "", "StudyInstanceUID": "",
                                      "SeriesInstanceUID": ""}, "IMAGE", "study"))
    wall = time.perf_counter() - t0
    done.set()
    th.join()
    return {"matches": n, "expected": held, "seconds": wall, "scp_peak_rss_mib": peak[0] / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--ingest", type=int, default=20000)
    ap.add_argument("--match-all", action="store_true")
    ap.add_argument("--out", help="append the Markdown table to this file")
    ap.add_argument("--dir", help="work folder (default: a temporary one under /dev/shm or /tmp)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    base = args.dir or tempfile.mkdtemp(prefix="fastdimse-bench-index-",
                                        dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    storage = Path(base) / "storage"
    port = free_port()
    proc = qr_serve.start(storage, port, Path(base) / "scp.log")
    lines = []
    try:
        wait_for_port(HOST, port, timeout=30.0, proc=proc, log_path=Path(base) / "scp.log")
        from fastdimse.qr import SQLiteIndex

        if args.ingest:
            ing = ingest_end_to_end(storage, port, args.ingest)
            lines.append(f"Ingest end to end ({ing['instances']} small instances, our SCU "
                         f"parallel=2 -> SCP process, until indexed): "
                         f"acknowledged {ing['acknowledged_per_s']:.0f}/s, indexed "
                         f"{ing['indexed_per_s']:.0f}/s")
            print(lines[-1], file=sys.stderr, flush=True)
        rng = random.Random(9)
        held = 0
        rows = []
        with SQLiteIndex(storage, pool_size=1) as index:
            for size in sizes:
                t = fill(index, held, size)
                rate = (size - held) / t
                held = size
                print(f"filled to {size} (add_instances {rate:.0f}/s)", file=sys.stderr, flush=True)
                lat = latency(port, held, args.queries, rng)
                rows.append((size, rate, lat))
                for (key, level), v in lat.items():
                    print(f"  {key:16s} {level:6s} p50 {v['p50_ms']:6.1f} ms  p95 "
                          f"{v['p95_ms']:6.1f} ms  ({v['matches']:.0f} matches)",
                          file=sys.stderr, flush=True)
        lines.append("")
        lines.append("| instances held | add_instances rate | key | level | matches | p50 ms | p95 ms |")
        lines.append("|---|---|---|---|---|---|---|")
        for size, rate, lat in rows:
            for (key, level), v in lat.items():
                lines.append(f"| {size:,} | {rate:,.0f}/s | {key} | {level} | {v['matches']:.0f} | "
                             f"{v['p50_ms']:.1f} | {v['p95_ms']:.1f} |")
        if args.match_all:
            ma = match_all(port, proc.pid, held + args.ingest)
            lines.append("")
            lines.append(f"IMAGE-level C-FIND matching all {ma['expected']:,} instances: "
                         f"{ma['matches']:,} answers in {ma['seconds']:.1f} s "
                         f"({ma['matches'] / ma['seconds']:,.0f}/s), SCP peak RSS "
                         f"{ma['scp_peak_rss_mib']:.0f} MiB")
    finally:
        stop_process(proc, timeout=20)
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n## The index as the archive grows (benches/bench_index.py)\n\n"
                     "Filled by SQLiteIndex.add_instances directly above the ingest step; "
                     "queries through the network.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
