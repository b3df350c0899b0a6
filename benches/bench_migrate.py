"""Archive migration (issue 12): `fastdimse migrate` against the ways users move an archive
today, on the same data, in one run. `make bench` runs it.

    .venv/bin/python -m benches.bench_migrate [--instances 100000] [--per-study 500]
        [--latency-instances N] [--latency-ms 5] [--no-latency] [--no-profile]
        [--max 1000000] [--parallel 4] [--cases floor,loopback,profile,latency]
        [--out benches/results.md] [--cache-dir DIR]

N small instances (4x4 pixels, ~800 bytes; one template with patched UIDs and StudyDate)
in N/500 studies of one series each, study i dated 2000-01-01 + i days, are held by a
fastdimse Q/R SCP (``DICOMSCP`` with a storage folder, the files indexed in place by
``import_folder``; its own process, ``python -m benches.bench_migrate source``). The files
and the source's index are cached under /dev/shm (``--cache-dir``). Every case moves them
all into a fresh destination: dcmtk ``storescp --fork +B`` (files on /dev/shm) or our SCP
(tests/support/archive_scp.py: storage with a Q/R index on /dev/shm, answers C-FIND):

- anchors: a shell loop of dcmtk ``movescu``, one study at a time; a Python loop of
  ``DICOMSCU.move`` per study (the study UIDs given, as a user holding a list);
- ``fastdimse migrate`` in ``move`` and ``relay`` mode, journal (SQLite, WAL,
  synchronous=FULL, on the real disk under the temporary directory) and verification on
  (into storescp with ``--verify-at`` its folder; into our SCP counted by C-FIND);
- the machine floor: the same files over one raw TCP connection into new files
  (rust/examples/rawcopy, no DICOM);
- the phases (unless ``--no-profile``): ``migrate()`` in a worker process with timers
  around the inventory, the per-study transfer, the verification C-FINDs and the journal
  commits, once as shipped and once with verification as cheap as possible (counts taken
  from what the generator wrote, no C-FIND) and the journal on /dev/shm: the difference
  is the cost of journaling and verifying; and relay mode into our SCP as shipped, with
  timers around its onward C-STORE and the catcher's callbacks;
- latency (unless ``--no-latency``): tests/support/delay_proxy.py between the migrator and
  the source, ``--latency-ms`` each way; the serial movescu loop against
  ``fastdimse migrate --parallel 8`` on the first ``--latency-instances`` (whole studies,
  chosen by ``--date-to``). The C-MOVE sub-operations go from the source to the
  destination directly;
- ``--max 1000000``: the peak RSS of ``fastdimse migrate`` (move and relay, into storescp)
  at that size too (each small file takes a 4 KiB page of /dev/shm: ~4 GB for the
  source at 10^6 and as much for the destination).

Wall times are from process start to exit (what a user waits for); the peak RSS of each
process is its own (``/usr/bin/time``, see benches/harness.py). The table is printed and
appended to ``--out`` with the date, the machine and the floor.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benches.harness import RSS_METHOD, Child, ChildFailed, count_files, free_port, log, scratch_dir, wait_listening

HERE = Path(__file__).resolve().parent
PY = sys.executable
FASTDIMSE = str(Path(PY).with_name("fastdimse"))
ARCHIVE_SCP = str(HERE.parent / "tests" / "support" / "archive_scp.py")
RAWCOPY = HERE.parent / "target" / "release" / "examples" / "rawcopy"
DCMTK_ENV = {"TCP_NODELAY": "1"}
SOURCE_AE, STORESCP_AE, OURSCP_AE, MIGRATOR_AE = "ARCHIVE", "STORESCP", "OURSCP", "MIGRATOR"
UID_ROOT = "2.25.8071948.7"
FIRST_DATE = _dt.date(2000, 1, 1)
DATA_VERSION = 2
TIMEOUT = 3600.0


class CaseFailed(Exception):
    """A peer failed, or not every instance arrived."""


# ------------------------------------------------------------------------------ data

def _uid(kind: int, i: int) -> str:
    return f"{UID_ROOT}.{kind}.1{i:011d}"  # fixed length (30, no leading zero): patched in place


def study_uid(i: int) -> str:
    return _uid(1, i)


def study_date(i: int) -> str:
    return (FIRST_DATE + _dt.timedelta(days=i)).strftime("%Y%m%d")


def write_data(folder: Path, n: int, per_study: int) -> int:
    """``n`` instances, ``per_study`` to a study (one series), under ``folder/SSSSSS/``."""
    from tests.support import storedata as sd

    marks = {"study": _uid(1, 0), "series": _uid(2, 0), "sop": _uid(3, 0), "date": "19990909"}
    ds = sd.make_image(sd.SC_IMAGE, patient_id="MIGBENCH", rows=4, columns=4, seed=1, with_sequence=False,
                       study_uid=marks["study"], series_uid=marks["series"], sop_uid=marks["sop"])
    ds.StudyDate = marks["date"]
    folder.mkdir(parents=True, exist_ok=True)
    path = sd.write_instance(ds, folder / "template.tmp")
    template = path.read_bytes()
    path.unlink()
    for key, mark in marks.items():
        assert template.count(mark.encode()) == (2 if key == "sop" else 1), key
    total = 0
    for s in range((n + per_study - 1) // per_study):
        sub = folder / f"{s:06d}"
        sub.mkdir(exist_ok=True)
        head = (template.replace(marks["study"].encode(), _uid(1, s).encode())
                .replace(marks["series"].encode(), _uid(2, s).encode())
                .replace(marks["date"].encode(), study_date(s).encode()))
        for i in range(s * per_study, min(n, (s + 1) * per_study)):
            data = head.replace(marks["sop"].encode(), _uid(3, i).encode())
            (sub / f"{i:07d}.dcm").write_bytes(data)
            total += len(data)
    return total


@dataclass
class Data:
    n: int
    per_study: int
    root: Path          # cache folder: files/ and storage/ (the source's index)
    nbytes: int

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def studies(self) -> int:
        return (self.n + self.per_study - 1) // self.per_study


def ensure_data(cache: Path, n: int, per_study: int) -> Data:
    root = cache / f"v{DATA_VERSION}-{n}-{per_study}"
    stamp = root / "ready.json"
    if stamp.exists():
        return Data(n, per_study, root, json.loads(stamp.read_text())["bytes"])
    shutil.rmtree(root, ignore_errors=True)
    log(f"writing {n:,} instances in {(n + per_study - 1) // per_study:,} studies under {root}")
    t0 = time.perf_counter()
    nbytes = write_data(root / "files", n, per_study)
    log(f"  {time.perf_counter() - t0:.1f} s; indexing them in the source's storage (import_folder)")
    (root / "storage").mkdir()
    t0 = time.perf_counter()
    r = subprocess.run([PY, "-m", "benches.bench_migrate", "source", str(root / "storage"), "0",
                        "--import", str(root / "files"), "--import-only"], cwd=HERE.parent, capture_output=True,
                       text=True, timeout=TIMEOUT)
    if r.returncode != 0:
        raise SystemExit(f"indexing the source failed: {r.stderr[-2000:]}")
    log(f"  indexed in {time.perf_counter() - t0:.1f} s")
    stamp.write_text(json.dumps({"bytes": nbytes}))
    return Data(n, per_study, root, nbytes)


# ------------------------------------------------------------------- the source SCP

def serve_source(argv: list[str]) -> int:
    """The source: DICOMSCP with storage (and index) in STORAGE, knowing the destinations."""
    ap = argparse.ArgumentParser(prog="bench_migrate source")
    ap.add_argument("storage")
    ap.add_argument("port", type=int)
    ap.add_argument("--known", action="append", default=[], metavar="AE=PORT")
    ap.add_argument("--import", dest="import_dir", default=None)
    ap.add_argument("--import-only", action="store_true")
    args = ap.parse_args(argv)
    from fastdimse import DICOMSCP, Entity

    known = [Entity(ae, "127.0.0.1", int(port)) for ae, port in (k.split("=", 1) for k in args.known)]
    scp = DICOMSCP(Entity(SOURCE_AE, "127.0.0.1", args.port), storage_dir=args.storage, known_entities=known)
    if args.import_dir:
        result = scp.import_folder(args.import_dir)
        skipped = getattr(result, "skipped", None)
        if skipped:
            print(f"import skipped {len(skipped)} files", file=sys.stderr)
            return 1
    if args.import_only:
        scp.close()
        return 0
    # SIGTERM blocked before the server's threads start (they inherit it), then awaited here.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    scp.listen_for_incoming_associations(keep_listener_running=True)
    signal.sigwait({signal.SIGTERM})
    scp.close()
    return 0


# ---------------------------------------------------------------------- destinations

@dataclass
class Dest:
    kind: str           # "storescp" | "ourscp"
    ae: str
    port: int
    folder: str
    child: Child

    @property
    def label(self) -> str:
        return "dcmtk storescp" if self.kind == "storescp" else "our SCP (Q/R)"

    def received(self) -> int:
        if self.kind == "storescp":
            return count_files(self.folder)
        return count_files(self.folder, ".dcm")


def start_dest(kind: str, port: int) -> Dest:
    folder = scratch_dir(kind)
    if kind == "storescp":
        argv = ["storescp", "--fork", "-aet", STORESCP_AE, "-pdu", "131072", "+B", "-od", folder, str(port)]
        child, ae = Child(argv, name="storescp", env=DCMTK_ENV), STORESCP_AE
    else:
        child, ae = Child([PY, ARCHIVE_SCP, folder, str(port), OURSCP_AE], name="ourscp"), OURSCP_AE
    try:
        wait_listening(port, child, timeout=30)
    except ChildFailed:
        child.stop()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Dest(kind, ae, port, folder, child)


def stop_dest(dest: Dest) -> None:
    dest.child.stop()
    shutil.rmtree(dest.folder, ignore_errors=True)


@dataclass
class Env:
    data: Data
    source_port: int
    ports: dict[str, int]       # destination kind -> its fixed port (the source knows it)
    catcher_port: int
    work: Path                  # journals and reports (real disk)
    parallel: int
    rows: list = field(default_factory=list)


def start_source(data: Data, ports: dict[str, int], catcher_port: int) -> Child:
    port = free_port()
    known = [f"{STORESCP_AE}={ports['storescp']}", f"{OURSCP_AE}={ports['ourscp']}", f"{MIGRATOR_AE}={catcher_port}"]
    argv = [PY, "-m", "benches.bench_migrate", "source", str(data.storage), str(port)]
    argv += [x for k in known for x in ("--known", k)]
    child = Child(argv, name="source", cwd=str(HERE.parent))
    wait_listening(port, child, timeout=120)
    child.port = port  # type: ignore[attr-defined]
    return child


# ----------------------------------------------------------------------------- cases

@dataclass
class Row:
    group: str
    case: str
    dest: str
    wall_s: float | None
    instances: int
    rss_kb: int | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rate(self) -> float | None:
        return self.instances / self.wall_s if self.wall_s else None


def _one_line(text: str) -> str:
    return " / ".join(x.strip() for x in text.splitlines() if x.strip()).replace("|", "/")[:300]


def _finish(child: Child, dest: Dest, expect: int, what: str) -> None:
    if child.timed_out:
        raise CaseFailed(f"{what} timed out")
    got = dest.received()
    if got != expect:
        raise CaseFailed(f"{what}: {got} of {expect} instances arrived (exit {child.returncode}): {child.tail(3)}")


def movescu_loop(env: Env, dest: Dest, source_port: int, studies: int) -> Child:
    """A bash loop of movescu, one study at a time (a user's shell script)."""
    uids = " ".join(study_uid(i) for i in range(studies))
    script = (f"set -e; for uid in {uids}; do movescu -S -aet BENCHSCU -aec {SOURCE_AE} -aem {dest.ae} "
              f"-k QueryRetrieveLevel=STUDY -k StudyInstanceUID=$uid 127.0.0.1 {source_port}; done")
    child = Child(["bash", "-c", script], name="movescu-loop", env=DCMTK_ENV)
    child.wait(TIMEOUT)
    return child


def scu_move_loop(env: Env, dest: Dest, source_port: int, studies: int) -> Child:
    child = Child([PY, "-m", "benches.bench_migrate", "scu-move", str(source_port), dest.ae, str(studies)],
                  name="scu-move-loop", cwd=str(HERE.parent))
    child.wait(TIMEOUT)
    if child.returncode != 0:
        raise CaseFailed(f"the scu.move loop exited {child.returncode}: {child.tail(3)}")
    return child


def scu_move_worker(argv: list[str]) -> int:
    port, dest_ae, studies = int(argv[0]), argv[1], int(argv[2])
    from fastdimse import DICOMSCU, Entity

    scu, source = DICOMSCU(Entity("BENCHSCU", "127.0.0.1", 0)), Entity(SOURCE_AE, "127.0.0.1", port)
    for i in range(studies):
        r = scu.move(source, {"StudyInstanceUID": study_uid(i)}, dest_ae, "STUDY")
        if r.status != 0:
            print(f"study {i}: status 0x{r.status:04X}", file=sys.stderr)
            return 1
    return 0


def migrate_argv(env: Env, dest: Dest, mode: str, source_port: int, tag: str, *, parallel: int | None = None,
                 date_to: str | None = None) -> list[str]:
    journal = env.work / f"{tag}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    argv = [FASTDIMSE, "migrate", f"{SOURCE_AE}@127.0.0.1:{source_port}", f"{dest.ae}@127.0.0.1:{dest.port}",
            "--mode", mode, "--journal", str(journal), "--report", str(env.work / f"{tag}.json"),
            "--parallel", str(parallel or env.parallel), "--no-progress", "--json", "--retry-delay", "1"]
    if mode == "relay":
        argv += ["--aet", MIGRATOR_AE, "--catcher-port", str(env.catcher_port)]
    if dest.kind == "storescp":
        argv += ["--verify-at", dest.folder]
    if date_to:
        argv += ["--date-to", date_to]
    return argv


