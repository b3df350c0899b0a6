//! The upper layer (PS3.8): the protocol state machine of 9.2 and association negotiation.
//!
//! Both are sans-I/O: [`machine`] turns events into outputs, [`negotiation`] turns
//! configurations and A-ASSOCIATE PDUs into PDUs and negotiated parameters.
pub mod machine;
pub mod negotiation;

pub use machine::*;
pub use negotiation::*;
