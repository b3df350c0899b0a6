"""The fastdimse exception hierarchy.

Every error raised by fastdimse derives from :class:`DicomError`. The Rust core
raises these same classes (it imports this module), so a caller needs only one
``except fastdimse.errors.DicomError``.
"""

from __future__ import annotations


class DicomError(Exception):
    """Base class of every fastdimse error."""


class NetworkError(DicomError):
    """The TCP connection failed or was closed unexpectedly."""


class DicomTimeoutError(NetworkError, TimeoutError):
    """A connect, ACSE, DIMSE or network-idle timeout expired."""


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
