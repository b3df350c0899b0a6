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
* Derived attributes (ModalitiesInStudy, the Number of ... Related ... counts)
  are not stored: they are computed by correlated sub-queries when a request
  asks for or matches on them, so they are always right, also after ``remove``.
* A query at level L joins the tables from the top down to L, applies every key
  of L and of the levels above it (unique keys of higher levels restrict the
  query as the hierarchical model wants; other keys of higher levels are matched
  too, a superset that a hierarchical SCU never exercises), ignores keys of
  lower levels (returned empty), and streams rows from a cursor.
* Patients are keyed by PatientID alone (an empty PatientID is a patient of its
  own). A study stays with the patient under which it was first indexed; a
  series stays in its first study (a later instance that disagrees is indexed
  there and a warning is logged). Attributes: the last non-empty value wins.

Threads: each thread gets its own connection (``threading.local``), so readers
never wait for each other and, in WAL mode, not for the writer either. Writes
are serialised by one lock per index (SQLite allows one writer; the lock avoids
busy retries between our own threads) and SQLite's busy timeout (30 s) covers
other processes. A ``find`` generator keeps a read transaction open until it is
exhausted or closed; close it on C-CANCEL.

``synchronous=NORMAL`` is used with WAL: a power cut can lose the last few
committed index entries (the database stays consistent); re-import the folder
to recover them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import pydicom
from pydicom.dataset import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword

from . import matching as m
from .backend import IdentifierError, InstanceError, InstanceRef, UnableToProcess

__all__ = ["SQLiteIndex", "ImportResult", "ATTRIBUTES", "DEFAULT_DB_NAME"]

log = logging.getLogger("fastdimse.qr")

DEFAULT_DB_NAME = "fastdimse-index.sqlite"
_SCHEMA_VERSION = "1"

_TABLES = {m.PATIENT: ("patient", "p"), m.STUDY: ("study", "st"),
           m.SERIES: ("series", "se"), m.IMAGE: ("image", "im")}
_LEVEL_RANK = {lv: i for i, lv in enumerate(m.LEVELS)}
_NORMALISED_VRS = frozenset({"PN", "DA", "TM", "DT"})


@dataclass(frozen=True)
class Attr:
    """One attribute the index knows.

    ``column`` is the raw column in the level's table (None for derived ones);
    ``derived`` is an SQL expression for a derived attribute, ``derived_match``
    an optional SQL template (``{cond}`` on ``x.<column>``) used to match it.
    """

    keyword: str
    level: str
    vr: str
    column: str | None = None
    derived: str | None = None
    derived_match: tuple[str, str] | None = None  # (EXISTS template, column inside)

    @property
    def alias(self) -> str:
        return _TABLES[self.level][1]

    @property
    def match_column(self) -> str | None:
        if self.column is None:
            return None
        return self.column + "_m" if self.vr in _NORMALISED_VRS else self.column


def _a(keyword: str, level: str, column: str | None = None, **kw: Any) -> Attr:
    return Attr(keyword, level, dictionary_VR(keyword), column, **kw)


_COUNT_STUDIES_OF_PATIENT = "(SELECT COUNT(*) FROM study x WHERE x.patient_pk = p.pk)"
_COUNT_SERIES_OF_PATIENT = ("(SELECT COUNT(*) FROM series x JOIN study y ON x.study_pk = y.pk"
                            " WHERE y.patient_pk = p.pk)")
_COUNT_IMAGES_OF_PATIENT = ("(SELECT COUNT(*) FROM image x JOIN series y ON x.series_pk = y.pk"
                            " JOIN study z ON y.study_pk = z.pk WHERE z.patient_pk = p.pk)")
_COUNT_SERIES_OF_STUDY = "(SELECT COUNT(*) FROM series x WHERE x.study_pk = st.pk)"
_COUNT_IMAGES_OF_STUDY = ("(SELECT COUNT(*) FROM image x JOIN series y ON x.series_pk = y.pk"
                          " WHERE y.study_pk = st.pk)")
