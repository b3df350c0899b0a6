"""A Q/R SCP on pynetdicom that behaves like the PACS migrations meet: a C-FIND cap,
a C-MOVE that lies, refusals under load.

Usage::

    python -m tests.support.capped_qrscp STORAGE_DIR PORT [--ae AE] [--max-results N]
        [--lying-move K [--lie-times T]] [--known AE=host:port ...] [--refuse-every M]

It serves, from the DICOM files under STORAGE_DIR (read once at start, recursively),
on 127.0.0.1:PORT with AE title ``--ae`` (default ``CAPPED``):

* **C-FIND**, Patient Root and Study Root, levels PATIENT (patient root), STUDY, SERIES
  and IMAGE. Matching follows PS3.4 C.2.2.2: universal (empty key), single value,
  wild cards ``*`` and ``?``, UID lists (``\\``), ranges for dates and times
  (``A-B``, ``-B``, ``A-``; StudyDate, StudyTime, PatientBirthDate, SeriesDate), and
  empty-value matching (a key of ``""`` matches entities that have no value, for
  example studies without a StudyDate). A key of a level above the query level
  restricts the answer; keys below it are returned empty. ``ModalitiesInStudy`` matches
  a study when one of its series' Modality does. Returned on request:
  NumberOfStudyRelatedInstances, NumberOfStudyRelatedSeries,
  NumberOfSeriesRelatedInstances, NumberOfPatientRelatedStudies / Series / Instances,
  ModalitiesInStudy, and every attribute of the files. Matches are answered in order of
  StudyDate, then UID.
* ``--max-results N``: at most N pending answers per C-FIND, then a plain Success, as real
  PACS with a cap do: nothing says the answer was cut.
* ``--refuse-every M``: every M-th C-FIND (counted over all associations, the first is
  1) is answered 0xA700 (out of resources) with no match.
* **C-MOVE** to the AE titles given with ``--known AE=host:port`` (0xA801 for others)
  and **C-GET**, of the instances the identifier selects (same matching).
* ``--lying-move K``: a C-MOVE answers Success with full counts (every sub-operation
  "completed") while the K instances of each study with the highest SOPInstanceUID are
  not sent. ``--lie-times T``: only the first T C-MOVEs that include a study lie about
  it (0, the default: every one), so a retry can succeed.

Tests start it with :func:`start_capped_qrscp` (a ``tests.support.peers.Peer``, stopped
by pid with ``peer.stop()``). It logs one line per request on stdout
(``find #3 STUDY: 12 matches, answered 10``,
``move #1 -> DEST: 7 of 9 sent, 2 skipped``, ``skipped <SOP UID>``). Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
import signal
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import pydicom
from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_context, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (PatientRootQueryRetrieveInformationModelFind,
                                  PatientRootQueryRetrieveInformationModelGet,
                                  PatientRootQueryRetrieveInformationModelMove,
                                  StudyRootQueryRetrieveInformationModelFind,
                                  StudyRootQueryRetrieveInformationModelGet,
                                  StudyRootQueryRetrieveInformationModelMove, Verification)

HOST = "127.0.0.1"
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
          "IMAGE": "SOPInstanceUID"}
_PATIENT_KEYS = {"PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                 "IssuerOfPatientID", "OtherPatientIDs", "PatientBirthTime"}
_STUDY_KEYS = {"StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
               "StudyDescription", "ReferringPhysicianName", "ModalitiesInStudy",
               "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"}
_SERIES_KEYS = {"SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                "SeriesDate", "SeriesTime", "BodyPartExamined", "NumberOfSeriesRelatedInstances"}
_PATIENT_COUNTS = {"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                   "NumberOfPatientRelatedInstances"}
_DERIVED = ({"ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
             "NumberOfSeriesRelatedInstances"} | _PATIENT_COUNTS)
_RANGE_VRS = {"DA", "TM", "DT"}
_NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}
SUCCESS, PENDING, OUT_OF_RESOURCES = 0x0000, 0xFF00, 0xA700
UNKNOWN_DESTINATION, IDENTIFIER_ERROR = 0xA801, 0xA900

log = logging.getLogger("capped_qrscp")


def level_of(keyword: str, root: str) -> str:
    """The Q/R level an attribute belongs to (patient attributes are study level in the
    study root)."""
    if keyword in _PATIENT_KEYS or keyword in _PATIENT_COUNTS:
        return "PATIENT" if root == "patient" else "STUDY"
    if keyword in _STUDY_KEYS:
        return "STUDY"
    if keyword in _SERIES_KEYS:
        return "SERIES"
    return "IMAGE"


@dataclass
class Record:
    """One instance: its header attributes (no pixel data) and its file."""

    path: Path
    header: Dataset

    def text(self, keyword: str) -> str:
        value = self.header.get(keyword, "")
        if value is None:
            return ""
        if isinstance(value, pydicom.multival.MultiValue):
            return "\\".join(str(v) for v in value)
        return str(value)


def load(storage: Path) -> list[Record]:
    out = []
    for path in sorted(p for p in storage.rglob("*") if p.is_file()):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not a DICOM file: not served
            continue
        if "SOPInstanceUID" in header and "StudyInstanceUID" in header:
            out.append(Record(path, header))
    return out


# --- matching (PS3.4 C.2.2.2) ---------------------------------------------------------


def _vr(keyword: str) -> str:
    try:
        return pydicom.datadict.dictionary_VR(keyword)
    except KeyError:
        return "LO"


def value_matches(key: str, value: str, vr: str) -> bool:
    """Does an entity's ``value`` match the query ``key`` (not universal)?"""
    if key == '""':  # empty-value matching
        return value == ""
    if value == "":
        return False
    values = value.split("\\")
    if vr == "UI":
        wanted = set(key.split("\\"))
        return any(v in wanted for v in values)
    if vr in _RANGE_VRS and "-" in key:
        low, high = key.split("-", 1)
        low, high = low.strip(), high.strip()
        return any((not low or v >= low) and (not high or v[:len(high)] <= high)
                   for v in values)
    if "*" in key or "?" in key:
        pattern = re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                                     for c in key), re.DOTALL)
        return any(pattern.fullmatch(v) for v in values)
    return any(v == key for v in values)


