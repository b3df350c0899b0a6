"""Query/Retrieve end to end with our own SCU and SCP: every C-FIND case against our
SCP, the seed's flow (QueryBuilder down to images, then send_c_move_image of each to a
catcher), moves that must fail (unknown destination, destination down), a cancelled
find, a C-GET of 1,000 instances, and a custom back end plugged into DICOMSCP.

Every SCP a test starts is stopped by it; the truth is in tests/support/qr_helpers.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support import qr_helpers as qh
from tests.support.peers import HOST, free_port, make_scu, port_answers

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.filterwarnings("ignore:Invalid value for VR CS")]

QR_AE = "QRSCP"
CATCHER_AE = "CATCHER"

CASES = qh.find_cases(qh.archive_truth(tag=2))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> list[qh.Instance]:
    return qh.write_archive(tmp_path_factory.mktemp("source"), qh.archive_truth(tag=2))


@pytest.fixture
def catcher(tmp_path):
    """A second fastdimse DICOMSCP as CATCHER: it stores what it receives under caught/."""
    scp, remote = qh.start_our_qr(CATCHER_AE, storage_dir=tmp_path / "caught")
    try:
        yield scp, remote, tmp_path / "caught"
    finally:
        scp.stop()


@pytest.fixture(params=qh.QR_BACKENDS)
def qr(request, tmp_path, archive, catcher):
    """Our Q/R SCP (SQLite index, or PostgreSQL), CATCHER its only known destination,
    filled by C-STORE."""
    _c, catcher_remote, _dir = catcher
    scp, remote = qh.start_our_qr(QR_AE, storage_dir=tmp_path / "qr",
                                  known_entities=[catcher_remote], **qh.index_kwargs(request))
    try:
        results = make_scu().store(remote, [i.path for i in archive])
        assert [r.status for r in results] == [0] * len(archive), results
        yield scp, remote
    finally:
        scp.stop()


@pytest.fixture(scope="module", params=qh.QR_BACKENDS)
def qr_module(request, tmp_path_factory, archive):
    """One Q/R SCP for the many read-only C-FIND cases (per index back end)."""
    scp, remote = qh.start_our_qr(QR_AE, storage_dir=tmp_path_factory.mktemp("qr"),
                                  **qh.index_kwargs(request))
    try:
        results = make_scu().store(remote, [i.path for i in archive])
        assert [r.status for r in results] == [0] * len(archive), results
        yield scp, remote
    finally:
        scp.stop()


# --- our SCU against our SCP: each matching rule at each level ---------------------------

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_our_find_against_our_scp(case, qr_module, archive):
    _scp, remote = qr_module
    answers = list(make_scu().find(remote, case.identifier(), level=case.level, root=case.root))
    qh.check_find_answer(case, answers, archive)


def test_find_failure_status_is_raised(qr_module):
    """A PATIENT level query in Study Root is not valid: 0xA900 comes back as QueryFailed."""
    from fastdimse.query import QueryFailed

    _scp, remote = qr_module
    with pytest.raises(QueryFailed) as info:
        list(make_scu().find(remote, {"PatientID": ""}, level="PATIENT", root="study"))
    assert info.value.status == 0xA900


def test_find_failure_status_releases_the_association(qr_module, fastdimse_log):
    from fastdimse.query import QueryFailed

    _scp, remote = qr_module
    with pytest.raises(QueryFailed):
        list(make_scu().find(remote, {"PatientID": ""}, level="PATIENT", root="study"))
    msgs = [r.getMessage() for r in fastdimse_log.records]
    assert not [m for m in msgs if "abort" in m.lower()], msgs


# --- 6. the seed's flow --------------------------------------------------------------------

def _check_image_results(images, want):
    """QueryBuilder image results carry every UID needed to retrieve them, all right."""
    by_uid = {i.SOPInstanceUID: i for i in want}
    assert sorted(str(im.SOPInstanceUID) for im in images) == sorted(by_uid)
    for im in images:
        truth = by_uid[str(im.SOPInstanceUID)]
        for kw in ("SOPClassUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID"):
            assert str(im.get(kw, "")) == truth.value(kw), (kw, im)


@pytest.mark.parametrize("root", ["study", "patient"])
def test_seed_flow_querybuilder_then_move_each_image(root, qr, catcher, archive):
    from fastdimse.query import QueryBuilder

    _scp, remote = qr
    _c, _cr, caught = catcher
    scu = make_scu()
    qb = QueryBuilder(scu, remote, root=root)
    if root == "patient":
        patients = qb.get_patients("PAT00*")
        assert sorted(str(p.PatientID) for p in patients) == ["PAT001", "PAT002", "PAT003", "PAT004"]
    want = [i for i in archive if i.PatientID == "PAT001"]
    studies = qb.get_study_uids("PAT001")
    assert sorted(str(s.StudyInstanceUID) for s in studies) == sorted({i.StudyInstanceUID for i in want})
    series = qb.get_series_uids(studies)
    assert sorted(str(s.SeriesInstanceUID) for s in series) == sorted({i.SeriesInstanceUID for i in want})
    for s in series:
        assert str(s.get("StudyInstanceUID", "")) in {i.StudyInstanceUID for i in want}
    images = qb.get_image_uids(series)
    _check_image_results(images, want)

    message_ids = []
    for image in images:
        rsp = scu.send_c_move_image(remote, image, CATCHER_AE, root=root)
        assert rsp.status == 0x0000, rsp
        assert (rsp.completed, rsp.failed, rsp.warning, rsp.remaining) == (1, 0, 0, 0), rsp
        message_ids.append(rsp.message_id_being_responded_to)
    assert all(m >= 1 for m in message_ids), message_ids
    qh.assert_holds_exactly(caught, want)


def test_seed_flow_filtered_lists_and_series_study_moves(qr, catcher, archive):
    """Lists filtered before they are passed on: only the instances kept are moved;
    send_c_move_series / send_c_move_study move whole entities; a caller's message ID is used."""
    from fastdimse.query import QueryBuilder

    _scp, remote = qr
    _c, _cr, caught = catcher
    scu = make_scu()
    qb = QueryBuilder(scu, remote)
    studies = qb.get_study_uids("PAT001")
    series = qb.get_series_uids(studies)
    images = [im for im in qb.get_image_uids(series) if str(im.InstanceNumber) == "1"]
    want = [i for i in archive if i.PatientID == "PAT001" and i.InstanceNumber == "1"]
    assert len(images) == len(want) == 3
    for im in images:
        rsp = scu.send_c_move_image(remote, im, CATCHER_AE, message_id=4242)
        assert rsp.status == 0 and rsp.completed == 1, rsp
        assert rsp.message_id_being_responded_to == 4242, rsp
    qh.assert_holds_exactly(caught, want)

    pat2_series = qb.get_series_uids(qb.get_study_uids("PAT002"))
    assert len(pat2_series) == 1
    pending = []
    rsp = scu.send_c_move_series(remote, pat2_series[0], CATCHER_AE, on_pending=pending.append)
    assert rsp.status == 0 and rsp.completed == 3 and rsp.failed == 0, rsp
    assert [p.completed for p in pending] == list(range(1, len(pending) + 1)), pending
    assert all(p.remaining == 3 - p.completed for p in pending), pending
    pat4 = qb.get_study_uids("PAT004")
    rsp = scu.send_c_move_study(remote, pat4[0], CATCHER_AE)
    assert rsp.status == 0 and rsp.completed == 1, rsp
    want += [i for i in archive if i.PatientID in ("PAT002", "PAT004")]
    qh.assert_holds_exactly(caught, want)


