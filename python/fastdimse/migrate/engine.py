"""The migration engine: inventory, then workers that transfer and verify study by study.

Theory of operation. The journal is the only state: the engine asks it for the next study
(``claim``), transfers it, counts it at the source and at the destination, and records the
result (``update``) before it takes the next one. So a run killed at any moment resumes
from the journal; a study claimed but not recorded is sent again, and counting (distinct
SOP Instance UIDs at the destination) never counts an instance twice.

- Workers: up to ``parallel`` threads; an :class:`AdaptiveLimiter` lets only ``limit`` of
  them work at once. It halves ``limit`` when the source refuses or times out, and adds
  one while the instances per second measured over the last studies keep growing.
- Retries: a study that failed or arrived short is retried after ``retry_delay * 2**n``
  seconds (capped at 5 minutes), up to ``max_attempts`` attempts; then it stays failed,
  with its reason.
- ``rate_limit`` (``200/s`` instances, ``50MB/s`` bytes) is paid after each study: the next
  one waits until the average is back under the limit. ``schedule`` (``19:00-07:00``, local
  time): no study starts outside the window; one in flight finishes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from pathlib import Path

from .model import SeriesRecord, State, StudyRecord
from .transfer import TransferContext, is_folder, outcome_of_error, transfer_study

__all__ = ["MigrationConfig", "MigrationResult", "Engine", "AdaptiveLimiter", "RateLimit", "Schedule",
           "SourceUnreachable", "CannotVerify", "Progress"]

log = logging.getLogger("fastdimse.migrate")

MAX_BACKOFF = 300.0


class SourceUnreachable(Exception):
    """No association at all could be made with the source."""


class CannotVerify(Exception):
    """What arrives cannot be counted where the engine was told to count it. ``usage``:
    the place answers no C-FIND (give a folder to count in), else it cannot be reached."""

    def __init__(self, message: str, usage: bool):
        super().__init__(message)
        self.usage = usage


# --- rate limit and schedule --------------------------------------------------------------

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(|k|K|M|G)(/s|B/s)\s*$")


class RateLimit:
    """``200/s`` (instances per second) or ``50MB/s`` (bytes: kB, MB, GB)."""

    def __init__(self, text: str):
        m = _RATE_RE.match(text)
        if m is None or float(m[1]) <= 0:
            raise ValueError(f"rate limit {text!r}: write N/s (instances) or NMB/s (also kB/s, GB/s)")
        scale = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}[m[2]]
        self.bytes = m[3] == "B/s"
        if not self.bytes and m[2]:
            raise ValueError(f"rate limit {text!r}: instances are counted plainly (200/s); bytes as MB/s")
        self.rate = float(m[1]) * scale
        self.text = text.strip()
        self._lock = threading.Lock()
        self._free_at = 0.0

    def wait(self, stop: threading.Event) -> None:
        with self._lock:
            delay = self._free_at - time.monotonic()
        if delay > 0:
            stop.wait(delay)

    def pay(self, instances: int, nbytes: int | None) -> None:
        units = (nbytes or 0) if self.bytes else instances
        with self._lock:
            self._free_at = max(self._free_at, time.monotonic()) + units / self.rate


_SCHEDULE_RE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class Schedule:
    """A daily window ``HH:MM-HH:MM`` (local time; across midnight when the end is earlier)."""

    def __init__(self, text: str):
        m = _SCHEDULE_RE.match(text)
        if m is None:
            raise ValueError(f"schedule {text!r}: write HH:MM-HH:MM, e.g. 19:00-07:00")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"schedule {text!r}: not a time of day")
        self.start, self.end = h1 * 60 + m1, h2 * 60 + m2
        self.text = text.strip()

    def is_open(self, now: _dt.datetime | None = None) -> bool:
        now = now or _dt.datetime.now()
        minute = now.hour * 60 + now.minute
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def seconds_until_open(self, now: _dt.datetime | None = None) -> float:
        now = now or _dt.datetime.now()
        if self.is_open(now):
            return 0.0
        start = now.replace(hour=self.start // 60, minute=self.start % 60, second=0, microsecond=0)
        if start <= now:
            start += _dt.timedelta(days=1)
        return (start - now).total_seconds()


# --- adaptive concurrency -----------------------------------------------------------------


class AdaptiveLimiter:
    """At most ``limit`` (<= ``ceiling``) studies at once: halved on a refusal or a timeout,
    one more while the throughput (instances/s over the last studies) grows."""

    def __init__(self, ceiling: int, start: int | None = None):
        self.ceiling = max(1, ceiling)
        self.limit = min(self.ceiling, start if start is not None else max(1, (self.ceiling + 1) // 2))
        self.active = 0
        self._cond = threading.Condition()
        self._mark = time.monotonic()
        self._instances = 0
        self._studies = 0
        self._last_rate: float | None = None
        self.history: list[tuple[float, int, str]] = []  # (time, new limit, why)

    def acquire(self, stop: threading.Event) -> bool:
        with self._cond:
            while self.active >= self.limit:
                if stop.is_set():
                    return False
                self._cond.wait(0.2)
            self.active += 1
            return True

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def _set(self, limit: int, why: str) -> None:
        if limit != self.limit:
            log.info("concurrency %d -> %d (%s)", self.limit, limit, why)
            self.limit = limit
            self.history.append((time.time(), limit, why))
            self._cond.notify_all()

    def refused(self, why: str) -> None:
        with self._cond:
            self._set(max(1, self.limit // 2), why)
            self._mark, self._instances, self._studies, self._last_rate = time.monotonic(), 0, 0, None

    def done(self, instances: int) -> None:
        with self._cond:
            self._instances += instances
            self._studies += 1
            elapsed = time.monotonic() - self._mark
            if self._studies < self.limit or elapsed < 1.0:
                return
            rate = self._instances / elapsed
            grew = self._last_rate is None or rate > self._last_rate * 1.05
            self._mark, self._instances, self._studies = time.monotonic(), 0, 0
            if grew and self.limit < self.ceiling:
                self._set(self.limit + 1, f"{rate:.0f} instances/s")
            self._last_rate = rate


# --- configuration and results ------------------------------------------------------------


@dataclass
class MigrationConfig:
    source: object  # Entity | Path
    dest: object  # Entity | Path
    mode: str = "move"
    aet: str = "FASTDIMSE"
    dest_ae: str | None = None
    verify_at: object | None = None  # where to count what arrived (default: dest)
    parallel: int = 4
    window: int = 16
    max_results: int | None = None
    date_from: str | None = None
    date_to: str | None = None
    modality: str | None = None
    keys: dict[str, str] = field(default_factory=dict)
    coerce: list[tuple[str, str]] = field(default_factory=list)
    # relay: a mapping file's coercions (fastdimse.coerce.CoercionMap), per patient
    # (constants, a PatientID map or prefix); ``coerce`` (--set) comes first.
    coerce_map: Any = None
    rate_limit: str | None = None
    schedule: str | None = None
    max_attempts: int = 5
    retry_delay: float = 5.0
    timeout: float = 30.0
    pdu: int = 16384
    catcher_host: str = "0.0.0.0"  # relay: where our catcher listens
    catcher_port: int = 0  # relay: its port (0: any free one; the source must know it)
    staging: str | None = None  # relay: the staging folder (default: a temporary one)

    def identity(self) -> dict:
        """What makes two runs the same migration (what the journal is checked against)."""
        return {"source": _endpoint_text(self.source), "dest": _endpoint_text(self.dest), "mode": self.mode,
                "dest_ae": self.dest_ae or (None if is_folder(self.dest) else self.dest.ae_title),
                "date_from": self.date_from, "date_to": self.date_to, "modality": self.modality,
                "keys": dict(sorted(self.keys.items()))}


def _endpoint_text(endpoint) -> str:
    if is_folder(endpoint):
        return f"folder:{os.path.abspath(endpoint)}"
    return f"{endpoint.ae_title}@{endpoint.ip_address}:{endpoint.port}"


@dataclass
class Progress:
    """What the progress display shows; the engine updates it as studies settle."""

    phase: str = "inventory"  # inventory | transfer | waiting | done
    studies_total: int = 0
    studies_done: int = 0  # verified or failed for good
    verified: int = 0
    failed: int = 0
    instances_total: int = 0  # expected, as far as known
    instances_done: int = 0
    bytes_done: int = 0
    windows: int = 0
    concurrency: int = 0


@dataclass
class MigrationResult:
    counts: dict
    verified: int
    failed: int
    not_done: int
    instances: int
    bytes: int | None
    elapsed: float
    capped_windows: list[str]
    refused_windows: list[str]
    report: Path | None = None
    markdown: Path | None = None
    fatal: str | None = None  # why the migration stopped before its end (None: it did not)

    @property
    def ok(self) -> bool:
        return (self.failed == 0 and self.not_done == 0 and not self.capped_windows and not self.refused_windows
                and self.fatal is None)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def _retry_pending(journal, max_attempts: int) -> float | None:
    """The earliest time a failed study may be retried (None: none is waiting)."""
    if hasattr(journal, "retry_pending"):
        return journal.retry_pending()
    times = [s.next_attempt_at for s in journal.studies(State.FAILED) if s.attempts < max_attempts]
    return min(times) if times else None


# --- the engine ---------------------------------------------------------------------------


class Engine:
    def __init__(self, config: MigrationConfig, journal, *, scu=None,
                 on_progress: Callable[[Progress], None] | None = None):
        from ..entity import Entity
        from ..scu import DICOMSCU

        self.config = config
        self.journal = journal
        self.journal.max_attempts = config.max_attempts
        t = config.timeout
        self.scu = scu or DICOMSCU(Entity(config.aet, "0.0.0.0", 0), max_pdu_length=config.pdu, connect_timeout=t,
                                   acse_timeout=t, dimse_timeout=t, network_timeout=max(t, 60.0))
        self.on_progress = on_progress
        self.progress = Progress()
        self.stop = threading.Event()
        self.limiter = AdaptiveLimiter(config.parallel)
        self.rate = RateLimit(config.rate_limit) if config.rate_limit else None
        self.schedule = Schedule(config.schedule) if config.schedule else None
        self.verify_at = config.verify_at if config.verify_at is not None else config.dest
        self._lock = threading.Lock()
        self._in_flight = 0
        self.ctx = TransferContext(self.scu, config.source, config.dest, config.mode, config.dest_ae,
                                   parallel=1, window=config.window, coerce=list(config.coerce),
                                   timeout=config.timeout)
        self.capped: list[str] = []
        self.refused: list[str] = []
        self.fatal: str | None = None  # why the migration stopped before its end
        self._transferring: set[str] = set()  # studies in a transfer now (their claims are renewed)
        self._local = threading.local()  # each worker's open C-FIND associations, by endpoint
        self._finders: list = []

    # --- progress ----------------------------------------------------------------------

    def _emit(self) -> None:
        if self.on_progress is not None:
            self.progress.concurrency = self.limiter.limit
            try:
                self.on_progress(self.progress)
            except Exception:  # a display must never stop a migration
                log.exception("progress display failed")

    def _refresh_totals(self) -> None:
        p = self.progress
        counts = self.journal.counts()
        p.studies_total = sum(counts.values())
        p.verified = counts[State.VERIFIED]
        final_failed = sum(1 for s in self.journal.studies(State.FAILED) if s.attempts >= self.config.max_attempts)
        p.failed = final_failed
        p.studies_done = p.verified + final_failed
        inst_total = inst_done = 0
        for s in self.journal.studies():
            inst_total += s.expected or 0
            if s.state is State.VERIFIED:
                inst_done += s.dest_count or 0
        p.instances_total, p.instances_done = inst_total, inst_done

    # --- steps -------------------------------------------------------------------------

    def check_source(self) -> None:
        """A C-ECHO to the source: an unreachable source is one clear error, not a failed study each."""
        from ..errors import AssociationRejected, NetworkError, NoAcceptedContext

        if is_folder(self.config.source):
            if not Path(self.config.source).is_dir():
                raise SourceUnreachable(f"{self.config.source}: no such folder")
            return
        last: Exception | None = None
        for attempt in range(3):
            try:
                self.scu.echo(self.config.source)
                return
            except NoAcceptedContext:
                return  # no Verification: the queries will tell
            except (AssociationRejected, NetworkError) as exc:
                last = exc
                if isinstance(exc, AssociationRejected) and getattr(exc, "result", 0) != 2:
                    break  # rejected for good
                if attempt < 2:
                    self.stop.wait(0.5 * 2 ** attempt)
        raise SourceUnreachable(f"{_endpoint_text(self.config.source)}: no association: {last}")

    def check_verify_at(self) -> None:
        """The place that counts what arrived answers an IMAGE-level C-FIND (a storage SCP
        such as storescp answers none: a folder must be given to count in)."""
        from ..errors import AssociationRejected, NetworkError, NoAcceptedContext
        from .verify import count_instances

        if is_folder(self.verify_at):
            return
        where = _endpoint_text(self.verify_at)
        try:
            count_instances(self.scu, self.verify_at, "2.25.0")
        except NoAcceptedContext:
            raise CannotVerify(f"{where} answers no C-FIND, so what arrives cannot be counted there: give "
                               "--verify-at FOLDER (the folder it stores into) or a Q/R node that indexes it",
                               True) from None
        except (AssociationRejected, NetworkError) as exc:
            raise CannotVerify(f"{where}: no association to count what arrives: {exc}", False) from None

    def inventory(self) -> None:
        from ..errors import AssociationRejected, NetworkError
        from .inventory import run_inventory

        self.progress.phase = "inventory"
        self._emit()
        if is_folder(self.config.source):
            if not self.journal.inventory_complete():
                from .verify import folder_index

                found = folder_index(self.config.source).studies()
                self.journal.add_studies(StudyRecord(uid, expected=len(paths)) for uid, paths in found.items())
                self.journal.mark_inventory_complete()
            return

        def on_window(key: str, n: int) -> None:
            self.progress.windows += 1
            self.progress.studies_total = sum(self.journal.counts().values())
            self._emit()

        try:
            res = run_inventory(self.scu, self.config.source, self.journal, date_from=self.config.date_from,
                                date_to=self.config.date_to, modality=self.config.modality, keys=self.config.keys,
                                max_results=self.config.max_results, on_window=on_window, stop=self.stop.is_set)
        except (AssociationRejected, NetworkError) as exc:
            raise SourceUnreachable(f"{_endpoint_text(self.config.source)}: no association: {exc}") from None
        self.capped, self.refused = res.capped, res.refused
        if not self.stop.is_set():
            self.journal.mark_inventory_complete()

    def finder(self, endpoint):
        """This worker's C-FIND association with ``endpoint`` (kept open between studies)."""
        if is_folder(endpoint):
            return None
        from .inventory import StudyFinder

        cache = getattr(self._local, "finders", None)
        if cache is None:
            cache = self._local.finders = {}
        key = _endpoint_text(endpoint)
        if key not in cache:
            cache[key] = StudyFinder(self.scu, endpoint)
            with self._lock:
                self._finders.append(cache[key])
        return cache[key]

    def context_for(self, study: StudyRecord) -> TransferContext:
        """The transfer context of one study: with a mapping file, its patient's coercions
        (the --set ones first, so they win where both set a tag)."""
        if self.config.coerce_map is None:
            return self.ctx
        given = {k for k, _ in self.ctx.coerce}
        extra = [(k, v) for k, v in self.config.coerce_map.for_patient(study.patient_id) if k not in given]
        return replace(self.ctx, coerce=list(self.ctx.coerce) + extra) if extra else self.ctx

    def expected_of(self, study: StudyRecord) -> tuple[int | None, list[SeriesRecord]]:
        """The source's count for a study that did not give NumberOfStudyRelatedInstances:
        from the series (NumberOfSeriesRelatedInstances), else from the instances."""
        from .verify import count_instances

        series: list[SeriesRecord] = []
        total = 0
        ident = {"StudyInstanceUID": study.study_uid, "SeriesInstanceUID": "", "NumberOfSeriesRelatedInstances": ""}
        for m in self.finder(self.config.source).find(ident, "SERIES"):
            uid = str(m.get("SeriesInstanceUID", "") or "")
            raw = str(m.get("NumberOfSeriesRelatedInstances", "") or "").strip()
            n = int(raw) if raw.isdigit() else None
            series.append(SeriesRecord(uid, study.study_uid, n))
        if series and all(s.expected is not None for s in series):
            total = sum(s.expected for s in series)  # type: ignore[misc]
            return total, series
        count = count_instances(self.scu, self.config.source, study.study_uid, self.finder(self.config.source))
        by_series = {s: len(sops) for s, sops in count.series.items()}
        return count.total, [SeriesRecord(uid, study.study_uid, by_series.get(uid)) for uid in
                             sorted(set(by_series) | {s.series_uid for s in series})]

    def process(self, study: StudyRecord) -> None:
        """Transfer, count and record one claimed study."""
        from ..errors import DicomError
        from .verify import Count, count_instances, recount, study_count

        cfg, journal, uid = self.config, self.journal, study.study_uid
        attempt_no = study.attempts + 1
        try:
            if study.expected is None and not is_folder(cfg.source):
                expected, series = self.expected_of(study)
                journal.set_expected(uid, expected, series)
                study.expected = expected
            with self._lock:
                self._transferring.add(uid)
            try:
                outcome = transfer_study(self.context_for(study), study)
            finally:
                with self._lock:
                    self._transferring.discard(uid)
        except DicomError as exc:
            outcome = outcome_of_error(exc)
        if outcome.status == 0xA801:
            # The source does not know the destination: no study can move; stop, and leave
            # the study's attempts as they were (fix the source's configuration, run again).
            dest_ae = self.ctx.dest_ae or self.ctx.dest.ae_title
            reason = f"{'; '.join(outcome.reasons)}: the source does not know {dest_ae}"
            journal.update(uid, State.FAILED, reason=reason, retry_at=0)
            self.fatal = reason
            self.stop.set()
            return
        if outcome.transient:
            self.limiter.refused(outcome.reasons[0] if outcome.reasons else "refused")
        if outcome.status is None and not outcome.completed and outcome.reasons and outcome.transient:
            self._failed(study, attempt_no, "; ".join(outcome.reasons), None, None)
            return
        journal.update(uid, State.TRANSFERRED, reason="; ".join(outcome.reasons) or None)
        # Counting: the source (what it holds now) and the destination (distinct instances).
        # First the counts each node keeps (one STUDY-level match each); where a node gives
        # none, or the destination's looks short, the instances themselves, then series by series.
        try:
            src = None
            source_count = study.expected
            if not is_folder(cfg.source):
                quick = study_count(self.scu, cfg.source, uid, self.finder(cfg.source))
                if quick is not None and quick > 0:
                    source_count = quick
                else:
                    src = count_instances(self.scu, cfg.source, uid, self.finder(cfg.source))
                    if src.total or not study.expected:
                        source_count = src.total  # else a source that answers no IMAGE-level query
            dst = None
            if not is_folder(self.verify_at) and source_count:
                quick = study_count(self.scu, self.verify_at, uid, self.finder(self.verify_at))
                if quick is not None and quick >= source_count:
                    dst = Count({}, None, total=quick)
            if dst is None:
                dst = count_instances(self.scu, self.verify_at, uid, self.finder(self.verify_at))
            if source_count is not None and dst.total < source_count:
                dst = recount(self.scu, self.verify_at, uid, self.finder(self.verify_at))
        except DicomError as exc:
            self._failed(study, attempt_no, f"counting failed: {type(exc).__name__}: {exc}", None, None)
            return
        dest_count = dst.total
        if source_count is None or dest_count >= source_count:
            journal.update(uid, State.VERIFIED, source_count=source_count, dest_count=dest_count, attempt=True)
            if src is not None and hasattr(journal, "update_series"):
                journal.update_series(uid, [SeriesRecord(s, uid, len(sops), State.VERIFIED, len(sops),
                                                         len(dst.series.get(s, ()))) for s, sops in src.series.items()])
            with self._lock:
                self.progress.verified += 1
                self.progress.studies_done += 1
                self.progress.instances_done += dest_count
                self.progress.bytes_done += dst.nbytes or 0
            self.limiter.done(dest_count)
            if self.rate is not None:
                self.rate.pay(outcome.completed or dest_count, dst.nbytes)
            self._emit()
            return
        reasons = list(outcome.reasons)
        missing = source_count - dest_count
        reasons.insert(0, f"short at the destination: {dest_count} of {source_count} instances ({missing} missing)")
        if outcome.failed_uids:
            shown = ", ".join(outcome.failed_uids[:5])
            more = f" and {len(outcome.failed_uids) - 5} more" if len(outcome.failed_uids) > 5 else ""
            reasons.append(f"refused: {shown}{more}")
        if self.rate is not None:
            self.rate.pay(outcome.completed, dst.nbytes)
        self._failed(study, attempt_no, "; ".join(reasons), source_count, dest_count)

    def _failed(self, study: StudyRecord, attempt_no: int, reason: str, source_count, dest_count) -> None:
        final = attempt_no >= self.config.max_attempts
        retry_at = None
        if not final:
            delay = min(MAX_BACKOFF, self.config.retry_delay * 2 ** (attempt_no - 1))
            retry_at = time.time() + delay * (0.75 + 0.5 * random.random())
        self.journal.update(study.study_uid, State.FAILED, reason=reason, source_count=source_count,
                            dest_count=dest_count, attempt=True, retry_at=retry_at)
        log.warning("study %s: attempt %d of %d: %s%s", study.study_uid, attempt_no, self.config.max_attempts,
                    reason, "" if final else " (retried)")
        if final:
            with self._lock:
                self.progress.failed += 1
                self.progress.studies_done += 1
        self._emit()

    def _worker(self, name: str) -> None:
        while not self.stop.is_set():
            if self.schedule is not None and not self.schedule.is_open():
                self.progress.phase = "waiting"
                self._emit()
                self.stop.wait(min(30.0, self.schedule.seconds_until_open()))
                continue
            if self.rate is not None:
                self.rate.wait(self.stop)
            if not self.limiter.acquire(self.stop):
                return
            claimed: list[StudyRecord] = []
            try:
                claimed = self.journal.claim(name, 1)
                if claimed:
                    self.progress.phase = "transfer"
                    with self._lock:
                        self._in_flight += 1
                    try:
                        self.process(claimed[0])
                    except Exception as exc:  # a defect, not the network: the study fails, the worker goes on
                        log.exception("study %s: unexpected error", claimed[0].study_uid)
                        self._failed(claimed[0], claimed[0].attempts + 1,
                                     f"internal error: {type(exc).__name__}: {exc}", None, None)
                    finally:
                        with self._lock:
                            self._in_flight -= 1
            finally:
                self.limiter.release()
            if not claimed:
                with self._lock:
                    busy = self._in_flight
                pending = _retry_pending(self.journal, self.config.max_attempts)
                if not busy and pending is None:
                    return
                self.stop.wait(0.2 if pending is None else max(0.05, min(1.0, pending - time.time())))

    def _renew_claims(self, done: threading.Event) -> None:
        """A long transfer keeps its claim: renewed well within the journal's lease (a
        journal shared by several hosts gives a study whose claim expired to another)."""
        lease = float(getattr(self.journal, "lease", 3600.0))
        every = max(1.0, min(60.0, lease / 3))
        while not done.wait(every):
            with self._lock:
                uids = list(self._transferring)
            for uid in uids:
                try:
                    self.journal.update(uid, State.TRANSFERRING)
                except Exception as exc:  # the next renewal tries again
                    log.warning("renewing the claim of %s: %s", uid, exc)

    def transfer(self) -> None:
        self._refresh_totals()
        self.progress.phase = "transfer"
        self._emit()
        threads = [threading.Thread(target=self._worker, args=(f"{os.getpid()}-{i}",), daemon=True,
                                    name=f"fastdimse-migrate-{i}") for i in range(max(1, self.config.parallel))]
        done = threading.Event()
        renewer = threading.Thread(target=self._renew_claims, args=(done,), daemon=True, name="fastdimse-migrate-lease")
        renewer.start()
        try:
            for t in threads:
                t.start()
            # The main thread stays free for Ctrl-C: it stops the workers after their study.
            while any(t.is_alive() for t in threads):
                time.sleep(0.2)
        except BaseException:
            # Ctrl-C: the workers end after the step they are in (every step is committed).
            self.stop.set()
            deadline = time.monotonic() + 10.0
            try:
                for t in threads:
                    t.join(max(0.0, deadline - time.monotonic()))
            except BaseException:  # a second Ctrl-C: leave now
                pass
            raise
        finally:
            done.set()
            with self._lock:
                finders, self._finders = self._finders, []
            for f in finders:
                f.close()

    def run(self) -> MigrationResult:
        started = time.time()
        self.check_source()
        self.check_verify_at()
        self.inventory()
        catcher = None
        if self.config.mode == "relay" and not is_folder(self.config.source):
            # relay.py owns the built-in catcher: our storage SCP, as our AE title, where the
            # source sends (it must know that AE title at this host and port).
            from .relay import Catcher

            catcher = self.ctx.catcher = Catcher().start(self.config.aet, self.config.catcher_host,
                                                         self.config.catcher_port, self.config.staging)
        try:
            if not self.stop.is_set():
                self.transfer()
        finally:
            if catcher is not None:
                catcher.stop()
        self._refresh_totals()
        self.progress.phase = "done"
        self._emit()
        return self.result(time.time() - started)

    def result(self, elapsed: float) -> MigrationResult:
        counts = self.journal.counts()
        verified = counts[State.VERIFIED]
        failed = sum(1 for s in self.journal.studies(State.FAILED) if s.attempts >= self.config.max_attempts)
        not_done = sum(counts.values()) - verified - failed
        return MigrationResult({s.value: n for s, n in counts.items()}, verified, failed, not_done,
                               self.progress.instances_done, self.progress.bytes_done or None, elapsed,
                               list(self.capped), list(self.refused), fatal=self.fatal)

