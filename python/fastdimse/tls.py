"""TLS settings for :class:`~fastdimse.DICOMSCU` and :class:`~fastdimse.DICOMSCP`.

The Rust core speaks TLS with rustls on the PS3.15 B.9 (BCP 195) profile: TLS 1.2 and
1.3 only, with their recommended AEAD cipher suites. Certificates and keys are PEM files.

>>> tls = TLSConfig(ca="ca.pem")                                      # an SCU
>>> tls = TLSConfig(cert="client.pem", key="client.key", ca="ca.pem")  # an SCU, mutual TLS
>>> tls = TLSConfig(cert="server.pem", key="server.key")             # an SCP
>>> tls = TLSConfig(cert="server.pem", key="server.key", ca="ca.pem", require_client_cert=True)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Union

from . import _core

PathLike = Union[str, "os.PathLike[str]"]


def _path(p: PathLike | None) -> str | None:
    return None if p is None else os.fspath(p)


@dataclass(frozen=True)
class TLSConfig:
    """Paths to PEM files and the checks to make.

    - ``cert``, ``key``: our certificate chain and private key. Required on an SCP; on
      an SCU they are sent when the server asks for a client certificate (mutual TLS).
    - ``ca``: the CA bundle the peer's certificate is verified against. Required on an
      SCU; on an SCP, client certificates are verified against it when given.
    - ``require_client_cert`` (SCP): refuse clients without a certificate signed by ``ca``.
    - ``verify_hostname`` (SCU, default True): check that the server's certificate is
      for the host connected to (its DNS name or IP address). False accepts any name on a
      certificate whose chain verifies, for peers known only by an address their
      certificate does not carry.
    - ``server_name`` (SCU): the name checked instead of the host (a DNS name is also
      sent as SNI; an IP address cannot be).

    The files are read when the DICOMSCU or DICOMSCP is made (once, then shared by every
    association); a missing or unreadable file raises :class:`~fastdimse.errors.TLSError`.
    """

    cert: PathLike | None = None
    key: PathLike | None = None
    ca: PathLike | None = None
    require_client_cert: bool = False
    verify_hostname: bool = True
    server_name: str | None = None
    _contexts: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _client(self) -> _core.TlsContext:
        ctx = self._contexts.get("client")
        if ctx is None:
            ctx = _core.TlsContext.client(
                ca=_path(self.ca), cert=_path(self.cert), key=_path(self.key),
                verify_hostname=self.verify_hostname, server_name=self.server_name,
            )
            self._contexts["client"] = ctx
        return ctx

    def _server(self) -> _core.TlsContext:
        ctx = self._contexts.get("server")
        if ctx is None:
            if self.cert is None or self.key is None:
                from .errors import TLSError

                raise TLSError("a TLS server needs its certificate and key (cert=, key=)")
            ctx = _core.TlsContext.server(
                cert=os.fspath(self.cert), key=os.fspath(self.key), ca=_path(self.ca),
                require_client_cert=self.require_client_cert,
            )
            self._contexts["server"] = ctx
        return ctx


def _context(tls: TLSConfig | None, server: bool) -> _core.TlsContext | None:
    if tls is None:
        return None
    if not isinstance(tls, TLSConfig):
        raise TypeError("tls= takes a fastdimse.TLSConfig")
    return tls._server() if server else tls._client()


def client_context(tls: TLSConfig | None) -> _core.TlsContext | None:
    """The core's client context for ``tls`` (None: plaintext)."""
    return _context(tls, server=False)


def server_context(tls: TLSConfig | None) -> _core.TlsContext | None:
    """The core's server context for ``tls`` (None: plaintext)."""
    return _context(tls, server=True)
