//! The DIMSE command set (PS3.7 section 9, 10 and Annex E).
//!
//! A command is a set of group 0000 elements, always encoded in implicit VR little
//! endian and always starting with Command Group Length (0000,0000). [`Command`]
//! holds the elements the DIMSE-C and DIMSE-N services use as typed fields; any
//! other group 0000 element a peer sends is kept in `other` and re-encoded as is.

use std::fmt;

/// Command Field values (PS3.7 E.1-1, E.2-1).
pub mod field {
    pub const C_STORE_RQ: u16 = 0x0001;
    pub const C_STORE_RSP: u16 = 0x8001;
    pub const C_GET_RQ: u16 = 0x0010;
    pub const C_GET_RSP: u16 = 0x8010;
    pub const C_FIND_RQ: u16 = 0x0020;
    pub const C_FIND_RSP: u16 = 0x8020;
    pub const C_MOVE_RQ: u16 = 0x0021;
    pub const C_MOVE_RSP: u16 = 0x8021;
    pub const C_ECHO_RQ: u16 = 0x0030;
    pub const C_ECHO_RSP: u16 = 0x8030;
    pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
    pub const N_EVENT_REPORT_RSP: u16 = 0x8100;
    pub const N_GET_RQ: u16 = 0x0110;
    pub const N_GET_RSP: u16 = 0x8110;
    pub const N_SET_RQ: u16 = 0x0120;
    pub const N_SET_RSP: u16 = 0x8120;
    pub const N_ACTION_RQ: u16 = 0x0130;
    pub const N_ACTION_RSP: u16 = 0x8130;
    pub const N_CREATE_RQ: u16 = 0x0140;
    pub const N_CREATE_RSP: u16 = 0x8140;
    pub const N_DELETE_RQ: u16 = 0x0150;
    pub const N_DELETE_RSP: u16 = 0x8150;
    pub const C_CANCEL_RQ: u16 = 0x0FFF;

    /// A readable name for log lines.
    pub fn name(field: u16) -> &'static str {
        match field {
            C_STORE_RQ => "C-STORE-RQ",
            C_STORE_RSP => "C-STORE-RSP",
            C_GET_RQ => "C-GET-RQ",
            C_GET_RSP => "C-GET-RSP",
            C_FIND_RQ => "C-FIND-RQ",
            C_FIND_RSP => "C-FIND-RSP",
            C_MOVE_RQ => "C-MOVE-RQ",
            C_MOVE_RSP => "C-MOVE-RSP",
            C_ECHO_RQ => "C-ECHO-RQ",
            C_ECHO_RSP => "C-ECHO-RSP",
            N_EVENT_REPORT_RQ => "N-EVENT-REPORT-RQ",
            N_EVENT_REPORT_RSP => "N-EVENT-REPORT-RSP",
            N_GET_RQ => "N-GET-RQ",
            N_GET_RSP => "N-GET-RSP",
            N_SET_RQ => "N-SET-RQ",
            N_SET_RSP => "N-SET-RSP",
            N_ACTION_RQ => "N-ACTION-RQ",
            N_ACTION_RSP => "N-ACTION-RSP",
            N_CREATE_RQ => "N-CREATE-RQ",
            N_CREATE_RSP => "N-CREATE-RSP",
            N_DELETE_RQ => "N-DELETE-RQ",
            N_DELETE_RSP => "N-DELETE-RSP",
            C_CANCEL_RQ => "C-CANCEL-RQ",
            _ => "unknown command",
        }
    }
}

/// Priority (0000,0700).
pub mod priority {
    pub const MEDIUM: u16 = 0x0000;
    pub const HIGH: u16 = 0x0001;
    pub const LOW: u16 = 0x0002;
}

/// Command Data Set Type value meaning "no data set follows" (PS3.7 E.1-1).
pub const NO_DATASET: u16 = 0x0101;
/// Value we send when a data set follows (any other value means the same).
pub const DATASET_PRESENT: u16 = 0x0000;

/// Largest command set we accept from a peer. Real command sets are a few hundred
/// bytes; an attribute identifier list can make them longer, never this long.
pub const MAX_COMMAND_SET_LEN: usize = 1 << 20;

