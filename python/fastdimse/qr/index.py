"""The default Q/R back end: an SQLite index of a storage folder.

Theory of operation
-------------------
One SQLite file (``fastdimse-index.sqlite`` by default) in the storage folder
holds four tables, one per level of the Q/R information model: ``patient`` ->
``study`` -> ``series`` -> ``image``, each row pointing to its parent. Every
attribute the index knows is described once in :data:`ATTRIBUTES` (keyword,
level, VR, column); the schema, the inserts, the WHERE clauses and the response
identifiers are all generated from that table, so adding a key is one line.

* Each attribute has a *raw* column (the value as stored, returned in responses)
  and, for PN / DA / TM / DT, a ``_m`` column normalised for matching (PN
  lower-cased, dates and times in fixed-width form so that ``BETWEEN`` and
  ``=`` on strings are correct). IS values are stored as integers. Empty values
  are stored as NULL.
* Derived attributes (ModalitiesInStudy, SOPClassesInStudy, the Number of ...
  Related ... counts) are not stored: they are computed by correlated sub-queries
  when a request asks for or matches on them, so they are always right, also after
  ``remove``. Every sub-query is an index search on the parent key (covering
  indexes ``series(study_pk)``, ``image(series_pk)``, ``image(series_pk,
  sop_class_uid)``), so a keyed query never turns into a scan
  (``explain_find`` gives the SQL for EXPLAIN QUERY PLAN; tests check it).
  RetrieveAETitle (the serving SCP's AE title, :meth:`SQLiteIndex.set_retrieve_ae_title`)
  and InstanceAvailability (``ONLINE``) are constants, returned when asked at any
  level. A response whose values are not all ASCII and that has no stored
  character set says ISO_IR 192.
* A query at level L joins the tables from the top down to L, applies every key
  of L and of the levels above it (unique keys of higher levels restrict the
  query as the hierarchical model wants; other keys of higher levels are matched
  too, a superset that a hierarchical SCU never exercises), ignores keys of
  lower levels (returned empty), and streams rows from a cursor.
* Patients are keyed by PatientID alone (an empty PatientID is a patient of its
  own). A study stays with the patient under which it was first indexed; a
  series stays in its first study (a later instance that disagrees is indexed
  there and a warning is logged). Attributes: the last non-empty value wins.

Threads and connections: one writer connection, used under a lock (SQLite allows
one writer; the lock avoids busy retries between our own threads; SQLite's busy
timeout of 30 s covers other processes), and a bounded pool of reader connections
(``pool_size``, 16 by default) shared by every thread: a ``find``/``locate``
generator borrows one when its first match is asked for and gives it back in
``finally`` (exhausted, closed on C-CANCEL, or collected), so the open files of
the index (two per connection: the database and its WAL) stay bounded however
many associations come and go. A borrower waits up to ``pool_timeout`` seconds
for a free connection, then gets :class:`UnableToProcess` (0xC000). In WAL mode
readers do not wait for the writer. A ``find`` generator keeps a read transaction
(its snapshot) open until it ends.

Ingest (:meth:`SQLiteIndex.add_instances`): one transaction per batch; the
patient, study and series values of an instance are normalised once per distinct
set (the instances of a series share them); within a batch the pks of known
studies and series are cached, an update identical to the one last applied to the
same row is skipped, and the batch's already-indexed instances are read with a
few ``IN (...)`` queries, so a new instance costs one INSERT.

Schema versions: the ``meta`` table's ``schema`` row; :func:`_migrate` creates a
new index at the current version or upgrades an older one step by step
(``_MIGRATIONS``) in one transaction when the index is opened; a newer version is
refused.

SQLite-specific (for the PostgreSQL back end to come): ``GLOB`` for wild cards
(``LIKE``/``SIMILAR TO`` there), ``GROUP_CONCAT(DISTINCT ...)`` (``string_agg``),
``INSERT`` + ``lastrowid`` (``RETURNING pk``), ``BEGIN IMMEDIATE``, the PRAGMAs
(WAL, synchronous, foreign_keys), ``sqlite_master``, and the ``?`` parameter style
(psycopg uses ``%s``). The statements themselves are generated from
:data:`ATTRIBUTES` and use only joins, correlated sub-queries and ``IN``.

``synchronous=NORMAL`` is used with WAL: a power cut can lose the last few
committed index entries (the database stays consistent); re-import the folder
to recover them.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import pydicom
from pydicom.dataset import Dataset
from pydicom.datadict import tag_for_keyword

from . import matching as m
from .backend import IdentifierError, InstanceError, InstanceRef, UnableToProcess

__all__ = ["SQLiteIndex", "ImportResult", "ATTRIBUTES", "DEFAULT_DB_NAME"]

log = logging.getLogger("fastdimse.qr")

DEFAULT_DB_NAME = "fastdimse-index.sqlite"
#: Connections in the readers' pool of one index (the writer is one more).
DEFAULT_POOL_SIZE = 16

from .attributes import (  # noqa: F401  (ATTRIBUTES, _TABLES, _STORED, _TAG_OF: used by others too)
    _BY_KEYWORD, _LEVEL_KEYWORDS, _LEVEL_RANK, _READ_KEYWORDS, _RETRIEVE_AE, _STORED, _TABLES,
    _TAG_OF, ATTRIBUTES, Attr, _as_text, _getter, _row_values)
from .pool import _close_quietly, _ConnectionPool
from .schema import _migrate



@dataclass
class ImportResult:
    """What :meth:`SQLiteIndex.import_folder` did."""

    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


# ---------------------------------------------------------------------------


class _Batch:
    """What one write transaction of :meth:`SQLiteIndex.add_instances` has learnt:
    the pks of the studies and series it touched, the instances it knows, and the
    last values it applied to each row (so that the instances of one series update
    their patient, study and series rows once, not once each)."""

    __slots__ = ("studies", "series", "images", "applied")

    def __init__(self) -> None:
        self.studies: dict = {}   # StudyInstanceUID -> (study pk, patient pk, patient key)
        self.series: dict = {}    # SeriesInstanceUID -> (series pk, study pk)
        self.images: dict | None = None  # SOPInstanceUID -> (pk, series pk), when prefetched
        self.applied: dict = {}   # (table, pk) -> (values, charset) last applied

    def forget_pruned(self) -> None:
        """Rows were deleted (an instance moved to another series): the cached
        study and series pks may be stale."""
        self.studies.clear()
        self.series.clear()
        self.applied.clear()


class SQLiteIndex:
    """The Q/R index of a storage folder; implements :class:`~fastdimse.qr.QRBackend`.

    ``SQLiteIndex(storage_dir)`` opens (creating if needed) ``storage_dir /
    fastdimse-index.sqlite`` in WAL mode. PN keys match case-insensitively. The
    index only records paths: it never moves or deletes files.
    """

    #: PN keys match case-insensitively (PS3.4 C.2.2.2.1 lets the SCP choose);
    #: the ``_m`` columns are stored lower-cased accordingly.
    case_insensitive_pn = True

    #: SQL of one C-FIND condition (a dialect hook: PostgreSQL has LIKE, not GLOB).
    _condition_sql = staticmethod(m.condition_sql)

    def __init__(self, storage_dir: str | os.PathLike, db_name: str = DEFAULT_DB_NAME, *,
                 pool_size: int = DEFAULT_POOL_SIZE, pool_timeout: float = 30.0,
                 retrieve_ae_title: str | None = None, synchronous: str = "NORMAL"):
        if str(synchronous).upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL or EXTRA, not {synchronous!r}")
        #: SQLite's synchronous mode: NORMAL (WAL: a crash of the process loses no
        #: commit, a power cut may lose the last ones) or FULL (every commit synced:
        #: power-loss safe); a DICOMSCP with fsync=True asks for FULL.
        self.synchronous = str(synchronous).upper()
        self.storage_dir = os.path.abspath(os.fspath(storage_dir))
        os.makedirs(self.storage_dir, exist_ok=True)
        self.db_path = os.path.join(self.storage_dir, db_name)
        #: RetrieveAETitle (0008,0054) in C-FIND responses that ask for it; the
        #: DICOMSCP serving this index sets its own AE title here.
        self.retrieve_ae_title = retrieve_ae_title
        self._write_lock = threading.Lock()
        self._closed = False
        self._level_cache: dict = {}
        # One writer connection (under _write_lock) and a bounded pool of readers
        # shared by every thread: connections are opened with check_same_thread
        # off and used by one thread at a time.
        self._writer = self._connect()
        self._pool = _ConnectionPool(self._connect, pool_size, pool_timeout, self.db_path)
        try:
            with self._write_lock:
                mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("SQLite index %s: WAL mode unavailable (journal_mode=%s)",
                                self.db_path, mode)
                _migrate(self._writer, self.db_path)
        except BaseException:
            self._writer.close()
            raise

    def set_retrieve_ae_title(self, ae_title: str | None) -> None:
        """The AE title C-MOVE / C-GET requests for these instances go to, returned as
        RetrieveAETitle (0008,0054) when a C-FIND asks for it (the SCP calls this)."""
        self.retrieve_ae_title = ae_title.strip() if ae_title else None

    # -- connections ---------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise UnableToProcess(f"cannot open the index {self.db_path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            conn.close()
            raise UnableToProcess(f"cannot open the index {self.db_path}: {exc}") from exc
        return conn

    def _check_open(self) -> None:
        if self._closed:
            raise UnableToProcess(f"the index {self.db_path} is closed")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection for reading, returned to the pool afterwards."""
        self._check_open()
        with self._pool.borrow() as conn:
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writer connection, serialised with the
        other writers of this index."""
        with self._write_lock:
            self._check_open()
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @property
    def open_connections(self) -> int:
        """SQLite connections open now: the writer and the pooled readers."""
        return self._pool.open_connections + (0 if self._closed else 1)

    def close(self) -> None:
        """Close the index: the writer and the idle pooled connections now, a
        connection lent to a running query when that query ends (a generator
        closed or exhausted). Further calls raise :class:`UnableToProcess`."""
        self._closed = True
        self._pool.close()
        with self._write_lock:
            _close_quietly(self._writer)

    def __enter__(self) -> "SQLiteIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def journal_mode(self) -> str:
        with self._read() as conn:
            return str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    # -- adding --------------------------------------------------------------

    def add(self, path: str | os.PathLike, dataset: Any = None,
            transfer_syntax: str | None = None) -> None:
        """:class:`QRBackend` entry point: :meth:`add_instance`, or :meth:`add_file`
        when no dataset is given."""
        if dataset is None:
            self.add_file(path)
        else:
            self.add_instance(path, dataset, transfer_syntax)

    def add_file(self, path: str | os.PathLike) -> None:
        """Read the header of a Part-10 file (no pixel data) and index it.
        Raises InvalidDicomError for a non-DICOM file, InstanceError if it lacks
        a required attribute."""
        ds = self._read_header(path)
        self.add_instance(path, ds)

    def add_instance(self, path: str | os.PathLike, ds: Any,
                     transfer_syntax: str | None = None) -> None:
        """Index one stored instance.

        ``ds`` is a pydicom Dataset (or a dict keyword -> value) holding at least
        SOPInstanceUID, SOPClassUID, StudyInstanceUID and SeriesInstanceUID, and
        whatever other attributes of :data:`ATTRIBUTES` are known. The transfer
        syntax is ``transfer_syntax``, else ``ds.file_meta.TransferSyntaxUID``
        (or a ``TransferSyntaxUID`` entry of a dict). Re-adding an instance
        updates its entry. Raises :class:`InstanceError`.
        """
        item = self._extract(path, ds, transfer_syntax)
        with self._write() as conn:
            self._insert(conn, item)

    def add_instances(self, items: Iterable[tuple[str | os.PathLike, Any, str | None]]) -> list[tuple[str, str]]:
        """Index many stored instances in one transaction: ``items`` are
        (path, dataset or keyword dict, transfer syntax). Returns the (path, reason) of
        those that could not be indexed; the others are indexed."""
        good, bad = [], []
        for path, ds, ts in items:
            try:
                good.append(self._extract(path, ds, ts))
            except InstanceError as e:
                bad.append((os.fspath(path), str(e)))
        if good:
            self._insert_many(good)
        return bad

    def import_folder(self, folder: str | os.PathLike, *, recursive: bool = True,
                      batch_size: int = 500) -> ImportResult:
        """Index every DICOM file under ``folder``. Files that are not DICOM or
        lack the required attributes are skipped with a logged warning and
        listed in the result. The index's own SQLite files are ignored."""
        result = ImportResult()
        batch: list[dict] = []
        own = {self.db_path, self.db_path + "-wal", self.db_path + "-shm",
               self.db_path + "-journal"}
        for path in self._walk(os.fspath(folder), recursive):
            if os.path.abspath(path) in own:
                continue
            try:
                ds = self._read_header(path)
                batch.append(self._extract(path, ds, None))
            except Exception as exc:  # one bad file must not stop an import
                log.warning("not indexed: %s: %s", path, exc)
                result.skipped.append((path, str(exc)))
                continue
            if len(batch) >= batch_size:
                result.added += self._insert_many(batch)
                batch = []
        if batch:
            result.added += self._insert_many(batch)
        return result

    def reconcile(self, folder: str | os.PathLike | None = None, *,
                  batch_size: int = 500) -> ImportResult:
        """Index the files under ``folder`` (default: the storage folder) that are there
        but not in the index: those of an earlier run that ended before their index
        entries were committed (a crash, a kill), and files copied in by hand.

        Only folders changed since the last completed reconciliation are looked at file
        by file: a file cannot arrive in a folder without changing that folder's ctime
        (which, unlike the mtime, cannot be set back). The first reconciliation of an
        index looks at every folder. Hidden files (the SCP's temporary ``.fastdimse-*``
        files among them) and the index's own files are ignored. One index query per
        folder; files are read and indexed in batches as they are found.
        """
        result = ImportResult()
        if folder is None and self.storage_dir is None:
            return result
        root = os.path.abspath(os.fspath(folder) if folder is not None else self.storage_dir)
        started = time.time()
        key = self._reconcile_key(root)
        last = self._get_meta(key)
        since = float(last) - 2.0 if last else None  # slack for clock granularity
        own = {self.db_path + suffix for suffix in ("", "-wal", "-shm", "-journal")}

        def unindexed() -> Iterator[str]:
            for _folder, files in _changed_folders(root, since):
                files = [p for p in files if p not in own]
                if files:
                    known = self._known_paths(files)
                    yield from (p for p in files if p not in known)

        def extracted(paths: Iterable[str]) -> Iterator[dict]:
            for path in paths:
                try:
                    yield self._extract(path, self._read_header(path), None)
                except Exception as exc:  # one bad file must not stop the others
                    log.warning("not indexed: %s: %s", path, exc)
                    result.skipped.append((path, str(exc)))

        found = extracted(unindexed())
        while chunk := list(itertools.islice(found, batch_size)):
            result.added += self._insert_many(chunk)
        self._set_meta(key, repr(started))
        if result.added:
            log.info("reconciled %s: %d instance(s) indexed that were not", root, result.added)
        return result

    # Hooks of reconcile() (PostgresIndex has its own: rows per location).

    def _reconcile_key(self, root: str) -> str:
        return "reconciled:" + root

    def _get_meta(self, key: str) -> str | None:
        with self._read() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _known_paths(self, paths: list[str]) -> set[str]:
        """Which of ``paths`` the index lists."""
        known: set[str] = set()
        with self._read() as conn:
            for i in range(0, len(paths), 500):
                part = paths[i:i + 500]
                known.update(p for (p,) in conn.execute(
                    f"SELECT path FROM image WHERE path IN ({', '.join('?' * len(part))})", part))
        return known

    def remove(self, sop_instance_uid: str) -> bool:
        """Remove one instance from the index (not the file), and its series, study
        and patient when they become empty. Returns whether it was indexed."""
        uid = str(sop_instance_uid).strip("\x00 ")
        with self._write() as conn:
            row = conn.execute("SELECT pk, series_pk FROM image WHERE sop_instance_uid = ?",
                               (uid,)).fetchone()
            if row is not None:
                conn.execute("DELETE FROM image WHERE pk = ?", (row[0],))
                self._prune(conn, row[1])
        return row is not None

    # -- adding, internals ---------------------------------------------------

    @staticmethod
    def _walk(folder: str, recursive: bool) -> Iterator[str]:
        stack = [folder]
        while stack:
            current = stack.pop()
            try:
                entries = sorted(os.scandir(current), key=lambda e: e.name)
            except OSError as exc:
                log.warning("cannot list %s: %s", current, exc)
                continue
            subdirs = []
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        subdirs.append(entry.path)
                elif entry.is_file():
                    yield entry.path
            stack.extend(reversed(subdirs))

    @staticmethod
    def _read_header(path: str | os.PathLike) -> Dataset:
        return pydicom.dcmread(os.fspath(path), stop_before_pixels=True,
                               specific_tags=_READ_KEYWORDS + ["SpecificCharacterSet"])

    def _extract(self, path: str | os.PathLike, ds: Any, transfer_syntax: str | None) -> dict:
        get = _getter(ds)
        rows = {}
        cache = self._level_cache
        for lv in m.LEVELS:
            raw = tuple(get(k) for k in _LEVEL_KEYWORDS[lv])
            if lv == m.IMAGE:  # different for every instance (and completed below)
                rows[lv] = _row_values(get, lv, raw)
                continue
            # The instances of a series share their patient, study and series values:
            # normalise each distinct set once. The rows are never modified.
            key = (lv, raw)
            try:
                row = cache.get(key)
            except TypeError:  # an unhashable value (a list): no caching
                rows[lv] = _row_values(get, lv, raw)
                continue
            if row is None:
                if len(cache) >= 4096:
                    cache.clear()
                row = cache[key] = _row_values(get, lv, raw)
            rows[lv] = row
        for lv, col in ((m.STUDY, "study_instance_uid"), (m.SERIES, "series_instance_uid"),
                        (m.IMAGE, "sop_instance_uid"), (m.IMAGE, "sop_class_uid")):
            if not rows[lv].get(col):
                raise InstanceError(f"{os.fspath(path)}: missing {col} (cannot be indexed)")
        ts = transfer_syntax
        if not ts:
            meta = getattr(ds, "file_meta", None) if isinstance(ds, Dataset) else None
            ts = meta.get("TransferSyntaxUID", None) if meta is not None else None
            if ts is None and isinstance(ds, Mapping):
                ts = ds.get("TransferSyntaxUID")
        rows[m.IMAGE]["transfer_syntax"] = _as_text(ts)
        rows[m.IMAGE]["path"] = os.path.abspath(os.fspath(path))
        charset = _as_text(get("SpecificCharacterSet"))
        return {"rows": rows, "charset": charset,
                "patient_key": rows[m.PATIENT]["patient_id"] or ""}

    def _insert_many(self, items: list[dict]) -> int:
        with self._write() as conn:
            batch = _Batch()
            batch.images = self._existing_images(conn, items)
            for item in items:
                self._insert(conn, item, batch)
        return len(items)

    @staticmethod
    def _existing_images(conn: sqlite3.Connection, items: list[dict]) -> dict:
        """SOP Instance UID -> (pk, series_pk) of the items' instances already indexed,
        read in a few IN (...) queries instead of one SELECT per instance."""
        uids = list({item["rows"][m.IMAGE]["sop_instance_uid"] for item in items})
        found: dict = {}
        for i in range(0, len(uids), 500):  # under SQLite's bound-parameter limit
            chunk = uids[i:i + 500]
            found.update((uid, (pk, series_pk)) for uid, pk, series_pk in conn.execute(
                "SELECT sop_instance_uid, pk, series_pk FROM image WHERE sop_instance_uid IN "
                f"({', '.join('?' * len(chunk))})", chunk))
        return found

    @staticmethod
    def _update(conn: sqlite3.Connection, table: str, pk: int, values: dict, charset,
                batch: "_Batch | None" = None) -> None:
        # Last non-empty value wins. Values are kept decoded (str), so any character
        # set that covers them all will do for a response: when an update brings a
        # different one, the row's becomes ISO_IR 192 (UTF-8), which covers anything.
        # The update is idempotent: the same values as the last ones applied to this
        # row in the batch change nothing, so they are not sent again.
        if batch is not None:
            key = (table, pk)
            if batch.applied.get(key) == (values, charset):
                return
            batch.applied[key] = (values, charset)
        sets = [f"{c} = COALESCE(?, {c})" for c in values]
        sets.append("charset = CASE WHEN ? IS NULL THEN charset WHEN charset IS NULL "
                    "OR charset = ? THEN ? ELSE 'ISO_IR 192' END")
        conn.execute(f"UPDATE {table} SET {', '.join(sets)} WHERE pk = ?",
                     [*values.values(), charset, charset, charset, pk])

    @staticmethod
    def _insert_row(conn: sqlite3.Connection, table: str, values: dict) -> int:
        cols = list(values)
        cur = conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES "
                           f"({', '.join('?' * len(cols))})", list(values.values()))
        return int(cur.lastrowid)

    def _insert(self, conn: sqlite3.Connection, item: dict, batch: "_Batch | None" = None) -> None:
        if batch is None:
            batch = _Batch()
        rows, charset, patient_key = item["rows"], item["charset"], item["patient_key"]
        study_uid = rows[m.STUDY]["study_instance_uid"]
        series_uid = rows[m.SERIES]["series_instance_uid"]
        sop_uid = rows[m.IMAGE]["sop_instance_uid"]

        # patient + study
        found = batch.studies.get(study_uid)
        if found is None:
            found = conn.execute("SELECT st.pk, st.patient_pk, p.patient_key FROM study st "
                                 "JOIN patient p ON p.pk = st.patient_pk "
                                 "WHERE st.study_instance_uid = ?", (study_uid,)).fetchone()
        if found is None:
            row = conn.execute("SELECT pk FROM patient WHERE patient_key = ?",
                               (patient_key,)).fetchone()
            if row is None:
                patient_pk = self._insert_row(conn, "patient", {
                    "patient_key": patient_key, **rows[m.PATIENT], "charset": charset})
                batch.applied[("patient", patient_pk)] = (rows[m.PATIENT], charset)
            else:
                patient_pk = row[0]
                self._update(conn, "patient", patient_pk, rows[m.PATIENT], charset, batch)
            study_pk = self._insert_row(conn, "study", {
                "patient_pk": patient_pk, **rows[m.STUDY], "charset": charset})
            batch.applied[("study", study_pk)] = (rows[m.STUDY], charset)
            batch.studies[study_uid] = (study_pk, patient_pk, patient_key)
        else:
            study_pk, patient_pk, known_key = found
            batch.studies[study_uid] = found
            if known_key == patient_key:
                self._update(conn, "patient", patient_pk, rows[m.PATIENT], charset, batch)
            else:
                log.warning("instance %s: study %s is indexed under PatientID %r, not %r; "
                            "kept under %r", sop_uid, study_uid, known_key, patient_key,
                            known_key)
            self._update(conn, "study", study_pk, rows[m.STUDY], charset, batch)

        # series
        found = batch.series.get(series_uid)
        if found is None:
            found = conn.execute("SELECT pk, study_pk FROM series WHERE series_instance_uid = ?",
                                 (series_uid,)).fetchone()
        if found is None:
            series_pk = self._insert_row(conn, "series", {
                "study_pk": study_pk, **rows[m.SERIES], "charset": charset})
            batch.applied[("series", series_pk)] = (rows[m.SERIES], charset)
            batch.series[series_uid] = (series_pk, study_pk)
        else:
            series_pk = found[0]
            batch.series[series_uid] = found
            if found[1] != study_pk:
                log.warning("instance %s: series %s belongs to another study than %s; "
                            "kept in its first study", sop_uid, series_uid, study_uid)
            self._update(conn, "series", series_pk, rows[m.SERIES], charset, batch)

        # image
        if batch.images is None:
            found = conn.execute("SELECT pk, series_pk FROM image WHERE sop_instance_uid = ?",
                                 (sop_uid,)).fetchone()
        else:
            found = batch.images.get(sop_uid)
        values = rows[m.IMAGE]
        if found is None:
            image_pk = self._insert_row(conn, "image", {"series_pk": series_pk, **values,
                                                        "charset": charset})
        else:
            image_pk, old_series = found
            cols = list(values)
            conn.execute(f"UPDATE image SET series_pk = ?, charset = ?, "
                         f"{', '.join(c + ' = ?' for c in cols)} WHERE pk = ?",
                         [series_pk, charset, *values.values(), image_pk])
            if old_series != series_pk and self._prune(conn, old_series):
                batch.forget_pruned()
        if batch.images is not None:
            batch.images[sop_uid] = (image_pk, series_pk)

    @staticmethod
    def _prune(conn: sqlite3.Connection, series_pk: int) -> bool:
        """Delete the series if empty, then its study and patient if empty.
        Returns whether anything was deleted."""
        row = conn.execute("SELECT study_pk FROM series WHERE pk = ?", (series_pk,)).fetchone()
        if row is None or conn.execute("SELECT 1 FROM image WHERE series_pk = ? LIMIT 1",
                                       (series_pk,)).fetchone():
            return False
        study_pk = row[0]
        conn.execute("DELETE FROM series WHERE pk = ?", (series_pk,))
        if conn.execute("SELECT 1 FROM series WHERE study_pk = ? LIMIT 1",
                        (study_pk,)).fetchone():
            return True
        patient_pk = conn.execute("SELECT patient_pk FROM study WHERE pk = ?",
                                  (study_pk,)).fetchone()[0]
        conn.execute("DELETE FROM study WHERE pk = ?", (study_pk,))
        if not conn.execute("SELECT 1 FROM study WHERE patient_pk = ? LIMIT 1",
                            (patient_pk,)).fetchone():
            conn.execute("DELETE FROM patient WHERE pk = ?", (patient_pk,))
        return True

    # -- querying ------------------------------------------------------------

    def _where(self, identifier: Dataset, level: str,
               keywords: Iterable[str] | None = None) -> tuple[list[str], list]:
        """WHERE parts for the keys of ``identifier`` at ``level`` and above
        (only ``keywords`` when given)."""
        clauses: list[str] = []
        params: list = []
        rank = _LEVEL_RANK[level]
        for elem in identifier:
            keyword = elem.keyword
            attr = _BY_KEYWORD.get(keyword)
            if attr is None or _LEVEL_RANK[attr.level] > rank:
                continue
            if keywords is not None and keyword not in keywords:
                continue
            cond = m.parse_key(elem.value, attr.vr, keyword, self.case_insensitive_pn)
            if isinstance(cond, m.Universal):
                continue
            if attr.constant is not None:
                value = self.retrieve_ae_title if attr.constant is _RETRIEVE_AE else attr.constant
                if not m.match_value(cond, m.normalize_for_match(value, attr.vr)):
                    clauses.append("0")  # the constant does not match: nothing does
                continue
            if attr.derived_match is not None:
                template, inner = attr.derived_match
                if isinstance(cond, m.Empty):
                    sql, p = template.format(cond=f"{inner} IS NOT NULL"), []
                    sql = "NOT " + sql
                else:
                    inner_sql, p = self._condition_sql(cond, inner)
                    sql = template.format(cond=inner_sql)
            elif attr.derived is not None:
                sql, p = self._condition_sql(cond, attr.derived)
            else:
                sql, p = self._condition_sql(cond, f"{attr.alias}.{attr.match_column}")
            clauses.append(sql)
            params.extend(p)
        return clauses, params

    @staticmethod
    def _from(level: str) -> str:
        sql = "FROM patient p"
        if _LEVEL_RANK[level] >= _LEVEL_RANK[m.STUDY]:
            sql += " JOIN study st ON st.patient_pk = p.pk"
        if _LEVEL_RANK[level] >= _LEVEL_RANK[m.SERIES]:
            sql += " JOIN series se ON se.study_pk = st.pk"
        if _LEVEL_RANK[level] >= _LEVEL_RANK[m.IMAGE]:
            sql += " JOIN image im ON im.series_pk = se.pk"
        return sql

    @staticmethod
    def _as_dataset(identifier: Any) -> Dataset:
        if isinstance(identifier, Dataset):
            return identifier
        if isinstance(identifier, Mapping):
            ds = Dataset()
            for keyword, value in identifier.items():
                setattr(ds, keyword, value)
            return ds
        raise IdentifierError(f"the identifier must be a pydicom Dataset or a mapping, "
                              f"not {type(identifier).__name__}")

    def find(self, identifier: Any, level: str | None, root: str) -> Iterator[Dataset]:
        """C-FIND: validate now (raising :class:`IdentifierError`), then return a
        generator of response identifiers, one per match, streamed from SQLite.

        ``level`` may be None (the identifier's QueryRetrieveLevel is used; if
        given it must agree). ``root`` is ``"patient"`` or ``"study"`` or a root
        SOP class UID.
        """
        if self._closed:
            raise UnableToProcess(f"the index {self.db_path} is closed")
        try:
            return self._prepare_find(self._as_dataset(identifier), level, root)
        except IdentifierError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            # pydicom decodes raw elements on access: a value it cannot decode
            raise IdentifierError(f"cannot decode the identifier: {exc}") from exc

    def _prepare_find(self, identifier: Dataset, level: str | None,
                      root: str, elements_only: bool = False) -> Iterator[Any]:
        sql, params, plan, level, first_charset = self._find_sql(identifier, level, root)
        request_charset = identifier.get("SpecificCharacterSet", None)
        if elements_only:
            return self._find_elements(sql, params, plan, level, first_charset, request_charset)
        return self._find_rows(sql, params, plan, level, first_charset, request_charset)

    def explain_find(self, identifier: Any, level: str | None, root: str) -> tuple[str, list]:
        """The SQL statement and parameters :meth:`find` runs for ``identifier``
        (for ``EXPLAIN QUERY PLAN``, and to compare back ends)."""
        sql, params, *_ = self._find_sql(self._as_dataset(identifier), level, root)
        return sql, params

    def _find_sql(self, identifier: Dataset, level: str | None, root: str) -> tuple:
        level = m.query_level(identifier, level, root)
        root_name = m.normalize_root(root)
        unique = m.required_unique_keys(level, root_name)
        where, params = self._where(identifier, level)
        rank = _LEVEL_RANK[level]

        # Output plan: (tag, vr, keyword-or-None, select index or None)
        selects: list[str] = []
        plan: list[tuple[int, str, Attr | None, int | None]] = []
        seen: set[int] = set()

        def select_of(attr: Attr) -> int:
            expr = attr.derived if attr.derived else f"{attr.alias}.{attr.column}"
            selects.append(expr)
            return len(selects) - 1

        for elem in identifier:
            tag = int(elem.tag)
            if tag in (0x00080052, 0x00080005) or (tag & 0xFFFF) == 0:
                continue
            seen.add(tag)
            attr = _BY_KEYWORD.get(elem.keyword)
            if attr is not None and attr.constant is not None:
                plan.append((tag, attr.vr, attr, None))
            elif attr is not None and _LEVEL_RANK[attr.level] <= rank:
                plan.append((tag, attr.vr, attr, select_of(attr)))
            else:
                plan.append((tag, elem.VR, None, None))
        for keyword in unique:
            tag = tag_for_keyword(keyword)
            if tag not in seen:
                attr = _BY_KEYWORD[keyword]
                plan.append((tag, attr.vr, attr, select_of(attr)))
        first_charset = len(selects)
        selects.extend(f"{_TABLES[lv][1]}.charset" for lv in m.LEVELS[: rank + 1])
        order = f"{_TABLES[level][1]}.pk"
        sql = (f"SELECT {', '.join(selects)} {self._from(level)}"
               + (f" WHERE {' AND '.join(where)}" if where else "")
               + f" ORDER BY {order}")
        log.debug("C-FIND %s level %s: %s %r", root_name, level, sql, params)
        return sql, params, plan, level, first_charset

    def _find_rows(self, sql: str, params: list, plan: list, level: str,
                   first_charset: int, request_charset: Any) -> Iterator[Dataset]:
        for charset, elements in self._find_elements(sql, params, plan, level, first_charset,
                                                     request_charset):
            ds = Dataset()
            if charset is not None:
                ds.SpecificCharacterSet = charset
            for tag, vr, value in elements:
                ds.add_new(tag, vr, value)
            yield ds

    def _find_elements(self, sql: str, params: list, plan: list, level: str,
                       first_charset: int, request_charset: Any) -> Iterator[tuple[Any, list]]:
        """Each match as (SpecificCharacterSet or None, [(tag, VR, value)]), the
        QueryRetrieveLevel included, in plan order."""
        # The connection is borrowed and given back by _rows (closed with this generator).
        retrieve_ae = self.retrieve_ae_title
        with contextlib.closing(self._rows(sql, params)) as rows:
            for row in rows:
                charset = _response_charset(row[first_charset:], request_charset)
                elements = [(0x00080052, "CS", level)]
                for tag, vr, attr, idx in plan:
                    value = None if idx is None else row[idx]
                    if attr is not None:
                        if attr.constant is not None:
                            value = retrieve_ae if attr.constant is _RETRIEVE_AE else attr.constant
                        elif value is not None and attr.multi:
                            value = sorted(set(value.split(",")))
                            value = value[0] if len(value) == 1 else value
                    if vr == "SQ":
                        value = []
                    elements.append((tag, vr, value))
                if charset is None and _has_non_ascii(elements):
                    charset = "ISO_IR 192"  # values are decoded text: UTF-8 holds any
                yield charset, elements

    def find_elements(self, identifier: Any, level: str | None, root: str) -> Iterator[tuple[Any, list]]:
        """As :meth:`find`, but each match as (SpecificCharacterSet or None,
        [(tag, VR, value)]): what the Q/R SCP encodes without building Datasets."""
        if self._closed:
            raise UnableToProcess(f"the index {self.db_path} is closed")
        try:
            return self._prepare_find(self._as_dataset(identifier), level, root,
                                      elements_only=True)
        except IdentifierError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise IdentifierError(f"cannot decode the identifier: {exc}") from exc

    def locate(self, identifier: Any, level: str | None, root: str) -> Iterator[InstanceRef]:
        """C-MOVE / C-GET: the instances under the entities selected by the unique
        keys of the identifier (the retrieve level's unique key is required; it
        may be a list of UIDs; unique keys of higher levels restrict further;
        other keys are ignored, as PS3.4 C.4.2.2.1 has only unique keys in a
        retrieve identifier). Validates now, then streams."""
        if self._closed:
            raise UnableToProcess(f"the index {self.db_path} is closed")
        try:
            return self._prepare_locate(self._as_dataset(identifier), level, root)
        except IdentifierError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise IdentifierError(f"cannot decode the identifier: {exc}") from exc

    def count_located(self, identifier: Any, level: str | None, root: str) -> int:
        """How many instances :meth:`locate` lists for this identifier (one COUNT on the
        index; the C-MOVE / C-GET SCP sends it as Number of Remaining Sub-operations)."""
        if self._closed:
            raise UnableToProcess(f"the index {self.db_path} is closed")
        try:
            body, params = self._locate_query(self._as_dataset(identifier), level, root)
        except IdentifierError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise IdentifierError(f"cannot decode the identifier: {exc}") from exc
        return self._count_rows(body, params)

    def _count_rows(self, body: str, params: list) -> int:
        try:
            with self._read() as conn:
                return int(conn.execute("SELECT COUNT(*) " + body, params).fetchone()[0])
        except sqlite3.Error as exc:
            raise UnableToProcess(f"index query failed: {exc}") from exc

    def _locate_query(self, identifier: Dataset, level: str | None,
                      root: str) -> tuple[str, list]:
        """``FROM ... WHERE ...`` of a retrieve at image level, and its parameters."""
        level = m.query_level(identifier, level, root)
        keyword = m.UNIQUE_KEYS[level]
        attr = _BY_KEYWORD[keyword]
        cond = m.parse_key(identifier.get(keyword, None), attr.vr, keyword,
                           self.case_insensitive_pn)
        if isinstance(cond, m.Universal):
            raise IdentifierError(f"a {level} level retrieve needs the unique key {keyword}")
        uniques = set(m.UNIQUE_KEYS.values())
        where, params = self._where(identifier, level, keywords=uniques)
        return (self._from(m.IMAGE) + (f" WHERE {' AND '.join(where)}" if where else ""),
                params)

    def _prepare_locate(self, identifier: Dataset, level: str | None,
                        root: str) -> Iterator[InstanceRef]:
        body, params = self._locate_query(identifier, level, root)
        sql = ("SELECT im.sop_class_uid, im.sop_instance_uid, im.transfer_syntax, im.path "
               + body + " ORDER BY p.pk, st.pk, se.pk, im.pk")
        return self._locate_rows(sql, params)

    def _locate_rows(self, sql: str, params: list) -> Iterator[InstanceRef]:
        with contextlib.closing(self._rows(sql, params)) as rows:
            for cls, uid, ts, path in rows:
                yield InstanceRef(cls, uid, ts or "", path)

    def _rows(self, sql: str, params: list) -> Iterator[tuple]:
        """The rows of one query, streamed. The connection is borrowed when the first
        row is asked for and given back in ``finally``: when the generator is
        exhausted, closed (C-CANCEL) or collected, whichever thread that happens on."""
        self._check_open()
        conn = self._pool.acquire()
        cur = None
        try:
            try:
                cur = conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise UnableToProcess(f"index query failed: {exc}") from exc
            yield from cur
        except sqlite3.Error as exc:
            raise UnableToProcess(f"index query failed: {exc}") from exc
        finally:
            if cur is not None:
                try:
                    cur.close()
                except sqlite3.Error:  # pragma: no cover
                    pass
            self._pool.release(conn)

    # -- small conveniences ----------------------------------------------------

    def count(self, level: str = m.IMAGE) -> int:
        """Number of indexed patients / studies / series / instances."""
        table = _TABLES[str(level).upper()][0]
        with self._read() as conn:
            return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def get_instance(self, sop_instance_uid: str) -> InstanceRef | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT sop_class_uid, sop_instance_uid, transfer_syntax, path FROM image "
                "WHERE sop_instance_uid = ?", (str(sop_instance_uid).strip("\x00 "),)).fetchone()
        return None if row is None else InstanceRef(row[0], row[1], row[2] or "", row[3])


