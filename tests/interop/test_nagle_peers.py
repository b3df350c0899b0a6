"""Interoperability with dcmtk peers as users run them: Nagle's algorithm left on.

Debian's dcmtk tools set TCP_NODELAY on their sockets only when ``TCP_NODELAY=1`` is in
their environment. Without it they keep Nagle on and write each PDU in two calls (its
12 header bytes, then the rest): the second write waits for the acknowledgement of the
first, and a receiver that delays its ACKs (Linux does, by at least 40 ms, on a
request/response connection) stalls every message. fastdimse re-arms TCP_QUICKACK after
each read so that it never makes such a peer wait (see ``quick_ack`` in
rust/src/net/assoc.rs and docs/architecture.md).

Each test moves ``COUNT`` small instances in one direction with a default dcmtk peer and
checks that every instance arrived exactly once, its data set byte-identical to its
source (each data set holds its own SOP Instance UID, so comparing the sets of data sets
compares instance by instance). No timing is asserted. The
regression this guards against is a stall of >= 40 ms per instance: ``COUNT`` x 40 ms =
40 s, beyond the generous per-test timeout of 30 s (pytest-timeout), while a healthy
run moves them in a second or two (2,000-3,000 instances/s here; storescu into our
indexed SCP 400-500/s, each response waiting for its index commit) and the whole test,
files written and checked, takes a few seconds. So the timeout, not an assertion on a
figure, is what turns the stall into a failure (with FASTDIMSE_NO_QUICKACK=1 every
test here fails on it).

Every test runs with TCP_NODELAY removed from the environment its peers inherit, and
checks the environment of each dcmtk server it starts in /proc.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support import qr_helpers as qh
from tests.support.peers import (DCMTK_STORE_SUCCESS, HOST, make_scu, peer_entity, run_dcmtk_storescu,
                   start_dcmtk_storage_scp, wait_for_port)

# Generous: a healthy run takes a few seconds (mostly writing and checking the files);
# with a delayed ACK per instance it would take at least COUNT x 40 ms = 40 s.
pytestmark = pytest.mark.timeout(30)

COUNT = 1000
QR_AE = "NAGLEQR"
CATCHER_AE = "CATCHER"


@pytest.fixture(scope="module")
def instances(tmp_path_factory) -> list[qh.Instance]:
    """COUNT small instances (4x4 pixels, under 1 KB) in one patient/study/series."""
    return qh.write_archive(tmp_path_factory.mktemp("nagle-src"), qh.bulk_truth(COUNT, tag=41))


@pytest.fixture(scope="module")
def source_datasets(instances) -> set[bytes]:
    return {qh.dataset_bytes(i.path) for i in instances}


def assert_holds_all(folder: Path, source_datasets: set[bytes]) -> None:
    """``folder`` holds each source instance exactly once, its data set unchanged."""
    got = [qh.dataset_bytes(p) for p in qh.dicom_files(folder)]
    got_set = set(got)
    assert len(got) == len(got_set) == len(source_datasets) and got_set == source_datasets, (
        f"{len(got)} files ({len(got) - len(got_set)} duplicates), "
        f"{len(source_datasets - got_set)} of {len(source_datasets)} source data sets missing, "
        f"{len(got_set - source_datasets)} not from the source")


@pytest.fixture(autouse=True)
def default_dcmtk_environment(monkeypatch):
    """Peers inherit os.environ: make sure it does not ask dcmtk for TCP_NODELAY."""
    monkeypatch.delenv("TCP_NODELAY", raising=False)
    assert "TCP_NODELAY" not in os.environ


def assert_default_environment(pid: int) -> None:
    """The running process ``pid`` was not given TCP_NODELAY (so it keeps Nagle on)."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not [e for e in env if e.startswith(b"TCP_NODELAY=")], env


def test_default_storescu_into_our_scp(instances, source_datasets, tmp_path):
    storage = tmp_path / "stored"
    scp, remote = qh.start_our_qr("NAGLESCP", storage_dir=storage)
    try:
        rc, out = run_dcmtk_storescu(remote.port, [Path(instances[0].path).parent],
                                     called_ae=remote.ae_title)
    finally:
        scp.stop()
    assert rc == 0, out[-3000:]
    assert len(re.findall(DCMTK_STORE_SUCCESS, out)) == COUNT, out[-3000:]
    assert_holds_all(storage, source_datasets)


def test_our_scu_into_default_storescp(instances, source_datasets, tmp_path):
    out = tmp_path / "caught"
    peer = start_dcmtk_storage_scp(tmp_path / "logs", out, extra=["+B"])
    try:
        assert_default_environment(peer.pid)
        results = make_scu().store(peer_entity(peer), [i.path for i in instances])
        assert [r.status for r in results] == [0] * COUNT, [r for r in results if r.status][:5]
    finally:
        peer.stop()
    assert_holds_all(out, source_datasets)


@pytest.fixture(scope="module")
def catcher_port() -> int:
    return qh.free_port()


@pytest.fixture(scope="module")
def our_qr(tmp_path_factory, instances, catcher_port):
    """Our Q/R SCP (storage_dir, SQLite index) holding the instances; CATCHER is known."""
    from fastdimse import Entity

    scp, remote = qh.start_our_qr(QR_AE, storage_dir=tmp_path_factory.mktemp("nagle-qr"),
                                  known_entities=[Entity(CATCHER_AE, HOST, catcher_port)])
    try:
        results = make_scu().store(remote, [i.path for i in instances])
        assert [r.status for r in results] == [0] * COUNT
        yield scp, remote
    finally:
        scp.stop()


def test_move_from_our_qr_scp_to_default_storescp(instances, source_datasets, our_qr, catcher_port,
                                                  tmp_path):
    _scp, remote = our_qr
    out = tmp_path / "caught"
    peer = qh.start_dcmtk_catcher(tmp_path / "logs", out, ae_title=CATCHER_AE, port=catcher_port)
    try:
        assert_default_environment(peer.pid)
        wait_for_port(HOST, catcher_port)
        rc, text = qh.run_movescu(remote.port, QR_AE, "study", "STUDY",
                                  {"StudyInstanceUID": instances[0].StudyInstanceUID}, CATCHER_AE)
    finally:
        peer.stop()
    assert rc == 0, text[-3000:]
    final = qh.final_response(text, "C-MOVE RSP")
    assert final["status"] == 0x0000, text[-3000:]
    assert (final["completed"], final["failed"], final["warning"]) == (COUNT, 0, 0), final
    assert_holds_all(out, source_datasets)


def test_default_getscu_from_our_qr_scp(instances, source_datasets, our_qr, tmp_path):
    _scp, remote = our_qr
    got = tmp_path / "got"
    rc, text = qh.run_getscu(remote.port, QR_AE, "study", "STUDY",
                             {"StudyInstanceUID": instances[0].StudyInstanceUID}, got)
    assert rc == 0, text[-3000:]
    final = qh.final_response(text, "C-GET RSP")
    assert final["status"] == 0x0000, text[-3000:]
    assert (final["completed"], final["failed"], final["warning"]) == (COUNT, 0, 0), final
    assert_holds_all(got, source_datasets)
