"""Tests of the Q/R index back ends (SQLite and PostgreSQL, the ``backend`` parameter)
as the archive changes: adding and re-adding instances, removal, threads writing while
others query, and scale. The matching tests are in test_qr_index.py; the archive and the
fixtures in tests/support/qr_index_data.py."""

from __future__ import annotations

import logging
import threading
import time

import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid


from tests.support.qr_index_data import (  # noqa: F401  (fixtures: make_index)
    LEVELS, CLASS_OF, write_instance, make_index, query, _ds, _header, qr,
)

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.filterwarnings("ignore:Invalid value for VR")]


# ---------------------------------------------------------------------------
# add / remove


def test_add_instance_from_a_mapping_and_readding_updates(make_index, tmp_path):
    with make_index(tmp_path) as index:
        h = _header()
        index.add_instance(tmp_path / "a.dcm", h, ExplicitVRLittleEndian)
        ref = index.get_instance(h["SOPInstanceUID"])
        assert ref.path == str(tmp_path / "a.dcm")
        assert ref.transfer_syntax == ExplicitVRLittleEndian
        index.add_instance(tmp_path / "b.dcm", {**h, "StudyDescription": "later"},
                           ImplicitVRLittleEndian)
        assert index.count("IMAGE") == 1
        ref = index.get_instance(h["SOPInstanceUID"])
        assert ref.path == str(tmp_path / "b.dcm")
        assert ref.transfer_syntax == ImplicitVRLittleEndian
        (r,) = query(index, "STUDY", "study", StudyDescription="", PatientName="")
        assert r.StudyDescription == "later" and str(r.PatientName) == "Remove^Me"


def test_add_reads_the_file_when_given_no_dataset(make_index, tmp_path):
    inst = {"PatientID": "F1", "PatientName": "File^One", "StudyInstanceUID": generate_uid(),
            "SeriesInstanceUID": generate_uid(), "SOPInstanceUID": generate_uid(),
            "SOPClassUID": CLASS_OF["MR"], "Modality": "MR",
            "TransferSyntaxUID": ImplicitVRLittleEndian, "path": str(tmp_path / "x.dcm")}
    write_instance(inst)
    with make_index(tmp_path / "store") as index:
        index.add(inst["path"])
        (ref,) = index.locate({"QueryRetrieveLevel": "PATIENT", "PatientID": "F1"}, None,
                              "patient")
        assert ref == qr.InstanceRef(CLASS_OF["MR"], inst["SOPInstanceUID"],
                                     ImplicitVRLittleEndian, inst["path"])
        ds = pydicom.dcmread(inst["path"])
        ds.SOPInstanceUID = generate_uid()
        index.add(tmp_path / "y.dcm", ds)  # a Dataset with file_meta: its transfer syntax
        assert index.get_instance(ds.SOPInstanceUID).transfer_syntax == ImplicitVRLittleEndian


@pytest.mark.parametrize("missing", ["SOPInstanceUID", "SOPClassUID", "StudyInstanceUID",
                                     "SeriesInstanceUID"])
def test_add_instance_requires_the_identifying_uids(make_index, tmp_path, missing):
    with make_index(tmp_path) as index:
        h = _header()
        del h[missing]
        with pytest.raises(qr.InstanceError):
            index.add_instance(tmp_path / "a.dcm", h)
        assert index.count("IMAGE") == 0 and index.count("PATIENT") == 0


def test_remove_prunes_empty_parents(make_index, tmp_path):
    with make_index(tmp_path) as index:
        a, b = _header(), _header()
        c = _header(SeriesInstanceUID="1.2.826.0.1.2", Modality="MR")
        for h in (a, b, c):
            index.add_instance(tmp_path / "f.dcm", h)
        assert (index.count("STUDY"), index.count("SERIES"), index.count("IMAGE")) == (1, 2, 3)
        assert index.remove(c["SOPInstanceUID"]) is True
        assert (index.count("STUDY"), index.count("SERIES"), index.count("IMAGE")) == (1, 1, 2)
        (r,) = query(index, "STUDY", "study", ModalitiesInStudy="",
                     NumberOfStudyRelatedInstances="")
        assert r.ModalitiesInStudy == "CT" and r.NumberOfStudyRelatedInstances == 2
        assert index.remove(c["SOPInstanceUID"]) is False
        assert index.remove("1.2.3.999") is False
        index.remove(a["SOPInstanceUID"])
        index.remove(b["SOPInstanceUID"])
        assert [index.count(lv) for lv in LEVELS] == [0, 0, 0, 0]


