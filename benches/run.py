"""`make bench`: C-STORE, C-ECHO, C-FIND and C-MOVE benchmarks of fastdimse against dcmtk
and pynetdicom.

    python -m benches.run [--quick] [--sets a,b,c] [--cases dcmtk,pynetdicom,fastdimse,floor]
                          [--repeat N] [--echo-n N] [--no-echo] [--no-qr] [--out FILE]
                          [--cache-dir DIR] [--clean-cache]

Runs every case on the same generated data (benches/datagen.py), prints one Markdown
table to stdout and writes it, with the conditions of the run, to benches/results.md
(benches/results-quick.md with --quick). Progress goes to stderr.

A case is a function ``(DataSet, RunConfig) -> Result``. It raises ``NotAvailable`` when
the implementation under test lacks the API (the row then reads "n/a (not
implemented)") and ``CaseFailed`` when a peer failed or not every instance arrived (the
row reads "failed: ..."). No row ever shows a figure that was not measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent

from benches import datagen, qr
from benches.datagen import DataSet
from benches.harness import (RSS_METHOD, Child, ChildFailed, count_files, free_port, log,
                     scratch_dir, wait_listening)

PY = sys.executable
WORKERS = str(HERE / "workers.py")
PDU = "131072"
DCMTK_ENV = {"TCP_NODELAY": "1"}
# dcmtk as users run it: without TCP_NODELAY=1 it keeps Nagle's algorithm on.
DCMTK_DEFAULT_ENV: dict[str, str | None] = {"TCP_NODELAY": None}
# The machine's floor (rust/examples/rawcopy.rs), built by `make bench`.
RAWCOPY = HERE.parent / "target" / "release" / "examples" / "rawcopy"
UNAVAILABLE = 3  # exit status of a worker whose API is missing


class NotAvailable(Exception):
    """The implementation under test does not have this API (yet)."""


class CaseFailed(Exception):
    """A peer failed, timed out, or not every instance arrived."""


@dataclass
class RunConfig:
    quick: bool
    timeout: float
    echo_n: int
    echo_n_pynetdicom: int
    sets: dict = field(default_factory=dict)   # key -> DataSet
    qr_root: Path | None = None                # cached Q/R archives
    memo: dict = field(default_factory=dict)


@dataclass
class Result:
    wall_s: float          # what the rate is computed from (see README: per case)
    count: int             # instances (or echoes)
    dataset_bytes: int     # 0 for echo
    sender_rss_kb: int | None
    receiver_rss_kb: int | None
    same_process: bool = False  # sender and receiver in one process (one RSS figure)
    note: str = ""
    unit: str = "instances"     # what count and rate count: instances, echoes, matches

    @property
    def rate(self) -> float:
        return self.count / self.wall_s if self.wall_s > 0 else float("inf")


# ------------------------------------------------------------------------ helpers

def _worker_json(child: Child) -> dict:
    for line in reversed(child.output().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {}


def _check_worker(child: Child, rc: int) -> dict:
    doc = _worker_json(child)
    if child.timed_out:
        raise CaseFailed(f"{child.name} timed out")
    if rc == UNAVAILABLE or "unavailable" in doc:
        raise NotAvailable(doc.get("unavailable", "unavailable"))
    if rc != 0 or "error" in doc:
        raise CaseFailed(f"{child.name} exited {rc}: {doc.get('error') or child.tail(5)}")
    return doc


def _start_server(argv: list[str], name: str, port: int, env: dict | None = None) -> Child:
    srv = Child(argv, name=name, env=env)
    try:
        wait_listening(port, srv, timeout=30)
    except ChildFailed:
        srv.stop()
        doc = _worker_json(srv)
        if srv.returncode == UNAVAILABLE or "unavailable" in doc:
            raise NotAvailable(doc.get("unavailable", "unavailable")) from None
        raise
    return srv


def storescp_argv(port: int, out: str) -> list[str]:
    # +B: bit-preserving, the received data set is streamed straight to its file
    # (storescp's fastest path, and what fastdimse's SCP does too).
    return ["storescp", "-aet", "DCMSCP", "-pdu", PDU, "+B", "-od", out, str(port)]


def storescu_argv(port: int, directory: str) -> list[str]:
    # +sd +r: every file of the directory, in ONE association; -R: propose only the
    # SOP classes/transfer syntaxes the files need; -nh: do not stop at a failure
    # (the harness counts what arrived).
    return ["storescu", "-aet", "STORESCU", "-aec", "{called}", "-pdu", PDU, "-R", "-nh",
            "+sd", "+r", "127.0.0.1", str(port), directory]


def fastdimse_scp_argv(port: int, out: str | None, aet: str = "FDSCP",
                       known: list[str] = (), plain: bool = False) -> list[str]:
    """A fastdimse SCP worker; `plain`: storage only (no Q/R index), like storescp."""
    argv = [PY, WORKERS, "fastdimse-scp", "--port", str(port), "--aet", aet]
    argv += ["--plain"] if plain else []
    argv += [x for k in known for x in ("--known", k)]
    return argv + (["--out", out] if out else [])


def _expect_all(ds: DataSet, out: str, suffix: str | None = None) -> None:
    """Every instance arrived: as many files as sent, holding at least the data set bytes."""
    got = count_files(out, suffix)
    if got != ds.files:
        raise CaseFailed(f"{got} of {ds.files} instances arrived")
    size = sum(os.path.getsize(os.path.join(root, f)) for root, _d, files in os.walk(out)
               for f in files if suffix is None or f.endswith(suffix))
    if size < ds.dataset_bytes:
        raise CaseFailed(f"received files hold {size} bytes, fewer than the {ds.dataset_bytes} sent")


def _storescu(port: int, ds: DataSet, called: str, cfg: RunConfig, env=DCMTK_ENV) -> Child:
    argv = [a.replace("{called}", called) for a in storescu_argv(port, ds.directory)]
    scu = Child(argv, name="storescu", env=env)
    rc = scu.wait(cfg.timeout)
    if scu.timed_out:
        raise CaseFailed(f"storescu timed out after {cfg.timeout:.0f} s")
    if rc != 0:
        raise CaseFailed(f"storescu exited {rc}: {scu.tail(5)}")
    return scu


def _fastdimse_store(port: int, ds: DataSet, called: str, cfg: RunConfig) -> tuple[Child, dict]:
    scu = Child([PY, WORKERS, "fastdimse-store", "--port", str(port), "--dir", ds.directory,
                 "--called", called], name="fastdimse-store")
    doc = _check_worker(scu, scu.wait(cfg.timeout))
    if doc.get("ok") != ds.files:
        raise CaseFailed(f"fastdimse SCU: {doc.get('ok')} of {ds.files} succeeded {doc.get('reasons')}")
    return scu, doc


# -------------------------------------------------------------------- store cases

def store_dcmtk_dcmtk(ds: DataSet, cfg: RunConfig) -> Result:
    out, port = scratch_dir("storescp"), free_port()
    try:
        with _start_server(storescp_argv(port, out), "storescp", port, DCMTK_ENV) as scp:
            scu = _storescu(port, ds, "DCMSCP", cfg)
        _expect_all(ds, out)
        return Result(scu.wall_s, ds.files, ds.dataset_bytes, scu.peak_rss_kb(), scp.peak_rss_kb())
    finally:
        shutil.rmtree(out, ignore_errors=True)


def store_pynetdicom(ds: DataSet, cfg: RunConfig, nodelay: bool = False) -> Result:
    out, port = scratch_dir("pynetdicom"), free_port()
    try:
        argv = [PY, WORKERS, "pynetdicom-store", "--port", str(port), "--dir", ds.directory,
                "--out", out] + [x for uid in ds.sop_classes for x in ("--sop-class", uid)]
        argv += ["--nodelay"] if nodelay else []
        with Child(argv, name="pynetdicom-store") as w:
            doc = _check_worker(w, w.wait(cfg.timeout))
        if doc.get("ok") != ds.files:
            raise CaseFailed(f"pynetdicom: {doc.get('ok')} of {ds.files} succeeded")
        _expect_all(ds, out)
        rss = w.peak_rss_kb()
        return Result(doc["elapsed"], ds.files, ds.dataset_bytes, rss, rss, same_process=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def store_fastdimse_fastdimse(ds: DataSet, cfg: RunConfig) -> Result:
    out, port = scratch_dir("fastdimse-scp"), free_port()
    try:
        with _start_server(fastdimse_scp_argv(port, out, plain=True), "fastdimse-scp", port) as scp:
            scu, doc = _fastdimse_store(port, ds, "FDSCP", cfg)
        _expect_all(ds, out, ".dcm")
        return Result(doc["elapsed"], ds.files, ds.dataset_bytes, scu.peak_rss_kb(), scp.peak_rss_kb())
    finally:
        shutil.rmtree(out, ignore_errors=True)


def store_fastdimse_dcmtk(ds: DataSet, cfg: RunConfig, env=DCMTK_ENV) -> Result:
    out, port = scratch_dir("storescp"), free_port()
    try:
        with _start_server(storescp_argv(port, out), "storescp", port, env) as scp:
            scu, doc = _fastdimse_store(port, ds, "DCMSCP", cfg)
        _expect_all(ds, out)
        return Result(doc["elapsed"], ds.files, ds.dataset_bytes, scu.peak_rss_kb(), scp.peak_rss_kb())
    finally:
        shutil.rmtree(out, ignore_errors=True)


def store_dcmtk_fastdimse(ds: DataSet, cfg: RunConfig, env=DCMTK_ENV) -> Result:
    out, port = scratch_dir("fastdimse-scp"), free_port()
    try:
        with _start_server(fastdimse_scp_argv(port, out, plain=True), "fastdimse-scp", port) as scp:
            scu = _storescu(port, ds, "FDSCP", cfg, env)
        _expect_all(ds, out, ".dcm")
        return Result(scu.wall_s, ds.files, ds.dataset_bytes, scu.peak_rss_kb(), scp.peak_rss_kb())
    finally:
        shutil.rmtree(out, ignore_errors=True)


def store_floor(ds: DataSet, cfg: RunConfig) -> Result:
    """No DICOM: the same files over one loopback connection into new files (sendfile,
    splice), no responses. What no storage SCU/SCP pair on this machine can beat."""
    if not RAWCOPY.exists():
        raise NotAvailable(f"{RAWCOPY} is missing: cargo build --release --example rawcopy")
    out, port = scratch_dir("rawcopy"), free_port()
    try:
        with _start_server([str(RAWCOPY), "recv", str(port), out], "rawcopy-recv", port) as rx:
            tx = Child([str(RAWCOPY), "send", str(port), ds.directory], name="rawcopy-send")
            doc = _check_worker(tx, tx.wait(cfg.timeout))
            rx.wait(30)
        if doc.get("files") != ds.files:
            raise CaseFailed(f"rawcopy sent {doc.get('files')} of {ds.files} files")
        _expect_all(ds, out)
        return Result(doc["elapsed"], ds.files, ds.dataset_bytes, tx.peak_rss_kb(), rx.peak_rss_kb())
    finally:
        shutil.rmtree(out, ignore_errors=True)


# --------------------------------------------------------------------- echo cases

def echo_dcmtk(cfg: RunConfig) -> Result:
    """echoscu --repeat N on one association; the rate excludes process start and
    association set-up by subtracting an echoscu --repeat 1 run against the same SCP."""
    out, port = scratch_dir("storescp-echo"), free_port()
    n = cfg.echo_n
    try:
        with _start_server(storescp_argv(port, out), "storescp", port, DCMTK_ENV) as scp:
            walls = {}
            for reps in (1, n):
                c = Child(["echoscu", "-aec", "DCMSCP", "-pdu", PDU, "--repeat", str(reps),
                           "127.0.0.1", str(port)], name="echoscu", env=DCMTK_ENV)
                if c.wait(cfg.timeout) != 0 or c.timed_out:
                    raise CaseFailed(f"echoscu exited {c.returncode}: {c.tail(5)}")
                walls[reps] = c.wall_s
        loop = walls[n] - walls[1]
        return Result(loop * n / (n - 1), n, 0, c.peak_rss_kb(), scp.peak_rss_kb(),
                      note=f"echoscu --repeat {n} minus --repeat 1", unit="echoes")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _echo_worker(kind: str, n: int, cfg: RunConfig) -> Result:
    with Child([PY, WORKERS, kind, "--port", str(free_port()), "--n", str(n)], name=kind) as w:
        doc = _check_worker(w, w.wait(cfg.timeout))
    if doc.get("ok") != n:
        raise CaseFailed(f"{doc.get('ok')} of {n} echoes succeeded")
    rss = w.peak_rss_kb()
    return Result(doc["elapsed"], n, 0, rss, rss, same_process=True, unit="echoes")


def echo_pynetdicom(cfg: RunConfig) -> Result:
    return _echo_worker("pynetdicom-echo", cfg.echo_n_pynetdicom, cfg)


def echo_fastdimse(cfg: RunConfig) -> Result:
    return _echo_worker("fastdimse-echo", cfg.echo_n, cfg)


# ----------------------------------------------------------------- Q/R cases (issue 5)

FIND_KEYS = ["-k", "QueryRetrieveLevel=IMAGE", "-k", "PatientID", "-k", "SOPInstanceUID",
             "-k", "SOPClassUID", "-k", "InstanceNumber"]


def _find_uids(cfg: RunConfig) -> tuple[str, str]:
    """Study and series UID of set d (all its instances are in one series)."""
    if "find" not in cfg.memo:
        import pydicom

        d = cfg.sets["d"].directory
        ds = pydicom.dcmread(os.path.join(d, sorted(os.listdir(d))[0]), stop_before_pixels=True)
        cfg.memo["find"] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID))
    return cfg.memo["find"]


def _move_studies(cfg: RunConfig) -> list[str]:
    if "move" not in cfg.memo:
        cfg.memo["move"] = qr._uids(cfg.sets["a"].directory, "StudyInstanceUID")
    return cfg.memo["move"]


def _dcmqrscp_areas(cfg: RunConfig) -> dict[str, str]:
    if "areas" not in cfg.memo:
        cfg.memo["areas"] = qr.dcmqrscp_archive(cfg.qr_root, cfg.sets, cfg.timeout)
    return cfg.memo["areas"]


def _load_by_storescu(port: int, called: str, ds: DataSet, cfg: RunConfig) -> None:
    try:
        qr._store_into(port, called, ds.directory, cfg.timeout)
    except RuntimeError as e:
        raise CaseFailed(str(e)) from None


def find_dcmtk(cfg: RunConfig) -> Result:
    """findscu -> dcmqrscp. Timed run with -q; a second, untimed run counts the matches."""
    n = cfg.sets["d"].files
    study, series = _find_uids(cfg)
    areas = _dcmqrscp_areas(cfg)
    tmp, port = scratch_dir("dcmqrscp-find"), free_port()
    keys = FIND_KEYS + ["-k", f"StudyInstanceUID={study}", "-k", f"SeriesInstanceUID={series}"]
    argv = ["findscu", "-S", "-aec", qr.DCMQR_D, "-pdu", PDU, *keys, "127.0.0.1", str(port)]
    try:
        conf = qr.dcmqrscp_config(os.path.join(tmp, "qr.cfg"), port, areas)
        with _start_server(["dcmqrscp", "-c", conf, str(port)], "dcmqrscp", port, DCMTK_ENV):
            timed = Child(argv[:2] + ["-q"] + argv[2:], name="findscu", env=DCMTK_ENV)
            if timed.wait(cfg.timeout) != 0 or timed.timed_out:
                raise CaseFailed(f"findscu exited {timed.returncode}: {timed.tail(5)}")
            check = Child(argv, name="findscu-count", env=DCMTK_ENV)
            check.wait(cfg.timeout)
        got = check.output().count("(Pending)")
        if got != n:
            raise CaseFailed(f"findscu received {got} of {n} matches")
        return Result(timed.wall_s, n, 0, None, timed.peak_rss_kb(), unit="matches")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_pynetdicom(cfg: RunConfig) -> Result:
    """pynetdicom SCU (send_c_find) -> pynetdicom's qrscp app on its SQLite index."""
    n = cfg.sets["d"].files
    study, series = _find_uids(cfg)
    db = qr.pynetdicom_archive(cfg.qr_root, cfg.sets, PY, WORKERS, cfg.timeout)
    tmp, port = scratch_dir("qrscp"), free_port()
    try:
        ini = os.path.join(tmp, "qrscp.ini")
        Path(ini).write_text(
            "[DEFAULT]\nae_title: QRSCP\nport: %d\nmax_pdu: 131072\nacse_timeout: 30\n"
            "dimse_timeout: 30\nnetwork_timeout: 30\nbind_address: 127.0.0.1\n"
            "instance_location: %s\ndatabase_location: %s\nlog_identifier: False\n"
            % (port, cfg.sets["d"].directory, db))
        with _start_server([PY, "-m", "pynetdicom", "qrscp", "-q", "-c", ini], "qrscp", port) as srv:
            w = Child([PY, WORKERS, "pynetdicom-find", "--port", str(port), "--called", "QRSCP",
                       "--study", study, "--series", series], name="pynetdicom-find")
            doc = _check_worker(w, w.wait(cfg.timeout))
        if doc.get("matches") != n:
            raise CaseFailed(f"pynetdicom received {doc.get('matches')} of {n} matches")
        return Result(doc["elapsed"], n, 0, srv.peak_rss_kb(), w.peak_rss_kb(), unit="matches")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def find_fastdimse(cfg: RunConfig) -> Result:
    """fastdimse SCU find() -> fastdimse SCP, its index filled by storescu (not timed)."""
    d = cfg.sets["d"]
    study, series = _find_uids(cfg)
    out, port = scratch_dir("fastdimse-qr"), free_port()
    try:
        with _start_server(fastdimse_scp_argv(port, out), "fastdimse-scp", port) as srv:
            _load_by_storescu(port, "FDSCP", d, cfg)
            w = Child([PY, WORKERS, "fastdimse-find", "--port", str(port), "--called", "FDSCP",
                       "--study", study, "--series", series], name="fastdimse-find")
            doc = _check_worker(w, w.wait(cfg.timeout))
        if doc.get("matches") != d.files:
            raise CaseFailed(f"fastdimse received {doc.get('matches')} of {d.files} matches")
        return Result(doc["elapsed"], d.files, 0, srv.peak_rss_kb(), w.peak_rss_kb(), unit="matches",
                      note="SCP RSS includes loading the archive by C-STORE")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def move_dcmtk(cfg: RunConfig) -> Result:
    """movescu -> dcmqrscp -> storescp (catcher), the studies of set a as one UID list."""
    a = cfg.sets["a"]
    areas = _dcmqrscp_areas(cfg)
    catch, tmp = scratch_dir("catcher"), scratch_dir("dcmqrscp-move")
    cport, qport = free_port(), free_port()
    try:
        conf = qr.dcmqrscp_config(os.path.join(tmp, "qr.cfg"), qport, areas, {"CATCHER": cport})
        with _start_server(storescp_argv(cport, catch), "catcher", cport, DCMTK_ENV) as catcher, \
                _start_server(["dcmqrscp", "-c", conf, str(qport)], "dcmqrscp", qport, DCMTK_ENV):
            mv = Child(["movescu", "-S", "-aec", qr.DCMQR_A, "-aem", "CATCHER", "-pdu", PDU,
                        "-k", "QueryRetrieveLevel=STUDY",
                        "-k", "StudyInstanceUID=" + "\\".join(_move_studies(cfg)),
                        "127.0.0.1", str(qport)], name="movescu", env=DCMTK_ENV)
            if mv.wait(cfg.timeout) != 0 or mv.timed_out:
                raise CaseFailed(f"movescu exited {mv.returncode}: {mv.tail(5)}")
        _expect_all(a, catch)
        return Result(mv.wall_s, a.files, a.dataset_bytes, None, catcher.peak_rss_kb())
    finally:
        shutil.rmtree(catch, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


def move_fastdimse(cfg: RunConfig) -> Result:
    """fastdimse SCU move() -> fastdimse Q/R SCP -> fastdimse SCP (catcher)."""
    a = cfg.sets["a"]
    catch, store = scratch_dir("fastdimse-catcher"), scratch_dir("fastdimse-qr")
    cport, qport = free_port(), free_port()
    try:
        with _start_server(fastdimse_scp_argv(cport, catch, aet="CATCHER", plain=True), "catcher", cport) as catcher, \
                _start_server(fastdimse_scp_argv(qport, store, known=[f"CATCHER:{cport}"]),
                              "fastdimse-qr", qport) as qrscp:
            _load_by_storescu(qport, "FDSCP", a, cfg)
            w = Child([PY, WORKERS, "fastdimse-move", "--port", str(qport), "--called", "FDSCP",
                       "--dest", "CATCHER", "--study", "\\".join(_move_studies(cfg))],
                      name="fastdimse-move")
            doc = _check_worker(w, w.wait(cfg.timeout))
        _expect_all(a, catch, ".dcm")
        return Result(doc["elapsed"], a.files, a.dataset_bytes, qrscp.peak_rss_kb(), catcher.peak_rss_kb(),
                      note="Q/R SCP RSS includes loading the archive by C-STORE")
    finally:
        shutil.rmtree(catch, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)


# ------------------------------------------------------------------------ the run

REF_DCMTK = "dcmtk storescu -> dcmtk storescp"
REF_PYNETDICOM = "pynetdicom -> pynetdicom (in-process)"
FD_FD = "fastdimse -> fastdimse"
FLOOR = "machine floor: raw TCP copy into new files, no DICOM (rawcopy)"
FD_DCMTK_DEFAULT = "fastdimse -> dcmtk storescp (default dcmtk: no TCP_NODELAY, Nagle on)"
DCMTK_DEFAULT_FD = "dcmtk storescu (default dcmtk: no TCP_NODELAY, Nagle on) -> fastdimse"

# (row label, family for --cases, function, ratio against dcmtk?, ratio against pynetdicom?)
STORE_CASES: list[tuple[str, str, Callable[[DataSet, RunConfig], Result], bool, bool]] = [
    (REF_DCMTK, "dcmtk", store_dcmtk_dcmtk, False, False),
    (REF_PYNETDICOM, "pynetdicom", store_pynetdicom, False, False),
    # Not a reference for the ratios: shows how much of pynetdicom's time on small
    # instances is Nagle + delayed ACK (pynetdicom never sets TCP_NODELAY).
    ("pynetdicom -> pynetdicom (in-process, TCP_NODELAY patched in)", "pynetdicom",
     lambda ds, cfg: store_pynetdicom(ds, cfg, nodelay=True), False, False),
    (FD_FD, "fastdimse", store_fastdimse_fastdimse, True, True),
    ("fastdimse -> dcmtk storescp", "fastdimse", store_fastdimse_dcmtk, True, False),
    ("dcmtk storescu -> fastdimse", "fastdimse", store_dcmtk_fastdimse, True, False),
    # dcmtk as users run it, Nagle on (no TCP_NODELAY=1): what fastdimse's TCP_QUICKACK is
    # for (docs/architecture.md). Ratios still against dcmtk -> dcmtk with TCP_NODELAY=1.
    (FD_DCMTK_DEFAULT, "fastdimse",
     lambda ds, cfg: store_fastdimse_dcmtk(ds, cfg, DCMTK_DEFAULT_ENV), True, False),
    (DCMTK_DEFAULT_FD, "fastdimse",
     lambda ds, cfg: store_dcmtk_fastdimse(ds, cfg, DCMTK_DEFAULT_ENV), True, False),
    # Not DICOM: its ratios are the most any implementation could reach on this machine.
    (FLOOR, "floor", store_floor, True, True),
]
ECHO_REF_DCMTK = "dcmtk echoscu -> dcmtk storescp"
ECHO_REF_PYNETDICOM = "pynetdicom -> pynetdicom (in-process)"
ECHO_CASES: list[tuple[str, str, Callable[[RunConfig], Result], bool, bool]] = [
    (ECHO_REF_DCMTK, "dcmtk", echo_dcmtk, False, False),
    (ECHO_REF_PYNETDICOM, "pynetdicom", echo_pynetdicom, False, False),
    ("fastdimse -> fastdimse (in-process)", "fastdimse", echo_fastdimse, True, True),
]

FIND_REF_DCMTK = "dcmtk findscu -> dcmqrscp"
FIND_REF_PYNETDICOM = "pynetdicom -> pynetdicom qrscp app"
MOVE_REF_DCMTK = "dcmtk movescu -> dcmqrscp -> storescp"
QR_CASES: list[tuple[str, str, str, Callable[[RunConfig], Result], str | None, str | None]] = [
    # (group, row label, family, function, dcmtk reference row, pynetdicom reference row)
    ("find", FIND_REF_DCMTK, "dcmtk", find_dcmtk, None, None),
    ("find", FIND_REF_PYNETDICOM, "pynetdicom", find_pynetdicom, None, None),
    ("find", "fastdimse -> fastdimse", "fastdimse", find_fastdimse, FIND_REF_DCMTK, FIND_REF_PYNETDICOM),
    ("move", MOVE_REF_DCMTK, "dcmtk", move_dcmtk, None, None),
    ("move", "fastdimse -> fastdimse Q/R SCP -> fastdimse SCP", "fastdimse", move_fastdimse,
     MOVE_REF_DCMTK, None),
]


@dataclass
class Row:
    group: str
    label: str
    result: Result | None = None
    status: str = ""            # "" when measured, else "n/a (...)" / "failed: ..."
    ratio_dcmtk: str = "—"
    ratio_pynetdicom: str = "—"
    extra: dict = field(default_factory=dict)


LONG_CASE_S = 30.0  # a case whose first run takes longer is not repeated


def _measure(fn: Callable[[], Result], repeat: int, what: str) -> tuple[Result | None, str]:
    """Run a case ``repeat`` times; return the median run, or a status for the row.

    A failed run is retried once (a peer can be flaky under load); the row then reports
    the failure next to the figure of the runs that succeeded.
    """
    results: list[Result] = []
    failures: list[str] = []
    attempt = 0
    while len(results) < repeat and attempt < repeat + 1 and len(failures) < 2:
        if results and results[0].wall_s > LONG_CASE_S:
            break
        attempt += 1
        t0 = time.perf_counter()
        try:
            r = fn()
        except NotAvailable as e:
            log(f"{what}: n/a ({e})")
            return None, "n/a (not implemented)"
        except (CaseFailed, ChildFailed) as e:
            msg = " ".join(str(e).split())[:160]
            log(f"{what}: FAILED {msg}")
            failures.append(msg)
            continue
        results.append(r)
        log(f"{what}: {r.count} in {r.wall_s:.3f} s ({r.rate:,.1f}/s)"
            f"{f' [run {attempt}]' if repeat > 1 else ''}  case took {time.perf_counter() - t0:.1f} s")
    if not results:
        return None, f"failed: {failures[0]}"
    results.sort(key=lambda r: r.wall_s)
    median = results[len(results) // 2]
    if failures:
        median.note = (median.note + "; " if median.note else "") + \
            f"{len(failures)} of {len(failures) + len(results)} runs failed: {failures[0]}"
    return median, ""


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _ratio(row: Row, ref: Row | None) -> str:
    if row.result is None or ref is None or ref.result is None:
        return "n/a"
    return f"{row.result.rate / ref.result.rate:.2f}x"


def run(args) -> list[Row]:
    profile = datagen.QUICK if args.quick else datagen.FULL
    cfg = RunConfig(quick=args.quick, timeout=120.0 if args.quick else 900.0,
                    echo_n=args.echo_n or (500 if args.quick else 5000),
                    # pynetdicom: fewer echoes (it does ~200/s), which also makes its
                    # "unexpected C-ECHO service message" race (see README) less likely.
                    echo_n_pynetdicom=min(args.echo_n or 10**9, 100 if args.quick else 300))
    log(f"profile {profile.name}: generating or reusing data")
    sets = datagen.ensure_data(profile, args.cache_dir, log=log)
    cfg.sets = sets
    cfg.qr_root = Path(sets["d"].directory).parent / "qr"
    cfg.qr_root.mkdir(exist_ok=True)
    families = set(args.cases.split(","))
    rows: list[Row] = []
    for key in args.sets.split(","):
        ds = sets[key]
        label = f"{ds.label} ({ds.files} x {ds.dataset_bytes / ds.files / 1e6:.3g} MB)"
        by_label: dict[str, Row] = {}
        for name, family, fn, vs_dcmtk, vs_py in STORE_CASES:
            row = Row(label, name)
            if family in families:
                row.result, row.status = _measure(lambda: fn(ds, cfg), args.repeat, f"store {key} {name}")
            else:
                row.status = "not run (--cases)"
            by_label[name] = row
            if vs_dcmtk:
                row.ratio_dcmtk = _ratio(row, by_label.get(REF_DCMTK))
            if vs_py:
                row.ratio_pynetdicom = _ratio(row, by_label.get(REF_PYNETDICOM))
            rows.append(row)
    if not args.no_echo:
        by_label = {}
        for name, family, fn, vs_dcmtk, vs_py in ECHO_CASES:
            row = Row("C-ECHO, one association", name)
            if family in families:
                row.result, row.status = _measure(lambda: fn(cfg), args.repeat, f"echo {name}")
            else:
                row.status = "not run (--cases)"
            by_label[name] = row
            if vs_dcmtk:
                row.ratio_dcmtk = _ratio(row, by_label.get(ECHO_REF_DCMTK))
            if vs_py:
                row.ratio_pynetdicom = _ratio(row, by_label.get(ECHO_REF_PYNETDICOM))
            rows.append(row)
    if not args.no_qr:
        d, a = sets["d"], sets["a"]
        groups = {"find": f"C-FIND, d: {d.files:,} image-level matches",
                  "move": f"C-MOVE, a: {a.files} CT to a catcher"}
        by_label = {}
        for group, name, family, fn, ref_dcmtk, ref_py in QR_CASES:
            row = Row(groups[group], name)
            if family in families:
                row.result, row.status = _measure(lambda: fn(cfg), args.repeat, f"{group} {name}")
            else:
                row.status = "not run (--cases)"
            by_label[name] = row
            if ref_dcmtk:
                row.ratio_dcmtk = _ratio(row, by_label.get(ref_dcmtk))
            if ref_py:
                row.ratio_pynetdicom = _ratio(row, by_label.get(ref_py))
            rows.append(row)
    return rows


def _mib(kb: int | None) -> str:
    return "—" if kb is None else f"{kb / 1024:.0f}"


def render(rows: list[Row]) -> str:
    head = ("| data | case | instances | MB | wall s | instances/s | MB/s | sender peak RSS MiB "
            "| receiver peak RSS MiB | x dcmtk | x pynetdicom |")
    lines = [head, "|" + "---|" * 11]
    for row in rows:
        r = row.result
        if r is None:
            cells = [row.group, row.label, row.status, "", "", "", "", "", "",
                     row.ratio_dcmtk, row.ratio_pynetdicom]
        else:
            nobytes = r.dataset_bytes == 0
            unit = "" if r.unit == "instances" else " " + r.unit
            recv = "(same process)" if r.same_process else _mib(r.receiver_rss_kb)
            cells = [row.group, row.label, f"{r.count:,}{unit}",
                     "—" if nobytes else f"{r.dataset_bytes / 1e6:,.1f}", f"{r.wall_s:.3f}",
                     _rate(r.rate) + (f"{unit}/s" if unit else ""),
                     "—" if nobytes else f"{r.dataset_bytes / 1e6 / r.wall_s:,.1f}",
                     _mib(r.sender_rss_kb), recv, row.ratio_dcmtk, row.ratio_pynetdicom]
        if r is not None and "failed" in r.note:
            cells[1] += f" ({r.note})"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    lines = out.strip().splitlines()
    return next((ln for ln in lines if "dcmtk" in ln), lines[-1] if lines else "?")


def conditions(args, started: float) -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dcmtk = _version(["storescu", "--version"]).replace("$", "").strip()
    pyver = _version([PY, "-c", "import pydicom, pynetdicom; print(pydicom.__version__, pynetdicom.__version__)"]).split()
    probe = _version([PY, WORKERS, "probe"])
    try:
        fd = json.loads(probe)
        fd_ver = fd.get("version") or ("not importable" if isinstance(fd.get("store"), str) and "import" in fd["store"] else "?")
    except ValueError:
        fd_ver = "?"
    return "\n".join([
        f"# fastdimse benchmarks ({'quick, scaled-down sizes' if args.quick else 'full sizes'})",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, {time.time() - started:.0f} s; "
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}; "
        f"{dcmtk}; pydicom {pyver[0] if pyver else '?'}, pynetdicom {pyver[1] if len(pyver) > 1 else '?'}; "
        f"fastdimse {fd_ver}. Load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
        "(other work on the machine skews the figures).",
        "",
        "Loopback (127.0.0.1), every SCP writes to /dev/shm, one association per case. fastdimse runs with "
        "its defaults: max PDU 1 MiB, and an asynchronous operations window of 16 proposed (granted only "
        "by a fastdimse SCP; dcmtk and pynetdicom answer one C-STORE at a time). "
        "dcmtk with TCP_NODELAY=1 and its largest PDU: `storescp -pdu 131072 +B` (bit-preserving: streams to file), "
        "`storescu -pdu 131072 -R -nh +sd +r DIR`; the rows marked \"default dcmtk\" run the same dcmtk "
        "commands without TCP_NODELAY in their environment (Nagle on, as users run dcmtk). pynetdicom: SCU and SCP in one process, `send_c_store(path)`, "
        "the SCP handler writes `event.encoded_dataset()`; pynetdicom never sets TCP_NODELAY, the "
        "\"TCP_NODELAY patched in\" row sets it on its sockets (not used for the ratios).",
        "",
        "wall s: storescu from process start to exit; Python workers (pynetdicom, fastdimse SCU) from just "
        "after imports to the release of the association. C-ECHO: the echo loop only (dcmtk: "
        "`echoscu --repeat N` minus `--repeat 1`). MB = 10^6 bytes of data set (file minus preamble and "
        f"meta group). Peak RSS: {RSS_METHOD}; pynetdicom rows are one process for both roles. "
        "Sender/receiver: who sends the data (C-FIND: the Q/R SCP sends, the SCU receives; C-MOVE: "
        "the Q/R SCP sends, the catcher receives); dcmqrscp runs in fork mode, its RSS is not reported. "
        "C-FIND and C-MOVE time the SCU (findscu -q / movescu: process start to exit; Python: "
        "associate to release); the archives are loaded beforehand, untimed. "
        f"Each figure is the median of {args.repeat} run(s) (one run for a case over {LONG_CASE_S:.0f} s). "
        "Ratios: a fastdimse row's rate over the rate of the dcmtk (x dcmtk) or default pynetdicom "
        "(x pynetdicom) row of its group, same data, same run. The machine floor row is not DICOM: "
        "`rawcopy` (rust/examples/rawcopy.rs) sends the same files over one loopback connection with "
        "sendfile and splices each into a new file, with no association, headers or responses; its "
        "ratios are the most any storage SCU/SCP pair could reach on this machine.",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fastdimse C-STORE / C-ECHO benchmarks (make bench)")
    ap.add_argument("--quick", action="store_true", help="scaled-down data (40 CT, 16 MB multi-frame, 200 small)")
    ap.add_argument("--sets", default="a,b,c", help="data sets to run, of a,b,c")
    ap.add_argument("--cases", default="dcmtk,pynetdicom,fastdimse,floor", help="implementations to run")
    ap.add_argument("--repeat", type=int, default=0,
                    help=f"runs per case, the median is reported (default 3, quick 1; a case "
                         f"whose first run takes over {LONG_CASE_S:.0f} s runs once)")
    ap.add_argument("--echo-n", type=int, default=0, help="echoes per C-ECHO case (default 5000, quick 500)")
    ap.add_argument("--no-echo", action="store_true", help="skip the C-ECHO rows")
    ap.add_argument("--no-qr", action="store_true", help="skip the C-FIND / C-MOVE rows (issue 5)")
    ap.add_argument("--out", type=Path, default=None, help="Markdown output (default benches/results.md)")
    ap.add_argument("--cache-dir", type=Path, default=None, help="data cache (default /dev/shm/fastdimse-bench-data)")
    ap.add_argument("--clean-cache", action="store_true", help="delete the data cache at the end")
    args = ap.parse_args(argv)
    if not all(k in datagen.SETS for k in args.sets.split(",")):
        ap.error("--sets takes a comma-separated subset of a,b,c")
    if args.repeat < 0:
        ap.error("--repeat must be at least 1")
    args.repeat = args.repeat or (1 if args.quick else 3)
    for tool in ("storescu", "storescp", "echoscu"):
        if shutil.which(tool) is None:
            log(f"{tool} not found: the dcmtk rows will fail (make peers installs dcmtk)")
    # SIGTERM ends the run like Ctrl-C does: every `with Child` block and the atexit hook
    # of harness.py stop the peers started so far.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    rows = run(args)
    table = render(rows)
    doc = conditions(args, started) + "\n" + table + "\n"
    out = args.out or HERE / ("results-quick.md" if args.quick else "results.md")
    out.write_text(doc)
    print(table)
    log(f"wrote {out} ({time.time() - started:.0f} s in all)")
    if args.clean_cache:
        cache = args.cache_dir or datagen.DEFAULT_CACHE
        shutil.rmtree(Path(cache) / (datagen.QUICK if args.quick else datagen.FULL).name, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
