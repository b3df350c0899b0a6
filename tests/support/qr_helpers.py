"""Helpers for the Query/Retrieve tests: a generated archive with its truth, the
C-FIND cases (one per matching rule and level) with their expected answers, the
dcmtk / pynetdicom Q/R peers, and the dcmtk Q/R clients.

The archive is written with pydicom (no downloads). Every instance is small (a 4x4
16-bit image) and explicit VR little endian. ``Instance`` records are the truth the
tests compare every answer with.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from tests.support.peers import (HOST, PYTHON, Peer, _run, free_port, require_executable, require_module,
                   start_process)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
UID_ROOT = "1.2.826.0.1.3680043.10.1047."  # test UIDs: <root><kind>.<n>

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
               "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
# Attributes of each level that the tests ask as return keys and check against the truth.
LEVEL_OF = {
    "PatientID": "PATIENT", "PatientName": "PATIENT", "PatientBirthDate": "PATIENT",
    "PatientSex": "PATIENT",
    "StudyInstanceUID": "STUDY", "StudyDate": "STUDY", "StudyTime": "STUDY",
    "AccessionNumber": "STUDY", "StudyID": "STUDY", "StudyDescription": "STUDY",
    "SeriesInstanceUID": "SERIES", "Modality": "SERIES", "SeriesNumber": "SERIES",
    "SeriesDescription": "SERIES",
    "SOPInstanceUID": "IMAGE", "SOPClassUID": "IMAGE", "InstanceNumber": "IMAGE",
}


@dataclass(frozen=True)
class Instance:
    """The truth about one generated instance."""

    PatientID: str
    PatientName: str
    PatientBirthDate: str
    PatientSex: str
    StudyInstanceUID: str
    StudyDate: str
    StudyTime: str
    AccessionNumber: str
    StudyID: str
    StudyDescription: str
    SeriesInstanceUID: str
    Modality: str
    SeriesNumber: str
    SeriesDescription: str
    SOPInstanceUID: str
    SOPClassUID: str
    InstanceNumber: str
    path: str = ""

    def value(self, keyword: str) -> str:
        return getattr(self, keyword)


def _uid(kind: int, *parts: int) -> str:
    return UID_ROOT + ".".join(str(p) for p in (kind, *parts))


# The archive: patients, their studies (date, time, description) and series
# (modality, number of images). Names chosen so that '*' and '?' tell them apart.
PATIENTS = [
    ("PAT001", "Doe^John", "19700101", "M", [
        ("20200115", "081500", "CT chest", [("CT", 3), ("CT", 2)]),
        ("20210610", "143000", "MR head", [("MR", 2)]),
    ]),
    ("PAT002", "Doe^Jane", "19800202", "F", [
        ("20200301", "100000", "MR knee", [("MR", 3)]),
    ]),
    ("PAT003", "Smith^Anna", "19651231", "F", [
        ("20190720", "235959", "CT abdomen", [("CT", 2), ("MR", 1)]),
    ]),
    ("PAT004", "Smythe^Bob", "19991111", "M", [
        ("20221224", "120000", "CT spine", [("CT", 1)]),
    ]),
]


def archive_truth(tag: int = 1) -> list[Instance]:
    """The instances of the standard test archive (not yet written). ``tag`` makes the
    UIDs distinct between archives built in one session."""
    out: list[Instance] = []
    st_n = se_n = im_n = 0
    for pid, name, birth, sex, studies in PATIENTS:
        for date, time_, desc, series in studies:
            st_n += 1
            study_uid = _uid(tag, 1, st_n)
            for s_index, (modality, count) in enumerate(series, start=1):
                se_n += 1
                series_uid = _uid(tag, 2, se_n)
                for i in range(1, count + 1):
                    im_n += 1
                    out.append(Instance(
                        PatientID=pid, PatientName=name, PatientBirthDate=birth, PatientSex=sex,
                        StudyInstanceUID=study_uid, StudyDate=date, StudyTime=time_,
                        AccessionNumber=f"ACC{st_n:04d}", StudyID=f"S{st_n}",
                        StudyDescription=desc,
                        SeriesInstanceUID=series_uid, Modality=modality,
                        SeriesNumber=str(s_index), SeriesDescription=f"{modality} series {s_index}",
                        SOPInstanceUID=_uid(tag, 3, im_n),
                        SOPClassUID=CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE,
                        InstanceNumber=str(i),
                    ))
    return out


def bulk_truth(count: int, tag: int = 9) -> list[Instance]:
    """``count`` instances in one patient / study / series (for the big C-GET)."""
    study_uid, series_uid = _uid(tag, 1, 1), _uid(tag, 2, 1)
    return [Instance(
        PatientID="BULK", PatientName="Bulk^Patient", PatientBirthDate="20000101",
        PatientSex="O", StudyInstanceUID=study_uid, StudyDate="20240101", StudyTime="000000",
        AccessionNumber="BULK1", StudyID="B1", StudyDescription="bulk",
        SeriesInstanceUID=series_uid, Modality="CT", SeriesNumber="1",
        SeriesDescription="bulk series", SOPInstanceUID=_uid(tag, 3, i + 1),
        SOPClassUID=CT_IMAGE_STORAGE, InstanceNumber=str(i + 1),
    ) for i in range(count)]


def make_dataset(inst: Instance):
    """A pydicom FileDataset for ``inst`` (explicit VR LE, 4x4 16-bit pixels)."""
    from pydicom.dataset import Dataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = inst.SOPClassUID
    meta.MediaStorageSOPInstanceUID = inst.SOPInstanceUID
    meta.TransferSyntaxUID = EXPLICIT_VR_LE
    meta.ImplementationClassUID = UID_ROOT + "99"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = inst.SOPClassUID
    ds.SOPInstanceUID = inst.SOPInstanceUID
    ds.StudyDate = inst.StudyDate
    ds.StudyTime = inst.StudyTime
    ds.AccessionNumber = inst.AccessionNumber
    ds.Modality = inst.Modality
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = inst.StudyDescription
    ds.SeriesDescription = inst.SeriesDescription
    ds.PatientName = inst.PatientName
    ds.PatientID = inst.PatientID
    ds.PatientBirthDate = inst.PatientBirthDate
    ds.PatientSex = inst.PatientSex
    ds.StudyInstanceUID = inst.StudyInstanceUID
    ds.SeriesInstanceUID = inst.SeriesInstanceUID
    ds.StudyID = inst.StudyID
    ds.SeriesNumber = inst.SeriesNumber
    ds.InstanceNumber = inst.InstanceNumber
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 4
    ds.Columns = 4
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    seed = int(inst.SOPInstanceUID.rsplit(".", 1)[1])
    ds.PixelData = struct.pack("<16H", *[(seed * 31 + k) & 0x0FFF for k in range(16)])
    return ds


def write_archive(folder: Path, truth: Iterable[Instance]) -> list[Instance]:
    """Write each instance as ``folder/<SOPInstanceUID>.dcm``; return the truth with paths."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for inst in truth:
        path = folder / f"{inst.SOPInstanceUID}.dcm"
        make_dataset(inst).save_as(path, enforce_file_format=True)
        out.append(replace(inst, path=str(path)))
    return out


