"""The engine of ``fastdimse bench``, usable from Python as well as from the command line.

>>> from fastdimse import Entity
>>> from fastdimse.cli.bench_engine import run_sweep
>>> sweep = run_sweep("echo", Entity("ANY-SCP", "127.0.0.1", 11112),
...                   concurrency=[1, 2, 4], duration=5.0)          # doctest: +SKIP
>>> sweep.saturation, sweep.levels[0].latency_ms                    # doctest: +SKIP

At each concurrency level N, N threads each run their own association(s) against the
node at once (the Rust core releases the GIL while it waits on the network). A level
ends after ``count`` operations in all (for echo, find and move shared among its
threads, so a fast association takes more of them; for store split evenly, since each
SCU reads its instances ahead) or once ``duration`` has passed.

What one operation is, and how its latency is measured (each response timed, with
``time.perf_counter``):

- ``echo``: one C-ECHO on an open association; latency = request sent to response read.
- ``find``: one C-FIND with the keys given, read to its final response; latency = request
  sent to the final response (all matches read and decoded).
- ``move``: one C-MOVE to the destination, to its final response; latency = request sent
  to the final response (every sub-operation done).
- ``store``: one C-STORE of one instance, sent by ``DICOMSCU.store`` (one call, with
  ``parallel=1``, per thread: one association each); latency = the interval between
  this instance's C-STORE-RSP and the previous one on the same association. With
  ``window=1`` (the default) the next instance is sent as soon as a response arrives,
  so this is each instance's full round trip: its data set sent and its response read.
  With a larger window that the peer grants, several are in flight and the interval is
  the time per instance at that depth. The first response of each association is
  counted but not timed (its interval would include the association set-up).

A level's time runs from its start to the end of its last thread, association set-up
(one per thread and level) and release included; the latencies do not include them.
Threads do not wait for each other: against a node that serves one association at a
time (dcmtk's storescp without ``--fork``) they take turns, and the sweep shows that.
Throughput counts the operations that succeeded; the failed ones are counted by status
in ``errors`` (DIMSE failure statuses as ``0xA700``, a C-STORE that was never sent as
``not sent``, an association that ended early as ``aborted``/``timeout``/``network``, a
thread that could not associate as ``rejected``/``no association``). If the node answered
nothing at a level because it could not be associated with, that association error is
raised (the command line exits 3).

The saturation point is the lowest level beyond which no level gains 5 % or more.
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import sop, uids
from ..entity import Entity
from ..errors import (AssociationAborted, AssociationRejected, DicomError, DicomTimeoutError, NetworkError,
                      NoAcceptedContext, QueryFailed)
from .bench_data import InstanceFactory, folder_files

__all__ = ["OPS", "LATENCY_DEFINITION", "LevelResult", "Sweep", "GrowStep", "Workload", "run_level",
           "run_sweep", "run_grow", "saturation_of", "latency_summary", "SATURATION_GAIN"]

OPS = ("echo", "store", "find", "move")
#: Throughput must grow by at least this much from one level to the next, else the
#: earlier level is the saturation point.
SATURATION_GAIN = 0.05
DEFAULT_SIZE = 4000

clock = time.perf_counter

#: What the latency of one operation is, per op (also in the JSON, as "latency").
LATENCY_DEFINITION = {
    "echo": "C-ECHO-RQ sent to C-ECHO-RSP read",
    "find": "C-FIND-RQ sent to the final C-FIND-RSP read (every match read and decoded)",
    "move": "C-MOVE-RQ sent to the final C-MOVE-RSP read (every sub-operation done)",
    "store": "C-STORE-RSP read to the previous C-STORE-RSP on the same association (with window 1: "
             "the instance's data set sent and its response read; the first of each association untimed)",
}


def latency_summary(seconds: list[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds (inclusive quantiles); None without samples."""
    if not seconds:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ms = [s * 1000.0 for s in seconds]
    if len(ms) == 1:
        q = [ms[0]] * 99
    else:
        q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(q[49], 3), "p95": round(q[94], 3), "p99": round(q[98], 3), "max": round(max(ms), 3)}


def status_key(status: int) -> str:
    return f"0x{status:04X}"


def _error_key(exc: BaseException) -> str:
    if isinstance(exc, AssociationRejected):
        return "rejected"
    if isinstance(exc, AssociationAborted):
        return "aborted"
    if isinstance(exc, DicomTimeoutError):
        return "timeout"
    if isinstance(exc, NetworkError):
        return "network"
    if isinstance(exc, NoAcceptedContext):
        return "no accepted context"
    return type(exc).__name__


