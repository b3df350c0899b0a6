"""One PostgreSQL index, several SCP processes (the "more than one host" case).

The shared Q/R suites (test_qr_index, test_qr_flow, test_qr_interop) already run on
PostgreSQL; this file covers what only a shared index has: schema migrations racing at
start, two archive processes (tests/support/archive_scp.py --index) on one database (a store
into one, C-FIND / C-MOVE / C-GET from the other, with dcmtk's tools as peers),
per-host storage (a retrieve of files stored on another host is refused, naming it),
two processes writing the same studies at once, and kill -9 of one of two archives
mid-ingest with nothing acknowledged lost.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from tests.support import peers
from tests.support import qr_helpers as q
from tests.support.peers import HOST, PYTHON, free_port
from tests.behaviour.test_crash_safety import (acknowledged, check_everything_acknowledged_is_there,  # noqa: F401
                                               ingest_and_kill, kill9, start_archive, start_sender, wait_until)

pytestmark = pytest.mark.timeout(300)

TESTS = Path(__file__).resolve().parent


def _archive(log_dir, storage, url, name, *, location="shared", known=None, ae="ARCHIVE"):
    return start_archive(log_dir, storage, known or {}, name,
                         ("--index", url, "--location", location), ae_title=ae)


def _find_uids(port: int, ae: str, study_uid: str) -> set[str]:
    from fastdimse import DICOMSCU, Entity

    scu = DICOMSCU(Entity("CHECKER", HOST, 0))
    return {str(m.SOPInstanceUID) for m in scu.find(
        Entity(ae, HOST, port),
        {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "", "SOPInstanceUID": ""}, "IMAGE")}


# --- schema ------------------------------------------------------------------------------

def test_migrations_run_once_when_several_processes_start_at_once(pg_url, tmp_path):
    from fastdimse.qr.postgres import MIGRATIONS, PostgresIndex

    n = 6
    barrier = threading.Barrier(n)
    opened, errors = [], []

    def start(i):
        try:
            barrier.wait(10)
            opened.append(PostgresIndex(pg_url, tmp_path / f"s{i}", location=f"h{i}"))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    try:
        assert errors == []
        assert len(opened) == n
        with psycopg.connect(pg_url) as conn:
            versions = [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
        assert versions == [v for v, _, _ in MIGRATIONS]
        assert set(opened[0].locations()) == {f"h{i}" for i in range(n)}
    finally:
        for ix in opened:
            ix.close()


def test_a_newer_schema_is_refused(pg_url, tmp_path):
    from fastdimse.qr import UnableToProcess
    from fastdimse.qr.postgres import PostgresIndex

    PostgresIndex(pg_url, tmp_path).close()
    with psycopg.connect(pg_url) as conn:
        conn.execute("INSERT INTO schema_version (version, description) VALUES (999, 'future')")
    with pytest.raises(UnableToProcess, match="schema version 999"):
        PostgresIndex(pg_url, tmp_path)


def test_find_uses_the_query_indexes_and_bytewise_text(pg_url, tmp_path):
    """Text columns compare bytewise (COLLATE "C"), as SQLite's do: ranges, equality and
    LIKE give SQLite's answers whatever the database's locale."""
    from fastdimse.qr.postgres import PostgresIndex

    with PostgresIndex(pg_url, tmp_path):
        pass
    with psycopg.connect(pg_url) as conn:
        collations = {c for (c,) in conn.execute(
            "SELECT DISTINCT collation_name FROM information_schema.columns "
            "WHERE table_name IN ('patient','study','series','image') AND data_type = 'text' "
            "AND column_name <> 'charset'")}
        assert collations == {"C"}
        names = {n for (n,) in conn.execute("SELECT indexname FROM pg_indexes")}
    for ix in ("ix_patient_patient_id", "ix_study_study_date_m", "ix_series_modality",
               "ix_image_series_pk", "ix_image_location_path"):
        assert ix in names


# --- two archives, one index ---------------------------------------------------------------

def test_store_into_one_move_and_get_from_the_other(pg_url, tmp_path, peer_log_dir):
    """Shared storage path: storescu into A; B finds everything, moves it to a dcmtk
    storescp and sends it by C-GET to getscu."""
    truth = q.write_archive(tmp_path / "src", q.bulk_truth(60, tag=41))
    storage = tmp_path / "shared-storage"
    catcher = q.start_dcmtk_catcher(peer_log_dir, tmp_path / "caught")
    a = _archive(peer_log_dir, storage, pg_url, "archive-a", ae="ARCHA")
    b = _archive(peer_log_dir, storage, pg_url, "archive-b", ae="ARCHB",
                 known={"CATCHER": catcher.port})
    try:
        rc, out = q.run_storescu(a.port, "ARCHA", [t.path for t in truth])
        assert rc == 0 and out.count("(Success)") == len(truth), out
        want = {t.SOPInstanceUID for t in truth}
        study = truth[0].StudyInstanceUID
        assert _find_uids(b.port, "ARCHB", study) == want

        rc, out = q.run_movescu(b.port, "ARCHB", "study", "STUDY",
                                {"StudyInstanceUID": study}, "CATCHER")
        assert rc == 0, out
        assert q.final_response(out, "C-MOVE RSP")["status"] == 0x0000, out
        q.assert_holds_exactly(tmp_path / "caught", truth)

        rc, out = q.run_getscu(b.port, "ARCHB", "study", "STUDY", {"StudyInstanceUID": study},
                               tmp_path / "got")
        assert rc == 0, out
        assert set(q.received_files(tmp_path / "got")) == want
    finally:
        a.stop()
        b.stop()
        catcher.stop()


def test_per_host_storage_refuses_a_retrieve_of_another_hosts_files(pg_url, tmp_path,
                                                                   peer_log_dir):
    """Per-host storage (each archive its own folder and location): B finds what A
    stored, but a C-MOVE or C-GET of it from B fails with a status that names A's host,
    and sends nothing; the same C-MOVE to A succeeds."""
    from fastdimse import DICOMSCU, Entity

    truth = q.write_archive(tmp_path / "src", q.bulk_truth(20, tag=42))
    catcher = q.start_dcmtk_catcher(peer_log_dir, tmp_path / "caught")
    known = {"CATCHER": catcher.port}
    a = _archive(peer_log_dir, tmp_path / "a", pg_url, "archive-a", location="host-a",
                 known=known, ae="ARCHA")
    b = _archive(peer_log_dir, tmp_path / "b", pg_url, "archive-b", location="host-b",
                 known=known, ae="ARCHB")
    try:
        rc, out = q.run_storescu(a.port, "ARCHA", [t.path for t in truth])
        assert rc == 0 and out.count("(Success)") == len(truth), out
        study = truth[0].StudyInstanceUID
        want = {t.SOPInstanceUID for t in truth}
        assert _find_uids(b.port, "ARCHB", study) == want

        scu = DICOMSCU(Entity("CHECKER", HOST, 0))
        rsp = scu.move(Entity("ARCHB", HOST, b.port), {"StudyInstanceUID": study},
                       "CATCHER", "STUDY")
        assert rsp.status == 0xC000, rsp
        host = socket.gethostname()
        assert (rsp.error_comment or "").startswith(f"stored at host-a on host {host}: 20"), rsp
        assert rsp.completed == 0
        rsp = scu.get(Entity("ARCHB", HOST, b.port), {"StudyInstanceUID": study},
                      tmp_path / "got", level="STUDY")
        assert rsp.status == 0xC000 and "host-a" in (rsp.error_comment or ""), rsp
        assert q.received_files(tmp_path / "caught") == {}
        assert not (tmp_path / "got").exists() or q.received_files(tmp_path / "got") == {}

        rc, out = q.run_movescu(a.port, "ARCHA", "study", "STUDY",
                                {"StudyInstanceUID": study}, "CATCHER")
        assert q.final_response(out, "C-MOVE RSP")["status"] == 0x0000, out
        q.assert_holds_exactly(tmp_path / "caught", truth)
    finally:
        a.stop()
        b.stop()
        catcher.stop()


def test_two_archives_index_the_same_studies_at_once(pg_url, tmp_path, peer_log_dir):
    """Two storescu runs into two archives at the same time, the instances of the same
    patient, studies and series split between them: no deadlock, no row lost."""
    truth = q.bulk_truth(400, tag=43)
    halves = [truth[0::2], truth[1::2]]
    for i, half in enumerate(halves):
        q.write_archive(tmp_path / f"src{i}", half)
    storage = tmp_path / "shared-storage"
    archives = [_archive(peer_log_dir, storage, pg_url, f"archive-{i}", ae=f"ARCH{i}")
                for i in range(2)]
    senders = []
    try:
        for i, arch in enumerate(archives):
            log = open(peer_log_dir / f"storescu-{i}.log", "wb")
            argv = [peers.require_executable("storescu"), "-v", "-aet", "STORESCU",
                    "-aec", f"ARCH{i}", "-to", "10", "-ta", "10", "-td", "30", "+sd", "+r",
                    HOST, str(arch.port), str(tmp_path / f"src{i}")]
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            proc._fastdimse_log = log  # type: ignore[attr-defined]
            senders.append(proc)
        for proc in senders:
            assert proc.wait(timeout=180) == 0
        for i, half in enumerate(halves):
            text = (peer_log_dir / f"storescu-{i}.log").read_text(errors="replace")
            assert text.count("(Success)") == len(half), f"sender {i}"
        want = {t.SOPInstanceUID for t in truth}
        for i, arch in enumerate(archives):
            assert _find_uids(arch.port, f"ARCH{i}", truth[0].StudyInstanceUID) == want
        with psycopg.connect(pg_url) as conn:
            counts = [conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                      for t in ("patient", "study", "series", "image")]
        assert counts == [1, 1, 1, len(truth)]
    finally:
        for proc in senders:
            peers.stop_process(proc)
            proc._fastdimse_log.close()
        for arch in archives:
            arch.stop()


@pytest.mark.parametrize("sender", ["fastdimse", "storescu"])
def test_kill_one_of_two_archives_mid_ingest_loses_nothing(sender, pg_url, tmp_path,
                                                           peer_log_dir):
    """kill -9 of archive A while it ingests; archive B, on the same index and storage,
    finds every instance A acknowledged without any restart; then A is started again
    and everything acknowledged is found, moved and retrieved by C-GET."""
    truth = q.write_archive(tmp_path / "src", q.bulk_truth(1200, tag=44))
    storage = tmp_path / "storage"
    a = _archive(peer_log_dir, storage, pg_url, "archive-a")
    b = _archive(peer_log_dir, storage, pg_url, "archive-b", ae="ARCHB")
    try:
        acked = ingest_and_kill(sender, tmp_path / "src", a, tmp_path, peer_log_dir, 250)
        assert 250 <= len(acked) < len(truth), f"{len(acked)} acknowledged: the kill came too late"
        found = _find_uids(b.port, "ARCHB", truth[0].StudyInstanceUID)
        assert not acked - found, f"{len(acked - found)} acknowledged instances not in the index"
    finally:
        b.stop()
    check_everything_acknowledged_is_there(acked, truth[0].StudyInstanceUID, storage,
                                           peer_log_dir, tmp_path,
                                           ("--index", pg_url, "--location", "shared"))


def test_dicomscp_index_url(pg_url, tmp_path):
    """DICOMSCP(index=URL) stores into PostgreSQL; a second SCP object on the same URL
    (another process in real life) answers for it; bad arguments are refused."""
    from fastdimse import DICOMSCP, Entity
    from fastdimse.qr.postgres import PostgresIndex

    truth = q.write_archive(tmp_path / "src", q.bulk_truth(10, tag=45))
    one, one_remote = q.start_our_qr("ONE", storage_dir=tmp_path / "one", index=pg_url)
    two, two_remote = q.start_our_qr("TWO", storage_dir=tmp_path / "one", index=pg_url)
    try:
        assert isinstance(one.backend, PostgresIndex)
        results = peers.make_scu().store(one_remote, [t.path for t in truth])
        assert [r.status for r in results] == [0] * len(truth)
        assert _find_uids(two.port, "TWO", truth[0].StudyInstanceUID) == {
            t.SOPInstanceUID for t in truth}
    finally:
        one.stop()
        two.stop()
    with pytest.raises(ValueError):
        DICOMSCP(Entity("X", HOST, 0), storage_dir=tmp_path, index="sqlite:///x")
    with pytest.raises(ValueError):
        DICOMSCP(Entity("X", HOST, 0), storage_dir=tmp_path, index=pg_url,
                 backend=q.MemoryBackend([]))


def test_reconcile_indexes_this_locations_unindexed_files_once(pg_url, tmp_path):
    """Files in the storage folder that the index does not list for this location (an
    SCP killed between rename and commit, files copied in) are indexed at start, once;
    another location's reconciliation keeps its own bookkeeping."""
    from fastdimse.qr.postgres import PostgresIndex, StoredElsewhere

    storage = tmp_path / "storage"
    first = q.write_archive(storage / "copied", q.bulk_truth(30, tag=46))
    with PostgresIndex(pg_url, storage, location="a") as a:
        assert a.reconcile().added == len(first)
        assert a.reconcile().added == 0
        later = q.write_archive(storage / "later", q.bulk_truth(5, tag=47))
        assert a.reconcile().added == len(later)
        assert a.count("IMAGE") == len(first) + len(later)
        with PostgresIndex(pg_url, tmp_path / "elsewhere", location="b") as b:
            q.write_archive(tmp_path / "elsewhere", q.bulk_truth(3, tag=48))
            assert b.reconcile().added == 3
        assert a.reconcile().added == 0
        refs = list(a.locate({"QueryRetrieveLevel": "STUDY",
                              "StudyInstanceUID": first[0].StudyInstanceUID}, None, "study"))
        assert {r.sop_instance_uid for r in refs} == {t.SOPInstanceUID for t in first}
        # A retrieve that selects location b's instances too is refused at once, before
        # a row is listed (the SCP sends nothing), and so is its count.
        everything = {"QueryRetrieveLevel": "PATIENT", "PatientID": "BULK"}
        with pytest.raises(StoredElsewhere, match="at b on host"):
            a.locate(everything, None, "patient")
        with pytest.raises(StoredElsewhere):
            a.count_located(everything, None, "patient")
        assert a.count_located({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID":
                                first[0].StudyInstanceUID}, None, "study") == len(first)


def test_an_unreachable_index_fails_at_once_saying_why(tmp_path):
    from fastdimse import DICOMSCP, Entity
    from fastdimse.qr import UnableToProcess

    port = free_port()  # nothing listens there
    with pytest.raises(UnableToProcess, match=r"cannot connect to the index .*refused") as err:
        DICOMSCP(Entity("A", HOST, 0), storage_dir=tmp_path,
                 index=f"postgresql://nobody:secret@{HOST}:{port}/db")
    assert "secret" not in str(err.value)  # the password is never in a message
