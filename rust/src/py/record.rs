//! `record!`: a frozen Python class over a Rust struct, each field named once.
//!
//! The struct gets a read-only attribute per field, `==`, a constructor taking the fields
//! in order (`field: T = default` gives one a default) and a `repr` like a dataclass's
//! (`Name(field=value, ...)`); the `methods { ... }` written after the fields join them
//! (a `**kwargs` signature does not compile there: PyO3's generated names and the
//! caller's would not see each other through the macro). Values
//! cross as Python objects of the fields' own conversions ([`Items`] as a tuple,
//! [`TagValues`] as a dict tag -> bytes).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

macro_rules! record {
    (
        $(#[$meta:meta])*
        $rust:ident => $py:literal {
            $($(#[$fmeta:meta])* $field:ident: $ty:ty $(= $default:expr)?),* $(,)?
        }
        methods { $($methods:tt)* }
    ) => {
        $(#[$meta])*
        #[pyclass(name = $py, module = "fastdimse._core", frozen, eq, get_all)]
        #[derive(Clone, PartialEq)]
        pub struct $rust {
            $($(#[$fmeta])* pub $field: $ty),*
        }

        #[pymethods]
        impl $rust {
            /// The fields in order, positional or by name.
            #[new]
            #[pyo3(signature = ($($field $(= $default)?),*))]
            #[allow(clippy::too_many_arguments)]
            fn __new__($($field: $ty),*) -> Self {
                $rust { $($field),* }
            }

            fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                use pyo3::IntoPyObjectExt;
                let fields: Vec<String> = vec![$(
                    format!("{}={}", stringify!($field), self.$field.clone().into_bound_py_any(py)?.repr()?)
                ),*];
                Ok(format!("{}({})", $py, fields.join(", ")))
            }

            $($methods)*
        }
    };
}
pub(crate) use record;

/// A sequence field: a tuple in Python.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Items<T>(pub Vec<T>);

impl<'py, T> IntoPyObject<'py> for Items<T>
where
    T: IntoPyObject<'py>,
{
    type Target = PyTuple;
    type Output = Bound<'py, PyTuple>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, self.0)
    }
}

impl<'py, T> FromPyObject<'_, 'py> for Items<T>
where
    T: for<'a> FromPyObject<'a, 'py>,
{
    type Error = PyErr;

    fn extract(ob: pyo3::Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let mut out = Vec::new();
        for item in ob.try_iter()? {
            out.push(item?.extract::<T>().map_err(Into::into)?);
        }
        Ok(Items(out))
    }
}

/// Raw values by tag: a dict int -> bytes in Python.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TagValues(pub Vec<(u32, Vec<u8>)>);

impl<'py> IntoPyObject<'py> for TagValues {
    type Target = PyDict;
    type Output = Bound<'py, PyDict>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (tag, value) in &self.0 {
            d.set_item(tag, PyBytes::new(py, value))?;
        }
        Ok(d)
    }
}

impl<'py> FromPyObject<'_, 'py> for TagValues {
    type Error = PyErr;

    fn extract(ob: pyo3::Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        let d = ob.cast::<PyDict>()?;
        let mut out = Vec::with_capacity(d.len());
        for (k, v) in d.iter() {
            out.push((k.extract()?, v.extract()?));
        }
        Ok(TagValues(out))
    }
}

/// `hash()` of a record from its fields (for the records that are hashable).
pub fn hash_of<T: std::hash::Hash>(v: &T) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(v)
}
