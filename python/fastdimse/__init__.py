"""fastdimse: DICOM networking with a Rust core.

>>> from fastdimse import Entity, DICOMSCU, DICOMSCP
"""

from . import errors, status, uids
from ._core import __version__
from ._core import refresh_logging as _refresh_logging


def refresh_logging() -> None:
    """Tell the Rust core that Python logging levels changed.

    The core caches, per logger, whether a level is enabled (asking Python needs the
    GIL). ``DICOMSCU``/``DICOMSCP`` refresh it when they start; call this after changing
    levels of the ``fastdimse`` loggers while they run.
    """
    _refresh_logging()

from .entity import Entity
from .scp import DICOMSCP, StoredInstance
from .scu import DICOMSCU, Association, EchoResponse, PresentationContext, StoreResult, StoreStream, StoreSummary

__all__ = [
    "Entity",
    "DICOMSCU",
    "DICOMSCP",
    "Association",
    "EchoResponse",
    "PresentationContext",
    "StoreResult",
    "StoreStream",
    "StoreSummary",
    "StoredInstance",
    "errors",
    "status",
    "uids",
    "__version__",
    "refresh_logging",
]
