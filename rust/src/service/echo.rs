//! The Verification service class (PS3.4 Annex A, PS3.7 9.1.5): C-ECHO.
//!
//! SCU: [`echo_scu`] sends C-ECHO-RQ on the Verification context and waits for the
//! response. SCP: [`EchoOnlyHandler`] answers C-ECHO and refuses the rest;
//! [`answer_echo_or_unrecognized`] is the fallback every other handler shares.

use std::time::Duration;

use log::warn;

use crate::dimse::{field, Command, VERIFICATION_SOP_CLASS};
use crate::net::{Association, MessageData, NetError, Received};
use crate::service::serve::ServiceHandler;

use crate::dimse::status::{SUCCESS, UNRECOGNIZED_OPERATION};

/// C-ECHO as SCU on the accepted Verification context: returns (status, message ID
/// being responded to). A response to another message ID is taken, with a warning;
/// other messages are ignored while waiting (`dimse_timeout`).
pub fn echo_scu(assoc: &mut Association, message_id: Option<u16>, dimse_timeout: Option<Duration>) -> Result<(u16, u16), NetError> {
    let ctx = assoc
        .negotiated()
        .find_context(VERIFICATION_SOP_CLASS, None)
        .map(|c| c.id)
        .ok_or_else(|| NetError::NoContext(format!("Verification ({VERIFICATION_SOP_CLASS})")))?;
    let id = message_id.unwrap_or_else(|| assoc.next_message_id());
    assoc.send_message(ctx, &Command::echo_rq(id), None)?;
    loop {
        match assoc.receive(dimse_timeout, "waiting for C-ECHO-RSP (DIMSE timeout)")? {
            Received::Message { command, .. } if command.command_field == field::C_ECHO_RSP => {
                let responded = command.message_id_being_responded_to.unwrap_or(0);
                if responded != id {
                    warn!("C-ECHO-RSP answers message {responded}, we sent {id}");
                }
                return Ok((command.status.unwrap_or(0xFFFF), responded));
            }
            Received::Message { command, .. } => {
                warn!("ignoring {command} while waiting for C-ECHO-RSP");
            }
            Received::ReleaseRequested => {
                let _ = assoc.release_response();
                return Err(NetError::Closed("(it asked to release while we waited for C-ECHO-RSP)"));
            }
        }
    }
}

/// Answers C-ECHO with success and every other request with "unrecognized operation".
pub struct EchoOnlyHandler;

impl ServiceHandler for EchoOnlyHandler {
    fn on_message(&self, assoc: &mut Association, ctx: u8, command: Command, _data: MessageData) -> Result<(), NetError> {
        answer_echo_or_unrecognized(assoc, ctx, &command)
    }
}

/// The default behaviour shared by handlers: C-ECHO succeeds, C-CANCEL is ignored when
/// nothing is running, other requests get 0x0211, responses from the peer are logged.
pub fn answer_echo_or_unrecognized(assoc: &mut Association, ctx: u8, command: &Command) -> Result<(), NetError> {
    match command.command_field {
        field::C_ECHO_RQ => assoc.send_message(ctx, &Command::response_to(command, SUCCESS), None),
        field::C_CANCEL_RQ => Ok(()),
        f if f & 0x8000 != 0 => {
            warn!("{}: unexpected response {} ignored", assoc.peer_addr(), command);
            Ok(())
        }
        _ => {
            warn!("{}: {} not supported here; answering 0x0211", assoc.peer_addr(), command);
            assoc.send_message(ctx, &Command::response_to(command, UNRECOGNIZED_OPERATION), None)
        }
    }
}