def _own(doc: dict) -> str:
    return f"migrate's own elapsed {doc['elapsed_s']:.2f} s" if "elapsed_s" in doc else ""


def run_migrate(argv: list[str]) -> tuple[Child, dict]:
    child = Child(argv, name="migrate")
    rc = child.wait(TIMEOUT)
    doc: dict = {}
    out = child.output()
    start = out.rfind("\n{")  # --json: the summary, pretty-printed, last on stdout
    try:
        doc = json.loads(out[start + 1:] if start >= 0 else out)
    except ValueError:
        pass
    if rc != 0:
        raise CaseFailed(f"fastdimse migrate exited {rc}: {child.tail(4)}")
    return child, doc


def _split(result) -> tuple[Child, dict]:
    return result if isinstance(result, tuple) else (result, {})


def loopback_cases(env: Env, source_port: int) -> None:
    n, studies = env.data.n, env.data.studies
    for kind in ("storescp", "ourscp"):
        cases = [
            ("anchor", "movescu loop (one study at a time)", lambda d: movescu_loop(env, d, source_port, studies)),
            ("anchor", "scu.move loop (Python, per study)", lambda d: scu_move_loop(env, d, source_port, studies)),
            ("migrate", f"fastdimse migrate --mode move --parallel {env.parallel}",
             lambda d: run_migrate(migrate_argv(env, d, "move", source_port, f"move-{d.kind}"))),
            ("migrate", f"fastdimse migrate --mode relay --parallel {env.parallel}",
             lambda d: run_migrate(migrate_argv(env, d, "relay", source_port, f"relay-{d.kind}"))),
        ]
        for group, name, fn in cases:
            dest = start_dest(kind, env.ports[kind])
            log(f"{name} -> {dest.label}")
            try:
                child, doc = _split(fn(dest))
                _finish(child, dest, n, name)
                row = Row(group, name, dest.label, child.wall_s, n, child.peak_rss_kb(), note=_own(doc))
            except (CaseFailed, ChildFailed) as exc:
                row = Row(group, name, dest.label, None, n, note=_one_line(f"failed: {exc}"))
            finally:
                stop_dest(dest)
            log(f"  {row.wall_s or 0:.2f} s {row.note}")
            env.rows.append(row)