@dataclass
class LevelResult:
    """What one concurrency level measured."""

    concurrency: int
    operations: int          # done: succeeded, or failed (with a status, or never sent)
    succeeded: int
    seconds: float
    bytes: int
    latencies: list[float] = field(repr=False, default_factory=list)  # seconds, one per timed response
    errors: dict[str, int] = field(default_factory=dict)
    matches: int = 0         # find: matches read; move: sub-operations completed

    @property
    def ops_per_s(self) -> float:
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    @property
    def latency_ms(self) -> dict[str, float | None]:
        return latency_summary(self.latencies)

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency, "operations": self.operations, "succeeded": self.succeeded,
            "seconds": round(self.seconds, 6), "ops_per_s": round(self.ops_per_s, 3),
            "mb_per_s": round(self.mb_per_s, 3), "bytes": self.bytes, "latency_ms": self.latency_ms,
            "timed_responses": len(self.latencies), "errors": dict(sorted(self.errors.items())),
            "matches": self.matches,
        }


def saturation_of(levels: list[LevelResult]) -> dict[str, Any]:
    """The lowest level beyond which no level gains 5 % or more in throughput.

    Every later level is compared, not only the next one, so one level that stalls
    (a noisy machine, a node that takes associations in turns) does not hide growth
    that comes after it. ``reached`` is False when that level is the last one (the
    throughput may still grow beyond the sweep)."""
    ordered = sorted(levels, key=lambda lv: lv.concurrency)
    for i, a in enumerate(ordered):
        if all(b.ops_per_s < a.ops_per_s * (1 + SATURATION_GAIN) for b in ordered[i + 1:]):
            return {"concurrency": a.concurrency, "ops_per_s": round(a.ops_per_s, 3),
                    "reached": i < len(ordered) - 1}
    raise ValueError("no levels")


# --- the shared state of one level -------------------------------------------------------


class _Recorder:
    """Counts and latencies of one level, filled by its threads."""

    def __init__(self, on_op: Callable[[int], None] | None):
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.operations = self.succeeded = self.bytes = self.matches = 0
        self.responses = 0  # operations the node answered (a C-STORE never sent is not one)
        self.connect_failures: list[BaseException] = []
        self.on_op = on_op

    def op(self, latency: float | None, ok: bool, error: str | None = None, nbytes: int = 0,
           matches: int = 0, answered: bool = True) -> None:
        with self.lock:
            self.operations += 1
            self.responses += answered
            if latency is not None:
                self.latencies.append(latency)
            if ok:
                self.succeeded += 1
                self.bytes += nbytes
            else:
                self.errors[error or "failed"] += 1
            self.matches += matches
        if self.on_op is not None:
            self.on_op(nbytes if ok else 0)

    def failed(self, exc: BaseException, *, connecting: bool) -> None:
        with self.lock:
            key = _error_key(exc)
            self.errors[("no association" if key in ("network", "timeout") else key) if connecting else key] += 1
            if connecting:
                self.connect_failures.append(exc)


class _Share:
    """How much work is left at a level: ``count`` operations in all, or until a deadline."""

    def __init__(self, count: int | None, duration: float | None, first: int = 0):
        self._left = count
        self._duration = duration
        self.deadline: float | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._taken = first  # numbers operations from here (a thread's part of the files)

    def start(self) -> None:
        if self._duration is not None:
            self.deadline = clock() + self._duration

    def stop(self) -> None:
        self._stopped = True

    def take(self) -> int | None:
        """The number of the next operation, or None when the level is done."""
        if self._stopped or (self.deadline is not None and clock() >= self.deadline):
            return None
        with self._lock:
            if self._left is not None:
                if self._left <= 0:
                    return None
                self._left -= 1
            self._taken += 1
            return self._taken - 1


# --- the workload -------------------------------------------------------------------------


@dataclass
class Workload:
    """What to run against which node (the options of ``fastdimse bench``)."""

    op: str
    remote: Entity
    aet: str = "FASTDIMSE"
    max_pdu: int = 16384
    timeout: float = 30.0
    window: int = 1
    files: list[str] | None = None                 # store: --data
    factory: InstanceFactory | None = None         # store: --generate
    keys: dict[str, str] = field(default_factory=dict)   # find / move identifier
    level: str = "STUDY"
    root: str = "study"
    destination: str | None = None                 # move
    tls: Any = None                                # a fastdimse.TLSConfig, or None: plaintext

    def scu(self):
        from .common import make_scu

        return make_scu(self.aet, self.max_pdu, self.timeout, tls=self.tls)


def _default_find_keys(level: str) -> dict[str, str]:
    return {"STUDY": {"StudyInstanceUID": "", "PatientID": "", "StudyDate": ""},
            "PATIENT": {"PatientID": "", "PatientName": ""},
            "SERIES": {"StudyInstanceUID": "", "SeriesInstanceUID": "", "Modality": ""},
            "IMAGE": {"StudyInstanceUID": "", "SeriesInstanceUID": "", "SOPInstanceUID": ""}}[level]


