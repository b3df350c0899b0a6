"""`DICOMSCP`: the service provider — it listens and serves associations."""

from __future__ import annotations

import functools
import logging
import os
import threading
from typing import Callable, Iterable, Sequence

from . import _core, uids
from .entity import Entity, validate_ae_title
from .tls import TLSConfig, server_context

__all__ = ["DICOMSCP", "StoredInstance"]

#: The default file layout under the storage folder.
DEFAULT_LAYOUT = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"


#: What the ``on_stored`` handler receives for each instance written to disk (``path``,
#: the UIDs, ``patient_id``, the AE titles, ``dataset_bytes``, ``read_dataset()``): a
#: record of the core (fields in ``_core.pyi``).
StoredInstance = _core.StoredInstance


log = logging.getLogger("fastdimse")


class DICOMSCP:
    """A DICOM service provider listening as ``entity`` (its AE title, address, port).

    - ``supported_abstract_syntaxes``: what it accepts (default: Verification).
    - ``transfer_syntaxes``: accepted for every abstract syntax, in order of preference
      (default: implicit VR LE, explicit VR LE, explicit VR BE).
    - ``require_called_ae`` (True): reject associations whose called AE title is not
      ours (reason 7, "called AE title not recognized").
    - ``allowed_calling_aes``: if given, only these calling AE titles are accepted;
      others are rejected with reason 3, "calling AE title not recognized".
    - ``max_pdu_length`` (1048576, 1 MiB): the largest PDU we accept; 0 means no limit.
    - ``acse_timeout`` (30 s, also the ARTIM timer), ``dimse_timeout`` (30 s),
      ``network_timeout`` (60 s: an association idle that long is aborted).
    - ``max_associations`` (64): served at once; more are rejected as transient.

    Storage (C-STORE SCP) is on when ``storage_dir`` is given:

    - ``storage_sop_classes``: accepted storage SOP classes (default: every storage SOP
      class of the standard), each with any transfer syntax the peer proposes (its
      first choice is taken, so instances are stored in the syntax they were sent in),
      or only ``storage_transfer_syntaxes`` when given (in that order of preference).
    - Each incoming data set streams into a temporary file in ``storage_dir`` and is
      renamed into place, as a Part-10 file, only once complete; a peer that aborts
      mid-instance leaves nothing behind.
    - ``layout``: the path template under ``storage_dir``, with placeholders
      ``{PatientID}``, ``{StudyInstanceUID}``, ``{SeriesInstanceUID}``,
      ``{SOPInstanceUID}``, ``{SOPClassUID}``; every value is sanitised so nothing a peer
      sends can write outside ``storage_dir``. Default: ``DEFAULT_LAYOUT``.
    - ``duplicates``: when the path already exists — ``"overwrite"`` (default, atomic
      replace, success), ``"keep"`` (existing file kept, new copy dropped, success) or
      ``"reject"`` (existing file kept, status 0x0111 duplicate SOP instance).
    - ``on_stored``: called as ``on_stored(StoredInstance)`` after each file is in place,
      on the association's thread. Return None (keep our status) or a status int; a
      failure status or an exception (answered 0x0110) removes the file.
    - ``fsync`` (False): also sync each file, the folders its rename touched and the
      index commit to disk before the response (power-loss safe). Without it a crash or
      ``kill -9`` of the process still loses nothing acknowledged; a power cut may lose
      the last instances the OS had not written back.

    Acknowledged means findable: with an index, a success C-STORE-RSP goes out only once
    the file is in place and its index row is committed (responses are held while the
    peer keeps sending, so commits are grouped); an index failure answers 0xA700. At
    start the index is reconciled with the folder: files there but not indexed (a run
    killed between the rename and the commit, files copied in) are indexed first.

    Query/Retrieve (C-FIND, C-MOVE, C-GET SCP, Patient and Study Root) is on when a
    back end is there: ``backend`` (any :class:`~fastdimse.qr.QRBackend`), or by default
    a :class:`~fastdimse.qr.SQLiteIndex` in ``storage_dir`` that indexes every instance
    stored by C-STORE (``import_folder()`` adds existing files).

    - ``index``: ``"postgresql://user@host:port/db"`` keeps the index in PostgreSQL
      (:class:`~fastdimse.qr.postgres.PostgresIndex`, needs ``psycopg[binary]``), shared
      with other SCP processes or hosts: C-FIND sees what any of them stored; C-MOVE and
      C-GET send the files of this SCP's ``storage_location`` (default: the host name;
      SCPs on one shared storage path give the same name) and refuse, naming the host,
      a retrieve of files stored at another location.
    - ``known_entities``: the C-MOVE destinations, as Entities (or a dict AE title ->
      Entity). A C-MOVE to any other AE title is refused with 0xA801 and nothing is sent.

    ``tls``: a :class:`~fastdimse.tls.TLSConfig` (``cert``, ``key``; ``ca`` and
    ``require_client_cert`` for mutual TLS) serves every association over TLS. A failed
    handshake (an untrusted or expired client certificate, a plaintext peer) is logged
    with its reason and costs that connection only.

    Associations are served in the background, each on its own thread in the Rust core.
    """

    def __init__(
        self,
        entity: Entity,
        *,
        supported_abstract_syntaxes: Iterable[str] | None = None,
        transfer_syntaxes: Sequence[str] | None = None,
        require_called_ae: bool = True,
        allowed_calling_aes: Iterable[str] | None = None,
        max_pdu_length: int = 1048576,
        acse_timeout: float | None = 30.0,
        dimse_timeout: float | None = 30.0,
        network_timeout: float | None = 60.0,
        max_associations: int = 64,
        storage_dir: str | os.PathLike | None = None,
        storage_sop_classes: Iterable[str] | None = None,
        layout: str = DEFAULT_LAYOUT,
        duplicates: str = "overwrite",
        on_stored: Callable[[StoredInstance], int | None] | None = None,
        fsync: bool = False,
        backend=None,
        index: str | None = None,
        storage_location: str | None = None,
        known_entities=None,
        query_retrieve: bool | None = None,
        storage_transfer_syntaxes: Sequence[str] | None = None,
        tls: TLSConfig | None = None,
    ):
        if not isinstance(entity, Entity):
            raise TypeError("DICOMSCP needs an Entity")
        self.tls = tls
        self._tls = server_context(tls)
        if duplicates not in ("overwrite", "keep", "reject"):
            raise ValueError(f"duplicates must be 'overwrite', 'keep' or 'reject', not {duplicates!r}")
        self.entity = entity
        self.storage_dir = os.fspath(storage_dir) if storage_dir is not None else None
        if index is not None and backend is not None:
            raise ValueError("give either index= (a URL) or backend=, not both")
        if index is not None:
            if not str(index).startswith(("postgresql://", "postgres://")):
                raise ValueError(f"index must be a postgresql:// URL, not {index!r}")
            from .qr.postgres import PostgresIndex

            backend = PostgresIndex(str(index), self.storage_dir, location=storage_location)
        owns_backend = backend is None or index is not None
        # Storage contexts are accepted when storing, and also for a Q/R SCP without a
        # storage folder: C-GET sends its sub-operations on them (C-STORE to such an
        # SCP is refused with 0x0122).
        wants_storage = storage_dir is not None or backend is not None or bool(query_retrieve)
        self.storage_sop_classes = (
            list(storage_sop_classes) if storage_sop_classes is not None
            else (uids.storage_sop_classes() if wants_storage else [])
        )
        self.storage_transfer_syntaxes = list(storage_transfer_syntaxes) if storage_transfer_syntaxes else []
        self.layout = layout
        self.duplicates = duplicates
        self.on_stored = on_stored
        self.fsync = fsync
        if isinstance(known_entities, dict):
            self.known_entities = dict(known_entities)
        else:
            self.known_entities = {e.ae_title: e for e in (known_entities or [])}
        if query_retrieve is None:
            query_retrieve = backend is not None or self.storage_dir is not None
        self.query_retrieve = query_retrieve
        if backend is None and query_retrieve:
            if self.storage_dir is None:
                raise ValueError("Query/Retrieve needs a storage_dir (for the default index) or a backend")
            from .qr import SQLiteIndex

            backend = SQLiteIndex(self.storage_dir, synchronous="FULL" if fsync else "NORMAL")
        self.backend = backend
        # An index this SCP opened itself (not a back end handed in) is closed by close().
        self._owned_backend = backend if owns_backend else None
        abstracts = list(supported_abstract_syntaxes) if supported_abstract_syntaxes is not None else [uids.VERIFICATION]
        self.transfer_syntaxes = list(transfer_syntaxes or uids.DEFAULT_TRANSFER_SYNTAXES)
        self.supported_abstract_syntaxes = abstracts
        self.require_called_ae = require_called_ae
        self.allowed_calling_aes = (
            [validate_ae_title(a) for a in allowed_calling_aes] if allowed_calling_aes is not None else None
        )
        self.max_pdu_length = max_pdu_length
        self.acse_timeout = acse_timeout
        self.dimse_timeout = dimse_timeout
        self.network_timeout = network_timeout
        self.max_associations = max_associations
        self._server: _core.Server | None = None
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        """The port actually listened on (differs from ``entity.port`` when that is 0)."""
        return self._server.port if self._server is not None else self.entity.port

    @property
    def is_listening(self) -> bool:
        return self._server is not None and self._server.is_running

    @property
    def active_associations(self) -> int:
        return self._server.active_associations if self._server is not None else 0

    def listen_for_incoming_associations(self, keep_listener_running: bool = True) -> None:
        """Start listening.

        With ``keep_listener_running=True`` (the usual way) this returns at once and the
        SCP serves in the background until :meth:`stop`. With ``False`` it blocks,
        serving, until :meth:`stop` is called from another thread (or Ctrl-C).
        """
        if self._server is None:
            _core.refresh_logging()
            self._stopped.clear()
            contexts = [(a, list(self.transfer_syntaxes)) for a in self.supported_abstract_syntaxes]
            # Storage: any transfer syntax, the requestor's first choice (empty list).
            contexts += [(c, list(self.storage_transfer_syntaxes)) for c in self.storage_sop_classes
                         if c not in self.supported_abstract_syntaxes]
            if self.query_retrieve:
                from .sop import SOP_CLASSES

                contexts += [(uid, list(self.transfer_syntaxes)) for uid in SOP_CLASSES.values()
                             if uid not in self.supported_abstract_syntaxes]
            if self._indexes_on_store() and hasattr(self.backend, "reconcile"):
                # Files in the folder but not in the index (an earlier run killed between
                # the rename and the commit, files copied in) are indexed before any
                # query is answered.
                self.backend.reconcile(self.storage_dir)
            callback = self.on_stored
            index_tags = _index_tags() if self._indexes_on_store() else []
            on_index = self._make_index_callback() if self._indexes_on_store() else None
            self._server = _core.Server(
                self.entity.ip_address, self.entity.port, self.entity.ae_title, contexts,
                require_called_ae=self.require_called_ae,
                allowed_calling_aes=self.allowed_calling_aes,
                max_pdu_length=self.max_pdu_length,
                acse_timeout=self.acse_timeout,
                dimse_timeout=self.dimse_timeout,
                network_timeout=self.network_timeout,
                max_associations=self.max_associations,
                storage_dir=self.storage_dir,
                layout=self.layout,
                duplicates=self.duplicates,
                on_stored=callback,
                fsync=self.fsync,
                qr_provider=_QRBridge(self) if self.query_retrieve else None,
                index_tags=index_tags,
                on_index=on_index,
                tls=self._tls,
            )
            log.info("%s listening on %s:%d", self.entity.ae_title, self.entity.ip_address, self.port)
        if not keep_listener_running:
            try:
                while not self._stopped.wait(0.2):
                    pass
            except KeyboardInterrupt:
                self.stop()

    def _indexes_on_store(self) -> bool:
        return self.storage_dir is not None and any(
            hasattr(self.backend, m) for m in ("add_instances", "add_instance", "add"))

    def _make_index_callback(self):
        """Batches of stored instances from the core's indexer thread -> the index.

        Returns once the batch is committed, with the instances that were not taken:
        ``(path, reason)`` for one that cannot be indexed (it lacks a key the index
        needs; stored and logged), ``(path, reason, True)`` where the back end failed
        (the C-STORE is then answered 0xA700, not success). An exception fails the batch.
        """
        from .qr import InstanceError

        index = self.backend
        add_many = getattr(index, "add_instances", None)
        add_one = getattr(index, "add_instance", None)

        def on_index(batch: list[StoredInstance]) -> list[tuple]:
            items = [(stored.path, _attributes_dict(stored.attributes, stored), stored.transfer_syntax)
                     for stored in batch]
            if add_many is not None:
                return list(add_many(items) or [])
            bad: list[tuple] = []
            for path, attrs, ts in items:
                try:
                    if add_one is not None:
                        add_one(path, attrs, ts)
                    else:  # the QRBackend protocol's add(path, dataset, transfer_syntax)
                        index.add(path, _as_dataset(attrs), ts)
                except InstanceError as e:  # cannot be indexed: stored, logged
                    bad.append((path, str(e)))
                except Exception as e:  # the back end failed: not acknowledged
                    bad.append((path, f"{type(e).__name__}: {e}", True))
            return bad

        return on_index

    def import_folder(self, folder: str | os.PathLike, **kwargs):
        """Index the DICOM files under ``folder`` (they are served where they are)."""
        if self.backend is None or not hasattr(self.backend, "import_folder"):
            raise ValueError("this SCP has no index to import into")
        return self.backend.import_folder(folder, **kwargs)

    def stop(self) -> None:
        """Stop listening and close every live association. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self._stopped.set()

    def close(self) -> None:
        """:meth:`stop`, then close the index this SCP opened (its SQLite or PostgreSQL
        connections); a ``backend=`` handed in stays open. The SCP cannot serve again."""
        self.stop()
        backend, self._owned_backend = getattr(self, "_owned_backend", None), None
        if backend is not None and hasattr(backend, "close"):
            backend.close()

    def __enter__(self) -> "DICOMSCP":
        self.listen_for_incoming_associations(keep_listener_running=True)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = f"listening on port {self.port}" if self.is_listening else "stopped"
        return f"<DICOMSCP {self.entity.ae_title} {state}>"


def _index_tags() -> list[int]:
    from .qr import index as _index

    return sorted(set(int(t) for t in _index._TAG_OF.values()))


_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
_TAG_INFO: dict = {}  # tag -> (keyword, VR, delimiters for decode_bytes or None), or None


def _tag_info(tag: int):
    """(keyword, VR, delimiters) of a header tag, looked up once per tag."""
    try:
        return _TAG_INFO[tag]
    except KeyError:
        pass
    from pydicom.datadict import dictionary_VR, keyword_for_tag

    try:
        kw = keyword_for_tag(tag)
        vr = dictionary_VR(tag) if kw else None
    except KeyError:
        kw = None
    if not kw:
        info = None
    else:
        delimiters = ({0x5C, 0x5E, 0x3D} if vr == "PN" else {0x5C}) if vr in _TEXT_VRS else None
        info = (kw, vr, delimiters)
    _TAG_INFO[tag] = info
    return info


@functools.lru_cache(maxsize=64)
def _encodings(charset: bytes | None) -> tuple:
    """Python codecs of a SpecificCharacterSet value (raw bytes), cached."""
    from pydicom.charset import convert_encodings

    if not charset:
        return tuple(convert_encodings(["ISO_IR 6"]))
    terms = [c.strip() for c in charset.decode("ascii", "replace").split("\\")]
    return tuple(convert_encodings(terms))


def _attributes_dict(attrs: dict, stored: StoredInstance) -> dict:
    """Header values read by the core (raw bytes per tag) as keyword -> str for the index.

    Text in the default repertoire (ASCII without ESC, the same bytes in every
    character set DICOM allows) is decoded directly; anything else goes through
    pydicom's ``decode_bytes`` with the instance's SpecificCharacterSet."""
    charset = attrs.get(0x00080005)
    encodings = None
    out: dict = {"SOPInstanceUID": stored.sop_instance_uid, "SOPClassUID": stored.sop_class_uid,
                 "TransferSyntaxUID": stored.transfer_syntax}
    for tag, raw in attrs.items():
        info = _TAG_INFO[tag] if tag in _TAG_INFO else _tag_info(tag)
        if info is None:
            continue
        kw, vr, delimiters = info
        if delimiters is not None and not (raw.isascii() and 0x1B not in raw):
            from pydicom.charset import decode_bytes

            if encodings is None:
                encodings = list(_encodings(charset))
            value = decode_bytes(raw, encodings, delimiters)
        else:
            value = raw.decode("ascii", "replace")
        if kw not in out:
            out[kw] = value.strip(" \x00")
    if charset:
        out["SpecificCharacterSet"] = charset.decode("ascii", "replace").strip()
    return out


def _as_dataset(attrs: dict):
    """Header values (keyword -> str) as a pydicom Dataset, for a back end's add()."""
    from pydicom import Dataset

    ds = Dataset()
    for k, v in attrs.items():
        if k != "TransferSyntaxUID":
            try:
                setattr(ds, k, v)
            except Exception:  # a value pydicom refuses is left out, not fatal
                log.debug("not passing %s=%r to the back end", k, v)
    return ds


