"""A pynetdicom Verification SCP run as a subprocess by tests/support/peers.py.

pynetdicom's own ``echoscp`` app has no options to reject associations, so the
tests start this script when they need a pynetdicom peer that checks the called
AE title (``--require-called-ae``) or only accepts some calling AE titles
(``--allow-calling AE``, repeatable). It serves until SIGTERM.

With ``--store-fail-modality MR`` it is also a storage SCP (every storage SOP class)
that answers ``--store-fail-status`` (0xA700) for instances of that Modality and success
for the others, writing nothing; each answer is logged as ``answered <SOP UID> 0x....``.

Usage: python tests/support/pynetdicom_scp.py --port N [--aet AE] [--bind 127.0.0.1]
       [--require-called-ae] [--allow-calling AE ...]
       [--store-fail-modality MR [--store-fail-status 0xA700]]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from pynetdicom import AE, AllStoragePresentationContexts, debug_logger, evt  # noqa: F401  (debug_logger kept for manual runs)
from pynetdicom.sop_class import Verification


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--aet", default="PYNDSCP")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--require-called-ae", action="store_true")
    parser.add_argument("--allow-calling", action="append", default=[])
    parser.add_argument("--store-fail-modality", default=None)
    parser.add_argument("--store-fail-status", default="0xA700")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    ae = AE(ae_title=args.aet)
    ae.add_supported_context(Verification)
    handlers = []
    if args.store_fail_modality is not None:
        failure = int(args.store_fail_status, 0)

        def on_store(event):
            ds = event.dataset
            status = failure if str(ds.get("Modality", "")) == args.store_fail_modality else 0x0000
            print(f"answered {ds.SOPInstanceUID} 0x{status:04X}", flush=True)
            return status

        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        handlers.append((evt.EVT_C_STORE, on_store))
    ae.require_called_aet = args.require_called_ae
    ae.require_calling_aet = list(args.allow_calling)
    ae.acse_timeout = 10
    ae.dimse_timeout = 10
    ae.network_timeout = 20

    # SIGTERM (how tests/support/peers.py stops us): shut the server down cleanly.
    def on_term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    print(f"pynetdicom_scp: {args.aet} on {args.bind}:{args.port} "
          f"require_called_ae={args.require_called_ae} allow_calling={args.allow_calling}",
          flush=True)
    server = ae.start_server((args.bind, args.port), block=False, evt_handlers=handlers)
    try:
        signal.pause()
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