/// Element numbers in group 0000.
mod tag {
    pub const GROUP_LENGTH: u16 = 0x0000;
    pub const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
    pub const REQUESTED_SOP_CLASS_UID: u16 = 0x0003;
    pub const COMMAND_FIELD: u16 = 0x0100;
    pub const MESSAGE_ID: u16 = 0x0110;
    pub const MESSAGE_ID_BEING_RESPONDED_TO: u16 = 0x0120;
    pub const MOVE_DESTINATION: u16 = 0x0600;
    pub const PRIORITY: u16 = 0x0700;
    pub const COMMAND_DATA_SET_TYPE: u16 = 0x0800;
    pub const STATUS: u16 = 0x0900;
    pub const OFFENDING_ELEMENT: u16 = 0x0901;
    pub const ERROR_COMMENT: u16 = 0x0902;
    pub const ERROR_ID: u16 = 0x0903;
    pub const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;
    pub const REQUESTED_SOP_INSTANCE_UID: u16 = 0x1001;
    pub const EVENT_TYPE_ID: u16 = 0x1002;
    pub const ATTRIBUTE_IDENTIFIER_LIST: u16 = 0x1005;
    pub const ACTION_TYPE_ID: u16 = 0x1008;
    pub const REMAINING: u16 = 0x1020;
    pub const COMPLETED: u16 = 0x1021;
    pub const FAILED: u16 = 0x1022;
    pub const WARNING: u16 = 0x1023;
    pub const MOVE_ORIGINATOR_AE: u16 = 0x1030;
    pub const MOVE_ORIGINATOR_MESSAGE_ID: u16 = 0x1031;
}

/// Errors decoding a command set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command set truncated at offset {offset}: element (0000,{element:04X}) needs {needed} bytes, {available} left")]
    Truncated { offset: usize, element: u16, needed: usize, available: usize },
    #[error("command set holds element ({group:04X},{element:04X}) at offset {offset}: only group 0000 is allowed")]
    WrongGroup { offset: usize, group: u16, element: u16 },
    #[error("command element (0000,{element:04X}) at offset {offset} has length {length}, expected {expected}")]
    BadLength { offset: usize, element: u16, length: usize, expected: &'static str },
    #[error("command set has no Command Field (0000,0100)")]
    NoCommandField,
    #[error("command set of {0} bytes exceeds the limit of {MAX_COMMAND_SET_LEN}")]
    TooLarge(usize),
}

/// A DIMSE command. `None` fields are absent from the encoded command set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    pub command_field: u16,
    pub affected_sop_class_uid: Option<String>,
    pub requested_sop_class_uid: Option<String>,
    pub message_id: Option<u16>,
    pub message_id_being_responded_to: Option<u16>,
    pub move_destination: Option<String>,
    pub priority: Option<u16>,
    /// True when a data set follows the command (Command Data Set Type != 0x0101).
    pub has_dataset: bool,
    pub status: Option<u16>,
    pub offending_element: Vec<u32>,
    pub error_comment: Option<String>,
    pub error_id: Option<u16>,
    pub affected_sop_instance_uid: Option<String>,
    pub requested_sop_instance_uid: Option<String>,
    pub event_type_id: Option<u16>,
    pub attribute_identifier_list: Vec<u32>,
    pub action_type_id: Option<u16>,
    pub remaining: Option<u16>,
    pub completed: Option<u16>,
    pub failed: Option<u16>,
    pub warning: Option<u16>,
    pub move_originator_ae_title: Option<String>,
    pub move_originator_message_id: Option<u16>,
    /// Any other group 0000 element, as (element number, raw value bytes).
    pub other: Vec<(u16, Vec<u8>)>,
}

impl Command {
    /// C-ECHO-RQ (PS3.7 9.3.5.1).
    pub fn echo_rq(message_id: u16) -> Command {
        Command {
            command_field: field::C_ECHO_RQ,
            affected_sop_class_uid: Some(crate::dimse::VERIFICATION_SOP_CLASS.to_string()),
            message_id: Some(message_id),
            ..Default::default()
        }
    }

    /// A response to `rq` with `status`: copies the affected SOP class/instance and
    /// the message id being responded to, as PS3.7 requires of every -RSP.
    pub fn response_to(rq: &Command, status: u16) -> Command {
        Command {
            command_field: rq.command_field | 0x8000,
            affected_sop_class_uid: rq
                .affected_sop_class_uid
                .clone()
                .or_else(|| rq.requested_sop_class_uid.clone()),
            message_id_being_responded_to: rq.message_id,
            status: Some(status),
            affected_sop_instance_uid: rq
                .affected_sop_instance_uid
                .clone()
                .or_else(|| rq.requested_sop_instance_uid.clone()),
            ..Default::default()
        }
    }

