"""Deterministic benchmark data for `make bench` (C-STORE cases).

Three sets, written once to a cache directory (default under /dev/shm) and reused:

- ``a``: CT-like instances, CT Image Storage, 512x512 16-bit (about 0.5 MB each),
  explicit VR little endian, a realistic CT header.
- ``b``: one large multi-frame instance, Multi-frame Grayscale Word Secondary
  Capture, 512x512 16-bit frames (512 frames = 256 MiB of pixel data at full size).
- ``c``: small instances of a few KB, Secondary Capture Image Storage, 48x48 16-bit.
- ``d``: the Q/R archive: small instances like ``c`` (10,000 at full size) all in ONE
  patient, study and series, so that one image-level C-FIND returns all of them.

Everything is a function of the profile (sizes) and fixed seeds: the same profile
gives byte-identical files on every run and machine (same pydicom version). UIDs are
derived from fixed strings (``generate_uid`` with entropy sources), so they are unique
and stable. Each set spreads over a few patients, studies and series.

A ``manifest.json`` per profile records, per set, the file count, the total file
bytes and the total *dataset* bytes (the file minus preamble and meta group), which is
what the benchmark's MB/s counts. The cache is rebuilt when the manifest is missing
or was written by another version of this generator.

Usage: ``python benches/datagen.py [--quick] [--cache-dir DIR]`` (prints the manifest).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

GENERATOR_VERSION = 2
DEFAULT_CACHE = Path("/dev/shm/fastdimse-bench-data") if Path("/dev/shm").is_dir() else None

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MF_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root; the rest is a hash of our seed


@dataclass(frozen=True)
class Profile:
    name: str
    n_ct: int        # set a
    mf_frames: int   # set b (512x512x2 bytes per frame)
    n_small: int     # set c
    n_query: int     # set d


FULL = Profile("full", n_ct=400, mf_frames=512, n_small=2000, n_query=10000)
QUICK = Profile("quick", n_ct=40, mf_frames=32, n_small=200, n_query=1000)


@dataclass
class DataSet:
    key: str            # "a", "b", "c"
    label: str          # for the table
    directory: str      # all files of the set, flat
    files: int
    file_bytes: int
    dataset_bytes: int  # sum over files of (file size - preamble - meta group)
    sop_classes: list[str]


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(prefix=UID_PREFIX, entropy_srcs=["fastdimse-bench", *map(str, parts)])


def dataset_offset(path: str | os.PathLike) -> int:
    """Offset of the data set in a Part-10 file: after preamble, 'DICM' and the meta group.

    Reads the (0002,0000) File Meta Information Group Length, which every file written
    here has (explicit VR LE: tag, 'UL', 2-byte length, 4-byte value).
    """
    with open(path, "rb") as f:
        head = f.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
        raise ValueError(f"{path}: not a Part-10 file with a meta group length")
    (group_len,) = struct.unpack_from("<I", head, 140)
    return 144 + group_len


def _write(ds, path: Path) -> tuple[int, int]:
    import pydicom

    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    size = path.stat().st_size
    return size, size - dataset_offset(path)


def _base(ds, *, sop_class: str, sop_uid: str, patient: int, study_uid: str, series_uid: str,
          series_no: int, instance_no: int, modality: str) -> None:
    from pydicom.dataset import FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LE
    meta.ImplementationClassUID = UID_PREFIX + "1"
    meta.ImplementationVersionName = "FDBENCH_1"
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = "20240115"
    ds.SeriesDate = "20240115"
    ds.ContentDate = "20240115"
    ds.StudyTime = "093000"
    ds.SeriesTime = f"09{30 + series_no % 30:02d}00"
    ds.ContentTime = f"09{30 + series_no % 30:02d}{instance_no % 60:02d}"
    ds.AccessionNumber = f"ACC{patient:04d}{series_no:02d}"
    ds.Modality = modality
    ds.Manufacturer = "fastdimse bench"
    ds.InstitutionName = "Synthetic Hospital"
    ds.ReferringPhysicianName = "Doe^Jane"
    ds.StudyDescription = "Benchmark study"
    ds.SeriesDescription = f"Benchmark series {series_no}"
    ds.PatientName = f"Bench^Patient{patient:03d}"
    ds.PatientID = f"PAT{patient:04d}"
    ds.PatientBirthDate = f"19{50 + patient % 40:02d}0101"
    ds.PatientSex = "MF"[patient % 2]
    ds.PatientAge = f"{(74 - patient % 40):03d}Y"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"S{patient:04d}"
    ds.SeriesNumber = series_no
    ds.InstanceNumber = instance_no


def _frame(rng, rows: int, cols: int):
    """A 12-bit grey frame: a smooth disc (a body) plus noise, as uint16."""
    import numpy as np

    y, x = np.ogrid[:rows, :cols]
    r2 = (y - rows / 2) ** 2 + (x - cols / 2) ** 2
    body = np.where(r2 < (0.42 * min(rows, cols)) ** 2, 1040, 24).astype(np.int32)
    noise = rng.integers(0, 64, size=(rows, cols), dtype=np.int32)
    return (body + noise).astype("<u2")


def gen_ct(directory: Path, n: int) -> tuple[int, int]:
    """Set a: n CT slices over 4 patients x 1 study x 2 series."""
    import numpy as np
    from pydicom.dataset import Dataset

    rng = np.random.default_rng(20240115)
    base = _frame(rng, 512, 512)
    total_file = total_ds = 0
    for i in range(n):
        patient, series = i % 4, (i // 4) % 2
        study_uid = _uid("a-study", patient)
        series_uid = _uid("a-series", patient, series)
        ds = Dataset()
        _base(ds, sop_class=CT_IMAGE_STORAGE, sop_uid=_uid("a-inst", i), patient=patient,
              study_uid=study_uid, series_uid=series_uid, series_no=series + 1,
              instance_no=i // 8 + 1, modality="CT")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = _uid("a-for", patient)
        ds.PositionReferenceIndicator = ""
        ds.BodyPartExamined = "CHEST"
        ds.SliceThickness = "1.25"
        ds.KVP = "120"
        ds.DataCollectionDiameter = "500"
        ds.ReconstructionDiameter = "360"
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = "150"
        ds.RotationDirection = "CW"
        ds.ExposureTime = "500"
        ds.XRayTubeCurrent = "250"
        ds.Exposure = "125"
        ds.ConvolutionKernel = "STANDARD"
        ds.PatientPosition = "HFS"
        ds.AcquisitionNumber = 1
        z = -(i // 8) * 1.25
        ds.ImagePositionPatient = ["-180", "-180", f"{z:.2f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = f"{z:.2f}"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 512
        ds.Columns = 512
        ds.PixelSpacing = ["0.703125", "0.703125"]
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        # Each slice differs: the shared frame shifted, plus a row of its own noise.
        frame = np.roll(base, i, axis=0)
        frame[i % 512] = rng.integers(0, 4096, size=512, dtype=np.uint16)
        ds.PixelData = frame.tobytes()
        fb, db = _write(ds, directory / f"ct{i:05d}.dcm")
        total_file += fb
        total_ds += db
    return total_file, total_ds


def gen_multiframe(directory: Path, frames: int) -> tuple[int, int]:
    """Set b: one Multi-frame Grayscale Word SC instance of ``frames`` 512x512 frames."""
    import numpy as np
    from pydicom.dataset import Dataset

    rng = np.random.default_rng(20240116)
    base = _frame(rng, 512, 512)
    ds = Dataset()
    _base(ds, sop_class=MF_GRAYSCALE_WORD_SC, sop_uid=_uid("b-inst", 0), patient=7,
          study_uid=_uid("b-study", 7), series_uid=_uid("b-series", 7), series_no=1,
          instance_no=1, modality="OT")
    ds.ConversionType = "WSD"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = "40"
    ds.Rows = 512
    ds.Columns = 512
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    pixels = np.empty((frames, 512, 512), dtype="<u2")
    for k in range(frames):
        pixels[k] = np.roll(base, k, axis=1)
        pixels[k, :, k % 512] = k & 0x0FFF
    ds.PixelData = pixels.tobytes()
    del pixels
    return _write(ds, directory / "multiframe.dcm")


def gen_small(directory: Path, n: int, *, tag: str = "c", one_series: bool = False) -> tuple[int, int]:
    """Set c (and d): n Secondary Capture instances of 48x48 16-bit (about 5.6 KB each).

    Set c spreads over 5 patients x 4 series; with ``one_series`` (set d) all instances
    are in one patient, study and series.
    """
    import numpy as np
    from pydicom.dataset import Dataset

    rng = np.random.default_rng(20240117 if tag == "c" else 20240118)
    total_file = total_ds = 0
    for i in range(n):
        patient, series = (0, 0) if one_series else (i % 5, (i // 5) % 4)
        ds = Dataset()
        _base(ds, sop_class=SECONDARY_CAPTURE, sop_uid=_uid(f"{tag}-inst", i),
              patient=patient + (20 if one_series else 10),
              study_uid=_uid(f"{tag}-study", patient), series_uid=_uid(f"{tag}-series", patient, series),
              series_no=series + 1, instance_no=(i + 1) if one_series else i // 20 + 1, modality="OT")
        ds.ConversionType = "WSD"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 48
        ds.Columns = 48
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = rng.integers(0, 4096, size=(48, 48), dtype=np.uint16).astype("<u2").tobytes()
        fb, db = _write(ds, directory / f"{tag}{i:05d}.dcm")
        total_file += fb
        total_ds += db
    return total_file, total_ds


SETS = {
    # key: (label, sop classes, generator, size attribute of Profile)
    "a": ("a: CT 512x512x16", [CT_IMAGE_STORAGE], gen_ct, "n_ct"),
    "b": ("b: multi-frame", [MF_GRAYSCALE_WORD_SC], gen_multiframe, "mf_frames"),
    "c": ("c: small SC", [SECONDARY_CAPTURE], gen_small, "n_small"),
    "d": ("d: Q/R archive, one series", [SECONDARY_CAPTURE],
          lambda d, n: gen_small(d, n, tag="d", one_series=True), "n_query"),
}


def ensure_data(profile: Profile, cache_dir: Path | None = None, log=print) -> dict[str, DataSet]:
    """Return the data sets of ``profile``, generating them into the cache if needed."""
    if cache_dir is None:
        if DEFAULT_CACHE is None:
            raise RuntimeError("no /dev/shm here: pass a cache directory")
        cache_dir = DEFAULT_CACHE
    root = Path(cache_dir) / profile.name
    manifest = root / "manifest.json"
    if manifest.is_file():
        try:
            doc = json.loads(manifest.read_text())
            if doc.get("version") == GENERATOR_VERSION and doc.get("profile") == asdict(profile):
                sets = {k: DataSet(**v) for k, v in doc["sets"].items()}
                if all(len(os.listdir(s.directory)) == s.files for s in sets.values()):
                    return sets
        except (OSError, ValueError, KeyError, TypeError):
            pass
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    sets: dict[str, DataSet] = {}
    for key, (label, sop_classes, gen, attr) in SETS.items():
        d = root / key
        d.mkdir()
        size = getattr(profile, attr)
        t0 = time.perf_counter()
        file_bytes, ds_bytes = gen(d, size)
        files = len(os.listdir(d))
        log(f"datagen: set {key} ({files} files, {ds_bytes / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        sets[key] = DataSet(key, label, str(d), files, file_bytes, ds_bytes, sop_classes)
    manifest.write_text(json.dumps(
        {"version": GENERATOR_VERSION, "profile": asdict(profile),
         "sets": {k: asdict(v) for k, v in sets.items()}}, indent=1))
    return sets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="scaled-down sizes")
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    sets = ensure_data(QUICK if args.quick else FULL, args.cache_dir,
                       log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({k: asdict(v) for k, v in sets.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
