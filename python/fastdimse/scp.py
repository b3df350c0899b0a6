"""`DICOMSCP`: the service provider — it listens and serves associations."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

from . import _core, uids
from .entity import Entity, validate_ae_title

__all__ = ["DICOMSCP", "StoredInstance"]

#: The default file layout under the storage folder.
DEFAULT_LAYOUT = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"


@dataclass(frozen=True)
class StoredInstance:
    """What the ``on_stored`` handler receives for each instance written to disk."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    calling_ae_title: str
    called_ae_title: str
    dataset_bytes: int

    def read_dataset(self, **kwargs):
        """Read the stored file with pydicom (only when the handler asks for it)."""
        import pydicom

        return pydicom.dcmread(self.path, **kwargs)


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
    - ``max_pdu_length`` (131072): the largest PDU we accept; 0 means no limit.
    - ``acse_timeout`` (30 s, also the ARTIM timer), ``dimse_timeout`` (30 s),
      ``network_timeout`` (60 s: an association idle that long is aborted).
    - ``max_associations`` (64): served at once; more are rejected as transient.

    Storage (C-STORE SCP) is on when ``storage_dir`` is given:

    - ``storage_sop_classes``: accepted storage SOP classes (default: every storage SOP
      class of the standard), each with any transfer syntax the peer proposes (its
      first choice is taken, so instances are stored in the syntax they were sent in).
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
    - ``fsync`` (False): fsync each file before it is renamed into place.

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
        max_pdu_length: int = 131072,
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
    ):
        if not isinstance(entity, Entity):
            raise TypeError("DICOMSCP needs an Entity")
        if duplicates not in ("overwrite", "keep", "reject"):
            raise ValueError(f"duplicates must be 'overwrite', 'keep' or 'reject', not {duplicates!r}")
        self.entity = entity
        self.storage_dir = os.fspath(storage_dir) if storage_dir is not None else None
        self.storage_sop_classes = (
            list(storage_sop_classes) if storage_sop_classes is not None
            else (uids.storage_sop_classes() if storage_dir is not None else [])
        )
        self.layout = layout
        self.duplicates = duplicates
        self.on_stored = on_stored
        self.fsync = fsync
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
            contexts += [(c, []) for c in self.storage_sop_classes if c not in self.supported_abstract_syntaxes]
            callback = None
            if self.on_stored is not None:
                user = self.on_stored

                def callback(info: dict) -> int | None:
                    return user(StoredInstance(**info))

            self._server = _core.Server(
                self.entity.ip_address,
                self.entity.port,
                self.entity.ae_title,
                contexts,
                self.require_called_ae,
                self.allowed_calling_aes,
                self.max_pdu_length,
                self.acse_timeout,
                self.dimse_timeout,
                self.network_timeout,
                self.max_associations,
                self.storage_dir,
                self.layout,
                self.duplicates,
                callback,
                self.fsync,
            )
            log.info("%s listening on %s:%d", self.entity.ae_title, self.entity.ip_address, self.port)
        if not keep_listener_running:
            try:
                while not self._stopped.wait(0.2):
                    pass
            except KeyboardInterrupt:
                self.stop()

    def stop(self) -> None:
        """Stop listening and close every live association. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        self._stopped.set()

    def __enter__(self) -> "DICOMSCP":
        self.listen_for_incoming_associations(keep_listener_running=True)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = f"listening on port {self.port}" if self.is_listening else "stopped"
        return f"<DICOMSCP {self.entity.ae_title} {state}>"
