//! Encoder of the upper-layer PDUs (PS3.8 9.3): the writing half of the codec described
//! in `codec.rs` (wire layout, encoding limits), and the fragmentation arithmetic of
//! P-DATA-TF.

use std::ops::Range;

use super::codec::*;
use super::types::*;

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Append the encoding of `pdu` to `out`.
///
/// Never panics. A field too long for its length field is truncated with a warning in
/// the log (see the module documentation); use [`try_encode`] to get an error instead.
pub fn encode(pdu: &Pdu, out: &mut Vec<u8>) {
    let mut w = Writer { out, problem: None };
    w.pdu(pdu);
    if let Some(p) = w.problem {
        log::warn!("PDU encoded with truncated fields: {p}");
    }
}

/// Like [`encode`], but a field that does not fit its length field is an error
/// ([`PduError::Unencodable`]) and `out` is left as it was.
pub fn try_encode(pdu: &Pdu, out: &mut Vec<u8>) -> Result<(), PduError> {
    let start = out.len();
    let mut w = Writer { out, problem: None };
    w.pdu(pdu);
    match w.problem {
        None => Ok(()),
        Some(what) => {
            out.truncate(start);
            Err(PduError::Unencodable { what })
        }
    }
}

/// The encoding of `pdu` in a new vector (see [`encode`]).
pub fn encode_to_vec(pdu: &Pdu) -> Vec<u8> {
    let mut out = Vec::new();
    encode(pdu, &mut out);
    out
}

/// Append the 12-byte header of a P-DATA-TF PDU that holds exactly one PDV of `data_len`
/// data bytes: PDU type, reserved, PDU length (`data_len + 6`), PDV item length
/// (`data_len + 2`), context id, message control header. The caller writes the data.
///
/// `data_len` must be at most `u32::MAX - 6`; larger values are clamped (and the result is
/// then not a valid PDU for that data).
pub fn write_single_pdv_header(out: &mut Vec<u8>, context_id: u8, control: u8, data_len: u32) {
    debug_assert!(
        data_len <= u32::MAX - PDV_ITEM_OVERHEAD as u32,
        "PDV data too long for one PDU"
    );
    let pdu_len = data_len.saturating_add(PDV_ITEM_OVERHEAD as u32);
    let item_len = data_len.saturating_add(2);
    out.reserve(PDATA_SINGLE_PDV_OVERHEAD);
    out.extend_from_slice(&[pdu_type::P_DATA_TF, 0]);
    out.extend_from_slice(&pdu_len.to_be_bytes());
    out.extend_from_slice(&item_len.to_be_bytes());
    out.extend_from_slice(&[context_id, control]);
}

/// The largest data payload of one PDV in a P-DATA-TF PDU that carries only that PDV, for a
/// peer whose maximum length (user-information sub-item 0x51) is `max_pdu`.
///
/// The maximum length counts the PDU body (everything after the 6-byte PDU header), which
/// for one PDV is the 6-byte PDV item header plus the data: the answer is `max_pdu - 6`.
/// - `max_pdu == 0` means "no limit": we then use bodies of [`UNLIMITED_PEER_MAX_PDU`]
///   bytes (1 MiB), so the answer is `1 MiB - 6`.
/// - A peer that announces 1..=6 cannot receive a single data byte; the answer is 1 so that
///   fragmentation loops always progress (such a peer is broken and should be refused by
///   the negotiation).
pub fn max_pdv_data_len(max_pdu: u32) -> usize {
    let body = if max_pdu == 0 {
        UNLIMITED_PEER_MAX_PDU
    } else {
        max_pdu
    };
    usize::try_from(body)
        .unwrap_or(usize::MAX)
        .saturating_sub(PDV_ITEM_OVERHEAD)
        .max(1)
}

/// How a message (command or data set) of `total_len` bytes is cut into one-PDV P-DATA-TF
/// PDUs for a peer with maximum length `max_pdu`: the byte range of each fragment, in order.
/// A message of 0 bytes gives one empty fragment (it still has to carry the "last" bit).
pub fn fragment_ranges(total_len: usize, max_pdu: u32) -> FragmentRanges {
    FragmentRanges {
        next: 0,
        total: total_len,
        chunk: max_pdv_data_len(max_pdu),
        done: false,
    }
}

/// Iterator returned by [`fragment_ranges`].
#[derive(Debug, Clone)]
pub struct FragmentRanges {
    next: usize,
    total: usize,
    chunk: usize,
    done: bool,
}

impl Iterator for FragmentRanges {
    type Item = Range<usize>;
    fn next(&mut self) -> Option<Range<usize>> {
        if self.done {
            return None;
        }
        let start = self.next;
        let end = start.saturating_add(self.chunk).min(self.total);
        self.next = end;
        self.done = end >= self.total;
        Some(start..end)
    }
}

