"""The attributes the Q/R index knows, described once (keyword, level, VR, column),
and how their values are read out of a Dataset or a keyword dict. The schema, the
inserts, the WHERE clauses and the response identifiers are all generated from
:data:`ATTRIBUTES` (see :mod:`fastdimse.qr.index`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from pydicom.dataset import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword

from . import matching as m
from .backend import InstanceError

_TABLES = {m.PATIENT: ("patient", "p"), m.STUDY: ("study", "st"),
           m.SERIES: ("series", "se"), m.IMAGE: ("image", "im")}
_LEVEL_RANK = {lv: i for i, lv in enumerate(m.LEVELS)}
_NORMALISED_VRS = frozenset({"PN", "DA", "TM", "DT"})


@dataclass(frozen=True)
class Attr:
    """One attribute the index knows.

    ``column`` is the raw column in the level's table (None for derived ones);
    ``derived`` is an SQL expression for a derived attribute, ``derived_match``
    an optional SQL template (``{cond}`` on ``x.<column>``) used to match it.
    """

    keyword: str
    level: str
    vr: str
    column: str | None = None
    derived: str | None = None
    derived_match: tuple[str, str] | None = None  # (EXISTS template, column inside)
    constant: Any = None  # a value not in the database (see _RETRIEVE_AE)
    multi: bool = False   # derived as a comma-joined list of distinct values

    @property
    def alias(self) -> str:
        return _TABLES[self.level][1]

    @property
    def match_column(self) -> str | None:
        if self.column is None:
            return None
        return self.column + "_m" if self.vr in _NORMALISED_VRS else self.column


def _a(keyword: str, level: str, column: str | None = None, **kw: Any) -> Attr:
    return Attr(keyword, level, dictionary_VR(keyword), column, **kw)


_COUNT_STUDIES_OF_PATIENT = "(SELECT COUNT(*) FROM study x WHERE x.patient_pk = p.pk)"
_COUNT_SERIES_OF_PATIENT = ("(SELECT COUNT(*) FROM series x JOIN study y ON x.study_pk = y.pk"
                            " WHERE y.patient_pk = p.pk)")
_COUNT_IMAGES_OF_PATIENT = ("(SELECT COUNT(*) FROM image x JOIN series y ON x.series_pk = y.pk"
                            " JOIN study z ON y.study_pk = z.pk WHERE z.patient_pk = p.pk)")
_COUNT_SERIES_OF_STUDY = "(SELECT COUNT(*) FROM series x WHERE x.study_pk = st.pk)"
_COUNT_IMAGES_OF_STUDY = ("(SELECT COUNT(*) FROM image x JOIN series y ON x.series_pk = y.pk"
                          " WHERE y.study_pk = st.pk)")
_COUNT_IMAGES_OF_SERIES = "(SELECT COUNT(*) FROM image x WHERE x.series_pk = se.pk)"
_MODALITIES = ("(SELECT GROUP_CONCAT(DISTINCT x.modality) FROM series x"
               " WHERE x.study_pk = st.pk)")
_MODALITIES_MATCH = ("EXISTS (SELECT 1 FROM series x WHERE x.study_pk = st.pk AND ({cond}))",
                     "x.modality")
_SOP_CLASSES = ("(SELECT GROUP_CONCAT(DISTINCT x.sop_class_uid) FROM series y"
                " JOIN image x ON x.series_pk = y.pk WHERE y.study_pk = st.pk)")
_SOP_CLASSES_MATCH = ("EXISTS (SELECT 1 FROM series y JOIN image x ON x.series_pk = y.pk"
                      " WHERE y.study_pk = st.pk AND ({cond}))", "x.sop_class_uid")


class _RetrieveAE:
    """Marks RetrieveAETitle: the index's :attr:`SQLiteIndex.retrieve_ae_title`."""

    def __repr__(self) -> str:
        return "<the SCP's AE title>"


_RETRIEVE_AE = _RetrieveAE()

