"""fastdimse: DICOM networking with a Rust core.

>>> from fastdimse import Entity, DICOMSCU, DICOMSCP, QueryBuilder
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
from .tls import TLSConfig
from .scu import DICOMSCU, Association, EchoResponse, PresentationContext, StoreResult, StoreStream, StoreSummary

__all__ = [
    "Entity",
    "DICOMSCU",
    "DICOMSCP",
    "QueryBuilder",
    "Association",
    "EchoResponse",
    "PresentationContext",
    "StoreResult",
    "StoreStream",
    "StoreSummary",
    "StoredInstance",
    "TLSConfig",
    "errors",
    "status",
    "uids",
    "__version__",
    "refresh_logging",
]


def __getattr__(name: str):
    # QueryBuilder sits above DICOMSCU (fastdimse.query imports pydicom and the codec):
    # imported when first asked for, so `import fastdimse` stays light and no module
    # below it has to import it.
    if name == "QueryBuilder":
        from .query import QueryBuilder

        globals()["QueryBuilder"] = QueryBuilder
        return QueryBuilder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
