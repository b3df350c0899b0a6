"""`DICOMSCU`: the service user — it opens associations and sends requests."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

from . import _core, uids
from .entity import Entity

__all__ = ["DICOMSCU", "Association", "EchoResponse", "PresentationContext"]

log = logging.getLogger("fastdimse")

#: Default largest PDU we accept (bytes). dcmtk's largest is 131072.
DEFAULT_MAX_PDU = 131072


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
        info = core.info() or {}
        self.peer_max_pdu: int = info.get("peer_max_pdu", 0)
        self.our_max_pdu: int = info.get("our_max_pdu", 0)
        self.peer_implementation_class_uid: str | None = info.get("peer_implementation_class_uid")
        self.peer_implementation_version_name: str | None = info.get("peer_implementation_version_name")
        self.accepted_contexts: list[PresentationContext] = [
            PresentationContext(*c) for c in info.get("accepted_contexts", [])
        ]
        self.rejected_contexts: list[tuple[int, str, int]] = list(info.get("rejected_contexts", []))

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
        if exc_type is None:
            self.release()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = "established" if self.is_established else "closed"
        return f"<Association with {self.remote.ae_title}@{self.remote.ip_address}:{self.remote.port} {state}>"


class DICOMSCU:
    """A DICOM service user acting as ``entity`` (its AE title is the calling AE title).

    Timeouts are in seconds, ``None`` waits forever:

    - ``connect_timeout`` (10): TCP connection.
    - ``acse_timeout`` (30): association negotiation and release.
    - ``dimse_timeout`` (30): waiting for each DIMSE response.
    - ``network_timeout`` (60): a send that makes no progress.

    ``max_pdu_length`` (131072) is the largest PDU we accept; 0 means no limit.
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
    ):
        if not isinstance(entity, Entity):
            raise TypeError("DICOMSCU needs an Entity")
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
        core = _core.Association.request(
            remote.ip_address,
            remote.port,
            self.entity.ae_title,
            remote.ae_title,
            ctx,
            [(s, bool(u), bool(p)) for s, u, p in roles],
            self.max_pdu_length,
            self.connect_timeout,
            self.acse_timeout,
            self.dimse_timeout,
            self.network_timeout,
        )
        return Association(core, remote)

    def echo(self, remote: Entity, *, message_id: int | None = None) -> EchoResponse:
        """C-ECHO (Evil DICOM's Ping): associate, echo, release."""
        with self.associate(remote) as assoc:
            return assoc.echo(message_id)

    # Evil DICOM's name for C-ECHO.
    ping = echo

    def __repr__(self) -> str:
        return f"DICOMSCU({self.entity!r})"
