//! DIMSE messages: the command set codec ([`command`]), fragmentation of a message into
//! P-DATA-TF PDUs sized to the peer's maximum ([`fragment`]) and reassembly of received
//! PDVs into commands and data ([`Reassembler`]). No I/O here: the driver in `net/` feeds
//! bytes in and writes what comes out.
//!
//! Reassembly is event based so that large data sets need not be held in memory: the
//! reassembler hands each data fragment out as it arrives, and the driver either collects
//! them (small identifiers) or streams them to a file (C-STORE).

pub mod command;
pub mod status;

pub use command::{field, priority, Command, CommandError};

use crate::pdu::{self, Pdv};

pub use crate::uid::{EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, VERIFICATION as VERIFICATION_SOP_CLASS};

/// Errors in the sequence of PDVs a peer sends.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DimseError {
    #[error("invalid command set: {0}")]
    Command(#[from] CommandError),
    #[error("data fragment on presentation context {0} while no command announced a data set")]
    DataBeforeCommand(u8),
    #[error("data fragment on presentation context {got} while the command came on {expected}")]
    ContextMismatch { expected: u8, got: u8 },
    #[error("command fragment received while the data set of the previous message was incomplete")]
    CommandDuringData,
    #[error("command set larger than {} bytes", command::MAX_COMMAND_SET_LEN)]
    CommandTooLarge,
}

/// Append P-DATA-TF PDUs carrying `data` as command (`is_command`) or data fragments on
/// `context_id`, each PDU holding one PDV no larger than the peer's maximum PDU length
/// `peer_max_pdu` allows (0 = no limit). The last fragment carries the "last" bit. An empty
/// `data` still produces one (empty, last) fragment, as a message must end explicitly.
pub fn fragment(context_id: u8, is_command: bool, data: &[u8], peer_max_pdu: u32, out: &mut Vec<u8>) {
    let chunk = pdu::max_pdv_data_len(peer_max_pdu).max(1);
    let base = if is_command { Pdv::COMMAND } else { 0 };
    if data.is_empty() {
        pdu::write_single_pdv_header(out, context_id, base | Pdv::LAST, 0);
        return;
    }
    let mut chunks = data.chunks(chunk).peekable();
    while let Some(c) = chunks.next() {
        let control = if chunks.peek().is_none() { base | Pdv::LAST } else { base };
        pdu::write_single_pdv_header(out, context_id, control, c.len() as u32);
        out.extend_from_slice(c);
    }
}

/// What the reassembler saw in one PDV.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // transient, one per PDV
pub enum DimseEvent<'a> {
    /// A complete command set arrived. If `command.has_dataset`, data fragments follow.
    Command { context_id: u8, command: Command },
    /// One data fragment of the message whose command came last; `last` ends the message.
    /// It borrows the received PDU: nothing is copied on the way to a file.
    Data { context_id: u8, data: &'a [u8], last: bool },
}

/// Turns received PDVs into commands and data fragments, checking their order.
#[derive(Debug, Default)]
pub struct Reassembler {
    command_buf: Vec<u8>,
    command_ctx: Option<u8>,
    /// Set while the data set of the last command is expected: its context.
    expecting_data: Option<u8>,
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// True between a command that announced a data set and that data set's last fragment.
    pub fn in_data(&self) -> bool {
        self.expecting_data.is_some()
    }

    /// True when no message is partly received.
    pub fn is_idle(&self) -> bool {
        self.expecting_data.is_none() && self.command_ctx.is_none()
    }

