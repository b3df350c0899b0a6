//! The blocking I/O driver: TCP sockets, timeouts, and the glue that feeds received PDUs
//! to the upper-layer state machine (`ul::machine`) and carries out what it asks
//! (send a PDU, close, start/stop ARTIM).
//!
//! The driver is thin on purpose: which PDU may come when, and what answers it, is the
//! state machine's business; how a message is split into PDVs is `dimse`'s. This module
//! only moves bytes and keeps the clocks.
//!
//! Timeouts (all optional, `None` = wait forever):
//! - `connect`: establishing the TCP connection.
//! - `acse`: waiting for A-ASSOCIATE-AC/RJ, for A-RELEASE-RP, and the ARTIM timer.
//! - `dimse`: waiting for a DIMSE response on the requestor side.
//! - `network`: the longest the connection may stay silent while we wait for the peer
//!   (an SCP waiting for the next request).

mod assoc;
mod socket;
pub mod server;

pub use assoc::{Association, DataSink, Deferred, MessageData, Received, Sink};
pub use server::{Server, ServerConfig, ServiceHandler};

use std::time::Duration;

use crate::dimse::DimseError;
use crate::pdu::{AssociateRj, PduError};

/// Timeouts of one association; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub acse: Option<Duration>,
    pub dimse: Option<Duration>,
    pub network: Option<Duration>,
}

impl Default for Timeouts {
    /// connect 10 s, ACSE 30 s, DIMSE 30 s, network idle 60 s.
    fn default() -> Self {
        Timeouts {
            connect: Some(Duration::from_secs(10)),
            acse: Some(Duration::from_secs(30)),
            dimse: Some(Duration::from_secs(30)),
            network: Some(Duration::from_secs(60)),
        }
    }
}

/// Errors of the network layer. The Python bindings map each variant to one class of
/// `fastdimse.errors`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot connect to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{what} timed out after {after:?}")]
    Timeout { what: &'static str, after: Duration },
    #[error("association rejected: {}", crate::ul::reject_reason_text(.0.result, .0.source, .0.reason))]
    Rejected(AssociateRj),
    #[error("association aborted: {}", crate::ul::abort_reason_text(*.by, *.reason))]
    Aborted { by: u8, reason: u8 },
    #[error("the peer closed the connection {0}")]
    Closed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("invalid PDU from the peer: {0}")]
    Pdu(#[from] PduError),
    #[error("DIMSE error: {0}")]
    Dimse(#[from] DimseError),
    #[error("no accepted presentation context for {0}")]
    NoContext(String),
    #[error("association negotiation failed: {0}")]
    Negotiation(String),
    #[error("the association is not established (it was {0})")]
    NotEstablished(&'static str),
}
