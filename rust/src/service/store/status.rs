//! C-STORE status codes (PS3.4 B.2.3) and their words; the shared codes and the
//! categories are in `dimse::status`.

pub use crate::dimse::status::{is_failure, DUPLICATE_SOP_INSTANCE, PROCESSING_FAILURE, SOP_CLASS_NOT_SUPPORTED, SUCCESS};

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
