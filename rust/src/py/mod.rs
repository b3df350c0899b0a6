//! PyO3 bindings: thin wrappers, conversions and error mapping. No protocol logic here.
//!
//! Every call that may block on the network releases the GIL (`py.detach`), so other
//! Python threads run meanwhile and the Rust server threads can log through pyo3-log.

mod codec;
mod errors;
mod net;
mod record;
mod rules;
mod qr;
mod store;
mod tls;

use pyo3::prelude::*;

static LOG_RESET: std::sync::OnceLock<pyo3_log::ResetHandle> = std::sync::OnceLock::new();

/// Make the Rust core see the current levels of the Python loggers under "fastdimse".
#[pyfunction]
fn refresh_logging() {
    if let Some(h) = LOG_RESET.get() {
        h.reset();
    }
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Python's logging levels are cached on the Rust side (checking them needs the GIL);
    // `_core.refresh_logging()` drops the cache after levels change.
    if let Ok(handle) = pyo3_log::try_init() {
        let _ = LOG_RESET.set(handle);
    }
    m.add_function(wrap_pyfunction!(refresh_logging, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("IMPLEMENTATION_CLASS_UID", crate::uid::IMPLEMENTATION_CLASS_UID)?;
    m.add("IMPLEMENTATION_VERSION_NAME", crate::uid::IMPLEMENTATION_VERSION_NAME)?;
    // every UID Rust spells by name: python/fastdimse/uids.py reads them from here
    let uids = pyo3::types::PyDict::new(m.py());
    for (name, value) in crate::uid::NAMED {
        uids.set_item(name, value)?;
    }
    m.add("UIDS", uids)?;
    net::register(m)?;
    qr::register(m)?;
    store::register(m)?;
    codec::register(m)?;
    rules::register(m)?;
    tls::register(m)?;
    Ok(())
}