def floor_case(env: Env) -> None:
    if not RAWCOPY.exists():
        env.rows.append(Row("floor", "machine floor (rawcopy)", "-", None, env.data.n,
                            note=f"n/a: {RAWCOPY} missing (cargo build --release --example rawcopy)"))
        return
    out, port = scratch_dir("rawcopy"), free_port()
    try:
        rx = Child([str(RAWCOPY), "recv", str(port), out], name="rawcopy-recv")
        with rx:
            wait_listening(port, rx)
            tx = Child([str(RAWCOPY), "send", str(port), str(env.data.files)], name="rawcopy-send")
            tx.wait(TIMEOUT)
            rx.wait(60)
        doc = json.loads([x for x in tx.output().splitlines() if x.startswith("{")][-1])
        env.rows.append(Row("floor", "machine floor: raw TCP copy into new files, no DICOM (rawcopy)", "files",
                            float(doc["elapsed"]), int(doc["files"]), tx.peak_rss_kb()))
    finally:
        shutil.rmtree(out, ignore_errors=True)


# -------------------------------------------------------------------- phase profile

def profile_worker(argv: list[str]) -> int:
    """``migrate()`` with timers around its phases; prints one JSON line."""
    ap = argparse.ArgumentParser(prog="bench_migrate profile")
    ap.add_argument("source_port", type=int)
    ap.add_argument("dest", help="AE=PORT")
    ap.add_argument("--verify-at", default=None)
    ap.add_argument("--journal", required=True)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--cheap", type=int, default=0, help="verification from this known count per study, no C-FIND")
    ap.add_argument("--mode", default="move", choices=["move", "relay"])
    ap.add_argument("--catcher-port", type=int, default=0)
    args = ap.parse_args(argv)
    import threading

    from fastdimse import Entity
    from fastdimse.migrate import engine, journal as journal_mod, migrate, relay, verify

    spent: dict[str, float] = {}
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def timed(category: str, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                dt = time.perf_counter() - t0
                with lock:
                    spent[category] = spent.get(category, 0.0) + dt
                    calls[category] = calls.get(category, 0) + 1
        return wrapper

    if args.cheap:
        n = args.cheap

        def cheap_count(*_a, **_k):
            return n

        def cheap_instances(*_a, **_k):
            return verify.Count({}, None, total=n)

        verify.study_count = cheap_count
        verify.count_instances = cheap_instances
        verify.recount = cheap_instances
        if hasattr(verify, "folder_index"):
            verify.folder_index = lambda root: None
    for name in ("study_count", "count_instances", "recount"):
        setattr(verify, name, timed("verify (C-FIND counts)", getattr(verify, name)))
    engine.transfer_study = timed("transfer (C-MOVE or relay per study)", engine.transfer_study)
    engine.Engine.inventory = timed("inventory", engine.Engine.inventory)
    relay._store_to_node = timed("relay: C-STORE onward (inside transfer)", relay._store_to_node)
    relay.Catcher._on_stored = timed("relay: catcher callbacks (inside transfer)", relay.Catcher._on_stored)
    engine.Engine.expected_of = timed("expected counts (C-FIND)", engine.Engine.expected_of)
    for name in ("claim", "update", "update_series", "set_expected", "add_studies", "window_done"):
        setattr(journal_mod.SQLiteJournal, name, timed("journal commits", getattr(journal_mod.SQLiteJournal, name)))
    ae, port = args.dest.split("=", 1)
    dest = Entity(ae, "127.0.0.1", int(port))
    verify_at = Path(args.verify_at) if args.verify_at else None
    if args.cheap and verify_at is not None:
        verify_at = dest  # no folder walk: the patched counts answer
    t0 = time.perf_counter()
    result = migrate(Entity(SOURCE_AE, "127.0.0.1", args.source_port), dest, journal=args.journal, report=None,
                     verify_at=verify_at, parallel=args.parallel, retry_delay=1.0, mode=args.mode,
                     aet=MIGRATOR_AE if args.mode == "relay" else "FASTDIMSE", catcher_port=args.catcher_port)
    wall = time.perf_counter() - t0
    print(json.dumps({"wall_s": wall, "verified": result.verified, "failed": result.failed,
                      "instances": result.instances, "spent": spent, "calls": calls}))
    return 0 if result.exit_code == 0 else 1


def profile_cases(env: Env, source_port: int) -> list[dict]:
    out = []
    runs = [("move", kind, cheap) for kind in ("storescp", "ourscp") for cheap in (False, True)]
    for mode, kind, cheap in runs + [("relay", "ourscp", False)]:
        dest = start_dest(kind, env.ports[kind])
        jdir = Path(scratch_dir("journal")) if cheap else env.work
        journal = jdir / f"profile-{mode}-{kind}-{int(cheap)}.sqlite"
        argv = [PY, "-m", "benches.bench_migrate", "profile", str(source_port), f"{dest.ae}={dest.port}",
                "--journal", str(journal), "--parallel", str(env.parallel), "--mode", mode,
                "--catcher-port", str(env.catcher_port)]
        argv += ["--verify-at", dest.folder] if kind == "storescp" else []
        argv += ["--cheap", str(env.data.per_study)] if cheap else []
        log(f"profile: {mode} -> {dest.label}{' (cheap verification, journal on /dev/shm)' if cheap else ''}")
        try:
            child = Child(argv, name="profile", cwd=str(HERE.parent))
            rc = child.wait(TIMEOUT)
            lines = [x for x in child.output().splitlines() if x.startswith("{")]
            if rc != 0 or not lines:
                raise CaseFailed(f"profile exited {rc}: {child.tail(4)}")
            doc = json.loads(lines[-1])
            if dest.received() != env.data.n:
                raise CaseFailed(f"{dest.received()} of {env.data.n} arrived")
            doc.update(kind=kind, label=dest.label, cheap=cheap, process_wall_s=child.wall_s, mode=mode)
            out.append(doc)
            log(f"  {doc['wall_s']:.2f} s")
        except CaseFailed as exc:
            out.append({"kind": kind, "label": dest.label, "cheap": cheap, "mode": mode,
                        "error": _one_line(str(exc))})
        finally:
            stop_dest(dest)
            if cheap:
                shutil.rmtree(jdir, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- latency

def latency_cases(env: Env, source_port: int, n_lat: int, delay_ms: float) -> None:
    from tests.support.delay_proxy import DelayProxy

    studies = max(1, min(env.data.studies, n_lat // env.data.per_study))
    n = min(env.data.n, studies * env.data.per_study)
    with DelayProxy(source_port, delay_ms=delay_ms) as proxy:
        for name, fn in (
            ("movescu loop (one study at a time)", lambda d: movescu_loop(env, d, proxy.port, studies)),
            ("fastdimse migrate --mode move --parallel 8",
             lambda d: run_migrate(migrate_argv(env, d, "move", proxy.port, "latency-move", parallel=8,
                                                date_to=study_date(studies - 1)))),
        ):
            dest = start_dest("storescp", env.ports["storescp"])
            log(f"latency {delay_ms} ms each way: {name} -> {dest.label}, {n:,} instances")
            try:
                child, doc = _split(fn(dest))
                _finish(child, dest, n, name)
                row = Row("latency", name, dest.label, child.wall_s, n, child.peak_rss_kb(), note=_own(doc))
            except (CaseFailed, ChildFailed) as exc:
                row = Row("latency", name, dest.label, None, n, note=_one_line(f"failed: {exc}"))
            finally:
                stop_dest(dest)
            log(f"  {row.wall_s or 0:.2f} s {row.note}")
            env.rows.append(row)


# ---------------------------------------------------------------------------- report

def _mib(kb: int | None) -> str:
    return f"{kb / 1024:.0f} MiB" if kb else "-"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def table(env: Env, profile: list[dict], max_rows: list[Row], delay_ms: float) -> str:
    rows = env.rows
    anchor = {(r.dest, r.case.split(" ")[0]): r for r in rows if r.group == "anchor"}
    lines = ["| case | destination | wall s | instances/s | x scu.move loop | peak RSS | note |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.group == "latency":
            continue
        base = anchor.get((r.dest, "scu.move"))
        ratio = _ratio(r.rate, base.rate) if base and r.group != "floor" else "-"
        lines.append(f"| {r.case} | {r.dest} | {r.wall_s or 0:.2f} | {r.rate or 0:,.0f} | {ratio} "
                     f"| {_mib(r.rss_kb)} | {r.note} |")
    lat = [r for r in rows if r.group == "latency"]
    if lat:
        serial = lat[0]
        lines += ["", f"Latency: tests/support/delay_proxy.py, {delay_ms:g} ms each way between the migrator and "
                  f"the source (C-MOVE sub-operations go to the destination directly), {serial.instances:,} instances "
                  f"in {serial.instances // env.data.per_study} studies, into dcmtk storescp.", "",
                  "| case | wall s | instances/s | x movescu loop | peak RSS | note |", "|---|---:|---:|---:|---:|---|"]
        for r in lat:
            lines.append(f"| {r.case} | {r.wall_s or 0:.2f} | {r.rate or 0:,.0f} | {_ratio(r.rate, serial.rate)} "
                         f"| {_mib(r.rss_kb)} | {r.note} |")
    if profile:
        lines += ["", "Phases of `migrate()` (in a worker process with timers; thread-seconds summed over "
                  f"{env.parallel} workers, so they exceed the wall time; relay: the C-STORE onward and the catcher's "
                  "callbacks are part of the transfer):", "",
                  "| mode | destination | verification and journal | wall s | inventory | transfer | verify C-FINDs "
                  "| expected counts | journal commits (calls) | relay: C-STORE onward / catcher callbacks "
                  "| cost of journal+verify |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        cheap = {(p["mode"], p["kind"]): p for p in profile if p.get("cheap") and "error" not in p}
        for p in profile:
            if "error" in p:
                lines.append(f"| {p['mode']} | {p['label']} | {'cheap' if p['cheap'] else 'as shipped'} "
                             f"| failed: {p['error']} | | | | | | | |")
                continue
            s, c = p["spent"], p["calls"]
            cost = "-"
            base = cheap.get((p["mode"], p["kind"]))
            if not p["cheap"] and base:
                cost = f"{(p['wall_s'] / base['wall_s'] - 1) * 100:+.0f} %"
            how = ("counts known, no C-FIND; journal on /dev/shm" if p["cheap"]
                   else "C-FIND / folder counts; journal on disk")
            relay_s = (f"{s.get('relay: C-STORE onward (inside transfer)', 0):.2f} / "
                       f"{s.get('relay: catcher callbacks (inside transfer)', 0):.2f}" if p["mode"] == "relay" else "-")
            lines.append(
                f"| {p['mode']} | {p['label']} | {how} | {p['wall_s']:.2f} | {s.get('inventory', 0):.2f} "
                f"| {s.get('transfer (C-MOVE or relay per study)', 0):.2f} | {s.get('verify (C-FIND counts)', 0):.2f} "
                f"| {s.get('expected counts (C-FIND)', 0):.2f} | {s.get('journal commits', 0):.2f} "
                f"({c.get('journal commits', 0)}) | {relay_s} | {cost} |")
    if max_rows:
        lines += ["", "Peak RSS of `fastdimse migrate` at the largest size (--max):", "",
                  "| case | instances | wall s | instances/s | peak RSS | note |", "|---|---:|---:|---:|---:|---|"]
        for r in max_rows:
            lines.append(f"| {r.case} | {r.instances:,} | {r.wall_s or 0:.1f} | {r.rate or 0:,.0f} "
                         f"| {_mib(r.rss_kb)} | {r.note} |")
    return "\n".join(lines)


def conditions(env: Env, started: float, args) -> str:
    cpu = "?"
    try:
        cpu = next(x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name"))
    except (OSError, StopIteration):
        pass
    floor = next((r for r in env.rows if r.group == "floor" and r.rate), None)
    floor_txt = (f"machine floor (rawcopy, the same files over one raw TCP connection into new files): "
                 f"{floor.rate:,.0f} files/s" if floor else "machine floor: not measured")
    return (f"## Archive migration, {env.data.n:,} instances in {env.data.studies:,} studies "
            f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))})\n\n"
            f"`python -m benches.bench_migrate {' '.join(sys.argv[1:]) or '(defaults)'}`, "
            f"{env.data.per_study} instances a study, {time.time() - started:.0f} s; "
            f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python {platform.python_version()}; "
            f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())} (other work skews the figures); "
            f"{floor_txt}. Source: fastdimse DICOMSCP (Q/R, files indexed in place by import_folder) in its own "
            f"process; destinations: `storescp --fork +B` (TCP_NODELAY=1) or tests/support/archive_scp.py, both "
            f"writing to /dev/shm. Migrations with the journal (SQLite, synchronous=FULL, under {env.work.parent}) "
            f"and verification on; wall s from process start to exit; peak RSS: {RSS_METHOD}.\n\n")


def max_cases(args, cache: Path) -> list[Row]:
    data = ensure_data(cache, args.max, args.per_study)
    ports = {"storescp": free_port(), "ourscp": free_port()}
    work = Path(tempfile.mkdtemp(prefix="fastdimse-bench-migrate-max-"))
    env = Env(data, 0, ports, free_port(), work, args.parallel)
    rows = []
    src = start_source(data, ports, env.catcher_port)
    try:
        for mode in ("move", "relay"):
            dest = start_dest("storescp", ports["storescp"])
            name = f"fastdimse migrate --mode {mode} --parallel {args.parallel} -> dcmtk storescp"
            log(f"--max {args.max:,}: {name}")
            try:
                child, doc = run_migrate(migrate_argv(env, dest, mode, src.port, f"max-{mode}"))  # type: ignore[attr-defined]
                _finish(child, dest, data.n, name)
                rows.append(Row("max", name, dest.label, child.wall_s, data.n, child.peak_rss_kb(), note=_own(doc)))
            except (CaseFailed, ChildFailed) as exc:
                rows.append(Row("max", name, dest.label, None, data.n, note=_one_line(f"failed: {exc}")))
            finally:
                stop_dest(dest)
    finally:
        src.stop()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    workers = {"source": serve_source, "scu-move": scu_move_worker, "profile": profile_worker}
    if argv and argv[0] in workers:
        return workers[argv[0]](argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", type=int, default=100000)
    ap.add_argument("--per-study", type=int, default=500)
    ap.add_argument("--parallel", type=int, default=4, help="fastdimse migrate --parallel on loopback (its default)")
    ap.add_argument("--latency-instances", type=int, default=None, help="default: --instances")
    ap.add_argument("--latency-ms", type=float, default=5.0)
    ap.add_argument("--cases", default="floor,loopback,profile,latency",
                    help="which parts to run (comma-separated: floor, loopback, profile, latency)")
    ap.add_argument("--no-latency", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--max", type=int, default=None, help="also the peak RSS at this size (e.g. 1000000)")
    ap.add_argument("--out", default=str(HERE / "results.md"))
    ap.add_argument("--cache-dir", default="/dev/shm/fastdimse-bench-migrate" if os.path.isdir("/dev/shm")
                    else os.path.join(tempfile.gettempdir(), "fastdimse-bench-migrate"))
    args = ap.parse_args(argv)
    if args.instances < args.per_study or args.per_study < 1:
        ap.error("--instances must be at least --per-study")
    # SIGTERM ends the run like Ctrl-C: the finally blocks and the harness stop every peer.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    cache = Path(args.cache_dir)
    data = ensure_data(cache, args.instances, args.per_study)
    ports = {"storescp": free_port(), "ourscp": free_port()}
    work = Path(tempfile.mkdtemp(prefix="fastdimse-bench-migrate-"))
    env = Env(data, 0, ports, free_port(), work, args.parallel)
    profile: list[dict] = []
    src = start_source(data, ports, env.catcher_port)
    try:
        parts = set(args.cases.split(","))
        if "floor" in parts:
            floor_case(env)
        if "loopback" in parts:
            loopback_cases(env, src.port)  # type: ignore[attr-defined]
        if "profile" in parts and not args.no_profile:
            profile = profile_cases(env, src.port)  # type: ignore[attr-defined]
        if "latency" in parts and not args.no_latency:
            latency_cases(env, src.port, args.latency_instances or args.instances, args.latency_ms)  # type: ignore[attr-defined]
    finally:
        src.stop()
        shutil.rmtree(work, ignore_errors=True)
    max_rows = max_cases(args, cache) if args.max else []
    text = conditions(env, started, args) + table(env, profile, max_rows, args.latency_ms) + "\n"
    print(text)
    with open(args.out, "a") as fh:
        fh.write("\n" + text)
    failed = [r for r in env.rows + max_rows if r.note.startswith("failed")] + [p for p in profile if "error" in p]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
