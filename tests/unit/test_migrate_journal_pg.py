"""PostgresJournal (fastdimse.migrate.journal_pg) on the real PostgreSQL of the tests.

State transitions, the migration mismatch, claims from two processes at once, lease
expiry, kill -9 of a worker holding a claim, and resume by reopening. Each test gets a
fresh database (fixture ``pg_url``); worker processes are this interpreter running
:data:`WORKER` and are stopped by pid.
"""

from __future__ import annotations

import os
import signal
import threading
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastdimse.errors import DicomError, JournalError, JournalMismatch
from fastdimse.migrate.journal_pg import PostgresJournal
from fastdimse.migrate.model import SeriesRecord, State, StudyRecord
from tests.support.peers import free_port

pytestmark = [pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]

MIGRATION = {"source": "SRC@127.0.0.1:11112", "dest": "DST@127.0.0.1:11113", "mode": "move",
             "filters": {"date_from": "20200101", "modality": "MR"}}

# A worker process. argv: url, worker name, mode.
#   drain: wait for "go" on stdin, then claim one study at a time and mark it transferred
#          until none is left; print each claimed UID.
#   hold:  claim one study, print its UID, then wait (for kill -9) on stdin.
WORKER = r"""
import sys
from fastdimse.migrate.journal_pg import PostgresJournal
from fastdimse.migrate.model import State
url, name, mode = sys.argv[1:4]
j = PostgresJournal(url, {MIGRATION!r}, pool_size=1)
if mode == "drain":
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        got = j.claim(name)
        if not got:
            break
        for s in got:
            print(s.study_uid, flush=True)
            j.update(s.study_uid, State.TRANSFERRED, source_count=1)
else:
    got = j.claim(name)
    print(got[0].study_uid if got else "none", flush=True)
    sys.stdin.read()
j.close()
""".replace("{MIGRATION!r}", repr(MIGRATION))


def uids(n: int, prefix: str = "1.2.826.0.1.3680043.9.7.") -> list[str]:
    return [f"{prefix}{i:05d}" for i in range(n)]


def open_journal(url: str, **kw) -> PostgresJournal:
    return PostgresJournal(url, MIGRATION, pool_size=2, **kw)


@pytest.fixture
def journal(pg_url):
    j = open_journal(pg_url)
    try:
        yield j
    finally:
        j.close()


def start_worker(url: str, name: str, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, url, name, mode], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def poll(predicate, timeout: float = 30.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"not true within {timeout} s: {predicate}")


# --- one process ----------------------------------------------------------------------


def test_add_studies_inserts_new_rows_only(journal):
    assert journal.add_studies(StudyRecord(u, patient_id="P1", study_date="20200105")
                               for u in uids(3)) == 3
    journal.update(uids(3)[0], State.FAILED, reason="0xA700 out of resources", attempt=True)
    # Again, with one new study and different values for the old ones: nothing overwritten.
    again = [StudyRecord(u, patient_id="OTHER", expected=9) for u in uids(4)]
    assert journal.add_studies(again) == 1
    got = {s.study_uid: s for s in journal.studies()}
    assert sorted(got) == uids(4)
    first = got[uids(3)[0]]
    assert (first.state, first.attempts, first.reason, first.patient_id, first.study_date,
            first.expected) == (State.FAILED, 1, "0xA700 out of resources", "P1", "20200105", None)
    assert got[uids(4)[3]].expected == 9 and got[uids(4)[3]].patient_id == "OTHER"
    assert journal.counts() == {State.PENDING: 3, State.TRANSFERRING: 0, State.TRANSFERRED: 0,
                                State.VERIFIED: 0, State.FAILED: 1}


def test_state_transitions_and_counts(journal):
    a, b = uids(2)
    journal.add_studies([StudyRecord(a, study_date="20200101"), StudyRecord(b)])
    journal.set_expected(a, 3, [SeriesRecord("1.2.3.1", a, expected=2),
                                SeriesRecord("1.2.3.2", a, expected=1)])
    got = journal.claim("w1", limit=5)
    assert [s.study_uid for s in got] == [a, b]
    assert all(s.state is State.TRANSFERRING for s in got)
    assert got[0].expected == 3 and got[1].expected is None
    assert journal.claim("w2") == []  # both held

    journal.update(a, State.TRANSFERRED, source_count=3)
    journal.update(a, State.VERIFIED, dest_count=3)
    journal.update(b, State.FAILED, reason="short: 1 of 2", dest_count=1, attempt=True,
                   retry_at=time.time() + 3600)
    by_uid = {s.study_uid: s for s in journal.studies()}
    assert (by_uid[a].state, by_uid[a].source_count, by_uid[a].dest_count) == (State.VERIFIED, 3, 3)
    assert (by_uid[b].state, by_uid[b].attempts, by_uid[b].reason,
            by_uid[b].dest_count) == (State.FAILED, 1, "short: 1 of 2", 1)
    assert by_uid[b].next_attempt_at > time.time() + 3000
    assert [s.study_uid for s in journal.studies(State.VERIFIED)] == [a]
    assert [s.study_uid for s in journal.studies(State.FAILED)] == [b]
    assert [(s.series_uid, s.expected) for s in journal.series(a)] == [("1.2.3.1", 2),
                                                                        ("1.2.3.2", 1)]
    assert journal.series(b) == []
    assert journal.claim("w2") == []  # b waits for its retry time; a is verified

    journal.update(b, State.FAILED, retry_at=0.0)  # due now
    again = journal.claim("w2")
    assert [s.study_uid for s in again] == [b] and again[0].attempts == 1

    with pytest.raises(KeyError):
        journal.update("9.9.9", State.VERIFIED)
    with pytest.raises(KeyError):
        journal.set_expected("9.9.9", 1)


