"""`DICOMSCU`: the service user — it opens associations and sends requests."""

from __future__ import annotations

import logging
import os
import sys
from typing import Callable, Iterable, Sequence

from . import _core, uids
from . import association as _ops
from . import sop
from .association import Association, EchoResponse, PresentationContext
from .entity import Entity
from .tls import TLSConfig, client_context

__all__ = ["DICOMSCU", "Association", "EchoResponse", "PresentationContext", "StoreResult", "StoreStream",
           "StoreSummary"]

log = logging.getLogger("fastdimse")

#: Default largest PDU we accept (bytes): 1 MiB. Larger PDUs mean fewer headers and
#: system calls per data set (dcmtk accepts at most 131072; any peer may send smaller ones).
DEFAULT_MAX_PDU = 1048576


#: The outcome of C-STORE for one instance (``status``, ``reason``, ``sop_instance_uid``,
#: ``path``, ``is_success``...): a record of the core (fields in ``_core.pyi``).
StoreResult = _core.StoreResult

#: What a :meth:`DICOMSCU.store` did, without one object per instance: ``total`` ==
#: ``completed`` + ``warning`` + ``failed``, ``bytes``, ``associations``, ``elapsed``,
#: ``failures`` (the first ``max_failures``; iterating the summary yields them).
StoreSummary = _core.StoreSummary


class _StoreCall:
    """The arguments of one store(), for the core call."""

    def __init__(self, scu: "DICOMSCU", remote: Entity, parallel: int, window: int, lookahead: int,
                 max_failures: int, coerce: list[tuple[int, str | None]] | None = None):
        self.scu, self.remote, self.coerce = scu, remote, coerce or None
        self.parallel, self.window, self.lookahead, self.max_failures = parallel, window, lookahead, max_failures
        self.cancel = _core.StoreCancel()

    def run(self, prepared, progress, *, keep_results: bool) -> tuple[StoreSummary, list[StoreResult] | None]:
        scu, remote = self.scu, self.remote
        return _core.store_instances(
            prepared, host=remote.ip_address, port=remote.port, calling_ae_title=scu.entity.ae_title,
            called_ae_title=remote.ae_title, max_pdu_length=scu.max_pdu_length, parallel=self.parallel,
            connect_timeout=scu.connect_timeout, acse_timeout=scu.acse_timeout,
            dimse_timeout=scu.dimse_timeout, network_timeout=scu.network_timeout,
            on_progress=progress, window=self.window, keep_results=keep_results,
            max_failures=self.max_failures, lookahead=self.lookahead, cancel=self.cancel,
            coerce=self.coerce,
            tls=scu._tls,
        )


_END = object()


class StoreStream:
    """The results of a :meth:`DICOMSCU.store` with ``results="iter"``, as they settle.

    Sending runs in a background thread; results wait in a bounded queue (sending waits
    for a reader that falls behind). After the last one, ``summary`` is the
    :class:`StoreSummary`. ``close()`` (or leaving a ``with`` block, or stopping early)
    cancels what is not sent yet and waits for the sending to end.
    """

    QUEUE = 1024

    def __init__(self, call: _StoreCall, items, on_progress):
        import queue
        import threading

        self._call = call
        self._queue: "queue.Queue" = queue.Queue(self.QUEUE)
        self._error: BaseException | None = None
        self._closed = False
        self.summary: StoreSummary | None = None

        def progress(r: StoreResult) -> None:
            if on_progress is not None:
                on_progress(r)
            self._queue.put(r)

        def work() -> None:
            try:
                self.summary, _ = call.run(map(_store_item, items), progress, keep_results=False)
            except BaseException as e:  # handed to the reader
                self._error = e
            finally:
                self._queue.put(_END)

        self._thread = threading.Thread(target=work, name="fastdimse-store", daemon=True)
        self._thread.start()

    def __iter__(self) -> "StoreStream":
        return self

    def __next__(self) -> StoreResult:
        if self._closed:
            raise StopIteration
        r = self._queue.get()
        if r is _END:
            self._closed = True
            self._thread.join()
            if self._error is not None:
                raise self._error
            raise StopIteration
        return r

    def cancel(self) -> None:
        """Stop before the next instance (those in flight still settle)."""
        self._call.cancel.cancel()

    def close(self) -> None:
        """Cancel what is not sent yet and wait until the sending ends."""
        if self._closed:
            return
        self.cancel()
        while self._queue.get() is not _END:
            pass
        self._closed = True
        self._thread.join()

    def __enter__(self) -> "StoreStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            self._call.cancel.cancel()


