"""DICOM instances for the storage tests, and ways to compare stored files with their sources.

Everything here is built with pydicom (or by hand, for the Part-10 layout), never with
fastdimse, so the storage tests do not check the library against itself:

- :func:`make_image` / :func:`make_rt_plan` build small instances of several SOP classes
  with deterministic pixel data; :func:`write_instance` writes one as a Part-10 file in a
  chosen transfer syntax (explicit VR big endian pixel words are swapped by hand, since
  pydicom writes raw bytes as given); :func:`generate_mixed` writes a folder of them.
- :func:`dataset_offset` finds the first byte after the file meta group by walking the
  group-0002 elements (PS3.10 7.1), so :func:`dataset_bytes` / :func:`dataset_sha256`
  give exactly the data set a peer sent or stored.
- :func:`assert_same_elements` compares two data sets element by element (every
  element outside group 0002, recursively into sequences), independently of their
  transfer syntax: pixel words of a big endian source are swapped before comparing.
- :func:`write_big_instance` writes a multi-frame instance of any size in 1 MiB chunks,
  without ever holding it in memory.
- :func:`pydicom_test_file` finds a file among pydicom's bundled test files *on disk*
  (``pydicom.data.get_testdata_files`` would try to download missing ones).
"""

from __future__ import annotations

import array
import copy
import hashlib
import os
import random
import struct
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
UNCOMPRESSED = (IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE)
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_IMAGE = "1.2.840.10008.5.1.4.1.1.7"
MF_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"

# A made-up UID root under 2.25 for the test data (PS3.5 B.2).
UID_ROOT = "2.25.8071948"
IMPLEMENTATION_CLASS_UID = "2.25.160513128409231462893046254812903877553"

_MODALITY = {CT_IMAGE: "CT", MR_IMAGE: "MR", SC_IMAGE: "OT", MF_GRAYSCALE_WORD_SC: "OT", RT_PLAN: "RTPLAN"}


def new_uid() -> str:
    return generate_uid(prefix=None)


def _common(ds: Dataset, sop_class: str, patient_id: str, study_uid: str, series_uid: str,
            sop_uid: str) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20260101"
    ds.Modality = _MODALITY.get(sop_class, "OT")
    ds.PatientName = f"Test^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1


def pixel_bytes(n_values: int, bits: int, seed: int) -> bytes:
    """``n_values`` pseudo-random samples of ``bits`` (8 or 16) bits, little endian."""
    rng = random.Random(seed)
    if bits == 8:
        return rng.randbytes(n_values)
    words = array.array("H", rng.randbytes(2 * n_values))
    if struct.pack("=H", 1) != struct.pack("<H", 1):  # big endian host
        words.byteswap()
    return words.tobytes()


def swap_words(data: bytes, width: int) -> bytes:
    """Reverse the byte order of every ``width``-byte word of ``data``."""
    if width == 1:
        return data
    code = {2: "H", 4: "I", 8: "Q"}[width]
    a = array.array(code, data)
    a.byteswap()
    return a.tobytes()


def make_image(sop_class: str = CT_IMAGE, *, patient_id: str = "PAT1",
               study_uid: str | None = None, series_uid: str | None = None,
               sop_uid: str | None = None, rows: int = 64, columns: int = 64,
               bits: int = 16, samples: int = 1, seed: int = 0,
               with_sequence: bool = True) -> Dataset:
    """A small image instance with pixel data little endian (see :func:`write_instance`)."""
    ds = Dataset()
    _common(ds, sop_class, patient_id, study_uid or new_uid(), series_uid or new_uid(),
            sop_uid or new_uid())
    if with_sequence:
        # A sequence with two items, one of them with a nested sequence.
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = new_uid()
        code = Dataset()
        code.CodeValue = "T-D1100"
        code.CodingSchemeDesignator = "SRT"
        code.CodeMeaning = "Head"
        ref.PurposeOfReferenceCodeSequence = Sequence([code])
        ref2 = Dataset()
        ref2.ReferencedSOPClassUID = sop_class
        ref2.ReferencedSOPInstanceUID = new_uid()
        ds.ReferencedImageSequence = Sequence([ref, ref2])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SliceThickness = "1.25"
    ds.ImagePositionPatient = [-120.5, -99.25, 12]
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "MONOCHROME2" if samples == 1 else "RGB"
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if sop_class == CT_IMAGE:
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
    ds.PixelData = pixel_bytes(rows * columns * samples, bits, seed)
    ds["PixelData"].VR = "OW" if bits > 8 else "OB"
    return ds