    /// Feed one PDV (as owned data; see [`push_ref`](Self::push_ref)).
    pub fn push<'a>(&mut self, pdv: &'a Pdv) -> Result<Option<DimseEvent<'a>>, DimseError> {
        self.push_ref(pdv.context_id, pdv.control, &pdv.data)
    }

    /// Feed one PDV given by its parts. Returns an event when a command completed or a
    /// data fragment came.
    pub fn push_ref<'a>(
        &mut self,
        context_id: u8,
        control: u8,
        data: &'a [u8],
    ) -> Result<Option<DimseEvent<'a>>, DimseError> {
        let last = control & Pdv::LAST != 0;
        if control & Pdv::COMMAND != 0 {
            if self.expecting_data.is_some() {
                return Err(DimseError::CommandDuringData);
            }
            if let Some(ctx) = self.command_ctx {
                if ctx != context_id {
                    return Err(DimseError::ContextMismatch { expected: ctx, got: context_id });
                }
            }
            if self.command_buf.len() + data.len() > command::MAX_COMMAND_SET_LEN {
                return Err(DimseError::CommandTooLarge);
            }
            self.command_ctx = Some(context_id);
            if self.command_buf.is_empty() && last {
                // common case: the whole command in one PDV, no copy
                return self.finish_command(context_id, data).map(Some);
            }
            self.command_buf.extend_from_slice(data);
            if !last {
                return Ok(None);
            }
            let buf = std::mem::take(&mut self.command_buf);
            return self.finish_command(context_id, &buf).map(Some);
        }
        match self.expecting_data {
            None => Err(DimseError::DataBeforeCommand(context_id)),
            Some(ctx) if ctx != context_id => Err(DimseError::ContextMismatch { expected: ctx, got: context_id }),
            Some(_) => {
                if last {
                    self.expecting_data = None;
                }
                Ok(Some(DimseEvent::Data { context_id, data, last }))
            }
        }
    }

    fn finish_command(&mut self, context_id: u8, bytes: &[u8]) -> Result<DimseEvent<'static>, DimseError> {
        self.command_ctx = None;
        self.command_buf.clear();
        let command = Command::decode(bytes)?;
        if command.has_dataset {
            self.expecting_data = Some(context_id);
        }
        Ok(DimseEvent::Command { context_id, command })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{decode, Decoded, Pdu};

    fn split_pdus(mut bytes: &[u8]) -> Vec<Pdv> {
        let mut pdvs = Vec::new();
        while !bytes.is_empty() {
            match decode(bytes, u32::MAX).unwrap() {
                Decoded::Complete(Pdu::PData(p), used) => {
                    pdvs.extend(p.pdvs);
                    bytes = &bytes[used..];
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        pdvs
    }

    #[test]
    fn fragments_respect_peer_max_pdu_edges() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        for max in [0u32, 4096, 16384, 10_006, 10_005, 10_007, 100] {
            let mut out = Vec::new();
            fragment(3, false, &data, max, &mut out);
            let pdvs = split_pdus(&out);
            // every PDU body within the peer's maximum
            let mut rest = &out[..];
            while !rest.is_empty() {
                let (_, len) = pdu::peek_header(rest).unwrap();
                if max != 0 {
                    assert!(len <= max, "PDU body {len} > max {max}");
                }
                rest = &rest[6 + len as usize..];
            }
            let joined: Vec<u8> = pdvs.iter().flat_map(|p| p.data.clone()).collect();
            assert_eq!(joined, data);
            assert!(pdvs.last().unwrap().is_last());
            assert!(pdvs[..pdvs.len() - 1].iter().all(|p| !p.is_last()));
            let expect = match max {
                0 => 1,
                10_006 => 1, // exactly full: one PDU whose body is exactly the maximum
                10_005 => 2, // one byte short: a second fragment
                _ => 0,
            };
            if expect != 0 {
                assert_eq!(pdvs.len(), expect, "max {max}");
            }
        }
    }

    #[test]
    fn reassembles_command_and_data_across_fragments() {
        let mut cmd = Command::echo_rq(5);
        cmd.command_field = field::C_STORE_RQ;
        cmd.has_dataset = true;
        let mut out = Vec::new();
        fragment(1, true, &cmd.encode(), 64, &mut out);
        fragment(1, false, &[9u8; 300], 64, &mut out);
        let mut r = Reassembler::new();
        let mut got_cmd = None;
        let mut data = Vec::new();
        let mut ended = false;
        for pdv in split_pdus(&out) {
            match r.push(&pdv).unwrap() {
                Some(DimseEvent::Command { command, .. }) => got_cmd = Some(command),
                Some(DimseEvent::Data { data: d, last, .. }) => {
                    data.extend_from_slice(d);
                    ended = last;
                }
                None => {}
            }
        }
        assert_eq!(got_cmd.unwrap(), cmd);
        assert_eq!(data, vec![9u8; 300]);
        assert!(ended && r.is_idle());
    }

    #[test]
    fn out_of_order_pdvs_are_errors() {
        let mut r = Reassembler::new();
        let data = Pdv { context_id: 1, control: Pdv::LAST, data: vec![1, 2] };
        assert_eq!(r.push(&data), Err(DimseError::DataBeforeCommand(1)));
        let mut cmd = Command::echo_rq(1);
        cmd.has_dataset = true;
        let c = Pdv { context_id: 1, control: Pdv::COMMAND | Pdv::LAST, data: cmd.encode() };
        assert!(matches!(r.push(&c), Ok(Some(DimseEvent::Command { .. }))));
        assert_eq!(
            r.push(&Pdv { context_id: 3, control: Pdv::LAST, data: vec![] }),
            Err(DimseError::ContextMismatch { expected: 1, got: 3 })
        );
        assert_eq!(r.push(&c), Err(DimseError::CommandDuringData));
    }
}
