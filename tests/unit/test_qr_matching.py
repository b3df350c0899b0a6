"""Unit tests of fastdimse.qr.matching: PS3.4 C.2.2.2 key matching, in Python and as SQL.

Each rule is checked against a truth written independently here (fnmatch for wild
cards, datetime arithmetic for ranges), on hypothesis-generated data.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import sqlite3
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import example, HealthCheck, assume, given, settings
from hypothesis import strategies as st


from tests.support.qrload import load_qr as _load_qr  # noqa: E402


qr = _load_qr()
m = importlib.import_module(qr.__name__ + ".matching")

pytestmark = pytest.mark.timeout(120)

# ---------------------------------------------------------------------------
# helpers: evaluate a condition in SQLite over a list of stored values


def _sql_matches(cond, stored_values):
    """Indices of stored (already normalised) values that condition_sql selects."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (i INTEGER, v)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(stored_values)))
    sql, params = m.condition_sql(cond, "v")
    got = {row[0] for row in conn.execute(f"SELECT i FROM t WHERE {sql}", params)}
    conn.close()
    return got


def _py_matches(cond, stored_values):
    return {i for i, v in enumerate(stored_values) if m.match_value(cond, v)}


def _truth_wild(pattern, value, ci):
    """fnmatch truth: '*' any run, '?' one char, '[' literal."""
    if value is None:
        return False
    if ci:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


# ---------------------------------------------------------------------------
# kinds of matching


def test_universal_and_empty_and_single():
    assert m.parse_key("", "LO") == m.Universal()
    assert m.parse_key(None, "LO") == m.Universal()
    assert m.parse_key("*", "LO") == m.Universal()
    assert m.parse_key("***", "PN") == m.Universal()
    assert m.parse_key('""', "DA") == m.Empty()
    assert m.parse_key("  ABC ", "LO") == m.Single("ABC")
    assert m.parse_key("1.2.3\x00", "UI") == m.Single("1.2.3")
    assert m.parse_key("Doe^John", "PN") == m.Single("doe^john")
    assert m.parse_key("Doe^John", "PN", case_insensitive_pn=False) == m.Single("Doe^John")
    assert m.parse_key("7", "IS") == m.Single(7)
    # '*' is a wild card only for the VRs of C.2.2.2.4: not for UI
    assert m.parse_key("1.2.*", "UI") == m.Single("1.2.*")
    assert m.parse_key("AB*", "SH") == m.Wildcard("AB*")
    assert m.parse_key("ab?", "PN") == m.Wildcard("ab?")


def test_universal_matches_absent_values_but_wildcards_do_not():
    stored = [None, "abc", "x"]
    assert _sql_matches(m.Universal(), stored) == {0, 1, 2}
    assert _sql_matches(m.parse_key("*", "LO"), stored) == {0, 1, 2}
    assert _sql_matches(m.parse_key("*?", "LO"), stored) == {1, 2}
    assert _sql_matches(m.parse_key('""', "LO"), stored) == {0}
    assert _py_matches(m.parse_key('""', "LO"), stored) == {0}


def test_list_of_uids():
    cond = m.parse_key("1.2.3\\1.2.4\\1.2.3", "UI")
    assert isinstance(cond, m.AnyOf)
    stored = ["1.2.3", "1.2.4", "1.2.5", None, "1.2.30"]
    assert _sql_matches(cond, stored) == {0, 1}
    assert _py_matches(cond, stored) == {0, 1}
    # pydicom gives a MultiValue for a multi-valued UI key
    from pydicom.dataset import Dataset
    ds = Dataset()
    ds.StudyInstanceUID = ["1.2.5", "1.2.30"]
    assert _sql_matches(m.parse_key(ds.StudyInstanceUID, "UI"), stored) == {2, 4}


def test_multiple_values_with_wildcards_any_of():
    cond = m.parse_key(["CT", "M?"], "CS")
    stored = ["CT", "MR", "MG", "US", None]
    assert _sql_matches(cond, stored) == {0, 1, 2}
    assert _py_matches(cond, stored) == {0, 1, 2}