    pub fn is_request(&self) -> bool {
        self.command_field & 0x8000 == 0
    }

    pub fn name(&self) -> &'static str {
        field::name(self.command_field)
    }

    /// Encode as an implicit VR little endian group 0000 with its group length.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(256);
        let mut el = |elem: u16, value: &[u8]| {
            body.extend_from_slice(&0u16.to_le_bytes());
            body.extend_from_slice(&elem.to_le_bytes());
            body.extend_from_slice(&(value.len() as u32).to_le_bytes());
            body.extend_from_slice(value);
        };
        let uid = |s: &str| pad(s, 0);
        let text = |s: &str| pad(s, b' ');
        let us = |v: u16| v.to_le_bytes().to_vec();
        let at = |tags: &[u32]| {
            let mut out = Vec::with_capacity(tags.len() * 4);
            for t in tags {
                out.extend_from_slice(&((t >> 16) as u16).to_le_bytes());
                out.extend_from_slice(&(*t as u16).to_le_bytes());
            }
            out
        };

        // Elements in ascending tag order, `other` merged in.
        let mut items: Vec<(u16, Vec<u8>)> = Vec::with_capacity(16 + self.other.len());
        if let Some(v) = &self.affected_sop_class_uid {
            items.push((tag::AFFECTED_SOP_CLASS_UID, uid(v)));
        }
        if let Some(v) = &self.requested_sop_class_uid {
            items.push((tag::REQUESTED_SOP_CLASS_UID, uid(v)));
        }
        items.push((tag::COMMAND_FIELD, us(self.command_field)));
        let opt_us = |items: &mut Vec<(u16, Vec<u8>)>, t: u16, v: Option<u16>| {
            if let Some(v) = v {
                items.push((t, us(v)));
            }
        };
        opt_us(&mut items, tag::MESSAGE_ID, self.message_id);
        opt_us(&mut items, tag::MESSAGE_ID_BEING_RESPONDED_TO, self.message_id_being_responded_to);
        if let Some(v) = &self.move_destination {
            items.push((tag::MOVE_DESTINATION, text(v)));
        }
        opt_us(&mut items, tag::PRIORITY, self.priority);
        items.push((
            tag::COMMAND_DATA_SET_TYPE,
            us(if self.has_dataset { DATASET_PRESENT } else { NO_DATASET }),
        ));
        opt_us(&mut items, tag::STATUS, self.status);
        if !self.offending_element.is_empty() {
            items.push((tag::OFFENDING_ELEMENT, at(&self.offending_element)));
        }
        if let Some(v) = &self.error_comment {
            items.push((tag::ERROR_COMMENT, text(v)));
        }
        opt_us(&mut items, tag::ERROR_ID, self.error_id);
        if let Some(v) = &self.affected_sop_instance_uid {
            items.push((tag::AFFECTED_SOP_INSTANCE_UID, uid(v)));
        }
        if let Some(v) = &self.requested_sop_instance_uid {
            items.push((tag::REQUESTED_SOP_INSTANCE_UID, uid(v)));
        }
        opt_us(&mut items, tag::EVENT_TYPE_ID, self.event_type_id);
        if !self.attribute_identifier_list.is_empty() {
            items.push((tag::ATTRIBUTE_IDENTIFIER_LIST, at(&self.attribute_identifier_list)));
        }
        opt_us(&mut items, tag::ACTION_TYPE_ID, self.action_type_id);
        opt_us(&mut items, tag::REMAINING, self.remaining);
        opt_us(&mut items, tag::COMPLETED, self.completed);
        opt_us(&mut items, tag::FAILED, self.failed);
        opt_us(&mut items, tag::WARNING, self.warning);
        if let Some(v) = &self.move_originator_ae_title {
            items.push((tag::MOVE_ORIGINATOR_AE, text(v)));
        }
        opt_us(&mut items, tag::MOVE_ORIGINATOR_MESSAGE_ID, self.move_originator_message_id);
        items.extend(self.other.iter().filter(|(t, _)| *t != tag::GROUP_LENGTH).cloned());
        items.sort_by_key(|(t, _)| *t);

        for (t, v) in &items {
            el(*t, v);
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decode an implicit VR little endian command set.
    pub fn decode(data: &[u8]) -> Result<Command, CommandError> {
        if data.len() > MAX_COMMAND_SET_LEN {
            return Err(CommandError::TooLarge(data.len()));
        }
        let mut cmd = Command::default();
        let mut have_field = false;
        let mut has_dataset_type = None;
        let mut pos = 0usize;
        while pos < data.len() {
            let header = data.get(pos..pos + 8).ok_or(CommandError::Truncated {
                offset: pos,
                element: 0,
                needed: 8,
                available: data.len() - pos,
            })?;
            let group = u16::from_le_bytes([header[0], header[1]]);
            let element = u16::from_le_bytes([header[2], header[3]]);
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if group != 0 {
                return Err(CommandError::WrongGroup { offset: pos, group, element });
            }
            let vstart = pos + 8;
            let value = data.get(vstart..vstart.saturating_add(len)).ok_or(CommandError::Truncated {
                offset: pos,
                element,
                needed: len,
                available: data.len() - vstart,
            })?;
            let us = || -> Result<u16, CommandError> {
                if value.len() != 2 {
                    return Err(CommandError::BadLength { offset: pos, element, length: value.len(), expected: "2 (US)" });
                }
                Ok(u16::from_le_bytes([value[0], value[1]]))
            };
            let at = || -> Result<Vec<u32>, CommandError> {
                if value.len() % 4 != 0 {
                    return Err(CommandError::BadLength { offset: pos, element, length: value.len(), expected: "a multiple of 4 (AT)" });
                }
                Ok(value
                    .chunks_exact(4)
                    .map(|c| {
                        (u32::from(u16::from_le_bytes([c[0], c[1]])) << 16) | u32::from(u16::from_le_bytes([c[2], c[3]]))
                    })
                    .collect())
            };
            let s = || Some(unpad(value));
            match element {
                tag::GROUP_LENGTH => {}
                tag::AFFECTED_SOP_CLASS_UID => cmd.affected_sop_class_uid = s(),
                tag::REQUESTED_SOP_CLASS_UID => cmd.requested_sop_class_uid = s(),
                tag::COMMAND_FIELD => {
                    cmd.command_field = us()?;
                    have_field = true;
                }
                tag::MESSAGE_ID => cmd.message_id = Some(us()?),
                tag::MESSAGE_ID_BEING_RESPONDED_TO => cmd.message_id_being_responded_to = Some(us()?),
                tag::MOVE_DESTINATION => cmd.move_destination = s(),
                tag::PRIORITY => cmd.priority = Some(us()?),
                tag::COMMAND_DATA_SET_TYPE => has_dataset_type = Some(us()?),
                tag::STATUS => cmd.status = Some(us()?),
                tag::OFFENDING_ELEMENT => cmd.offending_element = at()?,
                tag::ERROR_COMMENT => cmd.error_comment = s(),
                tag::ERROR_ID => cmd.error_id = Some(us()?),
                tag::AFFECTED_SOP_INSTANCE_UID => cmd.affected_sop_instance_uid = s(),
                tag::REQUESTED_SOP_INSTANCE_UID => cmd.requested_sop_instance_uid = s(),
                tag::EVENT_TYPE_ID => cmd.event_type_id = Some(us()?),
                tag::ATTRIBUTE_IDENTIFIER_LIST => cmd.attribute_identifier_list = at()?,
                tag::ACTION_TYPE_ID => cmd.action_type_id = Some(us()?),
                tag::REMAINING => cmd.remaining = Some(us()?),
                tag::COMPLETED => cmd.completed = Some(us()?),
                tag::FAILED => cmd.failed = Some(us()?),
                tag::WARNING => cmd.warning = Some(us()?),
                tag::MOVE_ORIGINATOR_AE => cmd.move_originator_ae_title = s(),
                tag::MOVE_ORIGINATOR_MESSAGE_ID => cmd.move_originator_message_id = Some(us()?),
                other => cmd.other.push((other, value.to_vec())),
            }
            pos = vstart + len;
        }
        if !have_field {
            return Err(CommandError::NoCommandField);
        }
        // Absent Command Data Set Type: treat as no data set (it is required; be lenient).
        cmd.has_dataset = matches!(has_dataset_type, Some(v) if v != NO_DATASET);
        Ok(cmd)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(id) = self.message_id {
            write!(f, " id={id}")?;
        }
        if let Some(id) = self.message_id_being_responded_to {
            write!(f, " responding-to={id}")?;
        }
        if let Some(s) = self.status {
            write!(f, " status=0x{s:04X}")?;
        }
        if let Some(c) = self.affected_sop_class_uid.as_deref().or(self.requested_sop_class_uid.as_deref()) {
            write!(f, " class={c}")?;
        }
        if let Some(i) = self.affected_sop_instance_uid.as_deref() {
            write!(f, " instance={i}")?;
        }
        if self.has_dataset {
            write!(f, " +dataset")?;
        }
        Ok(())
    }
}

