"""fastdimse demo (``make demo``): the whole story of the seed document on loopback.

1. C-ECHO both ways: our SCU echoes our SCP, and dcmtk's ``echoscu`` echoes it too.
2. A small synthetic archive (patients > studies > series > images) is generated and
   sent from the shell (``fastdimse store``) to a Query/Retrieve SCP that indexes it in
   SQLite.
3. The seed's flow: a QueryBuilder walks PATIENT >> STUDY >> SERIES >> IMAGE from a
   patient ID, then every image is moved (C-MOVE) to a second SCP, the "catcher";
   ``fastdimse find`` asks the same question from the shell.
4. The catcher is checked to hold exactly those instances, byte for byte.

Everything started here is stopped here; the exit status is non-zero on any failure.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

from fastdimse import DICOMSCP, DICOMSCU, Entity
from fastdimse.query import QueryBuilder

HOST = "127.0.0.1"


def make_archive(folder: Path, patients: int = 3, studies: int = 2, series: int = 2, images: int = 5) -> list[Path]:
    """Synthetic 64x64 images, a few patients / studies / series each."""
    paths = []
    pixels = bytes(range(256)) * 32  # 64*64*2 bytes
    for p in range(patients):
        for s in range(studies):
            study_uid = generate_uid()
            for r in range(series):
                series_uid = generate_uid()
                modality, sop_class = (("CT", CTImageStorage), ("MR", MRImageStorage))[r % 2]
                for i in range(images):
                    ds = Dataset()
                    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
                    ds.PatientID, ds.PatientName = f"DEMO{p:03d}", f"Demo^Patient{p}"
                    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
                    ds.StudyDate, ds.StudyDescription = f"2026{1 + s:02d}15", f"Study {s}"
                    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, r + 1, i + 1
                    ds.Rows = ds.Columns = 64
                    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
                    ds.PixelRepresentation, ds.SamplesPerPixel = 0, 1
                    ds.PhotometricInterpretation = "MONOCHROME2"
                    ds.PixelData = pixels
                    ds.file_meta = FileMetaDataset()
                    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
                    path = folder / f"{ds.SOPInstanceUID}.dcm"
                    ds.save_as(path, enforce_file_format=True)
                    paths.append(path)
    return paths


def dataset_bytes(path: Path) -> bytes:
    """The data set of a Part-10 file (after its meta group)."""
    data = path.read_bytes()
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length:]


def fastdimse(*args: str) -> subprocess.CompletedProcess:
    """The ``fastdimse`` command line (``python -m fastdimse``), output captured."""
    return subprocess.run([sys.executable, "-m", "fastdimse", *args], capture_output=True, text=True, timeout=120)


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  log %(levelname)s %(name)s: %(message)s")
    failures: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="fastdimse-demo-"))
    catcher = DICOMSCP(Entity("CATCHER", HOST, 0), storage_dir=work / "catcher")
    catcher.listen_for_incoming_associations()
    pacs = DICOMSCP(Entity("DEMOPACS", HOST, 0), storage_dir=work / "pacs",
                    known_entities=[Entity("CATCHER", HOST, catcher.port)])
    pacs.listen_for_incoming_associations()
    remote = Entity("DEMOPACS", HOST, pacs.port)
    scu = DICOMSCU(Entity("DEMO_SCU", HOST, 0))
    try:
        print(f"fastdimse demo (work folder {work})")
        print(f"  Q/R SCP DEMOPACS on {HOST}:{pacs.port}, catcher CATCHER on {HOST}:{catcher.port}")

        # 1. C-ECHO both ways
        t0 = time.perf_counter()
        status = scu.echo(remote).status
        print(f"  C-ECHO  fastdimse -> DEMOPACS: 0x{status:04X} in {(time.perf_counter() - t0) * 1e3:.1f} ms")
        if status != 0:
            failures.append("C-ECHO from fastdimse")
        echoscu = shutil.which("echoscu")
        if echoscu:
            r = subprocess.run([echoscu, "-aet", "DCMTK", "-aec", "DEMOPACS", HOST, str(pacs.port)],
                               capture_output=True, text=True, timeout=30)
            print(f"  C-ECHO  dcmtk echoscu -> DEMOPACS: exit {r.returncode}")
            if r.returncode != 0:
                failures.append("C-ECHO from dcmtk echoscu: " + r.stderr.strip())
        else:
            failures.append("dcmtk echoscu not found (make demo installs dcmtk)")

        # 2. Archive -> PACS by C-STORE
        src = work / "source"
        src.mkdir()
        paths = make_archive(src)
        peer = f"DEMOPACS@{HOST}:{pacs.port}"
        t0 = time.perf_counter()
        r = fastdimse("store", "--aet", "DEMO_SCU", peer, str(src), "--json")
        dt = time.perf_counter() - t0
        ok = json.loads(r.stdout)["completed"] if r.returncode == 0 else 0
        print(f"  C-STORE $ fastdimse store {peer} {src.name}/: {ok} of {len(paths)} generated "
              f"instances stored in {dt:.2f} s (exit {r.returncode})")
        if ok != len(paths):
            failures.append(f"fastdimse store stored {ok} of {len(paths)}: {r.stderr.strip()}")

        # 3. The seed's flow
        t0 = time.perf_counter()
        qb = QueryBuilder(scu, remote)
        studies = qb.get_study_uids("DEMO001")
        series = qb.get_series_uids(studies)
        images = qb.get_image_uids(series)
        dq = time.perf_counter() - t0
        print(f"  C-FIND  QueryBuilder DEMO001: {len(studies)} studies > {len(series)} series > "
              f"{len(images)} images in {dq:.2f} s")
        r = fastdimse("find", peer, "-k", "PatientID=DEMO001", "-k", "StudyInstanceUID", "-k", "StudyDate",
                      "--format", "csv")
        rows = r.stdout.strip().splitlines()[1:] if r.returncode == 0 else []
        print(f"  C-FIND  $ fastdimse find {peer} -k PatientID=DEMO001 ... --format csv: {len(rows)} studies")
        if len(rows) != len(studies):
            failures.append(f"fastdimse find gave {len(rows)} studies, QueryBuilder {len(studies)}: {r.stderr.strip()}")
        t0 = time.perf_counter()
        moved = 0
        for image in images:
            rsp = scu.send_c_move_image(remote, image, "CATCHER")
            if rsp.status == 0 and rsp.completed == 1:
                moved += 1
            else:
                failures.append(f"C-MOVE of {image.SOPInstanceUID}: status 0x{rsp.status:04X}")
        dm = time.perf_counter() - t0
        print(f"  C-MOVE  {moved} of {len(images)} images -> CATCHER in {dm:.2f} s "
              f"({moved / dm if dm else 0:.0f} moves/s, one association each)")

        # 4. What the catcher holds
        want = {p.stem: p for p in paths if p.stem in {str(i.SOPInstanceUID) for i in images}}
        held = {f.stem: f for f in (work / "catcher").rglob("*.dcm")}
        same = sum(1 for uid, p in want.items() if uid in held and dataset_bytes(held[uid]) == dataset_bytes(p))
        print(f"  CHECK   catcher holds {len(held)} instances; {same} of {len(want)} wanted, byte-identical")
        if set(held) != set(want) or same != len(want):
            failures.append("the catcher does not hold exactly the moved instances")
    finally:
        pacs.stop()
        catcher.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("  SCPs stopped")
    if failures:
        print("demo FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
