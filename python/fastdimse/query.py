"""The QueryBuilder: walks PATIENT >> STUDY >> SERIES >> IMAGE with C-FIND.

It sits above :class:`~fastdimse.DICOMSCU` (which opens the associations) and the
Q/R operations on an open :class:`~fastdimse.association.Association`
(:func:`find`, :func:`move`, :func:`get`, re-exported here from
:mod:`fastdimse.association`, as are the SOP class tables of :mod:`fastdimse.sop`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from pydicom import Dataset

from . import uids
# The Q/R operations, result types and tables, importable from here as in earlier versions.
from .association import RetrieveResponse, find, get, image_identifier, make_identifier, move  # noqa: F401
from .errors import QueryFailed  # noqa: F401
from .sop import (  # noqa: F401
    COMMON_STORAGE_KEYWORDS, LEVELS, PATIENT_ROOT_FIND, PATIENT_ROOT_GET, PATIENT_ROOT_MOVE, ROOT_OF_SOP,
    SOP_CLASSES, STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE, UNIQUE_KEYS, common_storage_sop_classes,
    get_contexts, sop_class_for,
)

if TYPE_CHECKING:  # pragma: no cover
    from .entity import Entity
    from .scu import DICOMSCU

__all__ = [
    "PATIENT_ROOT_FIND", "PATIENT_ROOT_MOVE", "PATIENT_ROOT_GET",
    "STUDY_ROOT_FIND", "STUDY_ROOT_MOVE", "STUDY_ROOT_GET",
    "RetrieveResponse", "QueryFailed", "QueryBuilder", "sop_class_for",
]

_SOP = SOP_CLASSES


class QueryBuilder:
    """Walks PATIENT >> STUDY >> SERIES >> IMAGE with C-FIND (Study Root by default).

    >>> qb = QueryBuilder(scu, pacs)                        # doctest: +SKIP
    >>> studies = qb.get_study_uids("PAT001")               # doctest: +SKIP
    >>> series = qb.get_series_uids(studies)                # doctest: +SKIP
    >>> images = qb.get_image_uids(series)                  # doctest: +SKIP
    >>> for image in images: scu.send_c_move_image(pacs, image, "CATCHER")   # doctest: +SKIP

    Each result is a pydicom Dataset holding the UIDs of its level and of every level
    above it (an image: SOPInstanceUID, SOPClassUID, SeriesInstanceUID,
    StudyInstanceUID, PatientID), so it is all one needs to move or get it. The lists
    are plain lists: filter them before passing them on.
    """

    def __init__(self, scu: "DICOMSCU", remote: "Entity", root: str = "study"):
        self.scu = scu
        self.remote = remote
        self.root = root

    def _run(self, queries: list[tuple[Dataset, str, dict]]) -> list[Dataset]:
        out: list[Dataset] = []
        if not queries:
            return out
        with self.scu.associate(self.remote, contexts=[(sop_class_for(self.root, "find"),
                                                         list(uids.DEFAULT_TRANSFER_SYNTAXES))]) as assoc:
            for ident, level, inherit in queries:
                for match in find(assoc, ident, level, self.root):
                    for k, v in inherit.items():
                        if k not in match or match.get(k) in (None, ""):
                            setattr(match, k, v)
                    out.append(match)
        return out

    def get_patients(self, patient_id: str = "*", **keys: Any) -> list[Dataset]:
        """PATIENT level (Patient Root only)."""
        ident = {"PatientID": patient_id, "PatientName": "", **keys}
        if self.root.lower().startswith("study"):
            raise ValueError("PATIENT level queries need root='patient'")
        return self._run([(make_identifier(ident, "PATIENT"), "PATIENT", {})])

    def get_study_uids(self, patient_id: str | None = None, **keys: Any) -> list[Dataset]:
        """STUDY level: the studies of ``patient_id`` (all when None), with StudyDate,
        StudyDescription, ModalitiesInStudy and the counts as return keys."""
        ident = {"PatientID": patient_id or "", "StudyInstanceUID": "", "StudyDate": "",
                 "StudyTime": "", "StudyDescription": "", "AccessionNumber": "",
                 "PatientName": "", **keys}
        if self.root.lower().startswith("study"):
            ident.setdefault("ModalitiesInStudy", "")
        return self._run([(make_identifier(ident, "STUDY"), "STUDY", {})])

    def get_series_uids(self, studies: Iterable[Dataset | str], **keys: Any) -> list[Dataset]:
        """SERIES level, for each study (a study result, or a StudyInstanceUID)."""
        queries = []
        for st in studies:
            study_uid = st if isinstance(st, str) else st.StudyInstanceUID
            inherit = {"StudyInstanceUID": study_uid}
            if not isinstance(st, str) and st.get("PatientID"):
                inherit["PatientID"] = st.PatientID
            ident = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": "", "Modality": "",
                     "SeriesNumber": "", "SeriesDescription": "", **keys}
            if "PatientID" in inherit and self.root.lower().startswith("patient"):
                ident["PatientID"] = inherit["PatientID"]
            queries.append((make_identifier(ident, "SERIES"), "SERIES", inherit))
        return self._run(queries)

    def get_image_uids(self, series: Iterable[Dataset], **keys: Any) -> list[Dataset]:
        """IMAGE level, for each series result."""
        queries = []
        for se in series:
            inherit = {k: se.get(k) for k in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID")
                       if se.get(k) not in (None, "")}
            ident = {"StudyInstanceUID": se.StudyInstanceUID, "SeriesInstanceUID": se.SeriesInstanceUID,
                     "SOPInstanceUID": "", "SOPClassUID": "", "InstanceNumber": "", **keys}
            if self.root.lower().startswith("patient") and "PatientID" in inherit:
                ident["PatientID"] = inherit["PatientID"]
            queries.append((make_identifier(ident, "IMAGE"), "IMAGE", inherit))
        return self._run(queries)
