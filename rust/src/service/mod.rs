//! The DIMSE services, one home per service and role, over the `net` driver:
//! - [`echo`]: Verification (C-ECHO), both roles.
//! - [`store`]: Storage (C-STORE): the SCU that streams files to a peer, the SCP that
//!   writes them, the header scan and the status codes.
//! - [`qr`]: Query/Retrieve (C-FIND, C-MOVE, C-GET), both roles.
//! - [`serve`]: one accepted connection, its requests to a [`serve::ServiceHandler`].
//! - [`server`]: the listening side, a thread per accepted connection.

pub mod echo;
pub mod qr;
pub mod serve;
pub mod server;
pub mod store;

use crate::dimse::{field, Command};
use crate::net::{Association, NetError};

/// The first accepted presentation context for `abstract_syntax` on which we may act
/// as SCU.
pub fn scu_context(assoc: &Association, abstract_syntax: &str) -> Result<u8, NetError> {
    assoc
        .negotiated()
        .find_context_as_scu(abstract_syntax, None)
        .map(|c| c.id)
        .ok_or_else(|| NetError::NoContext(abstract_syntax.to_string()))
}

/// Ready `request` to go on `abstract_syntax`: its context (see [`scu_context`]), a
/// message ID when it has none, and the Affected SOP Class UID when absent (a
/// C-CANCEL-RQ carries none). Returns the context ID.
pub fn prepare_request(assoc: &mut Association, abstract_syntax: &str, request: &mut Command) -> Result<u8, NetError> {
    let ctx = scu_context(assoc, abstract_syntax)?;
    if request.message_id.is_none() {
        request.message_id = Some(assoc.next_message_id());
    }
    if request.affected_sop_class_uid.is_none() && request.command_field != field::C_CANCEL_RQ {
        request.affected_sop_class_uid = Some(abstract_syntax.to_string());
    }
    Ok(ctx)
}
