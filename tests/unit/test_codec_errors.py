"""Bad input: each case is a fastdimse.errors.DatasetError that names the byte
offset and the tag; no panic, no allocation sized by a length field."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap

import pydicom
import pytest

from fastdimse import codec
from fastdimse.errors import DatasetError, DicomError

ELE = codec.EXPLICIT_VR_LE
ILE = codec.IMPLICIT_VR_LE
CT = pydicom.data.get_testdata_file("CT_small.dcm")


def el(tag: int, vr: bytes, value: bytes, length: int | None = None) -> bytes:
    """An explicit VR little endian element."""
    n = len(value) if length is None else length
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr, 0, n) + value
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, n) + value


def item(length: int) -> bytes:
    return struct.pack("<HHL", 0xFFFE, 0xE000, length)


def check(err: DatasetError, tag: int | None, offset: int, path: str | None = None) -> None:
    assert isinstance(err, DicomError)
    assert err.tag == tag, f"{err.tag!r} != {tag!r}: {err}"
    assert err.offset == offset, f"{err.offset} != {offset}: {err}"
    assert f"at offset {offset}" in str(err)
    if tag is not None:
        assert f"({tag >> 16:04X},{tag & 0xFFFF:04X})" in str(err)
    if path is not None:
        assert err.path == path and f" in {path}" in str(err)


def test_length_past_end():
    data = el(0x00100010, b"PN", b"Doe^John") + el(0x00100020, b"LO", b"ID", length=200)
    with pytest.raises(DatasetError) as info:
        codec.decode(data, ELE)
    check(info.value, 0x00100020, 16)
    assert "runs past end of data (size 26)" in str(info.value)


def test_4gib_length_in_1kib_file(tmp_path):
    header = codec._core.codec_build_meta("1.2.840.10008.5.1.4.1.1.7", "1.2.3", ELE)
    body = el(0x00100010, b"PN", b"Doe^John") + el(0x7FE00010, b"OW", b"", length=0xFFFFFFFE)
    path = tmp_path / "huge.dcm"
    path.write_bytes((header + body).ljust(1024, b"\0"))
    offset = len(header) + 16
    with pytest.raises(DatasetError) as info:
        codec.read_file(path)
    check(info.value, 0x7FE00010, offset, str(path))
    assert "length 4294967294" in str(info.value)
    with pytest.raises(DatasetError) as info:
        codec.transcode_file(path, tmp_path / "out.dcm", ILE)
    check(info.value, 0x7FE00010, offset, str(path))


def test_no_large_allocation_for_hostile_lengths(tmp_path):
    """Run the hostile inputs in a fresh interpreter and look at its peak RSS."""
    script = textwrap.dedent(
        f"""
        import resource, struct
        from fastdimse import codec
        from fastdimse.errors import DatasetError
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        bad = [
            struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OW", 0, 0xFFFFFFF0) + bytes(1000),
            struct.pack("<HH2sHL", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
            + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFF0) + bytes(1000),
        ]
        for data in bad:
            for to in ("{ILE}", "{codec.EXPLICIT_VR_BE}"):
                try:
                    codec.transcode(data, "{ELE}", to)
                except DatasetError:
                    pass
                else:
                    raise SystemExit("no error")
            try:
                codec.decode(data, "{ELE}")
            except DatasetError:
                pass
            else:
                raise SystemExit("no error")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(after - before)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    grown_kib = int(out.stdout.strip())
    assert grown_kib < 64 * 1024, f"peak RSS grew by {grown_kib} KiB"


