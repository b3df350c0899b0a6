"""Retrieves of many instances from our Q/R SCP, in bounded memory, with real peers.

The SCP lists the instances of a C-MOVE / C-GET as the sub-operations go (the index is
read in batches, the storage SCU plans a bounded look-ahead), so its memory does not
grow with the size of the retrieve; Number of Remaining Sub-operations comes from one
COUNT on the index and is exact in every pending response that carries it (it is left
out while it exceeds what the 16-bit field holds).

- 10^5 instances by C-MOVE from an SCP process (its peak RSS read from /proc) to dcmtk
  storescp, one file removed from the disk first: it is the one failed sub-operation,
  listed by its UID; every other instance arrives.
- A few thousand by C-GET to dcmtk getscu, the counts of every response checked.
- movescu --cancel: the retrieve stops, the final response says Cancel and how many
  sub-operations were never started.

The archives are written fast (one template, its UID patched: storedata.write_uid_copies)
into /dev/shm when there is one, and indexed with add_instances directly.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support import peers
from tests.support import qr_helpers as qh
from tests.support import qr_serve
from tests.support import storedata as sd
from tests.support.peers import HOST, free_port, make_scu, peak_rss_kb_of, wait_for_port

QR_AE = "QRSCP"
CATCHER_AE = "CATCHER"
N_MOVE = 100_000
N_GET = 3_000
# Growth of the SCP's peak RSS allowed for the C-MOVE of 10^5 instances (KiB). Listing
# everything first took 108 MiB more (and sent 99,999 completed as 34,463); streaming
# takes 3 MiB.
RSS_GROWTH_BOUND_KB = 48 * 1024




def _file_of(root: Path, i: int) -> Path:
    return root / f"{i // 1000:05d}" / f"{i:07d}.dcm"  # storedata.write_uid_copies' layout


def _archive(storage: Path, n: int) -> str:
    """``n`` copies under ``storage/files``, indexed in ``storage``'s SQLite index (and
    reconciled, so that the SCP's start looks at nothing). Returns the study UID."""
    import pydicom

    from fastdimse.qr import SQLiteIndex

    files = storage / "files"
    sd.write_uid_copies(files, n)
    head = pydicom.dcmread(_file_of(files, 0), stop_before_pixels=True)
    common = {kw: str(head.get(kw, "")) for kw in (
        "PatientID", "PatientName", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID",
        "Modality", "StudyDate", "StudyTime", "AccessionNumber", "StudyID", "SeriesNumber")}
    ts = str(head.file_meta.TransferSyntaxUID)
    index = SQLiteIndex(storage)
    try:
        for start in range(0, n, 5000):
            batch = [(str(_file_of(files, i)), {**common, "SOPInstanceUID": sd.copy_uid(i),
                                                 "InstanceNumber": str(i + 1)}, ts)
                     for i in range(start, min(n, start + 5000))]
            assert index.add_instances(batch) == []
        assert index.count("IMAGE") == n
        index.reconcile(storage)
    finally:
        index.close()
    return common["StudyInstanceUID"]


def _dicom_count(folder: Path) -> int:
    return sum(1 for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))


@pytest.mark.timeout(600)
def test_move_of_100k_instances_in_bounded_memory(fast_tmp, peer_log_dir):
    storage, caught = fast_tmp / "archive", fast_tmp / "caught"
    study = _archive(storage, N_MOVE)
    gone = 4321  # a file the index lists but the disk no longer has
    _file_of(storage / "files", gone).unlink()
    catcher = qh.start_dcmtk_catcher(peer_log_dir, caught, ae_title=CATCHER_AE)
    port = free_port()
    proc = qr_serve.start(storage, port, peer_log_dir / "qr-serve-move.log", ae_title=QR_AE,
                          known={CATCHER_AE: (HOST, catcher.port)})
    try:
        wait_for_port(HOST, port, timeout=60, proc=proc, log_path=peer_log_dir / "qr-serve-move.log")
        before = peak_rss_kb_of(proc.pid)
        pending: list[int] = [0]  # pending responses seen
        bad: list = []

        def on_pending(p):
            # One pending response per sub-operation: the k-th comes after k settled.
            pending[0] += 1
            k = pending[0]
            # Remaining is exact wherever sent, and left out (read as 0 by our SCU) while
            # it exceeds the 16-bit field.
            want_remaining = N_MOVE - k if N_MOVE - k <= 0xFFFF else 0
            if (p.remaining, p.completed + p.failed if k - p.failed < 0xFFFF else p.completed) != (
                    want_remaining, k if k - p.failed < 0xFFFF else 0xFFFF) or p.warning:
                bad.append((k, p))

        from fastdimse import Entity

        rsp = make_scu(dimse_timeout=120).move(Entity(QR_AE, HOST, port), {"StudyInstanceUID": study},
                                               CATCHER_AE, level="STUDY", on_pending=on_pending)
        after = peak_rss_kb_of(proc.pid)
    finally:
        peers.stop_process(proc)
        catcher.stop()
    print(f"SCP peak RSS before the C-MOVE {before} KiB, after {after} KiB")
    assert rsp.status == 0xB000, rsp  # one sub-operation failed
    # 99,999 completed: more than the 16-bit field holds, sent as its largest value.
    assert (rsp.completed, rsp.failed, rsp.warning) == (0xFFFF, 1, 0), rsp
    assert rsp.failed_sop_instance_uids == [sd.copy_uid(gone)], rsp
    assert pending[0] == N_MOVE - 1, pending  # none after the last sub-operation
    assert not bad, bad[:3]
    assert _dicom_count(caught) == N_MOVE - 1
    assert after - before < RSS_GROWTH_BOUND_KB, (before, after)