@dataclass
class Query:
    level: str
    root: str
    keys: dict[str, str] = field(default_factory=dict)  # keyword -> query value (all asked)


def parse_query(identifier: Dataset, root: str) -> Query:
    level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    if level not in LEVELS or (level == "PATIENT" and root != "patient"):
        raise ValueError(f"QueryRetrieveLevel {level!r} is not valid for the {root} root")
    keys = {}
    for elem in identifier:
        if elem.keyword and elem.keyword not in _NOT_KEYS and elem.VR != "SQ":
            value = elem.value
            if isinstance(value, pydicom.multival.MultiValue):
                value = "\\".join(str(v) for v in value)
            keys[elem.keyword] = "" if value is None else str(value).strip()
    return Query(level, root, keys)


def select(records: Iterable[Record], query: Query) -> list[Record]:
    """The instances whose entities at and above the query level match every key."""
    depth = LEVELS.index(query.level)
    tests = [(kw, v, _vr(kw)) for kw, v in query.keys.items()
             if v and kw not in _DERIVED and LEVELS.index(level_of(kw, query.root)) <= depth]
    chosen = [r for r in records if all(value_matches(v, r.text(kw), vr) for kw, v, vr in tests)]
    modalities = query.keys.get("ModalitiesInStudy", "")
    if modalities and depth >= 1:
        studies = defaultdict(set)
        for r in records:
            studies[r.text("StudyInstanceUID")].add(r.text("Modality"))
        chosen = [r for r in chosen if any(value_matches(modalities, m, "CS")
                                           for m in studies[r.text("StudyInstanceUID")])]
    return chosen


def group(records: Iterable[Record], level: str) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        out[r.text(UNIQUE[level])].append(r)
    return out


class Archive:
    """The files served, and the answers to queries on them."""

    def __init__(self, records: list[Record]):
        self.records = records
        self.by_study = group(records, "STUDY")
        self.by_series = group(records, "SERIES")
        self.by_patient = group(records, "PATIENT")

    def find(self, query: Query) -> list[Dataset]:
        matches = group(select(self.records, query), query.level)
        ordered = sorted(matches.items(), key=lambda kv: (kv[1][0].text("StudyDate"), kv[0]))
        return [self.answer(query, members[0]) for _, members in ordered]

    def answer(self, query: Query, rep: Record) -> Dataset:
        depth = LEVELS.index(query.level)
        ds = Dataset()
        ds.QueryRetrieveLevel = query.level
        if "SpecificCharacterSet" in rep.header:
            ds.SpecificCharacterSet = rep.header.SpecificCharacterSet
        top = 0 if query.root == "patient" else 1
        wanted = list(query.keys) + [UNIQUE[lv] for lv in LEVELS[top:depth + 1]]
        for kw in wanted:
            if kw in _DERIVED:
                value = self.derived(kw, rep)
            elif LEVELS.index(level_of(kw, query.root)) <= depth:
                value = rep.header.get(kw, "")
            else:
                value = ""
            setattr(ds, kw, value)
        return ds

    def derived(self, keyword: str, rep: Record) -> object:
        study = self.by_study[rep.text("StudyInstanceUID")]
        patient = self.by_patient[rep.text("PatientID")]
        if keyword == "ModalitiesInStudy":
            return sorted({r.text("Modality") for r in study if r.text("Modality")})
        if keyword == "NumberOfStudyRelatedSeries":
            return str(len({r.text("SeriesInstanceUID") for r in study}))
        if keyword == "NumberOfStudyRelatedInstances":
            return str(len(study))
        if keyword == "NumberOfSeriesRelatedInstances":
            return str(len(self.by_series[rep.text("SeriesInstanceUID")]))
        if keyword == "NumberOfPatientRelatedStudies":
            return str(len({r.text("StudyInstanceUID") for r in patient}))
        if keyword == "NumberOfPatientRelatedSeries":
            return str(len({r.text("SeriesInstanceUID") for r in patient}))
        return str(len(patient))


