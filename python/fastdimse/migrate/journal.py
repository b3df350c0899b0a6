"""The migration journal: every study (and series) of a migration, in one state at a time.

``open_journal(spec, migration)`` opens a SQLite journal (a file path) or, for a
``postgresql://`` URL, the PostgreSQL journal of :mod:`fastdimse.migrate.journal_pg`
(imported only then). Both have the interface of :class:`SQLiteJournal`.

Crash safety: the SQLite file is in WAL mode with ``synchronous=FULL`` and every call that
changes it is one committed transaction before it returns, so ``kill -9`` at any moment
loses nothing the engine was told is recorded. Opening a SQLite journal puts the studies a
dead run left ``transferring`` or ``transferred`` (sent, not counted yet) back to
``pending``: they are sent again, and since a study is verified by counting at the
destination (never by adding up earlier attempts), a second sending counts nothing twice.

A journal belongs to one migration: the parameters that identify it (source, destination,
mode, filters) are stored on creation, and opening it for other parameters raises
:class:`JournalMismatch`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .model import SeriesRecord, State, StudyRecord

__all__ = ["JournalMismatch", "JournalError", "SQLiteJournal", "open_journal", "DEFAULT_LEASE",
           "DEFAULT_MAX_ATTEMPTS"]

#: A study claimed longer ago than this (seconds) by a worker that never reported back
#: is claimable again (a dead worker on another host; a SQLite journal resets them at open).
DEFAULT_LEASE = 3600.0
DEFAULT_MAX_ATTEMPTS = 5


try:  # one pair of classes for both journals: the PostgreSQL journal's branch puts them in errors.py
    from ..errors import JournalError, JournalMismatch
except ImportError:  # pragma: no cover - until that branch is merged
    from ..errors import DicomError

    class JournalError(DicomError):  # type: ignore[no-redef]
        """The migration journal cannot be opened or used."""

    class JournalMismatch(JournalError):  # type: ignore[no-redef]
        """The journal was made for another migration (other source, destination, mode or
        filters); ``key`` names the first parameter that differs."""

        def __init__(self, message: str, key: str | None = None):
            super().__init__(message)
            self.key = key


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL DEFAULT '',
    study_date TEXT NOT NULL DEFAULT '',
    expected INTEGER,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    source_count INTEGER,
    dest_count INTEGER,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    worker TEXT,
    claimed_at REAL,
    updated_at REAL
);
CREATE INDEX IF NOT EXISTS studies_state ON studies (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS series (
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    expected INTEGER,
    state TEXT NOT NULL DEFAULT 'pending',
    source_count INTEGER,
    dest_count INTEGER,
    PRIMARY KEY (study_uid, series_uid)
);
CREATE TABLE IF NOT EXISTS windows (key TEXT PRIMARY KEY, matches INTEGER NOT NULL, done_at REAL NOT NULL);
"""

_STUDY_COLUMNS = ("study_uid, patient_id, study_date, expected, state, attempts, reason, source_count, "
                  "dest_count, next_attempt_at")


def _study(row) -> StudyRecord:
    uid, pid, date, expected, state, attempts, reason, src, dst, nxt = row
    return StudyRecord(uid, pid, date, expected, State(state), attempts, reason, src, dst, nxt)


def canonical_migration(migration: dict) -> str:
    """The identity of a migration as stored (stable JSON)."""
    return json.dumps(migration, sort_keys=True, default=str)


