"""Python peers for `make bench`, each run as its own process by benches/run.py.

    python benches/workers.py KIND [options]

Every worker prints one JSON object on its last stdout line. A worker whose library or
API is missing prints ``{"unavailable": "<why>"}`` and exits with status 3, so that the
table shows "n/a (not implemented)" rather than a number. Servers run until SIGTERM.

Kinds:
  pynetdicom-store   pynetdicom SCU -> pynetdicom SCP in this one process, one association
  pynetdicom-echo    C-ECHO loop, pynetdicom SCU -> pynetdicom SCP in this process
  fastdimse-scp      a fastdimse storage SCP writing to --out, until SIGTERM
  fastdimse-store    fastdimse SCU sending --dir to a remote SCP
  fastdimse-echo     C-ECHO loop, fastdimse SCU -> fastdimse SCP in this process
  fastdimse-find     image-level C-FIND (issue 5 API), counts the matches
  fastdimse-move     study-level C-MOVE to --dest (issue 5 API)
  pynetdicom-qr-load fill the SQLite index of pynetdicom's qrscp app from --dir
  pynetdicom-find    image-level C-FIND with pynetdicom, counts the matches
  probe              which fastdimse APIs exist (JSON), never fails

Timing inside a worker starts after imports (it measures the library, not the
interpreter start) and ends when the last response came back and the association was
released; it is reported as ``elapsed``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import sys
import threading
import time
from typing import NoReturn

UNAVAILABLE = 3
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
PDU = 131072


def emit(obj: dict) -> None:
    obj.setdefault("vmhwm_kb", _hwm())
    print(json.dumps(obj), flush=True)


def _hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def unavailable(why: str) -> NoReturn:
    emit({"unavailable": why})
    sys.exit(UNAVAILABLE)


def _files(directory: str) -> list[str]:
    out = []
    for root, _dirs, names in os.walk(directory):
        out.extend(os.path.join(root, n) for n in names)
    return sorted(out)


def _wait_for_sigterm() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(3600):  # woken by the signal handler
        pass


# --------------------------------------------------------------------- pynetdicom

def _set_nodelay_everywhere() -> None:
    """Set TCP_NODELAY on every TCP socket this process connects or accepts.

    pynetdicom has no option for it; this is the benchmark's own patch of the standard
    library socket class, used only by the "TCP_NODELAY patched" pynetdicom row.
    """
    import socket

    orig_connect, orig_accept = socket.socket.connect, socket.socket.accept

    def connect(self, address):
        orig_connect(self, address)
        if self.type == socket.SOCK_STREAM and self.family in (socket.AF_INET, socket.AF_INET6):
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def accept(self):
        conn, addr = orig_accept(self)
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr

    socket.socket.connect = connect
    socket.socket.accept = accept


class _Warnings:
    """Keeps pynetdicom's warnings and errors, to explain a lost association."""

    def __init__(self) -> None:
        import logging

        self.seen: list[str] = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = lambda record: self.seen.append(record.getMessage())
        logging.getLogger("pynetdicom").addHandler(handler)

    def __str__(self) -> str:
        return "; ".join(dict.fromkeys(self.seen))[:300] or "no pynetdicom warning"


def _pynetdicom_scp(port: int, out: str | None, sop_classes: list[str]):
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Verification

    counter = {"n": 0, "failed": 0}

    def on_store(event):
        try:
            data = event.encoded_dataset(include_meta=True)
            uid = event.request.AffectedSOPInstanceUID
            with open(os.path.join(out, f"{uid}.dcm"), "wb") as f:
                f.write(data)
            counter["n"] += 1
            return 0x0000
        except Exception:  # report as a failed store, count it
            counter["failed"] += 1
            return 0xA700

    ae = AE(ae_title="PYSCP")
    ae.maximum_pdu_size = PDU
    ae.add_supported_context(Verification)
    for uid in sop_classes:
        ae.add_supported_context(uid, [EXPLICIT_VR_LE, IMPLICIT_VR_LE])
    handlers = [(evt.EVT_C_STORE, on_store)] if out else []
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=handlers)
    return server, counter


