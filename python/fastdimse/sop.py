"""The Q/R information models (PS3.4 C.6): their SOP classes by root and operation,
the unique key of each level, and the storage classes proposed for C-GET.

A leaf module (it imports only :mod:`fastdimse.uids`): the SCU, the SCP and the
QueryBuilder all read these tables from here.
"""

from __future__ import annotations

from typing import Iterable

from . import uids
from .uids import (  # one source: Rust's constants, through _core
    PATIENT_ROOT_FIND, PATIENT_ROOT_GET, PATIENT_ROOT_MOVE, STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE,
)

__all__ = [
    "PATIENT_ROOT_FIND", "PATIENT_ROOT_MOVE", "PATIENT_ROOT_GET",
    "STUDY_ROOT_FIND", "STUDY_ROOT_MOVE", "STUDY_ROOT_GET",
    "ROOT_OF_SOP", "UNIQUE_KEYS", "LEVELS", "COMMON_STORAGE_KEYWORDS",
    "sop_class_for", "common_storage_sop_classes", "get_contexts",
]

#: (root, operation) -> SOP class UID.
SOP_CLASSES = {
    ("patient", "find"): PATIENT_ROOT_FIND, ("patient", "move"): PATIENT_ROOT_MOVE,
    ("patient", "get"): PATIENT_ROOT_GET, ("study", "find"): STUDY_ROOT_FIND,
    ("study", "move"): STUDY_ROOT_MOVE, ("study", "get"): STUDY_ROOT_GET,
}
#: SOP class UID -> root ('patient' or 'study').
ROOT_OF_SOP = {v: k[0] for k, v in SOP_CLASSES.items()}

#: Unique keys per level (PS3.4 C.6.1.1 / C.6.2.1).
UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
               "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")


def sop_class_for(root: str, operation: str) -> str:
    """The Q/R SOP class UID for root 'patient'/'study' and 'find'/'move'/'get'."""
    r = root.lower().replace("_root", "").replace(" root", "")
    try:
        return SOP_CLASSES[(r, operation)]
    except KeyError:
        raise ValueError(f"root must be 'patient' or 'study', not {root!r}") from None


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
