"""A C-STORE success means the instance is in the index: the response waits for the
commit, and an index that fails turns the answer into a refusal (0xA700), never a
success. Senders: our SCU (with its asynchronous window) and dcmtk's storescu."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.support import peers
from tests.support import qr_helpers as q
from tests.support.peers import HOST

pytestmark = pytest.mark.timeout(120)


class RecordingIndex(q.MemoryBackend):
    """The test's in-memory back end, with an ingest hook run inside each commit."""

    def __init__(self, hook=None):
        super().__init__([])
        self.hook = hook
        self.batches: list[list[str]] = []

    def add_instances(self, items):
        uids = [attrs["SOPInstanceUID"] for _path, attrs, _ts in items]
        if self.hook is not None:
            self.hook(uids)
        self.batches.append(uids)
        return []


def _scp(tmp_path: Path, backend):
    return q.start_our_qr("ARCHIVE", storage_dir=tmp_path / "storage", backend=backend)


def test_no_success_reaches_the_sender_before_the_commit(tmp_path):
    from fastdimse import DICOMSCU, Entity

    truth = q.write_archive(tmp_path / "src", q.bulk_truth(60, tag=51))
    acked: list[str] = []
    early: list[str] = []

    def inside_commit(uids):
        time.sleep(0.2)  # room for a premature response to reach the sender
        early.extend(u for u in uids if u in set(acked))

    backend = RecordingIndex(inside_commit)
    scp, remote = _scp(tmp_path, backend)
    try:
        results = DICOMSCU(Entity("SENDER", HOST, 0)).store(
            remote, [str(tmp_path / "src")], window=16,
            on_progress=lambda r: acked.append(r.sop_instance_uid) if r.is_success else None)
    finally:
        scp.stop()
    assert all(r.is_success for r in results)
    assert early == [], f"{len(early)} successes arrived before their commit"
    assert sorted(u for b in backend.batches for u in b) == sorted(t.SOPInstanceUID for t in truth)
    # Group commit: with a window, several instances share one commit.
    assert len(backend.batches) < len(truth)


class FailingIndex(RecordingIndex):
    def add_instances(self, items):
        raise RuntimeError("database is unavailable")


def test_an_index_failure_is_never_answered_as_success_our_scu(tmp_path):
    from fastdimse import DICOMSCU, Entity

    q.write_archive(tmp_path / "src", q.bulk_truth(20, tag=52))
    scp, remote = _scp(tmp_path, FailingIndex())
    try:
        results = DICOMSCU(Entity("SENDER", HOST, 0)).store(remote, [str(tmp_path / "src")])
    finally:
        scp.stop()
    assert len(results) == 20
    assert {r.status for r in results} == {0xA700}, {r.status for r in results}
    assert all("not indexed" in (r.reason or "") for r in results), results[0].reason


def test_an_index_failure_is_never_answered_as_success_storescu(tmp_path):
    q.write_archive(tmp_path / "src", q.bulk_truth(5, tag=53))
    scp, remote = _scp(tmp_path, FailingIndex())
    try:
        _rc, out = peers.run_dcmtk_storescu(remote.port, [tmp_path / "src"], called_ae="ARCHIVE")
    finally:
        scp.stop()
    # storescu gives up after the first refusal (A7xx: out of resources).
    assert "Received Store Response (Refused: OutOfResources)" in out, out
    assert "Received Store Response (Success)" not in out, out


def test_one_instance_the_index_chokes_on_fails_alone(tmp_path):
    """A batch that fails as a whole is tried again one instance at a time."""
    from fastdimse import DICOMSCU, Entity

    truth = q.write_archive(tmp_path / "src", q.bulk_truth(30, tag=54))
    poison = truth[7].SOPInstanceUID

    def choke(uids):
        if poison in uids:
            raise RuntimeError("cannot index this one")

    scp, remote = _scp(tmp_path, RecordingIndex(choke))
    try:
        results = DICOMSCU(Entity("SENDER", HOST, 0)).store(remote, [str(tmp_path / "src")], window=16)
    finally:
        scp.stop()
    bad = {r.sop_instance_uid for r in results if not r.is_success}
    assert bad == {poison}, bad


def test_close_closes_the_index_the_scp_opened_and_only_that(tmp_path):
    from fastdimse import DICOMSCP, Entity
    from fastdimse.qr import SQLiteIndex, UnableToProcess

    scp = DICOMSCP(Entity("ARCHIVE", HOST, 0), storage_dir=tmp_path / "a")
    scp.listen_for_incoming_associations()
    own = scp.backend
    assert own.count() == 0
    scp.close()
    assert not scp.is_listening
    with pytest.raises(UnableToProcess):
        own.count()

    mine = SQLiteIndex(tmp_path / "b")
    scp = DICOMSCP(Entity("ARCHIVE", HOST, 0), storage_dir=tmp_path / "b", backend=mine)
    scp.listen_for_incoming_associations()
    scp.close()
    assert mine.count() == 0  # still open: it is the caller's
    mine.close()
