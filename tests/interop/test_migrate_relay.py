"""The relay and get modes of ``fastdimse migrate`` (python/fastdimse/migrate/relay.py)
against real peers: dcmtk dcmqrscp as the source (its HostTable knows our catcher), dcmtk
storescp and our SCP as destinations, a folder as source and as destination.

Every received data set is compared byte for byte with its source file (pixel data
included); staged files are checked to be gone once acknowledged and kept when refused.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.support import qr_helpers as qh
from tests.support.peers import HOST, free_port, make_scu

pytestmark = [pytest.mark.timeout(90)]

RELAY_AE = "RELAYCATCH"
DEST_AE = "STORESCP"


def _studies(archive: list[qh.Instance]) -> dict[str, list[qh.Instance]]:
    out: dict[str, list[qh.Instance]] = {}
    for inst in archive:
        out.setdefault(inst.StudyInstanceUID, []).append(inst)
    return out


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> list[qh.Instance]:
    """The standard archive (5 studies, 14 instances) plus two single-study bulk ones."""
    folder = tmp_path_factory.mktemp("relay-archive")
    truth = qh.archive_truth(tag=41) + qh.bulk_truth(30, tag=42) + qh.bulk_truth(12, tag=43)
    return qh.write_archive(folder, truth)


@pytest.fixture(scope="module")
def catcher(tmp_path_factory):
    from fastdimse.migrate.relay import Catcher

    c = Catcher().start(RELAY_AE, HOST, 0, tmp_path_factory.mktemp("staging"))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def source(tmp_path_factory, archive, catcher):
    """dcmtk dcmqrscp holding the archive; RELAYCATCH (the catcher's actual port) in its HostTable."""
    from fastdimse import Entity

    base = tmp_path_factory.mktemp("relay-dcmqrscp")
    peer = qh.start_dcmqrscp(base, base / "db", {RELAY_AE: ("localhost", catcher.port)})
    try:
        rc, out = qh.run_storescu(peer.port, qh.DCMQRSCP_AE, [i.path for i in archive])
        assert rc == 0 and out.count("Received Store Response (Success)") == len(archive), out + peer.log()
        yield Entity(qh.DCMQRSCP_AE, HOST, peer.port)
    finally:
        peer.stop()


@pytest.fixture
def storescp(tmp_path):
    """dcmtk storescp writing exactly what it receives; (peer, Entity, its folder)."""
    from fastdimse import Entity

    out = tmp_path / "storescp"
    peer = qh.start_dcmtk_catcher(tmp_path, out, ae_title=DEST_AE)
    try:
        yield peer, Entity(DEST_AE, HOST, peer.port), out
    finally:
        peer.stop()


def _ctx(source, dest, catcher, mode="relay", **kw):
    from fastdimse.migrate.model import TransferContext

    return TransferContext(scu=make_scu("MIGRATOR"), source=source, dest=dest, mode=mode, dest_ae=None,
                           parallel=kw.pop("parallel", 2), window=kw.pop("window", 4),
                           coerce=kw.pop("coerce", []), catcher=catcher, timeout=30.0)


def _record(uid: str):
    from fastdimse.migrate.model import StudyRecord

    return StudyRecord(study_uid=uid)


def _nth_study(archive, n: int) -> tuple[str, list[qh.Instance]]:
    uid, insts = list(_studies(archive).items())[n]
    return uid, insts


def _staged(catcher, study_uid: str) -> list[Path]:
    d = catcher.staging_dir / study_uid
    return sorted(d.rglob("*.dcm")) if d.exists() else []


def test_relay_move_to_dcmtk_storescp(archive, catcher, source, storescp):
    from fastdimse.migrate.relay import relay_study

    _peer, dest, out = storescp
    uid, want = _nth_study(archive, 0)  # two series, 5 instances
    outcome = relay_study(_ctx(source, dest, catcher), _record(uid))
    assert (outcome.completed, outcome.failed, outcome.warning) == (len(want), 0, 0), outcome
    assert outcome.status == 0x0000 and outcome.failed_uids == [] and not outcome.transient, outcome
    qh.assert_holds_exactly(out, want)
    assert _staged(catcher, uid) == []  # every staged file deleted once acknowledged


def test_relay_move_to_our_scp(archive, catcher, source, fastdimse_scp_factory, tmp_path):
    from fastdimse import Entity
    from fastdimse.migrate.relay import relay_study

    out = tmp_path / "ours"
    scp = fastdimse_scp_factory(ae_title="FDDEST", storage_dir=out)
    uid, want = _nth_study(archive, 5)  # the 30-instance study
    outcome = relay_study(_ctx(source, Entity("FDDEST", HOST, scp.port), catcher, parallel=3, window=8),
                          _record(uid))
    assert (outcome.completed, outcome.failed, outcome.warning, outcome.status) == (len(want), 0, 0, 0), outcome
    qh.assert_holds_exactly(out, want)
    assert _staged(catcher, uid) == []


def test_relay_move_into_a_folder(archive, catcher, source, tmp_path):
    from fastdimse.migrate.relay import relay_study

    uid, want = _nth_study(archive, 1)
    dest = tmp_path / "dest-folder"
    outcome = relay_study(_ctx(source, dest, catcher), _record(uid))
    assert (outcome.completed, outcome.failed) == (len(want), 0), outcome
    qh.assert_holds_exactly(dest, want)
    assert _staged(catcher, uid) == []


def test_get_mode_into_a_folder(archive, source, tmp_path):
    from fastdimse.migrate.relay import get_study

    uid, want = _nth_study(archive, 2)
    dest = tmp_path / "got"
    outcome = get_study(_ctx(source, dest, None, mode="get"), _record(uid))
    assert (outcome.completed, outcome.failed, outcome.status) == (len(want), 0, 0x0000), outcome
    qh.assert_holds_exactly(dest, want)


def test_get_mode_onward_to_storescp(archive, source, storescp, tmp_path):
    from fastdimse.migrate.relay import get_study

    _peer, dest, out = storescp
    uid, want = _nth_study(archive, 3)
    staging = tmp_path / "get-staging"
    outcome = get_study(_ctx(source, dest, None, mode="get"), _record(uid), staging=staging)
    assert (outcome.completed, outcome.failed, outcome.status) == (len(want), 0, 0x0000), outcome
    qh.assert_holds_exactly(out, want)
    assert qh.dicom_files(staging) == []


def test_refused_instances_are_reported_and_kept(archive, catcher, source, fastdimse_scp_factory, tmp_path):
    """Our SCP answers 0xA700 for every third instance: those are failed_uids with the
    reason, their staged files stay (byte-identical to the source), the rest arrive."""
    from fastdimse import Entity
    from fastdimse.migrate.relay import relay_study

    uid, insts = _nth_study(archive, 6)  # the 12-instance study
    refuse = {i.SOPInstanceUID for i in insts[::3]}
    out = tmp_path / "refusing"
    scp = fastdimse_scp_factory(ae_title="REFUSER", storage_dir=out,
                                on_stored=lambda s: 0xA700 if s.sop_instance_uid in refuse else None)
    outcome = relay_study(_ctx(source, Entity("REFUSER", HOST, scp.port), catcher), _record(uid))
    assert sorted(outcome.failed_uids) == sorted(refuse), outcome
    assert (outcome.completed, outcome.failed) == (len(insts) - len(refuse), len(refuse)), outcome
    assert any(r.startswith("0xA700") for r in outcome.reasons), outcome.reasons
    assert outcome.transient, outcome  # out of resources: worth retrying
    qh.assert_holds_exactly(out, [i for i in insts if i.SOPInstanceUID not in refuse])
    # Nothing lost: what was refused is still in staging, byte for byte.
    qh.assert_holds_exactly(catcher.staging_dir / uid, [i for i in insts if i.SOPInstanceUID in refuse])


def test_unreachable_destination_keeps_everything(archive, catcher, source):
    from fastdimse import Entity
    from fastdimse.migrate.relay import relay_study

    uid, want = _nth_study(archive, 4)
    dead = Entity("NOBODY", HOST, free_port())  # nothing listens there
    outcome = relay_study(_ctx(source, dead, catcher), _record(uid))
    assert outcome.completed == 0 and sorted(outcome.failed_uids) == sorted(i.SOPInstanceUID for i in want)
    assert outcome.transient and outcome.reasons, outcome
    qh.assert_holds_exactly(catcher.staging_dir / uid, want)


def test_folder_source_grouped_by_study_and_sent(archive, storescp):
    from fastdimse.migrate.relay import folder_studies, send_folder_study

    _peer, dest, out = storescp
    folder = Path(archive[0].path).parent
    (folder / "README.txt").write_text("not DICOM")  # skipped
    grouped = folder_studies(folder)
    truth = _studies(archive)
    assert {k: sorted(map(str, v)) for k, v in grouped.items()} == \
        {k: sorted(i.path for i in v) for k, v in truth.items()}
    before = {p: p.stat().st_mtime_ns for files in grouped.values() for p in files}
    ctx = _ctx(folder, dest, None)
    for uid, files in grouped.items():
        outcome = send_folder_study(ctx, _record(uid), files)
        assert (outcome.completed, outcome.failed, outcome.status) == (len(truth[uid]), 0, None), outcome
    qh.assert_holds_exactly(out, archive)
    assert {p: p.stat().st_mtime_ns for p in before} == before  # originals untouched


def test_folder_to_folder(archive, tmp_path):
    from fastdimse.migrate.relay import folder_studies, send_folder_study

    folder = Path(archive[0].path).parent
    dest = tmp_path / "copy"
    uid, want = _nth_study(archive, 0)
    outcome = send_folder_study(_ctx(folder, dest, None), _record(uid), folder_studies(folder)[uid])
    assert (outcome.completed, outcome.failed) == (len(want), 0), outcome
    qh.assert_holds_exactly(dest, want)


def test_relay_coerces_tags_and_keeps_pixel_data(archive, catcher, source, storescp):
    """--set PatientID=...: the copies at the destination carry the new value, every pixel
    data byte is the source's, and the source's files are untouched."""
    import hashlib

    import pydicom

    from fastdimse.migrate.relay import relay_study

    _peer, dest, out = storescp
    uid, want = _nth_study(archive, 4)
    before = {i.SOPInstanceUID: hashlib.sha256(Path(i.path).read_bytes()).hexdigest() for i in want}
    outcome = relay_study(_ctx(source, dest, catcher, coerce=[("PatientID", "COERCED1"),
                                                              ("IssuerOfPatientID", "SITE-B")]), _record(uid))
    assert (outcome.completed, outcome.failed) == (len(want), 0), outcome
    got = {}
    for f in out.rglob("*"):
        if f.is_file():
            ds = pydicom.dcmread(f)
            got[ds.SOPInstanceUID] = ds
    assert set(got) == {i.SOPInstanceUID for i in want}
    for inst in want:
        src = pydicom.dcmread(inst.path)
        ds = got[inst.SOPInstanceUID]
        assert ds.PatientID == "COERCED1" and ds.IssuerOfPatientID == "SITE-B"
        assert ("PixelData" in ds) == ("PixelData" in src)
        if "PixelData" in src:
            assert ds.PixelData == src.PixelData
        assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientName == src.PatientName
        assert hashlib.sha256(Path(inst.path).read_bytes()).hexdigest() == before[inst.SOPInstanceUID]


def test_coercion_into_a_folder_is_refused_not_dropped(archive, catcher, source, tmp_path):
    """A folder destination has no C-STORE path to coerce on: refused before retrieving."""
    from fastdimse.migrate.relay import relay_study

    uid, _want = _nth_study(archive, 4)
    with pytest.raises(NotImplementedError, match="coercion"):
        relay_study(_ctx(source, tmp_path / "f", catcher, coerce=[("PatientID", "X1")]), _record(uid))


def test_catcher_keeps_instances_of_a_study_not_being_relayed(archive, catcher):
    """dcmtk storescu sends to the catcher with no relay open for that study: the instance
    is acknowledged and kept in staging (a late sub-operation is never lost), counted stray."""
    uid, want = _nth_study(archive, 1)
    before = catcher.stray
    rc, out = qh.run_storescu(catcher.port, RELAY_AE, [want[0].path])
    assert rc == 0 and "Received Store Response (Success)" in out, out
    assert catcher.stray == before + 1
    qh.assert_holds_exactly(catcher.staging_dir / uid, [want[0]])
    with pytest.raises(RuntimeError, match="already being relayed"):
        catcher.open(uid)
        catcher.open(uid)
    catcher.close(uid)


def test_a_catcher_the_source_does_not_know(archive, source, storescp, tmp_path):
    from fastdimse.migrate.relay import Catcher, relay_study

    _peer, dest, out = storescp
    uid, _want = _nth_study(archive, 2)
    with Catcher().start("UNKNOWNAE", HOST, 0, tmp_path / "stage2") as stranger:
        outcome = relay_study(_ctx(source, dest, stranger), _record(uid))
    assert outcome.status == 0xA801 and outcome.completed == 0 and not outcome.transient, outcome
    assert any("does not know the catcher's AE title UNKNOWNAE" in r for r in outcome.reasons), outcome.reasons
    assert not out.exists() or qh.dicom_files(out) == []


def test_relay_from_pynetdicom_qrscp_by_move_and_by_get(archive, catcher, tmp_path, fastdimse_scp_factory):
    """pynetdicom's qrscp app as the source: one study relayed by C-MOVE through the catcher,
    another by C-GET, into our SCP; byte-identical, nothing left in staging."""
    from fastdimse import Entity
    from fastdimse.migrate.relay import get_study, relay_study

    uid_move, want_move = _nth_study(archive, 0)
    uid_get, want_get = _nth_study(archive, 3)
    peer = qh.start_pynetdicom_qrscp(tmp_path, tmp_path / "work", {RELAY_AE: (HOST, catcher.port)},
                                     ae_title="PYQRSCP")
    try:
        rc, out = qh.run_storescu(peer.port, "PYQRSCP", [i.path for i in want_move + want_get])
        assert rc == 0, out + peer.log()
        scp = fastdimse_scp_factory(ae_title="FDDEST", storage_dir=tmp_path / "ours")
        ctx = _ctx(Entity("PYQRSCP", HOST, peer.port), Entity("FDDEST", HOST, scp.port), catcher)
        moved = relay_study(ctx, _record(uid_move))
        got = get_study(ctx, _record(uid_get), staging=tmp_path / "get-staging")
    finally:
        peer.stop()
    assert (moved.completed, moved.failed, moved.status) == (len(want_move), 0, 0x0000), moved
    assert (got.completed, got.failed, got.status) == (len(want_get), 0, 0x0000), got
    # Compared with the files the peer holds; on a C-GET pynetdicom picks its own first
    # transfer syntax for the sub-operations (implicit VR LE): same elements, other bytes.
    held = {i.SOPInstanceUID: replace(i, path=str(tmp_path / "work" / "instances" / i.SOPInstanceUID))
            for i in want_move + want_get}
    received = qh.received_files(tmp_path / "ours")
    assert set(received) == set(held)
    qh.assert_holds_exactly(tmp_path / "ours", held.values(), allow_transcoded=True)
    for i in want_move:  # the C-MOVE leg: the data sets as the peer holds them, byte for byte
        assert qh.dataset_bytes(received[i.SOPInstanceUID]) == qh.dataset_bytes(held[i.SOPInstanceUID].path)
    assert _staged(catcher, uid_move) == [] and qh.dicom_files(tmp_path / "get-staging") == []