def test_failed_studies_stop_after_max_attempts(pg_url):
    with open_journal(pg_url, max_attempts=2) as j:
        (uid,) = uids(1)
        j.add_studies([StudyRecord(uid)])
        for attempt in (1, 2):
            assert [s.study_uid for s in j.claim("w")] == [uid]
            j.update(uid, State.FAILED, reason=f"0xA702 attempt {attempt}", attempt=True,
                     retry_at=0.0)
        assert j.claim("w") == []
        (rec,) = j.studies()
        assert (rec.state, rec.attempts, rec.reason) == (State.FAILED, 2, "0xA702 attempt 2")
    # A journal opened with a higher bound retries it again.
    with open_journal(pg_url, max_attempts=3) as j:
        assert [s.study_uid for s in j.claim("w")] == [uid]


def test_inventory_progress(journal):
    assert journal.done_windows() == set() and not journal.inventory_complete()
    journal.window_done("20200101-20200131", 412)
    journal.window_done("20200201", 3)
    journal.window_done("20200201", 4)
    assert journal.done_windows() == {"20200101-20200131", "20200201"}
    journal.mark_inventory_complete()
    assert journal.inventory_complete()


def test_add_studies_in_pages(journal):
    many = uids(2500)
    assert journal.add_studies(StudyRecord(u) for u in many) == 2500
    assert [s.study_uid for s in journal.studies()] == many
    assert journal.counts()[State.PENDING] == 2500


def test_another_migration_is_refused(pg_url):
    with open_journal(pg_url) as j:
        j.add_studies([StudyRecord(uids(1)[0])])
    other = dict(MIGRATION, dest="ELSEWHERE@127.0.0.1:104")
    with pytest.raises(JournalMismatch) as info:
        PostgresJournal(pg_url, other)
    assert isinstance(info.value, DicomError) and info.value.key == "dest"
    message = str(info.value)
    assert "\n" not in message and "dest" in message and "ELSEWHERE" in message
    # The same parameters in another key order are the same migration.
    with PostgresJournal(pg_url, dict(reversed(list(MIGRATION.items())))) as j:
        assert j.counts()[State.PENDING] == 1


def test_password_is_not_in_the_mismatch_message(pg_server, pg_url):
    with open_journal(pg_url):
        pass
    url = pg_url.replace("fastdimse@", "fastdimse:s3cret@")  # trust auth ignores it
    with pytest.raises(JournalMismatch) as info:
        PostgresJournal(url, dict(MIGRATION, mode="relay"))
    assert "s3cret" not in str(info.value) and "mode" in str(info.value)


def test_an_unreachable_server_is_one_clear_error():
    url = f"postgresql://fastdimse:s3cret@127.0.0.1:{free_port()}/journal"
    with pytest.raises(JournalError) as info:
        PostgresJournal(url, MIGRATION, timeout=5)
    message = str(info.value)
    assert not isinstance(info.value, JournalMismatch)
    assert message.startswith("cannot open the journal postgresql://fastdimse:***@127.0.0.1:")
    assert "\n" not in message and "s3cret" not in message


def test_resume_after_reopen(pg_url):
    studies = uids(5)
    with open_journal(pg_url) as j:
        j.add_studies(StudyRecord(u) for u in studies)
        j.window_done("20200101", 5)
        j.mark_inventory_complete()
        j.claim("w1", limit=2)
        j.update(studies[0], State.VERIFIED, source_count=2, dest_count=2)
    # Reopened (a new process would do the same): everything recorded is there, the
    # held claim included; the inventory is not redone.
    with open_journal(pg_url) as j:
        assert j.inventory_complete() and j.done_windows() == {"20200101"}
        assert j.add_studies(StudyRecord(u) for u in studies) == 0
        assert j.counts() == {State.PENDING: 3, State.TRANSFERRING: 1, State.TRANSFERRED: 0,
                              State.VERIFIED: 1, State.FAILED: 0}
        got = j.claim("w2", limit=10)
        assert [s.study_uid for s in got] == studies[2:]  # not the verified, not the held


