"""``fastdimse find``, ``move`` and ``get`` as a user runs them (the installed console
script, in a subprocess) against dcmtk's dcmqrscp, filled by dcmtk's storescu with the
standard test archive (tests/support/qr_helpers.py).

Every printed answer (the rich table, the JSON list, the CSV rows) is compared with the
truth of what was stored; a move is checked by the files that reached a dcmtk storescp
destination, a get by the files in its folder, each byte-identical to its source.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tests.support import qr_helpers as qh
from tests.support.cli import fastdimse, fastdimse_on_terminal, table_rows
from tests.support.peers import HOST

pytestmark = pytest.mark.timeout(90)

CATCHER_AE = "CLICATCH"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> list[qh.Instance]:
    return qh.write_archive(tmp_path_factory.mktemp("cli-source"), qh.archive_truth(tag=31))


@pytest.fixture(scope="module")
def catcher_port() -> int:
    return qh.free_port()


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory, archive, catcher_port):
    """dcmtk dcmqrscp (AE DCMQR) holding the archive; CLICATCH in its HostTable."""
    base = tmp_path_factory.mktemp("cli-dcmqrscp")
    peer = qh.start_dcmqrscp(base, base / "db", {CATCHER_AE: ("localhost", catcher_port)})
    try:
        rc, out = qh.run_storescu(peer.port, qh.DCMQRSCP_AE, [i.path for i in archive])
        assert rc == 0 and out.count("Received Store Response (Success)") == len(archive), out + peer.log()
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def peer(dcmqrscp) -> str:
    return f"{qh.DCMQRSCP_AE}@{HOST}:{dcmqrscp.port}"


@pytest.fixture
def catcher(tmp_path, catcher_port):
    """dcmtk storescp as CLICATCH (bit-preserving) where dcmqrscp sends C-MOVE sub-operations."""
    out = tmp_path / "caught"
    proc = qh.start_dcmtk_catcher(tmp_path / "logs", out, ae_title=CATCHER_AE, port=catcher_port)
    try:
        yield out
    finally:
        proc.stop()


def _studies(archive, patient_id=None) -> list[qh.Instance]:
    """One instance per study (of ``patient_id``), in archive order."""
    seen, out = set(), []
    for i in archive:
        if (patient_id is None or i.PatientID == patient_id) and i.StudyInstanceUID not in seen:
            seen.add(i.StudyInstanceUID)
            out.append(i)
    return out


# --- find ----------------------------------------------------------------------------------

def test_find_table(peer, archive):
    cols = ["PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "StudyDescription"]
    run = fastdimse("find", peer, "-k", "PatientID=PAT001", *[a for c in cols[1:] for a in ("-k", c)])
    assert run.returncode == 0, run
    rows = table_rows(run.stdout)
    assert rows[0] == cols, run
    want = sorted([i.value(c) for c in cols] for i in _studies(archive, "PAT001"))
    assert sorted(rows[1:]) == want, run
    assert run.stderr.strip() == f"{len(want)} match(es)", run


def test_find_json_series_level_dcmtk_style(dcmqrscp, archive):
    """-aec then host and port; the level from -k QueryRetrieveLevel=SERIES (findscu's habit)."""
    study = _studies(archive, "PAT001")[0].StudyInstanceUID
    run = fastdimse("find", "-aec", qh.DCMQRSCP_AE, HOST, dcmqrscp.port, "-k", "QueryRetrieveLevel=SERIES",
                    "-k", f"StudyInstanceUID={study}", "-k", "SeriesInstanceUID", "-k", "Modality",
                    "-k", "SeriesNumber", "--json")
    assert run.returncode == 0, run
    got = run.json()
    assert isinstance(got, list)
    want = {(i.SeriesInstanceUID, i.Modality, i.SeriesNumber) for i in archive if i.StudyInstanceUID == study}
    assert len(got) == len(want), got
    assert {(m["SeriesInstanceUID"], m["Modality"], m["SeriesNumber"]) for m in got} == want
    assert all(m["StudyInstanceUID"] == study and set(m) == {"StudyInstanceUID", "SeriesInstanceUID",
                                                             "Modality", "SeriesNumber"} for m in got), got


def test_find_csv_image_level_with_tags(peer, archive):
    """Tags as gggg,eeee; the CSV header names them by keyword, one row per instance."""
    first = _studies(archive, "PAT001")[0]
    series = first.SeriesInstanceUID
    run = fastdimse("find", peer, "--level", "IMAGE", "-k", f"0020,000D={first.StudyInstanceUID}",
                    "-k", f"0020,000E={series}", "-k", "0008,0018", "-k", "InstanceNumber", "--format", "csv")
    assert run.returncode == 0, run
    rows = list(csv.reader(io.StringIO(run.stdout)))
    assert rows[0] == ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "InstanceNumber"], run
    want = sorted([i.StudyInstanceUID, i.SeriesInstanceUID, i.SOPInstanceUID, i.InstanceNumber]
                  for i in archive if i.SeriesInstanceUID == series)
    assert sorted(rows[1:]) == want, run
    assert run.stderr == "", run


def test_find_patient_root_patient_level(peer, archive):
    run = fastdimse("find", "-P", peer, "--level", "PATIENT", "-k", "PatientID", "-k", "PatientName=Doe*",
                    "-k", "PatientBirthDate", "--format", "json")
    assert run.returncode == 0, run
    got = sorted((m["PatientID"], m["PatientName"], m["PatientBirthDate"]) for m in run.json())
    want = sorted({(i.PatientID, i.PatientName, i.PatientBirthDate) for i in archive
                   if i.PatientName.startswith("Doe")})
    assert got == want and len(want) == 2, run