# --- bytes of a Part-10 file ------------------------------------------------------------

def dataset_bytes(path: str | os.PathLike) -> bytes:
    """The data set of a Part-10 file, without preamble and meta group (the meta group is
    each writer's own; the data set is what travelled)."""
    data = Path(path).read_bytes()
    if data[128:132] != b"DICM":
        raise AssertionError(f"{path} is not a Part-10 file")
    pos = 132
    # Walk the group 0002 elements (explicit VR LE) rather than trusting the group length.
    while pos + 8 <= len(data):
        group, _elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            length = struct.unpack_from("<I", data, pos + 8)[0]
            pos += 12 + length
        else:
            length = struct.unpack_from("<H", data, pos + 6)[0]
            pos += 8 + length
    return data[pos:]


def sop_uid_of(path: str | os.PathLike) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


def dicom_files(folder: str | os.PathLike) -> list[Path]:
    """Every regular file under ``folder`` that is a Part-10 file (recursively)."""
    out = []
    for root, _dirs, files in os.walk(folder):
        for f in files:
            p = Path(root) / f
            with open(p, "rb") as fh:
                head = fh.read(132)
            if head[128:132] == b"DICM":
                out.append(p)
    return sorted(out)


def transfer_syntax_of(path: str | os.PathLike) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def received_files(folder: str | os.PathLike) -> dict[str, Path]:
    """SOPInstanceUID -> path of every Part-10 file under ``folder``. Fails on a
    duplicate (the same instance received twice)."""
    out: dict[str, Path] = {}
    for p in dicom_files(folder):
        uid = sop_uid_of(p)
        assert uid not in out, f"{uid} received twice ({out[uid]} and {p})"
        out[uid] = p
    return out


