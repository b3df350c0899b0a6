"""``fastdimse bench`` as a subprocess (the installed console script) against real peers:
dcmtk storescp / dcmqrscp, pynetdicom's echoscp, and our own SCP (tests/support/archive_scp.py,
a DICOMSCP in its own process, like the peers).

No timing is asserted: the figures are printed (run with -s to see the ranking of dcmtk
storescp and our SCP), the tests check the JSON's fields, counts, errors by status, exit
codes, what the receivers got and the charts' formats.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import peers, qr_helpers
from tests.support.peers import HOST, free_port
from tests.support.storedata import index_by_instance

pytestmark = pytest.mark.timeout(120)

FASTDIMSE = Path(sys.executable).parent / "fastdimse"
ARCHIVE_SCP = Path(peers.SUPPORT_DIR) / "archive_scp.py"

LEVEL_FIELDS = {"concurrency", "operations", "seconds", "ops_per_s", "mb_per_s", "latency_ms", "errors"}
LATENCY_FIELDS = {"p50", "p95", "p99", "max"}


def bench(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    assert FASTDIMSE.exists(), f"{FASTDIMSE} is missing: run make build"
    return subprocess.run([str(FASTDIMSE), "bench", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def bench_json(*args: str, expect_rc: int = 0) -> dict:
    done = bench(*args, "--json")
    assert done.returncode == expect_rc, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def check_sweep(doc: dict, op: str, levels: list[int]) -> None:
    """Every field of the agreed JSON, with sane values."""
    assert doc["op"] == op
    assert doc["latency"]   # what one latency is, in words
    assert re.fullmatch(r"[^@]+@127\.0\.0\.1:\d+", doc["peer"]), doc["peer"]
    assert [lv["concurrency"] for lv in doc["levels"]] == levels
    for lv in doc["levels"]:
        assert LEVEL_FIELDS <= set(lv), lv
        assert set(lv["latency_ms"]) == LATENCY_FIELDS
        assert lv["operations"] > 0 and lv["seconds"] > 0
        assert lv["ops_per_s"] == pytest.approx(lv["succeeded"] / lv["seconds"], rel=1e-2, abs=1e-3)
        if lv["timed_responses"]:
            lat = lv["latency_ms"]
            assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"], lat
        assert isinstance(lv["errors"], dict)
    sat = doc["saturation"]
    assert set(sat) >= {"concurrency", "ops_per_s"}
    assert sat["concurrency"] in levels
    best_before = {lv["concurrency"]: lv["ops_per_s"] for lv in doc["levels"]}
    assert sat["ops_per_s"] == pytest.approx(best_before[sat["concurrency"]], abs=1e-3)


# --- peers ----------------------------------------------------------------------------------


@pytest.fixture
def our_scp(peer_log_dir, tmp_path):
    """Our Q/R archive (storage, index, C-FIND/C-MOVE) in its own process; (peer, folder)."""
    def start(ae: str = "FDSCP", known: tuple[str, ...] = ()) -> tuple[peers.Peer, Path]:
        port = free_port()
        folder = tmp_path / f"archive-{port}"
        argv = [sys.executable, str(ARCHIVE_SCP), str(folder), str(port), ae]
        for k in known:
            argv += ["--known", k]
        peer = peers.start_process(argv, port=port, log_dir=peer_log_dir, name=f"archive-{port}", ae_title=ae)
        started.append(peer)
        return peer, folder

    started: list[peers.Peer] = []
    try:
        yield start
    finally:
        for p in started:
            p.stop()


def dcmtk_storescp(peer_log_dir: Path, out: Path, extra: list[str] | None = None) -> peers.Peer:
    # +B: each data set written exactly as received.
    return peers.start_dcmtk_storage_scp(peer_log_dir, out, ae_title="STORESCP", extra=["+B", *(extra or [])])


def sop_uids_in(folder: Path) -> set[str]:
    return set(index_by_instance(folder))


# --- store ----------------------------------------------------------------------------------


def test_store_dcmtk_and_ours_ranked(peer_log_dir, tmp_path, our_scp, capsys):
    """bench --op store against dcmtk storescp and against our SCP: the same generated load,
    both JSON documents complete, every instance arrived; the two ranked by ops/s."""
    out = tmp_path / "dcmtk-out"
    dcmtk = dcmtk_storescp(peer_log_dir, out)
    ours, folder = our_scp()
    args = ["--op", "store", "--generate", "6", "--size", "8KB", "--concurrency", "1,2"]
    try:
        d_doc = bench_json(f"STORESCP@{HOST}:{dcmtk.port}", *args)
        o_doc = bench_json(f"FDSCP@{HOST}:{ours.port}", *args)
    finally:
        dcmtk.stop()
    for doc in (d_doc, o_doc):
        check_sweep(doc, "store", [1, 2])
        for lv in doc["levels"]:
            assert lv["operations"] == lv["succeeded"] == 6 and lv["errors"] == {}
            assert lv["bytes"] > 6 * 7000 and lv["mb_per_s"] > 0
            # one per association and level is counted but not timed
            assert lv["timed_responses"] == 6 - lv["concurrency"]
    assert len(sop_uids_in(out)) == 12
    assert len(sop_uids_in(folder)) == 12
    ranked = sorted([("dcmtk storescp", d_doc["saturation"]["ops_per_s"]),
                     ("fastdimse SCP", o_doc["saturation"]["ops_per_s"])], key=lambda r: -r[1])
    with capsys.disabled():
        print("\nbench --op store, best ops/s: " + " > ".join(f"{n} {v:.0f}/s" for n, v in ranked))


def test_generate_fresh_uids_every_run(peer_log_dir, tmp_path):
    """Two runs of the same --generate store distinct Study/Series/SOP Instance UIDs: the
    receiver holds every instance of both runs."""
    import pydicom

    out = tmp_path / "out"
    dcmtk = dcmtk_storescp(peer_log_dir, out)
    try:
        for _ in range(2):
            doc = bench_json(f"STORESCP@{HOST}:{dcmtk.port}", "--op", "store", "--generate", "4",
                             "--concurrency", "1")
            assert doc["levels"][0]["succeeded"] == 4
    finally:
        dcmtk.stop()
    stored = index_by_instance(out)   # fails if one SOP Instance UID arrived twice
    assert len(stored) == 8
    studies = {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in stored.values()}
    assert len(studies) == 2


def test_store_data_folder(peer_log_dir, tmp_path):
    """--data DIR sends the folder's DICOM files as they are (cycled for a larger --count)."""
    src = tmp_path / "src"
    truth = qr_helpers.write_archive(src, qr_helpers.bulk_truth(3, tag=71))
    (src / "notes.txt").write_text("not DICOM")
    out = tmp_path / "out"
    dcmtk = dcmtk_storescp(peer_log_dir, out)
    try:
        doc = bench_json(f"STORESCP@{HOST}:{dcmtk.port}", "--op", "store", "--data", str(src), "-c", "1")
    finally:
        dcmtk.stop()
    assert doc["levels"][0]["succeeded"] == 3
    assert sop_uids_in(out) == {i.SOPInstanceUID for i in truth}


