"""Tests of the Q/R index back ends, fastdimse.qr.SQLiteIndex and PostgresIndex (each test
that builds an index runs against both: the ``backend`` parameter): import, C-FIND
matching at every level of both roots against a brute-force truth computed from the
generated archive, derived attributes, character sets, C-MOVE/C-GET lookups, removal,
threads, WAL, scale."""

from __future__ import annotations

import logging
import os
import sqlite3
from datetime import date, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


from tests.support.qr_index_data import (  # noqa: F401  (fixtures: make_index, archive)
    UNIQUE, LEVEL_KEYS, LEVELS, ROOT_LEVELS, CLASS_OF, PATIENTS, reopen, make_index, archive, entities, wild, query, check, norm, _ds, qr,
)

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.filterwarnings("ignore:Invalid value for VR")]


# ---------------------------------------------------------------------------
# import, storage


def test_import_counts_and_skips(archive):
    index, truth, result, folder = archive
    assert result.added == len(truth)
    assert index.count("IMAGE") == len(truth)
    assert index.count("SERIES") == len(entities(truth, "SERIES"))
    assert index.count("STUDY") == len(entities(truth, "STUDY"))
    assert index.count("PATIENT") == len(PATIENTS)
    skipped = sorted(os.path.basename(p) for p, _ in result.skipped)
    assert skipped == ["README.txt", "empty.dcm"]