# --- several processes ----------------------------------------------------------------


def test_two_processes_claim_each_study_once(pg_url):
    studies = uids(120)
    with open_journal(pg_url) as j:
        j.add_studies(StudyRecord(u) for u in studies)
    workers = [start_worker(pg_url, f"w{i}", "drain") for i in range(2)]
    try:
        for w in workers:
            assert w.stdout.readline().strip() == "ready"
        for w in workers:  # both start claiming together
            w.stdin.write("go\n")
            w.stdin.flush()
        outs = [w.communicate(timeout=60)[0].split() for w in workers]
        assert [w.returncode for w in workers] == [0, 0]
    finally:
        for w in workers:
            stop(w)
    claimed = outs[0] + outs[1]
    assert sorted(claimed) == studies  # every study claimed, none twice
    with open_journal(pg_url) as j:
        assert j.counts()[State.TRANSFERRED] == len(studies)


def test_threads_of_one_process_claim_each_study_once(pg_url):
    studies = uids(80)
    claimed: list[list[str]] = [[] for _ in range(4)]
    with PostgresJournal(pg_url, MIGRATION, pool_size=4) as j:
        j.add_studies(StudyRecord(u) for u in studies)
        start = threading.Barrier(4)

        def work(i: int) -> None:
            start.wait(timeout=30)
            while got := j.claim(f"t{i}", limit=3):
                for s in got:
                    claimed[i].append(s.study_uid)
                    j.update(s.study_uid, State.VERIFIED, dest_count=1)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert sorted(sum(claimed, [])) == studies
        assert j.counts()[State.VERIFIED] == len(studies)


def test_lease_expiry_makes_a_claim_claimable_again(pg_url):
    (uid,) = uids(1)
    with open_journal(pg_url) as j:
        j.add_studies([StudyRecord(uid)])
        assert [s.study_uid for s in j.claim("w1")] == [uid]
    with open_journal(pg_url, lease=3600) as patient:
        assert patient.claim("w2") == []
        # Renewing the lease on a TRANSFERRING study keeps it held.
        patient.update(uid, State.TRANSFERRING)
        assert patient.claim("w2") == []
    with open_journal(pg_url, lease=0.2) as hasty:
        got = poll(lambda: hasty.claim("w3"))
        assert [s.study_uid for s in got] == [uid] and got[0].state is State.TRANSFERRING
    with open_journal(pg_url, lease=3600) as patient:
        assert patient.claim("w4") == []  # w3's claim is fresh: held again


def test_kill_9_of_a_worker_holding_a_claim(pg_url):
    studies = uids(3)
    with open_journal(pg_url) as j:
        j.add_studies(StudyRecord(u) for u in studies)
    worker = start_worker(pg_url, "doomed", "hold")
    try:
        held = worker.stdout.readline().strip()
        assert held == studies[0]
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        stop(worker)
    # The claim was committed before the kill: the study stays held until its lease ends,
    # and the others are untouched.
    with open_journal(pg_url, lease=3600) as j:
        assert j.counts()[State.TRANSFERRING] == 1
        assert [s.study_uid for s in j.claim("alive", limit=10)] == studies[1:]
    # Past the lease, the dead worker's study goes to a live one.
    with open_journal(pg_url, lease=0.2) as j:
        got = poll(lambda: j.claim("rescuer"))
        assert [s.study_uid for s in got] == [held]
        j.update(held, State.VERIFIED, source_count=1, dest_count=1)
        assert j.counts()[State.VERIFIED] == 1 and j.counts()[State.TRANSFERRING] == 2


def test_a_study_left_transferred_by_a_dead_worker_is_claimed_again(pg_url):
    """Sent but not yet counted when its worker died: after the lease it is sent again
    (counting at the destination decides), while it is held within the lease."""
    (uid,) = uids(1)
    with open_journal(pg_url) as j:
        j.add_studies([StudyRecord(uid)])
        assert [s.study_uid for s in j.claim("w1")] == [uid]
        j.update(uid, State.TRANSFERRED)
    with open_journal(pg_url, lease=3600) as patient:
        assert patient.claim("w2") == []  # w1 may still be counting it
    with open_journal(pg_url, lease=0.2) as hasty:
        got = poll(lambda: hasty.claim("w3"))
        assert [s.study_uid for s in got] == [uid] and got[0].state is State.TRANSFERRING