def test_errors_counted_by_status(peer_log_dir, tmp_path):
    """An SCP that answers every C-STORE with a failure status: the errors are counted by
    that status, nothing counts as throughput, exit 1 with the errors on stderr."""
    script = tmp_path / "refusing_scp.py"
    port = free_port()
    script.write_text(f"""
import signal, sys, threading
from fastdimse import DICOMSCP, Entity
scp = DICOMSCP(Entity("REFUSE", "127.0.0.1", {port}), storage_dir={str(tmp_path / 'refused')!r},
               on_stored=lambda inst: 0xA700)
done = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: done.set())
scp.listen_for_incoming_associations(keep_listener_running=True)
while not done.wait(0.2):
    pass
scp.stop()
""")
    peer = peers.start_process([sys.executable, str(script)], port=port, log_dir=peer_log_dir, name="refusing")
    try:
        done = bench(f"REFUSE@{HOST}:{port}", "--op", "store", "--generate", "3", "-c", "1,2", "--json")
    finally:
        peer.stop()
    assert done.returncode == 1, done.stderr
    doc = json.loads(done.stdout)
    check_sweep(doc, "store", [1, 2])
    for lv in doc["levels"]:
        assert lv["errors"] == {"0xA700": 3}
        assert lv["succeeded"] == 0 and lv["ops_per_s"] == 0
    assert "0xA700: 3" in done.stderr and "Traceback" not in done.stderr


# --- echo, find, move -------------------------------------------------------------------------


def test_echo_pynetdicom(pynetdicom_echo_scp):
    doc = bench_json(f"ECHOSCP@{HOST}:{pynetdicom_echo_scp.port}", "--op", "echo", "--count", "20",
                     "--concurrency", "1,2")
    check_sweep(doc, "echo", [1, 2])
    for lv in doc["levels"]:
        assert lv["succeeded"] == 20 and lv["timed_responses"] == 20 and lv["errors"] == {}
    # 1 + 2 associations, 20 + 20 echoes, seen by the peer itself
    pynetdicom_echo_scp.wait_for_log(peers.PEER_ECHO_RECEIVED, count=40)


def test_python_api_run_sweep(pynetdicom_echo_scp):
    """The engine without the command line: fastdimse.cli.bench_engine.run_sweep."""
    from fastdimse import Entity
    from fastdimse.cli.bench_engine import run_sweep

    sweep = run_sweep("echo", Entity("ECHOSCP", HOST, pynetdicom_echo_scp.port), concurrency=[2, 1], count=6)
    assert [lv.concurrency for lv in sweep.levels] == [2, 1]
    assert all(lv.succeeded == 6 and len(lv.latencies) == 6 for lv in sweep.levels)
    check_sweep(sweep.to_json(), "echo", [2, 1])


