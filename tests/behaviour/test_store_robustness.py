"""C-STORE under stress: a 1 GiB instance, peers vanishing mid-instance, hostile path
values, the duplicate policy and the on_stored handler, parallel associations.

Memory is measured on this process, which hosts our SCU and (for the in-process
tests) our SCP: ``ru_maxrss`` before/after, and Linux's VmHWM after resetting it
through /proc/self/clear_refs (so an earlier, higher peak of this pytest process
cannot hide growth).
"""

from __future__ import annotations

import re
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pydicom
import pytest

from tests.support import peers
from tests.support import rawpdu
from tests.support import storedata as sd
from tests.support.peers import (
    DCMTK_ECHO_SUCCESS,
    DCMTK_STORE_SUCCESS,
    SCP_AE,
    SCU_AE,
    make_scu,
    peer_entity,
    run_dcmtk_echoscu,
    run_dcmtk_storescu,
)

pytestmark = pytest.mark.timeout(90)

RSS_BUDGET_KB = 64 * 1024  # ru_maxrss and VmHWM are in KiB on Linux
GIB = 1 << 30


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


INDEX_PREFIX = "fastdimse-index.sqlite"  # the Q/R index the SCP keeps in its storage folder


def files_under(folder: Path) -> list[Path]:
    """The files under ``folder``, without the SCP's own SQLite index files."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(INDEX_PREFIX))


# --- peak memory ----------------------------------------------------------------------------

def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/self/status")


class PeakRss:
    """Peak resident memory growth of this process over a ``with`` block (KiB)."""

    def __enter__(self) -> "PeakRss":
        # VmHWM := current RSS (this lowers ru_maxrss too, so read that afterwards)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.rss_before = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        self.maxrss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.maxrss_before
        self.hwm_growth = _status_kb("VmHWM") - self.rss_before

    def check(self, what: str) -> None:
        print(f"{what}: ru_maxrss +{self.maxrss_growth} KiB, VmHWM +{self.hwm_growth} KiB")
        assert self.maxrss_growth < RSS_BUDGET_KB, (
            f"{what}: ru_maxrss grew by {self.maxrss_growth} KiB (budget {RSS_BUDGET_KB})")
        assert self.hwm_growth < RSS_BUDGET_KB, (
            f"{what}: peak RSS (VmHWM) grew by {self.hwm_growth} KiB (budget {RSS_BUDGET_KB})")


# --- 1 GiB ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_dir():
    """A scratch folder in /dev/shm when it has room for 3 GiB (source + 2 copies), else /tmp."""
    base = "/dev/shm" if shutil.disk_usage("/dev/shm").free > 4 * GIB else None
    d = Path(tempfile.mkdtemp(prefix="fastdimse-big-", dir=base))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def big_instance(big_dir):
    """(path, SOP Instance UID, data set size, sha256 of the data set) of a 1 GiB instance."""
    path = big_dir / "src" / "big.dcm"
    uid, size, digest = sd.write_big_instance(path, GIB)
    return path, uid, size, digest


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_1gib_instance_our_scu_to_our_scp(fastdimse_scp_factory, big_dir, big_instance):
    path, uid, size, digest = big_instance
    storage = big_dir / "store-fastdimse"
    scp = fastdimse_scp_factory(storage_dir=storage, max_pdu_length=131072)
    try:
        with PeakRss() as rss:
            results = make_scu().store(scp.remote(), [path])
        assert len(results) == 1 and results[0].status == 0x0000, results
        assert results[0].bytes == size
        rss.check("1 GiB through our SCU and SCP in this process")
        stored = sd.index_by_instance(storage)
        assert list(stored) == [uid]
        assert sd.dataset_sha256(stored[uid]) == (size, digest)
        assert sd.leftover_temp_files(storage) == []
    finally:
        shutil.rmtree(storage, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_1gib_instance_our_scu_to_dcmtk_storescp(peer_log_dir, big_dir, big_instance):
    """Only our side's memory is judged; storescp's peak is printed for information."""
    path, uid, size, digest = big_instance
    out_dir = big_dir / "store-dcmtk"
    peer = peers.start_dcmtk_storage_scp(peer_log_dir, out_dir, ae_title="DCMSCP",
                                         max_pdu=131072, extra=["+B"])
    try:
        with PeakRss() as rss:
            results = make_scu().store(peer_entity(peer), [path])
        peer.wait_for_log(r"Received Store Request", count=1)
        print(f"storescp peak RSS: {peers.peak_rss_kb_of(peer.pid)} KiB")
    finally:
        peer.stop()
    try:
        assert len(results) == 1 and results[0].status == 0x0000, (results, peer.log()[-2000:])
        rss.check("1 GiB sent by our SCU to storescp")
        stored = sd.index_by_instance(out_dir)
        assert list(stored) == [uid]
        assert sd.dataset_sha256(stored[uid]) == (size, digest)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_1gib_instance_dcmtk_storescu_to_our_scp(fastdimse_scp_factory, big_dir, big_instance):
    """Our SCP receiving 1 GiB from a real peer: this process's peak grows < 64 MB."""
    path, uid, size, digest = big_instance
    storage = big_dir / "store-from-dcmtk"
    scp = fastdimse_scp_factory(storage_dir=storage, max_pdu_length=131072)
    try:
        with PeakRss() as rss:
            rc, out = run_dcmtk_storescu(scp.port, [path], calling_ae="DCMSCU",
                                         called_ae=scp.ae_title,
                                         extra=["-R", "--max-send-pdu", "131072"])
        assert rc == 0 and re.search(DCMTK_STORE_SUCCESS, out), out
        rss.check("1 GiB received by our SCP from storescu")
        stored = sd.index_by_instance(storage)
        assert list(stored) == [uid]
        assert sd.dataset_sha256(stored[uid]) == (size, digest)
        assert sd.leftover_temp_files(storage) == []
    finally:
        shutil.rmtree(storage, ignore_errors=True)


