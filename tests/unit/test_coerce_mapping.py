"""fastdimse.coerce: keywords and tags to (tag, value) pairs, mapping files; and the
core refusing a coercion it cannot carry out before anything is sent."""

from __future__ import annotations

import pytest

from fastdimse import DICOMSCU, Entity
from fastdimse.coerce import CoercionMap, load_mapping, normalize, tag_of
from tests.support.peers import free_port

pytestmark = pytest.mark.timeout(30)


def test_normalize_keywords_pairs_tags_and_values():
    got = normalize([("PatientID", "X123"), ((0x0010, 0x0021), "SITE"), (0x00101010, 42), ("OtherPatientIDs", None)])
    assert got == [(0x00100020, "X123"), (0x00100021, "SITE"), (0x00101010, "42"), (0x00101000, None)]
    assert normalize({"PatientName": "A^B"}) == [(0x00100010, "A^B")]
    assert normalize(None) == []


@pytest.mark.parametrize("bad, word", [
    ([("NoSuchKeyword", "x")], "unknown DICOM keyword"),
    ([((0x10000, 0), "x")], "not a DICOM keyword or tag"),
    ([(-1, "x")], "not a DICOM tag"),
    ([("PatientID", b"bytes")], "must be text"),
    ([("PatientID",)], "a coercion is"),
])
def test_normalize_refuses(bad, word):
    with pytest.raises(ValueError, match=word):
        normalize(bad)


def test_tag_of():
    assert tag_of("PatientID") == 0x00100020
    assert tag_of((0x7FE0, 0x0010)) == 0x7FE00010
    with pytest.raises(ValueError):
        tag_of(True)


def test_load_toml_mapping(tmp_path):
    p = tmp_path / "map.toml"
    p.write_text('[set]\nIssuerOfPatientID = "SITE"\nOtherPatientIDs = ""\n'
                 '[patient_id]\nprefix = "A-"\n[patient_id.map]\n"OLD1" = "NEW1"\n')
    m = load_mapping(p)
    assert m.constants == [("IssuerOfPatientID", "SITE"), ("OtherPatientIDs", "")]
    assert m.for_patient("OLD1") == [("IssuerOfPatientID", "SITE"), ("OtherPatientIDs", ""), ("PatientID", "NEW1")]
    assert m.for_patient("OTHER ")[-1] == ("PatientID", "A-OTHER")
    assert normalize(m.for_patient("OLD1"))[-1] == (0x00100020, "NEW1")


def test_load_csv_mapping(tmp_path):
    p = tmp_path / "ids.csv"
    p.write_text("old,new\nOLD1,NEW1\n\nOLD2 , NEW2\n")
    m = load_mapping(p)
    assert m.patient_ids == {"OLD1": "NEW1", "OLD2": "NEW2"}
    assert m.for_patient("OLD3") == [] and m.for_patient(None) == []
    assert CoercionMap(constants=[("PatientID", "FIXED")], patient_ids={"A": "B"}).for_patient("A") == [("PatientID", "FIXED")]


@pytest.mark.parametrize("name, text, word", [
    ("m.toml", "[set\n", "not valid TOML"),
    ("m.toml", "[other]\n", "unknown section"),
    ("m.toml", '[set]\nNoSuchKeyword = "x"\n', "unknown DICOM keyword"),
    ("m.toml", "[patient_id]\nprefix = 3\n", "prefix must be text"),
    ("m.toml", '[patient_id.map]\n"A" = 1\n', "must map to text"),
    ("m.csv", "a,b,c\n", r"m.csv:1: expected old,new"),
    ("m.csv", "A,B\nA,C\n", r"m.csv:2: PatientID 'A' mapped twice"),
    ("m.txt", "", "is .toml or .csv"),
])
def test_load_mapping_refuses(tmp_path, name, text, word):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ValueError, match=word):
        load_mapping(p)


@pytest.mark.parametrize("coerce, word", [
    ([("PixelData", None)], "groups 0008 to 7FDF"),
    ([("TransferSyntaxUID", "1.2")], "groups 0008 to 7FDF"),
    ([("ReferencedImageSequence", None)], "no text form"),
    ([("Rows", "many")], "not a value of VR US"),
    ([("PatientID", "A"), ((0x0010, 0x0020), "B")], "twice"),
    ([((0x0009, 0x1001), "x")], "not in the data dictionary"),
])
def test_store_refuses_a_coercion_before_connecting(tmp_path, coerce, word):
    """Nothing listens on the port: the refusal comes before any connection."""
    f = tmp_path / "none.dcm"
    with pytest.raises(ValueError, match=word):
        DICOMSCU(Entity("SCU", "127.0.0.1", 0)).store(Entity("PEER", "127.0.0.1", free_port()), [f], coerce=coerce)
