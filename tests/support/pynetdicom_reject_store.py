"""A pynetdicom storage SCP that answers a failure status for some instances, run as a
subprocess by the command-line tests.

It accepts every storage SOP class (uncompressed syntaxes) and answers each C-STORE with
``--status`` (0xA700 by default) when the instance's Modality is ``--fail-modality``,
0x0000 otherwise; it writes nothing. Each answer is logged as
``answered <SOPInstanceUID> 0x....``. Serves until SIGTERM.

Usage: python tests/support/pynetdicom_reject_store.py --port N [--aet AE]
       [--fail-modality MR] [--status 0xA700]
"""

from __future__ import annotations

import argparse
import signal
import sys

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--aet", default="REJECTSCP")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--fail-modality", default="MR")
    parser.add_argument("--status", default="0xA700")
    args = parser.parse_args(argv)
    failure = int(args.status, 0)

    def on_store(event):
        ds = event.dataset
        status = failure if str(ds.get("Modality", "")) == args.fail_modality else 0x0000
        print(f"answered {ds.SOPInstanceUID} 0x{status:04X}", flush=True)
        return status

    ae = AE(ae_title=args.aet)
    ae.add_supported_context(Verification)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax)
    ae.acse_timeout = ae.dimse_timeout = 10
    ae.network_timeout = 20

    def on_term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    print(f"pynetdicom_reject_store: {args.aet} on {args.bind}:{args.port}, "
          f"{args.status} for Modality {args.fail_modality}", flush=True)
    server = ae.start_server((args.bind, args.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        signal.pause()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
