//! Python classes `_core.Association` (requestor side) and `_core.Server` (acceptor side).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;

use super::errors::{make, net_error};
use super::qr::{PyResponse, PyResponses};
use super::record::{record, Items};
use crate::dimse::{field, Command};
use crate::net::{self, NetError, Timeouts};
use crate::service::server::{Server, ServerConfig, ServiceHandler};
use crate::service::echo::EchoOnlyHandler;
use crate::service::qr::scu::{get_scu, Operation, QrResponse};
use crate::service::qr::{Failure, FindResults, Located, QrHandler, QrProvider, QrRequest, Retrieval};
use crate::service::store::{self, DuplicatePolicy, StorageConfig, StorageHandler, StoredInstance};
use crate::ul::{AcceptorConfig, RequestorConfig};

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyAssociation>()?;
    m.add_class::<PyServer>()?;
    m.add_class::<AssociationInfo>()?;
    Ok(())
}

fn storage_config(dir: std::path::PathBuf, layout: Option<String>, duplicates: &str, fsync: bool) -> PyResult<StorageConfig> {
    let mut sc = StorageConfig::new(dir);
    if let Some(l) = layout {
        sc.layout = l;
    }
    sc.fsync = fsync;
    sc.duplicates = match duplicates {
        "overwrite" => DuplicatePolicy::Overwrite,
        "keep" => DuplicatePolicy::Keep,
        "reject" => DuplicatePolicy::Reject,
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "duplicates must be 'overwrite', 'keep' or 'reject', not {other:?}"
            )))
        }
    };
    sc.validate().map_err(pyo3::exceptions::PyValueError::new_err)?;
    Ok(sc)
}

/// The Q/R back end implemented in Python: an object with
/// `find(sop_class, identifier, transfer_syntax, calling_ae) -> iterable of bytes`,
/// `locate(...) -> (count or None, iterable of (path, SOP instance UID or None))` and `destination(ae_title) -> "host:port" | None`.
/// An exception with a `status` attribute answers that status (else 0xC000).
struct PyQrProvider(Py<PyAny>);

fn failure(py: Python<'_>, e: PyErr) -> Failure {
    let status = e.value(py).getattr("status").and_then(|s| s.extract::<u16>()).unwrap_or(crate::service::qr::status::UNABLE_TO_PROCESS);
    let comment = e.value(py).str().map(|s| s.to_string()).unwrap_or_default();
    log::warn!("Q/R back end refused the request (0x{status:04X}): {comment}");
    Failure { status, comment }
}

/// The matches of a Python C-FIND, pulled in batches: one GIL acquisition takes up to
/// [`FIND_BATCH`] identifiers ([`FIND_BATCH_BYTES`]), as many as come within
/// [`FIND_BATCH_TIME`] (a slow back end gives one at a time, so the first answer and
/// a C-CANCEL are not held up); the Q/R SCP sends a batch in one write.
/// `size_hint().0` is the number already pulled: the SCP writes what it holds before a
/// `next()` that has to go back to Python.
struct PyFindIter {
    it: Py<PyAny>,
    buf: std::collections::VecDeque<Result<Vec<u8>, Failure>>,
    done: bool,
}

const FIND_BATCH: usize = 32;
const FIND_BATCH_BYTES: usize = 256 * 1024;
const FIND_BATCH_TIME: Duration = Duration::from_millis(1);

fn identifier_bytes(py: Python<'_>, v: &Bound<'_, PyAny>) -> Result<Vec<u8>, Failure> {
    match v.cast::<pyo3::types::PyBytes>() {
        Ok(b) => Ok(b.as_bytes().to_vec()),
        Err(_) => v.extract::<Vec<u8>>().map_err(|e| failure(py, e)),
    }
}

impl PyFindIter {
    fn new(it: Py<PyAny>) -> PyFindIter {
        PyFindIter { it, buf: std::collections::VecDeque::new(), done: false }
    }