# --- a peer that vanishes mid-instance -----------------------------------------------------

def _instance_bytes(tmp_path: Path) -> tuple[pydicom.Dataset, Path, bytes]:
    """A 128 KiB CT image as an implicit VR LE file and its data set bytes."""
    ds = sd.make_image(sd.CT_IMAGE, patient_id="HALF", rows=256, columns=256, seed=7)
    path = sd.write_instance(ds, tmp_path / "src" / "half.dcm", sd.IMPLICIT_VR_LE)
    return ds, path, sd.dataset_bytes(path)


STORAGE_CONTEXTS = [(1, rawpdu.VERIFICATION, [rawpdu.IMPLICIT_VR_LE]),
                    (3, sd.CT_IMAGE, [rawpdu.IMPLICIT_VR_LE])]


def test_raw_store_control(fastdimse_scp_factory, tmp_path):
    """The hand-built C-STORE used below is valid: sent whole, it is stored."""
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage)
    ds, _path, data = _instance_bytes(tmp_path)
    with rawpdu.connect(scp.port) as sock:
        ac = rawpdu.associate(sock, scp.ae_title, contexts=STORAGE_CONTEXTS)
        assert ac.contexts[3] == (0, rawpdu.IMPLICIT_VR_LE)
        sock.sendall(rawpdu.p_data(rawpdu.pdv_item(3, 0x03, rawpdu.c_store_rq_command(
            sd.CT_IMAGE, ds.SOPInstanceUID, message_id=5))))
        for pdu in rawpdu.data_set_pdus(3, data):
            sock.sendall(pdu)
        assert rawpdu.read_c_store_rsp(sock, 5) == 0x0000
        rawpdu.release(sock)
    stored = sd.index_by_instance(storage)
    assert list(stored) == [ds.SOPInstanceUID]
    assert sd.dataset_bytes(stored[ds.SOPInstanceUID]) == data


