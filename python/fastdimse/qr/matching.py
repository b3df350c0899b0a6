"""C-FIND key matching (PS3.4 C.2.2.2), the Q/R information model levels and roots.

Theory of operation
-------------------
A request identifier holds *keys*. Each key's value decides the kind of matching
(PS3.4 C.2.2.2); :func:`parse_key` turns one value into a small immutable
condition object, and :func:`condition_sql` turns a condition into an SQL
fragment over a column of the index. :func:`match_value` applies the same
condition in Python (used where SQL cannot, and handy for custom back ends).

Kinds of matching and the choices this module makes where the standard leaves
them to the implementation (write these into the conformance statement):

- **Universal matching** (C.2.2.2.3): a zero-length value, or a value made only of
  ``*`` on a VR that allows wild cards (C.2.2.2.4 note), matches every entity,
  including those where the attribute is absent or empty.
- **Empty value matching**: a value of exactly two QUOTATION MARKs (``""``)
  matches entities whose attribute is absent or empty (PS3.4 C.2.2.2.1, 2019+).
- **Single value matching** (C.2.2.2.1): exact match after removing leading and
  trailing spaces (and trailing NULs for UI), which PS3.5 says are not significant
  for these VRs. Case sensitive, except for PN: PN values are matched
  **case-insensitively** (``str.lower()`` on both sides), which C.2.2.2.1 allows.
  IS keys are compared as integers.
- **Wild card matching** (C.2.2.2.4): for VRs AE, CS, LO, LT, PN, SH, ST, UC, UR,
  UT a value containing ``*`` or ``?``: ``*`` matches any sequence (also empty),
  ``?`` exactly one character. Case sensitive except PN (as above). PN values,
  including component groups separated by ``=``, are matched as one literal
  string; no fuzzy matching. Trailing empty PN components are not significant
  (``Doe^John^^`` is ``Doe^John``, PS3.5 6.2).
- **Range matching** (C.2.2.2.5) for DA, TM, DT: ``a-b``, ``-b``, ``a-``, bounds
  inclusive. Values are normalised first (legacy ``.`` in DA and ``:`` in TM
  removed; DT offsets ``&ZZXX`` ignored) and a bound given at a coarser precision
  covers its whole span: ``-1130`` includes 11:30:59.999999, ``2020-`` (DT)
  starts at 2020-01-01. A single DA/TM/DT value without ``-`` is the range from
  itself to itself under the same rule (``1130`` matches 11:30:xx). Combined
  date-time matching of two keys (C.2.2.2.5.1) is not supported: StudyDate and
  StudyTime are matched independently. In a DT key ``-`` always separates a
  range, so negative UTC offsets cannot be written (``+ZZXX`` is accepted and
  ignored).
- **List of UID matching** (C.2.2.2.2): a UI value with several values separated
  by ``\\`` matches any of them.
- **Multiple values** on other VRs (e.g. ModalitiesInStudy ``CT\\MR``): the key
  matches if any one of the values matches (each value may itself be a wild
  card pattern).
- **Sequence matching** (C.2.2.2.6) is not supported: a sequence key is returned
  as an empty sequence and does not restrict the query.

Invalid keys (a malformed date range, a non-integer IS) raise
:class:`~fastdimse.qr.backend.IdentifierError` (status 0xA900).

This module imports only the standard library and pydicom.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence, Union

from .. import uids
from .backend import IdentifierError

__all__ = [
    "Universal", "Empty", "Single", "Wildcard", "Range", "AnyOf", "Condition",
    "WILDCARD_VRS", "parse_key", "match_value", "condition_sql", "like_escape",
    "normalize_date", "normalize_time", "normalize_datetime", "normalize_for_match",
    "PATIENT", "STUDY", "SERIES", "IMAGE", "LEVELS", "PATIENT_ROOT", "STUDY_ROOT",
    "ROOT_LEVELS", "UNIQUE_KEYS", "normalize_root", "query_level",
    "required_unique_keys",
]

# ---------------------------------------------------------------------------
# Levels and roots (PS3.4 C.3, C.6.1 Patient Root, C.6.2 Study Root)

PATIENT, STUDY, SERIES, IMAGE = "PATIENT", "STUDY", "SERIES", "IMAGE"
LEVELS = (PATIENT, STUDY, SERIES, IMAGE)
PATIENT_ROOT, STUDY_ROOT = "PATIENT", "STUDY"

#: Levels each information model allows, top to bottom.
ROOT_LEVELS = {
    PATIENT_ROOT: (PATIENT, STUDY, SERIES, IMAGE),
    STUDY_ROOT: (STUDY, SERIES, IMAGE),
}

#: The unique key of each level (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEYS = {
    PATIENT: "PatientID",
    STUDY: "StudyInstanceUID",
    SERIES: "SeriesInstanceUID",
    IMAGE: "SOPInstanceUID",
}

# SOP classes of the two roots (FIND, MOVE, GET), so that an SCP may pass the
# abstract syntax UID of the presentation context as ``root``.
_ROOT_UIDS = {
    **{uid: PATIENT_ROOT for uid in uids.PATIENT_ROOT_SOP_CLASSES},
    **{uid: STUDY_ROOT for uid in uids.STUDY_ROOT_SOP_CLASSES},
}
_ROOT_NAMES = {
    "patient": PATIENT_ROOT, "patient_root": PATIENT_ROOT, "patientroot": PATIENT_ROOT,
    "study": STUDY_ROOT, "study_root": STUDY_ROOT, "studyroot": STUDY_ROOT,
}


def normalize_root(root: str) -> str:
    """``"patient"``/``"study"`` (any case, or ``"patient_root"``), or a Patient/Study
    Root FIND/MOVE/GET SOP class UID -> :data:`PATIENT_ROOT` or :data:`STUDY_ROOT`.

    Anything else raises :class:`IdentifierError`: an SCP should not get here
    with another SOP class, so the identifier "does not match the SOP class".
    """
    if isinstance(root, str):
        key = root.strip()
        if key in _ROOT_UIDS:
            return _ROOT_UIDS[key]
        name = key.lower().replace(" ", "_").replace("-", "_")
        if name in _ROOT_NAMES:
            return _ROOT_NAMES[name]
    raise IdentifierError(f"unsupported query/retrieve information model {root!r}: "
                          "expected 'patient' or 'study' (or a Patient/Study Root SOP class UID)")


def query_level(identifier: Any, level: str | None, root: str) -> str:
    """Validate and return the query/retrieve level.

    The identifier's QueryRetrieveLevel (0008,0052) is authoritative (it is what
    travels on the wire). ``level``, when given, must agree with it; when the
    identifier has none, a missing level is an error (PS3.4 C.4.1.1.3.1: the
    attribute is required) even if ``level`` is given, so that a caller cannot
    hide a malformed request. Raises :class:`IdentifierError`.
    """
    root_name = normalize_root(root)
    raw = identifier.get("QueryRetrieveLevel", None) if identifier is not None else None
    if raw is None or str(raw).strip() == "":
        raise IdentifierError("the identifier has no QueryRetrieveLevel (0008,0052)")
    got = str(raw).strip().upper()
    if level is not None and str(level).strip().upper() != got:
        raise IdentifierError(f"QueryRetrieveLevel {got!r} in the identifier differs "
                              f"from the requested level {level!r}")
    if got not in ROOT_LEVELS[root_name]:
        raise IdentifierError(f"QueryRetrieveLevel {got!r} is not valid for the "
                              f"{root_name.title()} Root information model "
                              f"(allowed: {', '.join(ROOT_LEVELS[root_name])})")
    return got


def required_unique_keys(level: str, root: str) -> tuple[str, ...]:
    """Unique keys of ``level`` and of every level above it in ``root``:
    the keys every response carries (and that identify a match for move/get)."""
    levels = ROOT_LEVELS[normalize_root(root)]
    return tuple(UNIQUE_KEYS[lv] for lv in levels[: levels.index(level) + 1])


# ---------------------------------------------------------------------------
# Conditions


@dataclass(frozen=True)
class Universal:
    """Matches every entity (zero-length key, or ``*``)."""


@dataclass(frozen=True)
class Empty:
    """Matches entities where the attribute is absent or empty (key ``""``)."""


@dataclass(frozen=True)
class Single:
    """Exact value; ``value`` is already normalised (see :func:`normalize_for_match`)."""
    value: Any


@dataclass(frozen=True)
class Wildcard:
    """``*``/``?`` pattern; lower-cased already when matching is case-insensitive."""
    pattern: str


@dataclass(frozen=True)
class Range:
    """Inclusive range of normalised DA/TM/DT strings; ``None`` = open end."""
    low: str | None
    high: str | None


@dataclass(frozen=True)
class AnyOf:
    """Any of several conditions (list of UIDs, or a multi-valued key)."""
    options: tuple


Condition = Union[Universal, Empty, Single, Wildcard, Range, AnyOf]

#: VRs for which ``*`` and ``?`` are wild cards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_STRIP_BOTH = frozenset({"AE", "CS", "LO", "PN", "SH", "UC", "DA", "TM", "DT", "IS", "DS", "AS"})
_DATE_VRS = frozenset({"DA", "TM", "DT"})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _clean(value: str, vr: str) -> str:
    """Drop the padding PS3.5 says is not significant."""
    if vr == "UI":
        return value.strip("\x00 ")
    if vr in _STRIP_BOTH:
        return value.strip(" ")
    return value.rstrip(" ")  # ST, LT, UT, UR: leading spaces are significant


def _pn_canonical(value: str) -> str:
    """PS3.5 6.2: trailing empty components (``^``) and component groups (``=``)
    may be left out, so ``Doe^John^^^`` and ``Doe^John`` are the same name."""
    return "=".join(g.rstrip("^ ") for g in value.split("=")).rstrip("=")


def _values(raw: Any) -> list[str]:
    """The values of a key as strings (pydicom MultiValue, list, or a str that may
    still hold backslashes when it came from a dict)."""
    if raw is None:
        return []
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw).decode("ascii", "replace")
    if isinstance(raw, str):
        return raw.split("\\") if raw != "" else []
    if isinstance(raw, (list, tuple)) or type(raw).__name__ == "MultiValue":
        return [_text(v) for v in raw]
    return [_text(raw)]


# --- DA / TM / DT normalisation -------------------------------------------

_TM_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_DT_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")


def normalize_date(value: str) -> str:
    """DA -> ``YYYYMMDD`` (also accepts the ACR-NEMA form ``YYYY.MM.DD``).
    Raises ValueError if it is not a date."""
    v = value.strip().replace(".", "")
    if len(v) != 8 or not v.isdigit():
        raise ValueError(f"not a DA value: {value!r}")
    return v


def normalize_time(value: str, high: bool = False) -> str:
    """TM -> ``HHMMSS.ffffff``. Missing components are filled with their lowest
    value, or with their highest when ``high`` (the end of a range bound)."""
    v = value.strip().replace(":", "")
    m = _TM_RE.match(v)
    if not m:
        raise ValueError(f"not a TM value: {value!r}")
    hh, mm, ss, frac = m.groups()
    fill = "9" if high else "0"
    mm = mm if mm is not None else ("59" if high else "00")
    if ss is None:
        ss, frac = ("59" if high else "00"), None
    frac = (frac or "").ljust(6, fill)
    return f"{hh}{mm}{ss}.{frac}"


def normalize_datetime(value: str, high: bool = False) -> str:
    """DT -> ``YYYYMMDDHHMMSS.ffffff`` (UTC offset ignored), filled as in
    :func:`normalize_time`."""
    v = value.strip()
    m = _DT_RE.match(v)
    if not m:
        raise ValueError(f"not a DT value: {value!r}")
    y, mo, d, hh, mi, ss, frac, _offset = m.groups()
    if high:
        parts = [y, mo or "12", d or "31", hh or "23", mi or "59", ss or "59"]
    else:
        parts = [y, mo or "01", d or "01", hh or "00", mi or "00", ss or "00"]
    fill = "9" if high else "0"
    if ss is None:
        frac = None
    return "".join(parts) + "." + (frac or "").ljust(6, fill)


def normalize_for_match(value: Any, vr: str, case_insensitive_pn: bool = True) -> Any:
    """Normalise a *stored* value the way keys are normalised, or None if it is
    empty. A DA/TM/DT or IS value that does not parse also gives None: it is then
    matched as if empty (universal and empty-value keys only); the raw value is
    still returned in responses."""
    if value is None:
        return None
    if vr == "IS":
        try:
            return int(_text(value).strip())
        except ValueError:
            return None
    s = _clean(_text(value), vr)
    if s == "":
        return None
    try:
        if vr == "DA":
            return normalize_date(s)
        if vr == "TM":
            return normalize_time(s)
        if vr == "DT":
            return normalize_datetime(s)
    except ValueError:
        return None
    if vr == "PN":
        s = _pn_canonical(s)
        if s == "":
            return None
        return s.lower() if case_insensitive_pn else s
    return s


def _parse_range(text: str, vr: str) -> Range:
    lo, _, hi = text.partition("-")
    lo, hi = lo.strip(), hi.strip()
    try:
        if vr == "DA":
            return Range(normalize_date(lo) if lo else None, normalize_date(hi) if hi else None)
        if vr == "TM":
            return Range(normalize_time(lo) if lo else None,
                         normalize_time(hi, high=True) if hi else None)
        return Range(normalize_datetime(lo) if lo else None,
                     normalize_datetime(hi, high=True) if hi else None)
    except ValueError as exc:
        raise IdentifierError(f"bad {vr} matching key {text!r}: {exc}") from None


def _parse_one(text: str, vr: str, keyword: str, case_insensitive_pn: bool) -> Condition:
    text = _clean(text, vr)
    if text == "":
        return Universal()
    if text == '""':
        return Empty()
    if vr in _DATE_VRS:
        # In a DT key "-" is always the range separator; a "+ZZXX" offset is
        # dropped (offsets are ignored), a negative one cannot be told apart.
        body = re.sub(r"\+\d{4}", "", text) if vr == "DT" else text
        if "-" in body:
            r = _parse_range(body, vr)
            return Universal() if r.low is None and r.high is None else r
        if vr == "DA":
            r = _parse_range(f"{body}-{body}", vr)
            return Single(r.low)
        return _parse_range(f"{body}-{body}", vr)
    if vr == "IS":
        try:
            return Single(int(text))
        except ValueError:
            raise IdentifierError(f"bad IS matching key {keyword}={text!r}") from None
    lower = vr == "PN" and case_insensitive_pn
    if vr == "PN":
        text = _pn_canonical(text) or text
    if vr in WILDCARD_VRS and ("*" in text or "?" in text):
        if set(text) == {"*"}:
            return Universal()
        return Wildcard(text.lower() if lower else text)
    return Single(text.lower() if lower else text)


def parse_key(raw: Any, vr: str, keyword: str = "", case_insensitive_pn: bool = True) -> Condition:
    """Turn one key's value into a :data:`Condition` (see the module docstring).

    ``raw`` is the pydicom element value (str, MultiValue, int, None...) and ``vr``
    the attribute's VR from the data dictionary. Sequences (``SQ``) and VRs that
    are not matched here give :class:`Universal`.
    """
    if vr in ("SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return Universal()
    values = _values(raw)
    if not values:
        return Universal()
    conds = [_parse_one(v, vr, keyword, case_insensitive_pn) for v in values]
    if len(conds) == 1:
        return conds[0]
    if any(isinstance(c, Universal) for c in conds):
        # "a\" has an empty value in the list: PS3.4 gives it no meaning; treat
        # the whole key as universal rather than guess.
        return Universal()
    return AnyOf(tuple(dict.fromkeys(conds)))


# ---------------------------------------------------------------------------
# Applying conditions


def _wild_regex(pattern: str) -> re.Pattern:
    parts = []
    for ch in pattern:
        parts.append(".*" if ch == "*" else "." if ch == "?" else re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def match_value(cond: Condition, stored: Any) -> bool:
    """Does a stored value, normalised with :func:`normalize_for_match` (None when
    absent or empty), satisfy ``cond``? ``stored`` may also be a list of such
    values (a multi-valued attribute): it matches if any element does."""
    if isinstance(stored, (list, tuple)):
        if isinstance(cond, (Universal,)):
            return True
        if isinstance(cond, Empty):
            return all(s is None for s in stored)
        return any(match_value(cond, s) for s in stored)
    if isinstance(cond, Universal):
        return True
    if isinstance(cond, Empty):
        return stored is None
    if stored is None:
        return False
    if isinstance(cond, Single):
        return stored == cond.value
    if isinstance(cond, Wildcard):
        return _wild_regex(cond.pattern).fullmatch(str(stored)) is not None
    if isinstance(cond, Range):
        s = str(stored)
        return (cond.low is None or s >= cond.low) and (cond.high is None or s <= cond.high)
    if isinstance(cond, AnyOf):
        return any(match_value(c, stored) for c in cond.options)
    raise TypeError(f"not a condition: {cond!r}")


def glob_escape(pattern: str) -> str:
    """A DICOM wild card pattern as an SQLite GLOB pattern: ``*`` and ``?`` keep
    their meaning (a DICOM key cannot hold a literal ``*`` or ``?``), and ``[``,
    GLOB's only other special character, is made literal."""
    return pattern.replace("[", "[[]")


def like_escape(pattern: str) -> str:
    """A DICOM wild card pattern as an SQL ``LIKE ... ESCAPE '\\'`` pattern (standard
    SQL, for databases without GLOB such as PostgreSQL): ``*`` -> ``%``, ``?`` -> ``_``,
    and LIKE's own ``%``, ``_`` and the escape character made literal."""
    out = []
    for ch in pattern:
        if ch in "\\%_":
            out.append("\\" + ch)
        else:
            out.append("%" if ch == "*" else "_" if ch == "?" else ch)
    return "".join(out)


def condition_sql(cond: Condition, column: str, wildcard: str = "glob") -> tuple[str, list]:
    """SQL boolean expression (and its parameters, ``?`` placeholders) for ``cond`` on
    ``column``, which holds values normalised with :func:`normalize_for_match` (NULL
    when absent or empty). Universal gives ``"1=1"``. Wild cards use SQLite's GLOB, or
    with ``wildcard="like"`` a case-sensitive ``LIKE ? ESCAPE '\\'`` (portable SQL; the
    column must compare bytewise, e.g. COLLATE "C", for the same answers as GLOB)."""
    if isinstance(cond, Universal):
        return "1=1", []
    if isinstance(cond, Empty):
        return f"{column} IS NULL", []
    if isinstance(cond, Single):
        return f"{column} = ?", [cond.value]
    if isinstance(cond, Wildcard):
        if wildcard == "like":
            return f"{column} LIKE ? ESCAPE '\\'", [like_escape(cond.pattern)]
        return f"{column} GLOB ?", [glob_escape(cond.pattern)]
    if isinstance(cond, Range):
        if cond.low is not None and cond.high is not None:
            return f"{column} BETWEEN ? AND ?", [cond.low, cond.high]
        if cond.low is not None:
            return f"{column} >= ?", [cond.low]
        return f"{column} <= ?", [cond.high]
    if isinstance(cond, AnyOf):
        singles = [c.value for c in cond.options if isinstance(c, Single)]
        others = [c for c in cond.options if not isinstance(c, Single)]
        parts: list[str] = []
        params: list = []
        if singles:
            parts.append(f"{column} IN ({', '.join('?' * len(singles))})")
            params.extend(singles)
        for c in others:
            sql, p = condition_sql(c, column, wildcard)
            parts.append(sql)
            params.extend(p)
        return "(" + " OR ".join(parts) + ")", params
    raise TypeError(f"not a condition: {cond!r}")


def is_universal(cond: Condition) -> bool:
    return isinstance(cond, Universal)


def unique_key_values(cond: Condition) -> Sequence[Any] | None:
    """The exact values a unique-key condition allows, or None if it is not a
    single value / list of values (wild card, range, universal)."""
    if isinstance(cond, Single):
        return [cond.value]
    if isinstance(cond, AnyOf) and all(isinstance(c, Single) for c in cond.options):
        return [c.value for c in cond.options]
    return None
