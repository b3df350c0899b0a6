"""Query/Retrieve as SCU: C-FIND, C-MOVE, C-GET (and C-CANCEL), and the QueryBuilder.

The functions here work on an open :class:`~fastdimse.scu.Association`; the
:class:`~fastdimse.DICOMSCU` methods of the same names open one for you.
Identifiers are pydicom Datasets (or dicts keyword -> value), encoded and decoded by
the Rust codec; the instances of a C-GET stream from the socket to files in Rust.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

from pydicom import Dataset

from . import codec, uids
from .errors import DimseError

if TYPE_CHECKING:  # pragma: no cover
    from .entity import Entity
    from .scu import DICOMSCU, Association

__all__ = [
    "PATIENT_ROOT_FIND", "PATIENT_ROOT_MOVE", "PATIENT_ROOT_GET",
    "STUDY_ROOT_FIND", "STUDY_ROOT_MOVE", "STUDY_ROOT_GET",
    "RetrieveResponse", "QueryFailed", "QueryBuilder", "sop_class_for",
]

log = logging.getLogger("fastdimse")

from .uids import PATIENT_ROOT_FIND, PATIENT_ROOT_GET, PATIENT_ROOT_MOVE, STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE

_SOP = {
    ("patient", "find"): PATIENT_ROOT_FIND, ("patient", "move"): PATIENT_ROOT_MOVE,
    ("patient", "get"): PATIENT_ROOT_GET, ("study", "find"): STUDY_ROOT_FIND,
    ("study", "move"): STUDY_ROOT_MOVE, ("study", "get"): STUDY_ROOT_GET,
}
ROOT_OF_SOP = {v: k[0] for k, v in _SOP.items()}

C_FIND_RQ, C_MOVE_RQ, C_GET_RQ = 0x0020, 0x0021, 0x0010
PENDING = (0xFF00, 0xFF01)
CANCEL = 0xFE00

#: Unique keys per level (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
               "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
_LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def sop_class_for(root: str, operation: str) -> str:
    """The Q/R SOP class UID for root 'patient'/'study' and 'find'/'move'/'get'."""
    r = root.lower().replace("_root", "").replace(" root", "")
    try:
        return _SOP[(r, operation)]
    except KeyError:
        raise ValueError(f"root must be 'patient' or 'study', not {root!r}") from None


from .errors import QueryFailed  # noqa: E402  (defined in errors.py; importable from here)


@dataclass
class RetrieveResponse:
    """The final response of a C-MOVE or C-GET, with its sub-operation counts."""

    message_id_being_responded_to: int
    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int = 0
    failed_sop_instance_uids: list[str] = field(default_factory=list)
    error_comment: str | None = None

    @property
    def is_success(self) -> bool:
        return self.status == 0x0000

    @classmethod
    def from_command(cls, cmd: Mapping[str, Any], data: bytes | None, ts: str) -> "RetrieveResponse":
        failed_uids: list[str] = []
        if data:
            try:
                ds = codec.decode(data, ts)
                value = ds.get("FailedSOPInstanceUIDList")
                if value:
                    failed_uids = [str(v) for v in ([value] if isinstance(value, str) else value)]
            except Exception as e:  # a malformed list must not hide the status
                log.warning("cannot read the Failed SOP Instance UID List: %s", e)
        return cls(
            message_id_being_responded_to=cmd.get("MessageIDBeingRespondedTo", 0),
            status=cmd.get("Status", 0xC000),
            completed=cmd.get("NumberOfCompletedSuboperations", 0) or 0,
            failed=cmd.get("NumberOfFailedSuboperations", 0) or 0,
            warning=cmd.get("NumberOfWarningSuboperations", 0) or 0,
            remaining=cmd.get("NumberOfRemainingSuboperations", 0) or 0,
            failed_sop_instance_uids=failed_uids,
            error_comment=cmd.get("ErrorComment"),
        )


def make_identifier(identifier: Dataset | Mapping[str, Any] | None, level: str) -> Dataset:
    """A copy of ``identifier`` (Dataset or dict) with QueryRetrieveLevel set."""
    level = level.upper()
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {', '.join(_LEVELS)}, not {level!r}")
    ds = Dataset()
    if isinstance(identifier, Dataset):
        for elem in identifier:
            ds.add(elem)
    elif identifier is not None:
        for k, v in identifier.items():
            setattr(ds, k, "" if v is None else v)
    ds.QueryRetrieveLevel = level
    return ds


def _context_ts(assoc: "Association", sop: str) -> str:
    for c in assoc.accepted_contexts:
        if c.abstract_syntax == sop and c.scu_role:
            return c.transfer_syntax
    from .errors import NoAcceptedContext

    raise NoAcceptedContext(f"the peer accepted no presentation context for {sop}")


def find(assoc: "Association", identifier, level: str = "STUDY", root: str = "study", *,
         message_id: int | None = None, priority: int = 0) -> Iterator[Dataset]:
    """C-FIND on ``assoc``: yields each match as it arrives. Closing the generator
    before the end (``break``) sends C-CANCEL-RQ and reads the rest of the responses."""
    sop = sop_class_for(root, "find")
    ts = _context_ts(assoc, sop)
    ds = make_identifier(identifier, level)
    ctx, mid = assoc._core.send_request(
        sop, {"CommandField": C_FIND_RQ, "Priority": priority, "MessageID": message_id}, codec.encode(ds, ts))
    finished = False
    try:
        while True:
            for _, cmd, data in assoc._core.receive_batch():
                if cmd.get("MessageIDBeingRespondedTo") != mid:
                    log.warning("ignoring a response to message %s during C-FIND %s",
                                cmd.get("MessageIDBeingRespondedTo"), mid)
                    continue
                status = cmd.get("Status", 0xC000)
                if status in PENDING:
                    yield codec.decode(data, ts) if data else Dataset()
                    continue
                finished = True
                if status in (0x0000, CANCEL):
                    return
                comment = cmd.get("ErrorComment")
                raise QueryFailed(f"C-FIND failed with status 0x{status:04X}" + (f": {comment}" if comment else ""),
                                  status, comment)
    finally:
        if not finished and assoc.is_established:
            _cancel_and_drain(assoc, ctx, mid)


def _cancel_and_drain(assoc: "Association", ctx: int, mid: int) -> None:
    """C-CANCEL-RQ, then read responses until the final one (PS3.7 9.3.2.3)."""
    try:
        assoc._core.send_cancel(ctx, mid)
        while True:
            _, cmd, _data = assoc._core.receive()
            if cmd.get("MessageIDBeingRespondedTo") == mid and cmd.get("Status") not in PENDING:
                return
    except Exception as e:
        log.warning("C-CANCEL did not end cleanly (%s); aborting the association", e)
        assoc.abort()


def move(assoc: "Association", identifier, destination_ae: str, level: str = "STUDY",
         root: str = "study", *, message_id: int | None = None, priority: int = 0,
         on_pending: Callable[[RetrieveResponse], None] | None = None) -> RetrieveResponse:
    """C-MOVE on ``assoc``; returns when the transfer completed or failed."""
    from .entity import validate_ae_title

    sop = sop_class_for(root, "move")
    ts = _context_ts(assoc, sop)
    ds = make_identifier(identifier, level)
    _ctx, mid = assoc._core.send_request(
        sop, {"CommandField": C_MOVE_RQ, "Priority": priority, "MessageID": message_id,
              "MoveDestination": validate_ae_title(destination_ae)}, codec.encode(ds, ts))
    while True:
        _, cmd, data = assoc._core.receive()
        if cmd.get("MessageIDBeingRespondedTo") != mid:
            continue
        rsp = RetrieveResponse.from_command(cmd, data, ts)
        if rsp.status in PENDING:
            if on_pending is not None:
                on_pending(rsp)
            continue
        return rsp


def get(assoc: "Association", identifier, destination_dir: str | os.PathLike, level: str = "STUDY",
        root: str = "study", *, message_id: int | None = None, priority: int = 0,
        on_pending: Callable[[RetrieveResponse], None] | None = None,
        layout: str | None = None, duplicates: str = "overwrite") -> RetrieveResponse:
    """C-GET on ``assoc`` (which must have negotiated the SCP role for the storage
    classes): the instances stream into ``destination_dir``."""
    sop = sop_class_for(root, "get")
    ts = _context_ts(assoc, sop)
    ds = make_identifier(identifier, level)
    os.makedirs(destination_dir, exist_ok=True)
    pending_cb = None
    if on_pending is not None:
        def pending_cb(cmd: dict) -> None:
            on_pending(RetrieveResponse.from_command(cmd, None, ts))
    cmd, data = assoc._core.get(
        sop, {"CommandField": C_GET_RQ, "Priority": priority, "MessageID": message_id},
        codec.encode(ds, ts), os.fspath(destination_dir), layout, duplicates, pending_cb, None)
    return RetrieveResponse.from_command(cmd, data, ts)


#: Storage classes proposed for C-GET by default: the common ones, as many as fit in
#: one association beside the C-GET context (an association carries at most 128).
COMMON_STORAGE_KEYWORDS = (
    "ComputedRadiographyImageStorage", "DigitalXRayImageStorageForPresentation",
    "DigitalXRayImageStorageForProcessing", "DigitalMammographyXRayImageStorageForPresentation",
    "DigitalMammographyXRayImageStorageForProcessing", "DigitalIntraOralXRayImageStorageForPresentation",
    "CTImageStorage", "EnhancedCTImageStorage", "LegacyConvertedEnhancedCTImageStorage",
    "UltrasoundMultiFrameImageStorage", "MRImageStorage", "EnhancedMRImageStorage",
    "MRSpectroscopyStorage", "EnhancedMRColorImageStorage", "LegacyConvertedEnhancedMRImageStorage",
    "UltrasoundImageStorage", "EnhancedUSVolumeStorage", "SecondaryCaptureImageStorage",
    "MultiFrameSingleBitSecondaryCaptureImageStorage", "MultiFrameGrayscaleByteSecondaryCaptureImageStorage",
    "MultiFrameGrayscaleWordSecondaryCaptureImageStorage", "MultiFrameTrueColorSecondaryCaptureImageStorage",
    "TwelveLeadECGWaveformStorage", "GeneralECGWaveformStorage", "AmbulatoryECGWaveformStorage",
    "HemodynamicWaveformStorage", "BasicVoiceAudioWaveformStorage",
    "GrayscaleSoftcopyPresentationStateStorage", "ColorSoftcopyPresentationStateStorage",
    "XRayAngiographicImageStorage", "EnhancedXAImageStorage", "XRayRadiofluoroscopicImageStorage",
    "EnhancedXRFImageStorage", "XRay3DAngiographicImageStorage", "XRay3DCraniofacialImageStorage",
    "BreastTomosynthesisImageStorage", "BreastProjectionXRayImageStorageForPresentation",
    "IntravascularOpticalCoherenceTomographyImageStorageForPresentation",
    "NuclearMedicineImageStorage", "ParametricMapStorage", "RawDataStorage",
    "SpatialRegistrationStorage", "SpatialFiducialsStorage", "DeformableSpatialRegistrationStorage",
    "SegmentationStorage", "SurfaceSegmentationStorage", "RealWorldValueMappingStorage",
    "VLEndoscopicImageStorage", "VideoEndoscopicImageStorage", "VLMicroscopicImageStorage",
    "VLSlideCoordinatesMicroscopicImageStorage", "VLPhotographicImageStorage",
    "VideoPhotographicImageStorage", "OphthalmicPhotography8BitImageStorage",
    "OphthalmicPhotography16BitImageStorage", "OphthalmicTomographyImageStorage",
    "VLWholeSlideMicroscopyImageStorage", "BasicTextSRStorage", "EnhancedSRStorage",
    "ComprehensiveSRStorage", "Comprehensive3DSRStorage", "ProcedureLogStorage",
    "MammographyCADSRStorage", "KeyObjectSelectionDocumentStorage", "ChestCADSRStorage",
    "XRayRadiationDoseSRStorage", "RadiopharmaceuticalRadiationDoseSRStorage",
    "EncapsulatedPDFStorage", "EncapsulatedCDAStorage", "EncapsulatedSTLStorage",
    "PositronEmissionTomographyImageStorage", "EnhancedPETImageStorage",
    "LegacyConvertedEnhancedPETImageStorage", "BasicStructuredDisplayStorage",
    "RTImageStorage", "RTDoseStorage", "RTStructureSetStorage", "RTBeamsTreatmentRecordStorage",
    "RTPlanStorage", "RTBrachyTreatmentRecordStorage", "RTTreatmentSummaryRecordStorage",
    "RTIonPlanStorage", "RTIonBeamsTreatmentRecordStorage",
)


def common_storage_sop_classes() -> list[str]:
    """UIDs of :data:`COMMON_STORAGE_KEYWORDS` that this pydicom knows."""
    from pydicom._uid_dict import UID_dictionary

    by_keyword = {v[4]: k for k, v in UID_dictionary.items()}
    return [by_keyword[k] for k in COMMON_STORAGE_KEYWORDS if k in by_keyword]


def get_contexts(root: str, sop_classes: Iterable[str] | None,
                 transfer_syntaxes: Iterable[str] | None) -> tuple[list, list]:
    """Presentation contexts and role selection items for a C-GET association."""
    classes = list(dict.fromkeys(sop_classes if sop_classes is not None else common_storage_sop_classes()))
    if len(classes) > 127:
        raise ValueError(f"{len(classes)} storage SOP classes do not fit in one association (127 at most)")
    ts = list(transfer_syntaxes or uids.UNCOMPRESSED_TRANSFER_SYNTAXES)
    contexts = [(sop_class_for(root, "get"), list(uids.DEFAULT_TRANSFER_SYNTAXES))]
    contexts += [(c, ts) for c in classes]
    roles = [(c, False, True) for c in classes]
    return contexts, roles


def image_identifier(result: Dataset | Mapping[str, Any], level: str, root: str = "study") -> Dataset:
    """The identifier that retrieves ``result`` (a QueryBuilder result) at ``level``:
    the unique keys of that level and of the levels above it."""
    level = level.upper()
    get_ = result.get if isinstance(result, Mapping) else (lambda k, d=None: result.get(k, d))
    ds = Dataset()
    start = 0 if root.lower().startswith("patient") else 1
    for lv in _LEVELS[start:_LEVELS.index(level) + 1]:
        key = UNIQUE_KEYS[lv]
        value = get_(key)
        if value in (None, ""):
            raise ValueError(f"{key} is needed to retrieve at level {level}")
        setattr(ds, key, value)
    ds.QueryRetrieveLevel = level
    return ds


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