def assert_holds_exactly(folder: str | os.PathLike, expected: Iterable[Instance], *,
                         allow_transcoded: bool = False) -> None:
    """``folder`` holds exactly the ``expected`` instances, each data set byte-identical
    to its source file. With ``allow_transcoded``, an instance received in another
    transfer syntax than its source's (the sender's choice) must instead decode to the
    same elements and values."""
    import pydicom

    expected = list(expected)
    got = received_files(folder)
    want = {i.SOPInstanceUID: i for i in expected}
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, f"missing {missing}, unexpected {extra}"
    for uid, inst in want.items():
        src_ts, got_ts = transfer_syntax_of(inst.path), transfer_syntax_of(got[uid])
        if src_ts != got_ts:
            assert allow_transcoded, f"{uid}: received in {got_ts}, source is {src_ts}"
            a, b = pydicom.dcmread(inst.path), pydicom.dcmread(got[uid])
            assert [(e.tag, e.value) for e in a] == [(e.tag, e.value) for e in b], uid
            continue
        src, received = dataset_bytes(inst.path), dataset_bytes(got[uid])
        assert received == src, f"{uid}: received data set differs from the source " \
                                f"({len(received)} vs {len(src)} bytes, both {got_ts})"


# --- C-FIND cases: each matching rule at each level, with the expected answer ------------

@dataclass(frozen=True)
class FindCase:
    """One C-FIND: root, level, matching keys (keyword -> value; "" is a return key),
    and the predicate over the truth that selects the expected matches."""

    id: str
    root: str  # "study" | "patient"
    level: str
    keys: dict
    select: Callable[[Instance], bool]
    rule: str  # single | universal | wildcard | range | list

    def expected(self, truth: list[Instance]) -> set[str]:
        key = UNIQUE_KEYS[self.level]
        return {i.value(key) for i in truth if self.select(i)}

    def matching_keywords(self) -> set[str]:
        """The keys with a value (matched, not only returned)."""
        return {k for k, v in self.keys.items() if v not in ("", None)}

    def identifier(self) -> dict:
        ident = dict(self.keys)
        ident.setdefault(UNIQUE_KEYS[self.level], "")
        return ident