def _dimse_worker(w: Workload, share: _Share, rec: _Recorder) -> None:
    """echo / find / move: associate, then operate until the level is done."""
    from .. import association as ops

    assoc = None
    try:
        scu = w.scu()
        if w.op == "echo":
            assoc = scu.associate(w.remote)
        else:
            ctx = [(sop.sop_class_for(w.root, w.op), list(uids.DEFAULT_TRANSFER_SYNTAXES))]
            assoc = scu.associate(w.remote, contexts=ctx)
            if not any(c.abstract_syntax == ctx[0][0] for c in assoc.accepted_contexts):
                assoc.release()
                assoc = None
                raise NoAcceptedContext(f"{w.remote.ae_title} accepted no context for C-{w.op.upper()}")
    except DicomError as exc:
        rec.failed(exc, connecting=True)
    if assoc is None:
        return
    keys = w.keys or _default_find_keys(w.level)
    try:
        while share.take() is not None:
            t0 = clock()
            if w.op == "echo":
                status = assoc.echo().status
                rec.op(clock() - t0, status == 0, status_key(status))
            elif w.op == "find":
                n = 0
                try:
                    for _ in ops.find(assoc, keys, w.level, w.root):
                        n += 1
                except QueryFailed as exc:
                    rec.op(clock() - t0, False, status_key(exc.status))
                else:
                    rec.op(clock() - t0, True, matches=n)
            else:
                rsp = ops.move(assoc, w.keys, w.destination or "", w.level, w.root)
                rec.op(clock() - t0, rsp.status == 0, status_key(rsp.status), matches=rsp.completed)
        assoc.release()
    except DicomError as exc:
        rec.failed(exc, connecting=False)
        try:
            assoc.abort()
        except DicomError:
            pass


def _store_worker(w: Workload, share: _Share, rec: _Recorder) -> None:
    """store: one DICOMSCU.store call (one association) over the instances this thread takes."""
    last: list[float | None] = [None]
    factory = w.factory

    def items() -> Iterable[str]:
        if factory is not None:
            study, series = factory.new_stream()
            while share.take() is not None:
                yield factory.write(study, series)
        else:
            files = w.files or []
            while (i := share.take()) is not None:
                yield files[i % len(files)]

    def on_result(r) -> None:
        now = clock()
        prev, last[0] = last[0], now
        latency = None if prev is None else now - prev
        if r.status is None:
            rec.op(latency, False, "not sent", answered=False)
        else:
            rec.op(latency, r.is_success, status_key(r.status), nbytes=r.bytes)
        if factory is not None:
            factory.discard(r.path)

    try:
        w.scu().store(w.remote, items(), parallel=1, window=w.window, results="summary",
                      on_progress=on_result, lookahead=max(4, 2 * w.window))
    except DicomError as exc:
        rec.failed(exc, connecting=True)


def run_level(w: Workload, concurrency: int, *, count: int | None = None, duration: float | None = None,
              on_op: Callable[[int], None] | None = None) -> LevelResult:
    """Run ``w`` at one concurrency level; raises the association error when no thread
    could associate at all."""
    if (count is None) == (duration is None):
        raise ValueError("give either count or duration")
    rec = _Recorder(on_op)
    target = _store_worker if w.op == "store" else _dimse_worker
    if w.op == "store" and count is not None:
        # The SCU reads its instances ahead of the sending: from one shared count the
        # first thread would take most of a small one. Each thread gets its part.
        parts = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
        shares = [_Share(n, None, first=sum(parts[:i])) for i, n in enumerate(parts)]
    else:
        shares = [_Share(count, duration)] * concurrency
    threads = [threading.Thread(target=target, args=(w, shares[i], rec), daemon=True,
                                name=f"fastdimse-bench-{w.op}-{i}") for i in range(concurrency)]
    for share in set(shares):
        share.start()
    t0 = clock()
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
        seconds = clock() - t0
    except BaseException:
        for share in shares:
            share.stop()
        raise
    if rec.responses == 0 and rec.connect_failures:
        raise rec.connect_failures[0]  # the node answered nothing, and could not be reached
    return LevelResult(concurrency=concurrency, operations=rec.operations, succeeded=rec.succeeded,
                       seconds=seconds, bytes=rec.bytes, latencies=rec.latencies,
                       errors=dict(rec.errors), matches=rec.matches)


