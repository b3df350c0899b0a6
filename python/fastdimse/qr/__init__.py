"""Query/Retrieve storage back end: the SQLite index and C-FIND matching.

Pure Python (standard library + pydicom); it does not need the Rust core, so it
can be used and tested on its own. The Q/R SCPs call a :class:`QRBackend`;
:class:`SQLiteIndex` is the default one; :class:`PostgresIndex` (module ``postgres``,
needs psycopg) is the same index in PostgreSQL, shared by several SCPs.

>>> from fastdimse.qr import SQLiteIndex
>>> index = SQLiteIndex("/srv/dicom")            # doctest: +SKIP
>>> index.import_folder("/srv/dicom")            # doctest: +SKIP
>>> for match in index.find(identifier, "STUDY", "study"):   # doctest: +SKIP
...     print(match.StudyInstanceUID)
"""

from .backend import (IdentifierError, InstanceError, InstanceRef, QRBackend, QRError,
                      UnableToProcess)
from .index import ATTRIBUTES, DEFAULT_DB_NAME, ImportResult, SQLiteIndex
from .matching import (IMAGE, LEVELS, PATIENT, PATIENT_ROOT, SERIES, STUDY, STUDY_ROOT,
                       UNIQUE_KEYS)

__all__ = [
    "QRBackend", "SQLiteIndex", "InstanceRef", "ImportResult",
    "QRError", "IdentifierError", "UnableToProcess", "InstanceError",
    "ATTRIBUTES", "DEFAULT_DB_NAME",
    "PATIENT", "STUDY", "SERIES", "IMAGE", "LEVELS", "PATIENT_ROOT", "STUDY_ROOT",
    "UNIQUE_KEYS", "PostgresIndex", "StoredElsewhere",
]


def __getattr__(name: str):
    # The PostgreSQL back end needs psycopg: imported only when asked for.
    if name in ("PostgresIndex", "StoredElsewhere"):
        from . import postgres

        return getattr(postgres, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
