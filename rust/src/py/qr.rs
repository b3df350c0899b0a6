//! Python classes `_core.Response` (one C-FIND/C-MOVE/C-GET response) and
//! `_core.Responses` (the responses of a C-FIND or C-MOVE as they come): conversions
//! over `service::qr::scu`, where the protocol is.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::net_error;
use super::net::PyAssociation;
use crate::service::qr::scu::{Operation, QrResponse};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyResponse>()?;
    m.add_class::<PyResponses>()?;
    Ok(())
}

/// One response of a Q/R operation. `identifier`: its data set (a C-FIND match; the
/// failed SOP instance list of a C-MOVE/C-GET), as encoded on the wire.
#[pyclass(name = "Response", module = "fastdimse._core", frozen)]
pub struct PyResponse {
    #[pyo3(get)]
    status: u16,
    #[pyo3(get)]
    message_id_being_responded_to: u16,
    #[pyo3(get)]
    remaining: Option<u16>,
    #[pyo3(get)]
    completed: Option<u16>,
    #[pyo3(get)]
    failed: Option<u16>,
    #[pyo3(get)]
    warning: Option<u16>,
    #[pyo3(get)]
    error_comment: Option<String>,
    #[pyo3(get)]
    identifier: Option<Py<PyBytes>>,
    #[pyo3(get)]
    failed_sop_instance_uids: Vec<String>,
}

#[pymethods]
impl PyResponse {
    #[getter]
    fn is_pending(&self) -> bool {
        crate::dimse::status::category(self.status) == "pending"
    }

    fn __repr__(&self) -> String {
        format!("<Response 0x{:04X} to message {}>", self.status, self.message_id_being_responded_to)
    }
}

/// `failed_list_syntax`: read the Failed SOP Instance UID List from the identifier in
/// this transfer syntax (retrieves); None leaves it empty.
pub(super) fn response(py: Python<'_>, r: &QrResponse, failed_list_syntax: Option<&str>) -> PyResponse {
    let c = &r.command;
    PyResponse {
        status: r.status(),
        message_id_being_responded_to: c.message_id_being_responded_to.unwrap_or(0),
        remaining: c.remaining,
        completed: c.completed,
        failed: c.failed,
        warning: c.warning,
        error_comment: c.error_comment.clone(),
        identifier: r.data.as_deref().map(|d| PyBytes::new(py, d).unbind()),
        failed_sop_instance_uids: failed_list_syntax.map(|ts| r.failed_sop_instance_uids(ts)).unwrap_or_default(),
    }
}

/// The pending responses of a C-FIND or C-MOVE, as they arrive (iterating waits, with
/// the GIL released); `final_response` is set once iteration ends. `cancel()` sends
/// C-CANCEL-RQ and reads up to the final response.
#[pyclass(name = "Responses", module = "fastdimse._core")]
pub struct PyResponses {
    assoc: Py<PyAssociation>,
    op: Operation,
    /// A C-MOVE: responses carry the failed SOP instance list.
    retrieve: bool,
}

impl PyResponses {
    pub(super) fn new(assoc: Py<PyAssociation>, op: Operation, retrieve: bool) -> PyResponses {
        PyResponses { assoc, op, retrieve }
    }

    fn convert(&self, py: Python<'_>, r: &QrResponse) -> PyResponse {
        response(py, r, self.retrieve.then(|| self.op.transfer_syntax()))
    }
}

#[pymethods]
impl PyResponses {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<PyResponse>> {
        let ready = self.op.pop_pending().map_err(|e| net_error(py, e))?;
        let r = match ready {
            Some(r) => Some(r),
            None if self.op.is_finished() => None,
            None => {
                let (assoc, op) = (&self.assoc, &mut self.op);
                assoc.bind(py).borrow().with(py, move |a| op.next_pending(a))?
            }
        };
        Ok(r.map(|r| self.convert(py, &r)))
    }

    /// C-CANCEL-RQ, then read until the final response (pending ones are dropped).
    fn cancel(&mut self, py: Python<'_>) -> PyResult<()> {
        let (assoc, op) = (&self.assoc, &mut self.op);
        assoc.bind(py).borrow().with(py, move |a| op.cancel(a))
    }

    #[getter]
    fn final_response(&self, py: Python<'_>) -> Option<PyResponse> {
        self.op.final_response().map(|r| self.convert(py, r))
    }

    #[getter]
    fn finished(&self) -> bool {
        self.op.is_finished()
    }

    #[getter]
    fn message_id(&self) -> u16 {
        self.op.message_id()
    }

    #[getter]
    fn context_id(&self) -> u8 {
        self.op.context_id()
    }
}
