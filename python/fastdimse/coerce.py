"""Tag coercion for :meth:`DICOMSCU.store` (``coerce=``) and relay migrations.

The byte work is Rust's (``dataset::coerce_header``): each instance's elements before
Pixel Data are rewritten as it is streamed, the pixel data is sent unchanged from the
file, and the file itself is never written. This module only turns what a user writes
into (tag, value) pairs:

- :func:`normalize`: ``[("PatientID", "X123"), ((0x0010, 0x0021), "SITE"),
  (0x00100030, None)]`` -> ``[(0x00100020, "X123"), ...]`` (keywords as pydicom spells
  them, ``(group, element)`` pairs or 32-bit tags; a value is text, a number, or ``None``
  to delete the element).
- :func:`load_mapping`: a TOML or CSV file of PatientID old -> new, an optional PatientID
  prefix and constants, as a :class:`CoercionMap` (``for_patient(old_id)`` gives the
  coercion of one patient's instances).

TOML::

    [set]                      # constants, for every instance
    IssuerOfPatientID = "SITE"
    OtherPatientIDs = ""       # an empty value empties the element
    [patient_id]
    prefix = "A-"              # optional: ids not in the map get this prefix
    [patient_id.map]
    "OLD1" = "NEW1"

CSV: one ``old,new`` PatientID pair per row (a first row ``old,new`` or
``PatientID,...`` is a heading).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

__all__ = ["CoercionMap", "load_mapping", "normalize", "tag_of"]

def tag_of(key: "str | int | tuple[int, int]") -> int:
    """The 32-bit tag of a keyword, a ``(group, element)`` pair or a tag."""
    if isinstance(key, bool):
        raise ValueError(f"not a DICOM tag: {key!r}")
    if isinstance(key, int):
        if not 0 <= key <= 0xFFFFFFFF:
            raise ValueError(f"not a DICOM tag: {key:#x}")
        return key
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, int) and 0 <= k <= 0xFFFF for k in key):
        return (key[0] << 16) | key[1]
    if isinstance(key, str):
        from pydicom.datadict import tag_for_keyword

        tag = tag_for_keyword(key.strip())
        if tag is None:
            raise ValueError(f"unknown DICOM keyword: {key!r}")
        return int(tag)
    raise ValueError(f"not a DICOM keyword or tag: {key!r}")


def _text(tag: int, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"the value for ({tag >> 16:04X},{tag & 0xFFFF:04X}) must be text, a number or None, not {value!r}")


def normalize(coerce: Iterable[tuple[object, object]] | dict | None) -> list[tuple[int, str | None]]:
    """(tag, text or None) pairs for the core from keywords/tags and values; a mapping
    (keyword -> value) works too. A tag given twice is an error (the core says so)."""
    if coerce is None:
        return []
    pairs = coerce.items() if isinstance(coerce, dict) else coerce
    out = []
    for item in pairs:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ValueError(f"a coercion is (keyword or tag, value): not {item!r}")
        tag = tag_of(item[0])  # type: ignore[arg-type]
        out.append((tag, _text(tag, item[1])))
    return out


@dataclass
class CoercionMap:
    """What a mapping file says: constants, a PatientID map and prefix."""

    constants: list[tuple[str, str | None]] = field(default_factory=list)
    patient_ids: dict[str, str] = field(default_factory=dict)
    prefix: str | None = None

    def new_patient_id(self, old: str) -> str | None:
        """The new PatientID for ``old``, or None when it stays."""
        old = old.strip()
        if old in self.patient_ids:
            return self.patient_ids[old]
        if self.prefix is not None:
            return self.prefix + old
        return None

    def for_patient(self, old_patient_id: str | None) -> list[tuple[str, str | None]]:
        """The coercion of one patient's instances: the constants, and PatientID when
        mapped (a constant PatientID in ``[set]`` wins)."""
        out = list(self.constants)
        new = self.new_patient_id(old_patient_id) if old_patient_id is not None else None
        if new is not None and not any(k == "PatientID" for k, _ in out):
            out.append(("PatientID", new))
        return out


def _load_toml(path: Path) -> CoercionMap:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser as the tomli package
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as f:
        try:
            doc = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
    unknown = set(doc) - {"set", "patient_id"}
    if unknown:
        raise ValueError(f"{path}: unknown section(s): {', '.join(sorted(unknown))} (expected [set], [patient_id])")
    m = CoercionMap()
    for key, value in (doc.get("set") or {}).items():
        tag = tag_of(key)
        if isinstance(value, dict):
            raise ValueError(f"{path}: [set] {key} must be a value, not a table")
        m.constants.append((key, _text(tag, value)))
    pid = doc.get("patient_id") or {}
    if not isinstance(pid, dict) or set(pid) - {"prefix", "map"}:
        raise ValueError(f"{path}: [patient_id] takes prefix and [patient_id.map] only")
    if "prefix" in pid:
        if not isinstance(pid["prefix"], str):
            raise ValueError(f"{path}: [patient_id] prefix must be text")
        m.prefix = pid["prefix"]
    for old, new in (pid.get("map") or {}).items():
        if not isinstance(new, str):
            raise ValueError(f"{path}: [patient_id.map] {old!r} must map to text, not {new!r}")
        m.patient_ids[old.strip()] = new
    return m


def _load_csv(path: Path) -> CoercionMap:
    m = CoercionMap()
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{n}: expected old,new (2 columns), found {len(row)}")
            old, new = row[0].strip(), row[1].strip()
            if n == 1 and (old.lower() == "old" or old == "PatientID"):
                continue
            if not old:
                raise ValueError(f"{path}:{n}: empty old PatientID")
            if old in m.patient_ids and m.patient_ids[old] != new:
                raise ValueError(f"{path}:{n}: PatientID {old!r} mapped twice")
            m.patient_ids[old] = new
    return m


def load_mapping(path: "str | Path") -> CoercionMap:
    """Read a coercion mapping file: ``.toml`` (constants, PatientID map and prefix) or
    ``.csv`` (PatientID old,new). ValueError (naming the file and line) when it is not
    usable; OSError when it cannot be read."""
    p = Path(path)
    if p.suffix.lower() == ".toml":
        return _load_toml(p)
    if p.suffix.lower() == ".csv":
        return _load_csv(p)
    raise ValueError(f"{p}: a mapping file is .toml or .csv")