def pynetdicom_store(args) -> None:
    try:
        from pynetdicom import AE
    except ImportError as e:
        unavailable(f"pynetdicom: {e}")
    if args.nodelay:
        _set_nodelay_everywhere()
    warnings = _Warnings()
    files = _files(args.dir)
    server, counter = _pynetdicom_scp(args.port, args.out, args.sop_class)
    try:
        ae = AE(ae_title="PYSCU")
        ae.maximum_pdu_size = PDU
        for uid in args.sop_class:
            ae.add_requested_context(uid, [EXPLICIT_VR_LE, IMPLICIT_VR_LE])
        t0 = time.perf_counter()
        assoc = ae.associate("127.0.0.1", args.port, ae_title="PYSCP", max_pdu=PDU)
        if not assoc.is_established:
            emit({"error": "association not established"})
            sys.exit(1)
        ok = bad = 0
        for i, path in enumerate(files):
            try:
                status = assoc.send_c_store(path)
            except RuntimeError:  # the association went away under us
                emit({"error": f"association lost after {i} instances, {time.perf_counter() - t0:.1f} s ({warnings})"})
                sys.exit(1)
            if status and getattr(status, "Status", None) == 0x0000:
                ok += 1
            else:
                bad += 1
        assoc.release()
        elapsed = time.perf_counter() - t0
    finally:
        server.shutdown()
    emit({"elapsed": elapsed, "sent": len(files), "ok": ok, "failed": bad,
          "received": counter["n"], "scp_failed": counter["failed"]})


def pynetdicom_echo(args) -> None:
    try:
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification
    except ImportError as e:
        unavailable(f"pynetdicom: {e}")
    if args.nodelay:
        _set_nodelay_everywhere()
    warnings = _Warnings()
    server, _ = _pynetdicom_scp(args.port, None, [])
    try:
        ae = AE(ae_title="PYSCU")
        ae.maximum_pdu_size = PDU
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", args.port, ae_title="PYSCP", max_pdu=PDU)
        if not assoc.is_established:
            emit({"error": "association not established"})
            sys.exit(1)
        ok = 0
        t0 = time.perf_counter()
        for i in range(args.n):
            try:
                st = assoc.send_c_echo()
            except RuntimeError:  # the association went away under us
                emit({"error": f"association lost after {i} echoes, {time.perf_counter() - t0:.1f} s ({warnings})"})
                sys.exit(1)
            ok += bool(st) and st.Status == 0x0000
        elapsed = time.perf_counter() - t0
        assoc.release()
    finally:
        server.shutdown()
    emit({"elapsed": elapsed, "n": args.n, "ok": ok})


def pynetdicom_qr_load(args) -> None:
    """Fill the SQLite index of pynetdicom's qrscp app with the files of --dir."""
    try:
        import pydicom
        from pynetdicom.apps.qrscp import db
        from sqlalchemy.orm import sessionmaker
    except ImportError as e:
        unavailable(f"pynetdicom qrscp app (needs sqlalchemy): {e}")
    engine = db.create(f"sqlite:///{args.db}")
    session = sessionmaker(bind=engine)()
    n = 0
    for path in _files(args.dir):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        db.add_instance(ds, session, os.path.abspath(path))
        n += 1
    session.close()
    emit({"loaded": n})


def _find_identifier(args):
    from pydicom.dataset import Dataset

    ident = Dataset()
    ident.QueryRetrieveLevel = "IMAGE"
    ident.PatientID = ""
    ident.StudyInstanceUID = args.study
    ident.SeriesInstanceUID = args.series
    ident.SOPInstanceUID = ""
    ident.SOPClassUID = ""
    ident.InstanceNumber = ""
    return ident


def pynetdicom_find(args) -> None:
    try:
        from pynetdicom import AE
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND
    except ImportError as e:
        unavailable(f"pynetdicom: {e}")
    ident = _find_identifier(args)
    ae = AE(ae_title="PYFINDSCU")
    ae.maximum_pdu_size = PDU
    ae.add_requested_context(FIND)
    t0 = time.perf_counter()
    assoc = ae.associate("127.0.0.1", args.port, ae_title=args.called, max_pdu=PDU)
    if not assoc.is_established:
        emit({"error": "association not established"})
        sys.exit(1)
    matches = final = 0
    for status, _identifier in assoc.send_c_find(ident, FIND):
        if status and status.Status in (0xFF00, 0xFF01):
            matches += 1
        elif status:
            final = status.Status
    assoc.release()
    emit({"elapsed": time.perf_counter() - t0, "matches": matches, "final_status": final})


