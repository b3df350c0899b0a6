"""``fastdimse migrate --mode move`` as a user runs it (the installed console script), from
dcmtk's dcmqrscp (filled by dcmtk's storescu with the standard test archive) to dcmtk's
storescp, to our ``fastdimse qrscp``, and to a storage SCP that refuses some instances.

Each migration is checked by the files that reached the destination (exactly the
archive's instances, each data set byte-identical to its source), by the report (JSON and
the Markdown beside it: per study the counts at the source and at the destination) and
by the journal (every study verified).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from tests.support import migrate_helpers as mh
from tests.support import qr_helpers as qh
from tests.support.cli import assert_one_error_line, fastdimse, fastdimse_on_terminal
from tests.support.peers import HOST

pytestmark = pytest.mark.timeout(90)

STORESCP_AE, OURS_AE, REFUSER_AE = "MIGSTORESCP", "MIGOURS", "MIGREFUSER"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> list[qh.Instance]:
    return qh.write_archive(tmp_path_factory.mktemp("migrate-source"), qh.archive_truth(tag=47))


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {ae: qh.free_port() for ae in (STORESCP_AE, OURS_AE, REFUSER_AE)}


@pytest.fixture(scope="module")
def source(tmp_path_factory, archive, ports):
    """dcmqrscp holding the archive, knowing the three destinations."""
    base = tmp_path_factory.mktemp("migrate-dcmqrscp")
    peer = qh.start_dcmqrscp(base, base / "db", {ae: ("localhost", p) for ae, p in ports.items()})
    try:
        rc, out = qh.run_storescu(peer.port, qh.DCMQRSCP_AE, [i.path for i in archive])
        assert rc == 0 and out.count("Received Store Response (Success)") == len(archive), out + peer.log()
        yield f"{qh.DCMQRSCP_AE}@{HOST}:{peer.port}"
    finally:
        peer.stop()


def _studies(archive) -> Counter:
    return Counter(i.StudyInstanceUID for i in archive)


def _report(path: Path) -> dict:
    doc = json.loads(path.read_text())
    assert path.with_suffix(".md").exists(), "no Markdown beside the JSON report"
    return doc


def _assert_all_verified(doc: dict, archive) -> None:
    want = _studies(archive)
    got = {s["study_uid"]: s for s in doc["studies"]}
    assert set(got) == set(want), doc
    for uid, n in want.items():
        s = got[uid]
        assert (s["status"], s["expected"], s["source_count"], s["dest_count"], s["reason"]) == (
            "verified", n, n, n, None), s
    assert doc["summary"]["verified"] == len(want) and doc["summary"]["failed"] == 0, doc["summary"]
    assert doc["summary"]["instances_destination"] == len(archive), doc["summary"]


def test_move_dcmqrscp_to_dcmtk_storescp(tmp_path, source, archive, ports):
    caught = tmp_path / "caught"
    catcher = qh.start_dcmtk_catcher(tmp_path / "logs", caught, ae_title=STORESCP_AE, port=ports[STORESCP_AE])
    try:
        journal, report = tmp_path / "j.sqlite", tmp_path / "report.json"
        # storescp answers no C-FIND: without --verify-at nothing could be counted.
        blind = fastdimse("migrate", source, f"{STORESCP_AE}@{HOST}:{ports[STORESCP_AE]}", "--journal", journal,
                          "--report", report)
        assert_one_error_line(blind, 2, "--verify-at", "no C-FIND")
        assert qh.dicom_files(caught) == []
        run = fastdimse("migrate", source, f"{STORESCP_AE}@{HOST}:{ports[STORESCP_AE]}", "--mode", "move",
                        "--journal", journal, "--report", report, "--verify-at", caught, "--parallel", "3",
                        "--json")
        assert run.returncode == 0, run
        summary = run.json()
        assert (summary["studies"], summary["verified"], summary["failed"]) == (len(_studies(archive)),
                                                                               len(_studies(archive)), 0), run
        qh.assert_holds_exactly(caught, archive)
        doc = _report(report)
        _assert_all_verified(doc, archive)
        md = report.with_suffix(".md").read_text()
        assert all(uid in md for uid in _studies(archive)), md
        rows = mh.journal_rows(journal)
        assert {r["state"] for r in rows.values()} == {"verified"} and len(rows) == len(_studies(archive))

        # The same command again: nothing is sent again (the journal says verified).
        before = {p: p.stat().st_mtime_ns for p in qh.dicom_files(caught)}
        again = fastdimse("migrate", source, f"{STORESCP_AE}@{HOST}:{ports[STORESCP_AE]}", "--journal", journal,
                          "--report", report, "--verify-at", caught)
        assert again.returncode == 0, again
        assert {p: p.stat().st_mtime_ns for p in qh.dicom_files(caught)} == before
        assert mh.journal_rows(journal) == rows
        assert f"{len(_studies(archive))} studies: {len(_studies(archive))} verified, 0 failed" in again.stdout, again
    finally:
        catcher.stop()


def test_move_dcmqrscp_to_our_qrscp_counted_by_cfind(tmp_path, source, archive, ports):
    """Our Q/R SCP as destination: counted by IMAGE-level C-FIND there (no --verify-at).
    With --max-results 2 every window of two or more studies is taken for capped: the date
    range is split down to the single days of the archive, and every study is still found."""
    storage = tmp_path / "ours"
    # On the fixed port dcmqrscp's HostTable names.
    srv = _start_on(tmp_path, "qrscp", ["--aet", OURS_AE, str(storage)], ports[OURS_AE])
    try:
        report = tmp_path / "r.json"
        run = fastdimse("migrate", source, f"{OURS_AE}@{HOST}:{ports[OURS_AE]}", "--journal",
                        tmp_path / "j.sqlite", "--report", report, "--max-results", "2",
                        "--date-from", "19000101", "--date-to", "20991231", "-v")
        assert run.returncode == 0, run
        qh.assert_holds_exactly(storage, archive)
        _assert_all_verified(_report(report), archive)
        assert "split" in run.stderr, run  # the windows were split (-v logs each split)
    finally:
        srv.stop()


def _start_on(tmp_path, command, args, port):
    from tests.support.peers import start_process

    return start_process([str(mh.FASTDIMSE), command, "--host", HOST, "--port", str(port), *args], port=port,
                         log_dir=tmp_path / "logs", name=f"{command}-{port}")


def test_refusing_destination_fails_with_reasons(tmp_path, source, archive, ports):
    """MR instances are refused 0xA700: their studies fail after --max-attempts, with the
    counts and the reason in the report; the CT-only studies are verified; exit 1."""
    out = tmp_path / "kept"
    peer = mh.start_refusing_scp(tmp_path / "logs", out, ae_title=REFUSER_AE, port=ports[REFUSER_AE])
    try:
        report = tmp_path / "r.json"
        run = fastdimse("migrate", source, f"{REFUSER_AE}@{HOST}:{ports[REFUSER_AE]}", "--journal",
                        tmp_path / "j.sqlite", "--report", report, "--verify-at", out, "--max-attempts", "2",
                        "--retry-delay", "0.05")
        assert run.returncode == 1, run
        assert "failed" in run.stderr and "Traceback" not in run.stderr, run
        doc = _report(report)
        by_study = {s["study_uid"]: s for s in doc["studies"]}
        for uid, n in _studies(archive).items():
            mr = sum(1 for i in archive if i.StudyInstanceUID == uid and i.Modality == "MR")
            s = by_study[uid]
            if not mr:
                assert s["status"] == "verified" and s["dest_count"] == n, s
                continue
            assert (s["status"], s["attempts"], s["retries"]) == ("failed", 2, 1), s
            assert (s["source_count"], s["dest_count"]) == (n, n - mr), s
            assert f"{n - mr} of {n} instances" in s["reason"] and "sub-operation(s) failed" in s["reason"], s
        qh.assert_holds_exactly(out, [i for i in archive if i.Modality != "MR"], allow_transcoded=True)
        md = report.with_suffix(".md").read_text()
        assert "## Not migrated" in md and "short at the destination" in md, md
    finally:
        peer.stop()


def test_unreachable_source_exit_3(tmp_path):
    port = qh.free_port()
    run = fastdimse("migrate", f"NOBODY@{HOST}:{port}", f"DEST@{HOST}:{port}", "--journal", tmp_path / "j.sqlite",
                    "--report", tmp_path / "r.json", "--timeout", "2")
    assert run.returncode == 3, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "no association" in lines[0] and "Traceback" not in run.stderr, run


def test_pynetdicom_qrscp_source_progress_on_a_terminal(tmp_path, archive, ports):
    """pynetdicom's qrscp app as the source (filled by dcmtk's storescu); stderr a
    terminal: the progress bar shows the studies and instances done."""
    peer = qh.start_pynetdicom_qrscp(tmp_path / "logs", tmp_path / "pyqr", {STORESCP_AE: (HOST, ports[STORESCP_AE])})
    caught = tmp_path / "caught"
    catcher = qh.start_dcmtk_catcher(tmp_path / "logs", caught, ae_title=STORESCP_AE, port=ports[STORESCP_AE])
    try:
        rc, out = qh.run_storescu(peer.port, peer.ae_title, [i.path for i in archive])
        assert rc == 0, out + peer.log()
        n = len(_studies(archive))
        run = fastdimse_on_terminal("migrate", f"{peer.ae_title}@{HOST}:{peer.port}",
                                    f"{STORESCP_AE}@{HOST}:{ports[STORESCP_AE]}", "--journal", tmp_path / "j.sqlite",
                                    "--report", tmp_path / "r.json", "--verify-at", caught)
        assert run.returncode == 0, f"{run}\n{peer.log()}"
        shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", run.stderr)  # without the terminal's colours
        assert f"{n}/{n} studies {len(archive)} instances" in shown, shown
        qh.assert_holds_exactly(caught, archive, allow_transcoded=True)
        _assert_all_verified(_report(tmp_path / "r.json"), archive)
    finally:
        catcher.stop()
        peer.stop()


def test_unknown_move_destination_stops_at_once(tmp_path, source, archive):
    """dcmqrscp answers 0xA801 for an AE it does not know: the migration stops at the first
    study (no study burns its attempts), says why, exit 1; the report lists it."""
    report = tmp_path / "r.json"
    run = fastdimse("migrate", source, f"NOSUCHDEST@{HOST}:9", "--journal", tmp_path / "j.sqlite", "--report", report,
                    "--parallel", "1", "--verify-at", tmp_path)
    assert run.returncode == 1, run
    assert "stopped" in run.stderr and "0xA801" in run.stderr and "NOSUCHDEST" in run.stderr, run
    assert "Traceback" not in run.stderr, run
    rows = mh.journal_rows(tmp_path / "j.sqlite")
    assert len(rows) == len(_studies(archive))
    failed = [r for r in rows.values() if r["state"] == "failed"]
    assert len(failed) == 1 and failed[0]["attempts"] == 0, rows
    assert {r["state"] for r in rows.values()} <= {"failed", "pending"}, rows
    doc = _report(report)
    assert doc["summary"]["stopped"] and doc["summary"]["verified"] == 0, doc["summary"]
