//! `_core.store_instances` (the storage SCU), `_core.StoreCancel`, and the records the
//! storage services hand to Python: `StoreResult` and `StoreSummary` (SCU),
//! `StoredInstance` (SCP, for `on_stored` and the index).
//!
//! The items come from any Python iterable, pulled lazily by the Rust scanner thread in
//! small batches (one GIL acquisition per batch, never while waiting on another thread),
//! so a generator of a million paths or Datasets is never held at once.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyIterator, PyList};

use super::errors::net_error;
use super::net::timeouts;
use super::record::{hash_of, record, Items, TagValues};
use super::rules::category;
use crate::service::store::scp::StoredInstance as CoreStoredInstance;
use crate::service::store::scu::{store_stream, StoreSummary as CoreSummary, StreamOptions, DEFAULT_LOOKAHEAD, DEFAULT_WINDOW};
use crate::service::store::{StoreItem, StoreOptions, StoreResult as CoreResult};
use crate::ul::RequestorConfig;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StoreCancel>()?;
    m.add_class::<StoreResult>()?;
    m.add_class::<StoreSummary>()?;
    m.add_class::<StoredInstance>()?;
    m.add_function(wrap_pyfunction!(store_instances, m)?)?;
    Ok(())
}

record! {
    /// The outcome of C-STORE for one instance.
    ///
    /// ``status`` is the DIMSE status of the C-STORE-RSP (0x0000 success), or None when
    /// the instance was not sent at all (unreadable file, no acceptable presentation
    /// context, association lost); ``reason`` says why in words.
    #[derive(Eq, Hash)]
    StoreResult => "StoreResult" {
        sop_instance_uid: String,
        sop_class_uid: String,
        status: Option<u16>,
        reason: Option<String>,
        path: Option<String>,
        /// The instance's own transfer syntax.
        transfer_syntax: String,
        /// The syntax it was sent in (differs when transcoded); None when not sent.
        sent_transfer_syntax: Option<String>,
        /// Data set bytes sent.
        bytes: u64,
        /// Position in the order the instances were read.
        index: usize,
    }

    methods {
        /// Stored (status success or warning).
        #[getter]
        fn is_success(&self) -> bool {
            self.status.is_some_and(|s| matches!(category(s), "success" | "warning"))
        }

        fn __hash__(&self) -> u64 {
            hash_of(self)
        }
    }
}

impl From<&CoreResult> for StoreResult {
    fn from(r: &CoreResult) -> Self {
        StoreResult {
            sop_instance_uid: r.sop_instance_uid.clone(),
            sop_class_uid: r.sop_class_uid.clone(),
            status: r.status,
            reason: r.reason.clone(),
            path: r.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
            transfer_syntax: r.transfer_syntax.clone(),
            sent_transfer_syntax: r.sent_transfer_syntax.clone(),
            bytes: r.bytes,
            index: r.index,
        }
    }
}

record! {
    /// What a store did, without one object per instance.
    ///
    /// ``completed`` (status 0x0000) + ``warning`` (stored with a warning status) +
    /// ``failed`` (a failure status, or not sent) == ``total``. ``failures`` holds the
    /// first ``max_failures`` failed instances with their reasons; iterating the summary
    /// yields them. ``bytes``: data set bytes sent; ``associations``: associations
    /// opened; ``elapsed``: seconds the store took.
    StoreSummary => "StoreSummary" {
        total: u64,
        completed: u64,
        warning: u64,
        failed: u64,
        bytes: u64,
        associations: u64,
        cancelled: bool,
        elapsed: f64,
        failures: Items<StoreResult>,
    }

    methods {
        /// Every instance stored (success or warning status), and none cancelled.
        #[getter]
        fn is_success(&self) -> bool {
            self.failed == 0 && !self.cancelled
        }

        /// Failures counted but beyond ``max_failures`` (not in ``failures``).
        #[getter]
        fn failures_not_kept(&self) -> u64 {
            self.failed.saturating_sub(self.failures.0.len() as u64)
        }

        fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyIterator>> {
            self.failures.clone().into_pyobject(py)?.try_iter()
        }

        fn __str__(&self) -> String {
            format!(
                "{} instance(s): {} stored, {} with a warning, {} failed; {} bytes over {} association(s) in {:.2} s{}",
                self.total,
                self.completed,
                self.warning,
                self.failed,
                self.bytes,
                self.associations,
                self.elapsed,
                if self.cancelled { " (cancelled)" } else { "" }
            )
        }
    }
}

impl StoreSummary {
    fn new(s: &CoreSummary, elapsed: f64) -> Self {
        StoreSummary {
            total: s.total,
            completed: s.completed,
            warning: s.warning,
            failed: s.failed,
            bytes: s.bytes,
            associations: s.associations,
            cancelled: s.cancelled,
            elapsed,
            failures: Items(s.failures.iter().map(StoreResult::from).collect()),
        }
    }
}