def test_import_logs_a_warning_for_non_dicom(make_index, tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("hello")
    with make_index(tmp_path / "store") as index:
        with caplog.at_level(logging.WARNING, logger="fastdimse.qr"):
            result = index.import_folder(tmp_path)
    assert result.added == 0
    assert any("notes.txt" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("archive", ["sqlite"], indirect=True)
def test_wal_mode_and_query_indexes(archive):
    index, *_ = archive
    assert index.journal_mode == "wal"
    conn = sqlite3.connect(index.db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        for ix in ("ix_patient_patient_id", "ix_patient_patient_name_m",
                   "ix_study_study_date_m", "ix_study_accession_number", "ix_series_modality",
                   "ix_image_sop_class_uid", "ix_series_study_pk", "ix_image_series_pk"):
            assert ix in names
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT pk FROM study WHERE study_date_m BETWEEN ? AND ?",
            ("20200101", "20201231")))
        assert "ix_study_study_date_m" in plan
        plan = " ".join(str(r) for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT pk FROM image WHERE sop_instance_uid = ?", ("1",)))
        assert "INDEX" in plan.upper()
    finally:
        conn.close()
    assert os.path.dirname(index.db_path) == index.storage_dir


def test_is_a_qr_backend(archive):
    assert isinstance(archive[0], qr.QRBackend)


def test_reopen_keeps_the_index(archive):
    index, truth, _, folder = archive
    with reopen(archive[0], folder) as again:
        assert again.count("IMAGE") == len(truth)


# ---------------------------------------------------------------------------
# C-FIND: universal matching and return keys


@pytest.mark.parametrize("root,level", [(r, lv) for r in ROOT_LEVELS for lv in ROOT_LEVELS[r]])
def test_universal_returns_every_entity_with_exactly_the_requested_keys(archive, root, level):
    index, truth, *_ = archive
    rank = LEVELS.index(level)
    keys = {k: "" for lv in LEVELS[: rank + 1] for k in LEVEL_KEYS[lv]}
    keys.pop(UNIQUE[level])  # the unique key is returned even when not asked for
    if rank < 3:
        keys["SOPInstanceUID"] = ""  # a key below the level: returned empty
    keys["PatientWeight"] = ""      # a key the index does not know: returned empty
    got = check(index, truth, level, root, keys, lambda e: True)
    expected_unique = [UNIQUE[lv] for lv in (LEVELS if root == "patient" else LEVELS[1:])]
    expected_unique = expected_unique[: expected_unique.index(UNIQUE[level]) + 1]
    ents = entities(truth, level)
    for r in got:
        names = {e.keyword for e in r}
        assert names - {"SpecificCharacterSet"} == set(keys) | {"QueryRetrieveLevel"} | set(
            expected_unique)
        assert r.QueryRetrieveLevel == level
        e = ents[r[UNIQUE[level]].value]
        for k in keys:
            if k in ("SOPInstanceUID", "PatientWeight") and k != UNIQUE[level] and rank < 3 \
                    or k == "PatientWeight":
                assert norm(r[k].value) == "", k
            else:
                assert norm(r[k].value) == norm(e[k]), (k, r[k].value, e[k])


def test_responses_are_streamed_lazily(archive):
    index, truth, *_ = archive
    gen = index.find(_ds(QueryRetrieveLevel="IMAGE"), "IMAGE", "study")
    first = next(gen)
    assert first.QueryRetrieveLevel == "IMAGE"
    gen.close()  # C-CANCEL: the SCP closes the generator


# ---------------------------------------------------------------------------
# single value, empty value, list of UID


SINGLE_KEYS = [
    ("PATIENT", "patient", "PatientID", False),
    ("PATIENT", "patient", "PatientSex", False),
    ("PATIENT", "patient", "PatientBirthDate", False),
    ("PATIENT", "patient", "PatientName", True),
    ("STUDY", "study", "PatientName", True),
    ("STUDY", "study", "AccessionNumber", False),
    ("STUDY", "study", "StudyID", False),
    ("STUDY", "patient", "StudyDate", False),
    ("STUDY", "study", "StudyDescription", False),
    ("STUDY", "study", "ReferringPhysicianName", True),
    ("SERIES", "study", "Modality", False),
    ("SERIES", "patient", "SeriesNumber", False),
    ("SERIES", "study", "SeriesDescription", False),
    ("IMAGE", "study", "SOPClassUID", False),
    ("IMAGE", "patient", "InstanceNumber", False),
]


@pytest.mark.parametrize("level,root,key,ci", SINGLE_KEYS)
def test_single_value_matching(archive, level, root, key, ci):
    index, truth, *_ = archive
    values = {str(i[key]) for i in truth if str(i[key]) and "*" not in str(i[key])
              and "?" not in str(i[key])}
    absent = {"SeriesNumber": "999", "InstanceNumber": "999", "PatientBirthDate": "19000101",
              "StudyDate": "19000101", "PatientSex": "X", "Modality": "XA",
              "SOPClassUID": "1.2.3.4"}.get(key, "NO SUCH VALUE")
    probes = set(values) | {absent}
    if ci:
        probes |= {v.upper() for v in values} | {v.lower() for v in values}
    for probe in sorted(probes):
        def pred(e, probe=probe):
            stored = str(e[key])
            return stored.lower() == probe.lower() if ci else stored == probe
        check(index, truth, level, root, {key: probe}, pred)


def test_pn_is_case_insensitive_but_lo_is_not(archive):
    index, truth, *_ = archive
    got = query(index, "PATIENT", "patient", PatientName="doe^jane")
    assert [r.PatientID for r in got] == ["PAT002"]
    assert query(index, "PATIENT", "patient", PatientID="PAT002")
    assert not query(index, "PATIENT", "patient", PatientID="pat002")


def test_empty_value_matching(archive):
    index, truth, *_ = archive
    check(index, truth, "STUDY", "study", {"StudyDate": '""'}, lambda e: e["StudyDate"] == "")
    check(index, truth, "PATIENT", "patient", {"PatientName": '""'},
          lambda e: e["PatientName"] == "")
    assert any(e["StudyDate"] == "" for e in entities(truth, "STUDY").values())


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_list_of_uid_matching(archive, data):
    index, truth, *_ = archive
    level = data.draw(st.sampled_from(["STUDY", "SERIES", "IMAGE"]))
    uids = sorted(entities(truth, level))
    pick = data.draw(st.lists(st.sampled_from(uids), min_size=1, max_size=6, unique=True))
    pick_plus = pick + ["1.2.3.4.5.6.7.8.9"]  # an unknown UID in the list matches nothing
    got = check(index, truth, level, "study", {UNIQUE[level]: pick_plus},
                lambda e: e[UNIQUE[level]] in pick)
    assert len(got) == len(pick)


# ---------------------------------------------------------------------------
# wild cards (hypothesis patterns against fnmatch truth)


WILD_KEYS = [
    ("PATIENT", "patient", "PatientName", True),
    ("STUDY", "study", "PatientName", True),
    ("PATIENT", "patient", "PatientID", False),
    ("STUDY", "study", "StudyDescription", False),
    ("STUDY", "patient", "AccessionNumber", False),
    ("STUDY", "study", "ReferringPhysicianName", True),
    ("SERIES", "study", "SeriesDescription", False),
    ("SERIES", "patient", "Modality", False),
]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_wildcard_matching(archive, data):
    index, truth, *_ = archive
    level, root, key, ci = data.draw(st.sampled_from(WILD_KEYS))
    values = sorted({str(i[key]) for i in truth if i[key]})
    src = data.draw(st.sampled_from(values + ["zz"]))
    chars = []
    for ch in src:
        op = data.draw(st.sampled_from(["keep", "keep", "keep", "?", "*", "case"]))
        chars.append(ch if op == "keep" else ch.swapcase() if op == "case" else op)
    if data.draw(st.booleans()):
        chars.append("*")
    pattern = "".join(chars)
    assume("*" in pattern or "?" in pattern)
    universal = set(pattern) == {"*"}
    check(index, truth, level, root, {key: pattern},
          lambda e: universal or wild(pattern, str(e[key]), ci))


def test_wildcard_examples(archive):
    index, truth, *_ = archive
    check(index, truth, "PATIENT", "patient", {"PatientName": "smith*"},
          lambda e: e["PatientName"].lower().startswith("smith"))
    check(index, truth, "PATIENT", "patient", {"PatientID": "pat[*"},
          lambda e: e["PatientID"] == "pat[5]")
    check(index, truth, "PATIENT", "patient", {"PatientName": "*"}, lambda e: True)
    check(index, truth, "PATIENT", "patient", {"PatientName": "?*"},
          lambda e: e["PatientName"] != "")
    check(index, truth, "PATIENT", "patient", {"PatientName": "ямада*"},
          lambda e: e["PatientID"] == "PAT006")


# ---------------------------------------------------------------------------
# ranges


def _d(days):
    return (date(2019, 1, 1) + timedelta(days)).strftime("%Y%m%d")


@settings(max_examples=60, deadline=None)
@given(lo=st.one_of(st.none(), st.integers(-30, 1430)),
       hi=st.one_of(st.none(), st.integers(-30, 1430)))
def test_study_date_range(archive, lo, hi):
    index, truth, *_ = archive
    assume(lo is not None or hi is not None)
    key = ("" if lo is None else _d(lo)) + "-" + ("" if hi is None else _d(hi))

    def pred(e):
        if not e["StudyDate"]:
            return False
        d = e["StudyDate"]
        return (lo is None or d >= _d(lo)) and (hi is None or d <= _d(hi))
    check(index, truth, "STUDY", "study", {"StudyDate": key}, pred)
    check(index, truth, "SERIES", "study", {"StudyDate": key}, pred)


def test_birth_date_range_at_patient_level(archive):
    index, truth, *_ = archive
    check(index, truth, "PATIENT", "patient", {"PatientBirthDate": "19600101-19801231"},
          lambda e: e["PatientBirthDate"] and "19600101" <= e["PatientBirthDate"] <= "19801231")
    check(index, truth, "PATIENT", "patient", {"PatientBirthDate": "-19691231"},
          lambda e: e["PatientBirthDate"] and e["PatientBirthDate"] <= "19691231")


def _seconds(tm):
    """Start of a stored TM value in microseconds since midnight."""
    hh = int(tm[0:2])
    mm = int(tm[2:4]) if len(tm) >= 4 else 0
    ss = int(tm[4:6]) if len(tm) >= 6 else 0
    frac = int(tm[7:].ljust(6, "0")) if "." in tm else 0
    return ((hh * 60 + mm) * 60 + ss) * 1_000_000 + frac


@settings(max_examples=60, deadline=None)
@given(lo=st.one_of(st.none(), st.tuples(st.integers(0, 23), st.integers(0, 59))),
       hi=st.one_of(st.none(), st.tuples(st.integers(0, 23), st.integers(0, 59))))
def test_study_time_range_minute_precision(archive, lo, hi):
    index, truth, *_ = archive
    assume(lo is not None or hi is not None)
    key = ("" if lo is None else "%02d%02d" % lo) + "-" + ("" if hi is None else "%02d%02d" % hi)
    lo_us = None if lo is None else (lo[0] * 60 + lo[1]) * 60_000_000
    hi_us = None if hi is None else (hi[0] * 60 + hi[1] + 1) * 60_000_000 - 1  # whole minute

    def pred(e):
        v = _seconds(e["StudyTime"])
        return (lo_us is None or v >= lo_us) and (hi_us is None or v <= hi_us)
    check(index, truth, "STUDY", "patient", {"StudyTime": key}, pred)


# ---------------------------------------------------------------------------
# hierarchy: Patient Root vs Study Root


def test_patient_level_only_in_patient_root(archive):
    index, truth, *_ = archive
    assert len(query(index, "PATIENT", "patient")) == len(PATIENTS)
    with pytest.raises(qr.IdentifierError) as info:
        index.find(_ds(QueryRetrieveLevel="PATIENT"), "PATIENT", "study")
    assert info.value.status == 0xA900


def test_higher_unique_keys_restrict(archive):
    index, truth, *_ = archive
    for pid in ("PAT001", "pat[5]"):
        got = check(index, truth, "STUDY", "patient", {"PatientID": pid},
                    lambda e: e["PatientID"] == pid)
        assert all(r.PatientID == pid for r in got)
    study = sorted(entities(truth, "STUDY"))[3]
    check(index, truth, "SERIES", "patient",
          {"PatientID": entities(truth, "STUDY")[study]["PatientID"], "StudyInstanceUID": study},
          lambda e: e["StudyInstanceUID"] == study)
    # a wrong higher-level unique key empties the result
    assert not query(index, "SERIES", "patient", PatientID="NOBODY", StudyInstanceUID=study)
    series = sorted(entities(truth, "SERIES"))[2]
    check(index, truth, "IMAGE", "study",
          {"StudyInstanceUID": entities(truth, "SERIES")[series]["StudyInstanceUID"],
           "SeriesInstanceUID": series},
          lambda e: e["SeriesInstanceUID"] == series)


def test_root_decides_which_unique_keys_are_returned(archive):
    index, truth, *_ = archive
    for r in query(index, "STUDY", "study"):
        assert "PatientID" not in r and "StudyInstanceUID" in r
    for r in query(index, "STUDY", "patient"):
        assert r.PatientID != "" and "StudyInstanceUID" in r
    for r in query(index, "IMAGE", "patient"):
        assert {"PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"} <= {
            e.keyword for e in r}


def test_study_root_matches_patient_attributes_at_study_level(archive):
    index, truth, *_ = archive
    check(index, truth, "STUDY", "study", {"PatientName": "DOE*"},
          lambda e: e["PatientName"].lower().startswith("doe"))


def test_lower_level_keys_neither_restrict_nor_multiply(archive):
    index, truth, *_ = archive
    got = check(index, truth, "STUDY", "study", {"Modality": "CT", "SeriesInstanceUID": "",
                                                  "SOPInstanceUID": "1.2.3"}, lambda e: True)
    assert all(norm(r.Modality) == "" and norm(r.SOPInstanceUID) == "" for r in got)


def test_unknown_keys_do_not_restrict(archive):
    index, truth, *_ = archive
    check(index, truth, "STUDY", "study", {"PatientWeight": "70", "StudyComments": "x*"},
          lambda e: True)


# ---------------------------------------------------------------------------
# derived attributes


def test_derived_counts_and_modalities(archive):
    index, truth, *_ = archive
    got = query(index, "STUDY", "study", ModalitiesInStudy="", NumberOfStudyRelatedSeries="",
                NumberOfStudyRelatedInstances="")
    assert len(got) == len(entities(truth, "STUDY"))
    for r in got:
        insts = [i for i in truth if i["StudyInstanceUID"] == r.StudyInstanceUID]
        assert r.NumberOfStudyRelatedInstances == len(insts)
        assert r.NumberOfStudyRelatedSeries == len({i["SeriesInstanceUID"] for i in insts})
        mods = r.ModalitiesInStudy
        mods = [mods] if isinstance(mods, str) else list(mods)
        assert sorted(mods) == sorted({i["Modality"] for i in insts})
    for r in query(index, "PATIENT", "patient", NumberOfPatientRelatedStudies="",
                   NumberOfPatientRelatedSeries="", NumberOfPatientRelatedInstances=""):
        insts = [i for i in truth if i["PatientID"] == r.PatientID]
        assert r.NumberOfPatientRelatedInstances == len(insts)
        assert r.NumberOfPatientRelatedSeries == len({i["SeriesInstanceUID"] for i in insts})
        assert r.NumberOfPatientRelatedStudies == len({i["StudyInstanceUID"] for i in insts})
    for r in query(index, "SERIES", "study", NumberOfSeriesRelatedInstances=""):
        insts = [i for i in truth if i["SeriesInstanceUID"] == r.SeriesInstanceUID]
        assert r.NumberOfSeriesRelatedInstances == len(insts)


@pytest.mark.parametrize("key", ["MR", "CT\\US", "M?", "OT\\XA"])
def test_modalities_in_study_matching(archive, key):
    index, truth, *_ = archive
    wanted = key.split("\\")

    def pred(e):
        mods = {i["Modality"] for i in truth if i["StudyInstanceUID"] == e["StudyInstanceUID"]}
        return any(wild(w, mod) for w in wanted for mod in mods)
    check(index, truth, "STUDY", "study", {"ModalitiesInStudy": key}, pred)


def test_number_of_related_instances_single_value(archive):
    index, truth, *_ = archive
    counts = {}
    for i in truth:
        counts[i["SeriesInstanceUID"]] = counts.get(i["SeriesInstanceUID"], 0) + 1
    check(index, truth, "SERIES", "study", {"NumberOfSeriesRelatedInstances": "2"},
          lambda e: counts[e["SeriesInstanceUID"]] == 2)


# ---------------------------------------------------------------------------
# character sets


def test_specific_character_set_returned_as_stored(archive):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    index, truth, *_ = archive
    (r,) = query(index, "PATIENT", "patient", PatientID="PAT004", PatientName="")
    assert r.SpecificCharacterSet == "ISO_IR 100"
    assert str(r.PatientName) == "Müller^Jürgen"
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_dataset(fp, r)
    assert "Müller".encode("latin-1") in fp.getvalue()
    (r,) = query(index, "PATIENT", "patient", PatientID="PAT006", PatientName="")
    assert r.SpecificCharacterSet == "ISO_IR 192"
    (r,) = query(index, "PATIENT", "patient", PatientID="PAT001", PatientName="")
    assert "SpecificCharacterSet" not in r
    (r,) = query(index, "PATIENT", "patient", PatientID="PAT001", PatientName="",
                 SpecificCharacterSet="ISO_IR 100")
    assert r.SpecificCharacterSet == "ISO_IR 100"


def test_mixed_character_sets_fall_back_to_utf8(make_index, tmp_path):
    with make_index(tmp_path) as index:
        study = generate_uid()
        # UTF-8 first, then Latin-1 without a name: the Cyrillic name needs UTF-8
        for charset, name in (("ISO_IR 192", "Ямада^Таро"), ("ISO_IR 100", None)):
            header = {"SOPInstanceUID": generate_uid(), "SOPClassUID": CLASS_OF["CT"],
                      "StudyInstanceUID": study, "SeriesInstanceUID": generate_uid(),
                      "PatientID": "X", "PatientName": name, "SpecificCharacterSet": charset}
            index.add_instance(tmp_path / "f.dcm", header, ExplicitVRLittleEndian)
        (r,) = query(index, "PATIENT", "patient", PatientName="")
        assert r.SpecificCharacterSet == "ISO_IR 192"
        assert str(r.PatientName) == "Ямада^Таро"


# ---------------------------------------------------------------------------
# identifiers that do not match the SOP class


@pytest.mark.parametrize("identifier,level,root", [
    ({}, "STUDY", "study"),                                      # no QueryRetrieveLevel
    ({"QueryRetrieveLevel": ""}, None, "study"),
    ({"QueryRetrieveLevel": "PATIENT"}, None, "study"),         # not in Study Root
    ({"QueryRetrieveLevel": "FRAME"}, None, "patient"),
    ({"QueryRetrieveLevel": "STUDY"}, "SERIES", "study"),       # disagrees with the argument
    ({"QueryRetrieveLevel": "STUDY"}, None, "worklist"),        # not a Q/R root
    ({"QueryRetrieveLevel": "STUDY", "StudyDate": "2020-01-01"}, None, "study"),
])
def test_bad_identifiers_raise_at_call_time(archive, identifier, level, root):
    index, *_ = archive
    with pytest.raises(qr.IdentifierError) as info:
        index.find(_ds(**identifier), level, root)  # no iteration needed
    assert info.value.status == 0xA900


def test_undecodable_key_value_is_an_identifier_error(archive):
    """An identifier as an SCP gets it: raw elements that pydicom decodes on access."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    index, *_ = archive
    ds = _ds(QueryRetrieveLevel="SERIES")
    ds[0x00200011] = RawDataElement(Tag(0x00200011), "IS", 4, b"one ", 0, True, True)
    with pytest.raises(qr.IdentifierError) as info:
        index.find(ds, None, "study")
    assert info.value.status == 0xA900


def test_identifier_must_be_a_dataset_or_mapping(archive):
    index, *_ = archive
    with pytest.raises(qr.IdentifierError):
        index.find(42, "STUDY", "study")
    got = list(index.find({"QueryRetrieveLevel": "PATIENT", "PatientID": "PAT001"},
                          None, "patient"))
    assert [r.PatientID for r in got] == ["PAT001"]


# ---------------------------------------------------------------------------
# C-MOVE / C-GET lookups


def _refs(truth, pred):
    return {(i["SOPClassUID"], i["SOPInstanceUID"], i["TransferSyntaxUID"], i["path"])
            for i in truth if pred(i)}


def test_locate_each_level(archive):
    index, truth, *_ = archive
    for study in sorted(entities(truth, "STUDY"))[:5]:
        got = list(index.locate(_ds(QueryRetrieveLevel="STUDY", StudyInstanceUID=study),
                                "STUDY", "study"))
        assert {(r.sop_class_uid, r.sop_instance_uid, r.transfer_syntax, r.path)
                for r in got} == _refs(truth, lambda i: i["StudyInstanceUID"] == study)
        assert all(os.path.isfile(r.path) for r in got)
    got = index.locate(_ds(QueryRetrieveLevel="PATIENT", PatientID="pat[5]"), None, "patient")
    assert {r.sop_instance_uid for r in got} == {
        i["SOPInstanceUID"] for i in truth if i["PatientID"] == "pat[5]"}
    series = sorted(entities(truth, "SERIES"))[:3]
    got = index.locate(_ds(QueryRetrieveLevel="SERIES", SeriesInstanceUID=series), None, "study")
    assert {r.sop_instance_uid for r in got} == {
        i["SOPInstanceUID"] for i in truth if i["SeriesInstanceUID"] in series}
    one = truth[7]
    got = list(index.locate(_ds(QueryRetrieveLevel="IMAGE", StudyInstanceUID=one[
        "StudyInstanceUID"], SeriesInstanceUID=one["SeriesInstanceUID"],
        SOPInstanceUID=one["SOPInstanceUID"]), "IMAGE", "study"))
    assert [r.path for r in got] == [one["path"]]


def test_count_located_is_what_locate_lists(archive):
    index, truth, *_ = archive
    idents = [(_ds(QueryRetrieveLevel="STUDY", StudyInstanceUID=s), "study")
              for s in sorted(entities(truth, "STUDY"))[:3]]
    idents += [(_ds(QueryRetrieveLevel="PATIENT", PatientID="pat[5]"), "patient"),
               (_ds(QueryRetrieveLevel="SERIES", SeriesInstanceUID=sorted(
                   entities(truth, "SERIES"))[:3]), "study"),
               (_ds(QueryRetrieveLevel="STUDY", StudyInstanceUID="9.9.9"), "study")]
    sizes = set()
    for ident, root in idents:
        n = index.count_located(ident, None, root)
        assert n == len(list(index.locate(ident, None, root))), ident
        sizes.add(n)
    assert 0 in sizes and len(sizes) > 1  # an empty retrieve and others of several sizes
    with pytest.raises(qr.IdentifierError):
        index.count_located(_ds(QueryRetrieveLevel="STUDY"), None, "study")


def test_locate_uses_only_unique_keys(archive):
    index, truth, *_ = archive
    study = sorted(entities(truth, "STUDY"))[0]
    n = sum(i["StudyInstanceUID"] == study for i in truth)
    got = list(index.locate(_ds(QueryRetrieveLevel="STUDY", StudyInstanceUID=study,
                                StudyDescription="no such thing"), None, "study"))
    assert len(got) == n
    got = list(index.locate(_ds(QueryRetrieveLevel="STUDY", PatientID="NOBODY",
                                StudyInstanceUID=study), None, "patient"))
    assert got == []


@pytest.mark.parametrize("identifier", [
    {"QueryRetrieveLevel": "STUDY"},
    {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""},
    {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2.3"},
    {"StudyInstanceUID": "1.2.3"},
])
def test_locate_needs_the_unique_key(archive, identifier):
    index, *_ = archive
    with pytest.raises(qr.IdentifierError) as info:
        index.locate(_ds(**identifier), None, "study")
    assert info.value.status == 0xA900
