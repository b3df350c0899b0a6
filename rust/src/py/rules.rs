//! Rules and constants Python takes from the core instead of restating them: the DIMSE
//! status categories (PS3.7 Annex C) and AE-title validation (PS3.5 6.2).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

pub use crate::dimse::status::category;
use crate::dimse::status::{self, CANCEL, PENDING, PENDING_WARNING, PROCESSING_FAILURE, SOP_CLASS_NOT_SUPPORTED, SUCCESS, UNRECOGNIZED_OPERATION};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(status_category, m)?)?;
    m.add_function(wrap_pyfunction!(validate_ae_title, m)?)?;
    m.add("STATUS_SUCCESS", SUCCESS)?;
    m.add("STATUS_CANCEL", CANCEL)?;
    m.add("STATUS_PENDING", PENDING)?;
    m.add("STATUS_PENDING_WARNING", PENDING_WARNING)?;
    m.add("STATUS_UNRECOGNIZED_OPERATION", UNRECOGNIZED_OPERATION)?;
    m.add("STATUS_SOP_CLASS_NOT_SUPPORTED", SOP_CLASS_NOT_SUPPORTED)?;
    m.add("STATUS_PROCESSING_FAILURE", PROCESSING_FAILURE)?;
    Ok(())
}

/// The category of a DIMSE status (PS3.7 C.1-C.4): "success", "pending", "cancel",
/// "warning" or "failure".
#[pyfunction]
fn status_category(status: u16) -> &'static str {
    status::category(status)
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
