"""The parts of the migration engine without a network: the inventory's window splitting
against a capped, refusing source (a C-FIND sender in memory), the rate limit and schedule
parsers, the adaptive concurrency's back-off, the report, and the command's usage errors
(one line, exit 2)."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading

import pytest

from fastdimse.errors import QueryFailed
from fastdimse.migrate import State, StudyRecord
from fastdimse.migrate.engine import AdaptiveLimiter, MigrationResult, RateLimit, Schedule
from fastdimse.migrate.inventory import PREFIX_CHARS, run_inventory
from fastdimse.migrate.journal import SQLiteJournal
from fastdimse.migrate.report import markdown_path, write_report
from tests.support.cli import assert_one_error_line, fastdimse

pytestmark = pytest.mark.timeout(60)


class CappedFinder:
    """Study-level C-FIND over ``studies`` [(uid, patient_id, date)]: StudyDate ranges and
    PatientID wildcards matched, at most ``cap`` answers, then Success (a silent cap);
    a query whose StudyDate is in ``refuse`` is answered 0xA700."""

    def __init__(self, studies, cap, refuse=()):
        self.studies, self.cap, self.refuse = studies, cap, set(refuse)
        self.asked: list[dict] = []

    def find(self, ident):
        self.asked.append(dict(ident))
        if ident["StudyDate"] in self.refuse:
            raise QueryFailed("C-FIND failed with status 0xA700", 0xA700)
        date, pid = ident["StudyDate"], ident["PatientID"]
        lo, _, hi = date.partition("-") if "-" in date else (date, "", date)
        pattern = re.compile(re.escape(pid).replace(r"\*", ".*") + r"\Z") if pid else None
        out = []
        for uid, p, d in self.studies:
            if date and not (d and lo <= d <= hi):
                continue
            if pattern is not None and not pattern.match(p):
                continue
            out.append({"StudyInstanceUID": uid, "PatientID": p, "StudyDate": d,
                        "NumberOfStudyRelatedInstances": "3"})
        yield from out[: self.cap]

    def close(self):
        pass


def _archive():
    studies = [(f"9.{i}", f"{PREFIX_CHARS[i % 20]}{i:03d}", "20230405") for i in range(30)]  # one busy day
    studies += [(f"8.{i}", f"Q{i}", f"2019{1 + i:02d}15") for i in range(10)]
    studies += [("7.1", "ZZ", ""), ("7.2", "ZZ", ""), ("7.3", "AB", "")]  # undated
    studies += [("6.1", "SAME", "20200101"), ("6.2", "SAME", "20200101"), ("6.3", "SAME", "20200101"),
                ("6.4", "SAME", "20200101")]  # one patient, one day, more than the cap
    return studies


def test_inventory_splits_every_capped_window_and_finds_all(fast_tmp):
    studies = _archive()
    finder = CappedFinder(studies, cap=4)
    with SQLiteJournal(fast_tmp / "j.sqlite", {"m": 1}) as j:
        res = run_inventory(None, None, j, max_results=4, finder=finder)
        found = {s.study_uid: s for s in j.studies()}
        assert set(found) == {s[0] for s in studies}
        assert found["7.3"].study_date == "" and found["9.3"].expected == 3
        # The one patient with 4 studies on a day cannot be split below the cap: reported
        # (in the undated pass too, whose answers for SAME are its dated studies).
        assert res.capped == ["date:20200101-20200101|PatientID=SAME", "nodate|PatientID=SAME"], res
        assert res.refused == []
        asked = len(finder.asked)
        # Resumed: nothing asked again.
        again = CappedFinder(studies, cap=4)
        res2 = run_inventory(None, None, j, max_results=4, finder=again)
        assert again.asked == [] and res2.capped == res.capped and asked > 10


def test_inventory_common_cap_detected_and_refusals_split(fast_tmp):
    studies = [(f"5.{i}", f"P{i}", f"2021{1 + i % 12:02d}{1 + i % 28:02d}") for i in range(250)]
    finder = CappedFinder(studies, cap=100, refuse={"20210101-20210702"})
    with SQLiteJournal(fast_tmp / "j.sqlite", {"m": 2}) as j:
        res = run_inventory(None, None, j, date_from="20210101", date_to="20211231", finder=finder)
        assert {s.study_uid for s in j.studies()} == {s[0] for s in studies}
        assert res.capped == [] and res.refused == []
        assert not any("StudyDate" in a and a["StudyDate"] == "" for a in finder.asked)  # no undated pass
        # The refused half of the year was asked again in its two halves.
        dates = [a["StudyDate"] for a in finder.asked]
        assert dates[:2] == ["20210101-20211231", "20210101-20210702"], dates
        assert {"20210101-20210402", "20210403-20210702"} <= set(dates), dates


def test_rate_limit_and_schedule_parsing():
    assert (RateLimit("200/s").rate, RateLimit("200/s").bytes) == (200, False)
    assert (RateLimit("50MB/s").rate, RateLimit("50MB/s").bytes) == (50e6, True)
    for bad in ("fast", "0/s", "5k/s", "-1MB/s"):
        with pytest.raises(ValueError):
            RateLimit(bad)
    night = Schedule("19:00-07:00")
    assert night.is_open(dt.datetime(2026, 1, 1, 23, 30)) and night.is_open(dt.datetime(2026, 1, 1, 6, 59))
    assert not night.is_open(dt.datetime(2026, 1, 1, 12, 0))
    assert night.seconds_until_open(dt.datetime(2026, 1, 1, 18, 0)) == 3600
    day = Schedule("08:00-17:30")
    assert day.is_open(dt.datetime(2026, 1, 1, 17, 29)) and not day.is_open(dt.datetime(2026, 1, 1, 17, 30))
    for bad in ("7-19", "25:00-01:00", "19:00"):
        with pytest.raises(ValueError):
            Schedule(bad)


def test_rate_limit_makes_the_next_study_wait():
    limit = RateLimit("10/s")
    limit.pay(1000, None)  # a study of 1000 instances: the next one waits ~100 s
    stop = threading.Event()
    stop.set()  # waiting returns at once when stopping; what is owed stays owed
    limit.wait(stop)
    assert limit._free_at > 0


def test_adaptive_limiter_backs_off_and_keeps_the_ceiling():
    lim = AdaptiveLimiter(8)
    assert lim.limit == 4
    lim.refused("0xA700")
    lim.refused("timeout")
    assert lim.limit == 1
    lim.refused("again")
    assert lim.limit == 1  # never below one
    assert [h[1] for h in lim.history] == [2, 1]
    stop = threading.Event()
    assert lim.acquire(stop)
    stop.set()
    assert not lim.acquire(stop)  # the one slot is taken: a stopping worker gives up
    lim.release()
    assert AdaptiveLimiter(1).limit == 1 and AdaptiveLimiter(3, start=9).limit == 3


def test_report_json_and_markdown(tmp_path):
    with SQLiteJournal(tmp_path / "j.sqlite", {"m": 3}, max_attempts=2) as j:
        j.add_studies([StudyRecord("1.1", "P1", "20200101", 2), StudyRecord("1.2", "P|2", "", 3)])
        j.update("1.1", State.VERIFIED, source_count=2, dest_count=2, attempt=True)
        for _ in range(2):
            j.update("1.2", State.FAILED, reason="short at the destination: 1 of 3", source_count=3,
                     dest_count=1, attempt=True)
        res = MigrationResult({}, 1, 1, 0, 2, None, 1.5, [], [])
        path, md = write_report(tmp_path / "out" / "rep.json", j, migration={"m": 3}, result=res, max_attempts=2)
    assert md == markdown_path(path) == tmp_path / "out" / "rep.md"
    doc = json.loads(path.read_text())
    assert doc["summary"]["exit_code"] == 1 and doc["summary"]["instances_destination"] == 3
    bad = doc["studies"][0]
    assert (bad["study_uid"], bad["status"], bad["retries"], bad["final"]) == ("1.2", "failed", 1, True)
    text = md.read_text()
    assert "## Not migrated" in text and "P\\|2" in text and "short at the destination: 1 of 3" in text


@pytest.mark.parametrize("args, needle", [
    (["--date-from", "2020-01-01"], "not a date"),
    (["--rate-limit", "fast"], "rate limit"),
    (["--schedule", "night"], "schedule"),
    (["--set", "PatientID=X"], "--mode relay"),
    (["--set", "NotAKeyword=X", "--mode", "relay"], "Keyword=Value"),
    (["--date-from", "20210101", "--date-to", "20200101"], "after"),
])
def test_usage_errors_one_line_exit_2(tmp_path, args, needle):
    run = fastdimse("migrate", "SRC@127.0.0.1:9", "DST@127.0.0.1:10", "--journal", tmp_path / "j.sqlite", *args)
    assert_one_error_line(run, 2, needle)
    assert not (tmp_path / "j.sqlite").exists()


def test_coercion_into_a_folder_is_a_usage_error(tmp_path):
    run = fastdimse("migrate", "SRC@127.0.0.1:9", tmp_path / "out", "--mode", "relay", "--set", "PatientID=X",
                    "--journal", tmp_path / "j.sqlite")
    assert_one_error_line(run, 2, "not a folder")
    assert not (tmp_path / "j.sqlite").exists()


def test_usage_errors_of_the_endpoints(tmp_path):
    run = fastdimse("migrate", tmp_path / "missing", "DST@127.0.0.1:10", "--journal", tmp_path / "j.sqlite")
    assert_one_error_line(run, 2, "no such folder")
    run = fastdimse("migrate", "SRC@127.0.0.1:9", tmp_path / "out", "--journal", tmp_path / "j.sqlite")
    assert_one_error_line(run, 2, "--mode get")
