"""The capped Q/R peer (tests/support/capped_qrscp.py) behaves as its doc says, seen by
dcmtk's findscu, movescu and getscu: matching and counts, the silent C-FIND cap, the
refusals, the lying C-MOVE, unknown destinations, C-GET.

Its archive is the Q/R suites' generated archive (tests/support/qr_helpers.py) plus one
study without a StudyDate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.capped_qrscp import start_capped_qrscp
from tests.support.peers import require_executable
from tests.support.qr_helpers import (UID_ROOT, Instance, archive_truth, final_response,
                                      received_files, run_findscu, run_getscu, run_movescu,
                                      start_dcmtk_catcher, write_archive)

pytestmark = [pytest.mark.timeout(60)]

AE_TITLE = "CAPPED"
UNDATED = UID_ROOT + "77.9.1"  # kinds 1-3 are archive_truth's


def truth() -> list[Instance]:
    base = archive_truth(tag=77)
    donor = base[0]
    undated = [replace(donor, StudyInstanceUID=UNDATED, StudyDate="", AccessionNumber="ACC9",
                       SeriesInstanceUID=UID_ROOT + "77.9.2",
                       SOPInstanceUID=UID_ROOT + f"77.9.3.{i}") for i in range(2)]
    return base + undated


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, list[Instance]]:
    folder = tmp_path_factory.mktemp("capped") / "storage"
    return folder, write_archive(folder, truth())


@pytest.fixture
def start_capped(archive, peer_log_dir):
    started = []

    def start(**options):
        peer = start_capped_qrscp(peer_log_dir, archive[0], ae_title=AE_TITLE, **options)
        started.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in started:
            peer.stop()


@pytest.fixture
def catcher(peer_log_dir, tmp_path):
    peer = start_dcmtk_catcher(peer_log_dir, tmp_path / "caught", ae_title="CATCHER")
    try:
        yield peer, tmp_path / "caught"
    finally:
        peer.stop()


def find(peer, tmp_path, level: str, keys: dict, *, root: str = "study", name: str = "f"):
    rc, out, answers = run_findscu(peer.port, AE_TITLE, root, level, keys, tmp_path / name)
    assert rc == 0, out
    return out, answers


def studies_of(instances: list[Instance]) -> dict[str, list[Instance]]:
    out: dict[str, list[Instance]] = {}
    for inst in instances:
        out.setdefault(inst.StudyInstanceUID, []).append(inst)
    return out


# --- matching, without a cap ----------------------------------------------------------


def test_study_level_answers_with_counts(start_capped, archive, tmp_path):
    _, instances = archive
    peer = start_capped()
    out, answers = find(peer, tmp_path, "STUDY", {
        "StudyInstanceUID": "", "StudyDate": "", "PatientID": "",
        "NumberOfStudyRelatedInstances": "", "NumberOfStudyRelatedSeries": "",
        "ModalitiesInStudy": ""})
    assert "Final Find Response (Success)" in out
    got = {a.StudyInstanceUID: a for a in answers}
    want = studies_of(instances)
    assert set(got) == set(want)
    for uid, members in want.items():
        a = got[uid]
        assert int(a.NumberOfStudyRelatedInstances) == len(members)
        assert int(a.NumberOfStudyRelatedSeries) == len({m.SeriesInstanceUID for m in members})
        modalities = a.ModalitiesInStudy
        modalities = [modalities] if isinstance(modalities, str) else list(modalities)
        assert sorted(modalities) == sorted({m.Modality for m in members})
        assert a.StudyDate == members[0].StudyDate and a.PatientID == members[0].PatientID
    # Answered in StudyDate order (the undated study first).
    dates = [a.StudyDate for a in answers]
    assert dates == sorted(dates) and dates[0] == ""


@pytest.mark.parametrize("key,expected", [
    ("20200101-20201231", {"20200115", "20200301"}),
    ("-20191231", {"20190720"}),
    ("20210101-", {"20210610", "20221224"}),
    ("20200301", {"20200301"}),
    ('""', {""}),
])
def test_study_date_matching(start_capped, archive, tmp_path, key, expected):
    _, instances = archive
    peer = start_capped()
    _, answers = find(peer, tmp_path, "STUDY", {"StudyInstanceUID": "", "StudyDate": key})
    want = {i.StudyInstanceUID for i in instances if i.StudyDate in expected}
    assert {a.StudyInstanceUID for a in answers} == want


def test_series_and_image_levels_and_the_patient_root(start_capped, archive, tmp_path):
    _, instances = archive
    peer = start_capped()
    study = instances[0].StudyInstanceUID
    members = [i for i in instances if i.StudyInstanceUID == study]
    _, series = find(peer, tmp_path, "SERIES", {
        "StudyInstanceUID": study, "SeriesInstanceUID": "", "Modality": "",
        "NumberOfSeriesRelatedInstances": ""}, name="series")
    want = Counter(i.SeriesInstanceUID for i in members)
    assert {s.SeriesInstanceUID: int(s.NumberOfSeriesRelatedInstances) for s in series} == want
    assert all(s.StudyInstanceUID == study for s in series)

    _, images = find(peer, tmp_path, "IMAGE", {
        "StudyInstanceUID": study, "SeriesInstanceUID": members[0].SeriesInstanceUID,
        "SOPInstanceUID": "", "InstanceNumber": ""}, name="images")
    assert sorted(i.SOPInstanceUID for i in images) == sorted(
        m.SOPInstanceUID for m in members if m.SeriesInstanceUID == members[0].SeriesInstanceUID)

    # Patient root: PATIENT level with a wild card, then the studies of one patient.
    _, patients = find(peer, tmp_path, "PATIENT", {
        "PatientID": "", "PatientName": "Doe*", "NumberOfPatientRelatedStudies": ""},
        root="patient", name="patients")
    assert {(p.PatientID, int(p.NumberOfPatientRelatedStudies)) for p in patients} == {
        ("PAT001", 3), ("PAT002", 1)}  # PAT001 holds the undated study too
    _, pstudies = find(peer, tmp_path, "STUDY", {
        "PatientID": "PAT002", "StudyInstanceUID": "", "NumberOfStudyRelatedInstances": ""},
        root="patient", name="pstudies")
    assert [(int(s.NumberOfStudyRelatedInstances), s.PatientID) for s in pstudies] == [
        (3, "PAT002")]


# --- the cap and the refusals ---------------------------------------------------------


def test_the_cap_truncates_silently(start_capped, archive, tmp_path):
    _, instances = archive
    peer = start_capped(max_results=2)
    out, answers = find(peer, tmp_path, "STUDY", {"StudyInstanceUID": "", "StudyDate": ""})
    assert len(answers) == 2  # of 6 studies
    assert "Final Find Response (Success)" in out  # nothing says it was cut
    # A narrower query under the cap gets everything it matches.
    _, answers = find(peer, tmp_path, "STUDY",
                      {"StudyInstanceUID": "", "StudyDate": "20200101-20201231"}, name="narrow")
    assert len(answers) == 2
    _, images = find(peer, tmp_path, "IMAGE", {
        "StudyInstanceUID": instances[0].StudyInstanceUID, "SOPInstanceUID": ""}, name="img")
    assert len(images) == 2
    peer.wait_for_log(r"find #1 STUDY: 6 matches, answered 2")


def test_refuse_every_third_find(start_capped, tmp_path):
    peer = start_capped(refuse_every=3)
    finals = []
    for n in range(6):
        out, answers = find(peer, tmp_path, "STUDY", {"StudyInstanceUID": ""}, name=f"r{n}")
        refused = "Final Find Response (Refused: OutOfResources)" in out
        assert refused == (answers == [])
        finals.append(refused)
    assert finals == [False, False, True, False, False, True]


# --- retrieves ------------------------------------------------------------------------


def test_lying_move_skips_k_per_study_and_claims_full_counts(start_capped, archive, catcher):
    _, instances = archive
    cpeer, caught = catcher
    peer = start_capped(lying_move=1, lie_times=1, known={"CATCHER": ("127.0.0.1", cpeer.port)})
    study = instances[0].StudyInstanceUID
    members = sorted(i.SOPInstanceUID for i in instances if i.StudyInstanceUID == study)
    rc, out = run_movescu(peer.port, AE_TITLE, "study", "STUDY", {"StudyInstanceUID": study},
                          "CATCHER")
    assert rc == 0, out
    final = final_response(out, "C-MOVE RSP")
    assert (final["status"], final["completed"], final["failed"]) == (0, len(members), 0)
    # ... but the highest SOP Instance UID never arrived.
    cpeer.wait_for_log(r"Received Store Request", count=len(members) - 1)
    assert sorted(received_files(caught)) == members[:-1]
    # --lie-times 1: the second move of the study is honest.
    rc, out = run_movescu(peer.port, AE_TITLE, "study", "STUDY", {"StudyInstanceUID": study},
                          "CATCHER")
    assert rc == 0 and final_response(out, "C-MOVE RSP")["completed"] == len(members)
    cpeer.wait_for_log(r"Received Store Request", count=2 * len(members) - 1)
    assert sorted(received_files(caught)) == members


def test_honest_move_of_two_studies_and_an_unknown_destination(start_capped, archive, catcher):
    _, instances = archive
    cpeer, caught = catcher
    peer = start_capped(known={"CATCHER": ("127.0.0.1", cpeer.port)})
    wanted = sorted({i.StudyInstanceUID for i in instances})[:2]
    expected = sorted(i.SOPInstanceUID for i in instances if i.StudyInstanceUID in wanted)
    rc, out = run_movescu(peer.port, AE_TITLE, "study", "STUDY",
                          {"StudyInstanceUID": "\\".join(wanted)}, "CATCHER")
    final = final_response(out, "C-MOVE RSP")
    assert (final["status"], final["completed"]) == (0, len(expected)), out
    cpeer.wait_for_log(r"Received Store Request", count=len(expected))
    assert sorted(received_files(caught)) == expected

    rc, out = run_movescu(peer.port, AE_TITLE, "study", "STUDY",
                          {"StudyInstanceUID": wanted[0]}, "NOBODY")
    assert final_response(out, "C-MOVE RSP")["status"] == 0xA801


def test_get_of_one_series(start_capped, archive, tmp_path):
    require_executable("getscu")
    _, instances = archive
    peer = start_capped(lying_move=1)  # C-GET never lies
    series = instances[0].SeriesInstanceUID
    expected = sorted(i.SOPInstanceUID for i in instances if i.SeriesInstanceUID == series)
    rc, out = run_getscu(peer.port, AE_TITLE, "study", "SERIES", {
        "StudyInstanceUID": instances[0].StudyInstanceUID, "SeriesInstanceUID": series},
        tmp_path / "got")
    assert rc == 0, out
    assert final_response(out, "C-GET RSP")["completed"] == len(expected)
    assert sorted(received_files(tmp_path / "got")) == expected
