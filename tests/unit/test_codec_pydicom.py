"""fastdimse.codec against pydicom as the reference, on every file of pydicom's
bundled test data that is on disk.

For each file pydicom can read:
- ``read_file`` gives a dataset equal element by element (and file meta, and
  preamble) to ``pydicom.dcmread``'s;
- ``write_file`` of it gives bytes identical to ``pydicom.dcmwrite`` (where
  pydicom can write it);
- ``encode`` into every uncompressed syntax, and the Rust ``transcode`` of the
  file's dataset bytes into every uncompressed syntax, read back by pydicom,
  equal the original (byte-order-dependent binary values compared after
  swapping; see ``assert_same``).
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
import zlib

import pydicom
import pytest
from pydicom.data import get_testdata_files
from pydicom.filereader import read_dataset

from fastdimse import codec
from fastdimse.errors import DatasetError, DicomError

DATA_ROOT = os.path.dirname(pydicom.data.__file__)
UNCOMPRESSED = [codec.IMPLICIT_VR_LE, codec.EXPLICIT_VR_LE, codec.EXPLICIT_VR_BE, codec.DEFLATED_EXPLICIT_VR_LE]

# The only files skipped: pydicom itself cannot read them with dcmread(path).
# test_unreadable_list_is_right checks that each one really fails in pydicom.
NO_PART10 = "no 128-byte preamble + 'DICM' (pydicom needs force=True)"
PYDICOM_UNREADABLE = {
    "test_files/ExplVR_BigEndNoMeta.dcm": NO_PART10,
    "test_files/ExplVR_LitEndNoMeta.dcm": NO_PART10,
    "test_files/no_meta.dcm": NO_PART10,
    "test_files/rtstruct.dcm": NO_PART10,
    "test_files/README.txt": "not DICOM (text)",
    "test_files/crayons.icc": "not DICOM (ICC profile)",
    "test_files/dicomdirtests/README.txt": "not DICOM (text)",
    "test_files/dicomdirtests/TINY_ALPHA/README": "not DICOM (text)",
    "test_files/rtplan.dump": "not DICOM (text dump)",
    "test_files/rtstruct.dump": "not DICOM (text dump)",
    "test_files/test1.json": "not DICOM (JSON)",
    "test_files/test_PN.json": "not DICOM (JSON)",
    "test_files/zipMR.gz": "not DICOM (gzip)",
}

# Files pydicom reads although they are damaged (it silently returns short
# values); fastdimse refuses them with a DatasetError naming offset and tag.
# test_damaged_files_are_refused checks exactly that.
DAMAGED = {
    "test_files/MR_truncated.dcm": 0x7FE00010,
    "test_files/rtplan_truncated.dcm": 0x300A00B0,
}

# Files whose Part-10 bytes legitimately differ from pydicom's writer.
BYTES_DIFFER = {
    # PS3.10 7.1 requires (0002,0000); pydicom writes the file meta it was given.
    "test_files/no_meta_group_length.dcm": "fastdimse always writes the (0002,0000) group length",
}

# Files pydicom reads but its own writer cannot write back, so there are no reference
# bytes to compare with; test_pydicom_cannot_write_these checks that its writer still
# fails on each and that ours writes a file pydicom reads back equal.
PYDICOM_UNWRITABLE = {
    # (0008,0008) holds a bytes value pydicom's writer cannot encode
    "test_files/SC_rgb_jpeg.dcm": "encoding without a string argument",
}

# Files whose dataset bytes the transcoder refuses while pydicom reads them.
TRANSCODE_REFUSED = {
    # The last item of (0004,1220) claims 248 bytes where 224 remain: pydicom
    # reads it short, the transcoder (which walks into sequences) refuses.
    "test_files/dicomdirtests/DICOMDIR-nooffset": 0xFFFEE000,
}


def _all_files() -> list[str]:
    return sorted(os.path.relpath(p, DATA_ROOT) for p in get_testdata_files() if os.path.isfile(p))


ALL_FILES = _all_files()
READABLE = [f for f in ALL_FILES if f not in PYDICOM_UNREADABLE and f not in DAMAGED]


def test_testdata_is_there():
    assert len(READABLE) > 100, "pydicom's bundled test files are missing"


def test_listed_files_are_on_disk():
    """Every file the lists name is in this pydicom's data (a list entry for a file that
    is not there would check nothing)."""
    missing = [n for n in [*PYDICOM_UNREADABLE, *DAMAGED, *PYDICOM_UNWRITABLE, *BYTES_DIFFER,
                           *TRANSCODE_REFUSED] if not os.path.isfile(os.path.join(DATA_ROOT, n))]
    assert missing == []


@pytest.mark.parametrize("name", sorted(PYDICOM_UNREADABLE))
def test_unreadable_list_is_right(name):
    path = os.path.join(DATA_ROOT, name)
    with pytest.raises(Exception):
        pydicom.dcmread(path)
    # and we refuse it too, with our error type
    with pytest.raises(DatasetError):
        codec.read_file(path)


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_damaged_files_are_refused(name):
    path = os.path.join(DATA_ROOT, name)
    pydicom.dcmread(path)  # pydicom reads it
    with pytest.raises(DatasetError) as info:
        codec.read_file(path)
    err = info.value
    assert isinstance(err, DicomError)
    assert err.tag == DAMAGED[name]
    assert err.path == path
    assert err.offset is not None and 0 < err.offset < os.path.getsize(path)
    assert f"at offset {err.offset} in {path}" in str(err)
    assert f"({DAMAGED[name] >> 16:04X},{DAMAGED[name] & 0xFFFF:04X})" in str(err)


# ------------------------------------------------------------------ comparison

_SWAP_UNIT = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _swap(data: bytes, unit: int) -> bytes:
    if unit < 2:
        return data
    out = bytearray(len(data))
    for i in range(0, len(data) - len(data) % unit, unit):
        out[i:i + unit] = data[i:i + unit][::-1]
    return bytes(out)


def _encoded_value(elem, little: bool) -> bytes:
    """The value bytes pydicom writes for `elem` (explicit VR, given byte order)."""
    fp = pydicom.filebase.DicomBytesIO()
    fp.is_implicit_VR = False
    fp.is_little_endian = little
    pydicom.filewriter.write_data_element(fp, elem)
    raw = fp.getvalue()
    return raw[12:] if elem.VR in codec._LONG_VR else raw[8:]


def assert_same(ref, got, ref_little: bool, got_little: bool, got_implicit: bool, where: str = "") -> None:
    """`got` (read back after conversion) holds the same data as `ref`.

    - retired group lengths (gggg,0000) may be dropped (they go stale);
    - OW/OF/OL/OD/OV values (bytes in their file's byte order in pydicom) are
      compared after swapping when the byte order changed;
    - in implicit VR a private element's VR is lost by definition (pydicom
      reads it as UN): its bytes are compared with the original's encoding.
    """
    for elem in ref:
        tag = elem.tag
        if tag.element == 0:
            continue
        here = f"{where}{tag}"
        assert tag in got, f"{here} missing"
        other = got[tag]
        if elem.VR == "SQ":
            assert other.VR == "SQ", f"{here}: VR {other.VR}"
            assert len(elem.value) == len(other.value), f"{here}: item count"
            for i, (a, b) in enumerate(zip(elem.value, other.value)):
                assert_same(a, b, ref_little, got_little, got_implicit, f"{here}[{i}]")
            continue
        if got_implicit and (tag.is_private or _ambiguous(tag)) and other.VR != elem.VR:
            if other.VR == "UN":
                assert (other.value or b"") == _encoded_value(elem, True), here
            else:
                assert other.value == elem.value, here
            continue
        vr = elem.VR if " or " not in elem.VR else other.VR
        if isinstance(elem.value, bytes) and ref_little != got_little and vr in _SWAP_UNIT:
            assert other.VR == vr, f"{here}: VR {other.VR} != {vr}"
            assert _swap(elem.value, _SWAP_UNIT[vr]) == other.value, f"{here}: swapped value"
            continue
        assert other == elem, f"{here}: {other!r} != {elem!r}"


def _ambiguous(tag) -> bool:
    try:
        return " or " in pydicom.datadict.dictionary_VR(tag)
    except KeyError:
        return False


def _ts_of(ds) -> str:
    ts = ds.file_meta.get("TransferSyntaxUID")
    return str(ts) if ts else codec._uid_for(*ds.original_encoding)


def _read_back(data: bytes, ts: str):
    implicit, little, deflated = codec._syntax(ts)
    if deflated:
        data = zlib.decompress(data, -zlib.MAX_WBITS)
    return read_dataset(io.BytesIO(data), implicit, little)


# ------------------------------------------------------------------ per file

@pytest.fixture(scope="module")
def tmpdir_module():
    with tempfile.TemporaryDirectory() as d:
        yield d


@pytest.mark.parametrize("name", READABLE)
def test_decode_equals_pydicom(name):
    path = os.path.join(DATA_ROOT, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pydicom.dcmread(path)
        ours = codec.read_file(path)
        assert isinstance(ours, pydicom.FileDataset)
        assert sorted(ours.keys()) == sorted(ref.keys())
        for elem in ref:
            assert ours[elem.tag] == elem, f"{elem.tag}"
        assert ours.file_meta == ref.file_meta
        assert ours.preamble == ref.preamble
        assert ours.original_encoding == ref.original_encoding
        assert ours == ref


@pytest.mark.parametrize("name", sorted(PYDICOM_UNWRITABLE))
def test_pydicom_cannot_write_these(name, tmpdir_module):
    path = os.path.join(DATA_ROOT, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pydicom.dcmread(path)
        with pytest.raises(Exception, match=PYDICOM_UNWRITABLE[name]):
            pydicom.dcmwrite(io.BytesIO(), ref)
        out = os.path.join(tmpdir_module, "unwritable.dcm")
        codec.write_file(out, codec.read_file(path))
        assert pydicom.dcmread(out) == pydicom.dcmread(path)


@pytest.mark.parametrize("name", [f for f in READABLE if f not in PYDICOM_UNWRITABLE])
def test_write_file_bytes_equal_pydicom(name, tmpdir_module):
    path = os.path.join(DATA_ROOT, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pydicom.dcmread(path)
        buf = io.BytesIO()
        pydicom.dcmwrite(buf, ref)
        expected = buf.getvalue()
        out = os.path.join(tmpdir_module, "out.dcm")
        codec.write_file(out, codec.read_file(path))
        with open(out, "rb") as f:
            got = f.read()
    if name in BYTES_DIFFER:
        assert got != expected
        # but what pydicom reads from both is the same
        assert pydicom.dcmread(out) == pydicom.dcmread(io.BytesIO(expected))
        return
    ts = _ts_of(ref)
    if ts == codec.DEFLATED_EXPLICIT_VR_LE:
        # flate2 and zlib compress differently: compare the inflated datasets
        off = codec.read_meta(out)["dataset_offset"]
        assert got[:off] == expected[:off]
        assert zlib.decompress(got[off:], -15) == zlib.decompress(expected[off:], -15)
        return
    assert got == expected


@pytest.mark.parametrize("name", READABLE)
def test_encode_and_transcode_to_every_syntax(name):
    path = os.path.join(DATA_ROOT, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pydicom.dcmread(path)
        ts = _ts_of(ref)
        with open(path, "rb") as f:
            data = f.read()
        raw = data[codec._core.codec_parse_meta(data)[2]:]
        if ts not in UNCOMPRESSED:
            # encapsulated: the transcoder copies, and converts nothing
            assert codec.transcode(raw, ts, ts) == raw
            with pytest.raises(DatasetError):
                codec.transcode(raw, ts, codec.EXPLICIT_VR_LE)
            return
        ref_little = ts != codec.EXPLICIT_VR_BE
        for to in UNCOMPRESSED:
            implicit, little, _ = codec._syntax(to)
            if name in TRANSCODE_REFUSED:
                if codec._syntax(to)[:2] != codec._syntax(ts)[:2]:
                    with pytest.raises(DatasetError):
                        codec.encode(codec.read_file(path), to)
            else:
                # encode from a freshly read (all raw) dataset
                back = _read_back(codec.encode(codec.read_file(path), to), to)
                assert_same(ref, back, ref_little, little, implicit, f"encode->{to} ")
            # Rust transcoding of the dataset bytes
            if name in TRANSCODE_REFUSED and to != ts:  # (equal syntaxes: a plain copy)
                with pytest.raises(DatasetError) as info:
                    codec.transcode(raw, ts, to)
                assert info.value.tag == TRANSCODE_REFUSED[name]
                continue
            back = _read_back(codec.transcode(raw, ts, to), to)
            assert_same(ref, back, ref_little, little, implicit, f"transcode->{to} ")


@pytest.mark.parametrize(
    "name", ["CT_small.dcm", "MR_small_bigendian.dcm", "rtplan.dcm", "image_dfl.dcm", "MR_small_implicit.dcm"]
)
def test_transcode_file(name, tmpdir_module):
    path = pydicom.data.get_testdata_file(name)
    ref = pydicom.dcmread(path)
    ref_little = ref.file_meta.TransferSyntaxUID != codec.EXPLICIT_VR_BE
    for to in UNCOMPRESSED:
        out = os.path.join(tmpdir_module, f"tc-{name}")
        n = codec.transcode_file(path, out, to)
        assert n == os.path.getsize(out)
        got = pydicom.dcmread(out)
        assert got.file_meta.TransferSyntaxUID == to
        assert got.file_meta.MediaStorageSOPInstanceUID == ref.file_meta.MediaStorageSOPInstanceUID
        meta = codec.read_meta(out)
        assert meta["transfer_syntax"] == to
        assert meta["sop_instance_uid"] == ref.file_meta.MediaStorageSOPInstanceUID
        implicit, little, _ = codec._syntax(to)
        assert_same(ref, got, ref_little, little, implicit)


def test_read_meta_names_dataset_offset():
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    meta = codec.read_meta(path)
    with open(path, "rb") as f:
        data = f.read()
    group_length = int.from_bytes(data[140:144], "little")
    assert meta["dataset_offset"] == 144 + group_length
    assert meta["transfer_syntax"] == codec.EXPLICIT_VR_LE
    ref = pydicom.dcmread(path)
    assert meta["sop_class_uid"] == ref.file_meta.MediaStorageSOPClassUID
    assert codec.decode(data[meta["dataset_offset"]:], meta["transfer_syntax"]) == ref


def test_values_stay_raw_until_read():
    path = pydicom.data.get_testdata_file("rtplan.dcm")
    ds = codec.read_file(path)
    raw_type = pydicom.dataelem.RawDataElement
    assert all(isinstance(e, raw_type) for e in ds._dict.values())
    ds.PatientName  # converts only that one
    converted = [t for t, e in ds._dict.items() if not isinstance(e, raw_type)]
    assert converted == [0x00100010]
    # a sequence stays one raw value until read
    assert isinstance(ds._dict[0x300A00B0], raw_type)
    assert len(ds.BeamSequence) == ds.FractionGroupSequence[0].NumberOfBeams
    # its items hold raw elements too (nested sequences stay raw until read)
    beam = ds.BeamSequence[0]
    assert all(isinstance(e, raw_type) for e in beam._dict.values())
    assert isinstance(beam._dict[0x300A0111], raw_type)  # Control Point Sequence


def _sequence_facts(ds):
    """Every item of every sequence, recursively: (path, item attributes, elements)."""
    out = []

    def walk(d, path):
        for elem in d:
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value):
                    here = f"{path}{elem.tag}[{i}]"
                    # (not the offsets: pydicom's are relative to whichever sequence
                    # value it happened to parse, ours are absolute)
                    # (pydicom keeps the character set as a str or a list of one,
                    # depending on the path it took: the same thing)
                    charset = item.original_character_set
                    out.append((here, item.is_undefined_length_sequence_item,
                                item.original_encoding, [charset] if isinstance(charset, str) else list(charset),
                                [(e.tag, e.VR, e.value) for e in item if e.VR != "SQ"]))
                    walk(item, here + ".")

    walk(ds, "")
    return out


_SEQUENCE_FILES = ["rtplan.dcm", "image_dfl.dcm", "MR_small_bigendian.dcm", "nested_priv_SQ.dcm",
                   "UN_sequence.dcm", "rtdose.dcm"]


@pytest.mark.parametrize("name", _SEQUENCE_FILES)
def test_sequences_split_in_rust_equal_pydicom(name, monkeypatch):
    """Sequences read through the codec are split in Rust (not by pydicom's reader) and
    give the same items as pydicom: elements, values, item flags and encodings."""
    path = os.path.join(DATA_ROOT, "test_files", name)
    assert os.path.isfile(path), f"{name} is not in this pydicom's test files"
    splits = []
    real = codec._core.codec_split_items

    def counting(*args):
        r = real(*args)
        splits.append(r is not None)
        return r

    monkeypatch.setattr(codec._core, "codec_split_items", counting)
    ours = codec.read_file(path)
    theirs = pydicom.dcmread(path)
    assert _sequence_facts(ours) == _sequence_facts(theirs)
    assert ours == theirs
    if name == "UN_sequence.dcm":
        # an undefined-length UN holding implicit VR items inside an explicit VR data
        # set: irregular, so pydicom's reader takes it (same result)
        assert splits and not all(splits)
    elif any(e.VR == "SQ" and e.value for e in theirs):
        assert splits and all(splits), splits


def test_irregular_sequence_falls_back_to_pydicom():
    """A sequence value that is not a run of items is left to pydicom's reader, which
    decides what it means: the codec's dataset gives what pydicom's dcmread gives."""
    value = b"\x10\x00\x10\x00PN\x04\x00AB^C" + b"\x10\x00\x20\x00LO\x00\x00"
    bad = b"\x0a\x30\xb0\x00SQ\x00\x00" + len(value).to_bytes(4, "little") + value
    assert codec._core.codec_split_items(value, False, True) is None
    ds = codec.decode(bad, codec.EXPLICIT_VR_LE)
    raw = pydicom.dataelem.RawDataElement(pydicom.tag.BaseTag(0x300A00B0), "SQ", len(value), value, 12,
                                          False, True)

    def outcome(get):
        try:
            return "ok", get()
        except Exception as e:  # whatever pydicom makes of it
            return "error", type(e)

    assert outcome(lambda: ds.BeamSequence) == outcome(
        lambda: pydicom.dataelem.convert_raw_data_element(raw, encoding="iso8859").value)


def test_hook_wraps_the_callback_before(monkeypatch):
    """The codec's raw_element_value callback handles only its own sequences: every
    other element goes to the callback that was registered before it."""
    from pydicom import hooks as ph

    calls = []

    def spy(raw, data, **kwargs):
        calls.append(raw.tag)
        ph.raw_element_value(raw, data, **kwargs)

    monkeypatch.setattr(ph.hooks, "raw_element_value", spy)
    codec._install_sequence_hook()
    assert ph.hooks.raw_element_value is not spy  # wrapped, not replaced
    path = pydicom.data.get_testdata_file("rtplan.dcm")
    ref = pydicom.dcmread(path)
    for _ in ref:
        pass
    assert set(ref._dict) <= set(calls)  # pydicom's own elements: all through the spy
    calls.clear()
    ours = codec.read_file(path)
    assert len(ours.BeamSequence) > 0 and str(ours.PatientName)
    assert 0x00100010 in calls and 0x300A00B0 not in calls  # our sequence: split in Rust



def test_write_file_of_decoded_dataset_is_part10(tmp_path):
    """A dataset from decode() (no file meta) is written with a conformant meta group."""
    path = pydicom.data.get_testdata_file("MR_small_bigendian.dcm")
    meta = codec.read_meta(path)
    with open(path, "rb") as f:
        body = f.read()[meta["dataset_offset"]:]
    ds = codec.decode(body, meta["transfer_syntax"])
    out = tmp_path / "decoded.dcm"
    codec.write_file(out, ds)
    got = pydicom.dcmread(out)
    assert got.file_meta.TransferSyntaxUID == codec.EXPLICIT_VR_BE
    assert got.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert got.file_meta.ImplementationClassUID == codec.read_meta(out)["implementation_class_uid"]
    assert got.file_meta.ImplementationClassUID.startswith("2.25.")
    assert got == pydicom.dcmread(path)
    # group length is right
    data = out.read_bytes()
    assert codec.read_meta(out)["dataset_offset"] == 144 + int.from_bytes(data[140:144], "little")
    # and to a file object, in another syntax
    buf = io.BytesIO()
    codec.write_file(buf, ds, codec.IMPLICIT_VR_LE)
    again = pydicom.dcmread(io.BytesIO(buf.getvalue()))
    assert again.file_meta.TransferSyntaxUID == codec.IMPLICIT_VR_LE
    assert again.PatientName == ds.PatientName


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "rtplan.dcm", "image_dfl.dcm"])
def test_defer_size_and_stop_before_pixels_like_pydicom(name):
    path = pydicom.data.get_testdata_file(name)
    ref = pydicom.dcmread(path)
    ours = codec.read_file(path, defer_size="1 KB")
    deferred = [t for t, e in ours._dict.items() if e.value is None and e.length > 1024]
    full = codec.read_file(path)
    big = [t for t, e in full._dict.items() if 1024 < getattr(e, "length", 0) != 0xFFFFFFFF]
    if name == "image_dfl.dcm":  # deflated data is inflated in memory: nothing to defer
        assert deferred == []
    else:
        assert sorted(deferred) == sorted(big)
        if name in ("CT_small.dcm", "MR_small_bigendian.dcm"):
            assert 0x7FE00010 in deferred
    assert ours == ref  # deferred values are read from the file on access
    ref_np = pydicom.dcmread(path, stop_before_pixels=True)
    ours_np = codec.read_file(path, stop_before_pixels=True)
    assert 0x7FE00010 not in ours_np
    assert ours_np == ref_np