@dataclass
class Sweep:
    """The result of :func:`run_sweep`."""

    op: str
    peer: str
    levels: list[LevelResult]
    window: int
    count: int | None
    duration: float | None

    @property
    def saturation(self) -> dict[str, Any]:
        return saturation_of(self.levels)

    @property
    def errors(self) -> int:
        return sum(sum(lv.errors.values()) for lv in self.levels)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "peer": self.peer, "window": self.window, "count": self.count,
                "duration": self.duration, "latency": LATENCY_DEFINITION[self.op],
                "levels": [lv.to_json() for lv in self.levels], "saturation": self.saturation}


def _peer_text(remote: Entity) -> str:
    return f"{remote.ae_title}@{remote.ip_address}:{remote.port}"


def make_workload(op: str, remote: Entity, *, data: str | None = None, generate: int | None = None,
                  size: int = DEFAULT_SIZE, **kwargs) -> tuple[Workload, int | None]:
    """The Workload for ``op`` and the default count per level its data gives (the
    number of files of ``data``, or ``generate``). The caller closes ``w.factory``."""
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, not {op!r}")
    w = Workload(op, remote, **kwargs)
    default_count = None
    if op == "store":
        if data is not None:
            w.files = folder_files(data)
            default_count = len(w.files)
        else:
            w.factory = InstanceFactory(size)
            default_count = generate
    if op == "move" and not w.destination:
        raise ValueError("C-MOVE needs a destination AE title")
    return w, default_count


def run_sweep(op: str, remote: Entity, *, concurrency: Iterable[int] = (1, 2, 4, 8), count: int | None = None,
              duration: float | None = None, data: str | None = None, generate: int | None = None,
              size: int = DEFAULT_SIZE, on_op: Callable[[int], None] | None = None,
              on_level: Callable[[LevelResult], None] | None = None, **workload) -> Sweep:
    """Run ``op`` ("echo", "store", "find", "move") against ``remote`` at each level of
    ``concurrency``, each level ``count`` operations or ``duration`` seconds long.

    Store sends the files of ``data`` (a folder), or ``generate`` instances of ``size``
    bytes with fresh UIDs each (also the default count per level). Other keyword
    arguments go to :class:`Workload` (``aet``, ``max_pdu``, ``timeout``, ``window``,
    ``keys``, ``level``, ``root``, ``destination``). ``on_op(bytes)`` sees each
    successful operation, ``on_level(result)`` each finished level.
    """
    w, default_count = make_workload(op, remote, data=data, generate=generate, size=size, **workload)
    try:
        if count is None and duration is None:
            count = default_count
            if count is None:
                duration = 10.0
        levels = []
        for n in concurrency:
            result = run_level(w, n, count=count, duration=duration, on_op=on_op)
            levels.append(result)
            if on_level is not None:
                on_level(result)
        return Sweep(op, _peer_text(remote), levels, w.window, count, duration)
    finally:
        if w.factory is not None:
            w.factory.close()


@dataclass
class GrowStep:
    """One step of :func:`run_grow`: the archive after a batch, and its query latency."""

    step: int
    archive_instances: int          # stored by this run so far
    stored: int
    store_errors: dict[str, int]
    queries: LevelResult

    def to_json(self) -> dict[str, Any]:
        q = self.queries
        return {"step": self.step, "archive_instances": self.archive_instances, "stored": self.stored,
                "store_errors": dict(sorted(self.store_errors.items())), "queries": q.operations,
                "seconds": round(q.seconds, 6), "ops_per_s": round(q.ops_per_s, 3),
                "latency_ms": q.latency_ms, "errors": dict(sorted(q.errors.items())),
                "matches_per_query": round(q.matches / q.operations, 3) if q.operations else None}


def run_grow(remote: Entity, *, steps: int, batch: int, queries: int = 20, concurrency: int = 1,
             size: int = DEFAULT_SIZE, on_step: Callable[[GrowStep], None] | None = None,
             **workload) -> list[GrowStep]:
    """C-FIND latency as the node's archive grows: ``steps`` times, store ``batch`` fresh
    instances (one association), then time ``queries`` C-FINDs (the ``keys`` given, default
    a study-level match-all) at ``concurrency``."""
    store_kwargs = {k: v for k, v in workload.items() if k in ("aet", "max_pdu", "timeout", "window", "tls")}
    find_kwargs = {k: v for k, v in workload.items() if k != "window"}
    store_w, _ = make_workload("store", remote, generate=batch, size=size, **store_kwargs)
    find_w, _ = make_workload("find", remote, **find_kwargs)
    rows: list[GrowStep] = []
    total = 0
    try:
        for step in range(1, steps + 1):
            stored = run_level(store_w, 1, count=batch)
            total += stored.succeeded
            row = GrowStep(step, total, stored.succeeded, stored.errors,
                           run_level(find_w, concurrency, count=queries))
            rows.append(row)
            if on_step is not None:
                on_step(row)
        return rows
    finally:
        if store_w.factory is not None:
            store_w.factory.close()