# ---------------------------------------------------------------------- fastdimse
# fastdimse not importable (not built) -> "unavailable". Any other error is a real
# failure and is reported as one; nothing here fakes a figure.

_MISSING = (ImportError,)


def _fastdimse():
    try:
        import fastdimse
        from fastdimse import DICOMSCP, DICOMSCU, Entity  # noqa: F401
    except _MISSING as e:
        unavailable(f"import fastdimse: {type(e).__name__}: {e}")
    return fastdimse


def _store_api_missing(fd) -> str | None:
    if not callable(getattr(fd.DICOMSCU, "store", None)):
        return "DICOMSCU.store is missing"
    try:
        params = inspect.signature(fd.DICOMSCP).parameters
    except (TypeError, ValueError):
        return None
    if "storage_dir" not in params and not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return "DICOMSCP has no storage_dir parameter"
    return None


def fastdimse_scp(args) -> None:
    fd = _fastdimse()
    if args.out:
        why = _store_api_missing(fd)
        if why:
            unavailable(why)
    try:
        entity = fd.Entity(args.aet, "127.0.0.1", args.port)
        kw = {"storage_dir": args.out} if args.out else {}
        if args.out and args.plain:
            # A plain storage SCP, like storescp: no Q/R index to keep up to date.
            kw["query_retrieve"] = False
        if args.known:
            # Issue 5: the SCP's table of known entities (move destinations). The keyword
            # is this harness's assumption; a TypeError here reads as "not implemented".
            kw["known_entities"] = [fd.Entity(ae, "127.0.0.1", int(port))
                                    for ae, port in (k.split(":") for k in args.known)]
        scp = fd.DICOMSCP(entity, **kw)
        scp.listen_for_incoming_associations()
    except _MISSING as e:
        unavailable(f"DICOMSCP: {type(e).__name__}: {e}")
    try:
        _wait_for_sigterm()
    finally:
        scp.stop()
    emit({"stopped": True})


def fastdimse_store(args) -> None:
    fd = _fastdimse()
    why = _store_api_missing(fd)
    if why:
        unavailable(why)
    remote = fd.Entity(args.called, "127.0.0.1", args.port)
    try:
        t0 = time.perf_counter()
        scu = fd.DICOMSCU(fd.Entity("FDSCU", "127.0.0.1", 0))
        results = list(scu.store(remote, [args.dir]))
        elapsed = time.perf_counter() - t0
    except _MISSING as e:
        unavailable(f"DICOMSCU.store: {type(e).__name__}: {e}")
    ok = sum(1 for r in results if getattr(r, "status", None) == 0x0000)
    reasons = sorted({str(getattr(r, "reason", "")) for r in results if getattr(r, "status", None) != 0x0000})
    emit({"elapsed": elapsed, "sent": len(results), "ok": ok, "failed": len(results) - ok,
          "reasons": reasons[:3]})


def fastdimse_find(args) -> None:
    fd = _fastdimse()
    if not callable(getattr(fd.DICOMSCU, "find", None)):
        unavailable("DICOMSCU.find is missing")
    ident = _find_identifier(args)
    try:
        t0 = time.perf_counter()
        scu = fd.DICOMSCU(fd.Entity("FDSCU", "127.0.0.1", 0))
        matches = sum(1 for _ in scu.find(fd.Entity(args.called, "127.0.0.1", args.port), ident,
                                          level="IMAGE", root="study"))
        elapsed = time.perf_counter() - t0
    except _MISSING as e:
        unavailable(f"DICOMSCU.find: {type(e).__name__}: {e}")
    emit({"elapsed": elapsed, "matches": matches})


