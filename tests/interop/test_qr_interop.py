"""Query/Retrieve interoperability: dcmtk's findscu / movescu / getscu against our Q/R
SCP, and our SCU against dcmtk's dcmqrscp and pynetdicom's qrscp app.

Every answer is compared with the truth of what was stored (tests/support/qr_helpers.py):
the set of matching entities for each matching rule at each level, the return keys,
and for retrieves the exact set of instances, each byte-identical to its source.
Every server a test starts is stopped by it (ours by ``stop()``, real peers by pid).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import qr_helpers as qh
from tests.support.peers import HOST, make_scu, wait_for_port

pytestmark = [pytest.mark.timeout(90),
              # wildcards in CS keys (Modality "C?") are valid in a query, not in a stored value
              pytest.mark.filterwarnings("ignore:Invalid value for VR CS")]

QR_AE = "QRSCP"
CATCHER_AE = "CATCHER"


# --- module fixtures: one archive, one of our Q/R SCPs holding it --------------------

@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> list[qh.Instance]:
    """The standard test archive written as Part-10 files (the source of truth)."""
    return qh.write_archive(tmp_path_factory.mktemp("source"), qh.archive_truth(tag=1))


@pytest.fixture(scope="module")
def catcher_port() -> int:
    """The port the CATCHER move destination listens on (tests start it when needed)."""
    return qh.free_port()


@pytest.fixture(scope="module", params=qh.QR_BACKENDS)
def our_qr(request, tmp_path_factory, archive, catcher_port):
    """Our DICOMSCP as a Q/R SCP (SQLite index, or PostgreSQL), filled by our C-STORE
    SCU; CATCHER is its only known move destination."""
    from fastdimse import DICOMSCP, Entity

    storage = tmp_path_factory.mktemp("qrscp-storage")
    scp = DICOMSCP(Entity(QR_AE, HOST, 0), storage_dir=storage,
                   known_entities=[Entity(CATCHER_AE, HOST, catcher_port)],
                   **qh.index_kwargs(request))
    scp.listen_for_incoming_associations(keep_listener_running=True)
    try:
        wait_for_port(HOST, scp.port, timeout=10.0)
        remote = Entity(QR_AE, HOST, scp.port)
        results = make_scu().store(remote, [i.path for i in archive])
        assert [r.status for r in results] == [0] * len(archive), results
        yield scp, remote
    finally:
        scp.stop()


CASES = qh.find_cases(qh.archive_truth(tag=1))


# --- 1. findscu against our SCP --------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_findscu_against_our_scp(case, our_qr, archive, tmp_path):
    scp, remote = our_qr
    rc, out, answers = qh.run_findscu(remote.port, QR_AE, case.root, case.level,
                                      case.identifier(), tmp_path / "rsp")
    assert rc == 0, out
    assert "Received Final Find Response (Success)" in out, out
    qh.check_find_answer(case, answers, archive)


# --- 2. movescu against our SCP ----------------------------------------------------------

@pytest.fixture
def dcmtk_catcher(tmp_path, catcher_port):
    """dcmtk storescp as CATCHER (bit-preserving) on the port our SCP knows for it."""
    out = tmp_path / "caught"
    peer = qh.start_dcmtk_catcher(tmp_path / "logs", out, ae_title=CATCHER_AE, port=catcher_port)
    try:
        yield peer, out
    finally:
        peer.stop()


def _study(archive, patient_id, n=0):
    uids = list(dict.fromkeys(i.StudyInstanceUID for i in archive if i.PatientID == patient_id))
    return uids[n]


@pytest.mark.parametrize("root,level", [("study", "STUDY"), ("patient", "PATIENT"),
                                        ("study", "SERIES"), ("patient", "IMAGE")])
def test_movescu_to_dcmtk_catcher(root, level, our_qr, archive, dcmtk_catcher):
    scp, remote = our_qr
    peer, out = dcmtk_catcher
    study = _study(archive, "PAT001")
    if level == "STUDY":
        keys = {"StudyInstanceUID": study}
        want = [i for i in archive if i.StudyInstanceUID == study]
    elif level == "PATIENT":
        keys = {"PatientID": "PAT003"}
        want = [i for i in archive if i.PatientID == "PAT003"]
    elif level == "SERIES":
        series = sorted({i.SeriesInstanceUID for i in archive if i.StudyInstanceUID == study})
        keys = {"StudyInstanceUID": study, "SeriesInstanceUID": "\\".join(series)}
        want = [i for i in archive if i.SeriesInstanceUID in series]
    else:
        first = next(i for i in archive if i.StudyInstanceUID == study)
        keys = {"PatientID": first.PatientID, "StudyInstanceUID": study,
                "SeriesInstanceUID": first.SeriesInstanceUID, "SOPInstanceUID": first.SOPInstanceUID}
        want = [first]
    rc, out_text = qh.run_movescu(remote.port, QR_AE, root, level, keys, CATCHER_AE)
    assert rc == 0, out_text
    final = qh.final_response(out_text, "C-MOVE RSP")
    assert final["status"] == 0x0000, out_text
    assert (final["completed"], final["failed"], final["warning"]) == (len(want), 0, 0), out_text
    qh.assert_holds_exactly(out, want)


def test_movescu_unknown_destination(our_qr, archive, dcmtk_catcher):
    scp, remote = our_qr
    peer, out = dcmtk_catcher
    rc, text = qh.run_movescu(remote.port, QR_AE, "study", "STUDY",
                              {"StudyInstanceUID": _study(archive, "PAT001")}, "NOWHERE")
    assert "Move response with error status (Refused: MoveDestinationUnknown)" in text, text
    final = qh.final_response(text, "C-MOVE RSP")
    assert final["status"] == 0xA801, text
    assert final["completed"] in (None, 0), text
    assert qh.dicom_files(out) == [], "something was sent to the catcher"
    assert "Association Acknowledged" not in peer.log(), peer.log()  # (the port probe counts as "Received")


# --- 3. getscu against our SCP -----------------------------------------------------------

@pytest.mark.parametrize("root,level", [("study", "STUDY"), ("patient", "PATIENT"),
                                        ("study", "IMAGE")])
def test_getscu_against_our_scp(root, level, our_qr, archive, tmp_path):
    scp, remote = our_qr
    if level == "STUDY":
        study = _study(archive, "PAT001", 1)
        keys = {"StudyInstanceUID": study}
        want = [i for i in archive if i.StudyInstanceUID == study]
    elif level == "PATIENT":
        keys = {"PatientID": "PAT001"}
        want = [i for i in archive if i.PatientID == "PAT001"]
    else:
        two = [i for i in archive if i.PatientID == "PAT002"][:2]
        keys = {"StudyInstanceUID": two[0].StudyInstanceUID,
                "SeriesInstanceUID": two[0].SeriesInstanceUID,
                "SOPInstanceUID": "\\".join(i.SOPInstanceUID for i in two)}
        want = two
    rc, text = qh.run_getscu(remote.port, QR_AE, root, level, keys, tmp_path / "got")
    assert rc == 0, text
    final = qh.final_response(text, "C-GET RSP")
    assert final["status"] == 0x0000, text
    assert (final["completed"], final["failed"], final["warning"]) == (len(want), 0, 0), text
    qh.assert_holds_exactly(tmp_path / "got", want)


# --- 4. our SCU against dcmtk dcmqrscp -----------------------------------------------------

FD_CATCHER_AE = "FDCATCHER"


@pytest.fixture(scope="module")
def fd_catcher_port() -> int:
    return qh.free_port()


@pytest.fixture
def fd_catcher(tmp_path, fd_catcher_port):
    """Our DICOMSCP as a plain storage catcher on the port the peers know for FDCATCHER."""
    from fastdimse import DICOMSCP, Entity

    out = tmp_path / "fd-caught"
    scp = DICOMSCP(Entity(FD_CATCHER_AE, HOST, fd_catcher_port), storage_dir=out)
    scp.listen_for_incoming_associations(keep_listener_running=True)
    try:
        wait_for_port(HOST, fd_catcher_port, timeout=10.0)
        yield scp, out
    finally:
        scp.stop()


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory, archive, fd_catcher_port):
    """dcmtk dcmqrscp (storage area DCMQR, FDCATCHER in its HostTable), filled by
    dcmtk storescu; stopped by pid at the end of the module."""
    from fastdimse import Entity

    base = tmp_path_factory.mktemp("dcmqrscp")
    peer = qh.start_dcmqrscp(base, base / "db", {FD_CATCHER_AE: ("localhost", fd_catcher_port)})
    try:
        rc, out = qh.run_storescu(peer.port, qh.DCMQRSCP_AE, [i.path for i in archive])
        assert rc == 0 and out.count("Received Store Response (Success)") == len(archive), \
            out + peer.log()
        yield peer, Entity(qh.DCMQRSCP_AE, HOST, peer.port)
    finally:
        peer.stop()


# Attributes dcmqrscp's index does not keep (dcmqrdb's fixed key table): it neither
# matches on them nor returns them.
DCMQRSCP_UNSUPPORTED = {"SeriesDescription", "SOPClassUID"}
DCMQRSCP_CASES = qh.cases_for(CASES, DCMQRSCP_UNSUPPORTED)


@pytest.mark.parametrize("case", DCMQRSCP_CASES, ids=[c.id for c in DCMQRSCP_CASES])
def test_our_find_against_dcmqrscp(case, dcmqrscp, archive):
    peer, remote = dcmqrscp
    answers = list(make_scu().find(remote, case.identifier(), level=case.level, root=case.root))
    qh.check_find_answer(case, answers, archive, DCMQRSCP_UNSUPPORTED)


@pytest.mark.parametrize("level", ["STUDY", "SERIES", "IMAGE"])
def test_our_move_from_dcmqrscp(level, dcmqrscp, archive, fd_catcher):
    peer, remote = dcmqrscp
    scp, out = fd_catcher
    want, ident = _retrieve_target(archive, level)
    pending = []
    rsp = make_scu().move(remote, ident, FD_CATCHER_AE, level=level, root="study",
                          on_pending=pending.append)
    assert rsp.status == 0x0000, rsp
    assert (rsp.completed, rsp.failed, rsp.warning) == (len(want), 0, 0), rsp
    assert rsp.message_id_being_responded_to >= 1, rsp
    assert all(p.status == 0xFF00 for p in pending), pending
    qh.assert_holds_exactly(out, want)


@pytest.mark.parametrize("level", ["STUDY", "IMAGE"])
def test_our_get_from_dcmqrscp(level, dcmqrscp, archive, tmp_path):
    peer, remote = dcmqrscp
    want, ident = _retrieve_target(archive, level)
    rsp = make_scu().get(remote, ident, tmp_path / "got", level=level, root="study")
    assert rsp.status == 0x0000, rsp
    assert (rsp.completed, rsp.failed, rsp.warning) == (len(want), 0, 0), rsp
    qh.assert_holds_exactly(tmp_path / "got", want)


def test_our_move_from_dcmqrscp_unknown_destination(dcmqrscp, archive, fd_catcher):
    peer, remote = dcmqrscp
    scp, out = fd_catcher
    _want, ident = _retrieve_target(archive, "STUDY")
    rsp = make_scu().move(remote, ident, "NOWHERE", level="STUDY", root="study")
    assert rsp.status == 0xA801, rsp
    assert not out.exists() or qh.dicom_files(out) == []


def _retrieve_target(archive, level, uid_list=True):
    """(instances, study-root identifier) for a retrieve at ``level`` (PAT001's first study,
    its first series, two images of that series as a UID list, or only the first image
    without ``uid_list``)."""
    study = _study(archive, "PAT001")
    in_study = [i for i in archive if i.StudyInstanceUID == study]
    if level == "STUDY":
        return in_study, {"StudyInstanceUID": study}
    series = in_study[0].SeriesInstanceUID
    in_series = [i for i in in_study if i.SeriesInstanceUID == series]
    if level == "SERIES":
        return in_series, {"StudyInstanceUID": study, "SeriesInstanceUID": series}
    two = in_series[:2] if uid_list else in_series[:1]
    return two, {"StudyInstanceUID": study, "SeriesInstanceUID": series,
                 "SOPInstanceUID": [i.SOPInstanceUID for i in two] if uid_list else two[0].SOPInstanceUID}


# --- 5. our SCU against pynetdicom's qrscp app -------------------------------------------
#
# What pynetdicom 3.0.4's qrscp app does differently (its limitations, not ours):
# - it answers a C-FIND once per stored *instance* under each matching entity (a study
#   of 5 images is 5 responses), so answers are compared as a set;
# - a UID list (multi-valued unique key) makes its SQL fail (sqlite3.ProgrammingError:
#   type 'MultiValue' is not supported) and it answers 0xC320 / 0xC4xx: no list cases;
# - its index has no StudyDescription, SeriesDescription, PatientBirthDate, PatientSex
#   (neither matched nor returned) and it returns no SOPClassUID;
# - it re-encodes what it stores (save_as(write_like_original=False)), so retrieved
#   data sets are compared with the files it holds, not with our source files.

PYQR_AE = "PYQRSCP"
PYQR_UNSUPPORTED = {"SeriesDescription", "SOPClassUID", "StudyDescription", "PatientBirthDate",
                    "PatientSex"}
PYQR_CASES = [c for c in qh.cases_for(CASES, PYQR_UNSUPPORTED) if c.rule != "list"]


@pytest.fixture(scope="module")
def pynetdicom_qrscp(tmp_path_factory, archive, fd_catcher_port):
    """``python -m pynetdicom qrscp`` with a config written here (FDCATCHER as its move
    destination), filled by dcmtk storescu; stopped by pid. Yields (peer, remote, the
    archive as the peer holds it: same truth, paths of the peer's own files)."""
    from dataclasses import replace

    from fastdimse import Entity

    base = tmp_path_factory.mktemp("pyqrscp")
    work = base / "work"
    peer = qh.start_pynetdicom_qrscp(base, work, {FD_CATCHER_AE: (HOST, fd_catcher_port)},
                                     ae_title=PYQR_AE)
    try:
        rc, out = qh.run_storescu(peer.port, PYQR_AE, [i.path for i in archive])
        assert rc == 0 and out.count("Received Store Response (Success)") == len(archive), \
            out + peer.log()
        held = [replace(i, path=str(work / "instances" / i.SOPInstanceUID)) for i in archive]
        assert all(Path(i.path).is_file() for i in held), sorted(p.name for p in (work / "instances").iterdir())
        yield peer, Entity(PYQR_AE, HOST, peer.port), held
    finally:
        peer.stop()


@pytest.mark.parametrize("case", PYQR_CASES, ids=[c.id for c in PYQR_CASES])
def test_our_find_against_pynetdicom_qrscp(case, pynetdicom_qrscp, archive):
    peer, remote, _held = pynetdicom_qrscp
    answers = list(make_scu().find(remote, case.identifier(), level=case.level, root=case.root))
    qh.check_find_answer(case, answers, archive, PYQR_UNSUPPORTED, one_per_instance=True)


@pytest.mark.parametrize("level", ["STUDY", "SERIES", "IMAGE"])
def test_our_move_from_pynetdicom_qrscp(level, pynetdicom_qrscp, fd_catcher):
    peer, remote, held = pynetdicom_qrscp
    scp, out = fd_catcher
    want, ident = _retrieve_target(held, level, uid_list=False)
    rsp = make_scu().move(remote, ident, FD_CATCHER_AE, level=level, root="study")
    assert rsp.status == 0x0000, rsp
    assert (rsp.completed, rsp.failed, rsp.warning) == (len(want), 0, 0), rsp
    qh.assert_holds_exactly(out, want)


@pytest.mark.parametrize("level", ["STUDY", "IMAGE"])
def test_our_get_from_pynetdicom_qrscp(level, pynetdicom_qrscp, tmp_path):
    peer, remote, held = pynetdicom_qrscp
    want, ident = _retrieve_target(held, level, uid_list=False)
    rsp = make_scu().get(remote, ident, tmp_path / "got", level=level, root="study")
    assert rsp.status == 0x0000, rsp
    assert (rsp.completed, rsp.failed, rsp.warning) == (len(want), 0, 0), rsp
    # pynetdicom, acceptor of the storage contexts of a C-GET, picks its own first
    # transfer syntax (implicit VR LE) and re-encodes: same elements, other bytes.
    qh.assert_holds_exactly(tmp_path / "got", want, allow_transcoded=True)


def test_our_move_from_pynetdicom_qrscp_unknown_destination(pynetdicom_qrscp, fd_catcher):
    peer, remote, held = pynetdicom_qrscp
    scp, out = fd_catcher
    _want, ident = _retrieve_target(held, "STUDY")
    rsp = make_scu().move(remote, ident, "NOWHERE", level="STUDY", root="study")
    assert rsp.status == 0xA801, rsp
    assert not out.exists() or qh.dicom_files(out) == []
