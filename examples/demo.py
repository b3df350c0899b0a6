"""fastdimse demo (``make demo``): an SCP, echoed by our SCU and by dcmtk's echoscu.

Starts a DICOMSCP on a free loopback port, sends it C-ECHOs from fastdimse's
DICOMSCU (one-shot, then several on one association) and from dcmtk's ``echoscu``
in a subprocess, prints what happened, stops everything it started, and exits
non-zero if anything failed.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import time

from fastdimse import DICOMSCP, DICOMSCU, Entity

HOST = "127.0.0.1"
SCP_AE = "FASTDIMSE"
SCU_AE = "DEMO_SCU"
DCMTK_AE = "DCMTK_ECHOSCU"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def status_text(status: int) -> str:
    return f"0x{status:04X} ({'Success' if status == 0 else 'FAILED'})"


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="  log %(levelname)s %(name)s: %(message)s")
    failures: list[str] = []

    scp_entity = Entity(SCP_AE, HOST, free_port())
    scp = DICOMSCP(scp_entity)
    scp.listen_for_incoming_associations(keep_listener_running=True)
    try:
        print("fastdimse demo: C-ECHO (Verification) both ways over loopback")
        print(f"  SCP  {scp_entity.ae_title} listening on {scp_entity.ip_address}:{scp_entity.port}")

        # 1. Our SCU, one association per echo.
        scu = DICOMSCU(Entity(SCU_AE, HOST, 0))
        t0 = time.perf_counter()
        resp = scu.echo(scp_entity)
        took = time.perf_counter() - t0
        print(f"  fastdimse  {SCU_AE} -> {SCP_AE}: status {status_text(resp.status)}, "
              f"{ms(took)} round trip (associate + echo + release)")
        if resp.status != 0:
            failures.append("one-shot echo from DICOMSCU")

        # 2. Our SCU, several echoes on one association.
        times, statuses = [], []
        with scu.associate(scp_entity) as assoc:
            for _ in range(5):
                t0 = time.perf_counter()
                statuses.append(assoc.echo().status)
                times.append(time.perf_counter() - t0)
            peer_pdu = assoc.peer_max_pdu
        print(f"  fastdimse  {SCU_AE} -> {SCP_AE}: 5 echoes on one association "
              f"(peer max PDU {peer_pdu}): statuses {' '.join(f'0x{s:04X}' for s in statuses)}, "
              f"{ms(min(times))} fastest, {ms(sum(times) / len(times))} mean")
        if any(s != 0 for s in statuses):
            failures.append("echoes on one association from DICOMSCU")

        # 3. dcmtk's echoscu, a separate process.
        echoscu = shutil.which("echoscu")
        if echoscu is None:
            print("  dcmtk      echoscu not found on PATH (install dcmtk; make demo does)")
            failures.append("dcmtk echoscu missing")
        else:
            argv = [echoscu, "-v", "-aet", DCMTK_AE, "-aec", SCP_AE, "-to", "10",
                    HOST, str(scp_entity.port)]
            t0 = time.perf_counter()
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, timeout=60)
            took = time.perf_counter() - t0
            ok = done.returncode == 0 and "Received Echo Response (Success)" in done.stdout
            print(f"  dcmtk      {DCMTK_AE} -> {SCP_AE}: echoscu exit {done.returncode}, "
                  f"{'Received Echo Response (Success)' if ok else 'no successful echo'}, "
                  f"{ms(took)} including process start")
            if not ok:
                print("             echoscu said: " + done.stdout.strip().replace("\n", "\n             "))
                failures.append("dcmtk echoscu")
    except Exception as exc:  # report every failure in words, then exit non-zero
        print(f"  FAILED: {type(exc).__name__}: {exc}")
        failures.append(type(exc).__name__)
    finally:
        scp.stop()
        print(f"  SCP  stopped")

    if failures:
        print(f"demo FAILED: {', '.join(failures)}")
        return 1
    print("demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
