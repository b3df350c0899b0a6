"""What ``fastdimse bench`` sends: generated instances with fresh UIDs, or the files of a
folder; and the parsers of its option values (durations, sizes, concurrency lists, keys).

Generated data (``--generate N --size 0.5MB``): one Secondary Capture template is built
with pydicom per run, its pixel data random (incompressible) and sized so the file is
about the size asked for. Every instance is the template's bytes with fresh UIDs patched
in, as dcmtk's storescu ``+IR``/``+IS`` invent them: a new Study and Series Instance UID
for each stream of instances (one per association and level), a new SOP Instance UID for
every instance. All UIDs of a run have the same length (a per-run root under ``2.25``,
PS3.5 B.2, plus a fixed-width counter), so patching never moves a byte and the group
lengths stay right. The instances are written, as they are needed, into a scratch
folder in RAM (/dev/shm when there is one) and removed once answered: the SCU streams
them file -> socket as it does any file.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "parse_duration", "parse_size", "parse_concurrency", "InstanceFactory",
    "folder_files", "SECONDARY_CAPTURE",
]

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_DURATION_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNIT = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "ki": 2**10, "m": 10**6,
              "mb": 10**6, "mib": 2**20, "mi": 2**20, "g": 10**9, "gb": 10**9, "gib": 2**30, "gi": 2**30}
#: The smallest and largest generated instance.
MIN_SIZE = 1024
MAX_SIZE = 2**31


def parse_duration(text: str) -> float:
    """``30s``, ``500ms``, ``2m``, ``1h`` or plain seconds -> seconds (> 0)."""
    m = _DURATION_RE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration: write e.g. 30s, 500ms or 2m")
    seconds = float(m[1]) * _DURATION_UNIT[(m[2] or "s").lower()]
    if seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be more than 0")
    return seconds


def parse_size(text: str) -> int:
    """``4KB``, ``0.5MB``, ``1MiB``, ``2048`` -> bytes (KB = 1000, KiB = 1024)."""
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a size: write e.g. 4KB, 0.5MB or 1MiB")
    size = int(float(m[1]) * _SIZE_UNIT[(m[2] or "").lower()])
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"{text!r}: a generated instance is 1KB .. 2GiB")
    return size


def parse_concurrency(text: str) -> list[int]:
    """``1,2,4,8`` -> [1, 2, 4, 8]: positive, without repeats, in the order given."""
    levels: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 1 <= int(part) <= 1024:
            raise ValueError(f"{text!r}: concurrency levels are whole numbers 1..1024, comma-separated "
                             f"(e.g. 1,2,4,8), not {part!r}")
        if int(part) in levels:
            raise ValueError(f"{text!r}: level {part} is given twice")
        levels.append(int(part))
    return levels


# --- generated instances -----------------------------------------------------------------


def _scratch_base() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


@dataclass
class InstanceFactory:
    """Makes Part-10 files of about ``size`` bytes, each with a fresh SOP Instance UID,
    in a scratch folder of its own (:meth:`close` removes it).

    ``stream()`` gives the writer of one stream of instances (fresh Study and Series
    Instance UIDs); :meth:`discard` removes a file once it was answered.
    """

    size: int
    patient_id: str = "FASTDIMSE-BENCH"
    root: str = field(default_factory=lambda: f"2.25.{uuid.uuid4().int}")
    folder: Path = field(init=False)
    dataset_bytes: int = field(init=False)

    _WIDTH = 12  # digits of every counter: each UID of a run is as long as the others

    def __post_init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="fastdimse-bench-", dir=_scratch_base()))
        self._counter = itertools.count(10 ** (self._WIDTH - 1))
        self._lock = threading.Lock()
        placeholders = [self._uid(k, 10 ** (self._WIDTH - 1)) for k in (1, 2, 3)]
        self._segments, self._slots = self._template(*placeholders)
        self.dataset_bytes = 0

    def _uid(self, kind: int, n: int) -> str:
        return f"{self.root}.{kind}.{n}"

    def _next(self) -> int:
        with self._lock:
            return next(self._counter) + 1

    def _template(self, study: str, series: str, sop: str) -> tuple[list[bytes], list[int]]:
        """The template's bytes cut at each UID placeholder: (segments, which UID (0 study,
        1 series, 2 SOP instance) goes after each segment but the last)."""
        import random

        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import UID

        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SOPClassUID = SECONDARY_CAPTURE
        ds.SOPInstanceUID = sop
        ds.StudyDate, ds.StudyTime = "20260101", "120000"
        ds.Modality = "OT"
        ds.ConversionType = "WSD"
        ds.PatientName = "Bench^Fastdimse"
        ds.PatientID = self.patient_id
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, 1
        ds.StudyDescription = "fastdimse bench"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        # About 700 bytes of preamble, meta group and header; the rest is pixel data.
        samples = max(16, (self.size - 700) // 2)
        columns = max(4, min(512, int(math.sqrt(samples))))
        rows = max(1, samples // columns)
        ds.Rows, ds.Columns = rows, columns
        ds.PixelData = random.Random(self.size).randbytes(rows * columns * 2)
        ds["PixelData"].VR = "OW"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(SECONDARY_CAPTURE)
        meta.MediaStorageSOPInstanceUID = UID(sop)
        meta.TransferSyntaxUID = UID(EXPLICIT_VR_LE)
        ds.file_meta = meta
        path = self.folder / "template.dcm"
        ds.save_as(path, enforce_file_format=True)
        data = path.read_bytes()
        path.unlink()
        marks = sorted((m.start(), i, len(ph)) for i, ph in enumerate((study, series, sop))
                       for m in re.finditer(re.escape(ph.encode()), data))
        segments, slots, pos = [], [], 0
        for start, which, n in marks:
            segments.append(data[pos:start])
            slots.append(which)
            pos = start + n
        segments.append(data[pos:])
        if slots.count(2) != 2 or 0 not in slots or 1 not in slots:
            raise RuntimeError("the generated template does not carry its UIDs where expected")
        return segments, slots

    def instance_bytes(self, study: str, series: str) -> tuple[str, bytes]:
        """(SOP Instance UID, Part-10 bytes) of a new instance of the stream."""
        sop = self._uid(3, self._next())
        values = (study.encode(), series.encode(), sop.encode())
        parts = []
        for segment, which in zip(self._segments, self._slots):
            parts.append(segment)
            parts.append(values[which])
        parts.append(self._segments[-1])
        return sop, b"".join(parts)

    def new_stream(self) -> tuple[str, str]:
        """Fresh (Study Instance UID, Series Instance UID) for a stream of instances."""
        n = self._next()
        return self._uid(1, n), self._uid(2, n)

    def write(self, study: str, series: str) -> str:
        """Write a new instance of the stream (Study, Series Instance UID) into the
        scratch folder; its path."""
        sop, data = self.instance_bytes(study, series)
        path = self.folder / f"{sop}.dcm"
        with open(path, "wb") as f:
            f.write(data)
        return os.fspath(path)

    @staticmethod
    def discard(path: str | None) -> None:
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "InstanceFactory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def folder_files(folder: str | os.PathLike) -> list[str]:
    """Every DICOM Part-10 file under ``folder`` (recursively, sorted): the files whose
    bytes 128..131 are ``DICM``. ValueError when there are none."""
    root = Path(folder)
    if not root.exists():
        raise ValueError(f"{folder}: no such file or folder")
    candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = []
    for p in candidates:
        try:
            with open(p, "rb") as f:
                head = f.read(132)
        except OSError:
            continue
        if len(head) == 132 and head[128:132] == b"DICM":
            out.append(os.fspath(p))
    if not out:
        raise ValueError(f"{folder}: no DICOM files in it")
    return out