_COUNT_IMAGES_OF_SERIES = "(SELECT COUNT(*) FROM image x WHERE x.series_pk = se.pk)"
_MODALITIES = ("(SELECT GROUP_CONCAT(DISTINCT x.modality) FROM series x"
               " WHERE x.study_pk = st.pk)")
_MODALITIES_MATCH = ("EXISTS (SELECT 1 FROM series x WHERE x.study_pk = st.pk AND ({cond}))",
                     "x.modality")

#: Every attribute the index stores or derives. PS3.4 C.6.1.1 / C.6.2.1 required
#: and unique keys, and common optional ones.
ATTRIBUTES: tuple[Attr, ...] = (
    _a("PatientID", m.PATIENT, "patient_id"),
    _a("PatientName", m.PATIENT, "patient_name"),
    _a("PatientBirthDate", m.PATIENT, "patient_birth_date"),
    _a("PatientSex", m.PATIENT, "patient_sex"),
    _a("NumberOfPatientRelatedStudies", m.PATIENT, derived=_COUNT_STUDIES_OF_PATIENT),
    _a("NumberOfPatientRelatedSeries", m.PATIENT, derived=_COUNT_SERIES_OF_PATIENT),
    _a("NumberOfPatientRelatedInstances", m.PATIENT, derived=_COUNT_IMAGES_OF_PATIENT),
    _a("StudyInstanceUID", m.STUDY, "study_instance_uid"),
    _a("StudyDate", m.STUDY, "study_date"),
    _a("StudyTime", m.STUDY, "study_time"),
    _a("AccessionNumber", m.STUDY, "accession_number"),
    _a("StudyID", m.STUDY, "study_id"),
    _a("StudyDescription", m.STUDY, "study_description"),
    _a("ReferringPhysicianName", m.STUDY, "referring_physician_name"),
    _a("ModalitiesInStudy", m.STUDY, derived=_MODALITIES, derived_match=_MODALITIES_MATCH),
    _a("NumberOfStudyRelatedSeries", m.STUDY, derived=_COUNT_SERIES_OF_STUDY),
    _a("NumberOfStudyRelatedInstances", m.STUDY, derived=_COUNT_IMAGES_OF_STUDY),
    _a("SeriesInstanceUID", m.SERIES, "series_instance_uid"),
    _a("Modality", m.SERIES, "modality"),
    _a("SeriesNumber", m.SERIES, "series_number"),
    _a("SeriesDescription", m.SERIES, "series_description"),
    _a("SeriesDate", m.SERIES, "series_date"),
    _a("SeriesTime", m.SERIES, "series_time"),
    _a("BodyPartExamined", m.SERIES, "body_part_examined"),
    _a("NumberOfSeriesRelatedInstances", m.SERIES, derived=_COUNT_IMAGES_OF_SERIES),
    _a("SOPInstanceUID", m.IMAGE, "sop_instance_uid"),
    _a("SOPClassUID", m.IMAGE, "sop_class_uid"),
    _a("InstanceNumber", m.IMAGE, "instance_number"),
    _a("AvailableTransferSyntaxUID", m.IMAGE, "transfer_syntax"),
)
_BY_KEYWORD = {a.keyword: a for a in ATTRIBUTES}
_STORED = {lv: [a for a in ATTRIBUTES if a.level == lv and a.column] for lv in m.LEVELS}
# Attributes read from an instance (transfer syntax comes from the file meta).
_READ_KEYWORDS = [a.keyword for a in ATTRIBUTES
                  if a.column and a.keyword != "AvailableTransferSyntaxUID"]
_TAG_OF = {kw: tag_for_keyword(kw) for kw in _READ_KEYWORDS + ["SpecificCharacterSet"]}
_PARENT = {m.STUDY: "patient_pk", m.SERIES: "study_pk", m.IMAGE: "series_pk"}