def _changed_folders(root: str, since: float | None) -> Iterator[tuple[str, list[str]]]:
    """(folder, its non-hidden files as absolute paths) for every folder under ``root``
    whose ctime is at or after ``since`` (every folder when None); hidden folders are
    not entered."""
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
            changed = since is None or os.stat(current).st_ctime >= since
        except OSError as exc:
            log.warning("cannot list %s: %s", current, exc)
            continue
        files = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif changed and entry.is_file():
                files.append(os.path.abspath(entry.path))
        yield current, files


def _has_non_ascii(elements: list) -> bool:
    for _tag, _vr, value in elements:
        if isinstance(value, str):
            if not value.isascii():
                return True
        elif isinstance(value, list):
            if any(isinstance(v, str) and not v.isascii() for v in value):
                return True
    return False


def _response_charset(stored: Iterable[str | None], request_charset: Any) -> Any:
    """SpecificCharacterSet of a response: the stored rows' own when they agree,
    ISO_IR 192 (UTF-8, which encodes anything pydicom decoded) when they differ;
    if none of the rows has one, the request's (when it had one), else none."""
    values = {s for s in stored if s}
    if len(values) == 1:
        value = values.pop()
        return value.split("\\") if "\\" in value else value
    if len(values) > 1:
        return "ISO_IR 192"
    if request_charset is not None and getattr(request_charset, "value", request_charset):
        value = getattr(request_charset, "value", request_charset)
        return value
    return None
