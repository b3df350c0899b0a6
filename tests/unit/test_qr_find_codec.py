"""The codec's fast paths behind the bulk C-FIND answer path, against their Python
references: identifiers encoded by ``codec.encode_text_elements`` and decoded by
``codec.decode`` (moved from tests/interop/test_qr_find_batching.py, whose other tests
need peers)."""

from __future__ import annotations

import random

import pytest
from pydicom import Dataset

from fastdimse import codec

TS = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def _reference(elements, ts):
    try:
        return codec._encode_text_elements_py(elements, ts)
    except Exception:  # struct.error: a value too long for a 16-bit length field
        return None


@pytest.mark.timeout(60)
def test_encode_text_elements_matches_the_python_reference():
    rng = random.Random(3)
    vrs = ["AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT",
           "PN", "IS", "DS", "SQ", "US", "OB"]
    values = [None, "", [], (), "A", "AB", "1.2.3", "Ä^Ö", ["A", "BC"], ("x", "yz"), ["A", 1],
              1, 12, True, 1.5, b"AB", "x" * 70001, ["x"] * 3]
    checked = 0
    for _ in range(3000):
        elements = [(rng.choice([0x00080052, 0x00100010, 0x00100020, 0x0020000D, 0x00200013,
                                 0x00081030, 0x00080018]),
                     rng.choice(vrs), rng.choice(values)) for _ in range(rng.randint(0, 6))]
        for ts in TS:
            got = codec.encode_text_elements(elements, ts)
            assert got == _reference(elements, ts), (elements, ts)
            checked += got is not None
    assert checked > 500  # the fast path did answer, not only fall back


@pytest.mark.timeout(30)
def test_decoded_identifiers_are_plain_pydicom_datasets():
    data = codec.encode_text_elements(
        [(0x00080005, "CS", "ISO_IR 100"), (0x00100010, "PN", "Doe^J"), (0x00200013, "IS", 4),
         (0x00080052, "CS", "IMAGE")], TS[1])
    a, b = codec.decode(data, TS[1]), codec.decode(data, TS[1])
    ref = Dataset()
    assert a.__dict__.keys() == ref.__dict__.keys()
    for k, v in ref.__dict__.items():
        if k != "_dict":
            assert a.__dict__[k] is v or isinstance(v, str) or v is None or type(v) is bool \
                or (a.__dict__[k] == v and a.__dict__[k] is not v), k
    # nothing mutable shared between two decoded data sets
    for k, v in a.__dict__.items():
        if isinstance(v, (dict, list, set)):
            assert v is not b.__dict__[k], k
    assert a.PatientName == "Doe^J" and a.InstanceNumber == 4 and a.QueryRetrieveLevel == "IMAGE"
    assert a._character_set == ["latin_1"] and not a._read_implicit and a._read_little
    a.PatientID = "P1"
    assert "PatientID" in a and "PatientID" not in b
    assert codec.encode(a, TS[0]) == codec.encode(codec.decode(codec.encode(a, TS[0]), TS[0]), TS[0])