def _schema() -> str:
    out = ["CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"]
    parents = {m.STUDY: "patient", m.SERIES: "study", m.IMAGE: "series"}
    for lv in m.LEVELS:
        table, _ = _TABLES[lv]
        cols = ["pk INTEGER PRIMARY KEY"]
        if lv == m.PATIENT:
            cols.append("patient_key TEXT NOT NULL UNIQUE")  # PatientID, '' when absent
        else:
            cols.append(f"{_PARENT[lv]} INTEGER NOT NULL REFERENCES {parents[lv]}(pk)")
        for a in _STORED[lv]:
            if a.keyword == m.UNIQUE_KEYS[lv] and lv != m.PATIENT:
                cols.append(f"{a.column} TEXT NOT NULL UNIQUE")
            elif a.vr == "IS":
                cols.append(f"{a.column} INTEGER")
            else:
                cols.append(f"{a.column} TEXT")
            if a.match_column != a.column:
                cols.append(f"{a.match_column} TEXT")
        if lv == m.IMAGE:
            cols.append("path TEXT NOT NULL")
        cols.append("charset TEXT")
        out.append(f"CREATE TABLE IF NOT EXISTS {table} (\n  " + ",\n  ".join(cols) + "\n);")
    indexes = [
        ("patient", "patient_id"), ("patient", "patient_name_m"),
        ("patient", "patient_birth_date_m"),
        ("study", "patient_pk"), ("study", "study_date_m"), ("study", "accession_number"),
        ("study", "study_id"), ("study", "referring_physician_name_m"),
        ("series", "study_pk"), ("series", "modality"),
        ("image", "series_pk"), ("image", "sop_class_uid"),
    ]
    for table, col in indexes:
        out.append(f"CREATE INDEX IF NOT EXISTS ix_{table}_{col} ON {table}({col});")
    return "\n".join(out)


@dataclass
class ImportResult:
    """What :meth:`SQLiteIndex.import_folder` did."""

    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


# ---------------------------------------------------------------------------
# Reading values out of a Dataset or a dict


