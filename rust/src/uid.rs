//! Every UID fastdimse spells by name, and its own implementation identity: one home,
//! below `dataset`, `dimse`, `ul` and the services, which all import from here. Python
//! reads the same values from `_core` (see [`NAMED`]), so no UID is written twice.

/// fastdimse's Implementation Class UID (PS3.7 D.3.3.2, PS3.10 7.1), a UUID-derived UID
/// under the 2.25 root (PS3.5 B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.102626412008397097987888726960716603368";
/// fastdimse's Implementation Version Name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = "FASTDIMSE_0_1";

/// The DICOM application context name (PS3.7 A.2.1).
pub const DICOM_APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";

/// Verification SOP Class (C-ECHO, PS3.4 Annex A).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Media Storage Directory Storage (DICOMDIR): a file, not an instance to send.
pub const MEDIA_STORAGE_DIRECTORY: &str = "1.2.840.10008.1.3.10";

// Transfer syntaxes (PS3.5 Annex A).
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";

// Query/Retrieve information models (PS3.4 C.6).
pub const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
pub const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
pub const PATIENT_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.1.3";
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
/// The retired Patient/Study Only root (PS3.4 C.6.3).
pub const PATIENT_STUDY_ONLY_FIND: &str = "1.2.840.10008.5.1.4.1.2.3.1";
pub const PATIENT_STUDY_ONLY_MOVE: &str = "1.2.840.10008.5.1.4.1.2.3.2";
pub const PATIENT_STUDY_ONLY_GET: &str = "1.2.840.10008.5.1.4.1.2.3.3";

/// The Q/R information models (C-FIND, C-MOVE and C-GET of both roots, and the retired
/// Patient/Study Only root).
pub const QR_SOP_CLASSES: [&str; 9] = [
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_MOVE,
    PATIENT_ROOT_GET,
    STUDY_ROOT_FIND,
    STUDY_ROOT_MOVE,
    STUDY_ROOT_GET,
    PATIENT_STUDY_ONLY_FIND,
    PATIENT_STUDY_ONLY_MOVE,
    PATIENT_STUDY_ONLY_GET,
];

/// (name, value) of every constant above, for the Python module (`_core.UIDS`).
pub const NAMED: [(&str, &str); 18] = [
    ("IMPLEMENTATION_CLASS_UID", IMPLEMENTATION_CLASS_UID),
    ("IMPLEMENTATION_VERSION_NAME", IMPLEMENTATION_VERSION_NAME),
    ("DICOM_APPLICATION_CONTEXT", DICOM_APPLICATION_CONTEXT),
    ("VERIFICATION", VERIFICATION),
    ("MEDIA_STORAGE_DIRECTORY", MEDIA_STORAGE_DIRECTORY),
    ("IMPLICIT_VR_LITTLE_ENDIAN", IMPLICIT_VR_LE),
    ("EXPLICIT_VR_LITTLE_ENDIAN", EXPLICIT_VR_LE),
    ("DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN", DEFLATED_EXPLICIT_VR_LE),
    ("EXPLICIT_VR_BIG_ENDIAN", EXPLICIT_VR_BE),
    ("PATIENT_ROOT_FIND", PATIENT_ROOT_FIND),
    ("PATIENT_ROOT_MOVE", PATIENT_ROOT_MOVE),
    ("PATIENT_ROOT_GET", PATIENT_ROOT_GET),
    ("STUDY_ROOT_FIND", STUDY_ROOT_FIND),
    ("STUDY_ROOT_MOVE", STUDY_ROOT_MOVE),
    ("STUDY_ROOT_GET", STUDY_ROOT_GET),
    ("PATIENT_STUDY_ONLY_FIND", PATIENT_STUDY_ONLY_FIND),
    ("PATIENT_STUDY_ONLY_MOVE", PATIENT_STUDY_ONLY_MOVE),
    ("PATIENT_STUDY_ONLY_GET", PATIENT_STUDY_ONLY_GET),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_values_are_distinct_and_implementation_identity_fits_its_fields() {
        let mut values: Vec<&str> = NAMED.iter().map(|(_, v)| *v).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), NAMED.len());
        assert!(IMPLEMENTATION_VERSION_NAME.len() <= 16);
        assert!(IMPLEMENTATION_CLASS_UID.len() <= 64);
        for uid in QR_SOP_CLASSES {
            assert!(NAMED.iter().any(|(_, v)| *v == uid));
        }
    }
}
