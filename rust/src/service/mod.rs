//! The DIMSE services, one home per service and role, over the `net` driver:
//! - [`echo`]: Verification (C-ECHO), both roles.
//! - [`store`]: Storage (C-STORE): the SCU that streams files to a peer, the SCP that
//!   writes them, the header scan and the status codes.
//! - [`qr`]: Query/Retrieve (C-FIND, C-MOVE, C-GET), both roles.

pub mod echo;
pub mod qr;
pub mod store;