def test_find_default_keys_and_limit(peer, archive):
    """No -k: the study-level default return keys; --limit stops after N (C-CANCEL)."""
    run = fastdimse("find", peer, "--json")
    assert run.returncode == 0, run
    got = run.json()
    studies = _studies(archive)
    assert len(got) == len(studies), got
    by_uid = {i.StudyInstanceUID: i for i in studies}
    for m in got:
        assert list(m)[:4] == ["PatientName", "PatientID", "StudyInstanceUID", "StudyDate"], m
        inst = by_uid[m["StudyInstanceUID"]]
        for kw in ("PatientName", "PatientID", "StudyDate", "StudyDescription", "AccessionNumber"):
            assert m[kw] == inst.value(kw), (kw, m)
    limited = fastdimse("find", peer, "--json", "--limit", "2")
    assert limited.returncode == 0, limited
    assert len(limited.json()) == 2, limited
    assert {m["StudyInstanceUID"] for m in limited.json()} <= set(by_uid)


# --- move ----------------------------------------------------------------------------------

def test_move_study_to_storescp(peer, archive, catcher):
    study = _studies(archive, "PAT001")[0].StudyInstanceUID
    want = [i for i in archive if i.StudyInstanceUID == study]
    run = fastdimse("move", peer, "--dest", CATCHER_AE, "-k", f"StudyInstanceUID={study}", "--json")
    assert run.returncode == 0, run
    doc = run.json()
    assert doc["peer"] == peer and doc["destination"] == CATCHER_AE
    assert (doc["completed"], doc["failed"], doc["warning"], doc["status"]) == (len(want), 0, 0, "0x0000"), doc
    assert doc["failed_sop_instance_uids"] == []
    qh.assert_holds_exactly(catcher, want)


def test_move_progress_on_a_terminal(peer, archive, catcher):
    """stderr a terminal: the bar follows the pending responses and ends at the final counts."""
    want = [i for i in archive if i.PatientID == "PAT002"]
    run = fastdimse_on_terminal("move", peer, "--dest", CATCHER_AE, "-k", "PatientID=PAT002")
    assert run.returncode == 0, run
    assert f"C-MOVE to {CATCHER_AE}" in run.stderr and f"{len(want)}/{len(want)}" in run.stderr, run
    assert run.stdout.strip() == f"C-MOVE: {len(want)} completed, 0 failed, 0 warning", run
    qh.assert_holds_exactly(catcher, want)


def test_move_patient_root_dcmtk_style(dcmqrscp, archive, catcher):
    """-P, -aec/-aem then host and port; the level (PATIENT) from the unique key given."""
    want = [i for i in archive if i.PatientID == "PAT003"]
    run = fastdimse("move", "-P", "-aec", qh.DCMQRSCP_AE, "-aem", CATCHER_AE, HOST, dcmqrscp.port,
                    "-k", "PatientID=PAT003")
    assert run.returncode == 0, run
    assert run.stdout.strip() == f"C-MOVE: {len(want)} completed, 0 failed, 0 warning", run
    qh.assert_holds_exactly(catcher, want)


def test_move_unknown_destination_exit_1(peer, archive, catcher):
    study = _studies(archive)[0].StudyInstanceUID
    run = fastdimse("move", peer, "-aem", "NOWHERE", "-k", f"StudyInstanceUID={study}", "--json")
    assert run.returncode == 1, run
    doc = run.json()
    assert doc["status"] == "0xA801" and doc["completed"] == 0, doc
    assert "0xA801" in run.stderr and "Traceback" not in run.stderr, run
    assert qh.dicom_files(catcher) == [] if catcher.exists() else True


# --- get -----------------------------------------------------------------------------------

def test_get_study_into_folder(peer, archive, tmp_path):
    study = _studies(archive, "PAT002")[0].StudyInstanceUID
    want = [i for i in archive if i.StudyInstanceUID == study]
    out = tmp_path / "got" / "new"
    run = fastdimse("get", peer, "--out", out, "-k", f"StudyInstanceUID={study}", "--json")
    assert run.returncode == 0, run
    doc = run.json()
    assert (doc["completed"], doc["failed"], doc["warning"], doc["status"]) == (len(want), 0, 0, "0x0000"), doc
    assert doc["files"] == len(want) and Path(doc["out"]) == out.resolve(), doc
    qh.assert_holds_exactly(out, want)


def test_get_patient_root_image_level(dcmqrscp, archive, tmp_path):
    two = [i for i in archive if i.PatientID == "PAT001"][:2]
    out = tmp_path / "got"
    run = fastdimse("get", "-P", "-aec", qh.DCMQRSCP_AE, HOST, dcmqrscp.port, "-od", out,
                    "-k", "PatientID=PAT001", "-k", f"StudyInstanceUID={two[0].StudyInstanceUID}",
                    "-k", f"SeriesInstanceUID={two[0].SeriesInstanceUID}",
                    "-k", "SOPInstanceUID=" + "\\".join(i.SOPInstanceUID for i in two))
    assert run.returncode == 0, run
    assert run.stdout.splitlines() == [f"2 file(s) written into {out}", "C-GET: 2 completed, 0 failed, 0 warning"], run
    qh.assert_holds_exactly(out, two)
