"""Crash and resume: ``kill -9`` of ``fastdimse migrate`` in the middle of a migration,
twice, then Ctrl-C (SIGINT: exit 130, one line), then the same command again.

Source and destination are our ``fastdimse qrscp`` (the source knows the destination as a
C-MOVE destination); the destination is counted by C-FIND. At the end the destination holds
exactly the source's instances (no duplicates, none missing), the journal says verified
for every study, the studies verified before a kill were not sent again (their journal
rows are unchanged), and the report counts every instance once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from dataclasses import replace

import pytest

from tests.support import migrate_helpers as mh
from tests.support import qr_helpers as qh
from tests.support.cli import fastdimse
from tests.support.peers import HOST, stop_process

pytestmark = pytest.mark.timeout(120)

STUDIES, PER_STUDY = 36, 3
SOURCE_AE, DEST_AE = "RESUMESRC", "RESUMEDST"


def _truth() -> list[qh.Instance]:
    base = qh.bulk_truth(1, tag=53)[0]
    out = []
    for s in range(STUDIES):
        for i in range(PER_STUDY):
            n = s * PER_STUDY + i + 1
            out.append(replace(base, PatientID=f"R{s % 7:03d}", StudyInstanceUID=qh._uid(53, 1, s + 1),
                               StudyDate=f"2021{1 + s % 12:02d}{1 + s % 28:02d}",
                               SeriesInstanceUID=qh._uid(53, 2, s + 1), SOPInstanceUID=qh._uid(53, 3, n),
                               InstanceNumber=str(i + 1)))
    return out


def _wait_verified(journal, at_least: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal.exists():
            try:
                rows = mh.journal_rows(journal)
            except Exception:  # the journal is being created
                rows = {}
            if sum(r["state"] == "verified" for r in rows.values()) >= at_least:
                return
        assert proc.poll() is None, f"the migration ended (exit {proc.returncode}) before it could be killed"
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} studies verified after {timeout} s")


def test_kill_9_twice_then_resume(tmp_path):
    truth = qh.write_archive(tmp_path / "src" / "files", _truth())
    dest_dir = tmp_path / "dst"
    dest = mh.start_cli_server("qrscp", ["--aet", DEST_AE, str(dest_dir)], tmp_path / "logs")
    source = mh.start_cli_server("qrscp", ["--aet", SOURCE_AE, "--known", f"{DEST_AE}@{HOST}:{dest.port}",
                                           str(tmp_path / "src")], tmp_path / "logs")
    journal, report = tmp_path / "j.sqlite", tmp_path / "r.json"
    argv = ["migrate", f"{SOURCE_AE}@{HOST}:{source.port}", f"{DEST_AE}@{HOST}:{dest.port}", "--journal", journal,
            "--report", report, "--parallel", "2", "--rate-limit", "40/s"]
    try:
        kept: dict[str, dict] = {}
        for at_least, sig in ((4, signal.SIGKILL), (14, signal.SIGKILL), (20, signal.SIGINT)):
            log_path = tmp_path / f"migrate-{at_least}.log"
            with open(log_path, "wb") as log:
                proc = subprocess.Popen([str(mh.FASTDIMSE), *map(str, argv)], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
            try:
                _wait_verified(journal, at_least, proc)
                proc.send_signal(sig)  # SIGKILL: no clean-up of any kind; SIGINT: Ctrl-C
                rc = proc.wait(timeout=20)
            finally:
                stop_process(proc)
            if sig == signal.SIGINT:
                out = log_path.read_text(errors="replace")
                assert rc == 130 and "interrupted" in out and "Traceback" not in out, out
            rows = mh.journal_rows(journal)
            verified = {uid: r for uid, r in rows.items() if r["state"] == "verified"}
            assert at_least <= len(verified) < STUDIES, "killed too late to test a resume"
            # What was verified before stays as it was (not sent again, not counted again).
            assert all(verified[uid] == row for uid, row in kept.items()), "a verified study was redone"
            kept = verified

        run = fastdimse(*argv, "--json")
        assert run.returncode == 0, run
        rows = mh.journal_rows(journal)
        assert len(rows) == STUDIES and {r["state"] for r in rows.values()} == {"verified"}, rows
        assert all(rows[uid] == row for uid, row in kept.items()), "a study verified before the kill was redone"
        assert all(r["dest_count"] == r["source_count"] == PER_STUDY for r in rows.values()), rows
        qh.assert_holds_exactly(dest_dir, truth)
        doc = json.loads(report.read_text())
        assert doc["summary"]["instances_destination"] == len(truth), doc["summary"]
        assert doc["summary"]["verified"] == STUDIES and run.json()["verified"] == STUDIES
    finally:
        source.stop()
        dest.stop()