record! {
    /// An instance the storage SCP wrote to disk: what ``on_stored`` receives, and what
    /// the index is given. ``attributes``: the raw values (tag -> bytes, padding removed)
    /// of the attributes the index asked the SCP to read; empty without an index.
    #[derive(Eq, Hash)]
    StoredInstance => "StoredInstance" {
        path: String,
        sop_class_uid: String,
        sop_instance_uid: String,
        transfer_syntax: String,
        patient_id: String,
        study_instance_uid: String,
        series_instance_uid: String,
        calling_ae_title: String,
        called_ae_title: String,
        /// Size of the data set in bytes (without the Part-10 header).
        dataset_bytes: u64,
        attributes: TagValues = TagValues::default(),
    }

    methods {
        /// Read the stored file with pydicom (only when the handler asks for it): what
        /// ``pydicom.dcmread(path, ...)`` with these arguments reads.
        #[pyo3(signature = (defer_size=None, stop_before_pixels=false, force=false, specific_tags=None))]
        fn read_dataset<'py>(
            &self,
            py: Python<'py>,
            defer_size: Option<Bound<'py, PyAny>>,
            stop_before_pixels: bool,
            force: bool,
            specific_tags: Option<Bound<'py, PyAny>>,
        ) -> PyResult<Bound<'py, PyAny>> {
            let kwargs = PyDict::new(py);
            kwargs.set_item("defer_size", defer_size)?;
            kwargs.set_item("stop_before_pixels", stop_before_pixels)?;
            kwargs.set_item("force", force)?;
            kwargs.set_item("specific_tags", specific_tags)?;
            py.import("pydicom")?.call_method("dcmread", (&self.path,), Some(&kwargs))
        }

        fn __hash__(&self) -> u64 {
            hash_of(self)
        }
    }
}

/// A stored instance as the Python object `on_stored` and the index callback receive.
pub(super) fn stored_instance<'py>(py: Python<'py>, s: &CoreStoredInstance) -> PyResult<Bound<'py, PyAny>> {
    let obj = StoredInstance {
        path: s.path.to_string_lossy().into_owned(),
        sop_class_uid: s.sop_class_uid.clone(),
        sop_instance_uid: s.sop_instance_uid.clone(),
        transfer_syntax: s.transfer_syntax.clone(),
        patient_id: s.patient_id.clone(),
        study_instance_uid: s.study_instance_uid.clone(),
        series_instance_uid: s.series_instance_uid.clone(),
        calling_ae_title: s.calling_ae_title.clone(),
        called_ae_title: s.called_ae_title.clone(),
        dataset_bytes: s.dataset_bytes,
        attributes: TagValues(s.attributes.clone()),
    };
    Ok(Bound::new(py, obj)?.into_any())
}

/// Items pulled from Python per GIL acquisition, at most. The first pull takes one (so
/// the first instance goes on its way at once, whatever the iterable does next), each
/// further one twice as many as the one before, and a pull stops early once it has
/// taken [`BATCH_TIME`] (a slow iterable: what it gave goes on meanwhile).
const BATCH: usize = 32;
const BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(2);

/// A flag a store() checks before each instance: once set, it stops.
#[pyclass(module = "fastdimse._core")]
pub struct StoreCancel {
    flag: Arc<AtomicBool>,
}

#[pymethods]
impl StoreCancel {
    #[new]
    fn new() -> Self {
        StoreCancel { flag: Arc::new(AtomicBool::new(false)) }
    }

    fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    #[getter]
    fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// A Python iterator as a Rust one; the first exception (of the iterator, or an item of
/// the wrong type) ends it and is kept for the caller.
struct PyFeed {
    iter: Py<PyIterator>,
    buf: VecDeque<StoreItem>,
    done: bool,
    error: Arc<Mutex<Option<PyErr>>>,
    cancel: Arc<AtomicBool>,
    /// Items the next pull may take.
    batch: usize,
}

fn to_item(it: &Bound<'_, PyAny>) -> PyResult<StoreItem> {
    if let Ok(p) = it.extract::<PathBuf>() {
        return Ok(StoreItem::Path(p));
    }
    let (label, sop_class_uid, sop_instance_uid, transfer_syntax, data): (String, String, String, String, Vec<u8>) = it.extract()?;
    Ok(StoreItem::Memory { label, sop_class_uid, sop_instance_uid, transfer_syntax, data })
}

impl Iterator for PyFeed {
    type Item = StoreItem;
    fn next(&mut self) -> Option<StoreItem> {
        if self.buf.is_empty() && !self.done && !self.cancel.load(Ordering::SeqCst) {
            let n = self.batch;
            self.batch = (n * 2).min(BATCH);
            Python::attach(|py| {
                let mut it = self.iter.bind(py).clone();
                let start = std::time::Instant::now();
                for _ in 0..n {
                    if start.elapsed() > BATCH_TIME {
                        break;
                    }
                    match it.next() {
                        None => {
                            self.done = true;
                            break;
                        }
                        Some(Ok(obj)) => match to_item(&obj) {
                            Ok(item) => self.buf.push_back(item),
                            Err(e) => {
                                self.fail(e);
                                break;
                            }
                        },
                        Some(Err(e)) => {
                            self.fail(e);
                            break;
                        }
                    }
                }
            });
        }
        self.buf.pop_front()
    }
}

impl PyFeed {
    fn fail(&mut self, e: PyErr) {
        self.done = true;
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
    }
}

/// C-STORE whatever `items` (any iterable) yields: paths (str; folders walked lazily) or
/// tuples (label, sop class, sop instance, transfer syntax, bytes). Every other argument
/// is a keyword. Returns (StoreSummary, the StoreResults in input order when
/// `keep_results`, else None); `on_progress(StoreResult)` as each instance settles.
#[pyfunction]
#[pyo3(signature = (items, *, host, port, calling_ae_title, called_ae_title, max_pdu_length=1048576, parallel=1,
                    connect_timeout=Some(10.0), acse_timeout=Some(30.0), dimse_timeout=Some(30.0),
                    network_timeout=Some(60.0), on_progress=None, move_originator=None, window=DEFAULT_WINDOW,
                    keep_results=true, max_failures=1000, lookahead=DEFAULT_LOOKAHEAD, cancel=None, coerce=None, tls=None))]
#[allow(clippy::too_many_arguments)]
fn store_instances<'py>(
    py: Python<'py>,
    items: Bound<'py, PyAny>,
    host: String,
    port: u16,
    calling_ae_title: String,
    called_ae_title: String,
    max_pdu_length: u32,
    parallel: usize,
    connect_timeout: Option<f64>,
    acse_timeout: Option<f64>,
    dimse_timeout: Option<f64>,
    network_timeout: Option<f64>,
    on_progress: Option<Py<PyAny>>,
    move_originator: Option<(String, u16)>,
    window: u16,
    keep_results: bool,
    max_failures: usize,
    lookahead: usize,
    cancel: Option<PyRef<'py, StoreCancel>>,
    coerce: Option<Vec<(u32, Option<String>)>>,
    tls: Option<PyRef<'py, super::tls::PyTls>>,
) -> PyResult<(StoreSummary, Option<Bound<'py, PyList>>)> {
    let start = std::time::Instant::now();
    let mut cfg = RequestorConfig::new(calling_ae_title, called_ae_title);
    cfg.max_pdu_length = max_pdu_length;
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut opts = StoreOptions::new(addr, cfg);
    opts.timeouts = timeouts(connect_timeout, acse_timeout, dimse_timeout, network_timeout)?;
    opts.parallel = parallel.max(1);
    opts.move_originator = move_originator;
    opts.window = window.max(1);
    if let Some(edits) = coerce {
        let c = crate::dataset::Coercion::new(edits).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        opts.coerce = (!c.is_empty()).then(|| Arc::new(c));
    }
    opts.tls = super::tls::client_of(tls)?;
    let flag = cancel.map(|c| c.flag.clone()).unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    opts.cancel = Some(flag.clone());
    let so = StreamOptions { keep_results, max_failures, lookahead: lookahead.max(1), drain_on_cancel: false };
    let error = Arc::new(Mutex::new(None));
    let feed = PyFeed { iter: items.try_iter()?.unbind(), buf: VecDeque::new(), done: false, error: error.clone(), cancel: flag, batch: 1 };
    let progress = |r: &CoreResult| {
        if let Some(cb) = &on_progress {
            Python::attach(|py| {
                let res = cb.call1(py, (StoreResult::from(r),));
                if let Err(e) = res {
                    log::warn!("on_progress callback failed: {e}");
                }
            });
        }
    };
    let outcome = py.detach(|| store_stream(&opts, feed, &so, &progress));
    if let Some(e) = error.lock().ok().and_then(|mut g| g.take()) {
        return Err(e);
    }
    let (summary, results) = outcome.map_err(|e| net_error(py, e))?;
    let results = match results {
        Some(rs) => Some(PyList::new(py, rs.iter().map(StoreResult::from))?),
        None => None,
    };
    Ok((StoreSummary::new(&summary, start.elapsed().as_secs_f64()), results))
}
