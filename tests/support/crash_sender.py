"""DICOMSCU.store of a folder, writing each acknowledged SOP Instance UID to a file
as soon as its success response arrives (one line each, flushed), for the kill tests.

    python crash_sender.py FOLDER PORT AE_TITLE ACK_FILE [WINDOW]
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    folder, port, ae, ack_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    window = int(sys.argv[5]) if len(sys.argv) > 5 else 16
    from fastdimse import DICOMSCU, Entity

    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def progress(result) -> None:
        if result.is_success:
            os.write(fd, (result.sop_instance_uid + "\n").encode())

    scu = DICOMSCU(Entity("SENDER", "127.0.0.1", 0))
    try:
        scu.store(Entity(ae, "127.0.0.1", port), [folder], on_progress=progress, window=window)
    except Exception as exc:  # the archive was killed: what was acknowledged is on file
        print(f"store ended: {exc}", file=sys.stderr)
    os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
