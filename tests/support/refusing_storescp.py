"""A pynetdicom storage SCP that refuses the instances of one Modality.

Every storage SOP class is accepted. An instance whose Modality is ``--refuse-modality``
is answered ``--status`` (default 0xA700, out of resources) and not written; any other is
written to ``--out/<SOPInstanceUID>.dcm`` (as received) and answered success. Each
answer is logged as ``answered <SOP UID> 0x....``. Serves until SIGTERM.

Usage: python tests/support/refusing_storescp.py --port N --out DIR [--aet AE]
       [--refuse-modality MR] [--status 0xA700]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from pynetdicom import AE, AllStoragePresentationContexts, evt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--aet", default="REFUSER")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--refuse-modality", default="MR")
    parser.add_argument("--status", default="0xA700")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
    status = int(args.status, 0)

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        uid = str(ds.SOPInstanceUID)
        if str(ds.get("Modality", "")) == args.refuse_modality:
            print(f"answered {uid} 0x{status:04X}", flush=True)
            return status
        path = os.path.join(args.out, f"{uid}.dcm")
        ds.save_as(path + ".part", enforce_file_format=True)
        os.replace(path + ".part", path)
        print(f"answered {uid} 0x0000", flush=True)
        return 0x0000

    ae = AE(ae_title=args.aet)
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax)
    ae.acse_timeout = 10
    ae.dimse_timeout = 10
    server = ae.start_server((args.bind, args.port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    signal.signal(signal.SIGTERM, lambda *a: (server.shutdown(), sys.exit(0)))
    print(f"listening on {args.bind}:{args.port}", flush=True)
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