# --- 7. moves that fail, a cancelled find, a big get ---------------------------------------

def test_move_to_unknown_destination(qr, catcher, archive, fastdimse_log):
    _scp, remote = qr
    _c, _cr, caught = catcher
    study = archive[0].StudyInstanceUID
    rsp = make_scu().move(remote, {"StudyInstanceUID": study}, "NOWHERE", level="STUDY")
    assert rsp.status == 0xA801, rsp
    assert (rsp.completed, rsp.failed, rsp.warning) == (0, 0, 0), rsp
    assert not caught.exists() or qh.dicom_files(caught) == []
    assert any("unknown destination" in r.getMessage() for r in fastdimse_log.records)
    # the SCP still serves, and the known destination works
    rsp = make_scu().move(remote, {"StudyInstanceUID": study}, CATCHER_AE, level="STUDY")
    assert rsp.status == 0x0000 and rsp.completed == 5, rsp


def test_move_to_destination_that_is_down(tmp_path, archive):
    """CATCHER is known but nothing listens on its port: A702, every match failed."""
    from fastdimse import Entity

    dead_port = free_port()
    assert not port_answers(HOST, dead_port)
    scp, remote = qh.start_our_qr(QR_AE, storage_dir=tmp_path / "qr",
                                  known_entities=[Entity(CATCHER_AE, HOST, dead_port)])
    try:
        assert all(r.status == 0 for r in make_scu().store(remote, [i.path for i in archive]))
        want = [i for i in archive if i.PatientID == "PAT001"]
        rsp = make_scu().move(remote, {"PatientID": "PAT001"}, CATCHER_AE, level="PATIENT",
                              root="patient")
        assert rsp.status == 0xA702, rsp
        assert (rsp.completed, rsp.failed, rsp.warning) == (0, len(want), 0), rsp
        assert sorted(rsp.failed_sop_instance_uids) == sorted(i.SOPInstanceUID for i in want), rsp
        assert rsp.error_comment, rsp
    finally:
        scp.stop()