def test_echo_dcmtk_duration(dcmtk_storescp):
    """--duration per level (dcmtk storescp answers C-ECHO), with the table on stdout."""
    done = bench("-aec", "STORESCP", HOST, str(dcmtk_storescp.port), "--op", "echo", "--duration", "500ms",
                 "-c", "1,2")
    assert done.returncode == 0, done.stderr
    assert "C-ECHO STORESCP@127.0.0.1" in done.stdout
    assert re.search(r"saturation|no saturation", done.stdout)
    assert done.stderr == ""


def _fill_dcmqrscp(peer_log_dir: Path, tmp_path: Path, n: int):
    src = tmp_path / "qr-src"
    truth = qr_helpers.write_archive(src, qr_helpers.bulk_truth(n, tag=72))
    qr = qr_helpers.start_dcmqrscp(peer_log_dir, tmp_path / "dcmqr-db", {})
    rc, output = qr_helpers.run_storescu(qr.port, qr_helpers.DCMQRSCP_AE, [str(p) for p in qr_helpers.dicom_files(src)])
    assert rc == 0, output
    return qr, truth


def test_find_dcmqrscp(peer_log_dir, tmp_path):
    qr, truth = _fill_dcmqrscp(peer_log_dir, tmp_path, 3)
    try:
        doc = bench_json(f"{qr_helpers.DCMQRSCP_AE}@{HOST}:{qr.port}", "--op", "find", "--count", "6",
                         "-c", "1,2", "-k", "PatientID=BULK", "-k", "StudyInstanceUID")
        images = bench_json(f"{qr_helpers.DCMQRSCP_AE}@{HOST}:{qr.port}", "--op", "find", "--count", "2",
                            "-c", "1", "-k", "QueryRetrieveLevel=IMAGE", "-k", "PatientID=BULK",
                            "-k", f"0020,000D={truth[0].StudyInstanceUID}",
                            "-k", f"SeriesInstanceUID={truth[0].SeriesInstanceUID}", "-k", "SOPInstanceUID")
    finally:
        qr.stop()
    check_sweep(doc, "find", [1, 2])
    for lv in doc["levels"]:
        assert lv["succeeded"] == 6 and lv["errors"] == {}
        assert lv["matches"] == 6      # one study per query
    assert images["levels"][0]["matches"] == 2 * 3


def test_move_to_destination(peer_log_dir, tmp_path, our_scp):
    """--op move: our Q/R SCP moves a study to dcmtk storescp each time."""
    catcher_out = tmp_path / "catcher"
    catcher = qr_helpers.start_dcmtk_catcher(peer_log_dir, catcher_out)
    src = tmp_path / "src"
    truth = qr_helpers.write_archive(src, qr_helpers.bulk_truth(2, tag=73))
    archive, _ = our_scp("ARCHIVE", known=(f"CATCHER={HOST}:{catcher.port}",))
    try:
        filled = bench_json(f"ARCHIVE@{HOST}:{archive.port}", "--op", "store", "--data", str(src), "-c", "1")
        assert filled["levels"][0]["succeeded"] == 2
        doc = bench_json(f"ARCHIVE@{HOST}:{archive.port}", "--op", "move", "--dest", "CATCHER",
                         "-k", f"StudyInstanceUID={truth[0].StudyInstanceUID}", "--count", "2", "-c", "1,2")
    finally:
        catcher.stop()
    check_sweep(doc, "move", [1, 2])
    for lv in doc["levels"]:
        assert lv["succeeded"] == 2 and lv["errors"] == {}
        assert lv["matches"] == 2 * 2      # sub-operations completed
    assert sop_uids_in(catcher_out) == {i.SOPInstanceUID for i in truth}


def test_move_unknown_destination_counts_status(our_scp):
    archive, _ = our_scp("ARCHIVE")
    doc = bench_json(f"ARCHIVE@{HOST}:{archive.port}", "--op", "move", "--dest", "NOWHERE",
                     "-k", "StudyInstanceUID=1.2.3", "--count", "2", "-c", "1", expect_rc=1)
    assert doc["levels"][0]["errors"] == {"0xA801": 2}


# --- grow and plots ---------------------------------------------------------------------------


