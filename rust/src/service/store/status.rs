//! C-STORE status codes (PS3.4 B.2.3, PS3.7 Annex C).

pub const SUCCESS: u16 = 0x0000;
/// Warning: coercion of data elements.
pub const WARNING_COERCION: u16 = 0xB000;
/// Warning: data set does not match SOP class.
pub const WARNING_DATASET_MISMATCH: u16 = 0xB007;
/// Warning: elements discarded.
pub const WARNING_ELEMENTS_DISCARDED: u16 = 0xB006;
/// Refused: out of resources.
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: data set does not match SOP class.
pub const DATASET_MISMATCH: u16 = 0xA900;
/// Error: cannot understand.
pub const CANNOT_UNDERSTAND: u16 = 0xC000;
/// Refused: SOP class not supported.
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
/// Duplicate SOP instance (PS3.7 C.5.x; used with the "reject" duplicate policy).
pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
/// Processing failure.
pub const PROCESSING_FAILURE: u16 = 0x0110;

/// True for statuses that mean the operation failed (not success, warning, pending, cancel).
pub fn is_failure(s: u16) -> bool {
    !(s == SUCCESS || s == 0x0001 || s & 0xF000 == 0xB000 || s == 0x0107 || s == 0x0116 || s == 0xFF00 || s == 0xFF01 || s == 0xFE00)
}

/// Words for a C-STORE status.
pub fn describe(s: u16) -> &'static str {
    match s {
        SUCCESS => "success",
        0xB000 => "warning: coercion of data elements",
        0xB006 => "warning: elements discarded",
        0xB007 => "warning: data set does not match SOP class",
        0x0001 | 0x0107 | 0x0116 => "warning",
        0xA700..=0xA7FF => "refused: out of resources",
        0xA900..=0xA9FF => "error: data set does not match SOP class",
        0xC000..=0xCFFF => "error: cannot understand",
        0x0122 => "refused: SOP class not supported",
        0x0124 => "refused: not authorized",
        0x0111 => "duplicate SOP instance",
        0x0110 => "processing failure",
        0x0117 => "invalid object instance",
        0x0211 => "unrecognized operation",
        0x0212 => "mistyped argument",
        0x0213 => "resource limitation",
        0xFE00 => "cancelled",
        _ => "failure",
    }
}
