//! The upper layer (PS3.8): the protocol state machine of 9.2, association negotiation,
//! and the connection that ties them to bytes.
//!
//! All sans-I/O: [`machine`] turns events into outputs, [`negotiation`] turns
//! configurations and A-ASSOCIATE PDUs into PDUs and negotiated parameters, and
//! [`connection`] turns received bytes into events and requests into bytes.
pub mod connection;
pub mod machine;
pub mod message;
pub mod negotiation;
pub mod stream;

pub use connection::{fuzz_feed, ConnError, Connection, Event as ConnEvent};
pub use machine::*;
pub use message::{DataSink, Deferred, MessageData, Received, Sink};
pub use negotiation::*;
