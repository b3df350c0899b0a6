"""The Q/R SCP under load stays flat: one bounded pool of index connections serves every
association, so open files and threads do not grow with the number of associations.

- 1,000 C-FIND associations in a row (every tenth from dcmtk's findscu, the others from
  our SCU) against an SCP process whose file limit is 256: every one answered correctly,
  and the SCP's open files back to the count after the warm-up.
- The 60-second soak (tests/support/soak.py; `make soak` runs it for 10 minutes): 16 concurrent
  clients storing and querying, zero failures, flat open files and threads.
- The pool itself: bounded, a cancelled (closed) find gives its connection back, a
  borrower that waits too long gets 0xC000.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.support import qr_helpers as qh
from tests.support import qr_serve
from tests.support import soak
from tests.support.peers import HOST, make_scu, stop_process, wait_for_port
from tests.support.qrload import load_qr

qr = load_qr()

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")


def _settle(pid: int, target: int, timeout: float = 10.0) -> dict:
    """Stats of ``pid`` once its open files are down to ``target`` (associations that
    just ended close their sockets on their own threads), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    stats = qr_serve.proc_stats(pid)
    while stats["fds"] > target and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = qr_serve.proc_stats(pid)
    return stats


@pytest.mark.timeout(600)
def test_1000_find_associations_under_a_256_file_limit(tmp_path):
    from fastdimse import Entity

    archive = qh.write_archive(tmp_path / "src", qh.archive_truth(tag=5))
    port = qh.free_port()
    proc = qr_serve.start(tmp_path / "storage", port, tmp_path / "scp.log", nofile=256)
    try:
        wait_for_port(HOST, port, timeout=30.0, proc=proc, log_path=tmp_path / "scp.log")
        remote = Entity("QRSCP", HOST, port)
        results = make_scu().store(remote, [i.path for i in archive])
        assert [r.status for r in results] == [0] * len(archive)
        studies = {pid: sorted({i.StudyInstanceUID for i in archive if i.PatientID == pid})
                   for pid in {i.PatientID for i in archive}}
        patients = sorted(studies)

        def ours(n: int) -> list[str]:
            pid = patients[n % len(patients)]
            got = [str(m.StudyInstanceUID) for m in make_scu().find(
                remote, {"PatientID": pid, "StudyInstanceUID": ""}, "STUDY")]
            return pid, sorted(got)

        def dcmtk(n: int) -> list[str]:
            pid = patients[n % len(patients)]
            rc, out, answers = qh.run_findscu(port, "QRSCP", "study", "STUDY",
                                              {"PatientID": pid, "StudyInstanceUID": ""},
                                              tmp_path / f"rsp{n}")
            assert rc == 0 and "Received Final Find Response (Success)" in out, out
            return pid, sorted(str(a.StudyInstanceUID) for a in answers)

        for n in range(5):  # warm-up: the index's connections are open after this
            ours(n)
            dcmtk(n)
        start = _settle(proc.pid, 0, timeout=1.0)
        for n in range(1000):
            pid, got = dcmtk(n) if n % 10 == 0 else ours(n)
            assert got == studies[pid], f"association {n}: {got} for {pid}"
        end = _settle(proc.pid, start["fds"])
        assert proc.poll() is None, (tmp_path / "scp.log").read_text()
        print(f"\nSCP open files {start['fds']} -> {end['fds']}, threads {start['threads']} -> "
              f"{end['threads']}, RSS {start['rss_kb']} -> {end['rss_kb']} KiB")
        assert end["fds"] <= start["fds"] + 2, (start, end)
        assert end["threads"] <= start["threads"] + 2, (start, end)
    finally:
        stop_process(proc, timeout=20)


@pytest.mark.soak
@pytest.mark.timeout(300)
def test_soak_60_seconds(tmp_path):
    report = soak.run(duration=60.0, clients=16, nofile=1024, interval=5.0, warmup=15.0,
                      work_dir=tmp_path)
    a, b, idle = report["after_warmup"], report["last_busy"], report["idle"]
    print(f"\nsoak: {report['associations']} associations, {report['stored']} stored; "
          f"fds {a['fds']} -> {b['fds']} (idle {idle['fds']}), threads {a['threads']} -> "
          f"{b['threads']} (idle {idle['threads']}), RSS {a['rss_kb']} -> {b['rss_kb']} KiB")
    assert report["failures"] == []
    assert report["associations"] >= 16 * 3  # every client did some rounds
    assert b["fds"] <= a["fds"] + 20, report["samples"]
    assert b["threads"] <= a["threads"] + 20, report["samples"]
    assert idle["fds"] <= a["fds"] + 20, report["samples"]


# --- the pool ------------------------------------------------------------------------------

def _header(n: int) -> dict:
    return {"SOPClassUID": qh.CT_IMAGE_STORAGE, "SOPInstanceUID": f"1.2.3.{n}",
            "StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2.3.0", "PatientID": "P",
            "TransferSyntaxUID": qh.EXPLICIT_VR_LE}


def _images():
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    ds.SOPInstanceUID = ""
    return ds


def test_many_threads_share_a_bounded_pool(tmp_path):
    with qr.SQLiteIndex(tmp_path, pool_size=3) as index:
        index.add_instances([(tmp_path / f"{n}", _header(n), None) for n in range(20)])
        errors, counts = [], []

        def reader():
            try:
                for _ in range(5):
                    counts.append(sum(1 for _ in index.find(_images(), None, "study")))
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(40)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=60)
        assert errors == [] and counts == [20] * 200
        assert index.open_connections <= 3 + 1  # the pool and the writer


def test_a_closed_find_gives_its_connection_back(tmp_path):
    with qr.SQLiteIndex(tmp_path, pool_size=1, pool_timeout=0.5) as index:
        index.add_instances([(tmp_path / f"{n}", _header(n), None) for n in range(5)])
        first = index.find(_images(), None, "study")
        next(first)  # holds the only connection now
        with pytest.raises(qr.UnableToProcess) as err:
            index.count()
        assert err.value.status == 0xC000 and "busy" in str(err.value)
        first.close()  # what the SCP does on C-CANCEL
        assert index.count() == 5
        assert sum(1 for _ in index.find(_images(), None, "study")) == 5
        assert index.open_connections == 2


def test_close_with_a_find_open_closes_its_connection_when_it_ends(tmp_path):
    index = qr.SQLiteIndex(tmp_path, pool_size=2)
    index.add_instances([(tmp_path / f"{n}", _header(n), None) for n in range(5)])
    gen = index.find(_images(), None, "study")
    next(gen)
    index.close()
    assert index.open_connections == 1  # the one lent to the open find
    assert len(list(gen)) == 4  # it finishes its snapshot...
    assert index.open_connections == 0  # ...and its connection is closed
    with pytest.raises(qr.UnableToProcess):
        index.count()
