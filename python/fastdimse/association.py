"""The Python `Association`: an open association, the operations that run on one
(C-ECHO; C-FIND, C-MOVE, C-GET with :func:`find`, :func:`move`, :func:`get`) and their
result types.

The DIMSE work (requests, pending responses, message IDs, C-CANCEL and the drain after
it, timeouts) is the Rust core's (``service::qr::scu``); here are identifiers (pydicom
Datasets or dicts, encoded and decoded by :mod:`fastdimse.codec`) and result objects.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from . import _core, status
from .entity import Entity, validate_ae_title
from .errors import NoAcceptedContext, QueryFailed
from .sop import LEVELS, UNIQUE_KEYS, sop_class_for

if TYPE_CHECKING:  # pragma: no cover
    from pydicom import Dataset

__all__ = ["Association", "EchoResponse", "PresentationContext", "RetrieveResponse", "find", "move", "get",
           "make_identifier", "image_identifier"]



def _codec():
    """The codec (and with it pydicom), imported on first use: ``import fastdimse``
    stays light."""
    from . import codec

    return codec

log = logging.getLogger("fastdimse")

#: C-CANCEL's final status (PS3.4 C.4.1.1.4).
CANCEL = status.CANCEL


@dataclass(frozen=True)
class EchoResponse:
    """The answer to a C-ECHO."""

    status: int
    message_id_being_responded_to: int

    @property
    def is_success(self) -> bool:
        return self.status == 0x0000


@dataclass(frozen=True)
class PresentationContext:
    """An accepted presentation context of an association."""

    id: int
    abstract_syntax: str
    transfer_syntax: str
    scu_role: bool = True
    scp_role: bool = False


class Association:
    """An open association, from :meth:`DICOMSCU.associate`.

    Use it as a context manager: leaving the block releases it (A-RELEASE), or aborts it
    if the block raised. Several operations may run on it one after another.
    """

    def __init__(self, core: "_core.Association", remote: Entity):
        self._core = core
        self.remote = remote
        info = core.info()
        self.peer_max_pdu: int = info.peer_max_pdu if info else 0
        self.our_max_pdu: int = info.our_max_pdu if info else 0
        self.peer_implementation_class_uid: str | None = info.peer_implementation_class_uid if info else None
        self.peer_implementation_version_name: str | None = info.peer_implementation_version_name if info else None
        self.accepted_contexts: list[PresentationContext] = [
            PresentationContext(*c) for c in (info.accepted_contexts if info else ())
        ]
        self.rejected_contexts: list[tuple[int, str, int]] = list(info.rejected_contexts if info else ())

    @property
    def is_established(self) -> bool:
        return self._core.is_established

    def echo(self, message_id: int | None = None) -> EchoResponse:
        """Send C-ECHO-RQ and wait for the response (DIMSE timeout)."""
        status, responded = self._core.echo(message_id)
        return EchoResponse(status, responded)

    def release(self) -> None:
        """Orderly release (A-RELEASE-RQ, wait for A-RELEASE-RP)."""
        self._core.release()

    def abort(self) -> None:
        """A-ABORT: ends the association at once."""
        self._core.abort()

    def __enter__(self) -> "Association":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # A generator closed early (a C-FIND stopped by the caller) and a DIMSE failure
        # status (the association itself is fine) end with a release, not an abort.
        if exc_type is None or issubclass(exc_type, (GeneratorExit, QueryFailed)):
            self.release()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = "established" if self.is_established else "closed"
        return f"<Association with {self.remote.ae_title}@{self.remote.ip_address}:{self.remote.port} {state}>"


@dataclass
class RetrieveResponse:
    """The final response of a C-MOVE or C-GET, with its sub-operation counts."""

    message_id_being_responded_to: int
    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    failed_sop_instance_uids: list[str] = field(default_factory=list)
    error_comment: str | None = None

    @property
    def is_success(self) -> bool:
        return self.status == 0x0000

    @classmethod
    def from_core(cls, rsp: "_core.Response") -> "RetrieveResponse":
        """From a response as the core read it (counts absent from it are 0)."""
        return cls(
            message_id_being_responded_to=rsp.message_id_being_responded_to,
            status=rsp.status,
            completed=rsp.completed or 0,
            failed=rsp.failed or 0,
            warning=rsp.warning or 0,
            remaining=rsp.remaining or 0,
            failed_sop_instance_uids=rsp.failed_sop_instance_uids,
            error_comment=rsp.error_comment,
        )


def make_identifier(identifier: "Dataset | Mapping[str, Any] | None", level: str) -> "Dataset":
    """A copy of ``identifier`` (Dataset or dict) with QueryRetrieveLevel set."""
    from pydicom import Dataset

    level = level.upper()
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    ds = Dataset()
    if isinstance(identifier, Dataset):
        for elem in identifier:
            ds.add(elem)
    elif identifier is not None:
        for k, v in identifier.items():
            setattr(ds, k, "" if v is None else v)
    ds.QueryRetrieveLevel = level
    return ds


def image_identifier(result: "Dataset | Mapping[str, Any]", level: str, root: str = "study") -> "Dataset":
    """The identifier that retrieves ``result`` (a QueryBuilder result) at ``level``:
    the unique keys of that level and of the levels above it."""
    from pydicom import Dataset

    level = level.upper()
    get_ = result.get if isinstance(result, Mapping) else (lambda k, d=None: result.get(k, d))
    ds = Dataset()
    start = 0 if root.lower().startswith("patient") else 1
    for lv in LEVELS[start:LEVELS.index(level) + 1]:
        key = UNIQUE_KEYS[lv]
        value = get_(key)
        if value in (None, ""):
            raise ValueError(f"{key} is needed to retrieve at level {level}")
        setattr(ds, key, value)
    ds.QueryRetrieveLevel = level
    return ds


def _context_ts(assoc: Association, sop: str) -> str:
    for c in assoc.accepted_contexts:
        if c.abstract_syntax == sop and c.scu_role:
            return c.transfer_syntax
    raise NoAcceptedContext(f"the peer accepted no presentation context for {sop}")


def find(assoc: Association, identifier, level: str = "STUDY", root: str = "study", *,
         message_id: int | None = None, priority: int = 0) -> "Iterator[Dataset]":
    """C-FIND on ``assoc``: yields each match as it arrives. Closing the generator
    before the end (``break``) sends C-CANCEL-RQ and reads the rest of the responses."""
    from pydicom import Dataset

    sop = sop_class_for(root, "find")
    ts = _context_ts(assoc, sop)
    ds = make_identifier(identifier, level)
    codec = _codec()
    responses = assoc._core.find(sop, codec.encode(ds, ts), message_id, priority)
    try:
        for rsp in responses:
            data = rsp.identifier
            yield codec.decode(data, ts) if data else Dataset()
    finally:
        if not responses.finished and assoc.is_established:
            try:
                responses.cancel()
            except Exception as e:
                log.warning("C-CANCEL did not end cleanly (%s); aborting the association", e)
                assoc.abort()
    final = responses.final_response
    if final is not None and final.status not in (status.SUCCESS, CANCEL):
        comment = final.error_comment
        raise QueryFailed(f"C-FIND failed with status 0x{final.status:04X}" + (f": {comment}" if comment else ""),
                          final.status, comment)


def move(assoc: Association, identifier, destination_ae: str, level: str = "STUDY",
         root: str = "study", *, message_id: int | None = None, priority: int = 0,
         on_pending: Callable[[RetrieveResponse], None] | None = None) -> RetrieveResponse:
    """C-MOVE on ``assoc``; returns when the transfer completed or failed."""
    sop = sop_class_for(root, "move")
    ts = _context_ts(assoc, sop)
    destination = validate_ae_title(destination_ae)
    ds = make_identifier(identifier, level)
    responses = assoc._core.move(sop, _codec().encode(ds, ts), destination, message_id, priority)
    for rsp in responses:
        if on_pending is not None:
            on_pending(RetrieveResponse.from_core(rsp))
    return RetrieveResponse.from_core(responses.final_response)


def get(assoc: Association, identifier, destination_dir: str | os.PathLike, level: str = "STUDY",
        root: str = "study", *, message_id: int | None = None, priority: int = 0,
        on_pending: Callable[[RetrieveResponse], None] | None = None,
        layout: str | None = None, duplicates: str = "overwrite",
        on_stored: Callable[["_core.StoredInstance"], int | None] | None = None) -> RetrieveResponse:
    """C-GET on ``assoc`` (which must have negotiated the SCP role for the storage
    classes): the instances stream into ``destination_dir``; ``on_stored`` sees each
    file written (None keeps the status, an int answers that status instead)."""
    sop = sop_class_for(root, "get")
    ts = _context_ts(assoc, sop)
    ds = make_identifier(identifier, level)
    os.makedirs(destination_dir, exist_ok=True)
    pending_cb = None
    if on_pending is not None:
        def pending_cb(rsp: "_core.Response") -> None:
            on_pending(RetrieveResponse.from_core(rsp))
    rsp = assoc._core.get(sop, _codec().encode(ds, ts), os.fspath(destination_dir), layout=layout,
                          duplicates=duplicates, on_pending=pending_cb, on_stored=on_stored,
                          message_id=message_id, priority=priority)
    return RetrieveResponse.from_core(rsp)
