"""The records the core hands to Python (StoreResult, StoreSummary, StoredInstance) and
the keyword-only call of _core.store_instances: read-only fields, equality, a repr that
names every field, an empty store's summary, a refused store's error."""

from __future__ import annotations

import socket

import pytest

import fastdimse
from fastdimse import _core

pytestmark = pytest.mark.timeout(120)

FIELDS = ("path", "sop_class_uid", "sop_instance_uid", "transfer_syntax", "patient_id",
          "study_instance_uid", "series_instance_uid", "calling_ae_title", "called_ae_title",
          "dataset_bytes")


def _stored(**over):
    values = dict(zip(FIELDS, ("/x", "1.2", "1.2.3", "1.2.840.10008.1.2.1", "PID1", "1.4", "1.5", "A", "B", 7)))
    values.update(over)
    return fastdimse.StoredInstance(*values.values())


def test_stored_instance_is_a_frozen_record():
    s = _stored()
    assert fastdimse.StoredInstance is _core.StoredInstance is fastdimse.scp.StoredInstance
    assert [getattr(s, f) for f in FIELDS] == ["/x", "1.2", "1.2.3", "1.2.840.10008.1.2.1", "PID1",
                                               "1.4", "1.5", "A", "B", 7]
    assert s.attributes == {}
    assert s == _stored() and hash(s) == hash(_stored()) and s != _stored(patient_id="PID2")
    with pytest.raises(AttributeError):
        s.path = "/y"
    r = repr(s)
    assert r.startswith("StoredInstance(path='/x', ") and all(f"{f}=" in r for f in FIELDS), r
    with_attrs = fastdimse.StoredInstance(*[getattr(s, f) for f in FIELDS], {0x00100010: b"DOE^J"})
    assert with_attrs.attributes == {0x00100010: b"DOE^J"} and with_attrs != s


def _write_file(path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.PatientID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", "P1"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def test_stored_instance_reads_its_file(tmp_path):
    import pydicom

    path = tmp_path / "x.dcm"
    _write_file(path)
    got = _stored(path=str(path)).read_dataset(stop_before_pixels=True)
    assert isinstance(got, pydicom.Dataset) and got.PatientID == "P1"


def test_store_instances_takes_keywords_only():
    with pytest.raises(TypeError):
        _core.store_instances([], "127.0.0.1", 104, "A", "B")  # the old positional call


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_empty_store_is_an_all_zero_summary_record():
    """An empty item list opens nothing and gives an all-zero summary record whose str()
    is the documented one (an empty list for results="list")."""
    me, remote = fastdimse.Entity("ME", "127.0.0.1", 0), fastdimse.Entity("NOBODY", "127.0.0.1", _closed_port())
    scu = fastdimse.DICOMSCU(me)
    summary = scu.store(remote, iter([]), results="summary")
    assert isinstance(summary, fastdimse.StoreSummary) and summary.__class__ is _core.StoreSummary
    assert (summary.total, summary.completed, summary.warning, summary.failed, summary.failures) == (0, 0, 0, 0, ())
    assert summary.is_success and summary.failures_not_kept == 0 and list(summary) == []
    assert str(summary).startswith("0 instance(s): 0 stored, 0 with a warning, 0 failed; 0 bytes over 0 association(s) in ")
    assert scu.store(remote, [], results="list") == []


def test_a_store_nobody_answers_raises_a_network_error(tmp_path):
    """No association at all could be made (nothing listens on the port): NetworkError,
    caught as DicomError."""
    path = tmp_path / "x.dcm"
    _write_file(path)
    scu = fastdimse.DICOMSCU(fastdimse.Entity("ME", "127.0.0.1", 0))
    scu.connect_timeout = 5
    with pytest.raises(fastdimse.errors.NetworkError):
        scu.store(fastdimse.Entity("NOBODY", "127.0.0.1", _closed_port()), [str(path)], results="list")