def find_cases(truth: list[Instance]) -> list[FindCase]:
    """The C-FIND cases over the standard archive (see :data:`PATIENTS`)."""
    by_study: dict[str, list[Instance]] = {}
    for i in truth:
        by_study.setdefault(i.StudyInstanceUID, []).append(i)
    studies = list(by_study)
    pat1_study1 = studies[0]  # PAT001 CT chest: series 1 (3 images), series 2 (2 images)
    s1_series = sorted({i.SeriesInstanceUID for i in by_study[pat1_study1]})
    series1 = s1_series[0]
    series1_images = [i.SOPInstanceUID for i in truth if i.SeriesInstanceUID == series1]
    pat3_study = next(i.StudyInstanceUID for i in truth if i.PatientID == "PAT003")
    pat3_series = sorted({i.SeriesInstanceUID for i in truth if i.PatientID == "PAT003"})
    two_studies = [studies[0], studies[2]]
    two_images = [series1_images[0], series1_images[2]]

    study_ret = {"PatientID": "", "PatientName": "", "StudyDate": "", "StudyTime": "",
                 "AccessionNumber": "", "StudyDescription": ""}
    series_ret = {"Modality": "", "SeriesNumber": "", "SeriesDescription": ""}
    image_ret = {"SOPClassUID": "", "InstanceNumber": ""}
    cases = [
        # --- Study Root ---
        FindCase("S-STUDY-single-PatientID", "study", "STUDY",
                 {**study_ret, "PatientID": "PAT001"}, lambda i: i.PatientID == "PAT001", "single"),
        FindCase("S-STUDY-universal", "study", "STUDY", dict(study_ret), lambda i: True, "universal"),
        FindCase("S-STUDY-wildcard-star", "study", "STUDY",
                 {**study_ret, "PatientName": "Doe*"}, lambda i: i.PatientName.startswith("Doe"),
                 "wildcard"),
        FindCase("S-STUDY-wildcard-question", "study", "STUDY",
                 {**study_ret, "PatientName": "Sm?th^*"},
                 lambda i: i.PatientName == "Smith^Anna", "wildcard"),
        FindCase("S-STUDY-range-closed", "study", "STUDY",
                 {**study_ret, "StudyDate": "20200101-20201231"},
                 lambda i: "20200101" <= i.StudyDate <= "20201231", "range"),
        FindCase("S-STUDY-range-open-end", "study", "STUDY",
                 {**study_ret, "StudyDate": "20200301-"}, lambda i: i.StudyDate >= "20200301", "range"),
        FindCase("S-STUDY-range-open-start", "study", "STUDY",
                 {**study_ret, "StudyDate": "-20200115"}, lambda i: i.StudyDate <= "20200115", "range"),
        FindCase("S-STUDY-uid-list", "study", "STUDY",
                 {**study_ret, "StudyInstanceUID": "\\".join(two_studies)},
                 lambda i: i.StudyInstanceUID in two_studies, "list"),
        FindCase("S-STUDY-single-no-match", "study", "STUDY",
                 {**study_ret, "PatientID": "NOBODY"}, lambda i: False, "single"),
        FindCase("S-SERIES-single-Modality", "study", "SERIES",
                 {**series_ret, "StudyInstanceUID": pat3_study, "Modality": "MR"},
                 lambda i: i.StudyInstanceUID == pat3_study and i.Modality == "MR", "single"),
        FindCase("S-SERIES-universal", "study", "SERIES",
                 {**series_ret, "StudyInstanceUID": pat1_study1},
                 lambda i: i.StudyInstanceUID == pat1_study1, "universal"),
        FindCase("S-SERIES-wildcard", "study", "SERIES",
                 {**series_ret, "StudyInstanceUID": pat3_study, "Modality": "C?"},
                 lambda i: i.StudyInstanceUID == pat3_study and i.Modality == "CT", "wildcard"),
        FindCase("S-SERIES-wildcard-description", "study", "SERIES",
                 {**series_ret, "StudyInstanceUID": pat3_study, "SeriesDescription": "*R series*"},
                 lambda i: i.StudyInstanceUID == pat3_study and i.Modality == "MR", "wildcard"),
        FindCase("S-SERIES-uid-list", "study", "SERIES",
                 {**series_ret, "StudyInstanceUID": pat3_study,
                  "SeriesInstanceUID": "\\".join(pat3_series)},
                 lambda i: i.SeriesInstanceUID in pat3_series, "list"),
        FindCase("S-IMAGE-universal", "study", "IMAGE",
                 {**image_ret, "StudyInstanceUID": pat1_study1, "SeriesInstanceUID": series1},
                 lambda i: i.SeriesInstanceUID == series1, "universal"),
        FindCase("S-IMAGE-single-InstanceNumber", "study", "IMAGE",
                 {**image_ret, "StudyInstanceUID": pat1_study1, "SeriesInstanceUID": series1,
                  "InstanceNumber": "2"},
                 lambda i: i.SeriesInstanceUID == series1 and i.InstanceNumber == "2", "single"),
        FindCase("S-IMAGE-uid-list", "study", "IMAGE",
                 {**image_ret, "StudyInstanceUID": pat1_study1, "SeriesInstanceUID": series1,
                  "SOPInstanceUID": "\\".join(two_images)},
                 lambda i: i.SOPInstanceUID in two_images, "list"),
        # --- Patient Root ---
        FindCase("P-PATIENT-universal", "patient", "PATIENT",
                 {"PatientName": "", "PatientBirthDate": "", "PatientSex": ""}, lambda i: True,
                 "universal"),
        FindCase("P-PATIENT-single", "patient", "PATIENT",
                 {"PatientID": "PAT002", "PatientName": ""}, lambda i: i.PatientID == "PAT002",
                 "single"),
        FindCase("P-PATIENT-wildcard-star", "patient", "PATIENT",
                 {"PatientName": "Sm*", "PatientSex": ""}, lambda i: i.PatientName.startswith("Sm"),
                 "wildcard"),
        FindCase("P-PATIENT-wildcard-question", "patient", "PATIENT",
                 {"PatientID": "PAT00?", "PatientName": "Doe^J?n?"},
                 lambda i: i.PatientName == "Doe^Jane", "wildcard"),
        FindCase("P-PATIENT-range-birthdate", "patient", "PATIENT",
                 {"PatientName": "", "PatientBirthDate": "19650101-19751231"},
                 lambda i: "19650101" <= i.PatientBirthDate <= "19751231", "range"),
        FindCase("P-STUDY-single", "patient", "STUDY",
                 {"PatientID": "PAT001", "StudyDate": "", "StudyDescription": ""},
                 lambda i: i.PatientID == "PAT001", "single"),
        FindCase("P-STUDY-range", "patient", "STUDY",
                 {"PatientID": "PAT001", "StudyDate": "20210101-20211231", "StudyDescription": ""},
                 lambda i: i.PatientID == "PAT001" and i.StudyDate.startswith("2021"), "range"),
        FindCase("P-STUDY-wildcard", "patient", "STUDY",
                 {"PatientID": "PAT001", "StudyDate": "", "StudyDescription": "CT*"},
                 lambda i: i.PatientID == "PAT001" and i.StudyDescription.startswith("CT"),
                 "wildcard"),
        FindCase("P-SERIES-single-Modality", "patient", "SERIES",
                 {**series_ret, "PatientID": "PAT003", "StudyInstanceUID": pat3_study,
                  "Modality": "CT"},
                 lambda i: i.StudyInstanceUID == pat3_study and i.Modality == "CT", "single"),
        FindCase("P-SERIES-universal", "patient", "SERIES",
                 {**series_ret, "PatientID": "PAT001", "StudyInstanceUID": pat1_study1},
                 lambda i: i.StudyInstanceUID == pat1_study1, "universal"),
        FindCase("P-IMAGE-uid-list", "patient", "IMAGE",
                 {**image_ret, "PatientID": "PAT001", "StudyInstanceUID": pat1_study1,
                  "SeriesInstanceUID": series1, "SOPInstanceUID": "\\".join(two_images)},
                 lambda i: i.SOPInstanceUID in two_images, "list"),
        FindCase("P-IMAGE-universal", "patient", "IMAGE",
                 {**image_ret, "PatientID": "PAT001", "StudyInstanceUID": pat1_study1,
                  "SeriesInstanceUID": series1},
                 lambda i: i.SeriesInstanceUID == series1, "universal"),
    ]
    return cases