@pytest.mark.parametrize("how", ["abort", "close"])
def test_peer_vanishing_mid_instance_leaves_nothing(fastdimse_scp_factory, tmp_path, how):
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage)
    ds, path, data = _instance_bytes(tmp_path)
    pdus = rawpdu.data_set_pdus(3, data)
    assert len(pdus) >= 20
    sock = rawpdu.connect(scp.port)
    try:
        rawpdu.associate(sock, scp.ae_title, contexts=STORAGE_CONTEXTS)
        sock.sendall(rawpdu.p_data(rawpdu.pdv_item(3, 0x03, rawpdu.c_store_rq_command(
            sd.CT_IMAGE, ds.SOPInstanceUID, message_id=1))))
        for pdu in pdus[: len(pdus) // 2]:
            sock.sendall(pdu)
        # The instance is being streamed into a temporary file...
        assert wait_until(lambda: sd.leftover_temp_files(storage)), (
            f"no temporary file while receiving; files: {files_under(storage)}")
        if how == "abort":
            sock.sendall(rawpdu.abort())
    finally:
        sock.close()
    # ...which goes away with the association, and nothing else is written.
    assert wait_until(lambda: not sd.leftover_temp_files(storage)), (
        f"temporary files left: {sd.leftover_temp_files(storage)}")
    assert wait_until(lambda: scp.scp.active_associations == 0)
    assert files_under(storage) == []
    assert not list(storage.rglob(f"*{ds.SOPInstanceUID}*"))

    # The SCP keeps serving: the complete instance from our SCU, and dcmtk's echo.
    results = make_scu().store(scp.remote(), [path])
    assert results[0].status == 0x0000, results
    stored = sd.index_by_instance(storage)
    assert list(stored) == [ds.SOPInstanceUID]
    assert sd.dataset_bytes(stored[ds.SOPInstanceUID]) == data
    rc, out = run_dcmtk_echoscu(scp.port, called_ae=scp.ae_title)
    assert rc == 0 and DCMTK_ECHO_SUCCESS in out, out
    assert sd.leftover_temp_files(storage) == []


# --- hostile values in the path layout ----------------------------------------------------

HOSTILE = [
    {"PatientID": "../../evil", "StudyInstanceUID": "/abs"},
    {"PatientID": "..", "StudyInstanceUID": "../..", "SeriesInstanceUID": "/etc/passwd"},
    {"PatientID": "", "StudyInstanceUID": ".", "SeriesInstanceUID": "a/../../b\\c"},
    {"SOPInstanceUID": "../../../evil-sop"},
]


def _snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize("sender", ["fastdimse", "dcmtk"])
@pytest.mark.parametrize("values", HOSTILE, ids=["evil-abs", "dotdot", "empty-dot-slash", "sop-uid"])
def test_hostile_values_stay_inside_storage_dir(fastdimse_scp_factory, tmp_path, values, sender):
    jail = tmp_path / "jail"
    storage = jail / "a" / "b" / "store"
    storage.mkdir(parents=True)
    src = tmp_path / "src" / "hostile.dcm"
    ds = sd.make_image(sd.CT_IMAGE, rows=8, columns=8, seed=1)
    for k, v in values.items():
        setattr(ds, k, v)
    sd.write_instance(ds, src, sd.EXPLICIT_VR_LE)
    before = _snapshot(tmp_path)
    root_before = {p.name for p in Path("/").iterdir()}
    scp = fastdimse_scp_factory(storage_dir=storage)
    if sender == "fastdimse":
        results = make_scu().store(scp.remote(), [src])
        assert results[0].status == 0x0000, results
    else:
        rc, out = run_dcmtk_storescu(scp.port, [src], called_ae=scp.ae_title)
        assert rc == 0 and re.search(DCMTK_STORE_SUCCESS, out), out
    created = _snapshot(tmp_path) - before
    outside = sorted(p for p in created if not p.resolve().is_relative_to(storage.resolve()))
    assert outside == [], f"created outside the storage folder: {outside}"
    assert {p.name for p in Path("/").iterdir()} == root_before
    stored = files_under(storage)
    assert len(stored) == 1, stored
    assert stored[0].resolve().is_relative_to(storage.resolve())
    assert not stored[0].is_symlink()
    # every level of the layout is a real folder inside the storage folder
    rel = stored[0].relative_to(storage)
    assert len(rel.parts) == 4 and all(part not in ("", ".", "..") for part in rel.parts), rel
    assert sd.dataset_bytes(stored[0]) == sd.dataset_bytes(src)


# --- duplicates and the on_stored handler ---------------------------------------------------

def _two_versions(tmp_path: Path) -> tuple[Path, Path]:
    """Two files of one instance (same UIDs), with different names and pixels."""
    v1 = sd.make_image(sd.CT_IMAGE, patient_id="DUP", rows=16, columns=16, seed=1)
    v2 = sd.make_image(sd.CT_IMAGE, patient_id="DUP", rows=16, columns=16, seed=2,
                       study_uid=v1.StudyInstanceUID, series_uid=v1.SeriesInstanceUID,
                       sop_uid=v1.SOPInstanceUID)
    v2.PatientName = "Second^Version"
    return (sd.write_instance(v1, tmp_path / "v1" / "i.dcm", sd.EXPLICIT_VR_LE),
            sd.write_instance(v2, tmp_path / "v2" / "i.dcm", sd.EXPLICIT_VR_LE))


@pytest.mark.parametrize("policy, second_status, kept", [
    ("overwrite", 0x0000, "v2"), ("keep", 0x0000, "v1"), ("reject", 0x0111, "v1")])
def test_duplicate_policy(fastdimse_scp_factory, tmp_path, policy, second_status, kept):
    v1, v2 = _two_versions(tmp_path)
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, duplicates=policy)
    scu = make_scu()
    first = scu.store(scp.remote(), [v1])
    assert first[0].status == 0x0000, first
    second = scu.store(scp.remote(), [v2])
    assert second[0].status == second_status, second
    if second_status:
        assert not second[0].is_success
        assert second[0].reason and "0x0111" in second[0].reason, second[0].reason
    stored = files_under(storage)
    assert len(stored) == 1, stored
    assert sd.dataset_bytes(stored[0]) == sd.dataset_bytes(v1 if kept == "v1" else v2)
    assert sd.leftover_temp_files(storage) == []


