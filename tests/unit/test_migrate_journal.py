"""The SQLite migration journal: state transitions, claims, retries, leases, reopening
after a process was killed (SIGKILL, in a child process), and a journal of another
migration (JournalMismatch, and one line with exit 2 from the command)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from fastdimse.migrate import State, StudyRecord
from fastdimse.migrate.journal import JournalMismatch, SQLiteJournal, open_journal
from fastdimse.migrate.model import SeriesRecord
from tests.support.cli import fastdimse

pytestmark = pytest.mark.timeout(60)

MIGRATION = {"source": "A@127.0.0.1:1", "dest": "B@127.0.0.1:2", "mode": "move", "keys": {}}


@pytest.fixture
def journal(tmp_path):
    j = SQLiteJournal(tmp_path / "j.sqlite", MIGRATION, max_attempts=3)
    yield j
    j.close()


def test_wal_and_synchronous_full(journal):
    assert journal._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert journal._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_add_studies_never_overwrites(journal):
    assert journal.add_studies([StudyRecord("1.1", "P1", "20200101", 3), StudyRecord("1.2")]) == 2
    journal.update("1.1", State.VERIFIED, source_count=3, dest_count=3, attempt=True)
    assert journal.add_studies([StudyRecord("1.1", "OTHER", "19990101", 9), StudyRecord("1.3")]) == 1
    s = journal.study("1.1")
    assert (s.patient_id, s.study_date, s.expected, s.state, s.attempts) == ("P1", "20200101", 3, State.VERIFIED, 1)
    assert journal.counts() == {State.PENDING: 2, State.TRANSFERRING: 0, State.TRANSFERRED: 0,
                                State.VERIFIED: 1, State.FAILED: 0}


def test_claim_transitions_and_retries(journal):
    journal.add_studies(StudyRecord(f"1.{i}") for i in range(3))
    first = journal.claim("w1", 2)
    assert [s.study_uid for s in first] == ["1.0", "1.1"] and all(s.state is State.TRANSFERRING for s in first)
    assert [s.study_uid for s in journal.claim("w2", 5)] == ["1.2"]
    assert journal.claim("w3") == []  # all claimed
    journal.update("1.0", State.TRANSFERRED)
    journal.update("1.0", State.VERIFIED, source_count=2, dest_count=2, attempt=True)
    # failed, to be retried later: not claimable before its time
    journal.update("1.1", State.FAILED, reason="0xA700 out of resources", attempt=True, retry_at=time.time() + 60)
    # failed, retry due now
    journal.update("1.2", State.FAILED, reason="short", attempt=True, retry_at=0)
    assert [s.study_uid for s in journal.claim("w1", 5)] == ["1.2"]
    assert journal.retry_pending() > time.time()
    s = journal.study("1.1")
    assert (s.state, s.attempts, s.reason) == (State.FAILED, 1, "0xA700 out of resources")
    # attempts reach max_attempts (3): failed for good, never claimed again
    for _ in range(2):
        journal.update("1.2", State.FAILED, reason="short", attempt=True, retry_at=0)
    assert journal.study("1.2").attempts == 3
    assert "1.2" not in [s.study_uid for s in journal.claim("w1", 5)]
    assert journal.reset_failed() == 2
    assert {s.study_uid for s in journal.claim("w1", 5)} == {"1.1", "1.2"}
    with pytest.raises(KeyError):
        journal.update("9.9", State.VERIFIED)


def test_lease_expired_claim_is_claimable_again(tmp_path):
    j = SQLiteJournal(tmp_path / "j.sqlite", MIGRATION, lease=0.05)
    try:
        j.add_studies([StudyRecord("2.1")])
        assert len(j.claim("dead")) == 1
        deadline = time.monotonic() + 5
        while not (again := j.claim("alive")):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert again[0].study_uid == "2.1"
    finally:
        j.close()


def test_expected_series_windows_and_inventory(journal):
    journal.add_studies([StudyRecord("3.1")])
    journal.set_expected("3.1", 5, [SeriesRecord("3.1.1", "3.1", 2), SeriesRecord("3.1.2", "3.1", 3)])
    assert journal.study("3.1").expected == 5
    assert [(s.series_uid, s.expected, s.state) for s in journal.series("3.1")] == [
        ("3.1.1", 2, State.PENDING), ("3.1.2", 3, State.PENDING)]
    journal.update("3.1", State.VERIFIED, attempt=True)
    assert {s.state for s in journal.series("3.1")} == {State.VERIFIED}
    assert not journal.inventory_complete() and journal.done_windows() == set()
    journal.window_done("date:20200101-20200131", 12)
    journal.mark_inventory_complete()
    assert journal.inventory_complete() and journal.done_windows() == {"date:20200101-20200131"}


def test_studies_in_pages(journal):
    journal.add_studies(StudyRecord(f"4.{i:05d}") for i in range(2500))
    journal.update("4.00007", State.FAILED, reason="x", attempt=True)
    assert len(list(journal.studies())) == 2500
    assert [s.study_uid for s in journal.studies(State.FAILED)] == ["4.00007"]
    assert len(set(s.study_uid for s in journal.studies(State.PENDING))) == 2499


CRASHER = textwrap.dedent("""
    import os, signal, sys
    from fastdimse.migrate import State, StudyRecord
    from fastdimse.migrate.journal import SQLiteJournal
    j = SQLiteJournal(sys.argv[1], {migration!r})
    j.add_studies(StudyRecord(f"5.{{i}}") for i in range(4))
    a, b, c = j.claim("w", 3)
    j.update(a.study_uid, State.VERIFIED, source_count=1, dest_count=1, attempt=True)
    j.update(b.study_uid, State.TRANSFERRED)
    os.kill(os.getpid(), signal.SIGKILL)   # c stays transferring
