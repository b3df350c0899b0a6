"""Property tests (hypothesis): generated datasets — every common VR, odd
lengths, private elements, nested sequences and items of defined and undefined
length — round-trip through fastdimse.codec in every uncompressed syntax, with
pydicom as the reference for the bytes and for the decoded values."""

from __future__ import annotations

import io
import string
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from fastdimse import codec
from tests.unit.test_codec_pydicom import UNCOMPRESSED, assert_same

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)

_TEXT = string.ascii_letters + string.digits + " ^-._"
VALUES = {
    "CS": st.text(alphabet=string.ascii_uppercase + string.digits + "_ ", max_size=16).map(str.strip),
    "LO": st.text(alphabet=_TEXT, max_size=64).map(str.strip),
    "SH": st.text(alphabet=_TEXT, max_size=16).map(str.strip),
    "PN": st.text(alphabet=string.ascii_letters + "^", max_size=30),
    "LT": st.text(alphabet=_TEXT + "\\", max_size=200).map(str.rstrip),
    "UT": st.text(alphabet=_TEXT + "\\", max_size=300).map(str.rstrip),
    "UI": st.from_regex(r"[1-9][0-9]{0,4}(\.[1-9][0-9]{0,4}){0,6}", fullmatch=True),
    "IS": st.integers(-(2**31), 2**31 - 1).map(str),
    "DS": st.sampled_from(["0", "1.5", "-2.25", "1e3", "3.14159", ""]),
    "US": st.integers(0, 0xFFFF),
    "SS": st.integers(-0x8000, 0x7FFF),
    "UL": st.integers(0, 0xFFFFFFFF),
    "SL": st.integers(-(2**31), 2**31 - 1),
    "FL": st.floats(width=32, allow_nan=False),
    "FD": st.floats(allow_nan=False),
    "AT": st.integers(0, 0xFFFFFFFF),
    "OB": st.binary(max_size=41),  # odd lengths too: padded to even on write
    "OW": st.binary(max_size=40).map(lambda b: b[: len(b) // 2 * 2]),
    "UN": st.binary(max_size=21),
}


def _tags_by_vr() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {vr: [] for vr in list(VALUES) + ["SQ"]}
    for tag, (vr, vm, _name, retired, _kw) in DicomDictionary.items():
        if vr in out and not retired and tag >> 16 not in (0x0000, 0x0002, 0x0004, 0xFFFE):
            if (vm == "1" or vr == "SQ") and tag & 0xFFFF != 0 and tag != 0x00080005:
                out[vr].append(tag)
    return {vr: sorted(tags)[:400] for vr, tags in out.items() if tags}


TAGS = _tags_by_vr()
LEAF_VRS = sorted(vr for vr in VALUES if vr in TAGS)


@st.composite
def elements(draw):
    vr = draw(st.sampled_from(LEAF_VRS))
    tag = draw(st.sampled_from(TAGS[vr]))
    return tag, vr, draw(VALUES[vr])


@st.composite
def private_elements(draw):
    group = draw(st.sampled_from([0x0009, 0x0011, 0x0029]))
    value = draw(st.binary(max_size=12))
    return [
        (group << 16 | 0x0010, "LO", "FASTDIMSE TEST"),
        (group << 16 | 0x1000 | draw(st.integers(0, 0xFF)), "UN", value),
    ]


def _dataset(items, undefined_item: bool) -> Dataset:
    ds = Dataset()
    for tag, vr, value in items:
        if vr == "SQ":
            elem = DataElement(tag, "SQ", Sequence(value[0]))
            elem.is_undefined_length = value[1]
            ds[tag] = elem
        else:
            ds.add_new(tag, vr, value)
    ds.is_undefined_length_sequence_item = undefined_item
    return ds


def datasets(depth: int):
    leaves = st.lists(elements(), max_size=12)
    if depth == 0:
        return st.builds(_dataset, leaves, st.booleans())

    sequence = st.tuples(
        st.sampled_from(TAGS["SQ"]),
        st.just("SQ"),
        st.tuples(st.lists(datasets(depth - 1), max_size=3), st.booleans()),
    )
    return st.builds(
        _dataset,
        st.lists(st.one_of(elements(), elements(), sequence), max_size=12),
        st.booleans(),
    )


@st.composite
def top_datasets(draw):
    ds = draw(datasets(3))
    if draw(st.booleans()):
        for tag, vr, value in draw(private_elements()):
            ds.add_new(tag, vr, value)
    return ds


def _pydicom_bytes(ds: Dataset, ts: str) -> bytes:
    implicit, little, deflated = codec._syntax(ts)
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, ds)
    data = fp.getvalue()
    return data


def _pydicom_read(data: bytes, ts: str) -> Dataset:
    implicit, little, deflated = codec._syntax(ts)
    if deflated:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    return read_dataset(io.BytesIO(data), implicit, little)


@SETTINGS
@given(ds=top_datasets(), ts=st.sampled_from(UNCOMPRESSED))
def test_encode_matches_pydicom_and_decodes_back(ds, ts):
    ours = codec.encode(ds, ts)
    implicit, little, deflated = codec._syntax(ts)
    expected = _pydicom_bytes(ds, ts)
    if deflated:
        assert zlib.decompress(ours, -zlib.MAX_WBITS) == expected
    else:
        assert ours == expected
    decoded = codec.decode(ours, ts)
    reference = _pydicom_read(ours, ts)
    assert decoded == reference
    # a decoded (all raw) dataset encodes back to the same bytes
    again = codec.encode(decoded, ts)
    if deflated:
        assert zlib.decompress(again, -15) == zlib.decompress(ours, -15)
    else:
        assert again == ours


@SETTINGS
@given(ds=top_datasets(), src=st.sampled_from(UNCOMPRESSED), dst=st.sampled_from(UNCOMPRESSED))
def test_transcode_between_every_pair(ds, src, dst):
    data = codec.encode(ds, src)
    ref = _pydicom_read(data, src)
    out = codec.transcode(data, src, dst)
    got = _pydicom_read(out, dst)
    s_imp, s_little, _ = codec._syntax(src)
    d_imp, d_little, _ = codec._syntax(dst)
    assert_same(ref, got, s_little, d_little, d_imp)
    # and back again: the same values in the original syntax
    back = codec.transcode(out, dst, src)
    assert_same(ref, _pydicom_read(back, src), s_little, s_little, s_imp)
    # encode() of the decoded dataset into dst gives the same values too
    via_encode = _pydicom_read(codec.encode(codec.decode(data, src), dst), dst)
    assert_same(ref, via_encode, s_little, d_little, d_imp)


@settings(parent=SETTINGS, max_examples=25)
@given(ds=top_datasets())
def test_transcode_file_streams_like_in_memory(ds, tmp_path_factory):
    data = codec.encode(ds, codec.IMPLICIT_VR_LE)
    whole = codec.transcode(data, codec.IMPLICIT_VR_LE, codec.EXPLICIT_VR_BE)
    # The Part-10 file path streams through the Rust transcoder in 64 KiB
    # chunks (small-chunk streaming is unit-tested in Rust); here the file
    # path must give what the in-memory one gives.
    d = tmp_path_factory.mktemp("stream")
    src, dst = d / "in.dcm", d / "out.dcm"
    header = codec._core.codec_build_meta("1.2.3", "1.2.3.4", codec.IMPLICIT_VR_LE)
    src.write_bytes(header + data)
    codec.transcode_file(src, dst, codec.EXPLICIT_VR_BE)
    out = dst.read_bytes()
    offset = codec.read_meta(dst)["dataset_offset"]
    assert out[offset:] == whole


@pytest.mark.parametrize("ts", UNCOMPRESSED)
def test_deep_nesting_round_trips(ts):
    ds = Dataset()
    ds.PatientName = "Deep^Nest"
    inner = ds
    for i in range(60):
        item = Dataset()
        item.is_undefined_length_sequence_item = bool(i % 2)
        item.ReferencedSOPInstanceUID = f"1.2.{i}"
        elem = DataElement(0x00081115, "SQ", Sequence([item]))
        elem.is_undefined_length = bool(i % 3)
        inner[0x00081115] = elem
        inner = item
    data = codec.encode(ds, ts)
    assert data == _pydicom_bytes(ds, ts) or codec._syntax(ts)[2]
    assert codec.decode(data, ts) == ds
