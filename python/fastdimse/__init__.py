"""fastdimse: DICOM networking with a Rust core.

>>> from fastdimse import Entity, DICOMSCU, DICOMSCP
"""

from . import errors, status, uids
from ._core import __version__
from .entity import Entity
from .scp import DICOMSCP, StoredInstance
from .scu import DICOMSCU, Association, EchoResponse, PresentationContext, StoreResult

__all__ = [
    "Entity",
    "DICOMSCU",
    "DICOMSCP",
    "Association",
    "EchoResponse",
    "PresentationContext",
    "StoreResult",
    "StoredInstance",
    "errors",
    "status",
    "uids",
    "__version__",
]
