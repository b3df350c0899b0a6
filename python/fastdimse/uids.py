"""UIDs fastdimse uses by name (PS3.6 Annex A)."""

VERIFICATION = "1.2.840.10008.1.1"

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"

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


MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_STORAGE: list[str] | None = None