@pytest.fixture
def get_archive(fast_tmp):
    storage = fast_tmp / "archive"
    study = _archive(storage, N_GET)
    return storage, study


def _responses(text: str, message_type: str) -> list[dict]:
    """Every incoming ``message_type`` in dcmtk's debug output, as final_response reads one."""
    out = []
    parts = text.split("INCOMING DIMSE MESSAGE")
    for i in range(1, len(parts)):
        if message_type in parts[i].split("END DIMSE", 1)[0]:
            out.append(qh.final_response("INCOMING DIMSE MESSAGE" + parts[i], message_type))
    return out


@pytest.mark.timeout(300)
def test_getscu_of_thousands(get_archive, fast_tmp):
    storage, study = get_archive
    scp, remote = qh.start_our_qr(QR_AE, storage_dir=storage)
    try:
        exe = peers.require_executable("getscu")
        got = fast_tmp / "got"
        got.mkdir()
        rc, text = peers._run([exe, "-d", "-S", "-aet", "GETSCU", "-aec", QR_AE, "-to", "10",
                               "-ta", "10", "-td", "60", "-od", str(got),
                               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                               HOST, str(remote.port)], 240)
    finally:
        scp.stop()
    assert rc == 0, text[-3000:]
    rsps = _responses(text, "C-GET RSP")
    final, pending = rsps[-1], rsps[:-1]
    assert final["status"] == 0x0000, final
    assert (final["completed"], final["failed"], final["warning"]) == (N_GET, 0, 0), final
    assert len(pending) == N_GET - 1, len(pending)
    assert [p["remaining"] for p in pending] == list(range(N_GET - 1, 0, -1))
    assert all(p["completed"] + p["remaining"] == N_GET and p["status"] == 0xFF00 for p in pending)
    assert _dicom_count(got) == N_GET


@pytest.mark.timeout(300)
def test_movescu_cancel(get_archive, fast_tmp, peer_log_dir):
    storage, study = get_archive
    caught = fast_tmp / "caught"
    catcher = qh.start_dcmtk_catcher(peer_log_dir, caught, ae_title=CATCHER_AE)
    from fastdimse import Entity

    scp, remote = qh.start_our_qr(QR_AE, storage_dir=storage,
                                  known_entities=[Entity(CATCHER_AE, HOST, catcher.port)])
    try:
        exe = peers.require_executable("movescu")
        rc, text = peers._run([exe, "-d", "-S", "-aet", "MOVESCU", "-aec", QR_AE, "-aem", CATCHER_AE,
                               "--cancel", "5", "-to", "10", "-ta", "10", "-td", "60",
                               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
                               HOST, str(remote.port)], 240)
        # the same SCP serves the next retrieve on a new association
        rsp = make_scu().move(remote, {"StudyInstanceUID": study}, "NOWHERE", level="STUDY")
    finally:
        scp.stop()
        catcher.stop()
    assert rc == 0, text[-3000:]
    assert re.search(r"Sending Cancel Request", text), text[-3000:]
    final = qh.final_response(text, "C-MOVE RSP")
    assert final["status"] == 0xFE00, final
    done = final["completed"] + final["failed"] + final["warning"]
    assert final["failed"] == 0 and 5 <= done < N_GET, final
    # Remaining: the sub-operations never started, so that the counts add up.
    assert final["remaining"] == N_GET - done, final
    assert _dicom_count(caught) == final["completed"]
    assert rsp.status == 0xA801, rsp