def test_pn_case_insensitive_single_value():
    cond = m.parse_key("DOE^JOHN", "PN")
    stored = [m.normalize_for_match(v, "PN") for v in ["Doe^John", "doe^john", "Doe^Johnny", None]]
    assert _sql_matches(cond, stored) == {0, 1}


def test_pn_trailing_empty_components_are_not_significant():
    stored = [m.normalize_for_match(v, "PN") for v in
              ["Doe^John^^^", "Doe^John", "Doe^John^^^=", "Doe^Johnny", "Doe^John^A"]]
    assert _sql_matches(m.parse_key("DOE^JOHN^", "PN"), stored) == {0, 1, 2}
    assert _sql_matches(m.parse_key("Doe^John", "PN", case_insensitive_pn=False),
                        [m.normalize_for_match("Doe^John^^", "PN", False)]) == {0}


def test_lo_is_case_sensitive():
    stored = ["Chest", "CHEST", "chest"]
    assert _sql_matches(m.parse_key("Chest", "LO"), stored) == {0}
    assert _sql_matches(m.parse_key("C*", "LO"), stored) == {0, 1}


def test_glob_special_bracket_is_literal():
    stored = ["PAT[7]", "PAT7", "PATx]"]
    assert _sql_matches(m.parse_key("PAT[7]", "LO"), stored) == {0}
    assert _sql_matches(m.parse_key("PAT[*", "LO"), stored) == {0}
    assert _sql_matches(m.parse_key("PAT?]", "LO"), stored) == {2}


_TEXT = st.text(alphabet="abAB[]^=.é1 ", min_size=0, max_size=8)
_PATTERN = st.text(alphabet="abAB[]^=.é1*?", min_size=1, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(_TEXT, min_size=1, max_size=12), pattern=_PATTERN,
       vr=st.sampled_from(["LO", "SH", "PN", "CS"]))
@example(values=["1"], pattern="?=", vr="PN")
@example(values=[""], pattern="*=", vr="PN")
@example(values=["="], pattern="?", vr="PN")
def test_wildcard_sql_and_python_agree_with_fnmatch(values, pattern, vr):
    assume("*" in pattern or "?" in pattern)
    stored = [m.normalize_for_match(v, vr) for v in values]
    cond = m.parse_key(pattern, vr)
    ci = vr == "PN"
    # PN: trailing empty components and groups are not significant (PS3.5 6.2), in the
    # key as in the stored value, so the truth compares canonical forms.
    canon = m._pn_canonical if ci else (lambda x: x)
    truth = {i for i, v in enumerate(values)
             if set(canon(pattern)) == {"*"} or _truth_wild(canon(pattern), canon(v.strip(" ")) or None, ci)}
    assert _sql_matches(cond, stored) == truth
    assert _py_matches(cond, stored) == truth


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_TEXT, min_size=1, max_size=12), data=st.data())
def test_wildcard_patterns_built_from_stored_values(values, data):
    """Patterns made by replacing characters of a stored value by '?' and runs by
    '*' always match that value, and match the others exactly as fnmatch says."""
    src = data.draw(st.sampled_from(values)).strip(" ")
    assume(src)
    chars = list(src)
    for i in range(len(chars)):
        op = data.draw(st.sampled_from(["keep", "keep", "?", "*"]))
        chars[i] = chars[i] if op == "keep" else op
    pattern = "".join(chars)
    assume("*" in pattern or "?" in pattern)
    stored = [m.normalize_for_match(v, "LO") for v in values]
    cond = m.parse_key(pattern, "LO")
    truth = {i for i, v in enumerate(values)
             if set(pattern) == {"*"} or _truth_wild(pattern, v.strip(" ") or None, False)}
    got = _sql_matches(cond, stored)
    assert got == truth
    assert values.index(next(v for v in values if v.strip(" ") == src)) in got


