"""Soak: concurrent clients storing and querying against one SCP process, its open
files, threads and RSS sampled over time.

    python -m tests.support.soak [--duration 600] [--clients 16] [--nofile 1024] [--json FILE]

The SCP is ``tests/support/qr_serve.py`` (a DICOMSCP with storage_dir and the default SQLite
index) in its own process, started with RLIMIT_NOFILE = ``--nofile``. Each client loops
until the time is up: it stores a few new small instances (fresh UIDs) and then asks
C-FINDs for its patient at STUDY and IMAGE level, each on its own association, and
checks every answer against what it stored. Most clients are our DICOMSCU (threads of
this process); every fourth one runs dcmtk's ``storescu`` and ``findscu`` instead.
A failure is any status other than success, any wrong answer, or an exception.

The report has one sample per ``--interval`` seconds and the verdict: ``failures``
(must be 0) and the growth of open files and threads from the first sample after the
warm-up to the last (must stay small: no growth proportional to the associations).
make soak runs 10 minutes; tests/behaviour/test_qr_load.py runs 60 seconds of it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import qr_serve
from tests.support.peers import HOST, free_port, stop_process, wait_for_port

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
ROOT = "1.2.826.0.1.3680043.10.1047.77."


def make_instance(patient: str, study: str, series: str, sop: str, number: int):
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CT
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    ds.SOPClassUID, ds.SOPInstanceUID = CT, sop
    ds.PatientID, ds.PatientName = patient, f"Soak^{patient}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.Modality, ds.InstanceNumber = "20240101", "CT", number
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
    ds.PixelRepresentation, ds.PhotometricInterpretation = 0, "MONOCHROME2"
    ds.PixelData = b"\0" * 8
    return ds


@dataclass
class Client:
    n: int
    port: int
    ae: str
    work: Path
    dcmtk: bool
    per_round: int = 4
    rounds: int = 0
    stored: int = 0
    associations: int = 0
    failures: list = field(default_factory=list)

    def run(self, deadline: float) -> None:
        patient = f"SOAK{self.n:03d}"
        study = f"{ROOT}{self.n}.1"
        while time.monotonic() < deadline and len(self.failures) < 20:
            try:
                self.one_round(patient, study)
            except Exception as exc:  # every failure is counted, none stops the soak
                self.failures.append(f"round {self.rounds}: {type(exc).__name__}: {exc}")
            self.rounds += 1

    def one_round(self, patient: str, study: str) -> None:
        series = f"{study}.{self.rounds + 1}"
        sops = [f"{series}.{i + 1}" for i in range(self.per_round)]
        datasets = [make_instance(patient, study, series, s, i + 1) for i, s in enumerate(sops)]
        if self.dcmtk:
            self.store_dcmtk(datasets)
        else:
            self.store_ours(datasets)
        self.stored += len(sops)
        # Study level: one study, all instances so far; image level: this round's series.
        studies = self.find(patient, "STUDY", {"PatientID": patient, "StudyInstanceUID": "",
                                                "NumberOfStudyRelatedInstances": ""})
        if [s.get("StudyInstanceUID") for s in studies] != [study]:
            raise AssertionError(f"STUDY level: {studies}")
        if int(studies[0].get("NumberOfStudyRelatedInstances")) != self.stored:
            raise AssertionError(f"{studies[0].get('NumberOfStudyRelatedInstances')} instances, "
                                 f"{self.stored} stored")
        images = self.find(patient, "IMAGE", {"PatientID": patient, "StudyInstanceUID": study,
                                               "SeriesInstanceUID": series, "SOPInstanceUID": ""})
        if sorted(str(i.get("SOPInstanceUID")) for i in images) != sorted(sops):
            raise AssertionError(f"IMAGE level: {len(images)} of {len(sops)} instances")

    # -- our SCU ------------------------------------------------------------------------

    def store_ours(self, datasets) -> None:
        from fastdimse import DICOMSCU, Entity

        results = DICOMSCU(Entity("SOAKSCU", HOST, 0)).store(Entity(self.ae, HOST, self.port),
                                                               datasets)
        self.associations += 1
        bad = [r for r in results if not r.is_success]
        if bad or len(results) != len(datasets):
            raise AssertionError(f"C-STORE: {[(r.status, r.reason) for r in bad]}")

    def find(self, patient: str, level: str, keys: dict) -> list:
        self.associations += 1
        if self.dcmtk:
            return self.find_dcmtk(level, keys)
        from fastdimse import DICOMSCU, Entity

        scu = DICOMSCU(Entity("SOAKSCU", HOST, 0))
        return list(scu.find(Entity(self.ae, HOST, self.port), keys, level, "patient"))

    # -- dcmtk ------------------------------------------------------------------------------

    def store_dcmtk(self, datasets) -> None:
        folder = self.work / f"c{self.n}-r{self.rounds}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for ds in datasets:
            p = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(p, enforce_file_format=True)
            paths.append(str(p))
        r = subprocess.run(["storescu", "-aet", "SOAKDCMTK", "-aec", self.ae, "-to", "20",
                            "-ta", "20", "-td", "30", HOST, str(self.port), *paths],
                           capture_output=True, text=True, timeout=120)
        self.associations += 1
        for p in paths:
            os.unlink(p)
        folder.rmdir()
        if r.returncode != 0:
            raise AssertionError(f"storescu exit {r.returncode}: {r.stderr[-500:]}")

    def find_dcmtk(self, level: str, keys: dict) -> list:
        import pydicom

        out = Path(tempfile.mkdtemp(dir=self.work))
        argv = ["findscu", "-P", "-aet", "SOAKDCMTK", "-aec", self.ae, "-to", "20", "-ta", "20",
                "-td", "30", "-X", "-od", str(out), "-k", f"QueryRetrieveLevel={level}"]
        for k, v in keys.items():
            argv += ["-k", f"{k}={v}" if v else k]
        r = subprocess.run(argv + [HOST, str(self.port)], capture_output=True, text=True,
                           timeout=120)
        try:
            if r.returncode != 0:
                raise AssertionError(f"findscu exit {r.returncode}: {r.stderr[-500:]}")
            return [pydicom.dcmread(f) for f in sorted(out.glob("rsp*.dcm"))]
        finally:
            for f in out.iterdir():
                f.unlink()
            out.rmdir()


def run(duration: float = 600.0, clients: int = 16, nofile: int = 1024, interval: float = 5.0,
        warmup: float = 10.0, work_dir: str | os.PathLike | None = None,
        log=lambda msg: print(msg, file=sys.stderr, flush=True)) -> dict:
    """Run the soak; returns the report (see the module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="fastdimse-soak-", dir=work_dir))
    storage = work / "storage"
    port = free_port()
    proc = qr_serve.start(storage, port, work / "scp.log", nofile=nofile)
    samples: list[dict] = []
    try:
        wait_for_port(HOST, port, timeout=30.0, proc=proc, log_path=work / "scp.log")
        t0 = time.monotonic()
        deadline = t0 + duration
        workers = [Client(n, port, "QRSCP", work, dcmtk=(n % 4 == 3)) for n in range(clients)]
        threads = [threading.Thread(target=c.run, args=(deadline,), daemon=True) for c in workers]
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads):
            s = qr_serve.proc_stats(proc.pid)
            s["t"] = round(time.monotonic() - t0, 1)
            s["associations"] = sum(c.associations for c in workers)
            s["stored"] = sum(c.stored for c in workers)
            samples.append(s)
            log(f"t={s['t']:6.1f}s fds={s['fds']:4d} threads={s['threads']:3d} "
                f"rss={s['rss_kb'] / 1024:6.1f} MiB associations={s['associations']} "
                f"stored={s['stored']}")
            for th in threads:
                th.join(timeout=interval / len(threads))
        for th in threads:
            th.join(timeout=300)
        # Once every client is done, the SCP's associations end: sample it idle.
        fewest = min(s["threads"] for s in samples)
        end = time.monotonic() + 10
        last = qr_serve.proc_stats(proc.pid)
        while time.monotonic() < end and last["threads"] > fewest:
            time.sleep(0.2)
            last = qr_serve.proc_stats(proc.pid)
        last["t"] = round(time.monotonic() - t0, 1)
        last["associations"] = sum(c.associations for c in workers)
        last["stored"] = sum(c.stored for c in workers)
        last["idle"] = True
        samples.append(last)
        if proc.poll() is not None:
            raise RuntimeError(f"the SCP exited ({proc.returncode}): "
                               + (work / "scp.log").read_text(errors="replace")[-2000:])
    finally:
        stop_process(proc, timeout=20)
    after_warmup = next((s for s in samples if s["t"] >= warmup), samples[0])
    busy = [s for s in samples if not s.get("idle")]
    report = {
        "duration_s": duration, "clients": clients, "nofile": nofile,
        "associations": sum(c.associations for c in workers),
        "stored": sum(c.stored for c in workers),
        "rounds": sum(c.rounds for c in workers),
        "failures": [f"client {c.n}: {f}" for c in workers for f in c.failures],
        "after_warmup": after_warmup, "last_busy": busy[-1] if busy else None, "idle": last,
        "max": {k: max(s[k] for s in samples) for k in ("fds", "threads", "rss_kb")},
        "samples": samples, "scp_log": str(work / "scp.log"),
    }
    report["growth"] = {k: report["last_busy"][k] - after_warmup[k]
                        for k in ("fds", "threads", "rss_kb")} if busy else {}
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--nofile", type=int, default=1024)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args()
    report = run(args.duration, args.clients, args.nofile, args.interval)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    a, b, idle = report["after_warmup"], report["last_busy"], report["idle"]
    print(f"\n{report['clients']} clients, {report['duration_s']:.0f} s, file limit "
          f"{report['nofile']}: {report['associations']} associations, {report['stored']} "
          f"instances stored, {len(report['failures'])} failures")
    print("| | after warm-up | end (busy) | idle after | max |\n|---|---|---|---|---|")
    for k, name in (("fds", "open files"), ("threads", "threads"), ("rss_kb", "RSS (MiB)")):
        f = (lambda v: f"{v / 1024:.1f}") if k == "rss_kb" else str
        print(f"| {name} | {f(a[k])} | {f(b[k])} | {f(idle[k])} | {f(report['max'][k])} |")
    for line in report["failures"][:20]:
        print("FAILURE", line)
    flat = report["growth"]["fds"] <= 20 and report["growth"]["threads"] <= 20
    return 0 if not report["failures"] and flat else 1


if __name__ == "__main__":
    sys.exit(main())
