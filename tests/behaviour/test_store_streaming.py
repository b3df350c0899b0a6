"""The streaming storage SCU: store() of any iterable in bounded memory.

- A generator of 10^5 small files (and the same folder given as one path) goes from a
  separate sender process into a fastdimse storage SCP in another process; every
  instance arrives, and the sender's peak RSS (VmHWM, and VmRSS sampled from a thread)
  stays under a generous bound. The earlier, planned-up-front SCU needed about 2.4 KB per
  instance (239 MiB for 10^5); the bound is far below that and far above what a
  streaming sender needs (about 20 MiB). Timings belong to benches/bench_sender_rss.py.
- Generators mixing SOP classes with a small look-ahead, so that the SCU must open a new
  association mid-stream for a class it had not proposed, into dcmtk storescp and
  pynetdicom's storescp; each peer's own log counts the associations.
- The result forms: "list" (input order), "summary" (counts and failures with reasons),
  "iter" (as they settle; closing it early cancels), the "auto" default, and an
  exception raised by the generator.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pydicom
import pytest

import fastdimse

from tests.support import peers
from tests.support import storedata as sd
from tests.support.peers import PYTHON, SUPPORT_DIR, free_port, make_scu, peer_entity

WORKER = SUPPORT_DIR / "store_rss_worker.py"
N_BIG = 100_000
# Peak RSS allowed to the sending process for 10^5 instances (KiB). A streaming sender
# needs about 20 MiB (most of it the interpreter); the planned-up-front SCU needed 239 MiB.
RSS_BOUND_KB = 64 * 1024




def _count_files(folder: Path) -> int:
    n = 0
    stack = [folder]
    while stack:
        for e in os.scandir(stack.pop()):
            if e.is_dir():
                stack.append(Path(e.path))
            elif e.name.endswith(".dcm"):
                n += 1
    return n


def _send(port: int, root: Path, mode: str) -> dict:
    argv = [PYTHON, str(WORKER), "send", "--port", str(port), "--root", str(root), "--mode", mode]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=150)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(300)
def test_100k_files_from_a_generator_in_bounded_memory(peer_log_dir, fast_tmp):
    src, out = fast_tmp / "src", fast_tmp / "out"
    sd.write_uid_copies(src, N_BIG)
    port = free_port()
    sink = peers.start_process([PYTHON, str(WORKER), "sink", "--port", str(port), "--out", str(out)],
                               port=port, log_dir=peer_log_dir, name="fastdimse-sink", ae_title="RSSSINK")
    try:
        gen = _send(port, src, "generator")
        received = _count_files(out)
        # The same folder as one path (walked lazily in Rust), into the same SCP (overwrite).
        folder = _send(port, src, "folder")
    finally:
        sink.stop()
    for name, r in (("generator", gen), ("folder", folder)):
        assert (r["total"], r["completed"], r["failed"]) == (N_BIG, N_BIG, 0), (name, r)
        assert r["associations"] == 1, (name, r)
        assert r["bytes"] > 0
        assert r["hwm_kb"] < RSS_BOUND_KB, f"{name}: peak RSS {r['hwm_kb']} KiB: {r}"
        assert r["rss_max_kb"] < RSS_BOUND_KB, f"{name}: sampled RSS {r['rss_max_kb']} KiB: {r}"
    assert received == N_BIG
    assert _count_files(out) == N_BIG
    some = next(out.rglob(f"{sd.copy_uid(N_BIG - 1)}.dcm"))
    assert sd.read_meta(some).MediaStorageSOPInstanceUID == sd.copy_uid(N_BIG - 1)


# --- a new association mid-stream, with real peers ----------------------------------------------

def _by_class(sources: list[sd.Source]) -> list[sd.Source]:
    """The mix ordered class by class, so later classes are unseen when sending starts."""
    order = {sd.CT_IMAGE: 0, sd.MR_IMAGE: 1, sd.SC_IMAGE: 2, sd.RT_PLAN: 3}
    return sorted(sources, key=lambda s: order[s.sop_class_uid])


def _associations_logged(log: str, pattern: str) -> int:
    return len(re.findall(pattern, log))


@pytest.mark.timeout(120)
def test_generator_needing_new_associations_into_dcmtk_storescp(peer_log_dir, tmp_path, fastdimse_log):
    sources = _by_class(sd.generate_mixed(tmp_path / "src"))
    out_dir = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(peer_log_dir, out_dir, ae_title="DCMSCP", extra=["+B"])
    try:
        summary = make_scu().store(peer_entity(peer), (s.path for s in sources), lookahead=1)
        peer.wait_for_log(r"Received Store Request", count=len(sources))
        log = peer.log()
    finally:
        peer.stop()
    assert isinstance(summary, fastdimse.StoreSummary)
    assert (summary.total, summary.completed, summary.failed) == (len(sources), len(sources), 0), summary
    assert list(summary) == []
    # The first association could only propose the first class(es): more followed.
    assert summary.associations >= 2, summary
    assert _associations_logged(log, r"Association Acknowledged") == summary.associations, log[-3000:]
    opened = [r.getMessage() for r in fastdimse_log.records if "opening another" in r.getMessage()]
    assert opened, "no association was opened for an unseen SOP class"
    how = sd.assert_received(sources, out_dir)
    assert set(how.values()) == {"identical"}


@pytest.mark.timeout(120)
def test_generator_of_paths_and_datasets_into_pynetdicom_storescp(peer_log_dir, tmp_path):
    sources = _by_class(sd.generate_mixed(tmp_path / "src", syntaxes=(sd.EXPLICIT_VR_LE,)))
    out_dir = tmp_path / "received"

    def items():
        for i, s in enumerate(sources):
            yield s.path if i % 2 == 0 else pydicom.dcmread(s.path)

    peer = peers.start_pynetdicom_storescp(peer_log_dir, out_dir, ae_title="PYNDSTORE")
    seen = []
    try:
        with make_scu().store(peer_entity(peer), items(), results="iter", lookahead=1) as stream:
            for r in stream:
                seen.append(r)
        peer.wait_for_log(r"Storing DICOM file", count=len(sources))
        log = peer.log()
    finally:
        peer.stop()
    assert sorted(r.index for r in seen) == list(range(len(sources)))
    assert all(r.status == 0x0000 for r in seen), [r.reason for r in seen if r.status]
    assert stream.summary is not None and stream.summary.completed == len(sources), stream.summary
    assert stream.summary.associations >= 2, stream.summary
    assert _associations_logged(log, r"Accepting Association") == stream.summary.associations, log[-3000:]
    assert {r.sop_instance_uid for r in seen} == {s.sop_instance_uid for s in sources}
    stored = sd.index_by_instance(out_dir)
    assert set(stored) == {s.sop_instance_uid for s in sources}
    for s in sources:
        sd.assert_same_elements(s.path, stored[s.sop_instance_uid])


# --- the result forms --------------------------------------------------------------------------

def _files(tmp_path: Path, n: int) -> list[Path]:
    return [sd.write_instance(sd.make_image(sd.CT_IMAGE, rows=8, columns=8, seed=i, with_sequence=False),
                              tmp_path / "src" / f"{i:03d}.dcm") for i in range(n)]


@pytest.mark.timeout(60)
def test_result_forms(fastdimse_scp_factory, tmp_path):
    scp = fastdimse_scp_factory(storage_dir=tmp_path / "store")
    paths = _files(tmp_path, 6)
    junk = tmp_path / "src" / "junk.dcm"
    junk.write_bytes(b"not DICOM at all" * 20)
    items = [paths[0], junk, *paths[1:]]
    scu = make_scu()

    # A generator asks for no list: a summary, iterable over its failures.
    summary = scu.store(scp.remote(), (p for p in items))
    assert (summary.total, summary.completed, summary.warning, summary.failed) == (7, 6, 0, 1), summary
    assert not summary.is_success and summary.failures_not_kept == 0
    [bad] = list(summary)
    assert bad.path == str(junk) and bad.status is None and bad.reason and bad.index == 1, bad
    assert summary.bytes == sum(len(sd.dataset_bytes(p)) for p in paths)
    assert "6 stored" in str(summary)

    # A list when asked for, in input order, whatever the input.
    listed = scu.store(scp.remote(), (p for p in items), results="list")
    assert [r.index for r in listed] == list(range(7))
    assert [r.path for r in listed] == [str(p) for p in items]
    assert [r.status for r in listed] == [0, None, 0, 0, 0, 0, 0]

    # The call form of earlier versions (a list) still gives the list.
    assert [r.status for r in scu.store(scp.remote(), items)] == [0, None, 0, 0, 0, 0, 0]

    # max_failures keeps the first failures only, and counts the rest.
    s2 = scu.store(scp.remote(), iter([junk, junk, junk]), results="summary", max_failures=1)
    assert s2.failed == 3 and len(s2.failures) == 1 and s2.failures_not_kept == 2, s2

    # An iterator of results as they settle.
    with scu.store(scp.remote(), items, results="iter") as stream:
        got = list(stream)
    assert sorted(r.index for r in got) == list(range(7))
    assert stream.summary.completed == 6 and stream.summary.failed == 1

    with pytest.raises(ValueError):
        scu.store(scp.remote(), items, results="dict")


@pytest.mark.timeout(60)
def test_iterator_closed_early_cancels(fastdimse_scp_factory, tmp_path):
    scp = fastdimse_scp_factory(storage_dir=tmp_path / "store")
    paths = _files(tmp_path, 3)
    sent_from_generator = []

    def endless():
        i = 0
        while True:
            sent_from_generator.append(i)
            yield paths[i % 3]
            i += 1

    with make_scu().store(scp.remote(), endless(), results="iter", lookahead=4) as stream:
        first = [next(stream) for _ in range(5)]
    assert all(r.status == 0x0000 for r in first), first
    # The sending stopped although the generator never ends.
    assert stream.summary is not None and stream.summary.cancelled, stream.summary
    assert len(sent_from_generator) < 10_000


@pytest.mark.timeout(60)
def test_exception_in_the_generator_propagates_after_sending_what_came_before(fastdimse_scp_factory, tmp_path):
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage)
    paths = _files(tmp_path, 3)
    progress = []

    def broken():
        yield from paths
        raise RuntimeError("the source folder went away")

    with pytest.raises(RuntimeError, match="went away"):
        make_scu().store(scp.remote(), broken(), on_progress=progress.append)
    assert sorted(r.index for r in progress) == [0, 1, 2]
    assert all(r.status == 0x0000 for r in progress)
    assert len(sd.index_by_instance(storage)) == 3
    with pytest.raises(TypeError):
        make_scu().store(scp.remote(), iter([paths[0], 42]))


@pytest.mark.timeout(120)
def test_more_classes_than_128_contexts_interleaved(fastdimse_scp_factory, fastdimse_log, tmp_path):
    """70 SOP classes (2 contexts each: own syntax + fall-back = 140 > 128) interleaved
    instance by instance: the SCU parks what the current association cannot carry instead
    of switching at every instance, and every instance arrives."""
    classes = [f"1.2.826.0.1.3680043.10.1011.{i}" for i in range(70)]
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, storage_sop_classes=classes, query_retrieve=False)
    paths = []
    for i in range(210):
        ds = sd.make_image(sd.SC_IMAGE, rows=4, columns=4, seed=i, with_sequence=False)
        ds.SOPClassUID = classes[i % 70]
        paths.append(sd.write_instance(ds, tmp_path / "src" / f"{i:03d}.dcm"))
    start = len(fastdimse_log.records)
    summary = make_scu().store(scp.remote(), iter(paths), lookahead=16)
    assert (summary.total, summary.completed, summary.failed) == (210, 210, 0), list(summary)[:3]
    # far fewer associations than the 210 a switch per instance would take
    assert 2 <= summary.associations <= 6, summary
    accepted = [r for r in fastdimse_log.records[start:] if re.search(r"association from .* accepted", r.getMessage())]
    assert len(accepted) == summary.associations
    assert len(sd.index_by_instance(storage)) == 210


@pytest.mark.timeout(60)
def test_the_first_instance_is_sent_before_the_generator_goes_on(fastdimse_scp_factory, tmp_path):
    """The generator gives one instance, then waits for its result before giving the
    rest: an SCU that read its input before sending would never see that result."""
    import threading

    scp = fastdimse_scp_factory(storage_dir=tmp_path / "store")
    paths = _files(tmp_path, 4)
    first_done = threading.Event()
    waited = []

    def gen():
        yield paths[0]
        waited.append(first_done.wait(20))
        yield from paths[1:]

    summary = make_scu().store(scp.remote(), gen(), on_progress=lambda r: first_done.set())
    assert waited == [True], "the first result did not come while the generator waited"
    assert (summary.total, summary.completed) == (4, 4), summary
    assert summary.associations == 1