def cases_for(cases: list[FindCase], unsupported: Iterable[str]) -> list[FindCase]:
    """The cases that match only on keys a peer supports."""
    unsupported = set(unsupported)
    return [c for c in cases if not c.matching_keywords() & unsupported]


def check_find_answer(case: FindCase, answers: list, truth: list[Instance],
                      unsupported: Iterable[str] = (), *, one_per_instance: bool = False) -> None:
    """Compare the C-FIND answers (pydicom Datasets) with the truth: exactly the
    expected entities, each once, and each requested return key of the query level or
    above holding the stored value. Return keys in ``unsupported`` (attributes the peer
    does not hold, which PS3.4 C.2.2.1.3 lets it leave out) may be absent, but if
    present must be right. ``one_per_instance``: the peer answers once per stored
    instance below each matching entity (pynetdicom's qrscp app does), so the answer is
    compared as a set and the number of answers with the number of instances."""
    unsupported = set(unsupported)
    key = UNIQUE_KEYS[case.level]
    got = [str(a.get(key, "")) for a in answers]
    expected = case.expected(truth)
    if one_per_instance:
        n_instances = sum(1 for i in truth if case.select(i))
        assert len(got) == n_instances, f"{case.id}: {len(got)} answers for {n_instances} instances"
        got = sorted(set(got))
    assert sorted(got) == sorted(expected), (
        f"{case.id}: expected {len(expected)} match(es) {sorted(expected)}, got {len(got)} {sorted(got)}")
    rank = LEVELS.index(case.level)
    by_key = {}
    for i in truth:
        by_key.setdefault(i.value(key), i)
    for a in answers:
        a_level = str(a.get("QueryRetrieveLevel", case.level) or case.level)
        assert a_level == case.level, f"{case.id}: response at level {a_level!r}"
        inst = by_key[str(a.get(key))]
        for kw in case.identifier():
            lv = LEVEL_OF.get(kw)
            if lv is None or LEVELS.index(lv) > rank:
                continue
            if case.root == "study" and lv == "PATIENT" and kw not in case.keys:
                continue
            if kw in unsupported and kw not in a:
                continue
            assert kw in a, f"{case.id}: return key {kw} missing from {a}"
            value = a.get(kw)
            text = "" if value is None else str(value)
            assert text == inst.value(kw), f"{case.id}: {kw} = {text!r}, stored {inst.value(kw)!r}"