class _QRBridge:
    """What the Rust Q/R SCP calls: identifiers in and out as bytes in the context's
    transfer syntax, files as paths. Exceptions carry a ``status`` (else 0xC000)."""

    def __init__(self, scp: DICOMSCP):
        self.scp = scp
        # RetrieveAETitle in C-FIND answers: the back end learns our AE title when it
        # can take it (optional: older back ends simply do not have the setter).
        setter = getattr(scp.backend, "set_retrieve_ae_title", None)
        if callable(setter):
            setter(scp.entity.ae_title)

    def _ident(self, sop_class: str, identifier: bytes, ts: str):
        from . import codec
        from .sop import ROOT_OF_SOP

        root = ROOT_OF_SOP.get(sop_class)
        if root is None:
            from .qr import IdentifierError

            raise IdentifierError(f"{sop_class} is not a Q/R SOP class")
        return codec.decode(identifier, ts), root

    def find(self, sop_class: str, identifier: bytes, ts: str, calling_ae: str):
        from . import codec

        ds, root = self._ident(sop_class, identifier, ts)
        log.info("C-FIND from %s at level %s", calling_ae, ds.get("QueryRetrieveLevel", "?"))
        backend = self.scp.backend
        if hasattr(backend, "find_elements"):
            # Fast path: plain ASCII answers are encoded straight from the index rows.
            rows = backend.find_elements(ds, None, root)

            def encode_rows():
                try:
                    yield from _encode_rows(rows)
                finally:
                    close = getattr(rows, "close", None)
                    if close is not None:  # a cancelled C-FIND gives the index connection back now
                        close()

            def _encode_rows(rows):
                from pydicom import Dataset

                for charset, elements in rows:
                    # ASCII text is the same bytes in every DICOM character set, so the
                    # fast path holds whatever SpecificCharacterSet says (it falls back
                    # to pydicom's writer at the first non-ASCII value).
                    if charset is not None:
                        elements = elements + [(0x00080005, "CS", charset)]
                    data = codec.encode_text_elements(elements, ts)
                    if data is None:
                        m = Dataset()
                        if charset is not None:
                            m.SpecificCharacterSet = charset
                        for tag, vr, value in elements:
                            m.add_new(tag, vr, value)
                        m._read_charset = m._character_set
                        data = codec.encode(m, ts)
                    yield data

            return encode_rows()
        matches = backend.find(ds, None, root)

        def encode_all():
            try:
                for m in matches:
                    # Built by the back end from decoded (str) values: its character set
                    # is the one it holds, not one to convert from.
                    m._read_charset = m._character_set
                    yield codec.encode(m, ts)
            finally:
                close = getattr(matches, "close", None)
                if close is not None:
                    close()

        return encode_all()

    def locate(self, sop_class: str, identifier: bytes, ts: str, calling_ae: str):
        """C-MOVE / C-GET: ``(count or None, iterator of (path, SOP Instance UID or
        None))``. The core pulls the iterator in batches as the sub-operations go, so a
        retrieve of 10^6 instances is never listed in memory; the count (the back end's
        optional ``count_located``, or the length of a list it returned) gives Number of
        Remaining Sub-operations in the pending responses, which are sent without it
        when there is no count."""
        ds, root = self._ident(sop_class, identifier, ts)
        backend = self.scp.backend
        refs = backend.locate(ds, None, root)  # validates the identifier now
        count = None
        try:
            counter = getattr(backend, "count_located", None)
            if callable(counter):
                count = counter(ds, None, root)
            elif isinstance(refs, (list, tuple)):
                count = len(refs)
            count = None if count is None else int(count)
        except BaseException:
            close = getattr(refs, "close", None)
            if close is not None:
                close()
            raise

        def rows():
            it = iter(refs)
            try:
                for ref in it:
                    yield (os.fspath(ref.path), getattr(ref, "sop_instance_uid", None) or None)
            finally:
                for src in (it, refs):
                    close = getattr(src, "close", None)
                    if close is not None:  # a cancelled retrieve gives the index connection back now
                        close()

        return count, rows()

    def destination(self, ae_title: str) -> str | None:
        e = self.scp.known_entities.get(ae_title.strip())
        if e is None:
            return None
        host = f"[{e.ip_address}]" if ":" in e.ip_address else e.ip_address
        return f"{host}:{e.port}"
