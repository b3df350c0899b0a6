"""The generated archive and the index fixtures of the Q/R index tests
(tests/unit/test_qr_index*.py): a random but reproducible archive with its brute-force
truth, an index of each back end (SQLite, PostgreSQL) over it, and the helpers that check
a C-FIND against the truth."""

from __future__ import annotations

import fnmatch
import random
from datetime import date, timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid


from tests.support.qrload import load_qr as _load_qr  # noqa: E402


qr = _load_qr()

UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
          "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
LEVEL_KEYS = {
    "PATIENT": ["PatientID", "PatientName", "PatientBirthDate", "PatientSex"],
    "STUDY": ["StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
              "StudyDescription", "ReferringPhysicianName"],
    "SERIES": ["SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription"],
    "IMAGE": ["SOPInstanceUID", "SOPClassUID", "InstanceNumber"],
}
LEVELS = ["PATIENT", "STUDY", "SERIES", "IMAGE"]
ROOT_LEVELS = {"patient": LEVELS, "study": LEVELS[1:]}
CLASS_OF = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
            "US": "1.2.840.10008.5.1.4.1.1.6.1", "OT": "1.2.840.10008.5.1.4.1.1.7"}

# (PatientID, PatientName, BirthDate, Sex, SpecificCharacterSet)
PATIENTS = [
    ("PAT001", "Doe^John", "19700101", "M", None),
    ("PAT002", "DOE^JANE", "19800512", "F", None),
    ("PAT003", "Smith^Anna", "19651231", "F", None),
    ("PAT004", "Müller^Jürgen", "19501010", "M", "ISO_IR 100"),
    ("pat[5]", "smith^bob", "", "O", None),
    ("PAT006", "Ямада^Таро", "20000229", "M", "ISO_IR 192"),
    ("PAT007", "", "19991231", "", None),
]
STUDY_DESCRIPTIONS = ["Chest CT", "CHEST ct", "Brain MRI", "brain mri w/o", "Abdomen [contrast]",
                      "Knee", ""]
PHYSICIANS = ["House^Gregory", "house^g", "", "Wilson^James"]
SERIES_DESCRIPTIONS = ["Axial", "axial 2mm", "Sag T1", "LOCALIZER", ""]


def _time_value(rng):
    hh, mm, ss = rng.randrange(24), rng.randrange(60), rng.randrange(60)
    form = rng.randrange(4)
    if form == 0:
        return f"{hh:02d}{mm:02d}"
    if form == 1:
        return f"{hh:02d}{mm:02d}{ss:02d}.{rng.randrange(1000000):06d}"
    return f"{hh:02d}{mm:02d}{ss:02d}"


def make_archive(folder: Path, seed: int = 20261129):
    """Write a small archive of Part-10 files; return one truth dict per instance."""
    rng = random.Random(seed)
    truth = []
    n_study = 0
    for pid, name, birth, sex, charset in PATIENTS:
        for _ in range(rng.randint(1, 3)):
            n_study += 1
            study = {
                "StudyInstanceUID": generate_uid(),
                "StudyDate": "" if n_study == 5 else
                (date(2019, 1, 1) + timedelta(rng.randrange(1400))).strftime("%Y%m%d"),
                "StudyTime": _time_value(rng),
                "AccessionNumber": f"ACC{n_study:04d}" if n_study % 4 else f"acc{n_study}",
                "StudyID": str(n_study),
                "StudyDescription": rng.choice(STUDY_DESCRIPTIONS),
                "ReferringPhysicianName": rng.choice(PHYSICIANS),
            }
            for s in range(rng.randint(1, 3)):
                modality = rng.choice(list(CLASS_OF))
                series = {"SeriesInstanceUID": generate_uid(), "Modality": modality,
                          "SeriesNumber": s + 1,
                          "SeriesDescription": rng.choice(SERIES_DESCRIPTIONS)}
                for i in range(rng.randint(1, 4)):
                    inst = {"PatientID": pid, "PatientName": name, "PatientBirthDate": birth,
                            "PatientSex": sex, "SpecificCharacterSet": charset,
                            **study, **series,
                            "SOPInstanceUID": generate_uid(), "SOPClassUID": CLASS_OF[modality],
                            "InstanceNumber": i + 1,
                            "TransferSyntaxUID": rng.choice([ExplicitVRLittleEndian,
                                                             ImplicitVRLittleEndian])}
                    sub = folder / f"p{PATIENTS.index((pid, name, birth, sex, charset))}" \
                        / f"st{n_study}"
                    sub.mkdir(parents=True, exist_ok=True)
                    inst["path"] = str(sub / f"{inst['SOPInstanceUID']}.dcm")
                    write_instance(inst)
                    truth.append(inst)
    (folder / "README.txt").write_text("not a DICOM file\n")
    (folder / "p0" / "empty.dcm").write_bytes(b"")
    return truth


