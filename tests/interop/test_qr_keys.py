"""Complete C-FIND answers (PS3.4 C.6.1.1 / C.6.2.1, C.4.1.1.3.2): the derived keys
(SOPClassesInStudy, ModalitiesInStudy, the Number of ... Related ... counts at every
level), RetrieveAETitle (the SCP's AE title), InstanceAvailability and, for values that
are not plain ASCII, SpecificCharacterSet. Asked by dcmtk's findscu and by pynetdicom,
in Patient Root and Study Root, of our DICOMSCP whose index was filled by C-STORE; every
value is compared with the truth of what was stored. Also: the schema migration and the
header conversion the indexer uses."""

from __future__ import annotations

import sqlite3

import pytest

from tests.support import qr_helpers as qh
from tests.support.peers import HOST, make_scu
from tests.support.qrload import load_qr

qr = load_qr()

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore:Invalid value for VR")]

QR_AE = "KEYSSCP"
COUNTS = {
    "PATIENT": ("NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                "NumberOfPatientRelatedInstances"),
    "STUDY": ("NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "SERIES": ("NumberOfSeriesRelatedInstances",),
    "IMAGE": (),
}
STUDY_ONLY = ("ModalitiesInStudy", "SOPClassesInStudy")
ALWAYS = ("RetrieveAETitle", "InstanceAvailability")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return qh.write_archive(tmp_path_factory.mktemp("keys-src"), qh.archive_truth(tag=7))


@pytest.fixture(scope="module")
def server(tmp_path_factory, archive):
    scp, remote = qh.start_our_qr(QR_AE, storage_dir=tmp_path_factory.mktemp("keys-storage"))
    try:
        results = make_scu().store(remote, [i.path for i in archive])
        assert [r.status for r in results] == [0] * len(archive)
        yield scp, remote
    finally:
        scp.stop()


def _under(archive, level, uid):
    key = qh.UNIQUE_KEYS[level]
    return [i for i in archive if i.value(key) == uid]


def _expected(archive, level: str, uid: str) -> dict:
    insts = _under(archive, level, uid)
    pid = insts[0].PatientID
    of_patient = [i for i in archive if i.PatientID == pid]
    out = {"RetrieveAETitle": QR_AE, "InstanceAvailability": "ONLINE"}
    if level in ("PATIENT", "STUDY"):
        out["NumberOfPatientRelatedStudies"] = len({i.StudyInstanceUID for i in of_patient})
        out["NumberOfPatientRelatedSeries"] = len({i.SeriesInstanceUID for i in of_patient})
        out["NumberOfPatientRelatedInstances"] = len(of_patient)
    if level == "STUDY":
        out["NumberOfStudyRelatedSeries"] = len({i.SeriesInstanceUID for i in insts})
        out["NumberOfStudyRelatedInstances"] = len(insts)
        out["ModalitiesInStudy"] = sorted({i.Modality for i in insts})
        out["SOPClassesInStudy"] = sorted({i.SOPClassUID for i in insts})
    if level == "SERIES":
        out["NumberOfSeriesRelatedInstances"] = len(insts)
    return out


def _keys_for(level: str, root: str) -> list[str]:
    keys = list(ALWAYS) + list(COUNTS[level])
    if level == "STUDY":
        keys += list(STUDY_ONLY)
        keys += list(COUNTS["PATIENT"])  # patient attributes at study level (C.6.2.1.2)
    return keys


def _value(answer, keyword):
    value = answer.get(keyword)
    if value is None:
        return None
    if keyword in STUDY_ONLY:
        return sorted(str(v) for v in (value if isinstance(value, (list, tuple)) or
                                       type(value).__name__ == "MultiValue" else [value]))
    if keyword.startswith("NumberOf"):
        return int(value)
    return str(value)


def _check(answers, archive, level, keys):
    key = qh.UNIQUE_KEYS[level]
    assert answers, "no answers"
    for a in answers:
        want = _expected(archive, level, str(a.get(key)))
        for kw in keys:
            assert kw in a, f"{kw} missing from {a}"
            assert _value(a, kw) == want[kw], f"{kw}: {_value(a, kw)!r}, want {want[kw]!r}"


def _study_of(archive, patient_id):
    return next(i.StudyInstanceUID for i in archive if i.PatientID == patient_id)


def _queries(archive):
    pat3 = _study_of(archive, "PAT003")  # CT and MR series: two SOP classes, two modalities
    series = next(i.SeriesInstanceUID for i in archive if i.StudyInstanceUID == pat3)
    return [
        ("patient", "PATIENT", {}),
        ("patient", "STUDY", {"PatientID": "PAT003"}),
        ("study", "STUDY", {}),
        ("study", "SERIES", {"StudyInstanceUID": pat3}),
        ("patient", "SERIES", {"PatientID": "PAT003", "StudyInstanceUID": pat3}),
        ("study", "IMAGE", {"StudyInstanceUID": pat3, "SeriesInstanceUID": series}),
    ]


QUERY_IDS = ["P-PATIENT", "P-STUDY", "S-STUDY", "S-SERIES", "P-SERIES", "S-IMAGE"]


@pytest.mark.parametrize("n", range(6), ids=QUERY_IDS)
def test_findscu_gets_every_optional_key(n, server, archive, tmp_path):
    scp, remote = server
    root, level, match = _queries(archive)[n]
    keys = _keys_for(level, root)
    ident = {**match, qh.UNIQUE_KEYS[level]: match.get(qh.UNIQUE_KEYS[level], "")}
    ident.update({k: "" for k in keys})
    rc, out, answers = qh.run_findscu(remote.port, QR_AE, root, level, ident, tmp_path / "rsp")
    assert rc == 0 and "Received Final Find Response (Success)" in out, out
    want = {i.value(qh.UNIQUE_KEYS[level]) for i in archive
            if all(i.value(k) == v for k, v in match.items())}
    assert {str(a.get(qh.UNIQUE_KEYS[level])) for a in answers} == want
    _check(answers, archive, level, keys)
    if level == "STUDY" and root == "patient":  # PAT003's study really has two of each
        assert len(answers[0].SOPClassesInStudy) == 2 and len(answers[0].ModalitiesInStudy) == 2


@pytest.mark.parametrize("n", range(6), ids=QUERY_IDS)
def test_pynetdicom_gets_every_optional_key(n, server, archive):
    from pydicom.dataset import Dataset
    from pynetdicom import AE
    from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                      StudyRootQueryRetrieveInformationModelFind)

    scp, remote = server
    root, level, match = _queries(archive)[n]
    model = (PatientRootQueryRetrieveInformationModelFind if root == "patient"
             else StudyRootQueryRetrieveInformationModelFind)
    keys = _keys_for(level, root)
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    setattr(ds, qh.UNIQUE_KEYS[level], "")
    for k, v in match.items():
        setattr(ds, k, v)
    for k in keys:
        setattr(ds, k, "")
    ae = AE(ae_title="PYFINDSCU")
    ae.add_requested_context(model)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 20
    assoc = ae.associate(HOST, remote.port, ae_title=QR_AE)
    assert assoc.is_established
    answers, statuses = [], []
    try:
        for status, identifier in assoc.send_c_find(ds, model):
            statuses.append(status.Status)
            if identifier is not None and status.Status in (0xFF00, 0xFF01):
                answers.append(identifier)
    finally:
        assoc.release()
    assert statuses[-1] == 0x0000
    _check(answers, archive, level, keys)


def test_sop_classes_in_study_matching_and_counts_after_remove(tmp_path):
    ct, mr = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
    with qr.SQLiteIndex(tmp_path) as index:
        def add(n, cls, series):
            index.add_instance(tmp_path / f"{n}", {
                "SOPClassUID": cls, "SOPInstanceUID": f"1.9.{n}", "StudyInstanceUID": "1.9",
                "SeriesInstanceUID": f"1.9.0.{series}", "PatientID": "P",
                "TransferSyntaxUID": qh.EXPLICIT_VR_LE})
        add(1, ct, 1)
        add(2, ct, 1)
        add(3, mr, 2)

        def study(**keys):
            return list(index.find({"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "",
                                    "SOPClassesInStudy": "", "NumberOfStudyRelatedSeries": "",
                                    "NumberOfStudyRelatedInstances": "", **keys}, None, "study"))
        (r,) = study()
        assert sorted(r.SOPClassesInStudy) == [ct, mr]
        assert (r.NumberOfStudyRelatedSeries, r.NumberOfStudyRelatedInstances) == (2, 3)
        assert len(study(SOPClassesInStudy=mr)) == 1
        assert study(SOPClassesInStudy="1.2.3.4") == []
        assert index.remove("1.9.3")
        (r,) = study()
        assert r.SOPClassesInStudy == ct
        assert (r.NumberOfStudyRelatedSeries, r.NumberOfStudyRelatedInstances) == (1, 2)
        assert study(SOPClassesInStudy=mr) == []


def test_retrieve_ae_and_availability_as_keys(tmp_path):
    with qr.SQLiteIndex(tmp_path, retrieve_ae_title="ARCHIVE") as index:
        index.add_instance(tmp_path / "1", {
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SOPInstanceUID": "1.8.1",
            "StudyInstanceUID": "1.8", "SeriesInstanceUID": "1.8.0", "PatientID": "P",
            "TransferSyntaxUID": qh.EXPLICIT_VR_LE})

        def study(**keys):
            return list(index.find({"QueryRetrieveLevel": "STUDY", **keys}, None, "study"))
        (r,) = study(RetrieveAETitle="", InstanceAvailability="")
        assert (r.RetrieveAETitle, r.InstanceAvailability) == ("ARCHIVE", "ONLINE")
        assert len(study(InstanceAvailability="ONLINE")) == 1
        assert study(InstanceAvailability="OFFLINE") == []
        assert len(study(RetrieveAETitle="ARCH*")) == 1
        index.set_retrieve_ae_title("OTHER")
        assert study(RetrieveAETitle="ARCHIVE") == []
        (r,) = study(RetrieveAETitle="")
        assert r.RetrieveAETitle == "OTHER"
        (r,) = study(StudyInstanceUID="")  # not asked: not returned
        assert "RetrieveAETitle" not in r and "InstanceAvailability" not in r


def test_non_ascii_answer_without_a_stored_charset_says_utf8(tmp_path):
    with qr.SQLiteIndex(tmp_path) as index:
        index.add_instance(tmp_path / "1", {
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SOPInstanceUID": "1.7.1",
            "StudyInstanceUID": "1.7", "SeriesInstanceUID": "1.7.0", "PatientID": "P1",
            "PatientName": "Åström^Märta", "TransferSyntaxUID": qh.EXPLICIT_VR_LE})
        index.add_instance(tmp_path / "2", {
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SOPInstanceUID": "1.6.1",
            "StudyInstanceUID": "1.6", "SeriesInstanceUID": "1.6.0", "PatientID": "P2",
            "PatientName": "Plain^Name", "TransferSyntaxUID": qh.EXPLICIT_VR_LE})
        got = {str(r.PatientID): r for r in index.find(
            {"QueryRetrieveLevel": "PATIENT", "PatientID": "", "PatientName": ""}, None, "patient")}
        assert got["P1"].SpecificCharacterSet == "ISO_IR 192"
        assert str(got["P1"].PatientName) == "Åström^Märta"
        assert "SpecificCharacterSet" not in got["P2"]


def test_non_ascii_names_over_the_wire(tmp_path):
    """A name stored in Latin-1 (ISO_IR 100) comes back to findscu with its character set."""
    import pydicom

    inst = qh.archive_truth(tag=8)[0]
    from dataclasses import replace
    inst = replace(inst, PatientName="Müller^Jürgen", PatientID="PATUML")
    (src,) = qh.write_archive(tmp_path / "src", [inst])
    scp, remote = qh.start_our_qr(QR_AE, storage_dir=tmp_path / "storage")
    try:
        assert [r.status for r in make_scu().store(remote, [src.path])] == [0]
        rc, out, answers = qh.run_findscu(remote.port, QR_AE, "patient", "PATIENT",
                                          {"PatientID": "PATUML", "PatientName": ""},
                                          tmp_path / "rsp")
        assert rc == 0, out
        (a,) = answers
        assert a.SpecificCharacterSet == "ISO_IR 100"
        assert str(a.PatientName) == "Müller^Jürgen"
        assert pydicom.charset  # decoded by pydicom with the returned character set
    finally:
        scp.stop()


# --- the schema migration -------------------------------------------------------------------

def _downgrade_to_v1(db_path):
    """What an index written by the version-1 schema looks like: the same tables, without
    the version-2 index, and schema '1' in the meta table."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("DROP INDEX ix_image_series_pk_sop_class_uid")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
        conn.commit()
    finally:
        conn.close()


def test_a_version_1_index_is_upgraded_on_open(tmp_path):
    with qr.SQLiteIndex(tmp_path) as index:
        index.add_instance(tmp_path / "1", {
            "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "SOPInstanceUID": "1.5.1",
            "StudyInstanceUID": "1.5", "SeriesInstanceUID": "1.5.0", "PatientID": "P",
            "TransferSyntaxUID": qh.EXPLICIT_VR_LE})
        db = index.db_path
    _downgrade_to_v1(db)
    with qr.SQLiteIndex(tmp_path) as index:
        assert index.count() == 1
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == "3"
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "ix_image_series_pk_sop_class_uid" in names and "ix_image_path" in names
    finally:
        conn.close()


def test_a_newer_schema_is_refused(tmp_path):
    with qr.SQLiteIndex(tmp_path) as index:
        db = index.db_path
    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    conn.commit()
    conn.close()
    with pytest.raises(qr.UnableToProcess, match="newer"):
        qr.SQLiteIndex(tmp_path)


# --- keyed queries use indexes, not scans --------------------------------------------------

@pytest.mark.parametrize("level,key", [(lv, k) for lv in ("STUDY", "SERIES", "IMAGE")
                                       for k in ("PatientID", "StudyInstanceUID")])
def test_keyed_queries_are_not_scans(tmp_path, level, key):
    """EXPLAIN QUERY PLAN of the SQL a keyed C-FIND runs (with every derived key of its
    level asked): no full scan of a table, in the query or its sub-queries."""
    with qr.SQLiteIndex(tmp_path) as index:
        ident = {"QueryRetrieveLevel": level, key: "X"}
        for kw in (*_keys_for(level, "patient"), "PatientName", "StudyDate"):
            ident.setdefault(kw, "")
        sql, params = index.explain_find(ident, None, "patient")
        conn = sqlite3.connect(index.db_path)
        try:
            plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        finally:
            conn.close()
    scans = [p for p in plan if p.startswith("SCAN")]  # of a table or a whole index
    assert scans == [], plan


# --- the indexer's header conversion -----------------------------------------------------------

@pytest.mark.parametrize("charset,name", [
    (None, "Doe^John"), ("ISO_IR 100", "Müller^Jürgen"), ("ISO_IR 192", "Ямада^Таро"),
    ("ISO 2022 IR 6\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎"), ("ISO_IR 100", "Plain^Name"),
])
def test_attributes_dict_decodes_like_pydicom(charset, name):
    from pydicom.charset import convert_encodings, encode_string
    from pydicom.valuerep import PersonName

    from fastdimse.scp import StoredInstance, _attributes_dict

    encodings = convert_encodings(charset.split("\\") if charset else ["ISO_IR 6"])
    raw_name = PersonName(name).encode(encodings) if charset else name.encode("ascii")
    attrs = {0x00100010: raw_name, 0x00100020: b"PID1", 0x00081030: encode_string("Étude", encodings)
             if charset and charset != "ISO 2022 IR 6\\ISO 2022 IR 87" else b"Study ",
             0x00200013: b"7 "}
    if charset:
        attrs[0x00080005] = charset.encode()
    stored = StoredInstance("/x", "1.2", "1.2.3", "1.2.840.10008.1.2.1", "PID1", "1.4", "1.5",
                            "A", "B", 0)
    out = _attributes_dict(attrs, stored)
    assert out["PatientName"] == name
    assert out["PatientID"] == "PID1" and out["InstanceNumber"] == "7"
    assert out["SOPInstanceUID"] == "1.2.3"
    assert out.get("SpecificCharacterSet") == charset