def test_study_stays_with_its_first_patient(make_index, tmp_path, caplog):
    with make_index(tmp_path) as index:
        index.add_instance(tmp_path / "a", _header(PatientID="A"))
        with caplog.at_level(logging.WARNING, logger="fastdimse.qr"):
            index.add_instance(tmp_path / "b", _header(PatientID="B"))
        assert index.count("PATIENT") == 1
        assert index.count("IMAGE") == 2
        assert any("indexed under PatientID" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------
# threads


def test_concurrent_adds_and_finds(make_index, tmp_path):
    n_threads, per_thread = 8, 150
    studies = [generate_uid() for _ in range(5)]  # shared: threads race on the same rows
    errors = []
    with make_index(tmp_path) as index:
        start = threading.Barrier(n_threads + 2)

        def writer(t):
            try:
                start.wait()
                for i in range(per_thread):
                    s = studies[(t + i) % len(studies)]
                    index.add_instance(tmp_path / f"{t}-{i}.dcm", _header(
                        PatientID=f"P{(t + i) % len(studies)}", StudyInstanceUID=s,
                        SeriesInstanceUID=s + ".1"))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def reader():
            try:
                start.wait()
                for _ in range(30):
                    for r in index.find(_ds(QueryRetrieveLevel="STUDY",
                                            NumberOfStudyRelatedInstances=""), None, "study"):
                        assert r.NumberOfStudyRelatedInstances >= 1
            except Exception as exc:  # pragma: no cover
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
        threads += [threading.Thread(target=reader) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=90)
            assert not th.is_alive()
        assert errors == []
        assert index.count("IMAGE") == n_threads * per_thread
        assert index.count("STUDY") == len(studies)
        assert index.count("SERIES") == len(studies)
        total = sum(r.NumberOfStudyRelatedInstances for r in index.find(
            _ds(QueryRetrieveLevel="STUDY", NumberOfStudyRelatedInstances=""), None, "study"))
        assert total == n_threads * per_thread


def test_an_open_find_does_not_block_writers(make_index, tmp_path):
    """WAL: a C-FIND being streamed (open read transaction) must not stop a C-STORE
    from indexing in another thread."""
    with make_index(tmp_path) as index:
        for _ in range(5):
            index.add_instance(tmp_path / "f", _header())
        gen = index.find(_ds(QueryRetrieveLevel="IMAGE"), None, "study")
        next(gen)  # the read transaction is open now
        done = threading.Event()
        failure = []

        def add():
            try:
                index.add_instance(tmp_path / "g", _header())
                done.set()
            except Exception as exc:  # pragma: no cover
                failure.append(exc)

        th = threading.Thread(target=add)
        th.start()
        th.join(timeout=10)
        assert done.is_set(), failure or "the writer was blocked by an open find"
        assert len(list(gen)) == 4  # the open find keeps its snapshot
        assert index.count("IMAGE") == 6


def test_close_while_another_thread_holds_a_connection(make_index, tmp_path):
    index = make_index(tmp_path)
    index.add_instance(tmp_path / "f", _header())
    opened, closed, outcome = threading.Event(), threading.Event(), []

    def worker():
        assert index.count("IMAGE") == 1  # this thread's own connection
        opened.set()
        closed.wait(10)
        try:
            index.count("IMAGE")
        except qr.UnableToProcess as exc:
            outcome.append(exc)

    th = threading.Thread(target=worker)
    th.start()
    assert opened.wait(10)
    index.close()
    closed.set()
    th.join(10)
    assert len(outcome) == 1 and outcome[0].status == 0xC000
    with pytest.raises(qr.UnableToProcess):
        index.find(_ds(QueryRetrieveLevel="STUDY"), None, "study")


# ---------------------------------------------------------------------------
# scale


def test_import_10000_instances(make_index, tmp_path):
    """Time is printed (run with -s), never asserted."""
    folder = tmp_path / "big"
    template = {"SOPClassUID": CLASS_OF["CT"], "Modality": "CT",
                "TransferSyntaxUID": ExplicitVRLittleEndian, "StudyDate": "20240101"}
    t0 = time.perf_counter()
    n = 0
    for p in range(5):
        for s in range(10):
            study = generate_uid()
            for se in range(4):
                series = generate_uid()
                sub = folder / f"{p}" / f"{s}" / f"{se}"
                sub.mkdir(parents=True)
                for i in range(50):
                    uid = generate_uid()
                    write_instance({**template, "PatientID": f"BIG{p}",
                                    "PatientName": f"Big^{p}", "StudyInstanceUID": study,
                                    "SeriesInstanceUID": series, "SOPInstanceUID": uid,
                                    "InstanceNumber": i + 1, "path": str(sub / f"{i}.dcm")})
                    n += 1
    t1 = time.perf_counter()
    with make_index(tmp_path / "store") as index:
        result = index.import_folder(folder)
        t2 = time.perf_counter()
        assert result.added == n == 10_000 and result.skipped == []
        got = sum(1 for _ in index.find(_ds(QueryRetrieveLevel="IMAGE", SOPInstanceUID="",
                                            SOPClassUID=""), None, "study"))
        t3 = time.perf_counter()
        assert got == 10_000
        studies = list(index.find(_ds(QueryRetrieveLevel="STUDY",
                                      NumberOfStudyRelatedInstances=""), None, "study"))
        assert sorted({r.NumberOfStudyRelatedInstances for r in studies}) == [200]
    print(f"\n10,000 instances: wrote files in {t1 - t0:.2f} s, imported in {t2 - t1:.2f} s "
          f"({n / (t2 - t1):.0f}/s), image-level C-FIND of all in {t3 - t2:.2f} s "
          f"({got / (t3 - t2):.0f} matches/s)")
