"""`Entity`: a DICOM application entity — AE title, IP address, port."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from . import _core

__all__ = ["Entity", "validate_ae_title"]


def validate_ae_title(ae_title: str) -> str:
    """Return ``ae_title`` without leading/trailing spaces, or raise ``ValueError`` saying
    what is wrong.

    PS3.5 6.2 (VR AE): at most 16 characters of the default repertoire, no backslash,
    no control characters; leading and trailing spaces are not significant and a
    title of only spaces is empty. The rule is the Rust core's (the one its association
    negotiation applies).
    """
    if not isinstance(ae_title, str):
        raise TypeError(f"AE title must be a str, not {type(ae_title).__name__}")
    return _core.validate_ae_title(ae_title)


@dataclass(frozen=True)
class Entity:
    """A DICOM node: its AE title, IP address (or host name) and TCP port.

    >>> Entity("PACS", "127.0.0.1", 104)
    Entity(ae_title='PACS', ip_address='127.0.0.1', port=104)
    """

    ae_title: str
    ip_address: str
    port: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", validate_ae_title(self.ae_title))
        if not isinstance(self.ip_address, str) or not self.ip_address:
            raise ValueError("ip_address must be a non-empty string")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError(f"port must be an int, not {type(self.port).__name__}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is outside 0..65535")

    @classmethod
    def create_local(cls, ae_title: str, port: int) -> "Entity":
        """An entity on this host: the address other hosts reach it by, else 127.0.0.1."""
        return cls(ae_title, _local_address(), port)


def _local_address() -> str:
    try:
        addr = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return addr or "127.0.0.1"
