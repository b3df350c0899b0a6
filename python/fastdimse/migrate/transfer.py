"""One study from the source to the destination: :func:`transfer_study`.

- ``move``: a C-MOVE of the study from the source node straight to the destination AE
  (which the source must know).
- ``relay`` and ``get``: in :mod:`fastdimse.migrate.relay` (imported only for them).
- A folder source: its files, grouped by StudyInstanceUID, are C-STOREd to a destination
  node, or copied into a destination folder.

What comes back is a :class:`~fastdimse.migrate.model.TransferOutcome`; whether the study
arrived complete is decided afterwards by counting (:mod:`fastdimse.migrate.verify`).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .model import StudyRecord, TransferContext, TransferOutcome

__all__ = ["TransferContext", "transfer_study", "outcome_of_error", "status_reason", "is_folder"]

log = logging.getLogger("fastdimse.migrate")

MODES = ("move", "relay", "get")


def is_folder(endpoint) -> bool:
    return isinstance(endpoint, (str, os.PathLike))


_STATUS_WORDS = {
    0xA700: "out of resources", 0xA701: "out of resources: number of matches",
    0xA702: "out of resources: sub-operations", 0xA801: "move destination unknown",
    0xA900: "identifier does not match SOP class", 0xB000: "sub-operations complete, some failed or warned",
    0xC000: "unable to process", 0xFE00: "cancelled", 0x0122: "SOP class not supported",
    0x0124: "not authorized",
}


def status_reason(status: int, comment: str | None = None) -> str:
    """``0xA702 out of resources: sub-operations (comment)``."""
    words = _STATUS_WORDS.get(status)
    if words is None:
        words = {0xA7: "out of resources", 0xC0: "unable to process"}.get(status >> 8, "failure")
    return f"0x{status:04X} {words}" + (f" ({comment})" if comment else "")


def transient_status(status: int) -> bool:
    """A status worth retrying after a while: out of resources (A7xx), unable to process (Cxxx)."""
    return (status & 0xFF00) == 0xA700 or (status & 0xF000) == 0xC000


def outcome_of_error(exc: BaseException) -> TransferOutcome:
    """A transfer that raised: no counts, the error as the reason, transient when it is
    a timeout, an abort, a refused connection or a transient rejection."""
    from ..errors import AssociationRejected, NoAcceptedContext

    transient = True
    if isinstance(exc, AssociationRejected):
        transient = getattr(exc, "result", 0) == 2
    elif isinstance(exc, NoAcceptedContext):
        transient = False
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return TransferOutcome(0, 0, 0, [], [text], None, transient)


def transfer_study(ctx: TransferContext, study: StudyRecord) -> TransferOutcome:
    """Send one study; never raises for what the network or the peers did (that is in the
    outcome), only for programming errors."""
    from ..errors import DicomError

    try:
        if is_folder(ctx.source):
            return _from_folder(ctx, study)
        if ctx.mode == "move":
            return _move(ctx, study)
        if ctx.mode in ("relay", "get"):
            # The relay and get modes (the catcher, staging, the onward C-STORE) live in relay.py.
            if ctx.mode == "relay":
                from .relay import relay_study

                return relay_study(ctx, study)
            from .relay import get_study

            return get_study(ctx, study)
        raise ValueError(f"unknown mode {ctx.mode!r}: choose one of {', '.join(MODES)}")
    except DicomError as exc:
        return outcome_of_error(exc)
    except OSError as exc:
        return TransferOutcome(0, 0, 0, [], [f"{type(exc).__name__}: {exc}"], None, True)


def _move(ctx: TransferContext, study: StudyRecord) -> TransferOutcome:
    if is_folder(ctx.dest):
        raise ValueError("move mode needs a destination node (a folder destination: --mode get)")
    dest_ae = ctx.dest_ae or ctx.dest.ae_title
    rsp = ctx.scu.move(ctx.source, {"StudyInstanceUID": study.study_uid}, dest_ae, level="STUDY")
    reasons = []
    if rsp.status != 0x0000:
        reasons.append(status_reason(rsp.status, rsp.error_comment))
    if rsp.failed:
        reasons.append(f"{rsp.failed} sub-operation(s) failed at {dest_ae}")
    return TransferOutcome(rsp.completed, rsp.failed, rsp.warning, list(rsp.failed_sop_instance_uids), reasons,
                           rsp.status, transient_status(rsp.status))


def _from_folder(ctx: TransferContext, study: StudyRecord) -> TransferOutcome:
    from .verify import folder_index

    files = folder_index(ctx.source).studies().get(study.study_uid, [])
    if not files:
        return TransferOutcome(0, 0, 0, [], [f"no file of study {study.study_uid} in {ctx.source}"], None, False)
    if is_folder(ctx.dest):
        return _copy(files, Path(ctx.dest), study)
    summary = ctx.scu.store(ctx.dest, files, parallel=max(1, ctx.parallel), window=ctx.window, results="summary")
    failed_uids = [f.sop_instance_uid for f in summary if f.sop_instance_uid]
    reasons = sorted({f"{f.reason}" for f in summary if f.reason})
    return TransferOutcome(summary.completed, summary.failed, summary.warning, failed_uids, reasons, None,
                           False)


def _copy(files: list[str], dest: Path, study: StudyRecord) -> TransferOutcome:
    """Copy a study's files into ``dest/<StudyInstanceUID>/`` (through a temporary name, so
    a crash leaves no half file under the final name)."""
    import hashlib

    target = dest / study.study_uid
    target.mkdir(parents=True, exist_ok=True)
    done = 0
    for path in files:
        # Named after the source path: a second copy (a resumed run) replaces the first.
        tag = hashlib.sha1(os.fsencode(os.path.abspath(path))).hexdigest()[:10]
        final = target / f"{tag}_{os.path.basename(path)}"
        tmp = final.with_name(final.name + ".part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, final)
        done += 1
    return TransferOutcome(done, 0, 0, [], [], None, False)
