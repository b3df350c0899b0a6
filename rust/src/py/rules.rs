//! Rules and constants Python takes from the core instead of restating them: the DIMSE
//! status categories (PS3.7 Annex C) and AE-title validation (PS3.5 6.2).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::service::qr::status as qr_status;
use crate::service::store::status;

/// Pending with warnings: optional keys not supported (PS3.4 C.4.1.1.4).
pub const PENDING_WARNING: u16 = 0xFF01;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(status_category, m)?)?;
    m.add_function(wrap_pyfunction!(validate_ae_title, m)?)?;
    m.add("STATUS_SUCCESS", status::SUCCESS)?;
    m.add("STATUS_CANCEL", qr_status::CANCEL)?;
    m.add("STATUS_PENDING", qr_status::PENDING)?;
    m.add("STATUS_PENDING_WARNING", PENDING_WARNING)?;
    m.add("STATUS_UNRECOGNIZED_OPERATION", crate::service::echo::STATUS_UNRECOGNIZED_OPERATION)?;
    m.add("STATUS_SOP_CLASS_NOT_SUPPORTED", status::SOP_CLASS_NOT_SUPPORTED)?;
    m.add("STATUS_PROCESSING_FAILURE", status::PROCESSING_FAILURE)?;
    Ok(())
}

/// "success", "pending", "cancel", "warning" or "failure".
pub fn category(s: u16) -> &'static str {
    match s {
        status::SUCCESS => "success",
        qr_status::PENDING | PENDING_WARNING => "pending",
        qr_status::CANCEL => "cancel",
        s if !status::is_failure(s) => "warning",
        _ => "failure",
    }
}

/// The category of a DIMSE status (PS3.7 C.1-C.4): "success", "pending", "cancel",
/// "warning" or "failure".
#[pyfunction]
fn status_category(status: u16) -> &'static str {
    category(status)
}

/// `title` without its leading and trailing spaces, or ValueError saying what is wrong
/// (PS3.5 6.2, VR AE: 1 to 16 characters of the default repertoire, no backslash, no
/// control characters).
#[pyfunction]
fn validate_ae_title(title: &str) -> PyResult<String> {
    crate::ul::validate_ae_title(title)
        .map(str::to_string)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}
