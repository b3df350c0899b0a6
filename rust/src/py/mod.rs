//! PyO3 bindings: thin wrappers, conversions and error mapping. No protocol logic here.
//!
//! Every call that may block on the network releases the GIL (`py.detach`), so other
//! Python threads run meanwhile and the Rust server threads can log through pyo3-log.

mod codec;
mod errors;
mod net;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let _ = pyo3_log::try_init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("IMPLEMENTATION_CLASS_UID", crate::ul::DEFAULT_IMPLEMENTATION_CLASS_UID)?;
    m.add("IMPLEMENTATION_VERSION_NAME", crate::ul::DEFAULT_IMPLEMENTATION_VERSION_NAME)?;
    net::register(m)?;
    codec::register(m)?;
    Ok(())
}