class SQLiteJournal:
    """A journal in one SQLite file (WAL, ``synchronous=FULL``), safe to share between the
    threads of one process (one connection behind a lock)."""

    def __init__(self, path: str | os.PathLike, migration: dict, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 lease: float = DEFAULT_LEASE):
        self.path = Path(path)
        self.max_attempts = max_attempts
        self.lease = lease
        self._lock = threading.Lock()
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                       timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise JournalError(f"{self.path}: cannot open the journal: {exc}") from None
        want = canonical_migration(migration)
        mismatch = None
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'migration'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (key, value) VALUES ('migration', ?)", (want,))
                db.execute("INSERT INTO meta (key, value) VALUES ('created_at', ?)", (str(time.time()),))
            elif row[0] != want:
                mismatch = row[0]
            if mismatch is None:
                # A run killed while transferring or before it verified: those studies are
                # sent again (and counted at the destination, so nothing is counted twice).
                db.execute("UPDATE studies SET state = 'pending', worker = NULL, claimed_at = NULL "
                           "WHERE state IN ('transferring', 'transferred')")
        if mismatch is not None:
            self._db.close()
            raise JournalMismatch(*_mismatch_text(self.path, mismatch, migration))

    # --- plumbing --------------------------------------------------------------------------

    class _Tx:
        def __init__(self, journal: "SQLiteJournal"):
            self.j = journal

        def __enter__(self) -> sqlite3.Connection:
            self.j._lock.acquire()
            try:
                self.j._db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.j._lock.release()
                raise
            return self.j._db

        def __exit__(self, exc_type, exc, tb) -> None:
            try:
                self.j._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.j._lock.release()

    def _tx(self) -> "_Tx":
        return self._Tx(self)

    def _read(self, sql: str, args: tuple = ()) -> list:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- the interface ---------------------------------------------------------------------

    def migration(self) -> dict:
        return json.loads(self._read("SELECT value FROM meta WHERE key = 'migration'")[0][0])

    def add_studies(self, studies: Iterable[StudyRecord]) -> int:
        rows = [(s.study_uid, s.patient_id or "", s.study_date or "", s.expected, State(s.state).value)
                for s in studies]
        if not rows:
            return 0
        with self._tx() as db:
            before = db.total_changes
            db.executemany("INSERT INTO studies (study_uid, patient_id, study_date, expected, state) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (study_uid) DO NOTHING", rows)
            return db.total_changes - before

    def set_expected(self, study_uid: str, expected: int | None, series: Iterable[SeriesRecord] = ()) -> None:
        with self._tx() as db:
            db.execute("UPDATE studies SET expected = ?, updated_at = ? WHERE study_uid = ?",
                       (expected, time.time(), study_uid))
            db.executemany(
                "INSERT INTO series (study_uid, series_uid, expected, state) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (study_uid, series_uid) DO UPDATE SET expected = excluded.expected",
                [(study_uid, s.series_uid, s.expected, State(s.state).value) for s in series])

    def window_done(self, key: str, matches: int) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO windows (key, matches, done_at) VALUES (?, ?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET matches = excluded.matches, done_at = excluded.done_at",
                       (key, matches, time.time()))

    def done_windows(self) -> set[str]:
        return {r[0] for r in self._read("SELECT key FROM windows")}

    def inventory_complete(self) -> bool:
        return bool(self._read("SELECT 1 FROM meta WHERE key = 'inventory_complete'"))

    def mark_inventory_complete(self) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO meta (key, value) VALUES ('inventory_complete', ?) "
                       "ON CONFLICT (key) DO NOTHING", (str(time.time()),))

    def claim(self, worker: str, limit: int = 1) -> list[StudyRecord]:
        now = time.time()
        with self._tx() as db:
            rows = db.execute(
                f"SELECT {_STUDY_COLUMNS} FROM studies WHERE state = 'pending' "
                "OR (state = 'failed' AND attempts < ? AND next_attempt_at <= ?) "
                "OR (state IN ('transferring', 'transferred') AND claimed_at < ?) "
                "ORDER BY study_date, study_uid LIMIT ?",
                (self.max_attempts, now, now - self.lease, limit)).fetchall()
            db.executemany("UPDATE studies SET state = 'transferring', worker = ?, claimed_at = ?, updated_at = ? "
                           "WHERE study_uid = ?", [(worker, now, now, r[0]) for r in rows])
        out = []
        for r in rows:
            s = _study(r)
            s.state = State.TRANSFERRING
            out.append(s)
        return out

    def update(self, study_uid: str, state: State, *, reason: str | None = None, source_count: int | None = None,
               dest_count: int | None = None, attempt: bool = False, retry_at: float | None = None) -> None:
        state = State(state)
        sets = ["state = ?", "reason = ?", "updated_at = ?"]
        args: list = [state.value, reason, time.time()]
        if source_count is not None:
            sets.append("source_count = ?")
            args.append(source_count)
        if dest_count is not None:
            sets.append("dest_count = ?")
            args.append(dest_count)
        if attempt:
            sets.append("attempts = attempts + 1")
        if retry_at is not None:
            sets.append("next_attempt_at = ?")
            args.append(retry_at)
        if state is State.TRANSFERRING:  # a worker renewing its claim on a long transfer
            sets.append("claimed_at = ?")
            args.append(time.time())
        elif state is not State.TRANSFERRED:  # still the worker's until verified
            sets.append("worker = NULL, claimed_at = NULL")
        with self._tx() as db:
            cur = db.execute(f"UPDATE studies SET {', '.join(sets)} WHERE study_uid = ?", (*args, study_uid))
            if cur.rowcount == 0:
                raise KeyError(study_uid)
            if state in (State.VERIFIED, State.FAILED, State.PENDING):
                db.execute("UPDATE series SET state = ? WHERE study_uid = ?", (state.value, study_uid))

    def update_series(self, study_uid: str, series: Iterable[SeriesRecord]) -> None:
        """Record the counts and states of a study's series (after verification)."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO series (study_uid, series_uid, expected, state, source_count, dest_count) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (study_uid, series_uid) DO UPDATE SET "
                "state = excluded.state, source_count = excluded.source_count, dest_count = excluded.dest_count",
                [(study_uid, s.series_uid, s.expected, State(s.state).value, s.source_count, s.dest_count)
                 for s in series])

    def counts(self) -> dict[State, int]:
        out = {s: 0 for s in State}
        for state, n in self._read("SELECT state, COUNT(*) FROM studies GROUP BY state"):
            out[State(state)] = n
        return out

    def retry_pending(self) -> float | None:
        """The earliest time a failed study may be retried (None: no retry is waiting)."""
        row = self._read("SELECT MIN(next_attempt_at) FROM studies WHERE state = 'failed' AND attempts < ?",
                         (self.max_attempts,))
        return row[0][0] if row and row[0][0] is not None else None

    def reset_failed(self) -> int:
        """Make every failed study claimable again with a fresh count of attempts."""
        with self._tx() as db:
            return db.execute("UPDATE studies SET attempts = 0, next_attempt_at = 0 WHERE state = 'failed'").rowcount

    def studies(self, state: State | None = None) -> Iterator[StudyRecord]:
        sql = f"SELECT {_STUDY_COLUMNS} FROM studies"
        args: tuple = ()
        if state is not None:
            sql += " WHERE state = ?"
            args = (State(state).value,)
        last = ""
        # In pages, so that a journal of many studies is never read into memory at once.
        while True:
            page = self._read(sql + (" AND" if state is not None else " WHERE") +
                              " study_uid > ? ORDER BY study_uid LIMIT 1000", (*args, last))
            if not page:
                return
            for row in page:
                yield _study(row)
            last = page[-1][0]

    def study(self, study_uid: str) -> StudyRecord | None:
        rows = self._read(f"SELECT {_STUDY_COLUMNS} FROM studies WHERE study_uid = ?", (study_uid,))
        return _study(rows[0]) if rows else None

    def series(self, study_uid: str) -> list[SeriesRecord]:
        rows = self._read("SELECT series_uid, study_uid, expected, state, source_count, dest_count FROM series "
                          "WHERE study_uid = ? ORDER BY series_uid", (study_uid,))
        return [SeriesRecord(a, b, c, State(d), e, f) for a, b, c, d, e, f in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "SQLiteJournal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _mismatch_text(path: Path, stored: str, migration: dict) -> tuple[str, str | None]:
    try:
        old = json.loads(stored)
    except ValueError:
        old = {}
    keys = [k for k in sorted(set(old) | set(migration)) if old.get(k) != migration.get(k)]
    diffs = [f"{k} {old.get(k)!r} (now {migration.get(k)!r})" for k in keys]
    return (f"journal {path} belongs to another migration: {', '.join(diffs) or 'other parameters'}; "
            "give another --journal for this one", keys[0] if keys else None)


def open_journal(spec: str | os.PathLike, migration: dict, **options):
    """The journal ``spec`` names: a ``postgresql://`` URL (the PostgreSQL journal) or a
    file path (SQLite). ``options`` (``max_attempts``, ``lease``) go to its constructor."""
    text = os.fspath(spec)
    if isinstance(text, str) and text.startswith(("postgresql://", "postgres://")):
        from .journal_pg import PostgresJournal  # psycopg only when asked for

        return PostgresJournal(text, migration, **options)
    return SQLiteJournal(text, migration, **options)
