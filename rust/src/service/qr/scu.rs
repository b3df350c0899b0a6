//! The Q/R SCU: C-GET (the instances that come back stream to files).

use log::warn;

use super::status;
use crate::dimse::{field, Command};
use crate::net::{Association, NetError, Received, ServiceHandler};
use crate::service::store::StorageHandler;

/// C-GET as SCU: send the request, store every C-STORE sub-operation that comes back
/// on this association through `storage` (streamed to files), report each pending
/// C-GET-RSP to `on_pending`, and return the final response and its data set.
pub fn get_scu(
    assoc: &mut Association,
    ctx: u8,
    request: &Command,
    identifier: &[u8],
    storage: &StorageHandler,
    dimse_timeout: Option<std::time::Duration>,
    on_pending: &mut dyn FnMut(&Command),
) -> Result<(Command, Option<Vec<u8>>), NetError> {
    assoc.send_message(ctx, request, Some(identifier))?;
    let negotiated = assoc.negotiated().clone();
    loop {
        let msg = assoc.receive_with(dimse_timeout, "waiting for C-GET-RSP or C-STORE-RQ (DIMSE timeout)", &mut |c, cmd| {
            storage.data_sink(&negotiated, c, cmd)
        })?;
        match msg {
            Received::Message { context_id, command, data } if command.command_field == field::C_STORE_RQ => {
                storage.on_message(assoc, context_id, command, data)?;
            }
            Received::Message { command, data, .. }
                if command.command_field == field::C_GET_RSP && command.message_id_being_responded_to == request.message_id =>
            {
                if command.status == Some(status::PENDING) || command.status == Some(0xFF01) {
                    on_pending(&command);
                    continue;
                }
                return Ok((command, data.into_bytes()));
            }
            Received::Message { command, .. } => warn!("ignoring {command} during C-GET"),
            Received::ReleaseRequested => {
                let _ = assoc.release_response();
                return Err(NetError::Closed("(it asked to release during C-GET)"));
            }
        }
    }
}
