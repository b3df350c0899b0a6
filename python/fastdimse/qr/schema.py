"""The SQLite index's schema, generated from :data:`~fastdimse.qr.attributes.ATTRIBUTES`,
and its versioned migrations (the meta table's ``schema`` row holds the version)."""

from __future__ import annotations

import logging
import sqlite3

from . import matching as m
from .attributes import _PARENT, _STORED, _TABLES
from .backend import UnableToProcess

log = logging.getLogger("fastdimse.qr")

_SCHEMA_VERSION = 3

# Indexes of the version-1 schema: (table, columns).
_INDEXES_V1 = [
    ("patient", "patient_id"), ("patient", "patient_name_m"),
    ("patient", "patient_birth_date_m"),
    ("study", "patient_pk"), ("study", "study_date_m"), ("study", "accession_number"),
    ("study", "study_id"), ("study", "referring_physician_name_m"),
    ("series", "study_pk"), ("series", "modality"),
    ("image", "series_pk"), ("image", "sop_class_uid"),
]
# Version 2: SOPClassesInStudy reads (series_pk, sop_class_uid) from the index alone.
_INDEXES_V2 = [("image", "series_pk, sop_class_uid")]
# Version 3: reconcile() looks instances up by path.
_INDEXES_V3 = [("image", "path")]


def _index_sql(table: str, columns: str) -> str:
    name = f"ix_{table}_" + "_".join(c.strip() for c in columns.split(","))
    return f"CREATE INDEX IF NOT EXISTS {name} ON {table}({columns})"


def _schema() -> list[str]:
    """The statements that create the current schema (all IF NOT EXISTS)."""
    out = ["CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)"]
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
        out.append(f"CREATE TABLE IF NOT EXISTS {table} (\n  " + ",\n  ".join(cols) + "\n)")
    out += [_index_sql(t, c) for t, c in _INDEXES_V1 + _INDEXES_V2 + _INDEXES_V3]
    return out


#: Schema migrations: version -> the statements that bring version - 1 to it.
#: A new schema is created at _SCHEMA_VERSION directly.
_MIGRATIONS: dict[int, list[str]] = {
    2: [_index_sql(t, c) for t, c in _INDEXES_V2],
    3: [_index_sql(t, c) for t, c in _INDEXES_V3],
}


def _migrate(conn: sqlite3.Connection, db_path: str) -> None:
    """Create the schema, or upgrade an older one step by step, in one transaction
    (the meta table's ``schema`` row holds the version)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            for stmt in _schema():
                conn.execute(stmt)
            conn.execute("INSERT INTO meta(key, value) VALUES ('schema', ?)",
                         (str(_SCHEMA_VERSION),))
        else:
            try:
                version = int(row[0])
            except (TypeError, ValueError):
                raise UnableToProcess(f"the index {db_path} has an unknown schema version "
                                      f"{row[0]!r}") from None
            if version > _SCHEMA_VERSION:
                raise UnableToProcess(f"the index {db_path} has schema version {version}, "
                                      f"newer than this fastdimse ({_SCHEMA_VERSION})")
            for v in range(version + 1, _SCHEMA_VERSION + 1):
                log.info("SQLite index %s: upgrading the schema to version %d", db_path, v)
                for stmt in _MIGRATIONS[v]:
                    conn.execute(stmt)
            if version != _SCHEMA_VERSION:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'",
                             (str(_SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