""")


def test_reopen_after_kill_9(tmp_path):
    path = tmp_path / "crash.sqlite"
    done = subprocess.run([sys.executable, "-c", CRASHER.format(migration=MIGRATION), str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with SQLiteJournal(path, MIGRATION) as j:
        states = {s.study_uid: s.state for s in j.studies()}
        assert states == {"5.0": State.VERIFIED, "5.1": State.PENDING, "5.2": State.PENDING, "5.3": State.PENDING}
        assert j.study("5.0").dest_count == 1
        assert {s.study_uid for s in j.claim("again", 10)} == {"5.1", "5.2", "5.3"}


def test_mismatch_names_what_differs(tmp_path):
    path = tmp_path / "j.sqlite"
    SQLiteJournal(path, MIGRATION).close()
    with pytest.raises(JournalMismatch) as info:
        SQLiteJournal(path, {**MIGRATION, "dest": "C@127.0.0.1:3"})
    assert info.value.key == "dest" and "C@127.0.0.1:3" in str(info.value)
    SQLiteJournal(path, dict(MIGRATION)).close()  # the same parameters open it again


def test_open_journal_dispatches_postgresql_lazily(tmp_path, monkeypatch):
    import types

    seen = []
    fake = types.ModuleType("fastdimse.migrate.journal_pg")
    fake.PostgresJournal = lambda url, migration, **kw: seen.append((url, migration, kw)) or "pg"
    monkeypatch.setitem(sys.modules, "fastdimse.migrate.journal_pg", fake)
    assert open_journal("postgresql://u@db/m", MIGRATION, max_attempts=2) == "pg"
    assert seen == [("postgresql://u@db/m", MIGRATION, {"max_attempts": 2})]
    j = open_journal(tmp_path / "x.sqlite", MIGRATION)
    assert isinstance(j, SQLiteJournal)
    j.close()


def test_cli_journal_of_another_migration_is_one_line_exit_2(tmp_path):
    journal = tmp_path / "j.sqlite"
    # An unreachable source: exit 3, but the journal is made for these parameters.
    first = fastdimse("migrate", "SRC@127.0.0.1:9", "DST@127.0.0.1:10", "--journal", journal, "--report",
                      tmp_path / "r.json", "--timeout", "1")
    assert first.returncode == 3, first
    other = fastdimse("migrate", "SRC@127.0.0.1:9", "OTHER@127.0.0.1:10", "--journal", journal, "--report",
                      tmp_path / "r.json", "--timeout", "1")
    assert other.returncode == 2, other
    lines = other.stderr.strip().splitlines()
    assert len(lines) == 1 and "belongs to another migration" in lines[0] and "dest" in lines[0], other
    assert os.path.exists(journal)


def test_transferring_update_renews_the_claim(tmp_path):
    j = SQLiteJournal(tmp_path / "j.sqlite", MIGRATION, lease=600)
    try:
        j.add_studies([StudyRecord("6.1"), StudyRecord("6.2")])
        assert len(j.claim("w1", 2)) == 2
        # Both claims 20 minutes old (as if the clock had gone on), one of them renewed now.
        j._db.execute("UPDATE studies SET claimed_at = claimed_at - 1200")
        j.update("6.1", State.TRANSFERRING)
        assert [s.study_uid for s in j.claim("w2", 5)] == ["6.2"]
    finally:
        j.close()
