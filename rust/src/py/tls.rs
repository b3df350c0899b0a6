//! `_core.TlsContext`: a TLS configuration, loaded once (PEM files read, rustls
//! configuration built) and shared by every association that uses it.

use std::sync::Arc;

use pyo3::prelude::*;

use super::errors::net_error;
use crate::net::{TlsClient, TlsServer, TlsSettings};

/// The client or server side of a TLS configuration.
#[pyclass(name = "TlsContext", module = "fastdimse._core", frozen)]
pub struct PyTls {
    pub(super) client: Option<Arc<TlsClient>>,
    pub(super) server: Option<Arc<TlsServer>>,
}

#[pymethods]
impl PyTls {
    /// The SCU side: verify the server against `ca` (and its name unless
    /// `verify_hostname` is false); `cert` and `key` for mutual TLS.
    #[staticmethod]
    #[pyo3(signature = (*, ca, cert=None, key=None, verify_hostname=true, server_name=None))]
    fn client(py: Python<'_>, ca: Option<String>, cert: Option<String>, key: Option<String>, verify_hostname: bool, server_name: Option<String>) -> PyResult<PyTls> {
        let s = TlsSettings { cert, key, ca, require_client_cert: false, verify_hostname, server_name };
        let c = TlsClient::new(&s).map_err(|e| net_error(py, e))?;
        Ok(PyTls { client: Some(Arc::new(c)), server: None })
    }

    /// The SCP side: our `cert` and `key`; client certificates verified against `ca`
    /// when given, and required with `require_client_cert`.
    #[staticmethod]
    #[pyo3(signature = (*, cert, key, ca=None, require_client_cert=false))]
    fn server(py: Python<'_>, cert: String, key: String, ca: Option<String>, require_client_cert: bool) -> PyResult<PyTls> {
        let s = TlsSettings { cert: Some(cert), key: Some(key), ca, require_client_cert, verify_hostname: true, server_name: None };
        let c = TlsServer::new(&s).map_err(|e| net_error(py, e))?;
        Ok(PyTls { client: None, server: Some(Arc::new(c)) })
    }

    #[getter]
    fn is_server(&self) -> bool {
        self.server.is_some()
    }
}

/// The client side of `tls`, or a TypeError if it is a server context.
pub(super) fn client_of(tls: Option<PyRef<'_, PyTls>>) -> PyResult<Option<Arc<TlsClient>>> {
    match tls {
        None => Ok(None),
        Some(t) => t.client.clone().map(Some).ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("tls= needs a client TlsContext")),
    }
}

/// The server side of `tls`, or a TypeError if it is a client context.
pub(super) fn server_of(tls: Option<PyRef<'_, PyTls>>) -> PyResult<Option<Arc<TlsServer>>> {
    match tls {
        None => Ok(None),
        Some(t) => t.server.clone().map(Some).ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("tls= needs a server TlsContext")),
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTls>()
}