#: Every attribute the index stores or derives. PS3.4 C.6.1.1 / C.6.2.1 required
#: and unique keys, and common optional ones.
ATTRIBUTES: tuple[Attr, ...] = (
    _a("PatientID", m.PATIENT, "patient_id"),
    _a("PatientName", m.PATIENT, "patient_name"),
    _a("PatientBirthDate", m.PATIENT, "patient_birth_date"),
    _a("PatientSex", m.PATIENT, "patient_sex"),
    _a("NumberOfPatientRelatedStudies", m.PATIENT, derived=_COUNT_STUDIES_OF_PATIENT),
    _a("NumberOfPatientRelatedSeries", m.PATIENT, derived=_COUNT_SERIES_OF_PATIENT),
    _a("NumberOfPatientRelatedInstances", m.PATIENT, derived=_COUNT_IMAGES_OF_PATIENT),
    _a("StudyInstanceUID", m.STUDY, "study_instance_uid"),
    _a("StudyDate", m.STUDY, "study_date"),
    _a("StudyTime", m.STUDY, "study_time"),
    _a("AccessionNumber", m.STUDY, "accession_number"),
    _a("StudyID", m.STUDY, "study_id"),
    _a("StudyDescription", m.STUDY, "study_description"),
    _a("ReferringPhysicianName", m.STUDY, "referring_physician_name"),
    _a("ModalitiesInStudy", m.STUDY, derived=_MODALITIES, derived_match=_MODALITIES_MATCH,
       multi=True),
    _a("SOPClassesInStudy", m.STUDY, derived=_SOP_CLASSES, derived_match=_SOP_CLASSES_MATCH,
       multi=True),
    _a("NumberOfStudyRelatedSeries", m.STUDY, derived=_COUNT_SERIES_OF_STUDY),
    _a("NumberOfStudyRelatedInstances", m.STUDY, derived=_COUNT_IMAGES_OF_STUDY),
    _a("SeriesInstanceUID", m.SERIES, "series_instance_uid"),
    _a("Modality", m.SERIES, "modality"),
    _a("SeriesNumber", m.SERIES, "series_number"),
    _a("SeriesDescription", m.SERIES, "series_description"),
    _a("SeriesDate", m.SERIES, "series_date"),
    _a("SeriesTime", m.SERIES, "series_time"),
    _a("BodyPartExamined", m.SERIES, "body_part_examined"),
    _a("NumberOfSeriesRelatedInstances", m.SERIES, derived=_COUNT_IMAGES_OF_SERIES),
    _a("SOPInstanceUID", m.IMAGE, "sop_instance_uid"),
    _a("SOPClassUID", m.IMAGE, "sop_class_uid"),
    _a("InstanceNumber", m.IMAGE, "instance_number"),
    _a("AvailableTransferSyntaxUID", m.IMAGE, "transfer_syntax"),
    # PS3.4 C.4.1.1.3.2: may be returned at any level (listed at the top one).
    _a("RetrieveAETitle", m.PATIENT, constant=_RETRIEVE_AE),
    _a("InstanceAvailability", m.PATIENT, constant="ONLINE"),
)
_BY_KEYWORD = {a.keyword: a for a in ATTRIBUTES}
_STORED = {lv: [a for a in ATTRIBUTES if a.level == lv and a.column] for lv in m.LEVELS}
# Attributes read from an instance (transfer syntax comes from the file meta).
_READ_KEYWORDS = [a.keyword for a in ATTRIBUTES
                  if a.column and a.keyword != "AvailableTransferSyntaxUID"]
_TAG_OF = {kw: tag_for_keyword(kw) for kw in _READ_KEYWORDS + ["SpecificCharacterSet"]}
_PARENT = {m.STUDY: "patient_pk", m.SERIES: "study_pk", m.IMAGE: "series_pk"}


def _as_text(value: Any) -> str | None:
    """An element value as the text stored in the index (None when empty)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("ascii", "replace")
    if isinstance(value, str):
        text = value
    elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join("" if v is None else str(v) for v in value)
    else:
        text = str(value)
    text = text.strip("\x00 ")
    return text or None


def _getter(source: Any) -> Callable[[str], Any]:
    if source.__class__ is dict:  # what the SCP's indexer passes: no ABC check
        return source.get
    if isinstance(source, Dataset):
        def get(keyword: str) -> Any:
            elem = source.get(_TAG_OF[keyword], None)  # by tag: no keyword lookup
            return None if elem is None else elem.value
        return get
    if isinstance(source, Mapping):
        return source.get
    raise InstanceError(f"expected a pydicom Dataset or a mapping of keywords, got "
                        f"{type(source).__name__}")


# Per level: (keyword, column, match column or None, VR) of every stored attribute
# read from an instance (precomputed: add_instances runs this for every instance).
_ROW_PLAN = {lv: tuple((a.keyword, a.column, a.match_column if a.match_column != a.column
                        else None, a.vr)
                       for a in _STORED[lv] if a.keyword != "AvailableTransferSyntaxUID")
             for lv in m.LEVELS}
_LEVEL_KEYWORDS = {lv: tuple(k for k, *_ in _ROW_PLAN[lv]) for lv in m.LEVELS}


def _text_of(value: Any) -> str | None:
    if value.__class__ is str:  # the usual case: skip _as_text's checks
        value = value.strip("\x00 ")
        return value or None
    return _as_text(value)


def _row_values(get: Callable[[str], Any], level: str,
                raw: tuple | None = None) -> dict[str, Any]:
    """Column -> value for one level, raw and normalised (``raw``: the values of
    the level's keywords, when the caller already read them)."""
    row: dict[str, Any] = {}
    if raw is None:
        raw = tuple(get(k) for k in _LEVEL_KEYWORDS[level])
    for (_kw, column, match_column, vr), value in zip(_ROW_PLAN[level], raw):
        text = None if value is None else _text_of(value)
        if vr == "IS":
            row[column] = m.normalize_for_match(text, "IS") if text else None
            continue
        row[column] = text
        if match_column is not None:
            row[match_column] = m.normalize_for_match(text, vr) if text else None
    return row
