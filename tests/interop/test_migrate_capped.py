"""``fastdimse migrate`` from a source that caps its C-FIND answers and lies about C-MOVE:
tests/support/capped_qrscp.py (a pynetdicom Q/R SCP; its command line is documented in
its module doc), into dcmtk's storescp.

- A cap of 5 matches per C-FIND, with 12 studies on one day and 3 without a StudyDate:
  the StudyDate windows split down to that day, the day by PatientID prefix, and the
  undated studies are found by the pass without a date. Every study arrives, verified.
- ``--lying-move 1 --lie-times 1``: the first C-MOVE of every study answers Success with
  one instance not sent. Counting at the destination catches it, the retry completes it:
  every study verified after exactly one retry.
- ``--refuse-every 4``: every fourth C-FIND is refused (0xA700): the windows it hits are
  split, the counts it hits are retried; every study still ends verified.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support import qr_helpers as qh
from tests.support.cli import fastdimse
from tests.support.peers import HOST, PYTHON, free_port, start_process

pytestmark = pytest.mark.timeout(120)

CAPPED = Path(__file__).resolve().parents[1] / "support" / "capped_qrscp.py"

CATCHER_AE, SOURCE_AE = "CAPCATCH", "CAPPED"
STUDIES_ON_THE_BUSY_DAY, OTHER_STUDIES, UNDATED = 12, 12, 3
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _truth() -> list[qh.Instance]:
    base = qh.bulk_truth(1, tag=61)[0]
    out, n = [], 0
    total = STUDIES_ON_THE_BUSY_DAY + OTHER_STUDIES + UNDATED
    for s in range(total):
        if s < STUDIES_ON_THE_BUSY_DAY:
            date = "20220310"
        elif s < STUDIES_ON_THE_BUSY_DAY + OTHER_STUDIES:
            date = f"20{10 + s % 12:02d}{1 + s % 12:02d}{1 + s % 27:02d}"
        else:
            date = ""
        for i in range(2):
            n += 1
            out.append(replace(base, PatientID=f"{LETTERS[s % 26]}{s:03d}", StudyInstanceUID=qh._uid(61, 1, s + 1),
                               StudyDate=date, SeriesInstanceUID=qh._uid(61, 2, s + 1),
                               SOPInstanceUID=qh._uid(61, 3, n), InstanceNumber=str(i + 1)))
    return out


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> list[qh.Instance]:
    return qh.write_archive(tmp_path_factory.mktemp("capped-source"), _truth())


def _start_capped(tmp_path, archive, catcher_port, *extra: str):
    port = free_port()
    argv = [PYTHON, "-m", "tests.support.capped_qrscp", str(Path(archive[0].path).parent), str(port), "--ae",
            SOURCE_AE, "--known", f"{CATCHER_AE}={HOST}:{catcher_port}", *extra]
    return start_process(argv, port=port, log_dir=tmp_path / "logs", name=f"capped-{port}", ae_title=SOURCE_AE,
                         cwd=CAPPED.parents[2])


def _migrate(tmp_path, archive, *capped_args: str, migrate_args: tuple[str, ...] = ()):
    caught = tmp_path / "caught"
    catcher_port = free_port()
    catcher = qh.start_dcmtk_catcher(tmp_path / "logs", caught, ae_title=CATCHER_AE, port=catcher_port)
    source = _start_capped(tmp_path, archive, catcher_port, *capped_args)
    try:
        report = tmp_path / "r.json"
        run = fastdimse("migrate", f"{SOURCE_AE}@{HOST}:{source.port}", f"{CATCHER_AE}@{HOST}:{catcher_port}",
                        "--journal", tmp_path / "j.sqlite", "--report", report, "--verify-at", caught,
                        "--retry-delay", "0.05", "-v", *migrate_args, timeout=100)
        return run, json.loads(report.read_text()) if report.exists() else None, caught, source.log()
    finally:
        source.stop()
        catcher.stop()


def _by_study(archive) -> Counter:
    return Counter(i.StudyInstanceUID for i in archive)


def test_capped_source_every_study_found(tmp_path, archive):
    run, doc, caught, log = _migrate(tmp_path, archive, "--max-results", "5", migrate_args=("--max-results", "5"))
    assert run.returncode == 0, f"{run}\n{log}"
    want = _by_study(archive)
    got = {s["study_uid"]: s for s in doc["studies"]}
    assert set(got) == set(want), sorted(set(want) - set(got))
    assert all(got[u]["status"] == "verified" and got[u]["dest_count"] == n for u, n in want.items()), doc
    qh.assert_holds_exactly(caught, archive, allow_transcoded=True)
    assert "answered 5" in log, log  # the cap was really hit
    # The busy day was split (by PatientID prefix, below it), and so was the undated pass.
    assert "date:20220310-20220310 5 matches: split" in run.stderr, run
    assert "nodate 5 matches: split" in run.stderr, run
    assert {got[u]["study_date"] for u in got} >= {"", "20220310"}


def test_lying_move_caught_by_counting_and_retried(tmp_path, archive):
    run, doc, caught, log = _migrate(tmp_path, archive, "--lying-move", "1", "--lie-times", "1")
    assert run.returncode == 0, f"{run}\n{log}"
    assert "skipped" in log, log
    for s in doc["studies"]:
        assert (s["status"], s["attempts"], s["retries"], s["reason"]) == ("verified", 2, 1, None), s
        assert s["dest_count"] == s["source_count"] == 2, s
    assert "short at the destination: 1 of 2 instances" in run.stderr, run
    qh.assert_holds_exactly(caught, archive, allow_transcoded=True)


def test_refusing_source_still_migrates_everything(tmp_path, archive):
    run, doc, caught, log = _migrate(tmp_path, archive, "--refuse-every", "4", migrate_args=("--max-attempts", "6"))
    assert run.returncode == 0, f"{run}\n{log}"
    assert "0xA700" in run.stderr, run  # refusals were met
    assert {s["status"] for s in doc["studies"]} == {"verified"} and len(doc["studies"]) == len(_by_study(archive))
    qh.assert_holds_exactly(caught, archive, allow_transcoded=True)
