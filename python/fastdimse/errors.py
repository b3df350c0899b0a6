"""The fastdimse exception hierarchy.

Every error raised by fastdimse derives from :class:`DicomError` and is defined here,
once. The Rust core raises these same classes (it imports this module), so a caller
needs only one ``except fastdimse.errors.DicomError``::

    DicomError
    ├── NetworkError
    │   ├── DicomTimeoutError (also a TimeoutError)
    │   └── TLSError
    ├── ProtocolError
    ├── AssociationError
    │   ├── AssociationRejected (result, source, reason)
    │   ├── AssociationAborted (source, reason)
    │   └── NoAcceptedContext
    ├── DimseError
    │   └── QueryFailed (status, comment)          also fastdimse.query.QueryFailed
    ├── DatasetError (offset, tag, path)
    ├── QRError (status)                           also fastdimse.qr.QRError ...
    │   ├── IdentifierError (also a ValueError)
    │   ├── UnableToProcess
    │   │   └── StoredElsewhere                    also fastdimse.qr.postgres
    │   └── InstanceError (also a ValueError)
    └── JournalError                               fastdimse.migrate: the journal cannot be used
        └── JournalMismatch (key)                  a journal of other migration parameters

This module imports nothing of fastdimse (nor the core), so every other module can
import it.
"""

from __future__ import annotations


class DicomError(Exception):
    """Base class of every fastdimse error."""


class NetworkError(DicomError):
    """The TCP connection failed or was closed unexpectedly."""


class DicomTimeoutError(NetworkError, TimeoutError):
    """A connect, ACSE, DIMSE or network-idle timeout expired."""


class TLSError(NetworkError):
    """TLS failed: a certificate that is not trusted, expired or for another name, a
    peer that refused ours, a peer that does not speak TLS (or speaks it on a plaintext
    port), or a TLS configuration that cannot be loaded. The message says which."""


class ProtocolError(DicomError):
    """The peer sent something the upper-layer protocol does not allow."""


class AssociationError(DicomError):
    """An association could not be established or ended abnormally."""


class AssociationRejected(AssociationError):
    """The peer answered A-ASSOCIATE-RJ.

    ``result``: 1 rejected-permanent, 2 rejected-transient.
    ``source``: 1 service-user, 2 service-provider (ACSE), 3 service-provider (presentation).
    ``reason``: the reason code, meaning per ``source`` (PS3.8 9.3.4).
    """

    def __init__(self, message: str, result: int = 0, source: int = 0, reason: int = 0):
        super().__init__(message)
        self.result = result
        self.source = source
        self.reason = reason


class AssociationAborted(AssociationError):
    """The association was aborted (A-ABORT received or sent, or the peer vanished).

    ``source``: 0 service-user, 2 service-provider; ``reason``: PS3.8 9.3.8.
    """

    def __init__(self, message: str, source: int = 0, reason: int = 0):
        super().__init__(message)
        self.source = source
        self.reason = reason


class NoAcceptedContext(AssociationError):
    """No presentation context was accepted for the SOP class an operation needs."""


class DimseError(DicomError):
    """A DIMSE message could not be built or understood."""


class QueryFailed(DimseError):
    """A C-FIND/C-MOVE/C-GET ended with a failure status (``status``, ``comment``)."""

    def __init__(self, message: str, status: int, comment: str | None = None):
        super().__init__(message)
        self.status = status
        self.comment = comment


class DatasetError(DicomError):
    """A dataset or Part-10 file could not be decoded or encoded.

    ``offset`` is the byte offset where decoding failed (or None), ``tag`` the
    (group, element) being read when it did (or None), ``path`` the file (or None).
    """

    def __init__(self, message: str, offset: int | None = None, tag: int | None = None,
                 path: str | None = None):
        super().__init__(message)
        self.offset = offset
        self.tag = tag
        self.path = path


# --- Query/Retrieve back ends (fastdimse.qr) ------------------------------------------
# The status each one makes the SCP send is in ``status`` (table in fastdimse.qr.backend).


class QRError(DicomError):
    """Base of the Q/R back-end errors. ``status`` is the DIMSE status to send."""

    status: int = 0xC000


class IdentifierError(QRError, ValueError):
    """The request identifier is not valid for the SOP class: status 0xA900."""

    status = 0xA900


class UnableToProcess(QRError):
    """The back end could not carry out the request: status 0xC000."""

    status = 0xC000


class InstanceError(QRError, ValueError):
    """An instance cannot be indexed (a required attribute is missing or invalid)."""

    status = 0xC000


class StoredElsewhere(UnableToProcess):
    """A retrieve selected instances that another location (host) stored: this SCP
    cannot read their files. ``elsewhere`` maps location -> (host, count)."""

    def __init__(self, elsewhere: dict[str, tuple[str, int]], total: int, here: str):
        self.elsewhere, self.total, self.here = elsewhere, total, here
        where = "; ".join(
            (f"on host {host}" if loc == host else f"at {loc} on host {host}") + f": {n}"
            for loc, (host, n) in sorted(elsewhere.items()))
        # The DIMSE Error Comment keeps 64 characters: where comes first.
        super().__init__(f"stored {where} of {total} instances; retrieve there, not at {here}")


# --- Migration (fastdimse.migrate) ------------------------------------------------------


class JournalError(DicomError):
    """The migration journal cannot be opened or used (its database is unreachable)."""


class JournalMismatch(JournalError):
    """The migration journal was made for other migration parameters (source,
    destination, mode, filters) than the ones given; ``key`` names the first one that
    differs (None when the journal is not a migration journal at all)."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key
