"""Acknowledged means findable: kill -9 of the archive during and after an ingest.

A fastdimse Q/R archive (tests/support/archive_scp.py, its own process) takes instances from
dcmtk's ``storescu`` and from our SCU; the process is then killed with SIGKILL (as a
crash, the OOM killer or a power cut of the process would) and started again on the
same folder. Every SOP Instance UID whose C-STORE was answered with success before the
kill must then be found by C-FIND at IMAGE level, retrieved by C-MOVE (to a dcmtk
storescp) and by C-GET, and no temporary or partial file may be visible as an instance.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import peers
from tests.support import qr_helpers as q
from tests.support.peers import HOST, PYTHON, SUPPORT_DIR, free_port, require_executable

pytestmark = pytest.mark.timeout(300)

AE = "ARCHIVE"


def start_archive(log_dir: Path, storage: Path, known: dict[str, int], name: str,
                  args: tuple[str, ...] = (), ae_title: str = AE) -> peers.Peer:
    """tests/support/archive_scp.py on a free port; ``args``: more of its options (--index...)."""
    port = free_port()
    argv = [PYTHON, str(SUPPORT_DIR / "archive_scp.py"), str(storage), str(port), ae_title, *args]
    for ae, p in known.items():
        argv += ["--known", f"{ae}={HOST}:{p}"]
    return peers.start_process(argv, port=port, log_dir=log_dir, name=name, ae_title=ae_title)


def kill9(peer: peers.Peer) -> None:
    peer.proc.kill()  # SIGKILL: no clean shutdown, nothing flushed by the process
    peer.proc.wait(timeout=10)
    peer.stop()  # closes the log


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def storescu_acknowledged(log: str) -> list[str]:
    """SOP Instance UIDs (the files are named after them) that storescu -v saw answered
    with success: each "Sending file" line is paired with the next store response."""
    acked, current = [], None
    for line in log.splitlines():
        m = re.search(r"Sending file: (\S+)", line)
        if m:
            current = Path(m.group(1)).stem
        elif "Received Store Response" in line and current is not None:
            if "(Success)" in line:
                acked.append(current)
            current = None
    return acked


def start_sender(kind: str, src: Path, port: int, ack_file: Path, log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"sender-{kind}.log", "wb")
    if kind == "storescu":
        argv = [require_executable("storescu"), "-v", "-aet", "STORESCU", "-aec", AE,
                "-to", "10", "-ta", "10", "-td", "30", "+sd", "+r", HOST, str(port), str(src)]
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    else:
        argv = [PYTHON, str(SUPPORT_DIR / "crash_sender.py"), str(src), str(port), AE, str(ack_file)]
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc._fastdimse_log = log  # type: ignore[attr-defined]
    return proc


def acknowledged(kind: str, ack_file: Path, log_dir: Path) -> list[str]:
    if kind == "storescu":
        return storescu_acknowledged((log_dir / f"sender-{kind}.log").read_text(errors="replace"))
    return ack_file.read_text().split() if ack_file.exists() else []


def check_everything_acknowledged_is_there(acked: set[str], study_uid: str, storage: Path,
                                           log_dir: Path, tmp: Path,
                                           args: tuple[str, ...] = ()) -> None:
    from fastdimse import DICOMSCU, Entity

    catcher_dir = tmp / "caught"
    catcher = q.start_dcmtk_catcher(log_dir, catcher_dir, ae_title="CATCHER")
    archive = start_archive(log_dir, storage, {"CATCHER": catcher.port}, "archive-after", args)
    try:
        remote = Entity(AE, HOST, archive.port)
        scu = DICOMSCU(Entity("CHECKER", HOST, 0))
        found = {str(m.SOPInstanceUID) for m in scu.find(
            remote, {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "", "SOPInstanceUID": ""},
            "IMAGE")}
        missing = acked - found
        assert not missing, f"{len(missing)} of {len(acked)} acknowledged instances not found by C-FIND"

        rsp = scu.move(remote, {"StudyInstanceUID": study_uid}, "CATCHER", "STUDY")
        assert rsp.status == 0x0000, rsp
        moved = set(q.received_files(catcher_dir))
        assert not acked - moved, f"{len(acked - moved)} acknowledged instances not moved"

        got_dir = tmp / "got"
        rsp = scu.get(remote, {"StudyInstanceUID": study_uid}, got_dir, level="STUDY")
        assert rsp.status == 0x0000, rsp
        got = set(q.received_files(got_dir))
        assert not acked - got, f"{len(acked - got)} acknowledged instances not retrieved by C-GET"
        # Everything found is a complete instance (never a partial file under its name).
        assert found <= moved and found <= got
    finally:
        archive.stop()
        catcher.stop()
    import pydicom

    for path in storage.rglob("*"):
        if path.is_file() and not path.name.startswith(("fastdimse-index", ".")):
            ds = pydicom.dcmread(path)
            assert len(ds.PixelData) == 32, path
    assert not list(storage.rglob(".fastdimse-*")), "temporary files left after the restart"


def ingest_and_kill(sender: str, src: Path, archive: peers.Peer, tmp_path: Path,
                    log_dir: Path, kill_after: int | None) -> set[str]:
    """Send ``src`` into ``archive`` and kill -9 it once ``kill_after`` instances are
    acknowledged (None: right after the sender is done). Returns what was acknowledged."""
    ack_file = tmp_path / "acked.txt"
    proc = start_sender(sender, src, archive.port, ack_file, log_dir)
    try:
        if kill_after is None:
            proc.wait(timeout=120)
        else:
            wait_until(lambda: len(acknowledged(sender, ack_file, log_dir)) >= kill_after
                       or proc.poll() is not None, 120, f"{kill_after} acknowledged instances")
        kill9(archive)  # at once: nothing gets a chance to catch up
        proc.wait(timeout=60)
    finally:
        peers.stop_process(proc)
        proc._fastdimse_log.close()
        archive.stop()
    return set(acknowledged(sender, ack_file, log_dir))


@pytest.mark.parametrize("sender", ["fastdimse", "storescu"])
def test_kill_during_ingest_loses_nothing_acknowledged(sender, tmp_path, peer_log_dir):
    truth = q.write_archive(tmp_path / "src", q.bulk_truth(1500, tag=31))
    storage = tmp_path / "storage"
    archive = start_archive(peer_log_dir, storage, {}, "archive-before")
    acked = ingest_and_kill(sender, tmp_path / "src", archive, tmp_path, peer_log_dir, 300)
    assert 300 <= len(acked) < len(truth), f"{len(acked)} acknowledged: the kill came too late"
    check_everything_acknowledged_is_there(acked, truth[0].StudyInstanceUID, storage,
                                           peer_log_dir, tmp_path)


@pytest.mark.parametrize("sender", ["fastdimse", "storescu"])
def test_kill_right_after_ingest_loses_nothing(sender, tmp_path, peer_log_dir):
    truth = q.write_archive(tmp_path / "src", q.bulk_truth(400, tag=32))
    storage = tmp_path / "storage"
    archive = start_archive(peer_log_dir, storage, {}, "archive-before")
    acked = ingest_and_kill(sender, tmp_path / "src", archive, tmp_path, peer_log_dir, None)
    assert acked == {t.SOPInstanceUID for t in truth}, f"only {len(acked)} acknowledged"
    check_everything_acknowledged_is_there(acked, truth[0].StudyInstanceUID, storage,
                                           peer_log_dir, tmp_path)


def test_files_present_but_not_indexed_are_found_after_a_restart(tmp_path, peer_log_dir):
    """Files copied into the storage folder by hand (or left by a run that died between
    the rename and the commit) are indexed at start, before any query is answered."""
    truth = q.write_archive(tmp_path / "storage" / "copied" / "in", q.bulk_truth(50, tag=33))
    check_everything_acknowledged_is_there({t.SOPInstanceUID for t in truth},
                                           truth[0].StudyInstanceUID, tmp_path / "storage",
                                           peer_log_dir, tmp_path)
