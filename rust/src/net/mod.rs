//! The blocking I/O driver over [`ul::Connection`](crate::ul::Connection): it moves bytes
//! between a [`Transport`] and the connection and keeps the clocks. Which PDU may come
//! when, what answers it and how a message becomes PDUs is the connection's business.
//! Every `unsafe` of the driver (splice, sendfile, socket options, poll) is in `sys`.
//!
//! Timeouts (all optional, `None` = wait forever):
//! - `connect`: establishing the TCP connection.
//! - `acse`: waiting for A-ASSOCIATE-AC/RJ, for A-RELEASE-RP, and the ARTIM timer.
//! - `dimse`: waiting for a DIMSE response on the requestor side.
//! - `network`: the longest the connection may stay silent while we wait for the peer
//!   (an SCP waiting for the next request).

mod assoc;
#[cfg(target_os = "linux")]
mod sys;
pub mod tls;

pub use crate::ul::{DataSink, Deferred, MessageData, Received, Sink};
pub use assoc::Association;
pub use tls::{TlsClient, TlsServer, TlsSettings};

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
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
    #[error("TLS: {0}")]
    Tls(String),
}

/// What the driver runs an association over: a byte stream plus the few controls it needs.
/// A TLS stream implements it with `raw_fd` None (no splice or sendfile under encryption).
pub trait Transport: Read + Write + Send {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
    fn set_write_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
    fn set_nonblocking(&self, on: bool) -> std::io::Result<()>;
    fn shutdown(&self);
    fn peer(&self) -> String;
    /// Whether bytes (or an end of stream) can be read without waiting.
    fn readable(&self) -> bool;
    /// Called after each read (TCP_QUICKACK on a socket).
    fn after_read(&self) {}
    /// The socket for the zero-copy paths (splice, sendfile); None opts out of them.
    fn raw_fd(&self) -> Option<i32> {
        None
    }
}

impl Transport for TcpStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }
    fn set_nonblocking(&self, on: bool) -> std::io::Result<()> {
        TcpStream::set_nonblocking(self, on)
    }
    fn shutdown(&self) {
        let _ = TcpStream::shutdown(self, Shutdown::Both);
    }
    fn peer(&self) -> String {
        self.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into())
    }
    #[cfg(target_os = "linux")]
    fn readable(&self) -> bool {
        sys::readable(std::os::fd::AsRawFd::as_raw_fd(self))
    }
    #[cfg(not(target_os = "linux"))]
    fn readable(&self) -> bool {
        false
    }
    #[cfg(target_os = "linux")]
    fn after_read(&self) {
        sys::quick_ack(std::os::fd::AsRawFd::as_raw_fd(self));
    }
    #[cfg(target_os = "linux")]
    fn raw_fd(&self) -> Option<i32> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }
}

/// Open a TCP connection (TCP_NODELAY, large buffers where allowed) to `addr`.
fn connect(addr: &str, timeout: Option<Duration>) -> Result<TcpStream, NetError> {
    let err = |source| NetError::Connect { addr: addr.to_string(), source };
    let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(err)?.collect();
    let mut last = None;
    for a in addrs {
        match timeout.map_or_else(|| TcpStream::connect(a), |t| TcpStream::connect_timeout(&a, t)) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    let source = last.unwrap_or_else(|| std::io::Error::new(ErrorKind::NotFound, "no address"));
    if matches!(source.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
        return Err(NetError::Timeout { what: "connecting (connect timeout)", after: timeout.unwrap_or_default() });
    }
    Err(err(source))
}