    fn fill(&mut self) {
        let (buf, done) = (&mut self.buf, &mut self.done);
        Python::attach(|py| {
            let it = self.it.bind(py);
            let mut bytes = 0usize;
            let t0 = std::time::Instant::now();
            while buf.len() < FIND_BATCH && bytes < FIND_BATCH_BYTES && (buf.is_empty() || t0.elapsed() < FIND_BATCH_TIME) {
                match it.call_method0("__next__") {
                    Ok(v) => {
                        let r = identifier_bytes(py, &v);
                        let failed = r.is_err();
                        bytes += r.as_ref().map(|d| d.len()).unwrap_or(0);
                        buf.push_back(r);
                        if failed {
                            *done = true;
                            break;
                        }
                    }
                    Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => {
                        *done = true;
                        break;
                    }
                    Err(e) => {
                        buf.push_back(Err(failure(py, e)));
                        *done = true;
                        break;
                    }
                }
            }
        })
    }
}

impl Iterator for PyFindIter {
    type Item = Result<Vec<u8>, Failure>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            self.fill();
        }
        self.buf.pop_front()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.buf.len(), if self.done { Some(self.buf.len()) } else { None })
    }
}

impl Drop for PyFindIter {
    fn drop(&mut self) {
        // Close the generator (a cancelled C-FIND ends its database cursor at once).
        Python::attach(|py| {
            let _ = self.it.bind(py).call_method0("close");
        });
    }
}

/// Rows of a C-MOVE/C-GET listing pulled per GIL acquisition, at most.
const LOCATE_BATCH: usize = 256;
const LOCATE_BATCH_TIME: Duration = Duration::from_millis(5);

/// A Python iterator of `(path, SOP Instance UID or None)` as the Rust listing, pulled
/// in batches (one GIL acquisition each); the first exception ends it as a `Failure`.
/// Dropping it closes the generator (the index connection goes back at once).
struct PyLocateIter {
    iter: Option<Py<PyAny>>,
    buf: std::collections::VecDeque<Result<(std::path::PathBuf, Option<String>), Failure>>,
    done: bool,
}

impl Iterator for PyLocateIter {
    type Item = Result<(std::path::PathBuf, Option<String>), Failure>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            if let Some(iter) = &self.iter {
                Python::attach(|py| {
                    let it = iter.bind(py);
                    let start = std::time::Instant::now();
                    for _ in 0..LOCATE_BATCH {
                        match it.call_method0("__next__") {
                            Ok(v) => match v.extract::<(std::path::PathBuf, Option<String>)>() {
                                Ok(x) => self.buf.push_back(Ok(x)),
                                Err(e) => {
                                    self.buf.push_back(Err(failure(py, e)));
                                    self.done = true;
                                    break;
                                }
                            },
                            Err(e) if e.is_instance_of::<pyo3::exceptions::PyStopIteration>(py) => {
                                self.done = true;
                                break;
                            }
                            Err(e) => {
                                self.buf.push_back(Err(failure(py, e)));
                                self.done = true;
                                break;
                            }
                        }
                        if start.elapsed() > LOCATE_BATCH_TIME {
                            break;
                        }
                    }
                });
            }
        }
        self.buf.pop_front()
    }
}

impl Drop for PyLocateIter {
    fn drop(&mut self) {
        if let Some(it) = self.iter.take() {
            Python::attach(|py| {
                let _ = it.bind(py).call_method0("close");
                drop(it);
            });
        }
    }
}

impl QrProvider for PyQrProvider {
    fn find(&self, rq: &QrRequest) -> Result<FindResults, Failure> {
        Python::attach(|py| {
            let r = self
                .0
                .call_method1(py, "find", (rq.sop_class_uid, pyo3::types::PyBytes::new(py, rq.identifier), rq.transfer_syntax, rq.calling_ae_title))
                .and_then(|it| it.bind(py).try_iter().map(|i| i.into_any().unbind()));
            match r {
                Ok(it) => Ok(Box::new(PyFindIter::new(it)) as FindResults),
                Err(e) => Err(failure(py, e)),
            }
        })
    }

