"""The Python `Association`: an open association and the results of what runs on it."""

from __future__ import annotations

from dataclasses import dataclass

from . import _core
from .entity import Entity

__all__ = ["Association", "EchoResponse", "PresentationContext"]


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
        # A generator closed early (a C-FIND stopped by the caller) and a DIMSE failure
        # status (the association itself is fine) end with a release, not an abort.
        from .query import QueryFailed

        if exc_type is None or issubclass(exc_type, (GeneratorExit, QueryFailed)):
            self.release()
        else:
            self.abort()

    def __repr__(self) -> str:
        state = "established" if self.is_established else "closed"
        return f"<Association with {self.remote.ae_title}@{self.remote.ip_address}:{self.remote.port} {state}>"
