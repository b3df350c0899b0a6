"""The storage-side interface of the Query/Retrieve SCPs.

The C-FIND, C-MOVE and C-GET SCPs never touch SQL: they call a :class:`QRBackend`.
:class:`~fastdimse.qr.index.SQLiteIndex` is the default implementation; a user
may plug any object with these methods (a PACS database, PostgreSQL, a REST
archive...). The contract:

``find(identifier, level, root)``
    Yields one response identifier (a new ``pydicom.Dataset``) per match, lazily,
    so that the SCP can send each pending response as it comes and stop early on
    C-CANCEL (it then closes the generator; implementations release what they
    hold in ``finally``). Each response holds exactly the keys of the request
    identifier (filled where known, empty otherwise), plus QueryRetrieveLevel,
    the unique keys of the query level and the levels above it in ``root``, and
    SpecificCharacterSet when the request had one or the values need one.

``locate(identifier, level, root)``
    Yields an :class:`InstanceRef` for every stored instance under the entities
    the identifier selects (C-MOVE / C-GET).

``count_located(identifier, level, root)`` (optional)
    How many instances ``locate`` yields for this identifier, cheaply (a COUNT). The
    SCP then sends Number of Remaining Sub-operations in its pending responses; without
    it (and when ``locate`` returns a generator rather than a list) they leave it out.
    ``locate`` is pulled lazily as the sub-operations go: a retrieve of any size is
    never held in memory.

``add(path, dataset=None, transfer_syntax=None)``
    Index one stored instance (the C-STORE SCP calls this).

Errors and the DIMSE status the SCP sends for each (PS3.4 C.4.1.1.4, C.4.2.1.5,
C.4.3.1.4):

====================  ========  ==============================================
exception             status    when
====================  ========  ==============================================
IdentifierError       0xA900    Identifier does not match SOP Class: no or bad
                                QueryRetrieveLevel, a level the root does not
                                have, an unknown root, a malformed key value,
                                a retrieve without the unique key of its level
UnableToProcess       0xC000    Unable to process: the back end failed (e.g. the
                                SQLite file is unreadable); the message says why
InstanceError         (none)    ``add`` was given something that cannot be
                                indexed (no SOPInstanceUID...); the C-STORE SCP
                                maps it as it sees fit (0xC000 or a warning)
====================  ========  ==============================================

``QRError.status`` holds the code, so an SCP can simply send ``exc.status``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Union, runtime_checkable

# The exceptions live in fastdimse.errors (one hierarchy under DicomError); their names
# stay importable from here.
from ..errors import IdentifierError, InstanceError, QRError, UnableToProcess

__all__ = ["QRError", "IdentifierError", "UnableToProcess", "InstanceError",
           "InstanceRef", "QRBackend"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class InstanceRef:
    """One stored instance, as C-MOVE / C-GET need it to send it."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    path: str


@runtime_checkable
class QRBackend(Protocol):
    """What the Q/R SCPs call. See the module docstring for the contract."""

    def find(self, identifier: Any, level: str | None, root: str) -> Iterator[Any]:
        """Yield a response identifier (pydicom Dataset) per match."""
        ...

    def locate(self, identifier: Any, level: str | None, root: str) -> Iterator[InstanceRef]:
        """Yield the instances a C-MOVE / C-GET identifier selects."""
        ...

    def add(self, path: PathLike, dataset: Any | Mapping[str, Any] | None = None,
            transfer_syntax: str | None = None) -> None:
        """Index one stored instance; read ``path`` when ``dataset`` is None."""
        ...