    fn locate(&self, rq: &QrRequest) -> Result<Retrieval, Failure> {
        Python::attach(|py| {
            let r = self
                .0
                .call_method1(py, "locate", (rq.sop_class_uid, pyo3::types::PyBytes::new(py, rq.identifier), rq.transfer_syntax, rq.calling_ae_title))
                .and_then(|v| {
                    let (total, it): (Option<u64>, Bound<'_, PyAny>) = v.extract(py)?;
                    Ok((total, it.try_iter()?.into_any().unbind()))
                });
            match r {
                Ok((total, it)) => Ok(Retrieval {
                    total,
                    items: Box::new(PyLocateIter { iter: Some(it), buf: std::collections::VecDeque::new(), done: false }) as Located,
                }),
                Err(e) => Err(failure(py, e)),
            }
        })
    }

    fn destination(&self, ae_title: &str) -> Option<String> {
        Python::attach(|py| {
            self.0.call_method1(py, "destination", (ae_title,)).and_then(|v| v.extract::<Option<String>>(py)).unwrap_or_else(|e| {
                log::warn!("destination lookup failed: {e}");
                None
            })
        })
    }
}

/// A Python callable taking a list of stored-instance dicts, for the batching indexer.
/// It returns once the batch is committed, with the instances it could not take as a
/// list of `(path, reason)` (cannot be indexed: stored, logged) or `(path, reason, True)`
/// (the index failed for it: not acknowledged). An exception fails the whole batch.
fn index_callback(cb: Py<PyAny>) -> Arc<store::scp::OnIndex> {
    use store::scp::IndexOutcome;
    Arc::new(move |batch: &[StoredInstance]| {
        Python::attach(|py| {
            let r: PyResult<Vec<(String, String, bool)>> = (|| {
                let list = pyo3::types::PyList::empty(py);
                for s in batch {
                    list.append(stored_dict(py, s)?)?;
                }
                let ret = cb.call1(py, (list,))?;
                let mut bad = Vec::new();
                if !ret.is_none(py) {
                    for item in ret.bind(py).try_iter()? {
                        let item = item?;
                        let path: String = item.get_item(0)?.extract()?;
                        let why: String = item.get_item(1)?.str()?.to_string();
                        let fatal = item.len().map(|n| n > 2).unwrap_or(false) && item.get_item(2)?.is_truthy()?;
                        bad.push((path, why, fatal));
                    }
                }
                Ok(bad)
            })();
            match r {
                Ok(bad) => batch
                    .iter()
                    .map(|s| {
                        let p = s.path.to_string_lossy();
                        match bad.iter().find(|(path, _, _)| *path == p) {
                            None => IndexOutcome::Indexed,
                            Some((_, why, true)) => IndexOutcome::Failed(why.clone()),
                            Some((_, why, false)) => IndexOutcome::Skipped(why.clone()),
                        }
                    })
                    .collect(),
                Err(e) => {
                    log::warn!("indexing {} stored instance(s) failed: {e}", batch.len());
                    vec![IndexOutcome::Failed(e.to_string()); batch.len()]
                }
            }
        })
    })
}

fn stored_dict<'py>(py: Python<'py>, s: &StoredInstance) -> PyResult<Bound<'py, PyAny>> {
    super::store::stored_instance(py, s)
}

/// Wrap a Python callable as the storage SCP's per-instance callback. It receives a
/// dict and returns None or a status int; an exception becomes a processing failure.
fn stored_callback(cb: Py<PyAny>) -> Arc<store::scp::OnStored> {
    Arc::new(move |s: &StoredInstance| {
        Python::attach(|py| {
            let r: PyResult<Option<u16>> = (|| {
                let d = stored_dict(py, s)?;
                cb.call1(py, (d,))?.extract::<Option<u16>>(py)
            })();
            r.map_err(|e| {
                let msg = e.to_string();
                e.print(py);
                msg
            })
        })
    })
}

/// C-STOREs a requestor may keep in flight on one of our associations (when it asks).
const STORE_WINDOW: u16 = 32;

fn secs(v: Option<f64>) -> PyResult<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => Err(pyo3::exceptions::PyValueError::new_err(format!("timeout must be a positive number of seconds or None, not {s}"))),
    }
}

pub(super) fn timeouts(connect: Option<f64>, acse: Option<f64>, dimse: Option<f64>, network: Option<f64>) -> PyResult<Timeouts> {
    Ok(Timeouts { connect: secs(connect)?, acse: secs(acse)?, dimse: secs(dimse)?, network: secs(network)? })
}

/// An association we requested. Methods block with the GIL released.
#[pyclass(name = "Association", module = "fastdimse._core")]
pub struct PyAssociation {
    inner: Mutex<Option<net::Association>>,
    pub(super) timeouts: Timeouts,
}