def test_storage_folder_removed_between_instances(fastdimse_scp_factory, tmp_path):
    """The SCP remembers the folders it made; one removed behind its back (by a clean-up
    job, say) is made again for the next instance of that series."""
    first = sd.make_image(sd.CT_IMAGE, patient_id="GONE", rows=8, columns=8, seed=1)
    second = sd.make_image(sd.CT_IMAGE, patient_id="GONE", rows=8, columns=8, seed=2,
                           study_uid=first.StudyInstanceUID, series_uid=first.SeriesInstanceUID)
    a = sd.write_instance(first, tmp_path / "a.dcm", sd.EXPLICIT_VR_LE)
    b = sd.write_instance(second, tmp_path / "b.dcm", sd.EXPLICIT_VR_LE)
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage)
    scu = make_scu()
    assert scu.store(scp.remote(), [a])[0].status == 0x0000
    stored = files_under(storage)
    assert len(stored) == 1
    shutil.rmtree(storage / "GONE")
    result = scu.store(scp.remote(), [b])[0]
    assert result.status == 0x0000, result
    stored = files_under(storage)
    assert [p.parent for p in stored] == [stored[0].parent] and len(stored) == 1
    assert sd.dataset_bytes(stored[0]) == sd.dataset_bytes(b)
    assert sd.leftover_temp_files(storage) == []


