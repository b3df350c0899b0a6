"""The UIDs fastdimse spells by name have one source, rust/src/uid.rs, read by
fastdimse.uids through _core.UIDS; each is the UID PS3.6 gives that name (checked
against pydicom's UID dictionary, an independent transcription of PS3.6)."""

from __future__ import annotations

import pytest
from pydicom._uid_dict import UID_dictionary

from fastdimse import _core, codec, query, uids

# fastdimse name -> the PS3.6 name of that UID
PS3_6_NAMES = {
    "VERIFICATION": "Verification SOP Class",
    "MEDIA_STORAGE_DIRECTORY": "Media Storage Directory Storage",
    "DICOM_APPLICATION_CONTEXT": "DICOM Application Context Name",
    "IMPLICIT_VR_LITTLE_ENDIAN": "Implicit VR Little Endian",
    "EXPLICIT_VR_LITTLE_ENDIAN": "Explicit VR Little Endian",
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN": "Deflated Explicit VR Little Endian",
    "EXPLICIT_VR_BIG_ENDIAN": "Explicit VR Big Endian",
    "PATIENT_ROOT_FIND": "Patient Root Query/Retrieve Information Model - FIND",
    "PATIENT_ROOT_MOVE": "Patient Root Query/Retrieve Information Model - MOVE",
    "PATIENT_ROOT_GET": "Patient Root Query/Retrieve Information Model - GET",
    "STUDY_ROOT_FIND": "Study Root Query/Retrieve Information Model - FIND",
    "STUDY_ROOT_MOVE": "Study Root Query/Retrieve Information Model - MOVE",
    "STUDY_ROOT_GET": "Study Root Query/Retrieve Information Model - GET",
    "PATIENT_STUDY_ONLY_FIND": "Patient/Study Only Query/Retrieve Information Model - FIND",
    "PATIENT_STUDY_ONLY_MOVE": "Patient/Study Only Query/Retrieve Information Model - MOVE",
    "PATIENT_STUDY_ONLY_GET": "Patient/Study Only Query/Retrieve Information Model - GET",
}


@pytest.mark.timeout(10)
def test_every_named_uid_is_the_one_ps3_6_names():
    names = {uid: entry[0] for uid, entry in UID_dictionary.items()}
    for name, ps36 in PS3_6_NAMES.items():
        value = _core.UIDS[name]
        assert getattr(uids, name) == value
        assert names.get(value, "").startswith(ps36), (name, value, names.get(value))
    assert set(_core.UIDS) == set(PS3_6_NAMES) | {"IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION_NAME"}


@pytest.mark.timeout(10)
def test_python_modules_take_the_same_values():
    assert (codec.IMPLICIT_VR_LE, codec.EXPLICIT_VR_LE, codec.EXPLICIT_VR_BE, codec.DEFLATED_EXPLICIT_VR_LE) == (
        uids.IMPLICIT_VR_LITTLE_ENDIAN, uids.EXPLICIT_VR_LITTLE_ENDIAN, uids.EXPLICIT_VR_BIG_ENDIAN,
        uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN)
    assert query.STUDY_ROOT_FIND == uids.STUDY_ROOT_FIND and query.PATIENT_ROOT_GET == uids.PATIENT_ROOT_GET
    assert uids.IMPLEMENTATION_CLASS_UID == _core.IMPLEMENTATION_CLASS_UID
    assert uids.IMPLEMENTATION_VERSION_NAME == _core.IMPLEMENTATION_VERSION_NAME
    assert len(uids.IMPLEMENTATION_VERSION_NAME) <= 16
    # the implementation class UID is what codec.write_file puts in a new file's meta
    meta = _core.codec_parse_meta(_core.codec_build_meta("1.2", "1.2.3", uids.EXPLICIT_VR_LITTLE_ENDIAN))[1]
    values = {tag: value for tag, _, value, _ in meta}
    assert values[0x00020012].rstrip(b"\0").decode() == uids.IMPLEMENTATION_CLASS_UID
