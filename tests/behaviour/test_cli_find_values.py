"""``fastdimse find`` output of values dcmtk's dcmqrscp does not return: multi-valued
attributes (ModalitiesInStudy of a study with CT and MR series) come out as JSON lists
and backslash-joined in the table and the CSV. The peer is our own Q/R SCP, filled with
the standard test archive."""

from __future__ import annotations

import csv
import io

import pytest

from tests.support import qr_helpers as qh
from tests.support.cli import fastdimse, table_rows
from tests.support.peers import HOST, make_scu

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def qr_peer(tmp_path_factory):
    archive = qh.write_archive(tmp_path_factory.mktemp("cli-values-src"), qh.archive_truth(tag=32))
    scp, remote = qh.start_our_qr("CLIQR", storage_dir=tmp_path_factory.mktemp("cli-values-store"))
    try:
        results = make_scu().store(remote, [i.path for i in archive])
        assert all(r.status == 0 for r in results), results
        yield f"CLIQR@{HOST}:{remote.port}", archive
    finally:
        scp.stop()


def _modalities(archive, patient_id):
    return sorted({i.Modality for i in archive if i.PatientID == patient_id})


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_multi_valued_modalities(qr_peer, fmt):
    peer, archive = qr_peer
    want = _modalities(archive, "PAT003")
    assert want == ["CT", "MR"]
    run = fastdimse("find", peer, "-k", "PatientID=PAT003", "-k", "ModalitiesInStudy", "--format", fmt)
    assert run.returncode == 0, run
    if fmt == "json":
        got = run.json()
        assert len(got) == 1 and sorted(got[0]["ModalitiesInStudy"]) == want, got
        return
    rows = list(csv.reader(io.StringIO(run.stdout))) if fmt == "csv" else table_rows(run.stdout)
    assert rows[0] == ["PatientID", "ModalitiesInStudy"], run
    assert len(rows) == 2 and rows[1][0] == "PAT003", run
    assert sorted(rows[1][1].split("\\")) == want, run


def test_single_valued_stays_a_string(qr_peer):
    peer, archive = qr_peer
    run = fastdimse("find", peer, "-k", "PatientID=PAT004", "-k", "ModalitiesInStudy", "-k", "StudyDate", "--json")
    assert run.returncode == 0, run
    got = run.json()
    assert got == [{"PatientID": "PAT004", "ModalitiesInStudy": "CT", "StudyDate": "20221224"}], got


def test_no_match_csv_is_the_header_and_json_an_empty_list(qr_peer):
    peer, _ = qr_peer
    run = fastdimse("find", peer, "-k", "PatientID=NOBODY", "-k", "StudyDate", "--format", "csv")
    assert run.returncode == 0 and run.stdout == "PatientID,StudyDate\n", run
    run = fastdimse("find", peer, "-k", "PatientID=NOBODY", "--json")
    assert run.returncode == 0 and run.json() == [], run