# --- dcmtk clients --------------------------------------------------------------------

def _key_args(level: str, keys: dict) -> list[str]:
    args = ["-k", f"QueryRetrieveLevel={level}"]
    for kw, value in keys.items():
        args += ["-k", kw if value in ("", None) else f"{kw}={value}"]
    return args


def _model(root: str) -> str:
    return "-S" if root == "study" else "-P"


def run_findscu(port: int, called_ae: str, root: str, level: str, keys: dict, out_dir: Path,
                *, extra: list[str] | None = None, timeout: float = 30.0) -> tuple[int, str, list]:
    """dcmtk ``findscu -X``: returns (returncode, output, the response identifiers read
    back with pydicom, in the order received)."""
    import pydicom

    exe = require_executable("findscu")
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "-v", _model(root), "-aet", "FINDSCU", "-aec", called_ae, "-to", "10",
            "-ta", "10", "-td", "20", "-X", "-od", str(out_dir), *(extra or []),
            *_key_args(level, keys), HOST, str(port)]
    rc, out = _run(argv, timeout)
    files = sorted(out_dir.glob("rsp*.dcm"))
    return rc, out, [pydicom.dcmread(f) for f in files]


def run_movescu(port: int, called_ae: str, root: str, level: str, keys: dict,
                destination: str, *, timeout: float = 60.0) -> tuple[int, str]:
    exe = require_executable("movescu")
    argv = [exe, "-d", _model(root), "-aet", "MOVESCU", "-aec", called_ae, "-aem", destination,
            "-to", "10", "-ta", "10", "-td", "30", *_key_args(level, keys), HOST, str(port)]
    return _run(argv, timeout)


def run_getscu(port: int, called_ae: str, root: str, level: str, keys: dict, out_dir: Path,
               *, timeout: float = 60.0) -> tuple[int, str]:
    exe = require_executable("getscu")
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "-d", _model(root), "-aet", "GETSCU", "-aec", called_ae, "-to", "10",
            "-ta", "10", "-td", "30", "+B", "-od", str(out_dir), *_key_args(level, keys),
            HOST, str(port)]
    return _run(argv, timeout)


def run_storescu(port: int, called_ae: str, files: Iterable[str], *,
                 timeout: float = 60.0) -> tuple[int, str]:
    exe = require_executable("storescu")
    argv = [exe, "-v", "-aet", "STORESCU", "-aec", called_ae, "-to", "10", "-ta", "10",
            "-td", "30", HOST, str(port), *[str(f) for f in files]]
    return _run(argv, timeout)