/// Number of one-PDV P-DATA-TF PDUs needed for a message of `total_len` bytes to a peer with
/// maximum length `max_pdu` (at least 1).
pub fn fragment_count(total_len: usize, max_pdu: u32) -> usize {
    total_len.div_ceil(max_pdv_data_len(max_pdu)).max(1)
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// The first field that did not fit, if any.
    problem: Option<String>,
}

impl Writer<'_> {
    fn problem(&mut self, what: String) {
        self.problem.get_or_insert(what);
    }

    fn put(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }

    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    /// A field with a 2-byte length prefix; longer than 65535 bytes is truncated.
    fn lp16(&mut self, b: &[u8], what: &str) {
        let n = match u16::try_from(b.len()) {
            Ok(n) => n,
            Err(_) => {
                self.problem(format!("{what} is {} bytes, more than 65535", b.len()));
                u16::MAX
            }
        };
        self.u16(n);
        self.put(&b[..usize::from(n)]);
    }

    /// An item: type, `byte1` (reserved or version), 2-byte length, then what `body` writes.
    fn item(&mut self, ty: u8, byte1: u8, body: impl FnOnce(&mut Self)) {
        let start = self.out.len();
        self.put(&[ty, byte1, 0, 0]);
        body(self);
        let len = self.out.len() - start - 4;
        let n = match u16::try_from(len) {
            Ok(n) => n,
            Err(_) => {
                self.problem(format!(
                    "item 0x{ty:02X} is {len} bytes long, more than 65535"
                ));
                self.out.truncate(start + 4 + usize::from(u16::MAX));
                u16::MAX
            }
        };
        self.out[start + 2..start + 4].copy_from_slice(&n.to_be_bytes());
    }

    fn text_item(&mut self, ty: u8, s: &str) {
        self.item(ty, 0, |w| w.put(s.as_bytes()));
    }

    fn ae_title(&mut self, s: &str, what: &str) {
        let b = s.as_bytes();
        if b.len() > 16 {
            self.problem(format!("{what} {s:?} is longer than 16 bytes"));
        }
        let mut field = [b' '; 16];
        let n = b.len().min(16);
        field[..n].copy_from_slice(&b[..n]);
        self.put(&field);
    }

    /// PDU header with a placeholder length; returns where the PDU starts.
    fn pdu_start(&mut self, ty: u8) -> usize {
        let start = self.out.len();
        self.put(&[ty, 0, 0, 0, 0, 0]);
        start
    }

    fn pdu_end(&mut self, start: usize) {
        let len = self.out.len() - start - PDU_HEADER_LEN;
        let n = match u32::try_from(len) {
            Ok(n) => n,
            Err(_) => {
                self.problem(format!("PDU body is {len} bytes long, more than 2^32-1"));
                self.out
                    .truncate(start + PDU_HEADER_LEN + u32::MAX as usize);
                u32::MAX
            }
        };
        self.out[start + 2..start + PDU_HEADER_LEN].copy_from_slice(&n.to_be_bytes());
    }

    fn pdu(&mut self, pdu: &Pdu) {
        match pdu {
            Pdu::AssociateRq(rq) => {
                let start = self.pdu_start(pdu_type::ASSOCIATE_RQ);
                self.associate_fixed(
                    rq.protocol_version,
                    &rq.called_ae_title,
                    &rq.calling_ae_title,
                );
                self.text_item(item_type::APPLICATION_CONTEXT, &rq.application_context);
                for pc in &rq.presentation_contexts {
                    self.item(item_type::PRESENTATION_CONTEXT_RQ, 0, |w| {
                        w.put(&[pc.id, 0, 0, 0]);
                        w.text_item(item_type::ABSTRACT_SYNTAX, &pc.abstract_syntax);
                        for ts in &pc.transfer_syntaxes {
                            w.text_item(item_type::TRANSFER_SYNTAX, ts);
                        }
                    });
                }
                self.user_information(&rq.user_information);
                self.pdu_end(start);
            }
            Pdu::AssociateAc(ac) => {
                let start = self.pdu_start(pdu_type::ASSOCIATE_AC);
                self.associate_fixed(
                    ac.protocol_version,
                    &ac.called_ae_title,
                    &ac.calling_ae_title,
                );
                self.text_item(item_type::APPLICATION_CONTEXT, &ac.application_context);
                for pc in &ac.presentation_contexts {
                    self.item(item_type::PRESENTATION_CONTEXT_AC, 0, |w| {
                        w.put(&[pc.id, 0, pc.result, 0]);
                        // Always present; "not tested" by the receiver when result != 0.
                        w.text_item(item_type::TRANSFER_SYNTAX, &pc.transfer_syntax);
                    });
                }
                self.user_information(&ac.user_information);
                self.pdu_end(start);
            }
            Pdu::AssociateRj(rj) => {
                self.put(&[
                    pdu_type::ASSOCIATE_RJ,
                    0,
                    0,
                    0,
                    0,
                    4,
                    0,
                    rj.result,
                    rj.source,
                    rj.reason,
                ]);
            }
            Pdu::PData(pd) => {
                let body: usize = pd
                    .pdvs
                    .iter()
                    .map(|p| p.data.len().saturating_add(PDV_ITEM_OVERHEAD))
                    .sum();
                self.out.reserve(body.saturating_add(PDU_HEADER_LEN));
                let start = self.pdu_start(pdu_type::P_DATA_TF);
                for pdv in &pd.pdvs {
                    let item_len = match u32::try_from(pdv.data.len().saturating_add(2)) {
                        Ok(n) => n,
                        Err(_) => {
                            self.problem(format!("PDV of {} bytes exceeds 2^32-3", pdv.data.len()));
                            u32::MAX
                        }
                    };
                    self.u32(item_len);
                    self.put(&[pdv.context_id, pdv.control]);
                    self.put(&pdv.data[..item_len as usize - 2]);
                }
                self.pdu_end(start);
            }
            Pdu::ReleaseRq => self.put(&[pdu_type::RELEASE_RQ, 0, 0, 0, 0, 4, 0, 0, 0, 0]),
            Pdu::ReleaseRp => self.put(&[pdu_type::RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0]),
            Pdu::Abort(a) => {
                self.put(&[pdu_type::ABORT, 0, 0, 0, 0, 4, 0, 0, a.source, a.reason]);
            }
        }
    }

    fn associate_fixed(&mut self, version: u16, called: &str, calling: &str) {
        self.u16(version);
        self.u16(0);
        self.ae_title(called, "called AE title");
        self.ae_title(calling, "calling AE title");
        self.put(&[0u8; 32]);
    }

    fn user_information(&mut self, ui: &UserInformation) {
        self.item(item_type::USER_INFORMATION, 0, |w| {
            for it in &ui.items {
                w.user_item(it);
            }
        });
    }

    fn user_item(&mut self, it: &UserItem) {
        match it {
            UserItem::MaximumLength(n) => self.item(item_type::MAXIMUM_LENGTH, 0, |w| w.u32(*n)),
            UserItem::ImplementationClassUid(s) => {
                self.text_item(item_type::IMPLEMENTATION_CLASS_UID, s)
            }
            UserItem::AsyncOperationsWindow { invoked, performed } => {
                self.item(item_type::ASYNC_OPERATIONS_WINDOW, 0, |w| {
                    w.u16(*invoked);
                    w.u16(*performed);
                })
            }
            UserItem::RoleSelection {
                sop_class_uid,
                scu_role,
                scp_role,
            } => self.item(item_type::ROLE_SELECTION, 0, |w| {
                w.lp16(sop_class_uid.as_bytes(), "role selection SOP class UID");
                w.put(&[*scu_role, *scp_role]);
            }),
            UserItem::ImplementationVersionName(s) => {
                self.text_item(item_type::IMPLEMENTATION_VERSION_NAME, s)
            }
            UserItem::SopClassExtendedNegotiation {
                sop_class_uid,
                info,
            } => self.item(item_type::SOP_CLASS_EXTENDED_NEGOTIATION, 0, |w| {
                w.lp16(
                    sop_class_uid.as_bytes(),
                    "extended negotiation SOP class UID",
                );
                w.put(info);
            }),
            UserItem::SopClassCommonExtendedNegotiation {
                sop_class_uid,
                service_class_uid,
                related_general_sop_classes,
            } => {
                // Byte 1 is the sub-item version, 0 (PS3.7 D.3.3.6).
                self.item(item_type::SOP_CLASS_COMMON_EXTENDED_NEGOTIATION, 0, |w| {
                    w.lp16(
                        sop_class_uid.as_bytes(),
                        "common extended negotiation SOP class UID",
                    );
                    w.lp16(service_class_uid.as_bytes(), "service class UID");
                    let len_at = w.out.len();
                    w.u16(0);
                    for uid in related_general_sop_classes {
                        w.lp16(uid.as_bytes(), "related general SOP class UID");
                    }
                    let len = w.out.len() - len_at - 2;
                    let n = match u16::try_from(len) {
                        Ok(n) => n,
                        Err(_) => {
                            w.problem(format!(
                                "related general SOP classes take {len} bytes, more than 65535"
                            ));
                            w.out.truncate(len_at + 2 + usize::from(u16::MAX));
                            u16::MAX
                        }
                    };
                    w.out[len_at..len_at + 2].copy_from_slice(&n.to_be_bytes());
                })
            }
            UserItem::UserIdentityRq {
                identity_type,
                positive_response_requested,
                primary_field,
                secondary_field,
            } => self.item(item_type::USER_IDENTITY_RQ, 0, |w| {
                w.put(&[*identity_type, u8::from(*positive_response_requested)]);
                w.lp16(primary_field, "user identity primary field");
                w.lp16(secondary_field, "user identity secondary field");
            }),
            UserItem::UserIdentityAc { server_response } => {
                self.item(item_type::USER_IDENTITY_AC, 0, |w| {
                    w.lp16(server_response, "user identity server response")
                })
            }
            UserItem::Unknown { item_type, data } => self.item(*item_type, 0, |w| w.put(data)),
        }
    }
}
