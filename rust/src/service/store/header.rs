pub use crate::dataset::scan::*; // the header scan moved to rust/src/dataset/scan.rs