# ---------------------------------------------------------------------------
# normalisation and range matching


def test_normalize_date_time_datetime():
    assert m.normalize_date("20200131") == "20200131"
    assert m.normalize_date("2020.01.31") == "20200131"
    with pytest.raises(ValueError):
        m.normalize_date("2020013")
    assert m.normalize_time("07") == "070000.000000"
    assert m.normalize_time("07", high=True) == "075959.999999"
    assert m.normalize_time("0730") == "073000.000000"
    assert m.normalize_time("0730", high=True) == "073059.999999"
    assert m.normalize_time("073015.5") == "073015.500000"
    assert m.normalize_time("073015.5", high=True) == "073015.599999"
    assert m.normalize_time("07:30:15") == "073015.000000"
    with pytest.raises(ValueError):
        m.normalize_time("7")
    assert m.normalize_datetime("2020") == "20200101000000.000000"
    assert m.normalize_datetime("2020", high=True) == "20201231235959.999999"
    assert m.normalize_datetime("20200315103000+0100") == "20200315103000.000000"


def test_range_forms():
    assert m.parse_key("20200101-20201231", "DA") == m.Range("20200101", "20201231")
    assert m.parse_key("-20201231", "DA") == m.Range(None, "20201231")
    assert m.parse_key("20200101-", "DA") == m.Range("20200101", None)
    assert m.parse_key("20200101", "DA") == m.Single("20200101")
    assert m.parse_key("-", "DA") == m.Universal()
    assert m.parse_key("1130-", "TM") == m.Range("113000.000000", None)
    assert m.parse_key("1130", "TM") == m.Range("113000.000000", "113059.999999")
    for bad in ("2020-01-01", "2020AB01-", "20200101-2021", "garbage"):
        with pytest.raises(qr.IdentifierError) as info:
            m.parse_key(bad, "DA")
        assert info.value.status == 0xA900
    with pytest.raises(qr.IdentifierError):
        m.parse_key("1-2", "TM")
    with pytest.raises(qr.IdentifierError):
        m.parse_key("x", "IS")


_DAY0 = date(2019, 1, 1)


@settings(max_examples=300, deadline=None)
@given(days=st.lists(st.one_of(st.none(), st.integers(0, 1500)), min_size=1, max_size=15),
       lo=st.one_of(st.none(), st.integers(0, 1500)),
       hi=st.one_of(st.none(), st.integers(0, 1500)))
def test_date_range_against_date_arithmetic(days, lo, hi):
    values = [None if d is None else (_DAY0 + timedelta(d)).strftime("%Y%m%d") for d in days]
    key = ("" if lo is None else (_DAY0 + timedelta(lo)).strftime("%Y%m%d")) + "-" + \
          ("" if hi is None else (_DAY0 + timedelta(hi)).strftime("%Y%m%d"))
    cond = m.parse_key(key, "DA")
    truth = {i for i, d in enumerate(days)
             if (lo is None and hi is None)
             or (d is not None and (lo is None or d >= lo) and (hi is None or d <= hi))}
    stored = [m.normalize_for_match(v, "DA") for v in values]
    assert _sql_matches(cond, stored) == truth
    assert _py_matches(cond, stored) == truth


_TIME = st.tuples(st.integers(0, 23), st.integers(0, 59), st.integers(0, 59),
                  st.integers(0, 999999), st.integers(1, 4))  # precision 1..4


def _fmt_time(t):
    hh, mm, ss, us, prec = t
    out = f"{hh:02d}"
    if prec >= 2:
        out += f"{mm:02d}"
    if prec >= 3:
        out += f"{ss:02d}"
    if prec >= 4:
        out += f".{us:06d}"
    return out


def _span(t):
    """(first, last) microsecond of the day that a TM value at its precision covers."""
    hh, mm, ss, us, prec = t
    unit = {1: 3600_000_000, 2: 60_000_000, 3: 1_000_000, 4: 1}[prec]
    start = hh * 3600_000_000
    if prec >= 2:
        start += mm * 60_000_000
    if prec >= 3:
        start += ss * 1_000_000
    if prec >= 4:
        start += us
    return start, start + unit - 1