def test_on_stored_receives_the_instance(fastdimse_scp_factory, tmp_path):
    calls = []

    def handler(info):
        # called once the file is in place; the handler may read it
        assert Path(info.path).is_file()
        calls.append((info, str(info.read_dataset().PatientName), threading.get_ident()))
        return None

    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, on_stored=handler)
    ds = sd.make_image(sd.MR_IMAGE, patient_id="P-42", rows=8, columns=8)
    src = sd.write_instance(ds, tmp_path / "src" / "i.dcm", sd.EXPLICIT_VR_BE)
    results = make_scu().store(scp.remote(), [src])
    assert results[0].status == 0x0000, results
    assert len(calls) == 1
    info, name, _tid = calls[0]
    stored = files_under(storage)
    assert [Path(info.path)] == stored
    assert info.sop_class_uid == sd.MR_IMAGE
    assert info.sop_instance_uid == ds.SOPInstanceUID
    assert info.transfer_syntax == sd.EXPLICIT_VR_BE
    assert info.patient_id == "P-42"
    assert info.study_instance_uid == ds.StudyInstanceUID
    assert info.series_instance_uid == ds.SeriesInstanceUID
    assert info.calling_ae_title == SCU_AE
    assert info.called_ae_title == SCP_AE
    assert info.dataset_bytes == len(sd.dataset_bytes(src))
    assert name == str(ds.PatientName)


@pytest.mark.parametrize("returned, file_kept", [
    (0xB000, True),    # a warning: the SCU sees it, the file stays
    (0xA700, False),   # a failure (out of resources): the SCU sees it, the file goes
    (0xC123, False),   # a failure (cannot understand)
])
def test_on_stored_status_is_what_the_scu_sees(fastdimse_scp_factory, tmp_path, returned,
                                               file_kept):
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, on_stored=lambda info: returned)
    ds = sd.make_image(sd.CT_IMAGE, rows=8, columns=8)
    src = sd.write_instance(ds, tmp_path / "src" / "i.dcm", sd.IMPLICIT_VR_LE)
    results = make_scu().store(scp.remote(), [src])
    assert results[0].status == returned, results
    assert len(files_under(storage)) == (1 if file_kept else 0), files_under(storage)
    assert sd.leftover_temp_files(storage) == []


def test_failed_overwrite_keeps_the_stored_instance(fastdimse_scp_factory, tmp_path):
    """duplicates="overwrite" and a handler that refuses the second copy: the SCU is told
    the store failed, so the copy stored (and confirmed) before must still be there."""
    v1, v2 = _two_versions(tmp_path)
    calls = []

    def handler(info):
        calls.append(info.sop_instance_uid)
        return None if len(calls) == 1 else 0xA700

    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, duplicates="overwrite", on_stored=handler)
    scu = make_scu()
    assert scu.store(scp.remote(), [v1])[0].status == 0x0000
    assert scu.store(scp.remote(), [v2])[0].status == 0xA700
    stored = files_under(storage)
    assert len(stored) == 1, f"the instance confirmed before is gone: {stored}"
    assert sd.dataset_bytes(stored[0]) == sd.dataset_bytes(v1)


def test_on_stored_raising_is_a_processing_failure(fastdimse_scp_factory, tmp_path):
    seen = []

    def handler(info):
        seen.append(info.sop_instance_uid)
        if len(seen) == 1:
            raise RuntimeError("database is down")
        return None

    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, on_stored=handler)
    srcs = []
    for i in range(2):
        ds = sd.make_image(sd.CT_IMAGE, rows=8, columns=8, seed=i)
        srcs.append(sd.write_instance(ds, tmp_path / "src" / f"{i}.dcm", sd.EXPLICIT_VR_LE))
    results = make_scu().store(scp.remote(), srcs)
    assert [r.status for r in results] == [0x0110, 0x0000], results
    assert "0x0110" in (results[0].reason or ""), results[0].reason
    stored = sd.index_by_instance(storage)
    assert list(stored) == [results[1].sop_instance_uid]  # the first one was not kept
    assert sd.leftover_temp_files(storage) == []


# --- datasets given as pydicom objects ------------------------------------------------------

