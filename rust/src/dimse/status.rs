//! DIMSE status codes every service shares, and their categories (PS3.7 Annex C). The
//! codes one service alone gives are in that service's module (`service::store::status`,
//! `service::qr::status`), which re-export these.

/// Success (PS3.7 C.1).
pub const SUCCESS: u16 = 0x0000;
/// Pending (PS3.7 C.2): a C-FIND/C-MOVE/C-GET answer follows.
pub const PENDING: u16 = 0xFF00;
/// Pending with a warning: optional keys not supported (PS3.4 C.4.1.1.4).
pub const PENDING_WARNING: u16 = 0xFF01;
/// Cancel (PS3.7 C.3): the operation ended on a C-CANCEL.
pub const CANCEL: u16 = 0xFE00;
/// Failure: processing failure (PS3.7 C.4.1).
pub const PROCESSING_FAILURE: u16 = 0x0110;
/// Failure: duplicate SOP instance (PS3.7 C.4.3).
pub const DUPLICATE_SOP_INSTANCE: u16 = 0x0111;
/// Refused: SOP class not supported (PS3.7 C.4.14).
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
/// Failure: unrecognized operation (PS3.7 C.4.20).
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;

/// True for statuses that mean the operation failed (not success, warning, pending or
/// cancel). Warnings: 0x0001, 0x0107 (attribute list error), 0x0116 (attribute value out
/// of range) and 0xBxxx.
pub fn is_failure(s: u16) -> bool {
    !(s == SUCCESS || s == 0x0001 || s & 0xF000 == 0xB000 || s == 0x0107 || s == 0x0116 || s == PENDING || s == PENDING_WARNING || s == CANCEL)
}

/// "success", "pending", "cancel", "warning" or "failure" (PS3.7 C.1-C.4).
pub fn category(s: u16) -> &'static str {
    match s {
        SUCCESS => "success",
        PENDING | PENDING_WARNING => "pending",
        CANCEL => "cancel",
        s if !is_failure(s) => "warning",
        _ => "failure",
    }
}