impl PyAssociation {
    /// Take the association out (later calls see it gone) and end it with `how`.
    fn end(&self, py: Python<'_>, how: fn(&mut net::Association) -> Result<(), NetError>) -> PyResult<()> {
        let r = py.detach(|| {
            let taken = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
            match taken {
                Some(mut a) => how(&mut a),
                None => Ok(()),
            }
        });
        r.map_err(|e| net_error(py, e))
    }

    pub(super) fn with<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut net::Association) -> Result<R, NetError> + Send,
    ) -> PyResult<R> {
        let r = py.detach(|| {
            let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(a) => f(a),
                None => Err(NetError::NotEstablished("released or aborted")),
            }
        });
        r.map_err(|e| net_error(py, e))
    }
}

#[pymethods]
impl PyAssociation {
    /// Connect to host:port and negotiate. `contexts` is a list of
    /// (abstract syntax, [transfer syntaxes]); `roles` a list of (SOP class, scu, scp).
    #[staticmethod]
    #[pyo3(signature = (host, port, calling_ae_title, called_ae_title, contexts, *, roles=Vec::new(), max_pdu_length=1048576,
                        connect_timeout=Some(10.0), acse_timeout=Some(30.0), dimse_timeout=Some(30.0), network_timeout=Some(60.0), tls=None))]
    #[allow(clippy::too_many_arguments)]
    fn request(
        py: Python<'_>,
        host: String,
        port: u16,
        calling_ae_title: String,
        called_ae_title: String,
        contexts: Vec<(String, Vec<String>)>,
        roles: Vec<(String, bool, bool)>,
        max_pdu_length: u32,
        connect_timeout: Option<f64>,
        acse_timeout: Option<f64>,
        dimse_timeout: Option<f64>,
        network_timeout: Option<f64>,
        tls: Option<PyRef<'_, super::tls::PyTls>>,
    ) -> PyResult<PyAssociation> {
        let tls = super::tls::client_of(tls)?;
        let t = timeouts(connect_timeout, acse_timeout, dimse_timeout, network_timeout)?;
        let mut cfg = RequestorConfig::new(calling_ae_title, called_ae_title);
        cfg.contexts = contexts;
        cfg.role_selections = roles;
        cfg.max_pdu_length = max_pdu_length;
        let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let a = py.detach(|| net::Association::request_tls(&addr, &cfg, t, tls.as_deref())).map_err(|e| net_error(py, e))?;
        Ok(PyAssociation { inner: Mutex::new(Some(a)), timeouts: t })
    }

    /// C-ECHO: returns (status, message id being responded to).
    #[pyo3(signature = (message_id=None))]
    fn echo(&self, py: Python<'_>, message_id: Option<u16>) -> PyResult<(u16, u16)> {
        let dimse_timeout = self.timeouts.dimse;
        self.with(py, move |a| crate::service::echo::echo_scu(a, message_id, dimse_timeout))
    }

    /// C-FIND: send the request with `identifier` (encoded in the context's transfer
    /// syntax); the returned `Responses` yields the matches as they come.
    #[pyo3(signature = (abstract_syntax, identifier, message_id=None, priority=0))]
    fn find(slf: &Bound<'_, Self>, abstract_syntax: String, identifier: Vec<u8>, message_id: Option<u16>, priority: u16) -> PyResult<PyResponses> {
        let py = slf.py();
        let me = slf.borrow();
        let t = me.timeouts.dimse;
        let op = me.with(py, move |a| Operation::find(a, &abstract_syntax, &identifier, message_id, priority, t))?;
        Ok(PyResponses::new(slf.clone().unbind(), op, false))
    }

    /// C-MOVE of the matches of `identifier` to `destination` (an AE title); the
    /// returned `Responses` yields the pending responses, then has `final_response`.
    #[pyo3(name = "move", signature = (abstract_syntax, identifier, destination, message_id=None, priority=0))]
    fn move_(
        slf: &Bound<'_, Self>,
        abstract_syntax: String,
        identifier: Vec<u8>,
        destination: String,
        message_id: Option<u16>,
        priority: u16,
    ) -> PyResult<PyResponses> {
        let py = slf.py();
        let me = slf.borrow();
        let t = me.timeouts.dimse;
        let op = me.with(py, move |a| Operation::move_to(a, &abstract_syntax, &identifier, &destination, message_id, priority, t))?;
        Ok(PyResponses::new(slf.clone().unbind(), op, true))
    }

    /// C-GET: send the request with `identifier`, store the instances that come back
    /// under `storage_dir`, call `on_pending(Response)` for each pending response.
    /// Returns the final `Response`.
    #[pyo3(signature = (abstract_syntax, identifier, storage_dir, layout=None, duplicates="overwrite", on_pending=None, on_stored=None,
                        message_id=None, priority=0))]
    #[allow(clippy::too_many_arguments)]
    fn get(
        &self,
        py: Python<'_>,
        abstract_syntax: String,
        identifier: Vec<u8>,
        storage_dir: std::path::PathBuf,
        layout: Option<String>,
        duplicates: &str,
        on_pending: Option<Py<PyAny>>,
        on_stored: Option<Py<PyAny>>,
        message_id: Option<u16>,
        priority: u16,
    ) -> PyResult<PyResponse> {
        let storage = StorageHandler::new(storage_config(storage_dir, layout, duplicates, false)?, on_stored.map(stored_callback))
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let rq = Command { command_field: field::C_GET_RQ, message_id, priority: Some(priority), ..Default::default() };
        let dimse_timeout = self.timeouts.dimse;
        let (r, ts) = self.with(py, move |a| {
            let mut pending = |r: &QrResponse| {
                if let Some(cb) = &on_pending {
                    Python::attach(|py| {
                        if let Err(e) = cb.call1(py, (super::qr::response(py, r, None),)) {
                            log::warn!("on_pending callback failed: {e}");
                        }
                    });
                }
            };
            get_scu(a, &abstract_syntax, rq, &identifier, &storage, dimse_timeout, &mut pending)
        })?;
        Ok(super::qr::response(py, &r, Some(&ts)))
    }

    /// Orderly release. Safe to call twice.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        self.end(py, net::Association::release)
    }

    /// A-ABORT. Safe to call twice.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        self.end(py, net::Association::abort)
    }

    #[getter]
    fn is_established(&self) -> bool {
        self.inner.lock().map(|g| g.as_ref().map(|a| a.is_established()).unwrap_or(false)).unwrap_or(false)
    }

    /// Facts of the negotiation (None once released).
    fn info(&self) -> Option<AssociationInfo> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let a = g.as_ref()?;
        let n = a.negotiated();
        Some(AssociationInfo {
            peer_ae_title: n.peer_ae_title.clone(),
            our_ae_title: n.our_ae_title.clone(),
            peer_max_pdu: n.peer_max_pdu,
            our_max_pdu: n.our_max_pdu,
            peer_implementation_class_uid: n.peer_implementation_class_uid.clone(),
            peer_implementation_version_name: n.peer_implementation_version_name.clone(),
            accepted_contexts: Items(
                n.contexts.iter().map(|c| (c.id, c.abstract_syntax.clone(), c.transfer_syntax.clone(), c.scu_role, c.scp_role)).collect(),
            ),
            rejected_contexts: Items(n.rejected.iter().map(|(i, s, r)| (*i, s.clone(), *r)).collect()),
            peer_address: a.peer_addr().to_string(),
        })
    }
}

