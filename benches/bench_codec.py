"""Dataset codec benchmarks: fastdimse.codec against pydicom's dcmread/dcmwrite.

Datasets (all generated here, written to a temporary directory):
  ct        a 512x512 16-bit CT image (explicit VR LE)
  rtss      an RT Structure Set-like dataset: 60 ROIs x 80 contours = 4800
            contour items, each with 30 points and a nested Contour Image
            Sequence item, written with defined lengths (pydicom's default)
  rtss-u    the same with undefined-length sequences and items (as many
            vendors write them)
  mf100     a 100 MB multi-frame image (100 frames of 1024x512x16 bit)

Operations:
  decode        read the Part-10 file into a Dataset (values stay raw in both)
  decode+walk   read, then touch every element recursively (all values converted)
  encode        write the freshly read dataset back to a Part-10 file
  transcode     rewrite the file as implicit VR LE (pydicom: dcmread + dcmwrite;
                fastdimse: codec.transcode_file, streaming in Rust)

pytest-benchmark:   .venv/bin/python -m pytest benches/bench_codec.py --benchmark-only
standalone table:   .venv/bin/python benches/bench_codec.py [--quick]
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
import warnings
from functools import lru_cache

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from fastdimse import codec

_TMP = tempfile.mkdtemp(prefix="fastdimse-bench-")


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid()
    return meta


def _base(sop_class: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = "Bench^Mark"
    ds.PatientID = "BENCH001"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.StudyDate = "20260101"
    ds.file_meta = _file_meta(sop_class, ds.SOPInstanceUID)
    return ds


def _image(rows: int, cols: int, frames: int, sop_class: str) -> Dataset:
    ds = _base(sop_class)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.ImagePositionPatient = ["-250", "-250", "0"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = ["0.9765625", "0.9765625"]
    if frames > 1:
        ds.NumberOfFrames = frames
    n = rows * cols * 2 * frames
    ds.PixelData = (os.urandom(1 << 20) * (n // (1 << 20) + 1))[:n]
    return ds


def _rtss(undefined: bool, rois: int = 60, contours: int = 80, points: int = 30) -> Dataset:
    ds = _base("1.2.840.10008.5.1.4.1.1.481.3")
    ds.Modality = "RTSTRUCT"
    ds.StructureSetLabel = "BENCH"
    frame = generate_uid()
    image_uids = [generate_uid() for _ in range(contours)]
    ssroi, roic, obs = [], [], []
    for r in range(rois):
        s = Dataset()
        s.ROINumber = r + 1
        s.ReferencedFrameOfReferenceUID = frame
        s.ROIName = f"ROI_{r}"
        s.ROIGenerationAlgorithm = "MANUAL"
        ssroi.append(s)
        c = Dataset()
        c.ROIDisplayColor = ["255", "0", "0"]
        c.ReferencedROINumber = r + 1
        items = []
        for k in range(contours):
            ci = Dataset()
            img = Dataset()
            img.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
            img.ReferencedSOPInstanceUID = image_uids[k]
            ci.ContourImageSequence = Sequence([img])
            ci.ContourGeometricType = "CLOSED_PLANAR"
            ci.NumberOfContourPoints = points
            ci.ContourData = [f"{(i * 7 + k) % 500 - 250}.{i % 10}" for i in range(points * 3)]
            items.append(ci)
        c.ContourSequence = Sequence(items)
        roic.append(c)
        o = Dataset()
        o.ObservationNumber = r + 1
        o.ReferencedROINumber = r + 1
        o.RTROIInterpretedType = "ORGAN"
        o.ROIInterpreter = ""
        obs.append(o)
    ds.StructureSetROISequence = Sequence(ssroi)
    ds.ROIContourSequence = Sequence(roic)
    ds.RTROIObservationsSequence = Sequence(obs)
    if undefined:
        _mark_undefined(ds)
    return ds


def _mark_undefined(ds: Dataset) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = True
            for item in elem.value:
                item.is_undefined_length_sequence_item = True
                _mark_undefined(item)


BUILDERS = {
    "ct": lambda: _image(512, 512, 1, "1.2.840.10008.5.1.4.1.1.2"),
    "rtss": lambda: _rtss(False),
    "rtss-u": lambda: _rtss(True),
    "mf100": lambda: _image(1024, 512, 100, "1.2.840.10008.5.1.4.1.1.2.1"),
}


@lru_cache(maxsize=None)
def dataset_file(name: str) -> str:
    path = os.path.join(_TMP, f"{name}.dcm")
    if not os.path.exists(path):
        ds = BUILDERS[name]()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def _walk(ds: Dataset) -> int:
    n = 0
    for elem in ds:
        n += 1
        if elem.VR == "SQ":
            for item in elem.value:
                n += _walk(item)
        else:
            elem.value
    return n


# ------------------------------------------------------------ operations
def pydicom_decode(path):
    return pydicom.dcmread(path)


def fastdimse_decode(path):
    return codec.read_file(path)


def pydicom_decode_walk(path):
    return _walk(pydicom.dcmread(path))


def fastdimse_decode_walk(path):
    return _walk(codec.read_file(path))


def pydicom_encode(ds):
    out = os.path.join(_TMP, "encode-pydicom.dcm")
    pydicom.dcmwrite(out, ds)
    return out


def fastdimse_encode(ds):
    out = os.path.join(_TMP, "encode-fastdimse.dcm")
    codec.write_file(out, ds)
    return out


def pydicom_transcode(path):
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    out = os.path.join(_TMP, "tc-pydicom.dcm")
    pydicom.dcmwrite(out, ds, implicit_vr=True, little_endian=True)
    return out


def fastdimse_transcode(path):
    out = os.path.join(_TMP, "tc-fastdimse.dcm")
    codec.transcode_file(path, out, ImplicitVRLittleEndian)
    return out


OPS = {
    "decode": (pydicom_decode, fastdimse_decode, False),
    "decode+walk": (pydicom_decode_walk, fastdimse_decode_walk, False),
    "encode": (pydicom_encode, fastdimse_encode, True),
    "transcode": (pydicom_transcode, fastdimse_transcode, False),
}


def _arg(name: str, op: str, which: str):
    path = dataset_file(name)
    if OPS[op][2]:  # encode: a freshly read dataset of each library
        return (pydicom.dcmread(path) if which == "pydicom" else codec.read_file(path))
    return path


# ------------------------------------------------------------ pytest-benchmark
CASES = [(n, op) for n in BUILDERS for op in OPS if not (n == "mf100" and op == "decode+walk")]


@pytest.mark.parametrize("which", ["pydicom", "fastdimse"])
@pytest.mark.parametrize("name,op", CASES)
def test_codec_benchmark(benchmark, name, op, which):
    warnings.simplefilter("ignore")
    fn = OPS[op][0 if which == "pydicom" else 1]
    arg = _arg(name, op, which)
    benchmark.group = f"{name} {op}"
    slow = name == "mf100" or op in ("decode+walk", "transcode") and name.startswith("rtss")
    rounds = 3 if slow else 10
    benchmark.pedantic(fn, args=(arg,), rounds=rounds, iterations=1, warmup_rounds=1)


# ------------------------------------------------------------ standalone
def _best(fn, arg, rounds: int) -> float:
    fn(arg)  # warm up
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - t)
    return best


def _floor(name: str, op: str):
    """The file I/O alone that the operation cannot avoid: read the file's bytes (decode),
    write as many bytes to the output path (encode), or both (transcode). No library can
    be faster than this, so pydicom's time over it bounds any speed-up."""
    path = dataset_file(name)
    data = open(path, "rb").read()
    out = os.path.join(_TMP, "floor.dcm")

    def read(_):
        with open(path, "rb") as f:
            return f.read()

    def write(_):
        with open(out, "wb") as f:
            f.write(data)

    def both(_):
        with open(path, "rb") as f, open(out, "wb") as g:
            g.write(f.read())

    return {"decode": read, "decode+walk": read, "encode": write, "transcode": both}[op]