fn pad(s: &str, with: u8) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(with);
    }
    v
}

fn unpad(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    s.trim_end_matches(['\0', ' ']).trim_start_matches(' ').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_rq_bytes_match_the_standard_layout() {
        let enc = Command::echo_rq(7).encode();
        // (0000,0000) UL 4 = group length
        assert_eq!(&enc[0..8], &[0, 0, 0, 0, 4, 0, 0, 0]);
        let glen = u32::from_le_bytes(enc[8..12].try_into().unwrap()) as usize;
        assert_eq!(glen, enc.len() - 12);
        // first element after the group length: (0000,0002) with the padded UID "1.2.840.10008.1.1" (17 -> 18)
        assert_eq!(&enc[12..16], &[0, 0, 2, 0]);
        assert_eq!(u32::from_le_bytes(enc[16..20].try_into().unwrap()), 18);
        assert_eq!(&enc[20..38], b"1.2.840.10008.1.1\0");
        // then (0000,0100) US 0x0030
        assert_eq!(&enc[38..48], &[0, 0, 0, 1, 2, 0, 0, 0, 0x30, 0]);
        let back = Command::decode(&enc).unwrap();
        assert_eq!(back, Command::echo_rq(7));
        assert!(!back.has_dataset);
    }

    #[test]
    fn full_round_trip_with_every_field() {
        let cmd = Command {
            command_field: field::C_MOVE_RSP,
            affected_sop_class_uid: Some("1.2.840.10008.5.1.4.1.2.2.2".into()),
            requested_sop_class_uid: Some("1.2.3".into()),
            message_id: Some(1),
            message_id_being_responded_to: Some(65535),
            move_destination: Some("DEST".into()),
            priority: Some(priority::HIGH),
            has_dataset: true,
            status: Some(0xFF00),
            offending_element: vec![0x0010_0010, 0x0020_000D],
            error_comment: Some("odd".into()),
            error_id: Some(3),
            affected_sop_instance_uid: Some("1.2.3.4".into()),
            requested_sop_instance_uid: Some("1.2.3.45".into()),
            event_type_id: Some(1),
            attribute_identifier_list: vec![0x0008_0018],
            action_type_id: Some(2),
            remaining: Some(5),
            completed: Some(6),
            failed: Some(7),
            warning: Some(8),
            move_originator_ae_title: Some("ORIG".into()),
            move_originator_message_id: Some(9),
            other: vec![(0x5000, vec![1, 2])],
        };
        assert_eq!(Command::decode(&cmd.encode()).unwrap(), cmd);
    }

    #[test]
    fn response_copies_identifiers() {
        let rq = Command::echo_rq(42);
        let rsp = Command::response_to(&rq, 0);
        assert_eq!(rsp.command_field, field::C_ECHO_RSP);
        assert_eq!(rsp.message_id_being_responded_to, Some(42));
        assert_eq!(rsp.affected_sop_class_uid.as_deref(), Some("1.2.840.10008.1.1"));
    }

    #[test]
    fn bad_command_sets_are_errors() {
        let enc = Command::echo_rq(1).encode();
        for cut in 1..enc.len() {
            // every truncation that splits an element is an error, never a panic
            let r = Command::decode(&enc[..cut]);
            if r.is_ok() {
                // a cut on an element boundary after the command field is a valid shorter set
                assert!(cut >= 48);
            }
        }
        let mut wrong = enc.clone();
        wrong[12] = 8; // group 0008
        assert!(matches!(Command::decode(&wrong), Err(CommandError::WrongGroup { .. })));
        let mut huge = enc.clone();
        huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Command::decode(&huge), Err(CommandError::Truncated { .. })));
        // no command field
        assert_eq!(Command::decode(&enc[..12]), Err(CommandError::NoCommandField));
        // US of the wrong size
        let mut bad = vec![0, 0, 0, 1, 3, 0, 0, 0, 1, 2, 3];
        bad.splice(0..0, []);
        assert!(matches!(Command::decode(&bad), Err(CommandError::BadLength { .. })));
    }
}
