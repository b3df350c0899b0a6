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


def unavailable(why: str) -> "NoReturn":  # noqa: F821
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
        for path in files:
            status = assoc.send_c_store(path)
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
        for _ in range(args.n):
            st = assoc.send_c_echo()
            ok += bool(st) and st.Status == 0x0000
        elapsed = time.perf_counter() - t0
        assoc.release()
    finally:
        server.shutdown()
    emit({"elapsed": elapsed, "n": args.n, "ok": ok})


# ---------------------------------------------------------------------- fastdimse
# The API of issue 4 (C-STORE) and of the Foundation issue (associate/echo). Anything
# missing -> "unavailable"; nothing here fakes a figure.

_MISSING = (ImportError, AttributeError, TypeError, NotImplementedError)


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
        scp = fd.DICOMSCP(entity, storage_dir=args.out) if args.out else fd.DICOMSCP(entity)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="benchmark peers")
    ap.add_argument("kind", choices=["pynetdicom-store", "pynetdicom-echo", "fastdimse-scp",
                                     "fastdimse-store", "fastdimse-echo", "probe"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--dir", help="files to send")
    ap.add_argument("--out", help="storage folder of the SCP")
    ap.add_argument("--sop-class", action="append", default=[])
    ap.add_argument("--aet", default="FDSCP")
    ap.add_argument("--called", default="FDSCP", help="called AE title")
    ap.add_argument("--nodelay", action="store_true", help="pynetdicom: set TCP_NODELAY (patch)")
    ap.add_argument("--n", type=int, default=1000, help="echoes")
    args = ap.parse_args(argv)
    {
        "pynetdicom-store": pynetdicom_store,
        "pynetdicom-echo": pynetdicom_echo,
        "fastdimse-scp": fastdimse_scp,
        "fastdimse-store": fastdimse_store,
        "fastdimse-echo": fastdimse_echo,
        "probe": probe,
    }[args.kind](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