def main(argv: list[str]) -> None:
    warnings.simplefilter("ignore")
    quick = "--quick" in argv
    print(f"pydicom {pydicom.__version__}; best of N runs; files in {_TMP}")
    print("floor: the file I/O alone (read the file / write as many bytes / both); "
          "max speed-up = pydicom / floor, the most any codec could gain\n")
    print("| dataset | size | operation | pydicom | fastdimse | speed-up | floor | max speed-up |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for name, op in CASES:
        if quick and name == "mf100":
            continue
        slow = name == "mf100" or op in ("decode+walk", "transcode") and name.startswith("rtss")
        rounds = 3 if slow else (5 if quick else 15)
        py_fn, fd_fn, _ = OPS[op]
        t_py = _best(py_fn, _arg(name, op, "pydicom"), rounds)
        t_fd = _best(fd_fn, _arg(name, op, "fastdimse"), rounds)
        t_floor = _best(_floor(name, op), None, rounds)
        size = os.path.getsize(dataset_file(name)) / 1e6
        print(f"| {name} | {size:.1f} MB | {op} | {t_py * 1e3:.2f} ms | {t_fd * 1e3:.2f} ms | {t_py / t_fd:.1f}x "
              f"| {t_floor * 1e3:.2f} ms | {t_py / t_floor:.1f}x |")


if __name__ == "__main__":
    main(sys.argv[1:])
