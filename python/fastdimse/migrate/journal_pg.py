"""The migration journal in PostgreSQL: one migration shared by workers on several hosts.

Theory of operation
-------------------
:class:`PostgresJournal` is the journal interface of ``notes/migrate_spec.md`` (the one
:class:`~fastdimse.migrate.journal.SQLiteJournal` has) over psycopg 3, for a migration that
several hosts run together against one database. The tables are :data:`SCHEMA`, written in
the SQL both engines accept:

* ``meta``: ``schema`` (the version, ``1``), ``migration`` (the parameters that identify
  the migration, as canonical JSON: sorted keys, no spaces) and ``inventory_complete``.
* ``studies``: one row per study, the fields of
  :class:`~fastdimse.migrate.model.StudyRecord` plus ``worker`` and ``claimed_at`` (the
  worker that holds it and when it claimed it, epoch seconds).
* ``series``: the per-series counts of a study (``set_expected``).
* ``windows``: the inventory's StudyDate windows that are fully enumerated.

Opening creates the tables if missing and records the migration, under a
transaction-scoped advisory lock, so hosts that start together neither race on
``CREATE TABLE`` nor record two different migrations: whoever comes second compares
and raises :class:`~fastdimse.errors.JournalMismatch` when its parameters differ. One
database (or one schema, chosen with ``?options=-csearch_path=...`` in the URL) holds
one migration.

Every method is one transaction on a connection of a small pool (``psycopg_pool``),
committed before it returns, so a worker killed at any moment leaves either the state
before a call or the state after it. The methods are safe to call from several
threads.

**Claims.** :meth:`claim` picks the claimable studies with ``SELECT ... FOR UPDATE SKIP
LOCKED`` and sets them TRANSFERRING for the worker in the same statement: two workers
claiming at the same moment skip each other's rows and never get the same study.
Claimable are PENDING studies and FAILED ones with ``attempts < max_attempts``, both
only once ``next_attempt_at <= time.time()`` of the claimer (the clock that set it), and
TRANSFERRING studies whose claim is older than ``lease`` seconds, measured on the
database server's clock (one clock for all hosts): the worker that held them is taken
for dead. A worker renews its lease on a long transfer with
``update(uid, State.TRANSFERRING)``. Unlike the SQLite journal, opening does not put
TRANSFERRING studies back to PENDING: other hosts may be working on them; the lease
does that for the dead ones.

``update`` leaves a field unchanged when its argument is None; ``attempt=True`` adds
one to ``attempts``. An unknown study UID raises ``KeyError``.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

from ..errors import JournalError, JournalMismatch
from .model import SeriesRecord, State, StudyRecord

__all__ = ["PostgresJournal", "SCHEMA", "SCHEMA_VERSION", "canonical_migration"]

SCHEMA_VERSION = "1"

#: The journal's tables, identical in SQLite and PostgreSQL (state is the State value).
SCHEMA: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS studies ("
    " study_uid TEXT PRIMARY KEY,"
    " patient_id TEXT NOT NULL DEFAULT '',"
    " study_date TEXT NOT NULL DEFAULT '',"
    " expected INTEGER,"
    " state TEXT NOT NULL DEFAULT 'pending',"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " reason TEXT,"
    " source_count INTEGER,"
    " dest_count INTEGER,"
    " next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT 0,"
    " worker TEXT,"
    " claimed_at DOUBLE PRECISION)",
    # Only the rows a claim may pick: claims stay cheap when most studies are done.
    "CREATE INDEX IF NOT EXISTS studies_todo ON studies (study_uid)"
    " WHERE state IN ('pending', 'failed', 'transferring', 'transferred')",
    "CREATE TABLE IF NOT EXISTS series ("
    " study_uid TEXT NOT NULL,"
    " series_uid TEXT NOT NULL,"
    " expected INTEGER,"
    " state TEXT NOT NULL DEFAULT 'pending',"
    " source_count INTEGER,"
    " dest_count INTEGER,"
    " PRIMARY KEY (study_uid, series_uid))",
    "CREATE TABLE IF NOT EXISTS windows (key TEXT PRIMARY KEY, matches INTEGER NOT NULL)",
)

#: Key of the advisory lock held while creating the tables ("fdmj").
ADVISORY_LOCK_KEY = 0x6664_6D6A

_STUDY_COLUMNS = ("study_uid, patient_id, study_date, expected, state, attempts, reason, "
                  "source_count, dest_count, next_attempt_at")
_NOW = "extract(epoch from clock_timestamp())"
_PAGE = 1000


def canonical_migration(migration: dict) -> str:
    """The migration parameters as the journal stores and compares them."""
    return json.dumps(migration, sort_keys=True, separators=(",", ":"), default=str)


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _study(row: dict[str, Any]) -> StudyRecord:
    return StudyRecord(
        study_uid=row["study_uid"], patient_id=row["patient_id"], study_date=row["study_date"],
        expected=row["expected"], state=State(row["state"]), attempts=row["attempts"],
        reason=row["reason"], source_count=row["source_count"], dest_count=row["dest_count"],
        next_attempt_at=row["next_attempt_at"])


class PostgresJournal:
    """The journal of one migration in a PostgreSQL database (``postgresql://...``).

    ``migration``: the parameters that identify the migration; a database that holds
    another migration raises :class:`~fastdimse.errors.JournalMismatch`.
    ``max_attempts``: a FAILED study is claimed again until it has this many attempts.
    ``lease``: seconds after which a TRANSFERRING study's claim is taken for a dead
    worker's and the study is claimable again. ``pool_size``: connections at most.
    """

    def __init__(self, url: str, migration: dict, *, max_attempts: int = 5,
                 lease: float = 900.0, pool_size: int = 4, timeout: float = 30.0):
        self.url = url
        self.max_attempts = max_attempts
        self.lease = lease
        self._since_analyze = self._analyzed_rows = 0
        # One direct connection first: an unreachable server is one clear error now (the
        # pool would retry until its timeout), and the tables are set up on it.
        try:
            conn = psycopg.connect(url, connect_timeout=max(1, int(timeout)),
                                   row_factory=dict_row)
        except psycopg.Error as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise JournalError(f"cannot open the journal {_safe_url(url)}: {reason}") from None
        with conn:
            self._setup(conn, canonical_migration(migration))
        self._pool: ConnectionPool[psycopg.Connection[DictRow]] = ConnectionPool(
            url, min_size=1, max_size=max(1, pool_size), timeout=timeout, open=False,
            connection_class=psycopg.Connection[DictRow], kwargs={"row_factory": dict_row},
            check=ConnectionPool.check_connection, name="fastdimse-journal")
        self._pool.open(wait=True, timeout=timeout)

    # --- opening ---------------------------------------------------------------------

    def _setup(self, conn: psycopg.Connection[DictRow], wanted: str) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
            for statement in SCHEMA:
                conn.execute(statement)
            rows = {r["key"]: r["value"] for r in conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('schema', 'migration')")}
            if not rows:
                conn.execute("INSERT INTO meta (key, value) VALUES ('schema', %s), "
                             "('migration', %s)", (SCHEMA_VERSION, wanted))
                return
            if rows.get("schema") != SCHEMA_VERSION or "migration" not in rows:
                raise JournalMismatch(
                    f"{_safe_url(self.url)} is not a fastdimse migration journal of schema "
                    f"{SCHEMA_VERSION} (schema {rows.get('schema')!r})")
            if rows["migration"] != wanted:
                raise self._mismatch(json.loads(rows["migration"]), json.loads(wanted))

    def _mismatch(self, old: Any, new: Any) -> JournalMismatch:
        if isinstance(old, dict) and isinstance(new, dict):
            for key in sorted(set(old) | set(new)):
                if old.get(key) != new.get(key):
                    return JournalMismatch(
                        f"journal {_safe_url(self.url)} belongs to another migration: "
                        f"{key} is {old.get(key)!r} there, {new.get(key)!r} here; use "
                        "another journal or the same parameters", key=key)
        return JournalMismatch(f"journal {_safe_url(self.url)} belongs to another migration")

    # --- inventory -------------------------------------------------------------------

    def add_studies(self, studies: Iterable[StudyRecord]) -> int:
        """Insert studies; a study already there is left as it is. Returns the new rows."""
        added = 0
        batch: list[StudyRecord] = []
        for record in studies:
            batch.append(record)
            if len(batch) >= _PAGE:
                added += self._insert(batch)
                batch = []
        if batch:
            added += self._insert(batch)
        self._since_analyze += added
        if self._since_analyze >= max(500, self._analyzed_rows // 5):
            self._analyze()
        return added

    def _analyze(self) -> None:
        """Fresh planner statistics. Right after a bulk insert PostgreSQL still takes the
        table for nearly empty (autovacuum comes within a minute) and plans a claim as a
        scan and sort of every pending row (~60 ms at 200,000 studies, not 0.1 ms)."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("ANALYZE studies")
            row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'studies'::regclass"
                               ).fetchone()
        self._analyzed_rows = max(0, int(row["reltuples"])) if row else 0
        self._since_analyze = 0

    def _insert(self, batch: list[StudyRecord]) -> int:
        cols = [[getattr(r, f) for r in batch] for f in
                ("study_uid", "patient_id", "study_date", "expected", "attempts", "reason",
                 "source_count", "dest_count", "next_attempt_at")]
        cols.insert(4, [State(r.state).value for r in batch])
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                f"INSERT INTO studies ({_STUDY_COLUMNS}) SELECT * FROM unnest("
                "%s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::int[], "
                "%s::text[], %s::int[], %s::int[], %s::float8[]) "
                "ON CONFLICT (study_uid) DO NOTHING", cols)
            return cur.rowcount

    def set_expected(self, study_uid: str, expected: int | None,
                     series: Iterable[SeriesRecord] = ()) -> None:
        """The instance count the source gives for a study, and for its series."""
        series = list(series)
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.execute("UPDATE studies SET expected = %s WHERE study_uid = %s",
                               (expected, study_uid))
            if cur.rowcount == 0:
                raise KeyError(study_uid)
            if series:
                with conn.cursor() as c:
                    c.executemany(
                        "INSERT INTO series (study_uid, series_uid, expected, state, "
                        "source_count, dest_count) VALUES (%s, %s, %s, %s, %s, %s) "
                        "ON CONFLICT (study_uid, series_uid) DO UPDATE SET "
                        "expected = EXCLUDED.expected",
                        [(study_uid, s.series_uid, s.expected, State(s.state).value,
                          s.source_count, s.dest_count) for s in series])

    def window_done(self, key: str, matches: int) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO windows (key, matches) VALUES (%s, %s) ON CONFLICT (key) "
                         "DO UPDATE SET matches = EXCLUDED.matches", (key, matches))

    def done_windows(self) -> set[str]:
        with self._pool.connection() as conn:
            return {r["key"] for r in conn.execute("SELECT key FROM windows")}

    def inventory_complete(self) -> bool:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'inventory_complete'").fetchone()
            return row is not None and row["value"] == "1"

    def mark_inventory_complete(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("INSERT INTO meta (key, value) VALUES ('inventory_complete', '1') "
                         "ON CONFLICT (key) DO UPDATE SET value = '1'")
        self._analyze()

    # --- transfer --------------------------------------------------------------------

    def claim(self, worker: str, limit: int = 1) -> list[StudyRecord]:
        """Up to ``limit`` claimable studies, now TRANSFERRING for ``worker``."""
        if limit < 1:
            return []
        with self._pool.connection() as conn, conn.transaction():
            rows = conn.execute(
                f"WITH picked AS (SELECT study_uid FROM studies WHERE "
                f"state IN ('pending', 'failed', 'transferring', 'transferred') AND ("
                f" (state = 'pending' AND next_attempt_at <= %(now)s)"
                f" OR (state = 'failed' AND attempts < %(max)s AND next_attempt_at <= %(now)s)"
                # A worker gone while its study was transferring, or sent but not yet
                # counted (transferred): once its lease runs out the study is sent again
                # (counting at the destination keeps a second copy from being counted twice).
                f" OR (state IN ('transferring', 'transferred') AND claimed_at < {_NOW} - %(lease)s))"
                f" ORDER BY study_uid LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                f"UPDATE studies AS s SET state = 'transferring', worker = %(worker)s, "
                f"claimed_at = {_NOW} FROM picked WHERE s.study_uid = picked.study_uid "
                f"RETURNING s.*",
                {"now": time.time(), "max": self.max_attempts, "lease": float(self.lease),
                 "limit": limit, "worker": worker}).fetchall()
        return sorted((_study(r) for r in rows), key=lambda s: s.study_uid)

    def update(self, study_uid: str, state: State, *, reason: str | None = None,
               source_count: int | None = None, dest_count: int | None = None,
               attempt: bool = False, retry_at: float | None = None) -> None:
        """Set a study's state (and what is given) in one committed transaction.
        TRANSFERRING renews the claim's lease."""
        state = State(state)
        with self._pool.connection() as conn, conn.transaction():
            cur = conn.execute(
                "UPDATE studies SET state = %(state)s, reason = COALESCE(%(reason)s, reason), "
                "source_count = COALESCE(%(source)s, source_count), "
                "dest_count = COALESCE(%(dest)s, dest_count), "
                "attempts = attempts + %(attempt)s, "
                "next_attempt_at = COALESCE(%(retry)s, next_attempt_at), "
                f"claimed_at = CASE WHEN %(state)s IN ('transferring', 'transferred') THEN {_NOW} "
                "ELSE claimed_at END WHERE study_uid = %(uid)s",
                {"state": state.value, "reason": reason, "source": source_count,
                 "dest": dest_count, "attempt": 1 if attempt else 0,
                 "retry": None if retry_at is None else float(retry_at), "uid": study_uid})
            if cur.rowcount == 0:
                raise KeyError(study_uid)

    # --- reading ---------------------------------------------------------------------

    def counts(self) -> dict[State, int]:
        out = {s: 0 for s in State}
        with self._pool.connection() as conn:
            for row in conn.execute("SELECT state, count(*) AS n FROM studies GROUP BY state"):
                out[State(row["state"])] = row["n"]
        return out

    def studies(self, state: State | None = None) -> Iterator[StudyRecord]:
        """Every study (of ``state``), by UID, read a page at a time: no connection or
        transaction is held between pages, so the caller may update as it goes."""
        last = ""
        where = "" if state is None else "AND state = %(state)s "
        while True:
            with self._pool.connection() as conn:
                rows = conn.execute(
                    f"SELECT {_STUDY_COLUMNS} FROM studies WHERE study_uid > %(last)s {where}"
                    "ORDER BY study_uid LIMIT %(page)s",
                    {"last": last, "state": None if state is None else State(state).value,
                     "page": _PAGE}).fetchall()
            yield from (_study(r) for r in rows)
            if len(rows) < _PAGE:
                return
            last = rows[-1]["study_uid"]

    def series(self, study_uid: str) -> list[SeriesRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT series_uid, study_uid, expected, state, source_count, dest_count "
                "FROM series WHERE study_uid = %s ORDER BY series_uid", (study_uid,)).fetchall()
        return [SeriesRecord(series_uid=r["series_uid"], study_uid=r["study_uid"],
                             expected=r["expected"], state=State(r["state"]),
                             source_count=r["source_count"], dest_count=r["dest_count"])
                for r in rows]

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
