"""`DICOMSCP`: the service provider — it listens and serves associations."""

from __future__ import annotations

import logging
import threading
from typing import Iterable, Sequence

from . import _core, uids
from .entity import Entity, validate_ae_title

__all__ = ["DICOMSCP"]

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
    ):
        if not isinstance(entity, Entity):
            raise TypeError("DICOMSCP needs an Entity")
        self.entity = entity
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
            self._stopped.clear()
            self._server = _core.Server(
                self.entity.ip_address,
                self.entity.port,
                self.entity.ae_title,
                [(a, list(self.transfer_syntaxes)) for a in self.supported_abstract_syntaxes],
                self.require_called_ae,
                self.allowed_calling_aes,
                self.max_pdu_length,
                self.acse_timeout,
                self.dimse_timeout,
                self.network_timeout,
                self.max_associations,
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
