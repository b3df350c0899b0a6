"""UIDs fastdimse uses by name (PS3.6 Annex A).

The values are Rust's (``rust/src/uid.rs``, exported as ``_core.UIDS``): one source
for both languages. Tables built from them (root -> SOP classes and so on) stay here.
"""

from . import _core

_U = _core.UIDS

IMPLEMENTATION_CLASS_UID: str = _U["IMPLEMENTATION_CLASS_UID"]
IMPLEMENTATION_VERSION_NAME: str = _U["IMPLEMENTATION_VERSION_NAME"]
DICOM_APPLICATION_CONTEXT: str = _U["DICOM_APPLICATION_CONTEXT"]

VERIFICATION: str = _U["VERIFICATION"]
MEDIA_STORAGE_DIRECTORY: str = _U["MEDIA_STORAGE_DIRECTORY"]

IMPLICIT_VR_LITTLE_ENDIAN: str = _U["IMPLICIT_VR_LITTLE_ENDIAN"]
EXPLICIT_VR_LITTLE_ENDIAN: str = _U["EXPLICIT_VR_LITTLE_ENDIAN"]
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: str = _U["DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN"]
EXPLICIT_VR_BIG_ENDIAN: str = _U["EXPLICIT_VR_BIG_ENDIAN"]

# Query/Retrieve information models (PS3.4 C.6)
PATIENT_ROOT_FIND: str = _U["PATIENT_ROOT_FIND"]
PATIENT_ROOT_MOVE: str = _U["PATIENT_ROOT_MOVE"]
PATIENT_ROOT_GET: str = _U["PATIENT_ROOT_GET"]
STUDY_ROOT_FIND: str = _U["STUDY_ROOT_FIND"]
STUDY_ROOT_MOVE: str = _U["STUDY_ROOT_MOVE"]
STUDY_ROOT_GET: str = _U["STUDY_ROOT_GET"]
PATIENT_STUDY_ONLY_FIND: str = _U["PATIENT_STUDY_ONLY_FIND"]
PATIENT_STUDY_ONLY_MOVE: str = _U["PATIENT_STUDY_ONLY_MOVE"]
PATIENT_STUDY_ONLY_GET: str = _U["PATIENT_STUDY_ONLY_GET"]

#: The SOP classes (FIND, MOVE, GET) of each root.
PATIENT_ROOT_SOP_CLASSES = (PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET)
STUDY_ROOT_SOP_CLASSES = (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET)

#: The uncompressed transfer syntaxes, in the order we prefer them.
UNCOMPRESSED_TRANSFER_SYNTAXES = (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
)

#: What an SCP accepts by default for each abstract syntax.
DEFAULT_TRANSFER_SYNTAXES = (
    IMPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
)


def storage_sop_classes() -> list[str]:
    """Every storage SOP class UID in the DICOM standard (from pydicom's UID
    dictionary, which follows PS3.6), except the media storage directory (DICOMDIR)."""
    global _STORAGE
    if _STORAGE is None:
        from pydicom._uid_dict import UID_dictionary

        _STORAGE = sorted(
            uid
            for uid, (name, kind, *_rest) in UID_dictionary.items()
            if kind == "SOP Class"
            and "Storage" in name
            and "Commitment" not in name
            and "Storage Management" not in name
            and uid != MEDIA_STORAGE_DIRECTORY
        )
    return list(_STORAGE)


_STORAGE: list[str] | None = None