def _store_item(item):
    """A path (str/PathLike) or a pydicom Dataset encoded in Rust for the wire."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    import pydicom

    if isinstance(item, pydicom.Dataset):
        from . import codec

        meta = getattr(item, "file_meta", None)
        ts = str(getattr(meta, "TransferSyntaxUID", "") or uids.EXPLICIT_VR_LITTLE_ENDIAN) if meta is not None else uids.EXPLICIT_VR_LITTLE_ENDIAN
        sop_class = str(item.get("SOPClassUID", "") or (getattr(meta, "MediaStorageSOPClassUID", "") if meta is not None else ""))
        sop_instance = str(item.get("SOPInstanceUID", "") or (getattr(meta, "MediaStorageSOPInstanceUID", "") if meta is not None else ""))
        data = codec.encode(item, ts)
        return (f"Dataset {sop_instance}", sop_class, sop_instance, ts, data)
    raise TypeError(f"store() takes file paths, folders or pydicom Datasets, not {type(item).__name__}")


class DICOMSCU:
    """A DICOM service user acting as ``entity`` (its AE title is the calling AE title).

    Timeouts are in seconds, ``None`` waits forever:

    - ``connect_timeout`` (10): TCP connection.
    - ``acse_timeout`` (30): association negotiation and release.
    - ``dimse_timeout`` (30): waiting for each DIMSE response.
    - ``network_timeout`` (60): a send that makes no progress.

    ``max_pdu_length`` (1048576, 1 MiB) is the largest PDU we accept; 0 means no limit.

    ``tls``: a :class:`~fastdimse.tls.TLSConfig` (``ca``, and ``cert``/``key`` for mutual
    TLS) makes every association this SCU opens (echo, find, move, get, store and its
    parallel associations) run over TLS.
    """

    def __init__(
        self,
        entity: Entity,
        *,
        max_pdu_length: int = DEFAULT_MAX_PDU,
        connect_timeout: float | None = 10.0,
        acse_timeout: float | None = 30.0,
        dimse_timeout: float | None = 30.0,
        network_timeout: float | None = 60.0,
        tls: TLSConfig | None = None,
    ):
        if not isinstance(entity, Entity):
            raise TypeError("DICOMSCU needs an Entity")
        self.tls = tls
        self._tls = client_context(tls)
        if not 0 <= max_pdu_length <= 0xFFFFFFFF:
            raise ValueError("max_pdu_length must be 0 (no limit) .. 4294967295")
        self.entity = entity
        self.max_pdu_length = max_pdu_length
        self.connect_timeout = connect_timeout
        self.acse_timeout = acse_timeout
        self.dimse_timeout = dimse_timeout
        self.network_timeout = network_timeout

    def associate(
        self,
        remote: Entity,
        abstract_syntaxes: Iterable[str] | None = None,
        *,
        transfer_syntaxes: Sequence[str] | None = None,
        contexts: Sequence[tuple[str, Sequence[str]]] | None = None,
        roles: Sequence[tuple[str, bool, bool]] = (),
    ) -> Association:
        """Open an association with ``remote``.

        Proposes one presentation context per abstract syntax (default: Verification),
        each with ``transfer_syntaxes`` (default: the uncompressed ones), or exactly the
        ``contexts`` given as (abstract syntax, [transfer syntaxes]). ``roles`` are SCP/SCU
        role selection items (SOP class, scu_role, scp_role).
        """
        if contexts is None:
            ts = list(transfer_syntaxes or uids.UNCOMPRESSED_TRANSFER_SYNTAXES)
            abstracts = list(abstract_syntaxes) if abstract_syntaxes is not None else [uids.VERIFICATION]
            contexts = [(a, ts) for a in abstracts]
        ctx = [(a, list(t)) for a, t in contexts]
        _core.refresh_logging()
        core = _core.Association.request(
            remote.ip_address, remote.port, self.entity.ae_title, remote.ae_title, ctx,
            roles=[(s, bool(u), bool(p)) for s, u, p in roles],
            max_pdu_length=self.max_pdu_length,
            connect_timeout=self.connect_timeout,
            acse_timeout=self.acse_timeout,
            dimse_timeout=self.dimse_timeout,
            network_timeout=self.network_timeout,
            tls=self._tls,
        )
        return Association(core, remote)

    def echo(self, remote: Entity, *, message_id: int | None = None) -> EchoResponse:
        """C-ECHO (Evil DICOM's Ping): associate, echo, release."""
        with self.associate(remote) as assoc:
            return assoc.echo(message_id)

    # Evil DICOM's name for C-ECHO.
    ping = echo

    # --- Query/Retrieve ---------------------------------------------------------------

    def find(self, remote: Entity, identifier=None, level: str = "STUDY", root: str = "study", *,
             message_id: int | None = None):
        """C-FIND: yields each match (a pydicom Dataset) as its pending response arrives.

        ``identifier`` is a Dataset or a dict keyword -> value (empty value = return key);
        QueryRetrieveLevel is set from ``level``. ``root`` is 'study' or 'patient'.
        Stopping the iteration early sends C-CANCEL and ends cleanly. A failure status
        raises :class:`~fastdimse.errors.QueryFailed`.
        """
        sop_class = sop.sop_class_for(root, "find")
        with self.associate(remote, contexts=[(sop_class, list(uids.DEFAULT_TRANSFER_SYNTAXES))]) as assoc:
            yield from _ops.find(assoc, identifier, level, root, message_id=message_id)

    def move(self, remote: Entity, identifier, destination_ae: str, level: str = "STUDY",
             root: str = "study", *, message_id: int | None = None, on_pending=None):
        """C-MOVE: ``remote`` sends the matches to ``destination_ae``. Returns, once the
        transfer completed or failed, a :class:`~fastdimse.association.RetrieveResponse` with
        the status and the completed / failed / warning counts (and failed SOP instance UIDs).
        ``on_pending(response)`` sees each pending response."""
        sop_class = sop.sop_class_for(root, "move")
        with self.associate(remote, contexts=[(sop_class, list(uids.DEFAULT_TRANSFER_SYNTAXES))]) as assoc:
            return _ops.move(assoc, identifier, destination_ae, level, root,
                             message_id=message_id, on_pending=on_pending)

    def send_c_move_image(self, remote: Entity, image, destination_ae: str, **kwargs):
        """C-MOVE of one image (a QueryBuilder image result, or a Dataset/dict with its UIDs)."""
        root = kwargs.pop("root", "study")
        return self.move(remote, _ops.image_identifier(image, "IMAGE", root), destination_ae, "IMAGE", root, **kwargs)

    def send_c_move_series(self, remote: Entity, series, destination_ae: str, **kwargs):
        """C-MOVE of one series (a QueryBuilder series result or a Dataset/dict)."""
        root = kwargs.pop("root", "study")
        return self.move(remote, _ops.image_identifier(series, "SERIES", root), destination_ae, "SERIES", root, **kwargs)

    def send_c_move_study(self, remote: Entity, study, destination_ae: str, **kwargs):
        """C-MOVE of one study (a QueryBuilder study result or a Dataset/dict)."""
        root = kwargs.pop("root", "study")
        return self.move(remote, _ops.image_identifier(study, "STUDY", root), destination_ae, "STUDY", root, **kwargs)

    def get(self, remote: Entity, identifier, destination_dir, level: str = "STUDY", root: str = "study", *,
            sop_classes=None, transfer_syntaxes=None, message_id: int | None = None, on_pending=None,
            layout: str | None = None, duplicates: str = "overwrite", on_stored=None):
        """C-GET: the matches come back on the same association and stream into
        ``destination_dir`` (same layout and guarantees as the storage SCP). Negotiates the
        SCP role for ``sop_classes`` (default: the common storage classes, as many as fit
        in one association) in ``transfer_syntaxes`` (default: the uncompressed ones).
        ``on_stored(StoredInstance)`` sees each file once it is written (as the storage
        SCP's handler does). Returns a :class:`~fastdimse.association.RetrieveResponse`."""
        contexts, roles = sop.get_contexts(root, sop_classes, transfer_syntaxes)
        with self.associate(remote, contexts=contexts, roles=roles) as assoc:
            return _ops.get(assoc, identifier, destination_dir, level, root, message_id=message_id,
                            on_pending=on_pending, layout=layout, duplicates=duplicates, on_stored=on_stored)

    def store(
        self,
        remote: Entity,
        items,
        *,
        on_progress: Callable[[StoreResult], None] | None = None,
        parallel: int = 1,
        window: int = 16,
        results: str = "auto",
        lookahead: int = 1024,
        max_failures: int = 1000,
        coerce=None,
    ):
        """C-STORE every item to ``remote``.

        ``items``: a path, a folder (walked recursively, lazily) or a pydicom Dataset, or
        any iterable of those (a list, a generator: it is pulled as the sending goes, a
        few at a time). Planning streams: only each file's meta group is read, at most
        ``lookahead`` instances ahead of the sending; an association proposes one
        presentation context per SOP class and transfer syntax seen so far (plus the
        uncompressed syntaxes as fall-backs, at most 128 contexts), and an instance of a
        class it did not propose makes the SCU open another association that does.
        Each instance goes in its own syntax when accepted, else transcoded in Rust to
        an accepted uncompressed one; a compressed instance the peer does not accept
        fails alone with a reason. The bytes stream from file to socket in Rust.
        ``parallel`` > 1 sends over that many associations at once. ``window``:
        C-STOREs kept in flight on each association, proposed as an asynchronous
        operations window (PS3.7 D.3.3.3); a peer that does not answer it (dcmtk,
        pynetdicom) gets one at a time. 1 never proposes one. ``on_progress(result)``
        is called as each instance finishes (from a sending thread).

        ``coerce``: elements to set in every instance on the way, e.g.
        ``[("PatientID", "X123"), ((0x0010, 0x0021), "SITE")]`` (keywords, ``(group,
        element)`` or tags; a value as text, or None to delete the element; see
        :mod:`fastdimse.coerce`). The elements before Pixel Data are rewritten in Rust as
        the instance streams (VR from the data dictionary, padded to even length, group
        lengths fixed), the pixel data is sent unchanged from the file, which is never
        written. An instance that cannot be coerced (a deflated data set, a value its VR
        cannot hold) fails with the reason; it is never sent unchanged. ValueError for a
        tag that cannot be coerced at all (group 0002, Pixel Data, a sequence).

        ``results`` says what comes back:

        - ``"list"``: one :class:`StoreResult` per instance, in input order (memory
          grows with the number of instances);
        - ``"summary"``: a :class:`StoreSummary` (counts, bytes, the failures with their
          reasons, at most ``max_failures`` of them); iterating it yields the failures;
        - ``"iter"``: a :class:`StoreStream`, an iterator of :class:`StoreResult` in the
          order they settle (a bounded queue: sending waits for a slow reader), whose
          ``.summary`` is set at the end; leaving its ``with`` block early cancels;
        - ``"auto"`` (default): ``"list"`` when ``items`` is one path or Dataset, a list
          or a tuple (the call forms of earlier versions), ``"summary"`` for any other
          iterable (a generator, an iterator).

        Raises :class:`~fastdimse.errors.AssociationError` /
        :class:`~fastdimse.errors.NetworkError` only when no association at all could be
        established (for ``"iter"``: at the end of the iteration). An exception raised
        by ``items`` itself (or an item of the wrong type) stops the reading; what was
        read before is still sent, then the exception propagates.
        """
        if not 1 <= window <= 0xFFFF:
            raise ValueError("window must be 1 .. 65535")
        if results not in ("auto", "list", "summary", "iter"):
            raise ValueError("results must be 'auto', 'list', 'summary' or 'iter'")
        if lookahead < 1:
            raise ValueError("lookahead must be at least 1")
        # A pydicom Dataset can only be here if pydicom is imported: paths alone never
        # pay for importing it.
        pydicom = sys.modules.get("pydicom")
        single = (str, os.PathLike) + ((pydicom.Dataset,) if pydicom is not None else ())
        if isinstance(items, single):
            items = [items]
        if results == "auto":
            results = "list" if isinstance(items, (list, tuple)) else "summary"
        if coerce is not None:
            from .coerce import normalize

            coerce = normalize(coerce)
        call = _StoreCall(self, remote, parallel, window, lookahead, max_failures, coerce)
        if results == "iter":
            return StoreStream(call, items, on_progress)
        summary, listed = call.run(map(_store_item, items), on_progress, keep_results=(results == "list"))
        if results == "list":
            return listed
        return summary

    def __repr__(self) -> str:
        return f"DICOMSCU({self.entity!r})"