def make_rt_plan(*, patient_id: str = "PAT1", study_uid: str | None = None,
                 series_uid: str | None = None, sop_uid: str | None = None) -> Dataset:
    """An RT Plan: no pixel data, nested sequences, numeric multi-values."""
    ds = Dataset()
    _common(ds, RT_PLAN, patient_id, study_uid or new_uid(), series_uid or new_uid(),
            sop_uid or new_uid())
    ds.RTPlanLabel = "PLAN1"
    ds.RTPlanGeometry = "PATIENT"
    beams = []
    for i in range(3):
        beam = Dataset()
        beam.BeamNumber = i + 1
        beam.BeamName = f"B{i + 1}"
        beam.BeamType = "STATIC"
        beam.NumberOfControlPoints = 2
        cps = []
        for j in range(2):
            cp = Dataset()
            cp.ControlPointIndex = j
            cp.GantryAngle = str(40 * i + j)
            cp.IsocenterPosition = ["0", "-12.5", str(i)]
            cps.append(cp)
        beam.ControlPointSequence = Sequence(cps)
        beams.append(beam)
    ds.BeamSequence = Sequence(beams)
    return ds


def write_instance(ds: Dataset, path: Path, transfer_syntax: str = EXPLICIT_VR_LE) -> Path:
    """Write ``ds`` as a Part-10 file in ``transfer_syntax`` (an uncompressed one).

    The pixel data in ``ds`` is little endian; for explicit VR big endian its words are
    swapped in a copy, because pydicom writes raw OW bytes as they are.
    """
    assert transfer_syntax in UNCOMPRESSED, transfer_syntax
    out = copy.deepcopy(ds)
    if transfer_syntax == EXPLICIT_VR_BE and "PixelData" in ds and ds.BitsAllocated > 8:
        out.PixelData = swap_words(ds.PixelData, ds.BitsAllocated // 8)
        out["PixelData"].VR = "OW"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = "FDTESTS"
    out.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save_as(path, enforce_file_format=True)
    return path


@dataclass(frozen=True)
class Source:
    """A generated source file and what it holds."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str


def generate_mixed(folder: Path, *, copies: int = 1, patient_id: str = "MIX",
                   syntaxes: tuple[str, ...] = UNCOMPRESSED) -> list[Source]:
    """A folder (with a sub-folder) of instances: CT, MR, 8-bit SC, RGB SC and RT Plan,
    each written in every transfer syntax of ``syntaxes``, ``copies`` times over."""
    out: list[Source] = []
    study = new_uid()
    seed = 0
    for c in range(copies):
        for ts_i, ts in enumerate(syntaxes):
            series = new_uid()
            builders = [
                lambda s: make_image(CT_IMAGE, rows=64, columns=48, seed=s),
                lambda s: make_image(MR_IMAGE, rows=32, columns=32, seed=s, with_sequence=False),
                lambda s: make_image(SC_IMAGE, rows=40, columns=30, bits=8, seed=s),
                lambda s: make_image(SC_IMAGE, rows=16, columns=16, bits=8, samples=3, seed=s,
                                     with_sequence=False),
                lambda s: make_rt_plan(),
            ]
            for b_i, build in enumerate(builders):
                seed += 1
                ds = build(seed)
                ds.PatientID = patient_id
                ds.PatientName = f"Mix^{patient_id}"
                ds.StudyInstanceUID = study
                ds.SeriesInstanceUID = series
                ds.InstanceNumber = seed
                sub = folder / (f"copy{c}" if ts_i % 2 else f"copy{c}/nested/ts{ts_i}")
                path = sub / f"{b_i:02d}-{ts_i}-{seed}.dcm"
                write_instance(ds, path, ts)
                out.append(Source(path, ds.SOPClassUID, ds.SOPInstanceUID, ts))
    return out


# --- reading Part-10 files by hand ------------------------------------------------------

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}


def dataset_offset(path: Path) -> int:
    """Offset of the first byte after the file meta group of a Part-10 file.

    Walks the group-0002 elements (always explicit VR little endian, PS3.10 7.1) rather
    than trusting (0002,0000), so a wrong group length is noticed by the comparisons.
    """
    with open(path, "rb") as f:
        head = f.read(132)
        assert head[128:132] == b"DICM", f"{path} is not a Part-10 file (no DICM prefix)"
        pos = 132
        while True:
            h = f.read(8)
            if len(h) < 8:
                return pos
            group, _elem = struct.unpack("<HH", h[:4])
            if group != 0x0002:
                return pos
            vr = h[4:6]
            if vr in _LONG_VRS:
                n = struct.unpack("<I", f.read(4))[0]
                pos += 12 + n
            else:
                n = struct.unpack("<H", h[6:8])[0]
                pos += 8 + n
            f.seek(pos)


def dataset_bytes(path: Path) -> bytes:
    """The data set of a Part-10 file: every byte after the file meta group."""
    with open(path, "rb") as f:
        f.seek(dataset_offset(path))
        return f.read()


def dataset_sha256(path: Path, chunk: int = 1 << 22) -> tuple[int, str]:
    """(size, sha256 hex) of the data set of a Part-10 file, read in chunks."""
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        f.seek(dataset_offset(path))
        while True:
            b = f.read(chunk)
            if not b:
                return n, h.hexdigest()
            h.update(b)
            n += len(b)


def read_meta(path: Path) -> FileMetaDataset:
    return pydicom.filereader.read_file_meta_info(path)


def index_by_instance(folder: Path) -> dict[str, Path]:
    """Every Part-10 file under ``folder`` (recursively), by its Media Storage SOP Instance
    UID; a UID found twice fails (a peer must not store one instance twice)."""
    out: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        with open(p, "rb") as f:
            head = f.read(132)
        if len(head) < 132 or head[128:132] != b"DICM":
            continue
        uid = str(read_meta(p).MediaStorageSOPInstanceUID)
        assert uid not in out, f"instance {uid} stored twice: {out[uid]} and {p}"
        out[uid] = p
    return out


# --- comparing data sets element by element --------------------------------------------

_WORD_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def _is_big_endian(ds: Dataset) -> bool:
    return str(ds.file_meta.TransferSyntaxUID) == EXPLICIT_VR_BE


def _normalized(ds: Dataset, big_endian: bool) -> dict:
    out = {}
    for elem in ds:
        if elem.tag.group == 0x0002:
            continue
        value = elem.value
        if elem.VR == "SQ":
            value = [_normalized(item, big_endian) for item in value]
        elif isinstance(value, (bytes, bytearray)):
            # Only a big endian data set needs swapping, and it is explicit VR: its own
            # VR says the word size (8-bit pixel data as OW is swapped too, PS3.5 8.2).
            width = _WORD_WIDTH.get(elem.VR, 0)
            if big_endian and width > 1:
                value = swap_words(bytes(value), width)
            value = bytes(value)
        elif isinstance(value, pydicom.multival.MultiValue):
            value = [str(v) if isinstance(v, (pydicom.valuerep.DSfloat, pydicom.valuerep.IS)) else v
                     for v in value]
        elif isinstance(value, (pydicom.valuerep.DSfloat, pydicom.valuerep.IS)):
            value = str(value)
        elif isinstance(value, pydicom.valuerep.PersonName):
            value = str(value)
        out[int(elem.tag)] = value
    return out


def assert_same_elements(source: Path | Dataset, stored: Path | Dataset) -> None:
    """Fail unless both hold the same elements outside group 0002 with equal values,
    whatever their transfer syntaxes (read with pydicom)."""
    a = source if isinstance(source, Dataset) else pydicom.dcmread(source)
    b = stored if isinstance(stored, Dataset) else pydicom.dcmread(stored)
    na = _normalized(a, _is_big_endian(a))
    nb = _normalized(b, _is_big_endian(b))
    missing = sorted(set(na) - set(nb))
    extra = sorted(set(nb) - set(na))
    assert not missing and not extra, (
        f"tags only in the source: {[f'{t:08X}' for t in missing]}; "
        f"only in the stored file: {[f'{t:08X}' for t in extra]}")
    for tag in na:
        assert na[tag] == nb[tag], (
            f"({tag >> 16:04X},{tag & 0xFFFF:04X}) differs: source {str(na[tag])[:200]!r} "
            f"stored {str(nb[tag])[:200]!r}")


# --- pydicom's own test files -------------------------------------------------------------

def pydicom_test_files_dir() -> Path:
    return Path(pydicom.data.__file__).parent / "test_files"


def pydicom_test_file(name: str) -> Path:
    """A file shipped inside pydicom (never downloaded); fails if it is not on disk."""
    path = pydicom_test_files_dir() / name
    assert path.is_file(), f"pydicom test file {name} is not in {pydicom_test_files_dir()}"
    return path


# --- a big instance, written in chunks -------------------------------------------------

def write_big_instance(path: Path, size: int, *, chunk: int = 1 << 20,
                       sop_uid: str | None = None) -> tuple[str, int, str]:
    """Write a multi-frame 16-bit instance whose pixel data is ``size`` bytes, in
    ``chunk``-byte pieces (each different: its index is written into its first bytes).

    Returns (SOP Instance UID, data set size, sha256 of the data set), computed while
    writing, so the caller never reads the file into memory.
    """
    frame = 512 * 512 * 2
    assert size % frame == 0 and chunk % 2 == 0, "size must be whole 512x512x16-bit frames"
    ds = Dataset()
    sop_uid = sop_uid or new_uid()
    _common(ds, MF_GRAYSCALE_WORD_SC, "BIG", new_uid(), new_uid(), sop_uid)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = size // frame
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = "40"
    ds.Rows = 512
    ds.Columns = 512
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    write_instance(ds, path, EXPLICIT_VR_LE)  # no pixel data yet
    offset = dataset_offset(path)
    block = random.Random(size).randbytes(chunk)
    h = hashlib.sha256()
    with open(path, "r+b") as f:
        f.seek(offset)
        header_part = f.read()
        h.update(header_part)
        pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, size)
        f.write(pixel_header)
        h.update(pixel_header)
        written = 0
        i = 0
        while written < size:
            n = min(chunk, size - written)
            piece = struct.pack("<Q", i) + block[8:n]
            f.write(piece)
            h.update(piece)
            written += n
            i += 1
    total = len(header_part) + len(pixel_header) + size
    assert os.path.getsize(path) == offset + total
    return sop_uid, total, h.hexdigest()


# --- what a storage peer must have received -----------------------------------------------

def assert_received(sources: list[Source], out_dir: Path, *, source_ae: str | None = None,
                    received_syntax: str | None = None) -> dict[str, str]:
    """Fail unless ``out_dir`` holds exactly the instances of ``sources``, each stored as
    a Part-10 file whose meta group names it (Media Storage SOP Class/Instance UID), and
    whose data set is byte-identical to the source's when the transfer syntax did not
    change, else equal element by element.

    ``source_ae``: the Source Application Entity Title the meta group must carry.
    ``received_syntax``: the transfer syntax every stored file must have (else each
    file may have its own). Returns {SOP Instance UID: "identical" | "transcoded"}.
    """
    stored = index_by_instance(out_dir)
    want = {s.sop_instance_uid: s for s in sources}
    assert set(stored) == set(want), (
        f"missing: {sorted(set(want) - set(stored))}; unexpected: {sorted(set(stored) - set(want))}")
    how: dict[str, str] = {}
    for uid, src in want.items():
        path = stored[uid]
        meta = read_meta(path)
        assert meta.MediaStorageSOPInstanceUID == uid
        assert meta.MediaStorageSOPClassUID == src.sop_class_uid, path
        ts = str(meta.TransferSyntaxUID)
        if received_syntax is not None:
            assert ts == received_syntax, f"{path}: stored as {ts}, expected {received_syntax}"
        if source_ae is not None:
            assert str(meta.get("SourceApplicationEntityTitle", "")).strip() == source_ae, (
                f"{path}: SourceApplicationEntityTitle {meta.get('SourceApplicationEntityTitle')!r}")
        if ts == src.transfer_syntax:
            a, b = dataset_bytes(src.path), dataset_bytes(path)
            assert a == b, (
                f"{src.path.name} -> {path}: same transfer syntax {ts} but the data sets differ "
                f"({len(a)} vs {len(b)} bytes, first difference at "
                f"{next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))})")
            how[uid] = "identical"
        else:
            assert_same_elements(src.path, path)
            how[uid] = "transcoded"
    return how


def leftover_temp_files(storage_dir: Path) -> list[Path]:
    """fastdimse's temporary files (``.fastdimse-*.part``) anywhere under ``storage_dir``."""
    return sorted(storage_dir.rglob(".fastdimse-*.part"))


# --- many small files, fast (for memory tests and benchmarks) ---------------------------------

def _copy_uid(i: int) -> bytes:
    # Fixed length (28 characters, even: no padding byte) so it can replace the
    # template's UID in place: "2.25.8071948.9.1" + 12 digits.
    return f"{UID_ROOT}.9.1{i:012d}".encode()


def write_uid_copies(folder: Path, n: int, *, start: int = 0, per_folder: int = 1000,
                     sop_class: str = SC_IMAGE, transfer_syntax: str = EXPLICIT_VR_LE) -> int:
    """Write ``n`` small Part-10 files (4x4 pixels, a few hundred bytes each) under
    ``folder/NNNNN/NNNNNNN.dcm``, ``per_folder`` to a folder: one template written by
    pydicom, copied with its SOP Instance UID (meta group and data set) patched in the
    bytes. Instance ``i`` has the UID ``copy_uid(i)``. Returns the bytes written."""
    placeholder = _copy_uid(0)
    ds = make_image(sop_class, patient_id="COPIES", rows=4, columns=4, seed=1,
                    with_sequence=False, sop_uid=placeholder.decode())
    folder.mkdir(parents=True, exist_ok=True)
    template_path = write_instance(ds, folder / "template.tmp", transfer_syntax)
    template = template_path.read_bytes()
    template_path.unlink()
    parts = template.split(placeholder)
    assert len(parts) == 3, "the UID must occur in the meta group and in the data set"
    total = 0
    current = None
    for i in range(start, start + n):
        sub = folder / f"{i // per_folder:05d}"
        if sub != current:
            sub.mkdir(exist_ok=True)
            current = sub
        uid = _copy_uid(i)
        data = parts[0] + uid + parts[1] + uid + parts[2]
        with open(sub / f"{i:07d}.dcm", "wb") as f:
            f.write(data)
        total += len(data)
    return total


def copy_uid(i: int) -> str:
    """The SOP Instance UID of copy ``i`` of :func:`write_uid_copies`."""
    return _copy_uid(i).decode()
