//! PyO3 bindings: thin wrappers, conversions and error mapping. No protocol logic here.
use pyo3::prelude::*;

mod codec;

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    pyo3_log::init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    codec::register(m)?;
    Ok(())
}
