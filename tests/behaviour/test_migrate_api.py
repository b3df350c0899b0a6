"""The Python API ``fastdimse.migrate.migrate(...)``, in-process, with our DICOMSCP on both
ends (a C-MOVE migration counted by C-FIND at the destination), and with a folder as the
source (its files C-STOREd to the destination, grouped by study)."""

from __future__ import annotations

from collections import Counter

import pytest

from fastdimse import Entity
from fastdimse.migrate import migrate
from tests.support import migrate_helpers as mh
from tests.support import qr_helpers as qh
from tests.support.peers import HOST

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def archive(tmp_path):
    return qh.write_archive(tmp_path / "src" / "files", qh.archive_truth(tag=67))


def test_api_move_between_our_scps(tmp_path, archive):
    dest, dest_entity = qh.start_our_qr("APIDEST", storage_dir=tmp_path / "dst")
    source, source_entity = qh.start_our_qr("APISRC", storage_dir=tmp_path / "src", known_entities=[dest_entity])
    try:
        seen = []
        result = migrate(source_entity, dest_entity, journal=tmp_path / "j.sqlite", report=tmp_path / "r.json",
                         parallel=2, rate_limit="1000/s", schedule="00:00-00:00", on_progress=lambda p: seen.append(
                             (p.phase, p.studies_done)))
        studies = Counter(i.StudyInstanceUID for i in archive)
        assert (result.verified, result.failed, result.not_done, result.exit_code) == (len(studies), 0, 0, 0)
        assert result.instances == len(archive) and result.markdown.exists()
        assert seen[-1] == ("done", len(studies)) and any(ph == "inventory" for ph, _ in seen)
        qh.assert_holds_exactly(tmp_path / "dst", archive)
        rows = mh.journal_rows(tmp_path / "j.sqlite")
        assert {uid: r["dest_count"] for uid, r in rows.items()} == dict(studies)
    finally:
        source.stop()
        dest.stop()


def test_api_folder_source_to_our_scp(tmp_path, archive):
    dest, dest_entity = qh.start_our_qr("APIFOLDER", storage_dir=tmp_path / "dst")
    try:
        result = migrate(tmp_path / "src", dest_entity, journal=tmp_path / "j.sqlite", report=tmp_path / "r.json")
        assert (result.verified, result.exit_code) == (len(set(i.StudyInstanceUID for i in archive)), 0), result
        qh.assert_holds_exactly(tmp_path / "dst", archive)
        # A folder destination of a folder source: a copy, counted there.
        copy = migrate(tmp_path / "src", tmp_path / "copy", journal=tmp_path / "j2.sqlite", report=None)
        assert copy.exit_code == 0 and copy.instances == len(archive)
        qh.assert_holds_exactly(tmp_path / "copy", archive)
    finally:
        dest.stop()


def test_api_unreachable_source_raises(tmp_path):
    from fastdimse.migrate.engine import SourceUnreachable

    port = qh.free_port()
    with pytest.raises(SourceUnreachable, match="no association"):
        migrate(Entity("NOBODY", HOST, port), Entity("DEST", HOST, port), journal=tmp_path / "j.sqlite",
                report=None, timeout=1)


def test_an_unexpected_error_fails_the_study_not_the_worker(tmp_path, archive, monkeypatch):
    """A defect in a transfer (here: the onward store raising TypeError) fails that study
    with the error as its reason; nothing is left 'transferring'."""
    from fastdimse.scu import DICOMSCU

    def broken(*args, **kwargs):
        raise TypeError("broken on purpose")

    monkeypatch.setattr(DICOMSCU, "store", broken)
    dest, dest_entity = qh.start_our_qr("APIBROKEN", storage_dir=tmp_path / "dst")
    try:
        result = migrate(tmp_path / "src", dest_entity, journal=tmp_path / "j.sqlite", report=None,
                         max_attempts=2, retry_delay=0.01, parallel=2)
        studies = len(set(i.StudyInstanceUID for i in archive))
        assert (result.verified, result.failed, result.exit_code) == (0, studies, 1), result
        rows = mh.journal_rows(tmp_path / "j.sqlite")
        assert {r["state"] for r in rows.values()} == {"failed"}
        assert all("internal error: TypeError: broken on purpose" in r["reason"] for r in rows.values()), rows
    finally:
        dest.stop()


def test_api_relay_with_a_mapping_file(tmp_path, archive):
    """--map FILE.toml in relay mode: constants on every instance, PatientID mapped (or
    prefixed) per patient; pixel data unchanged; the source's files untouched."""
    import hashlib
    from pathlib import Path

    import pydicom

    patients = sorted({i.PatientID for i in archive})
    mapping = tmp_path / "map.toml"
    mapping.write_text(f'[set]\nIssuerOfPatientID = "SITE-B"\n[patient_id]\nprefix = "A-"\n'
                       f'[patient_id.map]\n"{patients[0]}" = "MAPPED0"\n')
    want_id = {p: ("MAPPED0" if p == patients[0] else "A-" + p) for p in patients}
    sources = {i.SOPInstanceUID: Path(i.path) for i in archive}
    before = {uid: hashlib.sha256(p.read_bytes()).hexdigest() for uid, p in sources.items()}
    catcher_port = qh.free_port()
    dest, dest_entity = qh.start_our_qr("MAPDEST", storage_dir=tmp_path / "dst")
    source, source_entity = qh.start_our_qr("MAPSRC", storage_dir=tmp_path / "src",
                                            known_entities=[Entity("FASTDIMSE", HOST, catcher_port)])
    try:
        result = migrate(source_entity, dest_entity, mode="relay", journal=tmp_path / "j.sqlite", report=None,
                         mapping=mapping, catcher_port=catcher_port, staging=tmp_path / "staging")
        assert result.exit_code == 0 and result.instances == len(archive), result
    finally:
        source.stop()
        dest.stop()
    got = {}
    for f in (tmp_path / "dst").rglob("*.dcm"):
        ds = pydicom.dcmread(f)
        got[ds.SOPInstanceUID] = ds
    assert set(got) == set(sources)
    for inst in archive:
        ds, src = got[inst.SOPInstanceUID], pydicom.dcmread(sources[inst.SOPInstanceUID])
        assert ds.PatientID == want_id[inst.PatientID] and ds.IssuerOfPatientID == "SITE-B"
        assert ds.get("PixelData") == src.get("PixelData") and ds.PatientName == src.PatientName
        assert hashlib.sha256(sources[inst.SOPInstanceUID].read_bytes()).hexdigest() == before[inst.SOPInstanceUID]
