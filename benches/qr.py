"""Query/Retrieve cases of `make bench` (issue 5), used by run.py.

- C-FIND: one Study Root, image-level query matching every instance of set d (10,000 at
  full size, one series). dcmtk `findscu` -> `dcmqrscp`; pynetdicom SCU -> pynetdicom's
  `qrscp` app (SQLite index); fastdimse SCU -> fastdimse SCP (issue 5 API).
- C-MOVE: the 4 studies of set a (400 CT) to a catcher that writes to /dev/shm.
  `movescu` -> `dcmqrscp` -> `storescp`; fastdimse SCU -> fastdimse Q/R SCP -> fastdimse SCP.

The archives the SCPs serve are built once per data profile and cached next to the data
(dcmqrscp's storage areas; the qrscp SQLite file), because dcmqrscp indexes slowly (its
index is a flat file it scans on every insert: about 5 minutes for 10,000 instances on 2
cores). fastdimse's archive is loaded by C-STORE at the start of its case (not timed).

dcmqrscp runs in its default fork mode: its single-process mode (-s) segfaults after the
first association in dcmtk 3.6.7, so its peak RSS (a forked child per association) is not
reported.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from benches.harness import Child, count_files, free_port, log, wait_listening

QR_VERSION = 1
DCMQR_D, DCMQR_A = "DCMQRD", "DCMQRA"


def _uids(directory: str, keyword: str) -> list[str]:
    import pydicom

    seen: dict[str, None] = {}
    for name in sorted(os.listdir(directory)):
        ds = pydicom.dcmread(os.path.join(directory, name), stop_before_pixels=True,
                             specific_tags=[keyword])
        seen.setdefault(str(getattr(ds, keyword)), None)
    return list(seen)


def dcmqrscp_config(path: str, port: int, areas: dict[str, str],
                    destinations: dict[str, int] | None = None) -> str:
    hosts = "\n".join(f"dest{i} = ({ae}, 127.0.0.1, {p})"
                      for i, (ae, p) in enumerate((destinations or {}).items()))
    aes = "\n".join(f"{ae} {d} RW (100, 1024mb) ANY" for ae, d in areas.items())
    Path(path).write_text(f"""NetworkTCPPort  = {port}
MaxPDUSize      = 131072
MaxAssociations = 16

HostTable BEGIN
{hosts}
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
{aes}
AETable END
""")
    return path


def _store_into(port: int, called: str, directory: str, timeout: float) -> None:
    scu = Child(["storescu", "-aec", called, "-pdu", "131072", "-R", "-nh", "+sd", "+r",
                 "127.0.0.1", str(port), directory], name="storescu-load", env={"TCP_NODELAY": "1"})
    if scu.wait(timeout) != 0:
        raise RuntimeError(f"loading {directory} into {called} failed: {scu.tail(5)}")


def dcmqrscp_archive(root: Path, sets: dict, timeout: float) -> dict[str, str]:
    """{AE title: storage area} of dcmqrscp holding set d (DCMQRD) and set a (DCMQRA)."""
    areas = {DCMQR_D: str(root / "dcmqrscp-d"), DCMQR_A: str(root / "dcmqrscp-a")}
    wanted = {DCMQR_D: sets["d"].files, DCMQR_A: sets["a"].files}
    stamp = root / "dcmqrscp.json"
    try:
        doc = json.loads(stamp.read_text())
        if doc == {"version": QR_VERSION, "files": wanted} and all(
                count_files(d, ".dcm") == wanted[ae] for ae, d in areas.items()):
            return areas
    except (OSError, ValueError):
        pass
    for d in areas.values():
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    port = free_port()
    cfg = dcmqrscp_config(str(root / "load.cfg"), port, areas)
    log(f"building the dcmqrscp archive ({sum(wanted.values())} instances; slow, once per profile)")
    with Child(["dcmqrscp", "-c", cfg, str(port)], name="dcmqrscp-load", env={"TCP_NODELAY": "1"}) as srv:
        wait_listening(port, srv)
        _store_into(port, DCMQR_D, sets["d"].directory, timeout)
        _store_into(port, DCMQR_A, sets["a"].directory, timeout)
    for ae, d in areas.items():
        if count_files(d, ".dcm") != wanted[ae]:
            raise RuntimeError(f"dcmqrscp archive {ae}: {count_files(d, '.dcm')} of {wanted[ae]} stored")
    stamp.write_text(json.dumps({"version": QR_VERSION, "files": wanted}))
    return areas


def pynetdicom_archive(root: Path, sets: dict, py: str, workers: str, timeout: float) -> str:
    """The SQLite index of pynetdicom's qrscp app holding set d."""
    db = root / "pynetdicom-qrscp.sqlite"
    stamp = root / "pynetdicom-qrscp.json"
    want = {"version": QR_VERSION, "files": sets["d"].files}
    try:
        if json.loads(stamp.read_text()) == want and db.is_file():
            return str(db)
    except (OSError, ValueError):
        pass
    db.unlink(missing_ok=True)
    log(f"building the pynetdicom qrscp index ({sets['d'].files} instances, once per profile)")
    w = Child([py, workers, "pynetdicom-qr-load", "--db", str(db), "--dir", sets["d"].directory],
              name="pynetdicom-qr-load")
    rc = w.wait(timeout)
    out = w.output().strip().splitlines()
    doc = json.loads(out[-1]) if out and out[-1].startswith("{") else {}
    if rc != 0 or doc.get("loaded") != sets["d"].files:
        raise RuntimeError(f"pynetdicom qrscp index: {doc or w.tail(5)}")
    stamp.write_text(json.dumps(want))
    return str(db)