def final_response(output: str, message_type: str) -> dict:
    """The last incoming ``message_type`` ("C-MOVE RSP", "C-GET RSP") in dcmtk's debug
    (-d) output: {"status": int, "remaining"/"completed"/"failed"/"warning": int or None}."""
    blocks = [b for b in output.split("INCOMING DIMSE MESSAGE") if message_type in b.split("END DIMSE", 1)[0]]
    if not blocks:
        raise AssertionError(f"no {message_type} in the output:\n{output}")
    block = blocks[-1].split("END DIMSE", 1)[0]
    out: dict = {}
    m = re.search(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", block)
    out["status"] = int(m.group(1), 16) if m else None
    for name in ("Remaining", "Completed", "Failed", "Warning"):
        m = re.search(rf"{name} Suboperations\s*:\s*(\S+)", block)
        out[name.lower()] = int(m.group(1)) if m and m.group(1).isdigit() else None
    return out


# --- servers --------------------------------------------------------------------------

def start_dcmtk_catcher(log_dir: Path, out_dir: Path, *, ae_title: str = "CATCHER",
                        port: int | None = None) -> Peer:
    """dcmtk storescp writing exactly what it receives (+B) into ``out_dir``."""
    exe = require_executable("storescp")
    port = free_port() if port is None else port
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = [exe, "-v", "-aet", ae_title, "+B", "-od", str(out_dir), "-ta", "10", "-td", "20",
            str(port)]
    return start_process(argv, port=port, log_dir=log_dir, name=f"catcher-{port}",
                         ae_title=ae_title)


DCMQRSCP_AE = "DCMQR"


def write_dcmqrscp_config(path: Path, storage: Path, port: int, hosts: dict[str, tuple[str, int]]) -> Path:
    """A dcmqrscp.cfg: one RW storage area ``DCMQR`` open to ANY peer, and a HostTable
    entry per move destination (AE title -> (hostname, port))."""
    storage.mkdir(parents=True, exist_ok=True)
    host_lines = "\n".join(f"{ae.lower()} = ({ae}, {host}, {p})" for ae, (host, p) in hosts.items())
    path.write_text(f"""# written by the fastdimse tests
NetworkTCPPort  = {port}
MaxPDUSize      = 16384
MaxAssociations = 16

HostTable BEGIN
{host_lines}
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
{DCMQRSCP_AE}   {storage}   RW   (100, 1024mb)   ANY
AETable END
""")
    return path


def start_dcmqrscp(log_dir: Path, storage: Path, hosts: dict[str, tuple[str, int]],
                   port: int | None = None) -> Peer:
    """dcmtk dcmqrscp (default fork mode: one child per association, each ends with its
    association; the parent is stopped by pid). Not ``--single-process``: dcmqrscp
    3.6.7 (Debian) segfaults (exit 139) after the first association is released in that
    mode."""
    exe = require_executable("dcmqrscp")
    port = free_port() if port is None else port
    cfg = write_dcmqrscp_config(log_dir / "dcmqrscp.cfg", storage, port, hosts)
    argv = [exe, "-v", "-c", str(cfg), "-ta", "10", "-td", "20", str(port)]
    return start_process(argv, port=port, log_dir=log_dir, name=f"dcmqrscp-{port}",
                         ae_title=DCMQRSCP_AE)


def start_pynetdicom_qrscp(log_dir: Path, workdir: Path, destinations: dict[str, tuple[str, int]],
                           *, ae_title: str = "PYQRSCP", port: int | None = None) -> Peer:
    """pynetdicom's ``qrscp`` app with a config written here (its move destinations,
    a SQLite database and instance folder under ``workdir``)."""
    require_module("pynetdicom")
    require_module("sqlalchemy")
    port = free_port() if port is None else port
    workdir.mkdir(parents=True, exist_ok=True)
    dests = "\n".join(f"[{ae}]\n    address: {h}\n    port: {p}\n" for ae, (h, p) in destinations.items())
    cfg = workdir / "qrscp.ini"
    cfg.write_text(f"""[DEFAULT]
    ae_title: {ae_title}
    port: {port}
    max_pdu: 16382
    acse_timeout: 10
    dimse_timeout: 20
    network_timeout: 30
    bind_address: {HOST}
    instance_location: {workdir / 'instances'}
    database_location: {workdir / 'instances.sqlite'}
    log_identifier: False

{dests}""")
    argv = [PYTHON, "-m", "pynetdicom", "qrscp", "-v", "-c", str(cfg)]
    return start_process(argv, port=port, log_dir=log_dir, name=f"pynetdicom-qrscp-{port}",
                         ae_title=ae_title, cwd=workdir)



# --- our own SCPs -------------------------------------------------------------------------

#: The index back ends the Q/R suites run against (fixtures parametrized with these).
QR_BACKENDS = ["sqlite", "postgresql"]
_databases = iter(range(10**9))


def index_kwargs(request) -> dict:
    """DICOMSCP keyword arguments for the back end ``request.param`` names: none for the
    default SQLite index in the storage folder; ``index=`` a fresh database on the test
    session's PostgreSQL server (tests/support/pgserver.py) for "postgresql"."""
    if request.param == "sqlite":
        return {}
    server = request.getfixturevalue("pg_server")
    return {"index": server.create_database(f"qr{next(_databases)}")}


def start_our_qr(ae_title: str, *, storage_dir=None, backend=None, known_entities=(), **kwargs):
    """Our DICOMSCP as a Q/R SCP on a free loopback port, answering; returns
    (scp, remote Entity). The caller stops it (``scp.stop()``)."""
    from fastdimse import DICOMSCP, Entity

    from tests.support.peers import wait_for_port

    scp = DICOMSCP(Entity(ae_title, HOST, 0), storage_dir=storage_dir, backend=backend,
                   known_entities=list(known_entities), **kwargs)
    scp.listen_for_incoming_associations(keep_listener_running=True)
    try:
        wait_for_port(HOST, scp.port, timeout=10.0)
    except BaseException:
        scp.stop()
        raise
    return scp, Entity(ae_title, HOST, scp.port)


# --- a custom Q/R back end (the QRBackend interface, not the SQLite index) ----------------

def _matches(value: str, key) -> bool:
    """PS3.4 C.2.2.2 matching of one stored value against one key value, for the rules
    the memory back end implements: universal, single value, wildcard, UID list, and
    date range (YYYYMMDD-YYYYMMDD, open ends)."""
    if isinstance(key, (list, tuple)) or type(key).__name__ == "MultiValue":  # a list of UIDs
        return value in [str(k) for k in key]
    key = "" if key is None else str(key)
    if key == "":
        return True
    if "\\" in key:
        return value in key.split("\\")
    if "*" in key or "?" in key:
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in key)
        return re.fullmatch(pattern, value, re.DOTALL) is not None
    if re.fullmatch(r"(\d{8})?-(\d{8})?", key):
        lo, _, hi = key.partition("-")
        return (not lo or value >= lo) and (not hi or value <= hi)
    return value == key