def test_our_scu_stores_pydicom_datasets(fastdimse_scp_factory, tmp_path):
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage)
    datasets = [sd.make_image(sd.CT_IMAGE, rows=8, columns=8, seed=i) for i in range(3)]
    results = make_scu().store(scp.remote(), datasets)
    assert [r.status for r in results] == [0x0000] * 3, results
    stored = sd.index_by_instance(storage)
    assert set(stored) == {str(d.SOPInstanceUID) for d in datasets}
    for d in datasets:
        d.file_meta = pydicom.dataset.FileMetaDataset()
        d.file_meta.TransferSyntaxUID = sd.EXPLICIT_VR_LE
        sd.assert_same_elements(d, stored[str(d.SOPInstanceUID)])


# --- parallel associations -----------------------------------------------------------------

@pytest.mark.timeout(120)
def test_parallel_store_of_200_instances(fastdimse_scp_factory, fastdimse_log, tmp_path):
    src_dir = tmp_path / "src"
    sources = []
    for i in range(200):
        ds = sd.make_image(sd.CT_IMAGE if i % 2 else sd.MR_IMAGE, patient_id=f"P{i % 7}",
                           rows=16, columns=16, seed=i, with_sequence=False)
        ts = sd.UNCOMPRESSED[i % 3]
        path = sd.write_instance(ds, src_dir / f"{i // 50}" / f"{i:03d}.dcm", ts)
        sources.append(sd.Source(path, ds.SOPClassUID, ds.SOPInstanceUID, ts))
    most_at_once = [0]
    holder = {}

    def on_stored(info):
        most_at_once[0] = max(most_at_once[0], holder["scp"].active_associations)

    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, on_stored=on_stored)
    holder["scp"] = scp.scp
    start = len(fastdimse_log.records)
    progress = []
    results = make_scu().store(scp.remote(), [src_dir], parallel=4,
                               on_progress=lambda r: progress.append(r))
    assert len(results) == 200
    assert [r.index for r in results] == list(range(200))
    assert all(r.status == 0x0000 for r in results), [r for r in results if r.status][:3]
    assert len(progress) == 200
    assert sorted(r.index for r in progress) == list(range(200))
    assert {r.sop_instance_uid for r in progress} == {s.sop_instance_uid for s in sources}
    accepted = [r for r in fastdimse_log.records[start:]
                if re.search(r"association from .* accepted", r.getMessage())]
    assert len(accepted) == 4, [r.getMessage() for r in accepted]
    assert most_at_once[0] >= 2, "the 4 associations never overlapped"
    how = sd.assert_received(sources, storage, source_ae=SCU_AE)
    assert set(how.values()) == {"identical"}
    assert sd.leftover_temp_files(storage) == []


# --- damaged files are not passed on ----------------------------------------------------------

@pytest.mark.timeout(60)
def test_truncated_file_is_not_sent_and_the_others_are(fastdimse_scp_factory, tmp_path):
    """A file cut short (a copy interrupted, a disk error) is refused by our SCU with a
    reason naming the file, the element and the offset; the other instances go."""
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage)
    good = tmp_path / "src" / "good.dcm"
    cut = tmp_path / "src" / "cut.dcm"
    ds_good = sd.make_image(sd.CT_IMAGE, rows=16, columns=16, seed=3)
    ds_cut = sd.make_image(sd.CT_IMAGE, rows=16, columns=16, seed=4)
    sd.write_instance(ds_good, good, sd.EXPLICIT_VR_LE)
    sd.write_instance(ds_cut, cut, sd.EXPLICIT_VR_LE)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) - 100])  # inside the pixel data
    results = make_scu().store(scp.remote(), [cut, good])
    by_name = {Path(r.path).name: r for r in results}
    bad = by_name["cut.dcm"]
    assert bad.status is None and not bad.is_success, bad
    assert "truncated" in bad.reason and "cut.dcm" in bad.reason and "(7FE0,0010)" in bad.reason, bad.reason
    assert re.search(r"offset \d+", bad.reason), bad.reason
    assert by_name["good.dcm"].status == 0x0000
    stored = files_under(storage)
    assert len(stored) == 1 and sd.dataset_bytes(stored[0]) == sd.dataset_bytes(good)
