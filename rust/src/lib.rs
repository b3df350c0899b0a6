//! fastdimse: the Rust core of a DICOM networking library.
//!
//! Layers, from the wire up (see docs/architecture.md):
//! - [`pdu`]: sans-I/O codec of the upper-layer PDUs (PS3.8 9.3).
//! - [`ul`]: the upper-layer state machine (PS3.8 9.2) and association negotiation.
//! - [`dimse`]: the DIMSE command set (PS3.7), PDV fragmentation and reassembly.
//! - [`dataset`]: the data element codec (PS3.5), transcoding, Part-10 files (PS3.10).
//! - [`net`]: the blocking I/O driver over TCP.
//! - `py` (feature `python`): the PyO3 bindings, built by maturin as `fastdimse._core`.

pub mod pdu;
pub mod ul;
pub mod dimse;
pub mod dataset;
pub mod net;

#[cfg(feature = "python")]
mod py;

/// Our implementation class UID (a UUID-derived UID under 2.25, PS3.5 B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.33741047537133924653870599681987156565";
/// Our implementation version name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("FASTDIMSE_", env!("CARGO_PKG_VERSION"));
