//! `_core.store_instances` (the storage SCU) and `_core.StoreCancel`.
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
use crate::store::scu::{store_stream, StoreSummary, StreamOptions, DEFAULT_LOOKAHEAD, DEFAULT_WINDOW};
use crate::store::{StoreItem, StoreOptions, StoreResult};
use crate::ul::RequestorConfig;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<StoreCancel>()?;
    m.add_function(wrap_pyfunction!(store_instances, m)?)?;
    Ok(())
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

fn result_dict<'py>(py: Python<'py>, r: &StoreResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("index", r.index)?;
    d.set_item("path", r.path.as_ref().map(|p| p.to_string_lossy().to_string()))?;
    d.set_item("sop_class_uid", &r.sop_class_uid)?;
    d.set_item("sop_instance_uid", &r.sop_instance_uid)?;
    d.set_item("transfer_syntax", &r.transfer_syntax)?;
    d.set_item("sent_transfer_syntax", &r.sent_transfer_syntax)?;
    d.set_item("status", r.status)?;
    d.set_item("reason", &r.reason)?;
    d.set_item("bytes", r.bytes)?;
    Ok(d)
}

fn summary_dict<'py>(py: Python<'py>, s: &StoreSummary, results: Option<&[StoreResult]>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("total", s.total)?;
    d.set_item("completed", s.completed)?;
    d.set_item("warning", s.warning)?;
    d.set_item("failed", s.failed)?;
    d.set_item("bytes", s.bytes)?;
    d.set_item("associations", s.associations)?;
    d.set_item("cancelled", s.cancelled)?;
    let failures = PyList::empty(py);
    for r in &s.failures {
        failures.append(result_dict(py, r)?)?;
    }
    d.set_item("failures", failures)?;
    match results {
        Some(rs) => {
            let list = PyList::empty(py);
            for r in rs {
                list.append(result_dict(py, r)?)?;
            }
            d.set_item("results", list)?;
        }
        None => d.set_item("results", py.None())?,
    }
    Ok(d)
}

/// C-STORE whatever `items` (any iterable) yields: paths (str; folders walked lazily) or
/// tuples (label, sop class, sop instance, transfer syntax, bytes). Returns a summary
/// dict (total, completed, warning, failed, bytes, associations, cancelled, failures,
/// results: one dict per instance in input order when `keep_results`, else None).
#[pyfunction]
#[pyo3(signature = (host, port, calling_ae_title, called_ae_title, items, max_pdu_length=1048576, parallel=1,
                    connect_timeout=Some(10.0), acse_timeout=Some(30.0), dimse_timeout=Some(30.0),
                    network_timeout=Some(60.0), on_progress=None, move_originator=None, window=DEFAULT_WINDOW,
                    *, keep_results=true, max_failures=1000, lookahead=DEFAULT_LOOKAHEAD, cancel=None))]
#[allow(clippy::too_many_arguments)]
fn store_instances<'py>(
    py: Python<'py>,
    host: String,
    port: u16,
    calling_ae_title: String,
    called_ae_title: String,
    items: Bound<'py, PyAny>,
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
) -> PyResult<Bound<'py, PyDict>> {
    let mut cfg = RequestorConfig::new(calling_ae_title, called_ae_title);
    cfg.max_pdu_length = max_pdu_length;
    let addr = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let mut opts = StoreOptions::new(addr, cfg);
    opts.timeouts = timeouts(connect_timeout, acse_timeout, dimse_timeout, network_timeout)?;
    opts.parallel = parallel.max(1);
    opts.move_originator = move_originator;
    opts.window = window.max(1);
    let flag = cancel.map(|c| c.flag.clone()).unwrap_or_else(|| Arc::new(AtomicBool::new(false)));
    opts.cancel = Some(flag.clone());
    let so = StreamOptions { keep_results, max_failures, lookahead: lookahead.max(1), drain_on_cancel: false };
    let error = Arc::new(Mutex::new(None));
    let feed = PyFeed { iter: items.try_iter()?.unbind(), buf: VecDeque::new(), done: false, error: error.clone(), cancel: flag, batch: 1 };
    let progress = |r: &StoreResult| {
        if let Some(cb) = &on_progress {
            Python::attach(|py| {
                let res = result_dict(py, r).and_then(|d| cb.call1(py, (d,)));
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
    summary_dict(py, &summary, results.as_deref())
}