class MemoryBackend:
    """A Q/R back end over a list of :class:`Instance` (no SQL): what a user plugs in
    with ``DICOMSCP(backend=...)``. Records every call; ``find_delay`` slows each match
    (to watch C-CANCEL); counts how many matches the SCP pulled."""

    def __init__(self, instances: Iterable[Instance], find_delay: float = 0.0):
        import threading

        self.instances = list(instances)
        self.find_delay = find_delay
        self.calls: list[tuple[str, str | None, str]] = []
        self.added: list[str] = []
        self.pulled = 0
        self.finished = False  # a find generator ran to its end
        self.closed = threading.Event()  # a find generator was closed
        self._lock = threading.Lock()

    def _selected(self, identifier, level: str) -> list[Instance]:
        rank = LEVELS.index(level)
        out = []
        for inst in self.instances:
            ok = True
            for elem in identifier:
                kw = elem.keyword
                lv = LEVEL_OF.get(kw)
                if lv is None or LEVELS.index(lv) > rank:
                    continue
                if not _matches(inst.value(kw), elem.value):
                    ok = False
                    break
            if ok:
                out.append(inst)
        return out

    def find(self, identifier, level, root):
        import time

        from pydicom.dataset import Dataset

        level = level or str(identifier.QueryRetrieveLevel)
        self.calls.append(("find", level, root))
        key = UNIQUE_KEYS[level]
        entities = list({i.value(key): i for i in self._selected(identifier, level)}.values())

        def gen():
            try:
                for inst in entities:
                    ds = Dataset()
                    ds.QueryRetrieveLevel = level
                    for elem in identifier:
                        if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
                            continue
                        lv = LEVEL_OF.get(elem.keyword)
                        ok = lv is not None and LEVELS.index(lv) <= LEVELS.index(level)
                        setattr(ds, elem.keyword, inst.value(elem.keyword) if ok else "")
                    setattr(ds, key, inst.value(key))
                    with self._lock:
                        self.pulled += 1
                    yield ds
                    if self.find_delay:
                        time.sleep(self.find_delay)
                self.finished = True
            finally:
                self.closed.set()

        return gen()

    def locate(self, identifier, level, root):
        from fastdimse.qr import InstanceRef

        level = level or str(identifier.QueryRetrieveLevel)
        self.calls.append(("locate", level, root))
        for inst in self._selected(identifier, level):
            yield InstanceRef(inst.SOPClassUID, inst.SOPInstanceUID, EXPLICIT_VR_LE, inst.path)

    def add(self, path, dataset=None, transfer_syntax=None):
        self.added.append(str(path))