def test_truncated_file(tmp_path):
    with open(CT, "rb") as f:
        data = f.read()
    meta = codec.read_meta(CT)
    elements = codec._core.codec_split(data, ELE, meta["dataset_offset"])[1]
    # cut inside the value of each of a few elements
    for tag, _vr, length, start, end in elements[5:60:7]:
        if length < 2:
            continue
        path = tmp_path / "cut.dcm"
        path.write_bytes(data[: start + length // 2])
        with pytest.raises(DatasetError) as info:
            codec.read_file(path)
        header = 12 if _vr in ("OB", "OW", "SQ", "UN", "UT") else 8
        check(info.value, tag, start - header, str(path))
    # cut inside the file meta group
    path = tmp_path / "cut-meta.dcm"
    path.write_bytes(data[:150])
    with pytest.raises(DatasetError) as info:
        codec.read_file(path)
    assert info.value.offset is not None and 132 <= info.value.offset < 150
    assert str(path) in str(info.value)
    # only a preamble
    path.write_bytes(data[:100])
    with pytest.raises(DatasetError, match="DICM"):
        codec.read_file(path)


def test_truncated_header():
    data = el(0x00100010, b"PN", b"Doe^John") + b"\x10\x00\x20\x00LO"
    with pytest.raises(DatasetError) as info:
        codec.decode(data, ELE)
    check(info.value, 0x00100020, 16)


@pytest.mark.parametrize("vr,n", [(b"US", 3), (b"UL", 6), (b"FD", 4), (b"AT", 2), (b"OW", 5)])
def test_odd_length_where_even_is_required(vr, n):
    data = el(0x00080018, b"UI", b"1.2\0") + el(0x00280010, vr, bytes(n))
    with pytest.raises(DatasetError) as info:
        codec.decode(data, ELE)
    check(info.value, 0x00280010, 12)
    assert "odd length" in str(info.value)
    with pytest.raises(DatasetError) as info:
        codec.transcode(data, ELE, codec.EXPLICIT_VR_BE)
    check(info.value, 0x00280010, 12)


def test_sequence_that_never_closes():
    data = (
        el(0x00080018, b"UI", b"1.2\0")
        + el(0x00081115, b"SQ", b"", length=0xFFFFFFFF)
        + item(0xFFFFFFFF)
        + el(0x0020000E, b"UI", b"1.2.3\0")
    )
    for call in (lambda: codec.decode(data, ELE), lambda: codec.transcode(data, ELE, ILE)):
        with pytest.raises(DatasetError) as info:
            call()
        err = info.value
        assert "unclosed" in str(err)
        assert err.tag in (0x00081115, 0xFFFEE000)
        assert err.offset in (12, 24)


def test_item_runs_past_its_sequence():
    data = el(0x00081115, b"SQ", item(40) + el(0x00280010, b"US", b"\1\0"), length=18)
    with pytest.raises(DatasetError) as info:
        codec.transcode(data, ELE, ILE)
    check(info.value, 0xFFFEE000, 12)


def test_stray_delimiter_at_top_level():
    data = el(0x00080018, b"UI", b"1.2\0") + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    with pytest.raises(DatasetError) as info:
        codec.decode(data, ELE)
    check(info.value, 0xFFFEE0DD, 12)


def test_hostile_nesting_does_not_overflow():
    depth = 100_000
    opened = (el(0x00081115, b"SQ", b"", length=0xFFFFFFFF) + item(0xFFFFFFFF)) * depth
    with pytest.raises(DatasetError, match="unclosed"):
        codec.decode(opened, ELE)
    closed = opened + (struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)) * depth
    out = codec.transcode(closed, ELE, ILE)
    assert codec.transcode(out, ILE, ELE) == closed
    assert len(codec.decode(closed, ELE)) == 1


def test_not_dicom(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(b"hello" * 100)
    with pytest.raises(DatasetError) as info:
        codec.read_file(path)
    assert info.value.path == str(path)
    with pytest.raises(DatasetError):
        codec.read_meta(path)


def test_unsupported_transcoding():
    with pytest.raises(DatasetError, match="only between the uncompressed"):
        codec.transcode(b"", "1.2.840.10008.1.2.4.50", ELE)


def test_corrupt_deflate():
    with pytest.raises(DatasetError):
        codec.decode(b"\xff" * 64, codec.DEFLATED_EXPLICIT_VR_LE)
    with pytest.raises(DatasetError):
        codec.transcode(b"\xff" * 64, codec.DEFLATED_EXPLICIT_VR_LE, ELE)


@pytest.mark.parametrize("seed", range(20))
def test_random_mutations_raise_only_dataset_error(seed):
    import random

    rng = random.Random(seed)
    with open(pydicom.data.get_testdata_file("rtplan.dcm"), "rb") as f:
        data = bytearray(f.read())
    off = codec.read_meta(pydicom.data.get_testdata_file("rtplan.dcm"))["dataset_offset"]
    body = data[off:]
    for _ in range(rng.randint(1, 10)):
        body[rng.randrange(len(body))] = rng.randrange(256)
    body = bytes(body[: rng.randrange(len(body) + 1)])
    for call in (
        lambda: codec.decode(body, ILE),
        lambda: codec.transcode(body, ILE, codec.EXPLICIT_VR_BE),
        lambda: codec.transcode(body, ILE, ELE),
    ):
        try:
            call()
        except DatasetError as err:
            assert err.offset is not None


def test_compressed_pixel_data_is_not_written_uncompressed(tmp_path):
    ds = codec.read_file(pydicom.data.get_testdata_file("JPEG2000.dcm"))
    own = ds.file_meta.TransferSyntaxUID
    assert own.is_compressed
    for ts in (ELE, ILE, codec.EXPLICIT_VR_BE, codec.DEFLATED_EXPLICIT_VR_LE):
        with pytest.raises(DatasetError, match="encapsulated") as info:
            codec.encode(ds, ts)
        assert info.value.tag == 0x7FE00010
    with pytest.raises(DatasetError):
        codec.write_file(tmp_path / "x.dcm", ds, ELE)
    assert ds.file_meta.TransferSyntaxUID == own  # the caller's file meta is untouched
    # its own (encapsulated) syntax is fine
    codec.write_file(tmp_path / "y.dcm", ds)
    assert pydicom.dcmread(tmp_path / "y.dcm") == pydicom.dcmread(pydicom.data.get_testdata_file("JPEG2000.dcm"))