@settings(max_examples=300, deadline=None)
@given(times=st.lists(_TIME, min_size=1, max_size=15),
       lo=st.one_of(st.none(), _TIME), hi=st.one_of(st.none(), _TIME))
def test_time_range_against_microsecond_truth(times, lo, hi):
    assume(lo is not None or hi is not None)
    key = ("" if lo is None else _fmt_time(lo)) + "-" + ("" if hi is None else _fmt_time(hi))
    cond = m.parse_key(key, "TM")
    truth = set()
    for i, t in enumerate(times):
        v = _span(t)[0]  # a stored value is the instant it starts at
        if (lo is None or v >= _span(lo)[0]) and (hi is None or v <= _span(hi)[1]):
            truth.add(i)
    stored = [m.normalize_for_match(_fmt_time(t), "TM") for t in times]
    assert _sql_matches(cond, stored) == truth
    assert _py_matches(cond, stored) == truth


@settings(max_examples=100, deadline=None)
@given(times=st.lists(_TIME, min_size=1, max_size=10), key=_TIME)
def test_time_single_value_covers_its_precision(times, key):
    cond = m.parse_key(_fmt_time(key), "TM")
    lo, hi = _span(key)
    truth = {i for i, t in enumerate(times) if lo <= _span(t)[0] <= hi}
    stored = [m.normalize_for_match(_fmt_time(t), "TM") for t in times]
    assert _sql_matches(cond, stored) == truth


def test_datetime_range():
    stored = [m.normalize_for_match(v, "DT") for v in
              ["20191231235959", "2020", "20200615", "20201231235959.999999", "2021", None]]
    assert _sql_matches(m.parse_key("2020-2020", "DT"), stored) == {1, 2, 3}
    assert _sql_matches(m.parse_key("2020-", "DT"), stored) == {1, 2, 3, 4}
    assert _sql_matches(m.parse_key("-202006", "DT"), stored) == {0, 1, 2}


def test_sequence_keys_do_not_restrict():
    assert m.parse_key([], "SQ") == m.Universal()


# ---------------------------------------------------------------------------
# levels and roots


def test_roots():
    assert m.normalize_root("study") == m.STUDY_ROOT
    assert m.normalize_root("Patient") == m.PATIENT_ROOT
    assert m.normalize_root("1.2.840.10008.5.1.4.1.2.2.1") == m.STUDY_ROOT
    assert m.normalize_root("1.2.840.10008.5.1.4.1.2.1.2") == m.PATIENT_ROOT
    for bad in ("worklist", "1.2.840.10008.5.1.4.31", ""):
        with pytest.raises(qr.IdentifierError):
            m.normalize_root(bad)


def test_query_level_validation():
    from pydicom.dataset import Dataset
    ds = Dataset()
    with pytest.raises(qr.IdentifierError, match="QueryRetrieveLevel"):
        m.query_level(ds, "STUDY", "study")
    ds.QueryRetrieveLevel = "PATIENT"
    with pytest.raises(qr.IdentifierError, match="Study Root"):
        m.query_level(ds, None, "study")
    assert m.query_level(ds, None, "patient") == "PATIENT"
    with pytest.raises(qr.IdentifierError, match="differs"):
        m.query_level(ds, "STUDY", "patient")
    ds.QueryRetrieveLevel = "FRAME"
    with pytest.raises(qr.IdentifierError):
        m.query_level(ds, None, "patient")
    assert m.required_unique_keys("IMAGE", "study") == (
        "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
    assert m.required_unique_keys("SERIES", "patient") == (
        "PatientID", "StudyInstanceUID", "SeriesInstanceUID")


def test_error_statuses():
    assert qr.IdentifierError("x").status == 0xA900
    assert qr.UnableToProcess("x").status == 0xC000
    assert issubclass(qr.IdentifierError, qr.QRError)
