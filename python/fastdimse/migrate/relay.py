"""The relay and get modes of a migration, and folders as source or destination (issue 12).

``relay``: the source sends the study by C-MOVE to our own storage SCP, the :class:`Catcher`
(or we fetch it by C-GET), into a staging folder; each file goes on to the destination by
C-STORE (parallel associations, the window) *while* the retrieve is still running, and a
staged file is deleted only once the destination acknowledged it (success or warning). A
refused instance keeps its staged file and is reported with its reason. ``get``: C-GET
straight into a destination folder, or relayed as above to a destination node. A folder as
the source: its files grouped by StudyInstanceUID (:func:`folder_studies`), then sent
(:func:`send_folder_study`); originals are never touched.

The transfer returns a :class:`~fastdimse.migrate.model.TransferOutcome`; whether the study
is complete is decided later by counting at the destination (verify.py), never from it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator

from ..entity import Entity
from ..errors import (AssociationAborted, AssociationRejected, DicomError, DicomTimeoutError,
                      NetworkError)
from ..scp import DICOMSCP, StoredInstance
from ..status import category
from .model import StudyRecord, TransferContext, TransferOutcome

__all__ = ["Catcher", "folder_studies", "get_study", "relay_study", "send_folder_study"]

log = logging.getLogger("fastdimse.migrate")

#: Where staged files go, under the staging folder (one folder per study).
STAGE_LAYOUT = "{StudyInstanceUID}/{SOPInstanceUID}.dcm"

_END = object()


# --- the catcher ----------------------------------------------------------------------------

class _Inbox:
    """The instances arriving for one study while it is retrieved. Iterating yields each
    new one (a :class:`StoredInstance`) until :meth:`close`; ``received`` maps SOP Instance
    UID -> the last one stored for it."""

    def __init__(self, study_uid: str):
        self.study_uid = study_uid
        self.received: dict[str, StoredInstance] = {}
        self._queue: queue.Queue = queue.Queue()

    def put(self, stored: StoredInstance) -> None:
        self.received[stored.sop_instance_uid] = stored
        self._queue.put(stored)

    def close(self) -> None:
        self._queue.put(_END)

    def __iter__(self) -> Iterator[StoredInstance]:
        seen: set[str] = set()
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item.sop_instance_uid in seen:  # stored twice: the file is the same path
                continue
            seen.add(item.sop_instance_uid)
            yield item


class Catcher:
    """Our storage SCP receiving the C-MOVE sub-operations of the studies being relayed.

    The engine starts it once per migration (:meth:`start`) and stops it at the end
    (:meth:`stop`). Files land in ``staging_dir/<StudyInstanceUID>/<SOPInstanceUID>.dcm``;
    each is handed to the relay of its study (see :func:`relay_study`). Instances of a study
    that is not being relayed (a late sub-operation of an earlier, timed-out attempt) are
    kept in staging and logged; the next attempt overwrites them.
    """

    def __init__(self) -> None:
        self._scp: DICOMSCP | None = None
        self._lock = threading.Lock()
        self._inboxes: dict[str, _Inbox] = {}
        self.staging_dir: Path | None = None
        self.stray = 0

    def start(self, ae_title: str, host: str = "127.0.0.1", port: int = 0,
              staging_dir: str | os.PathLike | None = None) -> "Catcher":
        """Listen as ``ae_title`` on ``host``:``port`` (0: any free port, see :attr:`port`)."""
        if self._scp is not None:
            raise RuntimeError("the catcher is already started")
        staging = Path(staging_dir) if staging_dir is not None else Path(tempfile.mkdtemp(prefix="fastdimse-staging-"))
        staging.mkdir(parents=True, exist_ok=True)
        self.staging_dir = staging
        scp = DICOMSCP(Entity(ae_title, host, port), storage_dir=staging, layout=STAGE_LAYOUT,
                       on_stored=self._on_stored, query_retrieve=False)
        scp.listen_for_incoming_associations(keep_listener_running=True)
        self._scp = scp
        log.info("catcher %s listening on %s:%d, staging in %s", ae_title, host, scp.port, staging)
        return self

    @property
    def ae_title(self) -> str:
        return self._started().entity.ae_title

    @property
    def port(self) -> int:
        return self._started().port

    @property
    def entity(self) -> Entity:
        """The catcher as a peer (the port actually listened on)."""
        scp = self._started()
        return Entity(scp.entity.ae_title, scp.entity.ip_address, scp.port)

    def _started(self) -> DICOMSCP:
        if self._scp is None:
            raise RuntimeError("the catcher is not started")
        return self._scp

    def _on_stored(self, stored: StoredInstance) -> None:
        with self._lock:
            inbox = self._inboxes.get(stored.study_instance_uid)
            if inbox is None:
                self.stray += 1
        if inbox is None:
            log.warning("catcher: %s of study %s arrived while that study is not being relayed "
                        "(kept in %s)", stored.sop_instance_uid, stored.study_instance_uid, stored.path)
        else:
            inbox.put(stored)
        return None

    def open(self, study_uid: str) -> _Inbox:
        """Route what arrives for ``study_uid`` to a new inbox (one relay per study at a time)."""
        with self._lock:
            if study_uid in self._inboxes:
                raise RuntimeError(f"study {study_uid} is already being relayed")
            inbox = self._inboxes[study_uid] = _Inbox(study_uid)
        return inbox

    def close(self, study_uid: str) -> None:
        with self._lock:
            inbox = self._inboxes.pop(study_uid, None)
        if inbox is not None:
            inbox.close()

    def stop(self) -> None:
        """Stop listening and close every live association. Idempotent."""
        scp, self._scp = self._scp, None
        if scp is not None:
            scp.close()

    def __enter__(self) -> "Catcher":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- outcome bookkeeping ----------------------------------------------------------------------

def _is_transient_error(e: BaseException) -> bool:
    """Worth retrying: timeouts, lost connections, aborts, a transient rejection."""
    if isinstance(e, AssociationRejected):
        return e.result == 2
    return isinstance(e, (DicomTimeoutError, NetworkError, AssociationAborted, TimeoutError, ConnectionError))


def _is_transient_status(status: int | None) -> bool:
    """A7xx (out of resources) and Cxxx (unable to process) are worth retrying (a bounded
    number of times, by the engine); other failures are not."""
    return status is not None and (0xA700 <= status <= 0xA7FF or 0xC000 <= status <= 0xCFFF)


_TRANSIENT_REASON = re.compile(r"no association|timed? ?out|abort|connection|refused|reset", re.I)


def _status_words(status: int | None, reason: str | None) -> str:
    if status is None:
        return f"not sent: {reason or 'unknown reason'}"
    return f"0x{status:04X} {reason}" if reason else f"0x{status:04X}"


class _Tally:
    """What the destination said about each instance, and what never got that far."""

    def __init__(self) -> None:
        self.completed = 0
        self.warning = 0
        self.failed: dict[str, str] = {}  # SOP Instance UID -> reason
        self.extra_failed = 0  # failures the retrieve counted without naming them
        self.acked: set[str] = set()
        self.reasons: list[str] = []
        self.transient = False
        self.status: int | None = None

    def reason(self, words: str, *, transient: bool = False) -> None:
        if words not in self.reasons:
            self.reasons.append(words)
        self.transient = self.transient or transient

    def fail(self, uid: str, words: str, *, transient: bool = False) -> None:
        self.failed.setdefault(uid, words)
        self.reason(words, transient=transient)

    def settle(self, result) -> bool:
        """One C-STORE result; True when the destination acknowledged it."""
        cat = category(result.status) if result.status is not None else "failure"
        if cat == "success":
            self.completed += 1
        elif cat == "warning":
            self.warning += 1
        else:
            words = _status_words(result.status, result.reason)
            transient = _is_transient_status(result.status) or (
                result.status is None and bool(_TRANSIENT_REASON.search(result.reason or "")))
            self.fail(result.sop_instance_uid, words, transient=transient)
            return False
        self.acked.add(result.sop_instance_uid)
        self.failed.pop(result.sop_instance_uid, None)
        return True

    def outcome(self) -> TransferOutcome:
        return TransferOutcome(completed=self.completed, failed=len(self.failed) + self.extra_failed,
                               warning=self.warning, failed_uids=list(self.failed), reasons=list(self.reasons),
                               status=self.status, transient=self.transient)


def _retrieve_outcome(tally: _Tally, rsp, received: set[str]) -> None:
    """Fold the final C-MOVE / C-GET response in: what the source failed to deliver."""
    tally.status = rsp.status
    cat = category(rsp.status)
    if cat not in ("success", "warning"):
        words = f"retrieve 0x{rsp.status:04X}" + (f" {rsp.error_comment}" if rsp.error_comment else "")
        tally.reason(words, transient=_is_transient_status(rsp.status))
    named = [u for u in rsp.failed_sop_instance_uids if u not in received]
    for uid in named:
        tally.fail(uid, f"not retrieved (retrieve status 0x{rsp.status:04X})",
                   transient=_is_transient_status(rsp.status))
    tally.extra_failed += max(0, rsp.failed - len(rsp.failed_sop_instance_uids))
    if tally.extra_failed:
        tally.reason(f"the source counted {rsp.failed} failed sub-operations", transient=False)


# --- the onward leg ---------------------------------------------------------------------------

def _store_kwargs(ctx: TransferContext) -> dict:
    """The coercion keyword for DICOMSCU.store, when there is coercion to do. Never drops
    it: coercion rewrites on the C-STORE path, so a folder destination (a file copy)
    refuses it with NotImplementedError."""
    if not ctx.coerce:
        return {}
    if isinstance(ctx.dest, Path):
        raise NotImplementedError("tag coercion (--set/--map) into a folder destination is not implemented; "
                                  "send to a DICOM node instead")
    return {"coerce": list(ctx.coerce)}


def _safe(value: str) -> str:
    """One path component from a peer-given value (nothing can climb out of the folder)."""
    cleaned = re.sub(r"[^0-9A-Za-z._-]", "_", value.strip()) or "UNKNOWN"
    return "_" + cleaned if cleaned.strip(".") == "" else cleaned


def _folder_path(root: Path, patient_id: str, study_uid: str, series_uid: str, sop_uid: str) -> Path:
    """Where an instance goes in a destination folder (the storage SCP's default layout)."""
    return root / _safe(patient_id) / _safe(study_uid) / _safe(series_uid) / f"{_safe(sop_uid)}.dcm"


def _place(src: str | os.PathLike, dst: Path, *, move: bool) -> None:
    """Put ``src`` at ``dst`` durably and atomically (a temporary name, fsync, rename)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if move:
        try:
            os.replace(src, dst)
            return
        except OSError:  # another file system: copy, then remove the staged file
            pass
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    if move:
        os.unlink(src)


def _unlink(path: str | None) -> None:
    """Delete a staged file the destination acknowledged (already gone is fine)."""
    with contextlib.suppress(FileNotFoundError, TypeError):
        os.unlink(path)  # type: ignore[arg-type]  # None (no path) is a TypeError


def _node(endpoint: Entity | Path, role: str) -> Entity:
    if isinstance(endpoint, Path):
        raise ValueError(f"this transfer needs a DICOM node as the {role}, not the folder {endpoint}")
    return endpoint


def _store_to_node(ctx: TransferContext, items, tally: _Tally, *, on_acked: Callable[[str | None], None],
                   kwargs: dict) -> None:
    """C-STORE ``items`` (paths, pulled lazily) to ``ctx.dest``, settling each result as it
    comes (``on_progress``, from the sending threads: a lock keeps the tally whole). Not
    ``results="iter"``: handing each result through its queue to another thread cost ~80 us
    an instance, as much as the whole C-STORE on loopback."""
    lock = threading.Lock()

    def settle(r) -> None:
        with lock:
            acked = tally.settle(r)
        if acked:
            on_acked(r.path)

    try:
        ctx.scu.store(_node(ctx.dest, "destination"), items, parallel=ctx.parallel, window=ctx.window,
                      results="summary", on_progress=settle, max_failures=1, **kwargs)
    except DicomError as e:  # no association at all: every instance was reported not sent
        tally.reason(f"destination: {e}", transient=_is_transient_error(e))


def _forward(ctx: TransferContext, inbox: _Inbox, tally: _Tally, kwargs: dict) -> None:
    """Send each instance of ``inbox`` on as it arrives; delete each staged file once the
    destination acknowledged it."""
    if isinstance(ctx.dest, Path):
        for stored in inbox:
            dst = _folder_path(ctx.dest, stored.patient_id, stored.study_instance_uid,
                               stored.series_instance_uid, stored.sop_instance_uid)
            try:
                _place(stored.path, dst, move=True)
            except OSError as e:
                tally.fail(stored.sop_instance_uid, f"cannot write {dst}: {e.strerror or e}")
                continue
            tally.completed += 1
            tally.acked.add(stored.sop_instance_uid)
        return
    _store_to_node(ctx, (s.path for s in inbox), tally, on_acked=_unlink, kwargs=kwargs)


def _retrieve_and_forward(ctx: TransferContext, inbox: _Inbox, retrieve: Callable[[], object],
                          done: Callable[[], None]) -> TransferOutcome:
    """Run ``retrieve`` (a C-MOVE or C-GET filling ``inbox``) in a thread while the onward
    leg sends what arrives; ``done`` closes the inbox once the retrieve is over."""
    kwargs = _store_kwargs(ctx)
    tally = _Tally()
    box: dict = {}

    def run() -> None:
        try:
            box["rsp"] = retrieve()
        except BaseException as e:  # handed to the caller below
            box["error"] = e
        finally:
            done()

    thread = threading.Thread(target=run, name=f"fastdimse-retrieve-{inbox.study_uid}", daemon=True)
    thread.start()
    try:
        _forward(ctx, inbox, tally, kwargs)
    finally:
        thread.join()
    error = box.get("error")
    if error is not None:
        if not isinstance(error, DicomError):
            raise error
        tally.reason(f"source: {error}", transient=_is_transient_error(error))
    received = set(inbox.received)
    if "rsp" in box:
        _retrieve_outcome(tally, box["rsp"], received)
    # Received but never acknowledged nor refused (the onward leg stopped early).
    for uid in received - tally.acked - set(tally.failed):
        tally.fail(uid, "received, not sent on (kept in staging)", transient=True)
    for uid, words in tally.failed.items():
        stored = inbox.received.get(uid)
        if stored is not None and os.path.exists(stored.path):
            log.warning("%s not migrated (%s); its staged file is kept: %s", uid, words, stored.path)
    return tally.outcome()


def _identifier(study: StudyRecord) -> dict:
    return {"StudyInstanceUID": study.study_uid}


def _staging(ctx: TransferContext, staging: str | os.PathLike | None) -> Path:
    if staging is not None:
        return Path(staging)
    if ctx.catcher is not None and ctx.catcher.staging_dir is not None:
        return ctx.catcher.staging_dir
    return Path(tempfile.gettempdir()) / "fastdimse-staging"


def relay_study(ctx: TransferContext, study: StudyRecord, *, use_get: bool = False,
                staging: str | os.PathLike | None = None) -> TransferOutcome:
    """Relay one study: C-MOVE to the catcher (``ctx.catcher``, whose AE title the source
    must know) or, with ``use_get``, C-GET into the staging folder; then C-STORE onward to
    ``ctx.dest`` (or into it, when it is a folder) while the retrieve runs."""
    _store_kwargs(ctx)  # refuse coercion it cannot do before anything is retrieved
    source = _node(ctx.source, "source (a folder goes by send_folder_study)")
    if use_get:
        where = _staging(ctx, staging)
        inbox = _Inbox(study.study_uid)

        def on_stored(stored: StoredInstance) -> None:
            inbox.put(stored)

        def retrieve():
            return ctx.scu.get(source, _identifier(study), where, level="STUDY", layout=STAGE_LAYOUT,
                               on_stored=on_stored)

        return _retrieve_and_forward(ctx, inbox, retrieve, inbox.close)
    catcher = ctx.catcher
    if catcher is None:
        raise ValueError("relay by C-MOVE needs the catcher (TransferContext.catcher)")
    inbox = catcher.open(study.study_uid)

    def move():
        return ctx.scu.move(source, _identifier(study), catcher.ae_title, level="STUDY")

    outcome = _retrieve_and_forward(ctx, inbox, move, lambda: catcher.close(study.study_uid))
    if outcome.status == 0xA801:
        outcome.reasons.append(f"the source does not know the catcher's AE title {catcher.ae_title} "
                               f"(configure it as a move destination: {catcher.entity.ip_address}:{catcher.port})")
    return outcome


def get_study(ctx: TransferContext, study: StudyRecord, *,
              staging: str | os.PathLike | None = None) -> TransferOutcome:
    """C-GET one study straight into a destination folder, or into staging and then by
    C-STORE to a destination node (as :func:`relay_study` with ``use_get``)."""
    if not isinstance(ctx.dest, Path):
        return relay_study(ctx, study, use_get=True, staging=staging)
    _store_kwargs(ctx)
    source = _node(ctx.source, "source")
    tally = _Tally()
    received: set[str] = set()
    try:
        rsp = ctx.scu.get(source, _identifier(study), ctx.dest, level="STUDY",
                          on_stored=lambda s: received.add(s.sop_instance_uid))
    except DicomError as e:
        tally.reason(f"source: {e}", transient=_is_transient_error(e))
        tally.completed = len(received)
        return tally.outcome()
    tally.completed, tally.warning = len(received), 0
    _retrieve_outcome(tally, rsp, received)
    return tally.outcome()


# --- a folder as the source -------------------------------------------------------------------

def _is_part10(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _walk(root: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield os.path.join(dirpath, name)


def folder_studies(path: str | os.PathLike) -> dict[str, list[Path]]:
    """The Part-10 files under ``path`` grouped by StudyInstanceUID (only the meta group and
    the header before the pixel data are read). Files that are not DICOM, or have no
    StudyInstanceUID, are skipped and logged."""
    import pydicom

    studies: dict[str, list[Path]] = {}
    for name in _walk(Path(path)):
        if not _is_part10(name):
            log.debug("not a DICOM file, skipped: %s", name)
            continue
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
            uid = str(ds.get("StudyInstanceUID", "") or "").strip()
        except Exception as e:  # a damaged file: logged, the others go on
            log.warning("cannot read %s, skipped: %s", name, e)
            continue
        if not uid:
            log.warning("no StudyInstanceUID in %s, skipped", name)
            continue
        studies.setdefault(uid, []).append(Path(name))
    return studies


def _header(path: Path) -> tuple[str, str, str, str]:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True,
                         specific_tags=["PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
    return tuple(str(ds.get(k, "") or "") for k in  # type: ignore[return-value]
                 ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"))


def send_folder_study(ctx: TransferContext, study: StudyRecord, files: list[Path]) -> TransferOutcome:
    """Send the ``files`` of one study of a folder source to ``ctx.dest`` (C-STORE to a node,
    or copied into a destination folder). The source files are never changed or removed."""
    kwargs = _store_kwargs(ctx)
    tally = _Tally()
    if isinstance(ctx.dest, Path):
        for path in files:
            sop = str(path)
            try:
                patient, study_uid, series, sop = _header(path)
                _place(path, _folder_path(ctx.dest, patient, study_uid or study.study_uid, series, sop),
                       move=False)
            except Exception as e:  # unreadable or unwritable: this one fails, the others go on
                tally.fail(sop or str(path), f"cannot copy {path}: {e}")
                continue
            tally.completed += 1
        return tally.outcome()
    _store_to_node(ctx, [os.fspath(p) for p in files], tally, on_acked=lambda _p: None, kwargs=kwargs)
    return tally.outcome()