def fastdimse_move(args) -> None:
    fd = _fastdimse()
    if not callable(getattr(fd.DICOMSCU, "move", None)):
        unavailable("DICOMSCU.move is missing")
    from pydicom.dataset import Dataset

    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.StudyInstanceUID = args.study.split("\\")
    try:
        t0 = time.perf_counter()
        scu = fd.DICOMSCU(fd.Entity("FDSCU", "127.0.0.1", 0))
        rsp = scu.move(fd.Entity(args.called, "127.0.0.1", args.port), ident, args.dest, level="STUDY")
        elapsed = time.perf_counter() - t0
    except _MISSING as e:
        unavailable(f"DICOMSCU.move: {type(e).__name__}: {e}")
    emit({"elapsed": elapsed, "status": getattr(rsp, "status", None),
          "completed": getattr(rsp, "completed", None), "failed": getattr(rsp, "failed", None)})


def fastdimse_echo(args) -> None:
    fd = _fastdimse()
    try:
        scp = fd.DICOMSCP(fd.Entity("FDSCP", "127.0.0.1", args.port))
        scp.listen_for_incoming_associations()
    except _MISSING as e:
        unavailable(f"DICOMSCP: {type(e).__name__}: {e}")
    try:
        scu = fd.DICOMSCU(fd.Entity("FDSCU", "127.0.0.1", 0))
        try:
            assoc = scu.associate(fd.Entity("FDSCP", "127.0.0.1", scp.port))
        except _MISSING as e:
            unavailable(f"DICOMSCU.associate: {type(e).__name__}: {e}")
        ok = 0
        with assoc:
            t0 = time.perf_counter()
            for _ in range(args.n):
                ok += assoc.echo().status == 0x0000
            elapsed = time.perf_counter() - t0
    finally:
        scp.stop()
    emit({"elapsed": elapsed, "n": args.n, "ok": ok})


def probe(args) -> None:
    """Which fastdimse rows can run. Never exits non-zero."""
    res: dict[str, object] = {}
    try:
        import fastdimse as fd
        from fastdimse import DICOMSCP, DICOMSCU, Entity  # noqa: F401
        res["version"] = getattr(fd, "__version__", "?")
        res["store"] = _store_api_missing(fd) or True
        res["echo"] = True if callable(getattr(DICOMSCU, "associate", None)) else "DICOMSCU.associate is missing"
    except _MISSING as e:
        why = f"import fastdimse: {type(e).__name__}: {e}"
        res.update(store=why, echo=why)
    emit(res)


KINDS = {
    "pynetdicom-store": pynetdicom_store,
    "pynetdicom-echo": pynetdicom_echo,
    "pynetdicom-qr-load": pynetdicom_qr_load,
    "pynetdicom-find": pynetdicom_find,
    "fastdimse-scp": fastdimse_scp,
    "fastdimse-store": fastdimse_store,
    "fastdimse-echo": fastdimse_echo,
    "fastdimse-find": fastdimse_find,
    "fastdimse-move": fastdimse_move,
    "probe": probe,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="benchmark peers")
    ap.add_argument("kind", choices=sorted(KINDS))
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", help="files to send")
    ap.add_argument("--out", help="storage folder of the SCP")
    ap.add_argument("--sop-class", action="append", default=[])
    ap.add_argument("--aet", default="FDSCP")
    ap.add_argument("--called", default="FDSCP", help="called AE title")
    ap.add_argument("--known", action="append", default=[], help="AE:port a fastdimse SCP may move to")
    ap.add_argument("--plain", action="store_true", help="storage only, no Q/R index")
    ap.add_argument("--study", help="StudyInstanceUID (find), or UIDs joined by \\ (move)")
    ap.add_argument("--series", help="SeriesInstanceUID (find)")
    ap.add_argument("--dest", help="move destination AE title")
    ap.add_argument("--db", help="SQLite file of pynetdicom's qrscp (pynetdicom-qr-load)")
    ap.add_argument("--nodelay", action="store_true", help="pynetdicom: set TCP_NODELAY (patch)")
    ap.add_argument("--n", type=int, default=1000, help="echoes")
    args = ap.parse_args(argv)
    KINDS[args.kind](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
