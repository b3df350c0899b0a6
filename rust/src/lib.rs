//! fastdimse: the Rust core of a DICOM networking library.
//!
//! Layers, from the wire up (see docs/architecture.md):
//! - [`uid`]: every UID spelled by name, and the implementation class UID and version.
//! - [`pdu`]: sans-I/O codec of the upper-layer PDUs (PS3.8 9.3).
//! - [`ul`]: the upper-layer state machine (PS3.8 9.2) and association negotiation.
//! - [`dimse`]: the DIMSE command set (PS3.7), PDV fragmentation and reassembly.
//! - [`dataset`]: the data element codec (PS3.5), transcoding, Part-10 files (PS3.10).
//! - [`net`]: the blocking I/O driver over TCP.
//! - [`service`]: the DIMSE services by service and role: echo, store, qr.
//! - `py` (feature `python`): the PyO3 bindings, built by maturin as `fastdimse._core`.

pub mod uid;
pub mod pdu;
pub mod ul;
pub mod dimse;
pub mod dataset;
pub mod net;
pub mod service;
#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "python")]
mod py;