def write_instance(inst: dict) -> None:
    ds = Dataset()
    if inst.get("SpecificCharacterSet"):
        ds.SpecificCharacterSet = inst["SpecificCharacterSet"]
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
                    "Modality", "ReferringPhysicianName", "StudyDescription",
                    "SeriesDescription", "PatientName", "PatientID", "PatientBirthDate",
                    "PatientSex", "StudyInstanceUID", "SeriesInstanceUID", "StudyID",
                    "SeriesNumber", "InstanceNumber"):
        if keyword in inst:
            setattr(ds, keyword, inst[keyword])
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = inst["TransferSyntaxUID"]
    meta.MediaStorageSOPClassUID = inst["SOPClassUID"]
    meta.MediaStorageSOPInstanceUID = inst["SOPInstanceUID"]
    ds.file_meta = meta
    ds.save_as(inst["path"], enforce_file_format=True)


BACKENDS = ["sqlite", "postgresql"]
_db_names = iter(range(10**9))


def open_backend(request, backend: str, folder):
    """A new index of the given kind over ``folder``: SQLite in the folder, or
    PostgreSQL in a fresh database of the session's server (tests/support/pgserver.py)."""
    if backend == "sqlite":
        return qr.SQLiteIndex(folder)  # the index file lives in the folder
    server = request.getfixturevalue("pg_server")
    url = server.create_database(f"ix{next(_db_names)}")
    return qr.PostgresIndex(url, folder)


def reopen(index, folder):
    """The same index opened again (a restart)."""
    if isinstance(index, qr.SQLiteIndex) and not hasattr(index, "url"):
        return qr.SQLiteIndex(folder)
    return qr.PostgresIndex(index.url, folder)


@pytest.fixture(params=BACKENDS)
def make_index(request):
    """``make_index(folder)``: an index of the test's back end; a second call in the same
    test opens the same index again (same database) over the folder it is given."""
    opened = []

    def make(folder):
        index = (open_backend(request, request.param, folder) if not opened
                 else reopen(opened[0], folder))
        opened.append(index)
        return index

    yield make
    for index in opened:
        index.close()


@pytest.fixture(scope="module", params=BACKENDS)
def archive(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("archive")
    truth = make_archive(folder)
    index = open_backend(request, request.param, folder)
    result = index.import_folder(folder)
    yield index, truth, result, folder
    index.close()


# ---------------------------------------------------------------------------
# truth helpers


def entities(truth, level):
    """unique key -> representative instance, for the entities of a level."""
    out = {}
    for inst in truth:
        out.setdefault(inst[UNIQUE[level]], inst)
    return out


def wild(pattern, value, ci=False):
    if not value:
        return False
    if ci:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def query(index, level, root, **keys):
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k, v in keys.items():
        setattr(ds, k, v)
    return list(index.find(ds, level, root))


def check(index, truth, level, root, keys, pred):
    """Run the query; assert the matched entities are exactly those ``pred`` selects."""
    got = query(index, level, root, **keys)
    ids = [r[UNIQUE[level]].value for r in got]
    assert len(ids) == len(set(ids)), "duplicate responses"
    want = {uid for uid, e in entities(truth, level).items() if pred(e)}
    assert set(ids) == want, (level, root, keys)
    return got


def norm(value):
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    if isinstance(value, int):
        return int(value)
    return str(value)


def _ds(**kw):
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _header(**kw):
    h = {"SOPInstanceUID": generate_uid(), "SOPClassUID": CLASS_OF["CT"],
         "StudyInstanceUID": "1.2.826.0.1.3680043.10.1", "SeriesInstanceUID": "1.2.826.0.1.1",
         "PatientID": "RM", "PatientName": "Remove^Me", "Modality": "CT"}
    h.update(kw)
    return h