def test_move_after_catcher_stopped(qr, catcher, archive):
    """A move works, the catcher stops, the next move fails with A702 and counts."""
    _scp, remote = qr
    cscp, cremote, caught = catcher
    series = archive[0].SeriesInstanceUID
    n = sum(1 for i in archive if i.SeriesInstanceUID == series)
    ident = {"StudyInstanceUID": archive[0].StudyInstanceUID, "SeriesInstanceUID": series}
    rsp = make_scu().move(remote, ident, CATCHER_AE, level="SERIES")
    assert rsp.status == 0 and rsp.completed == n, rsp
    cscp.stop()
    deadline = time.monotonic() + 5
    while port_answers(HOST, cremote.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not port_answers(HOST, cremote.port)
    rsp = make_scu().move(remote, ident, CATCHER_AE, level="SERIES")
    assert rsp.status == 0xA702, rsp
    assert (rsp.completed, rsp.failed) == (0, n), rsp


def test_find_cancelled_early_stops_and_association_goes_on(tmp_path, fastdimse_log):
    """Break after the first match: the SCP pulls only a few of 300 matches from the back
    end (each takes 10 ms), closes its generator, logs the cancel; the same association
    then serves another find, and new associations work too."""
    from fastdimse import uids
    from fastdimse.query import STUDY_ROOT_FIND, find

    truth = qh.bulk_truth(300, tag=3)
    backend = qh.MemoryBackend(truth, find_delay=0.01)
    scp, remote = qh.start_our_qr(QR_AE, backend=backend)
    try:
        scu = make_scu()
        ident = {"StudyInstanceUID": truth[0].StudyInstanceUID,
                 "SeriesInstanceUID": truth[0].SeriesInstanceUID, "SOPInstanceUID": ""}
        with scu.associate(remote, contexts=[(STUDY_ROOT_FIND, list(uids.DEFAULT_TRANSFER_SYNTAXES))]) as assoc:
            gen = find(assoc, ident, "IMAGE", "study")
            first = next(gen)
            gen.close()  # what `break` in a for loop does
            assert str(first.SOPInstanceUID) == truth[0].SOPInstanceUID
            assert backend.closed.wait(5), "the SCP never closed the back end's generator"
            assert not backend.finished
            # 300 matches at 10 ms each: the cancel arrives long before the end
            assert backend.pulled < 100, f"the SCP pulled {backend.pulled} of 300 matches"
            # the same association goes on
            backend.find_delay = 0.0
            again = list(find(assoc, {**ident, "SOPInstanceUID": truth[5].SOPInstanceUID}, "IMAGE", "study"))
            assert [str(a.SOPInstanceUID) for a in again] == [truth[5].SOPInstanceUID]
            assert assoc.is_established
        msgs = [r.getMessage() for r in fastdimse_log.records]
        cancelled = [m for m in msgs if "cancelled by the peer" in m]
        assert cancelled, msgs
        n = int(re.search(r"after (\d+) match", cancelled[0]).group(1))
        assert n < 300, cancelled
        # the high-level API: break in a for loop, then a new operation
        backend.find_delay = 0.01
        count = 0
        for _ in scu.find(remote, ident, level="IMAGE"):
            count += 1
            break
        assert count == 1
        # ended cleanly: both associations released on both sides (the SCP side logs
        # a moment after the SCU returns), never aborted
        deadline = time.monotonic() + 5
        while True:
            msgs = [r.getMessage() for r in fastdimse_log.records]
            if sum("released" in m for m in msgs) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert sum("released" in m for m in msgs) >= 4, msgs
        assert not [m for m in msgs if "abort" in m.lower()], [m for m in msgs if "abort" in m.lower()]
        backend.find_delay = 0.0
        assert make_scu().echo(remote).status == 0
        assert len(list(scu.find(remote, {**ident, "SOPInstanceUID": truth[7].SOPInstanceUID},
                                 level="IMAGE"))) == 1
    finally:
        scp.stop()


def test_findscu_cancel_against_our_scp(tmp_path):
    """dcmtk findscu --cancel 1 against our SCP (slow back end): Cancel status 0xFE00."""
    truth = qh.bulk_truth(200, tag=4)
    backend = qh.MemoryBackend(truth, find_delay=0.01)
    scp, remote = qh.start_our_qr(QR_AE, backend=backend)
    try:
        rc, out, answers = qh.run_findscu(
            remote.port, QR_AE, "study", "IMAGE",
            {"StudyInstanceUID": truth[0].StudyInstanceUID,
             "SeriesInstanceUID": truth[0].SeriesInstanceUID, "SOPInstanceUID": ""},
            tmp_path / "rsp", extra=["--cancel", "1"])
        assert rc == 0, out
        assert "Sending Cancel Request" in out, out
        assert "Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)" in out, out
        assert 1 <= len(answers) < 50, out
        assert backend.closed.wait(5) and not backend.finished
    finally:
        scp.stop()


@pytest.mark.timeout(60)
def test_get_of_1000_instances(tmp_path):
    truth = qh.write_archive(tmp_path / "src", qh.bulk_truth(1000, tag=5))
    scp, remote = qh.start_our_qr(QR_AE, storage_dir=tmp_path / "qr")
    try:
        stored = make_scu().store(remote, [i.path for i in truth])
        assert sum(1 for r in stored if r.status == 0) == 1000
        pending = []
        rsp = make_scu().get(remote, {"StudyInstanceUID": truth[0].StudyInstanceUID},
                             tmp_path / "got", level="STUDY", on_pending=pending.append)
        assert rsp.status == 0x0000, rsp
        assert (rsp.completed, rsp.failed, rsp.warning, rsp.remaining) == (1000, 0, 0, 0), rsp
        assert pending and all(p.completed + p.remaining + p.failed + p.warning == 1000 for p in pending), pending[:3]
        qh.assert_holds_exactly(tmp_path / "got", truth)
    finally:
        scp.stop()


# --- 8. a custom back end ----------------------------------------------------------------

def test_custom_backend_find_and_move(archive, catcher, tmp_path, fastdimse_log):
    from fastdimse.qr import QRBackend

    backend = qh.MemoryBackend(archive)
    assert isinstance(backend, QRBackend)
    _c, catcher_remote, caught = catcher
    scp, remote = qh.start_our_qr(QR_AE, backend=backend, known_entities=[catcher_remote])
    try:
        for case in [c for c in CASES if c.level != "PATIENT" or c.root == "patient"]:
            answers = list(make_scu().find(remote, case.identifier(), level=case.level, root=case.root))
            qh.check_find_answer(case, answers, archive)
        assert ("find", None, "study") in backend.calls or ("find", "STUDY", "study") in backend.calls
        # dcmtk findscu sees the same
        case = next(c for c in CASES if c.id == "S-STUDY-wildcard-star")
        rc, out, answers = qh.run_findscu(remote.port, QR_AE, case.root, case.level,
                                          case.identifier(), tmp_path / "rsp")
        assert rc == 0, out
        qh.check_find_answer(case, answers, archive)
        # move: the files the back end locates go to the catcher, byte-identical
        want = [i for i in archive if i.PatientID == "PAT003"]
        rsp = make_scu().move(remote, {"PatientID": "PAT003"}, CATCHER_AE, level="PATIENT",
                              root="patient")
        assert rsp.status == 0 and (rsp.completed, rsp.failed) == (len(want), 0), rsp
        assert any(c[0] == "locate" for c in backend.calls), backend.calls
        qh.assert_holds_exactly(caught, want)
    finally:
        scp.stop()


@pytest.mark.parametrize("with_storage_dir", [
    False,
    True,
])
def test_custom_backend_get(with_storage_dir, archive, tmp_path):
    backend = qh.MemoryBackend(archive)
    scp, remote = qh.start_our_qr(QR_AE, backend=backend,
                                  storage_dir=tmp_path / "store" if with_storage_dir else None)
    try:
        want = [i for i in archive if i.PatientID == "PAT002"]
        rsp = make_scu().get(remote, {"StudyInstanceUID": want[0].StudyInstanceUID},
                             tmp_path / "got", level="STUDY")
        assert rsp.status == 0 and (rsp.completed, rsp.failed) == (len(want), 0), rsp
        qh.assert_holds_exactly(tmp_path / "got", want)
    finally:
        scp.stop()


def test_custom_backend_add_called_on_store(archive, tmp_path):
    """QRBackend's contract: ``add(path, dataset, transfer_syntax)`` indexes each instance
    the C-STORE SCP stores. A custom back end given with a storage_dir must see it."""
    backend = qh.MemoryBackend([])
    scp, remote = qh.start_our_qr(QR_AE, backend=backend, storage_dir=tmp_path / "store")
    try:
        results = make_scu().store(remote, [archive[0].path])
        assert results[0].status == 0, results
        assert len(backend.added) == 1, f"add() was called {len(backend.added)} times"
    finally:
        scp.stop()


# --- partial failures: warning 0xB000 with counts and the failed UID list ------------------

def test_move_some_refused_by_destination(tmp_path, archive):
    """The catcher refuses two of the five instances of a study (0xA700 from on_stored):
    final status 0xB000, completed 3, failed 2, the two UIDs listed."""
    study = [i for i in archive if i.StudyInstanceUID == archive[0].StudyInstanceUID]
    refuse = {study[1].SOPInstanceUID, study[3].SOPInstanceUID}
    cscp, cremote = qh.start_our_qr(
        CATCHER_AE, storage_dir=tmp_path / "caught",
        on_stored=lambda st: 0xA700 if st.sop_instance_uid in refuse else None)
    scp, remote = qh.start_our_qr(QR_AE, storage_dir=tmp_path / "qr", known_entities=[cremote])
    try:
        assert all(r.status == 0 for r in make_scu().store(remote, [i.path for i in archive]))
        rsp = make_scu().move(remote, {"StudyInstanceUID": study[0].StudyInstanceUID},
                              CATCHER_AE, level="STUDY")
        assert rsp.status == 0xB000, rsp
        assert (rsp.completed, rsp.failed, rsp.warning) == (3, 2, 0), rsp
        assert sorted(rsp.failed_sop_instance_uids) == sorted(refuse), rsp
        qh.assert_holds_exactly(tmp_path / "caught", [i for i in study if i.SOPInstanceUID not in refuse])
    finally:
        scp.stop()
        cscp.stop()


def _move_with_a_file_missing(qr, catcher, archive):
    """Delete one indexed file of a study from the SCP's disk, move the study; returns
    (response, the missing instance, the study's instances)."""
    scp, remote = qr
    _c, _cr, caught = catcher
    study = [i for i in archive if i.StudyInstanceUID == archive[0].StudyInstanceUID]
    gone = study[2]
    stored = [p for p in qh.dicom_files(scp.storage_dir) if qh.sop_uid_of(p) == gone.SOPInstanceUID]
    assert len(stored) == 1
    stored[0].unlink()
    rsp = make_scu().move(remote, {"StudyInstanceUID": gone.StudyInstanceUID}, CATCHER_AE, level="STUDY")
    return rsp, gone, study


def test_move_with_a_file_missing_from_the_archive(qr, catcher, archive):
    """An indexed file deleted from disk: that sub-operation fails, the others go; 0xB000."""
    rsp, gone, study = _move_with_a_file_missing(qr, catcher, archive)
    assert rsp.status == 0xB000, rsp
    assert (rsp.completed, rsp.failed) == (len(study) - 1, 1), rsp
    qh.assert_holds_exactly(catcher[2], [i for i in study if i is not gone])


def test_move_with_a_file_missing_lists_its_uid(qr, catcher, archive):
    rsp, gone, _study = _move_with_a_file_missing(qr, catcher, archive)
    assert rsp.failed_sop_instance_uids == [gone.SOPInstanceUID], rsp


def test_get_with_only_some_storage_classes_negotiated(qr, archive, tmp_path):
    """C-GET of a study with CT and MR series, SCP role negotiated for CT only: the MR
    sub-operations fail (no context), the CT ones arrive; 0xB000 with the counts."""
    from tests.support.qr_helpers import CT_IMAGE_STORAGE

    _scp, remote = qr
    study = [i for i in archive if i.PatientID == "PAT003"]
    ct = [i for i in study if i.Modality == "CT"]
    mr = [i for i in study if i.Modality == "MR"]
    assert ct and mr
    rsp = make_scu().get(remote, {"StudyInstanceUID": study[0].StudyInstanceUID}, tmp_path / "got",
                         level="STUDY", sop_classes=[CT_IMAGE_STORAGE])
    assert rsp.status == 0xB000, rsp
    assert (rsp.completed, rsp.failed) == (len(ct), len(mr)), rsp
    assert sorted(rsp.failed_sop_instance_uids) == sorted(i.SOPInstanceUID for i in mr), rsp
    qh.assert_holds_exactly(tmp_path / "got", ct)


# --- the checks themselves can fail --------------------------------------------------------

def test_find_checker_rejects_wrong_answers(archive):
    """check_find_answer (used by every C-FIND test) fails on a missing match, an extra
    match, a duplicate and a wrong return value."""
    from pydicom.dataset import Dataset

    case = next(c for c in CASES if c.id == "S-STUDY-single-PatientID")
    good = []
    for uid in sorted(case.expected(archive)):
        inst = next(i for i in archive if i.StudyInstanceUID == uid)
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        for kw in case.identifier():
            setattr(ds, kw, inst.value(kw))
        good.append(ds)
    qh.check_find_answer(case, good, archive)
    extra = Dataset()
    extra.QueryRetrieveLevel = "STUDY"
    extra.StudyInstanceUID = next(i.StudyInstanceUID for i in archive if i.PatientID == "PAT002")
    wrong = Dataset()
    wrong.update(good[0])
    wrong.StudyDate = "19000101"
    for bad in (good[:1], good + [extra], good + good[:1], [wrong] + good[1:]):
        with pytest.raises(AssertionError):
            qh.check_find_answer(case, bad, archive)


def test_holds_exactly_rejects_changed_bytes(archive, tmp_path):
    """assert_holds_exactly fails on a missing instance and on one changed byte."""
    import shutil

    folder = tmp_path / "copy"
    folder.mkdir()
    for i in archive[:3]:
        shutil.copy(i.path, folder)
    qh.assert_holds_exactly(folder, archive[:3])
    with pytest.raises(AssertionError):
        qh.assert_holds_exactly(folder, archive[:4])
    victim = folder / Path(archive[0].path).name
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0x01  # last pixel byte
    victim.write_bytes(bytes(data))
    with pytest.raises(AssertionError):
        qh.assert_holds_exactly(folder, archive[:3])
