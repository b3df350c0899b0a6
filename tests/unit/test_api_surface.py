"""The package's public surface: the four classes of the API at the top level, one
exception hierarchy (errors.py) that every old import path still reaches, and the
status categories and AE-title rule taken from the Rust core."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fastdimse
import fastdimse.errors as errors

pytestmark = pytest.mark.timeout(120)


def test_the_four_classes_import_from_the_top_level():
    from fastdimse import DICOMSCP, DICOMSCU, Entity, QueryBuilder
    from fastdimse.query import QueryBuilder as qb

    assert QueryBuilder is qb
    assert {"Entity", "DICOMSCU", "DICOMSCP", "QueryBuilder"} <= set(fastdimse.__all__)
    assert Entity("FD", "127.0.0.1", 104).ae_title == "FD"
    assert DICOMSCU.__name__ == "DICOMSCU" and DICOMSCP.__name__ == "DICOMSCP"


def test_star_import_and_a_fresh_interpreter_see_them_all():
    """In a new process (nothing imported before), `import *` gives every name of
    __all__, and `import fastdimse` alone imports neither fastdimse.query nor pydicom."""
    code = ("import sys, fastdimse\n"
            "light = 'fastdimse.query' not in sys.modules and 'pydicom' not in sys.modules\n"
            "ns = {}\n"
            "exec('from fastdimse import *', ns)\n"
            "missing = [n for n in fastdimse.__all__ if n not in ns]\n"
            "print(light, missing, ns['QueryBuilder'].__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "[]", "fastdimse.query"], out.stdout


def test_an_unknown_top_level_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NoSuchThing"):
        fastdimse.NoSuchThing  # noqa: B018


# (old module, name) -> the class in errors.py, and its place in the hierarchy.
OLD_PATHS = [
    ("fastdimse.query", "QueryFailed", errors.DimseError),
    ("fastdimse.qr", "QRError", errors.DicomError),
    ("fastdimse.qr", "IdentifierError", errors.QRError),
    ("fastdimse.qr", "UnableToProcess", errors.QRError),
    ("fastdimse.qr", "InstanceError", errors.QRError),
    ("fastdimse.qr.backend", "QRError", errors.DicomError),
    ("fastdimse.qr.backend", "IdentifierError", errors.QRError),
    ("fastdimse.qr.backend", "UnableToProcess", errors.QRError),
    ("fastdimse.qr.backend", "InstanceError", errors.QRError),
    ("fastdimse.qr.postgres", "StoredElsewhere", errors.UnableToProcess),
]


@pytest.mark.parametrize("module, name, parent", OLD_PATHS, ids=[f"{m}.{n}" for m, n, _ in OLD_PATHS])
def test_old_import_paths_give_the_class_of_errors_py(module, name, parent):
    if module.endswith("postgres"):
        pytest.importorskip("psycopg")
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert cls is getattr(errors, name)
    assert cls.__module__ == "fastdimse.errors"
    assert issubclass(cls, parent) and issubclass(cls, errors.DicomError)


def _instances():
    yield errors.QueryFailed("C-FIND failed with status 0xA900", 0xA900, "bad level")
    yield errors.QRError("back end")
    yield errors.IdentifierError("no QueryRetrieveLevel")
    yield errors.UnableToProcess("index unreadable")
    yield errors.InstanceError("no SOPInstanceUID")
    yield errors.StoredElsewhere({"b": ("hostb", 3)}, 5, "a")
    yield errors.AssociationRejected("rejected", 1, 1, 3)
    yield errors.AssociationAborted("aborted", 2, 0)
    yield errors.DicomTimeoutError("timeout")
    yield errors.NoAcceptedContext("none")
    yield errors.DatasetError("bad", offset=12)
    yield errors.ProtocolError("bad PDU")


@pytest.mark.parametrize("exc", list(_instances()), ids=lambda e: type(e).__name__)
def test_except_dicom_error_catches_each(exc):
    try:
        raise exc
    except errors.DicomError as caught:
        assert caught is exc
    else:  # pragma: no cover
        pytest.fail(f"{type(exc).__name__} escaped DicomError")


def test_qr_errors_keep_their_statuses_and_bases():
    assert (errors.QRError.status, errors.IdentifierError.status, errors.UnableToProcess.status,
            errors.InstanceError.status) == (0xC000, 0xA900, 0xC000, 0xC000)
    assert issubclass(errors.IdentifierError, ValueError) and issubclass(errors.InstanceError, ValueError)
    e = errors.StoredElsewhere({"b": ("hostb", 3)}, 5, "a")
    assert e.status == 0xC000 and str(e) == "stored at b on host hostb: 3 of 5 instances; retrieve there, not at a"
    q = errors.QueryFailed("m", 0xC001, "why")
    assert (q.status, q.comment, str(q)) == (0xC001, "why", "m")


def test_the_qr_back_end_raises_the_errors_py_classes(tmp_path):
    """A real back-end error (a C-FIND identifier without a level) is errors.py's class."""
    from fastdimse.qr import SQLiteIndex

    index = SQLiteIndex(tmp_path)
    try:
        with pytest.raises(errors.DicomError) as info:
            list(index.find({"PatientID": "X"}, None, "study"))
        assert type(info.value) is errors.IdentifierError
    finally:
        index.close()


# PS3.7 C.1-C.4 (and the codes of PS3.4 the services use).
CATEGORIES = [
    (0x0000, "success"), (0xFF00, "pending"), (0xFF01, "pending"), (0xFE00, "cancel"),
    (0x0001, "warning"), (0x0107, "warning"), (0x0116, "warning"), (0xB000, "warning"),
    (0xB006, "warning"), (0xB007, "warning"), (0xBFFF, "warning"),
    (0x0110, "failure"), (0x0111, "failure"), (0x0122, "failure"), (0x0211, "failure"),
    (0xA700, "failure"), (0xA801, "failure"), (0xA900, "failure"), (0xC000, "failure"),
    (0xCFFF, "failure"), (0xFFFF, "failure"),
]


@pytest.mark.parametrize("code, expected", CATEGORIES, ids=[f"{c:04X}" for c, _ in CATEGORIES])
def test_status_categories_come_from_the_core(code, expected):
    from fastdimse import _core, status

    assert status.category(code) == expected == _core.status_category(code)


def test_status_constants_are_the_cores():
    from fastdimse import status

    assert (status.SUCCESS, status.CANCEL, status.PENDING, status.PENDING_WARNING,
            status.UNRECOGNIZED_OPERATION, status.SOP_CLASS_NOT_SUPPORTED,
            status.PROCESSING_FAILURE) == (0x0000, 0xFE00, 0xFF00, 0xFF01, 0x0211, 0x0122, 0x0110)


@pytest.mark.parametrize("title, ok", [
    ("FD", "FD"), ("  PACS  ", "PACS"), ("SIXTEEN_CHARS_AE", "SIXTEEN_CHARS_AE"),
    ("X" * 17, None), ("A\\B", None), ("A\tB", None), ("Ä", None), ("   ", None),
])
def test_ae_title_rule_is_the_cores(title, ok):
    """entity.validate_ae_title is the core's rule (the one association negotiation applies)."""
    from fastdimse import _core
    from fastdimse.entity import validate_ae_title

    if ok is None:
        with pytest.raises(ValueError) as a:
            validate_ae_title(title)
        with pytest.raises(ValueError) as b:
            _core.validate_ae_title(title)
        assert str(a.value) == str(b.value)
    else:
        assert validate_ae_title(title) == _core.validate_ae_title(title) == ok