# --- the SCP --------------------------------------------------------------------------

_ROOTS = {
    PatientRootQueryRetrieveInformationModelFind: "patient",
    PatientRootQueryRetrieveInformationModelMove: "patient",
    PatientRootQueryRetrieveInformationModelGet: "patient",
    StudyRootQueryRetrieveInformationModelFind: "study",
    StudyRootQueryRetrieveInformationModelMove: "study",
    StudyRootQueryRetrieveInformationModelGet: "study",
}

_original_send_c_store = Association.send_c_store


def _send_c_store(self, dataset, *args, **kwargs):
    """The lying C-MOVE's sub-operation: a dataset marked as skipped is not sent and
    "succeeds" (only datasets this SCP marks; everything else goes to pynetdicom)."""
    if getattr(dataset, "_capped_skip", False):
        status = Dataset()
        status.Status = SUCCESS
        return status
    return _original_send_c_store(self, dataset, *args, **kwargs)


Association.send_c_store = _send_c_store  # type: ignore[method-assign]


@dataclass
class CappedSCP:
    """The event handlers, with the command line's options and the request counters."""

    archive: Archive
    max_results: int | None = None
    refuse_every: int | None = None
    lying_move: int = 0
    lie_times: int = 0
    known: dict[str, tuple[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _finds: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _moves: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _lies: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def _root(self, event) -> str:
        return _ROOTS.get(str(event.request.AffectedSOPClassUID), "study")

    def on_find(self, event) -> Iterator[tuple[int, Dataset | None]]:
        with self._lock:
            n = next(self._finds)
        if self.refuse_every and n % self.refuse_every == 0:
            print(f"find #{n}: refused 0xA700", flush=True)
            yield OUT_OF_RESOURCES, None
            return
        try:
            query = parse_query(event.identifier, self._root(event))
        except ValueError as exc:
            print(f"find #{n}: {exc}", flush=True)
            yield IDENTIFIER_ERROR, None
            return
        answers = self.archive.find(query)
        shown = answers if self.max_results is None else answers[:self.max_results]
        print(f"find #{n} {query.level}: {len(answers)} matches, answered {len(shown)}", flush=True)
        for ds in shown:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield PENDING, ds

    def _selected(self, event) -> list[Record] | None:
        try:
            query = parse_query(event.identifier, self._root(event))
        except ValueError:
            return None
        return sorted(select(self.archive.records, query), key=lambda r: (
            r.text("StudyInstanceUID"), r.text("SOPInstanceUID")))

    def _contexts(self, records: list[Record]) -> list:
        pairs = sorted({(r.header.file_meta.MediaStorageSOPClassUID,
                         r.header.file_meta.TransferSyntaxUID) for r in records})
        return [build_context(sop, ts) for sop, ts in pairs][:128] or [build_context(Verification)]

    def on_move(self, event):
        n = next(self._moves)
        dest = str(event.move_destination).strip()
        if dest not in self.known:
            print(f"move #{n} -> {dest}: unknown destination", flush=True)
            yield None, None
            return
        records = self._selected(event)
        host, port = self.known[dest]
        yield host, port, {"contexts": self._contexts(records or [])}
        if records is None:  # one sub-operation announced, so that the failure is sent
            yield 1
            yield IDENTIFIER_ERROR, None
            return
        skip = self._skipped(records)
        yield len(records)
        for r in records:
            ds = pydicom.dcmread(r.path)
            if r.text("SOPInstanceUID") in skip:
                ds._capped_skip = True
                print(f"skipped {r.text('SOPInstanceUID')}", flush=True)
            yield PENDING, ds
        print(f"move #{n} -> {dest}: {len(records) - len(skip)} of {len(records)} sent, "
              f"{len(skip)} skipped", flush=True)

    def _skipped(self, records: list[Record]) -> set[str]:
        if not self.lying_move:
            return set()
        skip: set[str] = set()
        for study, members in group(records, "STUDY").items():
            with self._lock:
                self._lies[study] += 1
                lie = not self.lie_times or self._lies[study] <= self.lie_times
            if lie:
                uids = sorted(r.text("SOPInstanceUID") for r in members)
                skip.update(uids[max(0, len(uids) - self.lying_move):])
        return skip

    def on_get(self, event):
        records = self._selected(event)
        if records is None:
            yield 0
            yield IDENTIFIER_ERROR, None
            return
        yield len(records)
        for r in records:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield PENDING, pydicom.dcmread(r.path)
        print(f"get: {len(records)} sent", flush=True)


def parse_known(values: list[str]) -> dict[str, tuple[str, int]]:
    out = {}
    for item in values:
        m = re.fullmatch(r"([^=]{1,16})=([^:]+):(\d+)", item)
        if not m:
            raise SystemExit(f"capped_qrscp: --known wants AE=host:port, not {item!r}")
        out[m.group(1)] = (m.group(2), int(m.group(3)))
    return out


def start_capped_qrscp(log_dir: Path, storage: Path, *, ae_title: str = "CAPPED",
                       max_results: int | None = None, lying_move: int = 0, lie_times: int = 0,
                       known: dict[str, tuple[str, int]] | None = None,
                       refuse_every: int | None = None, port: int | None = None):
    """Start this peer on a free port (or ``port``) and wait until it answers; returns
    the ``Peer`` (the caller stops it)."""
    from tests.support.peers import PYTHON, free_port, start_process

    port = free_port() if port is None else port
    argv = [PYTHON, "-m", "tests.support.capped_qrscp", str(storage), str(port), "--ae", ae_title]
    if max_results is not None:
        argv += ["--max-results", str(max_results)]
    if refuse_every is not None:
        argv += ["--refuse-every", str(refuse_every)]
    if lying_move:
        argv += ["--lying-move", str(lying_move), "--lie-times", str(lie_times)]
    for ae, (host, p) in (known or {}).items():
        argv += ["--known", f"{ae}={host}:{p}"]
    return start_process(argv, port=port, log_dir=log_dir, name=f"capped-qrscp-{port}",
                         ae_title=ae_title, cwd=Path(__file__).resolve().parents[2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.capped_qrscp",
                                     description="A Q/R SCP with a C-FIND cap (module doc).")
    parser.add_argument("storage", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--ae", default="CAPPED")
    parser.add_argument("--max-results", type=int, default=None)
    parser.add_argument("--lying-move", type=int, default=0, metavar="K")
    parser.add_argument("--lie-times", type=int, default=0, metavar="T")
    parser.add_argument("--known", action="extend", nargs="+", default=[], metavar="AE=host:port")
    parser.add_argument("--refuse-every", type=int, default=None, metavar="M")
    args = parser.parse_args(argv)
    if not args.storage.is_dir():
        parser.error(f"{args.storage} is not a folder")
    for name in ("max_results", "refuse_every"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    if args.lying_move < 0 or args.lie_times < 0:
        parser.error("--lying-move and --lie-times must be 0 or more")

    logging.basicConfig(level=logging.WARNING, stream=sys.stdout,
                        format="%(levelname)s %(name)s: %(message)s")
    archive = Archive(load(args.storage))
    scp = CappedSCP(archive, max_results=args.max_results, refuse_every=args.refuse_every,
                    lying_move=args.lying_move, lie_times=args.lie_times,
                    known=parse_known(args.known))

    ae = AE(ae_title=args.ae)
    ae.add_supported_context(Verification)
    for sop_class in _ROOTS:
        ae.add_supported_context(sop_class)
    for cx in StoragePresentationContexts:  # C-GET: we are the storage SCU (SCP role)
        ae.add_supported_context(cx.abstract_syntax, scp_role=True, scu_role=False)
    ae.acse_timeout = 10
    ae.dimse_timeout = 30
    ae.network_timeout = 30
    ae.maximum_associations = 16

    # SIGTERM (how the tests stop it) ends the blocking server loop, and the process.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    print(f"capped_qrscp: {args.ae} on {HOST}:{args.port}, {len(archive.records)} instances "
          f"in {len(archive.by_study)} studies, max_results={args.max_results} "
          f"lying_move={args.lying_move} refuse_every={args.refuse_every} pid={os.getpid()}",
          flush=True)
    ae.start_server((HOST, args.port), block=True, evt_handlers=[
        (evt.EVT_C_FIND, scp.on_find), (evt.EVT_C_MOVE, scp.on_move),
        (evt.EVT_C_GET, scp.on_get)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
