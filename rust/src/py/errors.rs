//! The one place where Rust errors become `fastdimse.errors` exceptions.

use pyo3::prelude::*;

use crate::net::NetError;

/// Build an instance of `fastdimse.errors.<class>(*args)`.
pub fn make<'py, A>(py: Python<'py>, class: &str, args: A) -> PyErr
where
    A: pyo3::call::PyCallArgs<'py>,
{
    let r = (|| -> PyResult<PyErr> {
        let module = py.import("fastdimse.errors")?;
        let cls = module.getattr(class)?;
        let obj = cls.call1(args)?;
        Ok(PyErr::from_value(obj))
    })();
    r.unwrap_or_else(|e| e)
}

pub fn net_error(py: Python<'_>, e: NetError) -> PyErr {
    let msg = e.to_string();
    match e {
        NetError::Rejected(rj) => make(py, "AssociationRejected", (msg, rj.result, rj.source, rj.reason)),
        NetError::Aborted { by, reason } => make(py, "AssociationAborted", (msg, by, reason)),
        NetError::Timeout { .. } => make(py, "DicomTimeoutError", (msg,)),
        NetError::Connect { .. } | NetError::Io(_) | NetError::Closed(_) => make(py, "NetworkError", (msg,)),
        NetError::Pdu(_) | NetError::Protocol(_) => make(py, "ProtocolError", (msg,)),
        NetError::Dimse(_) => make(py, "DimseError", (msg,)),
        NetError::NoContext(_) => make(py, "NoAcceptedContext", (msg,)),
        NetError::Negotiation(_) | NetError::NotEstablished(_) => make(py, "AssociationError", (msg,)),
        NetError::Tls(_) => make(py, "TLSError", (msg,)),
    }
}