record! {
    /// The facts of a negotiated association: the titles, maximum PDU lengths, the
    /// peer's implementation, the accepted contexts (id, abstract syntax, transfer
    /// syntax, SCU role, SCP role) and the rejected ones (id, abstract syntax, result).
    AssociationInfo => "AssociationInfo" {
        peer_ae_title: String,
        our_ae_title: String,
        peer_max_pdu: u32,
        our_max_pdu: u32,
        peer_implementation_class_uid: Option<String>,
        peer_implementation_version_name: Option<String>,
        accepted_contexts: Items<(u8, String, String, bool, bool)>,
        rejected_contexts: Items<(u8, String, u8)>,
        peer_address: String,
    }
    methods {}
}

/// A listening SCP.
#[pyclass(name = "Server", module = "fastdimse._core")]
pub struct PyServer {
    inner: Mutex<Option<Server>>,
    port: u16,
    host: String,
}

#[pymethods]
impl PyServer {
    #[new]
    #[pyo3(signature = (host, port, ae_title, contexts, *, require_called_ae=true, allowed_calling_aes=None,
                        max_pdu_length=1048576, acse_timeout=Some(30.0), dimse_timeout=Some(30.0),
                        network_timeout=Some(60.0), max_associations=64, storage_dir=None,
                        layout=None, duplicates="overwrite", on_stored=None, fsync=false, qr_provider=None, index_tags=Vec::new(),
                        on_index=None, tls=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        host: String,
        port: u16,
        ae_title: String,
        contexts: Vec<(String, Vec<String>)>,
        require_called_ae: bool,
        allowed_calling_aes: Option<Vec<String>>,
        max_pdu_length: u32,
        acse_timeout: Option<f64>,
        dimse_timeout: Option<f64>,
        network_timeout: Option<f64>,
        max_associations: usize,
        storage_dir: Option<std::path::PathBuf>,
        layout: Option<String>,
        duplicates: &str,
        on_stored: Option<Py<PyAny>>,
        fsync: bool,
        qr_provider: Option<Py<PyAny>>,
        index_tags: Vec<u32>,
        on_index: Option<Py<PyAny>>,
        tls: Option<PyRef<'_, super::tls::PyTls>>,
    ) -> PyResult<PyServer> {
        let tls = super::tls::server_of(tls)?;
        let t = timeouts(None, acse_timeout, dimse_timeout, network_timeout)?;
        let storage = match storage_dir {
            None => None,
            Some(dir) => {
                let mut sc = storage_config(dir, layout, duplicates, fsync)?;
                sc.extra_tags = index_tags;
                let cb = on_stored.map(stored_callback);
                let mut h = StorageHandler::new(sc, cb).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
                h.indexer = on_index.map(|f| store::scp::Indexer::new(index_callback(f)));
                Some(h)
            }
        };
        let has_qr = qr_provider.is_some();
        let handler: Arc<dyn ServiceHandler> = match (storage, qr_provider) {
            (None, None) => Arc::new(EchoOnlyHandler),
            (storage, provider) => Arc::new(QrHandler {
                storage,
                provider: provider.map(|p| Arc::new(PyQrProvider(p)) as Arc<dyn QrProvider>),
                ae_title: ae_title.clone(),
                timeouts: t,
                max_pdu_length,
            }),
        };
        let mut acceptor = AcceptorConfig::new(ae_title);
        acceptor.requestor_scp_role = crate::ul::ScpRolePolicy::AcceptAll;
        acceptor.require_called_ae = require_called_ae;
        acceptor.allowed_calling_aes = allowed_calling_aes;
        acceptor.supported = contexts;
        acceptor.max_pdu_length = max_pdu_length;
        // Requests are served one after the other, in order; a requestor may still keep
        // several C-STOREs in flight (they wait in the socket), which hides the round
        // trip per instance. Q/R operations poll only for C-CANCEL while they run, so an
        // association with a Q/R context stays synchronous.
        acceptor.async_ops_window = Some((1, STORE_WINDOW));
        if has_qr {
            acceptor.synchronous_abstract_syntaxes = crate::service::qr::sop::ALL.iter().map(|s| s.to_string()).collect();
        }
        let config = ServerConfig { acceptor, timeouts: t, max_associations: max_associations.max(1), tls };
        let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let server = py
            .detach(|| Server::start(&addr, config, handler))
            .map_err(|e| match e {
                NetError::Connect { addr, source } => make(py, "NetworkError", (format!("cannot listen on {addr}: {source}"),)),
                e => net_error(py, e),
            })?;
        let port = server.local_addr().port();
        Ok(PyServer { inner: Mutex::new(Some(server)), port, host })
    }

    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    #[getter]
    fn host(&self) -> String {
        self.host.clone()
    }

    #[getter]
    fn is_running(&self) -> bool {
        self.inner.lock().map(|g| g.as_ref().map(|s| s.is_running()).unwrap_or(false)).unwrap_or(false)
    }

    #[getter]
    fn active_associations(&self) -> usize {
        self.inner.lock().map(|g| g.as_ref().map(|s| s.active_associations()).unwrap_or(0)).unwrap_or(0)
    }

    /// Stop listening and close live associations; waits for the server threads.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| {
            let server = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(mut s) = server {
                s.stop();
            }
        });
    }
}
