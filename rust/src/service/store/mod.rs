//! The Storage service class (PS3.4 Annex B): the SCP that writes files, the SCU that
//! sends them, both streaming between file and socket inside Rust.

pub mod scp;
pub mod scu;
pub mod status;

pub use scp::{DuplicatePolicy, StorageConfig, StorageHandler, StoredInstance};
pub use scu::{store, StoreItem, StoreOptions, StoreResult};