def _as_text(value: Any) -> str | None:
    """An element value as the text stored in the index (None when empty)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", "replace")
    if isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join("" if v is None else str(v) for v in value)
    else:
        text = str(value)
    text = text.strip("\x00 ")
    return text or None


def _getter(source: Any) -> Callable[[str], Any]:
    if isinstance(source, Dataset):
        def get(keyword: str) -> Any:
            elem = source.get(_TAG_OF[keyword], None)  # by tag: no keyword lookup
            return None if elem is None else elem.value
        return get
    if isinstance(source, Mapping):
        return source.get
    raise InstanceError(f"expected a pydicom Dataset or a mapping of keywords, got "
                        f"{type(source).__name__}")


def _row_values(get: Callable[[str], Any], level: str) -> dict[str, Any]:
    """Column -> value for one level, raw and normalised."""
    row: dict[str, Any] = {}
    for a in _STORED[level]:
        if a.keyword == "AvailableTransferSyntaxUID":
            continue
        text = _as_text(get(a.keyword))
        if a.vr == "IS":
            row[a.column] = m.normalize_for_match(text, "IS") if text else None
            continue
        row[a.column] = text
        if a.match_column != a.column:
            row[a.match_column] = m.normalize_for_match(text, a.vr)
    return row


# ---------------------------------------------------------------------------


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

    def __init__(self, storage_dir: str | os.PathLike, db_name: str = DEFAULT_DB_NAME):
        self.storage_dir = os.path.abspath(os.fspath(storage_dir))
        os.makedirs(self.storage_dir, exist_ok=True)
        self.db_path = os.path.join(self.storage_dir, db_name)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all_conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        conn = self._conn()
        with self._write_lock:
            conn.executescript(_schema())
            conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)",
                         (_SCHEMA_VERSION,))
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("SQLite index %s: WAL mode unavailable (journal_mode=%s)",
                        self.db_path, mode)

    # -- connections ---------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if self._closed:
            if conn is not None:  # close() left this thread's connection to us
                self._local.conn = None
                conn.close()
            raise UnableToProcess(f"the index {self.db_path} is closed")
        if conn is None:
            try:
                conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None,
                                       check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as exc:
                raise UnableToProcess(f"cannot open the index {self.db_path}: {exc}") from exc
            self._local.conn = conn
            with self._conns_lock:
                self._all_conns.append((threading.current_thread(), conn))
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, serialised with the other writers of this index."""
        with self._write_lock:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def close(self) -> None:
        """Close the index. The calling thread's connection and those of threads
        that have ended are closed now; a thread still alive closes its own on
        its next call (which then raises :class:`UnableToProcess`), because
        closing a connection another thread may be using is not safe."""
        self._closed = True
        me = threading.current_thread()
        with self._conns_lock:
            conns, self._all_conns = self._all_conns, []
        for thread, conn in conns:
            if thread is me or not thread.is_alive():
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover
                    pass
        if getattr(self._local, "conn", None) is not None:
            self._local.conn = None

    def __enter__(self) -> "SQLiteIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def journal_mode(self) -> str:
        return str(self._conn().execute("PRAGMA journal_mode").fetchone()[0]).lower()

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
        files among them) and the index's own files are ignored.
        """
        import time

        root = os.path.abspath(os.fspath(folder) if folder is not None else self.storage_dir)
        started = time.time()
        conn = self._conn()
        conn.execute("CREATE INDEX IF NOT EXISTS ix_image_path ON image(path)")
        key = "reconciled:" + root
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        since = float(row[0]) - 2.0 if row else None  # slack for clock granularity
        own = {self.db_path, self.db_path + "-wal", self.db_path + "-shm",
               self.db_path + "-journal"}
        result = ImportResult()
        batch: list[dict] = []
        stack = [root]
        while stack:
            current = stack.pop()
            try:
                entries = list(os.scandir(current))
                changed = since is None or os.stat(current).st_ctime >= since
            except OSError as exc:
                log.warning("cannot list %s: %s", current, exc)
                continue
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                if not changed or entry.path in own or not entry.is_file():
                    continue
                path = os.path.abspath(entry.path)
                if conn.execute("SELECT 1 FROM image WHERE path = ?", (path,)).fetchone():
                    continue
                try:
                    batch.append(self._extract(path, self._read_header(path), None))
                except Exception as exc:  # one bad file must not stop the others
                    log.warning("not indexed: %s: %s", path, exc)
                    result.skipped.append((path, str(exc)))
                    continue
                if len(batch) >= batch_size:
                    result.added += self._insert_many(batch)
                    batch = []
        if batch:
            result.added += self._insert_many(batch)
        with self._write() as wconn:
            wconn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                          (key, repr(started)))
        if result.added:
            log.info("reconciled %s: %d instance(s) indexed that were not", root, result.added)
        return result

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
        rows = {lv: _row_values(get, lv) for lv in m.LEVELS}
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
            for item in items:
                self._insert(conn, item)
        return len(items)

    @staticmethod
    def _update(conn: sqlite3.Connection, table: str, pk: int, values: dict, charset) -> None:
        # Last non-empty value wins. Values are kept decoded (str), so any character
        # set that covers them all will do for a response: when an update brings a
        # different one, the row's becomes ISO_IR 192 (UTF-8), which covers anything.
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

    def _insert(self, conn: sqlite3.Connection, item: dict) -> None:
        rows, charset, patient_key = item["rows"], item["charset"], item["patient_key"]
        study_uid = rows[m.STUDY]["study_instance_uid"]
        series_uid = rows[m.SERIES]["series_instance_uid"]
        sop_uid = rows[m.IMAGE]["sop_instance_uid"]

        # patient + study
        found = conn.execute("SELECT st.pk, st.patient_pk, p.patient_key FROM study st "
                             "JOIN patient p ON p.pk = st.patient_pk "
                             "WHERE st.study_instance_uid = ?", (study_uid,)).fetchone()
        if found is None:
            row = conn.execute("SELECT pk FROM patient WHERE patient_key = ?",
                               (patient_key,)).fetchone()
            if row is None:
                patient_pk = self._insert_row(conn, "patient", {
                    "patient_key": patient_key, **rows[m.PATIENT], "charset": charset})
            else:
                patient_pk = row[0]
                self._update(conn, "patient", patient_pk, rows[m.PATIENT], charset)
            study_pk = self._insert_row(conn, "study", {
                "patient_pk": patient_pk, **rows[m.STUDY], "charset": charset})
        else:
            study_pk, patient_pk, known_key = found
            if known_key == patient_key:
                self._update(conn, "patient", patient_pk, rows[m.PATIENT], charset)
            else:
                log.warning("instance %s: study %s is indexed under PatientID %r, not %r; "
                            "kept under %r", sop_uid, study_uid, known_key, patient_key,
                            known_key)
            self._update(conn, "study", study_pk, rows[m.STUDY], charset)

        # series
        found = conn.execute("SELECT pk, study_pk FROM series WHERE series_instance_uid = ?",
                             (series_uid,)).fetchone()
        if found is None:
            series_pk = self._insert_row(conn, "series", {
                "study_pk": study_pk, **rows[m.SERIES], "charset": charset})
        else:
            series_pk = found[0]
            if found[1] != study_pk:
                log.warning("instance %s: series %s belongs to another study than %s; "
                            "kept in its first study", sop_uid, series_uid, study_uid)
            self._update(conn, "series", series_pk, rows[m.SERIES], charset)

        # image
        found = conn.execute("SELECT pk, series_pk FROM image WHERE sop_instance_uid = ?",
                             (sop_uid,)).fetchone()
        values = dict(rows[m.IMAGE])
        if found is None:
            self._insert_row(conn, "image", {"series_pk": series_pk, **values,
                                             "charset": charset})
        else:
            image_pk, old_series = found
            cols = list(values)
            conn.execute(f"UPDATE image SET series_pk = ?, charset = ?, "
                         f"{', '.join(c + ' = ?' for c in cols)} WHERE pk = ?",
                         [series_pk, charset, *values.values(), image_pk])
            if old_series != series_pk:
                self._prune(conn, old_series)

    @staticmethod
    def _prune(conn: sqlite3.Connection, series_pk: int) -> None:
        """Delete the series if empty, then its study and patient if empty."""
        row = conn.execute("SELECT study_pk FROM series WHERE pk = ?", (series_pk,)).fetchone()
        if row is None or conn.execute("SELECT 1 FROM image WHERE series_pk = ? LIMIT 1",
                                       (series_pk,)).fetchone():
            return
        study_pk = row[0]
        conn.execute("DELETE FROM series WHERE pk = ?", (series_pk,))
        if conn.execute("SELECT 1 FROM series WHERE study_pk = ? LIMIT 1",
                        (study_pk,)).fetchone():
            return
        patient_pk = conn.execute("SELECT patient_pk FROM study WHERE pk = ?",
                                  (study_pk,)).fetchone()[0]
        conn.execute("DELETE FROM study WHERE pk = ?", (study_pk,))
        if not conn.execute("SELECT 1 FROM study WHERE patient_pk = ? LIMIT 1",
                            (patient_pk,)).fetchone():
            conn.execute("DELETE FROM patient WHERE pk = ?", (patient_pk,))

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
                      root: str) -> Iterator[Dataset]:
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
            if attr is not None and _LEVEL_RANK[attr.level] <= rank:
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
        request_charset = identifier.get("SpecificCharacterSet", None)
        log.debug("C-FIND %s level %s: %s %r", root_name, level, sql, params)
        if getattr(self, "_elements_only", False):
            return self._find_elements(sql, params, plan, level, first_charset, request_charset)
        return self._find_rows(sql, params, plan, level, first_charset, request_charset)

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
        try:
            cur = self._conn().execute(sql, params)
        except sqlite3.Error as exc:
            raise UnableToProcess(f"index query failed: {exc}") from exc
        try:
            for row in cur:
                charset = _response_charset(row[first_charset:], request_charset)
                elements = [(0x00080052, "CS", level)]
                for tag, vr, attr, idx in plan:
                    value = None if idx is None else row[idx]
                    if value is not None and attr is not None:
                        if attr.keyword == "ModalitiesInStudy":
                            value = sorted(set(value.split(",")))
                            value = value[0] if len(value) == 1 else value
                    if vr == "SQ":
                        value = []
                    elements.append((tag, vr, value))
                yield charset, elements
        except sqlite3.Error as exc:
            raise UnableToProcess(f"index query failed: {exc}") from exc
        finally:
            try:
                cur.close()
            except sqlite3.ProgrammingError:  # the index was closed meanwhile
                pass

    def find_elements(self, identifier: Any, level: str | None, root: str) -> Iterator[tuple[Any, list]]:
        """As :meth:`find`, but each match as (SpecificCharacterSet or None,
        [(tag, VR, value)]): what the Q/R SCP encodes without building Datasets."""
        if self._closed:
            raise UnableToProcess(f"the index {self.db_path} is closed")
        try:
            self._elements_only = True
            return self._prepare_find(self._as_dataset(identifier), level, root)
        except IdentifierError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise IdentifierError(f"cannot decode the identifier: {exc}") from exc
        finally:
            self._elements_only = False

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

    def _prepare_locate(self, identifier: Dataset, level: str | None,
                        root: str) -> Iterator[InstanceRef]:
        level = m.query_level(identifier, level, root)
        keyword = m.UNIQUE_KEYS[level]
        attr = _BY_KEYWORD[keyword]
        cond = m.parse_key(identifier.get(keyword, None), attr.vr, keyword,
                           self.case_insensitive_pn)
        if isinstance(cond, m.Universal):
            raise IdentifierError(f"a {level} level retrieve needs the unique key {keyword}")
        uniques = set(m.UNIQUE_KEYS.values())
        where, params = self._where(identifier, level, keywords=uniques)
        sql = ("SELECT im.sop_class_uid, im.sop_instance_uid, im.transfer_syntax, im.path "
               f"{self._from(m.IMAGE)}"
               + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY p.pk, st.pk, se.pk, im.pk")
        return self._locate_rows(sql, params)

    def _locate_rows(self, sql: str, params: list) -> Iterator[InstanceRef]:
        try:
            cur = self._conn().execute(sql, params)
        except sqlite3.Error as exc:
            raise UnableToProcess(f"index query failed: {exc}") from exc
        try:
            for cls, uid, ts, path in cur:
                yield InstanceRef(cls, uid, ts or "", path)
        finally:
            try:
                cur.close()
            except sqlite3.ProgrammingError:  # the index was closed meanwhile
                pass

    # -- small conveniences ----------------------------------------------------

    def count(self, level: str = m.IMAGE) -> int:
        """Number of indexed patients / studies / series / instances."""
        table = _TABLES[str(level).upper()][0]
        return int(self._conn().execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def get_instance(self, sop_instance_uid: str) -> InstanceRef | None:
        row = self._conn().execute(
            "SELECT sop_class_uid, sop_instance_uid, transfer_syntax, path FROM image "
            "WHERE sop_instance_uid = ?", (str(sop_instance_uid).strip("\x00 "),)).fetchone()
        return None if row is None else InstanceRef(row[0], row[1], row[2] or "", row[3])


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