def test_grow_one_row_per_step(our_scp, tmp_path):
    archive, folder = our_scp("ARCHIVE")
    plot = tmp_path / "grow.png"
    doc = bench_json(f"ARCHIVE@{HOST}:{archive.port}", "--grow", "3", "--batch", "4", "--count", "3",
                     "--plot", str(plot))
    rows = doc["grow"]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [r["archive_instances"] for r in rows] == [4, 8, 12]
    for r in rows:
        assert r["queries"] == 3 and r["errors"] == {} and r["store_errors"] == {}
        assert set(r["latency_ms"]) == LATENCY_FIELDS
    # the default query is a study-level match-all: each batch is one more study
    assert [r["matches_per_query"] for r in rows] == [1, 2, 3]
    assert len(sop_uids_in(folder)) == 12
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_png_and_html(pynetdicom_echo_scp, tmp_path):
    png, page = tmp_path / "echo.png", tmp_path / "echo.html"
    peer = f"ECHOSCP@{HOST}:{pynetdicom_echo_scp.port}"
    for target in (png, page):
        done = bench(peer, "--op", "echo", "--count", "5", "-c", "1,2", "--plot", str(target))
        assert done.returncode == 0, done.stderr
        assert f"chart written to {target}" in done.stdout
    import matplotlib.image

    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(str(png)).shape[:2]
    assert width > 400 and height > 200
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "</html>" in text
    assert "<table>" in text and text.count("<tr>") == 3   # header + two levels
    # Self-contained: nothing refers outside the page (XML namespace names aside; url(#id)
    # and href="#id" are references inside the SVG).
    without_ns = re.sub(r'xmlns(:\w+)?="[^"]*"', "", text)
    outside = re.compile(r"https?://|//[a-z]|<script[^>]*src|<link|@import|url\((?!#)|href=\"(?!#)")
    found = outside.search(without_ns)
    assert found is None, without_ns[max(0, found.start() - 60):found.end() + 60]


# --- usage errors and unreachable peers -------------------------------------------------------


@pytest.mark.parametrize("args, words", [
    (["--concurrency", "1,two"], "--concurrency"),
    (["--concurrency", "0,2"], "--concurrency"),
    (["--op", "store", "--generate", "2", "--size", "5 parsecs"], "--size"),
    (["--op", "store", "--generate", "2", "--size", "12"], "--size"),
    (["--duration", "soon"], "--duration"),
    (["--duration", "-1s"], "--duration"),
    (["--count", "3", "--duration", "1s"], "not both"),
    (["--op", "store"], "--generate"),
    (["--op", "move"], "--dest"),
    (["--op", "find", "-k", "NoSuchKeyword=1"], "NoSuchKeyword"),
    (["--plot", "chart.svg"], ".png"),
])
def test_usage_errors_one_line_exit_2(args, words):
    done = bench(f"ANY@{HOST}:{free_port()}", *args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and words in lines[0], done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("op", [["--op", "echo"], ["--op", "store", "--generate", "2"], ["--op", "find"]])
def test_unreachable_exit_3(op):
    done = bench(f"NOBODY@{HOST}:{free_port()}", *op, "--count", "2", "-c", "1,2")
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no association" in lines[0]
    assert done.stdout == ""


# --- the engine's arithmetic (no sockets) -------------------------------------------------------


def test_saturation_and_percentiles():
    from fastdimse.cli.bench_engine import LevelResult, latency_summary, saturation_of

    def level(c: int, ops: int) -> LevelResult:
        return LevelResult(concurrency=c, operations=ops, succeeded=ops, seconds=1.0, bytes=0)

    # 1 -> 2 grows 60 %, 2 -> 4 grows 3 %: saturated at 2
    assert saturation_of([level(1, 100), level(2, 160), level(4, 165)]) == \
        {"concurrency": 2, "ops_per_s": 160.0, "reached": True}
    assert saturation_of([level(4, 300), level(1, 100), level(2, 200)])["concurrency"] == 4
    assert saturation_of([level(1, 100), level(2, 200)])["reached"] is False
    # a stall at 2 does not hide the growth at 4
    assert saturation_of([level(1, 100), level(2, 102), level(4, 150)]) == \
        {"concurrency": 4, "ops_per_s": 150.0, "reached": False}
    # a dip and no real gain after 1: saturated at 1
    assert saturation_of([level(1, 100), level(2, 60), level(4, 104)])["concurrency"] == 1
    lat = latency_summary([i / 1000 for i in range(1, 101)])   # 1 .. 100 ms
    assert lat["max"] == 100 and lat["p50"] == pytest.approx(50.5) and 98 < lat["p99"] < 100
    assert latency_summary([]) == {"p50": None, "p95": None, "p99": None, "max": None}
    assert latency_summary([0.002])["p99"] == 2


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("500ms", 0.5), ("2m", 120), ("1.5", 1.5)])
def test_durations(text, seconds):
    from fastdimse.cli.bench_data import parse_duration

    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, size", [("4KB", 4000), ("0.5MB", 500000), ("1MiB", 1048576), ("2048", 2048)])
def test_sizes(text, size):
    from fastdimse.cli.bench_data import parse_size

    assert parse_size(text) == size
