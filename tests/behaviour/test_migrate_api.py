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
