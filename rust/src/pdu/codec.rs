//! Sans-I/O encoder and decoder of the upper-layer PDUs (PS3.8 9.3, Annex D; PS3.7 D.3.3).
//!
//! # Theory of operation
//!
//! [`decode`] looks at the start of a byte buffer and answers one of three things:
//! a whole PDU and how many bytes it used ([`Decoded::Complete`]), "not enough bytes yet, at
//! least N more" ([`Decoded::NeedMore`]), or an error that tells the caller which A-ABORT
//! reason to send ([`PduError::abort_reason`]). It never reads a socket, never keeps state
//! between calls and never allocates more than the bytes it was given: the declared PDU
//! length is compared with the caller's limit before anything else is looked at.
//!
//! [`encode`] appends the bytes of a [`Pdu`] to a `Vec<u8>`. For bulk data the driver does
//! not build a [`Pdu`] at all: [`write_single_pdv_header`] writes the 12 header bytes of a
//! one-PDV P-DATA-TF and the driver streams the payload after them.
//!
//! # Wire layout, as implemented (offsets from the first byte of the PDU)
//!
//! ```text
//! every PDU      0 type | 1 reserved | 2..6 body length (u32 BE, bytes after offset 6)
//! ASSOCIATE-RQ/AC
//!                6..8 protocol version | 8..10 reserved | 10..26 called AE | 26..42 calling AE
//!                | 42..74 reserved | 74.. items (type u8, reserved u8, length u16 BE, body)
//! ASSOCIATE-RJ   6 reserved | 7 result | 8 source | 9 reason           (body length 4)
//! P-DATA-TF      6.. PDV items: length u32 BE | context id | control header | data
//! RELEASE-RQ/RP  6..10 reserved                                         (body length 4)
//! A-ABORT        6 reserved | 7 reserved | 8 source | 9 reason          (body length 4)
//! ```
//!
//! # Leniency and strictness on decode
//!
//! - Reserved fields are never tested. AE titles lose leading/trailing spaces (and NULs);
//!   UIDs and other texts lose trailing NULs and spaces. Texts are ASCII (ISO 646) in
//!   PS3.8; a non-ASCII byte decodes as `?`, so that a strange name never aborts an
//!   association and a decoded PDU always re-encodes within its length fields.
//! - Item types not defined for the PDU's variable field are skipped; undefined sub-items
//!   of a presentation context are skipped; undefined user-information sub-items are kept
//!   as [`UserItem::Unknown`]. A presentation context item of the *other* direction
//!   (0x21 in an RQ, 0x20 in an AC) or a sub-item type at PDU level is an error
//!   ([`PduError::UnexpectedItem`], A-ABORT reason 5).
//! - Every length field is checked against what remains of its parent; a defined
//!   item whose content does not fill its declared length exactly is [`PduError::Malformed`].
//! - A presentation context AC item whose result is not 0 (acceptance) may have zero or
//!   more transfer syntax sub-items; the first one is kept (`""` if none). An accepted one
//!   must have exactly one.
//! - A P-DATA-TF needs at least one PDV item; a PDV item length below 2 (no room for the
//!   context id and control header) is an error. A PDV with an empty data field (item length
//!   exactly 2) is accepted: it is well formed, and some peers send an empty last fragment.
//!
//! # Encoding limits
//!
//! Item lengths are 16 bits. A field that cannot fit (a UID or user identity field of more
//! than 65535 bytes, an AE title of more than 16 bytes, a user-information item whose
//! sub-items total more than 65535 bytes) is truncated by [`encode`], which logs a warning;
//! [`try_encode`] reports it as [`PduError::Unencodable`] and leaves the output unchanged.

use std::ops::Range;

use super::types::*;

/// Size overhead of a P-DATA-TF PDU that carries one PDV: the 6-byte PDU header plus the
/// 6-byte PDV item header (4 length, 1 context id, 1 message control header).
pub const PDATA_SINGLE_PDV_OVERHEAD: usize = 12;
/// Overhead of one PDV item inside a P-DATA-TF body: item length (4), context id (1),
/// message control header (1).
pub const PDV_ITEM_OVERHEAD: usize = 6;
/// Size of every PDU header: type, reserved, 4-byte length.
pub const PDU_HEADER_LEN: usize = 6;
/// The PDU body length we use when sending to a peer whose maximum length is 0 ("no
/// limit", PS3.8 D.1): 1 MiB. Large enough that per-PDU costs vanish, small enough that
/// a peer that claims "unlimited" but buffers whole PDUs does not choke.
pub const UNLIMITED_PEER_MAX_PDU: u32 = 1 << 20;

/// Why a PDU could not be decoded (or, for [`PduError::Unencodable`], encoded).
///
/// Offsets are byte offsets from the first byte of the PDU (the PDU-type byte).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PduError {
    /// The first byte is not one of the seven PDU types of PS3.8 9.3.1.
    #[error("unrecognized PDU type 0x{0:02X}")]
    UnrecognizedPduType(u8),
    /// The PDU-length field declares a body longer than the caller accepts.
    #[error("PDU length {declared} exceeds the limit of {limit} bytes")]
    TooLong { declared: u32, limit: u32 },
    /// A length or value that does not fit the layout of PS3.8 9.3.
    #[error("malformed PDU at byte offset {offset}: {what}")]
    Malformed { what: String, offset: usize },
    /// A defined item type in a place where it is not allowed (e.g. a presentation context
    /// AC item in an A-ASSOCIATE-RQ).
    #[error("item type 0x{item_type:02X} is not allowed in {context} (byte offset {offset})")]
    UnexpectedItem {
        item_type: u8,
        context: &'static str,
        offset: usize,
    },
    /// Encoding only: a field does not fit its length field (see [`try_encode`]).
    #[error("cannot encode PDU: {what}")]
    Unencodable { what: String },
}

impl PduError {
    /// The reason field (PS3.8 9.3.8, table 9-26) of the A-ABORT a service provider sends
    /// when it receives this: 1 unrecognized PDU, 5 unexpected PDU parameter,
    /// 6 invalid PDU parameter value (malformed lengths and values, and a PDU longer than
    /// our limit), 0 reason not specified otherwise. (2 "unexpected PDU" and 4
    /// "unrecognized PDU parameter" are not produced by the codec: unknown items are
    /// skipped, and whether a well-formed PDU is expected is the state machine's call.)
    pub fn abort_reason(&self) -> u8 {
        match self {
            PduError::UnrecognizedPduType(_) => 1,
            PduError::UnexpectedItem { .. } => 5,
            PduError::TooLong { .. } | PduError::Malformed { .. } => 6,
            PduError::Unencodable { .. } => 0,
        }
    }
}

/// The result of [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole PDU, and the number of bytes of the buffer it used (6 + body length).
    Complete(Pdu, usize),
    /// The buffer holds less than a whole PDU: at least this many more bytes are needed
    /// (exactly this many once the 6-byte header is in the buffer).
    NeedMore(usize),
}

fn is_pdu_type(t: u8) -> bool {
    (pdu_type::ASSOCIATE_RQ..=pdu_type::ABORT).contains(&t)
}

/// The 6-byte PDU header: (PDU type, body length), or `None` if `buf` has fewer than 6 bytes.
pub fn peek_header(buf: &[u8]) -> Option<(u8, u32)> {
    let h: &[u8; 6] = buf.get(..PDU_HEADER_LEN)?.try_into().ok()?;
    Some((h[0], u32::from_be_bytes([h[2], h[3], h[4], h[5]])))
}

/// Decode one PDU from the start of `buf`.
///
/// `limit` is the largest body length (the value of the 4-byte PDU-length field) accepted;
/// `0` means no limit, as for the maximum-length sub-item. It applies to every PDU type,
/// so a caller expecting an A-ASSOCIATE-RQ should pass a limit that fits one (they are
/// usually a few hundred bytes, at most a few tens of KiB). A larger declared length is
/// [`PduError::TooLong`] before the body is looked at, and an unknown PDU type byte is
/// [`PduError::UnrecognizedPduType`] as soon as the first byte is there.
///
/// Never panics and never allocates more than `buf.len()` bytes.
pub fn decode(buf: &[u8], limit: u32) -> Result<Decoded, PduError> {
    let Some(&ty) = buf.first() else {
        return Ok(Decoded::NeedMore(PDU_HEADER_LEN));
    };
    if !is_pdu_type(ty) {
        return Err(PduError::UnrecognizedPduType(ty));
    }
    let Some((_, declared)) = peek_header(buf) else {
        return Ok(Decoded::NeedMore(PDU_HEADER_LEN - buf.len()));
    };
    let effective_limit = if limit == 0 { u32::MAX } else { limit };
    if declared > effective_limit {
        return Err(PduError::TooLong { declared, limit });
    }
    // On a 32-bit target 6 + u32::MAX does not fit in usize: that PDU is too long for us.
    let Some(total) = usize::try_from(declared)
        .ok()
        .and_then(|n| n.checked_add(PDU_HEADER_LEN))
    else {
        return Err(PduError::TooLong {
            declared,
            limit: (usize::MAX - PDU_HEADER_LEN) as u32,
        });
    };
    let Some(body) = buf.get(PDU_HEADER_LEN..total) else {
        return Ok(Decoded::NeedMore(total - buf.len()));
    };
    let mut r = Reader::new(body, PDU_HEADER_LEN, "PDU body");
    let pdu = match ty {
        pdu_type::ASSOCIATE_RQ => Pdu::AssociateRq(decode_associate_rq(&mut r)?),
        pdu_type::ASSOCIATE_AC => Pdu::AssociateAc(decode_associate_ac(&mut r)?),
        pdu_type::ASSOCIATE_RJ => {
            r.expect_len(4, "A-ASSOCIATE-RJ body")?;
            r.skip(1, "reserved")?;
            Pdu::AssociateRj(AssociateRj {
                result: r.u8("result")?,
                source: r.u8("source")?,
                reason: r.u8("reason/diag.")?,
            })
        }
        pdu_type::P_DATA_TF => Pdu::PData(decode_pdata(&mut r)?),
        pdu_type::RELEASE_RQ => {
            r.expect_len(4, "A-RELEASE-RQ body")?;
            Pdu::ReleaseRq
        }
        pdu_type::RELEASE_RP => {
            r.expect_len(4, "A-RELEASE-RP body")?;
            Pdu::ReleaseRp
        }
        _ => {
            // pdu_type::ABORT, the only one left after is_pdu_type().
            r.expect_len(4, "A-ABORT body")?;
            r.skip(2, "reserved")?;
            Pdu::Abort(Abort {
                source: r.u8("source")?,
                reason: r.u8("reason/diag.")?,
            })
        }
    };
    Ok(Decoded::Complete(pdu, total))
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// A bounds-checked cursor over one length-delimited part of a PDU. `base` is the offset
/// of `buf[0]` in the PDU, so that errors can name absolute offsets.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    /// What `buf` is, for error messages ("user information item", ...).
    name: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize, name: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            base,
            name,
        }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn malformed(&self, what: String) -> PduError {
        PduError::Malformed {
            what,
            offset: self.offset(),
        }
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], PduError> {
        match self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
        {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.malformed(format!(
                "{what} needs {n} bytes but only {} remain in the {}",
                self.remaining(),
                self.name
            ))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], PduError> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn skip(&mut self, n: usize, what: &str) -> Result<(), PduError> {
        self.bytes(n, what).map(|_| ())
    }

    fn u8(&mut self, what: &str) -> Result<u8, PduError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, PduError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, PduError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    /// Take the next `n` bytes as a child reader.
    fn sub(&mut self, n: usize, what: &str, name: &'static str) -> Result<Reader<'a>, PduError> {
        let base = self.offset();
        let buf = self.bytes(n, what)?;
        Ok(Reader::new(buf, base, name))
    }

    /// Everything that is left.
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// A field preceded by its 2-byte length.
    fn lp16(&mut self, what: &str) -> Result<&'a [u8], PduError> {
        let n = self.u16(what)?;
        self.bytes(usize::from(n), what)
    }

    /// Item header (type, reserved, u16 length) and the item body as a child reader.
    /// Returns (offset of the item, item type, byte 1, body).
    fn item(&mut self, name: &'static str) -> Result<(usize, u8, u8, Reader<'a>), PduError> {
        let at = self.offset();
        let ty = self.u8("item type")?;
        let b1 = self.u8("item reserved byte")?;
        let len = self.u16("item length")?;
        let body =
            self.sub(usize::from(len), "item body", name)
                .map_err(|_| PduError::Malformed {
                    what: format!(
                        "item 0x{ty:02X} declares length {len} but only {} bytes remain in the {}",
                        self.remaining(),
                        self.name
                    ),
                    offset: at,
                })?;
        Ok((at, ty, b1, body))
    }

    fn expect_len(&self, n: usize, what: &str) -> Result<(), PduError> {
        if self.buf.len() == n {
            Ok(())
        } else {
            Err(PduError::Malformed {
                what: format!("{what} must be {n} bytes long, found {}", self.buf.len()),
                offset: self.base,
            })
        }
    }

    /// Error if anything is left (a defined item longer than its content).
    fn finish(&self, what: &str) -> Result<(), PduError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.malformed(format!(
                "{} unexpected trailing bytes in {what}",
                self.remaining()
            )))
        }
    }
}

/// The text fields of PDUs are ISO 646 (ASCII). A byte outside it decodes as `?`: one byte
/// per character, so a decoded field always fits back into its length field.
fn text(b: &[u8]) -> String {
    b.iter()
        .map(|&c| if c.is_ascii() { char::from(c) } else { '?' })
        .collect()
}

/// UIDs and other names: trailing NUL padding and spaces are not significant.
fn uid_text(b: &[u8]) -> String {
    let mut s = text(b);
    let keep = s.trim_end_matches(['\0', ' ']).len();
    s.truncate(keep);
    s
}

/// AE titles: leading and trailing spaces are not significant (PS3.8 9.3.2). NULs are
/// trimmed too, for peers that pad with them.
fn ae_text(b: &[u8]) -> String {
    text(b).trim_matches([' ', '\0']).to_string()
}

/// The variable field shared by A-ASSOCIATE-RQ and -AC, before the presentation contexts
/// are interpreted.
struct AssociateFields<'a> {
    protocol_version: u16,
    called: String,
    calling: String,
    application_context: String,
    /// (offset of item, item body) of each presentation context item of the expected type.
    contexts: Vec<(usize, Reader<'a>)>,
    user_information: UserInformation,
}

fn decode_associate_fields<'a>(
    r: &mut Reader<'a>,
    pdu_name: &'static str,
    context_type: u8,
) -> Result<AssociateFields<'a>, PduError> {
    let protocol_version = r.u16("protocol version")?;
    r.skip(2, "reserved")?;
    let called = ae_text(r.bytes(16, "called AE title")?);
    let calling = ae_text(r.bytes(16, "calling AE title")?);
    r.skip(32, "reserved")?;
    let items_at = r.offset();

    let mut application_context = None;
    let mut contexts = Vec::new();
    let mut user_information = None;
    while !r.is_empty() {
        let (at, ty, _, mut body) = r.item("variable item")?;
        match ty {
            item_type::APPLICATION_CONTEXT => {
                if application_context.is_some() {
                    return Err(PduError::Malformed {
                        what: "second application context item".into(),
                        offset: at,
                    });
                }
                application_context = Some(uid_text(body.rest()));
            }
            t if t == context_type => contexts.push((at, body)),
            item_type::USER_INFORMATION => {
                if user_information.is_some() {
                    return Err(PduError::Malformed {
                        what: "second user information item".into(),
                        offset: at,
                    });
                }
                user_information = Some(decode_user_information(&mut body)?);
            }
            item_type::PRESENTATION_CONTEXT_RQ
            | item_type::PRESENTATION_CONTEXT_AC
            | item_type::ABSTRACT_SYNTAX
            | item_type::TRANSFER_SYNTAX
            | item_type::MAXIMUM_LENGTH..=item_type::USER_IDENTITY_AC => {
                return Err(PduError::UnexpectedItem {
                    item_type: ty,
                    context: pdu_name,
                    offset: at,
                });
            }
            _ => {
                log::debug!("{pdu_name}: skipping unknown item type 0x{ty:02X} at offset {at}");
            }
        }
    }
    let Some(application_context) = application_context else {
        return Err(PduError::Malformed {
            what: format!("{pdu_name} has no application context item"),
            offset: items_at,
        });
    };
    Ok(AssociateFields {
        protocol_version,
        called,
        calling,
        application_context,
        contexts,
        // The standard requires one; a peer that sends none gets the defaults of an empty one.
        user_information: user_information.unwrap_or_default(),
    })
}

fn decode_associate_rq(r: &mut Reader<'_>) -> Result<AssociateRq, PduError> {
    let f = decode_associate_fields(r, "A-ASSOCIATE-RQ", item_type::PRESENTATION_CONTEXT_RQ)?;
    let mut presentation_contexts = Vec::with_capacity(f.contexts.len());
    for (at, mut body) in f.contexts {
        let id = body.u8("presentation context id")?;
        body.skip(3, "reserved")?;
        let mut abstract_syntax = None;
        let mut transfer_syntaxes = Vec::new();
        while !body.is_empty() {
            let (sub_at, ty, _, mut sub) = body.item("presentation context sub-item")?;
            match ty {
                item_type::ABSTRACT_SYNTAX => {
                    if abstract_syntax.is_some() {
                        return Err(PduError::Malformed {
                            what: format!("presentation context {id}: second abstract syntax sub-item"),
                            offset: sub_at,
                        });
                    }
                    abstract_syntax = Some(uid_text(sub.rest()));
                }
                item_type::TRANSFER_SYNTAX => transfer_syntaxes.push(uid_text(sub.rest())),
                _ => log::debug!(
                    "presentation context {id}: skipping sub-item type 0x{ty:02X} at offset {sub_at}"
                ),
            }
        }
        let Some(abstract_syntax) = abstract_syntax else {
            return Err(PduError::Malformed {
                what: format!("presentation context {id} has no abstract syntax sub-item"),
                offset: at,
            });
        };
        // No transfer syntax at all is left to the negotiation, which rejects that context
        // (result 4) instead of aborting the whole association.
        presentation_contexts.push(PresentationContextRq {
            id,
            abstract_syntax,
            transfer_syntaxes,
        });
    }
    Ok(AssociateRq {
        protocol_version: f.protocol_version,
        called_ae_title: f.called,
        calling_ae_title: f.calling,
        application_context: f.application_context,
        presentation_contexts,
        user_information: f.user_information,
    })
}

fn decode_associate_ac(r: &mut Reader<'_>) -> Result<AssociateAc, PduError> {
    let f = decode_associate_fields(r, "A-ASSOCIATE-AC", item_type::PRESENTATION_CONTEXT_AC)?;
    let mut presentation_contexts = Vec::with_capacity(f.contexts.len());
    for (at, mut body) in f.contexts {
        let id = body.u8("presentation context id")?;
        body.skip(1, "reserved")?;
        let result = body.u8("result/reason")?;
        body.skip(1, "reserved")?;
        let mut transfer_syntax: Option<String> = None;
        let mut count = 0usize;
        while !body.is_empty() {
            let (sub_at, ty, _, mut sub) = body.item("presentation context sub-item")?;
            if ty == item_type::TRANSFER_SYNTAX {
                count += 1;
                if result == 0 && count > 1 {
                    return Err(PduError::Malformed {
                        what: format!(
                            "accepted presentation context {id}: more than one transfer syntax"
                        ),
                        offset: sub_at,
                    });
                }
                let ts = uid_text(sub.rest());
                transfer_syntax.get_or_insert(ts);
            } else {
                log::debug!(
                    "presentation context {id}: skipping sub-item type 0x{ty:02X} at offset {sub_at}"
                );
            }
        }
        if result == 0 && transfer_syntax.is_none() {
            return Err(PduError::Malformed {
                what: format!("accepted presentation context {id} has no transfer syntax sub-item"),
                offset: at,
            });
        }
        presentation_contexts.push(PresentationContextAc {
            id,
            result,
            transfer_syntax: transfer_syntax.unwrap_or_default(),
        });
    }
    Ok(AssociateAc {
        protocol_version: f.protocol_version,
        called_ae_title: f.called,
        calling_ae_title: f.calling,
        application_context: f.application_context,
        presentation_contexts,
        user_information: f.user_information,
    })
}

fn decode_user_information(r: &mut Reader<'_>) -> Result<UserInformation, PduError> {
    let mut items = Vec::new();
    while !r.is_empty() {
        let (_, ty, _, mut b) = r.item("user information sub-item")?;
        let item = match ty {
            item_type::MAXIMUM_LENGTH => {
                b.expect_len(4, "maximum length sub-item body")?;
                UserItem::MaximumLength(b.u32("maximum length received")?)
            }
            item_type::IMPLEMENTATION_CLASS_UID => {
                UserItem::ImplementationClassUid(uid_text(b.rest()))
            }
            item_type::ASYNC_OPERATIONS_WINDOW => {
                b.expect_len(4, "asynchronous operations window sub-item body")?;
                UserItem::AsyncOperationsWindow {
                    invoked: b.u16("maximum number operations invoked")?,
                    performed: b.u16("maximum number operations performed")?,
                }
            }
            item_type::ROLE_SELECTION => {
                let sop_class_uid = uid_text(b.lp16("SOP class UID")?);
                let scu_role = b.u8("SCU role")?;
                let scp_role = b.u8("SCP role")?;
                b.finish("role selection sub-item")?;
                UserItem::RoleSelection {
                    sop_class_uid,
                    scu_role,
                    scp_role,
                }
            }
            item_type::IMPLEMENTATION_VERSION_NAME => {
                UserItem::ImplementationVersionName(uid_text(b.rest()))
            }
            item_type::SOP_CLASS_EXTENDED_NEGOTIATION => {
                let sop_class_uid = uid_text(b.lp16("SOP class UID")?);
                UserItem::SopClassExtendedNegotiation {
                    sop_class_uid,
                    info: b.rest().to_vec(),
                }
            }
            item_type::SOP_CLASS_COMMON_EXTENDED_NEGOTIATION => {
                // Byte 1 is the sub-item version (0), not tested.
                let sop_class_uid = uid_text(b.lp16("SOP class UID")?);
                let service_class_uid = uid_text(b.lp16("service class UID")?);
                let n = b.u16("related general SOP class identification length")?;
                let mut rel = b.sub(
                    usize::from(n),
                    "related general SOP class identification",
                    "related general SOP class identification",
                )?;
                let mut related_general_sop_classes = Vec::new();
                while !rel.is_empty() {
                    related_general_sop_classes
                        .push(uid_text(rel.lp16("related general SOP class UID")?));
                }
                b.finish("SOP class common extended negotiation sub-item")?;
                UserItem::SopClassCommonExtendedNegotiation {
                    sop_class_uid,
                    service_class_uid,
                    related_general_sop_classes,
                }
            }
            item_type::USER_IDENTITY_RQ => {
                let identity_type = b.u8("user identity type")?;
                let positive_response_requested = b.u8("positive response requested")? != 0;
                let primary_field = b.lp16("primary field")?.to_vec();
                // The secondary-field length is always there for a conforming peer; tolerate
                // its absence (type 1 has an empty secondary field anyway).
                let secondary_field = if b.is_empty() {
                    Vec::new()
                } else {
                    b.lp16("secondary field")?.to_vec()
                };
                b.finish("user identity sub-item")?;
                UserItem::UserIdentityRq {
                    identity_type,
                    positive_response_requested,
                    primary_field,
                    secondary_field,
                }
            }
            item_type::USER_IDENTITY_AC => {
                let server_response = if b.is_empty() {
                    Vec::new()
                } else {
                    b.lp16("server response")?.to_vec()
                };
                b.finish("user identity AC sub-item")?;
                UserItem::UserIdentityAc { server_response }
            }
            _ => UserItem::Unknown {
                item_type: ty,
                data: b.rest().to_vec(),
            },
        };
        items.push(item);
    }
    Ok(UserInformation { items })
}

fn decode_pdata(r: &mut Reader<'_>) -> Result<PData, PduError> {
    let body = r.rest();
    let pdvs = pdv_items(body)
        .map(|p| {
            p.map(|p| Pdv {
                context_id: p.context_id,
                control: p.control,
                data: p.data.to_vec(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if pdvs.is_empty() {
        return Err(PduError::Malformed {
            what: "P-DATA-TF without any PDV item".into(),
            offset: PDU_HEADER_LEN,
        });
    }
    Ok(PData { pdvs })
}

/// A presentation data value borrowed from a P-DATA-TF body (see [`pdv_items`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PdvRef<'a> {
    pub context_id: u8,
    /// Message control header: bit 0 command, bit 1 last fragment ([`Pdv::COMMAND`], [`Pdv::LAST`]).
    pub control: u8,
    pub data: &'a [u8],
}

/// The PDV items of a P-DATA-TF body (the `body length` bytes after the 6-byte header, as
/// given by [`peek_header`]), without copying their data: for a driver that writes PDV
/// data straight to a file. Yields an error (offsets from the start of the PDU) for a
/// malformed item and then stops. Yields nothing for an empty body, which [`decode`]
/// rejects ("P-DATA-TF without any PDV item"); the caller of this function must check.
pub fn pdv_items(body: &[u8]) -> PdvItems<'_> {
    PdvItems {
        r: Reader::new(body, PDU_HEADER_LEN, "P-DATA-TF body"),
        failed: false,
    }
}

/// Iterator returned by [`pdv_items`].
pub struct PdvItems<'a> {
    r: Reader<'a>,
    failed: bool,
}

impl<'a> PdvItems<'a> {
    fn item(&mut self) -> Result<PdvRef<'a>, PduError> {
        let r = &mut self.r;
        let at = r.offset();
        let len = r.u32("PDV item length")?;
        if len < 2 {
            return Err(PduError::Malformed {
                what: format!("PDV item length {len} is less than 2 (context id + control header)"),
                offset: at,
            });
        }
        let remaining = r.remaining();
        let Some(n) = usize::try_from(len).ok().filter(|&n| n <= remaining) else {
            return Err(PduError::Malformed {
                what: format!(
                    "PDV item declares length {len} but only {remaining} bytes remain in the PDU"
                ),
                offset: at,
            });
        };
        let mut item = r.sub(n, "PDV item", "PDV item")?;
        let context_id = item.u8("presentation context id")?;
        let control = item.u8("message control header")?;
        Ok(PdvRef {
            context_id,
            control,
            data: item.rest(),
        })
    }
}

impl<'a> Iterator for PdvItems<'a> {
    type Item = Result<PdvRef<'a>, PduError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.r.is_empty() {
            return None;
        }
        let item = self.item();
        self.failed = item.is_err();
        Some(item)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // -----------------------------------------------------------------------------------
    // Sample PDUs
    // -----------------------------------------------------------------------------------

    fn all_user_items() -> Vec<UserItem> {
        vec![
            UserItem::MaximumLength(16384),
            UserItem::ImplementationClassUid("1.2.826.0.1.3680043.9.1".into()),
            UserItem::AsyncOperationsWindow {
                invoked: 5,
                performed: 1,
            },
            UserItem::RoleSelection {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                scu_role: 0,
                scp_role: 1,
            },
            UserItem::ImplementationVersionName("FASTDIMSE_010".into()),
            UserItem::SopClassExtendedNegotiation {
                sop_class_uid: "1.2.840.10008.5.1.4.1.2.1.1".into(),
                info: vec![1, 1, 0, 1],
            },
            UserItem::SopClassCommonExtendedNegotiation {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.88.22".into(),
                service_class_uid: "1.2.840.10008.4.2".into(),
                related_general_sop_classes: vec![
                    "1.2.840.10008.5.1.4.1.1.88.11".into(),
                    "1.2.840.10008.5.1.4.1.1.88.33".into(),
                ],
            },
            UserItem::SopClassCommonExtendedNegotiation {
                sop_class_uid: "1.2.3".into(),
                service_class_uid: "1.2.4".into(),
                related_general_sop_classes: vec![],
            },
            UserItem::UserIdentityRq {
                identity_type: 2,
                positive_response_requested: true,
                primary_field: b"alice".to_vec(),
                secondary_field: b"s3cret".to_vec(),
            },
            UserItem::UserIdentityRq {
                identity_type: 1,
                positive_response_requested: false,
                primary_field: b"bob".to_vec(),
                secondary_field: vec![],
            },
            UserItem::UserIdentityAc {
                server_response: b"ticket".to_vec(),
            },
            UserItem::UserIdentityAc {
                server_response: vec![],
            },
            UserItem::Unknown {
                item_type: 0x5A,
                data: vec![9, 8, 7],
            },
            UserItem::Unknown {
                item_type: 0xFE,
                data: vec![],
            },
        ]
    }

    fn sample_rq() -> AssociateRq {
        AssociateRq {
            protocol_version: 1,
            called_ae_title: "ANY-SCP".into(),
            calling_ae_title: "STORE SCU".into(),
            application_context: DICOM_APPLICATION_CONTEXT.into(),
            presentation_contexts: vec![
                PresentationContextRq {
                    id: 1,
                    abstract_syntax: "1.2.840.10008.1.1".into(),
                    transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
                },
                PresentationContextRq {
                    id: 3,
                    abstract_syntax: "1.2.840.10008.5.1.4.1.1.2".into(),
                    transfer_syntaxes: vec![
                        "1.2.840.10008.1.2.1".into(),
                        "1.2.840.10008.1.2".into(),
                        "1.2.840.10008.1.2.4.90".into(),
                    ],
                },
            ],
            user_information: UserInformation {
                items: all_user_items(),
            },
        }
    }

    fn sample_ac() -> AssociateAc {
        AssociateAc {
            protocol_version: 1,
            called_ae_title: "ANY-SCP".into(),
            calling_ae_title: "STORE SCU".into(),
            application_context: DICOM_APPLICATION_CONTEXT.into(),
            presentation_contexts: vec![
                PresentationContextAc {
                    id: 1,
                    result: 0,
                    transfer_syntax: "1.2.840.10008.1.2".into(),
                },
                PresentationContextAc {
                    id: 3,
                    result: 4,
                    transfer_syntax: String::new(),
                },
                PresentationContextAc {
                    id: 5,
                    result: 3,
                    transfer_syntax: "1.2.840.10008.1.2".into(),
                },
            ],
            user_information: UserInformation {
                items: all_user_items(),
            },
        }
    }

    fn sample_pdus() -> Vec<Pdu> {
        vec![
            Pdu::AssociateRq(sample_rq()),
            Pdu::AssociateAc(sample_ac()),
            Pdu::AssociateRj(AssociateRj {
                result: 1,
                source: 2,
                reason: 2,
            }),
            Pdu::PData(PData {
                pdvs: vec![
                    Pdv {
                        context_id: 1,
                        control: 0x03,
                        data: vec![0x08, 0x00, 0x00, 0x00, 1, 2],
                    },
                    Pdv {
                        context_id: 1,
                        control: 0x00,
                        data: vec![7; 40],
                    },
                    Pdv {
                        context_id: 3,
                        control: 0x02,
                        data: vec![],
                    },
                ],
            }),
            Pdu::ReleaseRq,
            Pdu::ReleaseRp,
            Pdu::Abort(Abort {
                source: 2,
                reason: 6,
            }),
        ]
    }

    fn complete(buf: &[u8]) -> (Pdu, usize) {
        match decode(buf, 0) {
            Ok(Decoded::Complete(p, n)) => (p, n),
            other => panic!("expected a complete PDU, got {other:?}"),
        }
    }

    fn malformed_offset(r: Result<Decoded, PduError>) -> usize {
        match r {
            Err(PduError::Malformed { offset, .. }) => offset,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    /// item header helper for hand-built vectors: type, reserved 0, u16 length, body.
    fn item(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty, 0];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn pdu_bytes(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty, 0];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    /// The fixed part of an A-ASSOCIATE-RQ/AC body (68 bytes) for hand-built vectors.
    fn assoc_fixed(called: &[u8; 16], calling: &[u8; 16]) -> Vec<u8> {
        let mut v = vec![0x00, 0x01, 0x00, 0x00];
        v.extend_from_slice(called);
        v.extend_from_slice(calling);
        v.extend_from_slice(&[0u8; 32]);
        v
    }

    // -----------------------------------------------------------------------------------
    // Round trips
    // -----------------------------------------------------------------------------------

    #[test]
    fn pdu_roundtrip_every_type() {
        for pdu in sample_pdus() {
            let bytes = encode_to_vec(&pdu);
            let (back, used) = complete(&bytes);
            assert_eq!(back, pdu);
            assert_eq!(used, bytes.len());
            // encode appends
            let mut out = vec![0xAA];
            encode(&pdu, &mut out);
            assert_eq!(&out[1..], &bytes[..]);
            // try_encode agrees
            let mut out2 = Vec::new();
            try_encode(&pdu, &mut out2).unwrap();
            assert_eq!(out2, bytes);
        }
    }

    #[test]
    fn pdu_roundtrip_each_user_item_alone() {
        for it in all_user_items() {
            let mut rq = sample_rq();
            rq.user_information.items = vec![it.clone()];
            let pdu = Pdu::AssociateRq(rq);
            assert_eq!(complete(&encode_to_vec(&pdu)).0, pdu, "{it:?}");
        }
    }

    #[test]
    fn pdu_two_pdus_back_to_back_report_consumed_bytes() {
        let mut buf = encode_to_vec(&Pdu::ReleaseRq);
        let first = buf.len();
        encode(
            &Pdu::Abort(Abort {
                source: 0,
                reason: 0,
            }),
            &mut buf,
        );
        let (p, n) = complete(&buf);
        assert_eq!((p, n), (Pdu::ReleaseRq, first));
        let (p, n) = complete(&buf[n..]);
        assert_eq!(
            (p, n),
            (
                Pdu::Abort(Abort {
                    source: 0,
                    reason: 0
                }),
                10
            )
        );
    }

    // -----------------------------------------------------------------------------------
    // Hand-built vectors against the layout of PS3.8 9.3
    // -----------------------------------------------------------------------------------

    /// An A-ASSOCIATE-RQ as a dcmtk echoscu sends it (verification, implicit VR LE,
    /// max length 16384), written out byte by byte.
    fn echoscu_rq_bytes() -> Vec<u8> {
        let mut v = vec![0x01, 0x00, 0x00, 0x00, 0x00, 0xCD]; // type 1, length 205
        v.extend_from_slice(&[0x00, 0x01, 0x00, 0x00]); // protocol version 1, reserved
        v.extend_from_slice(b"ANY-SCP         "); // called, offset 10
        v.extend_from_slice(b"ECHOSCU         "); // calling, offset 26
        v.extend_from_slice(&[0u8; 32]); // reserved, offset 42
                                         // offset 74: application context item
        v.extend_from_slice(&[0x10, 0x00, 0x00, 0x15]);
        v.extend_from_slice(b"1.2.840.10008.3.1.1.1");
        // offset 99: presentation context item, id 1
        v.extend_from_slice(&[0x20, 0x00, 0x00, 0x2E, 0x01, 0x00, 0x00, 0x00]);
        v.extend_from_slice(&[0x30, 0x00, 0x00, 0x11]);
        v.extend_from_slice(b"1.2.840.10008.1.1");
        v.extend_from_slice(&[0x40, 0x00, 0x00, 0x11]);
        v.extend_from_slice(b"1.2.840.10008.1.2");
        // offset 149: user information item
        v.extend_from_slice(&[0x50, 0x00, 0x00, 0x3A]);
        v.extend_from_slice(&[0x51, 0x00, 0x00, 0x04, 0x00, 0x00, 0x40, 0x00]); // offset 153
        v.extend_from_slice(&[0x52, 0x00, 0x00, 0x1B]); // offset 161
        v.extend_from_slice(b"1.2.276.0.7230010.3.0.3.6.4");
        v.extend_from_slice(&[0x55, 0x00, 0x00, 0x0F]); // offset 192
        v.extend_from_slice(b"OFFIS_DCMTK_364");
        v
    }

    fn echoscu_rq() -> AssociateRq {
        AssociateRq {
            protocol_version: 1,
            called_ae_title: "ANY-SCP".into(),
            calling_ae_title: "ECHOSCU".into(),
            application_context: "1.2.840.10008.3.1.1.1".into(),
            presentation_contexts: vec![PresentationContextRq {
                id: 1,
                abstract_syntax: "1.2.840.10008.1.1".into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            }],
            user_information: UserInformation {
                items: vec![
                    UserItem::MaximumLength(16384),
                    UserItem::ImplementationClassUid("1.2.276.0.7230010.3.0.3.6.4".into()),
                    UserItem::ImplementationVersionName("OFFIS_DCMTK_364".into()),
                ],
            },
        }
    }

    #[test]
    fn pdu_associate_rq_hand_built_layout() {
        let bytes = echoscu_rq_bytes();
        assert_eq!(bytes.len(), 211);
        assert_eq!(peek_header(&bytes), Some((0x01, 205)));
        assert_eq!(&bytes[10..26], b"ANY-SCP         ");
        assert_eq!(bytes[74], item_type::APPLICATION_CONTEXT);
        assert_eq!(bytes[99], item_type::PRESENTATION_CONTEXT_RQ);
        assert_eq!(bytes[149], item_type::USER_INFORMATION);
        assert_eq!(bytes[153], item_type::MAXIMUM_LENGTH);
        assert_eq!(bytes[161], item_type::IMPLEMENTATION_CLASS_UID);
        assert_eq!(bytes[192], item_type::IMPLEMENTATION_VERSION_NAME);

        let (pdu, used) = complete(&bytes);
        assert_eq!(used, 211);
        assert_eq!(pdu, Pdu::AssociateRq(echoscu_rq()));
        // and we write exactly those bytes
        assert_eq!(encode_to_vec(&pdu), bytes);
    }

    #[test]
    fn pdu_associate_ac_hand_built_layout() {
        // AC echoing the AE titles, context 1 accepted, context 3 rejected (abstract syntax
        // not supported) without a transfer syntax sub-item, context 5 rejected with one.
        let mut body = assoc_fixed(b"ANY-SCP         ", b"ECHOSCU         ");
        body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
        let mut pc = vec![0x01, 0x00, 0x00, 0x00];
        pc.extend(item(0x40, b"1.2.840.10008.1.2\0")); // NUL padded: trimmed
        body.extend(item(0x21, &pc));
        body.extend(item(0x21, &[0x03, 0x00, 0x03, 0x00]));
        let mut pc5 = vec![0x05, 0xFF, 0x02, 0xFF]; // reserved bytes not tested
        pc5.extend(item(0x40, b"1.2.840.10008.1.2.1"));
        pc5.extend(item(0x40, b"1.2.840.10008.1.2.2")); // ignored: context rejected
        body.extend(item(0x21, &pc5));
        let mut ui = item(0x51, &[0x00, 0x01, 0x00, 0x00]);
        ui.extend(item(0x59, &[0x00, 0x02, b'o', b'k']));
        body.extend(item(0x50, &ui));
        let bytes = pdu_bytes(0x02, &body);

        let (pdu, _) = complete(&bytes);
        let want = AssociateAc {
            protocol_version: 1,
            called_ae_title: "ANY-SCP".into(),
            calling_ae_title: "ECHOSCU".into(),
            application_context: DICOM_APPLICATION_CONTEXT.into(),
            presentation_contexts: vec![
                PresentationContextAc {
                    id: 1,
                    result: 0,
                    transfer_syntax: "1.2.840.10008.1.2".into(),
                },
                PresentationContextAc {
                    id: 3,
                    result: 3,
                    transfer_syntax: String::new(),
                },
                PresentationContextAc {
                    id: 5,
                    result: 2,
                    transfer_syntax: "1.2.840.10008.1.2.1".into(),
                },
            ],
            user_information: UserInformation {
                items: vec![
                    UserItem::MaximumLength(65536),
                    UserItem::UserIdentityAc {
                        server_response: b"ok".to_vec(),
                    },
                ],
            },
        };
        assert_eq!(pdu, Pdu::AssociateAc(want.clone()));

        // Our encoding of it: AE titles echoed at 10..42, reserved 42..74 zero, and the
        // rejected context 3 carries an empty transfer syntax sub-item.
        let enc = encode_to_vec(&Pdu::AssociateAc(want));
        assert_eq!(enc[0], 0x02);
        assert_eq!(&enc[10..26], b"ANY-SCP         ");
        assert_eq!(&enc[26..42], b"ECHOSCU         ");
        assert!(enc[42..74].iter().all(|&b| b == 0));
        assert_eq!(&enc[74..78], &[0x10, 0x00, 0x00, 0x15]);
        let ctx3_at = 78 + 21 + 4 + 4 + 4 + 17;
        assert_eq!(
            &enc[ctx3_at..ctx3_at + 12],
            &[0x21, 0, 0, 8, 3, 0, 3, 0, 0x40, 0, 0, 0]
        );
    }

    #[test]
    fn pdu_fixed_size_pdus_hand_built() {
        let rj = [0x03, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x01, 0x01, 0x07];
        assert_eq!(
            complete(&rj).0,
            Pdu::AssociateRj(AssociateRj {
                result: 1,
                source: 1,
                reason: 7
            })
        );
        assert_eq!(encode_to_vec(&complete(&rj).0), rj);

        let rq = [0x05, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(complete(&rq).0, Pdu::ReleaseRq);
        assert_eq!(encode_to_vec(&Pdu::ReleaseRq), rq);
        let rp = [0x06, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(complete(&rp).0, Pdu::ReleaseRp);
        assert_eq!(encode_to_vec(&Pdu::ReleaseRp), rp);
        // reserved bytes are not tested
        let rp_dirty = [0x06, 0xEE, 0x00, 0x00, 0x00, 0x04, 0x01, 0x02, 0x03, 0x04];
        assert_eq!(complete(&rp_dirty).0, Pdu::ReleaseRp);

        let ab = [0x07, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x02, 0x01];
        assert_eq!(
            complete(&ab).0,
            Pdu::Abort(Abort {
                source: 2,
                reason: 1
            })
        );
        assert_eq!(encode_to_vec(&complete(&ab).0), ab);

        // wrong fixed lengths
        for bad in [
            vec![0x05, 0, 0, 0, 0, 3, 0, 0, 0],
            vec![0x06, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0],
            vec![0x07, 0, 0, 0, 0, 0],
            vec![0x03, 0, 0, 0, 0, 2, 0, 1],
        ] {
            assert_eq!(malformed_offset(decode(&bad, 0)), 6, "{bad:?}");
        }
    }

    #[test]
    fn pdu_pdata_hand_built_layout() {
        let bytes = [
            0x04, 0x00, 0x00, 0x00, 0x00, 0x10, // P-DATA-TF, length 16
            0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0xAA, 0xBB, 0xCC, 0xDD, // PDV ctx 1, cmd+last
            0x00, 0x00, 0x00, 0x02, 0x03, 0x00, // PDV ctx 3, empty data fragment
        ];
        let want = Pdu::PData(PData {
            pdvs: vec![
                Pdv {
                    context_id: 1,
                    control: 3,
                    data: vec![0xAA, 0xBB, 0xCC, 0xDD],
                },
                Pdv {
                    context_id: 3,
                    control: 0,
                    data: vec![],
                },
            ],
        });
        assert_eq!(complete(&bytes), (want.clone(), 22));
        assert_eq!(encode_to_vec(&want), bytes);
        if let Pdu::PData(p) = &want {
            assert!(p.pdvs[0].is_command() && p.pdvs[0].is_last());
            assert!(!p.pdvs[1].is_command() && !p.pdvs[1].is_last());
        }
    }

    #[test]
    fn pdu_pdv_items_borrow_without_copy() {
        let pdu = sample_pdus().remove(3);
        let bytes = encode_to_vec(&pdu);
        let Pdu::PData(p) = &pdu else { panic!() };
        let (_, len) = peek_header(&bytes).unwrap();
        let body = &bytes[6..6 + len as usize];
        let refs: Vec<_> = pdv_items(body).collect::<Result<_, _>>().unwrap();
        assert_eq!(refs.len(), p.pdvs.len());
        for (r, o) in refs.iter().zip(&p.pdvs) {
            assert_eq!(
                (r.context_id, r.control, r.data),
                (o.context_id, o.control, &o.data[..])
            );
        }
        // the data slices point into the input
        let range = body.as_ptr_range();
        assert!(range.contains(&refs[1].data.as_ptr()));
        // errors carry PDU offsets and end the iteration
        let bad = [0, 0, 0, 3, 1, 2, 9, 0, 0, 0, 1, 5];
        let got: Vec<_> = pdv_items(&bad).collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert!(matches!(
            got[1],
            Err(PduError::Malformed { offset: 13, .. })
        ));
        assert_eq!(pdv_items(&[]).count(), 0);
    }

    #[test]
    fn pdu_write_single_pdv_header_matches_encode() {
        let data: Vec<u8> = (0..=255u8).collect();
        let mut streamed = Vec::new();
        write_single_pdv_header(&mut streamed, 7, Pdv::LAST, data.len() as u32);
        assert_eq!(streamed.len(), PDATA_SINGLE_PDV_OVERHEAD);
        assert_eq!(
            streamed,
            [0x04, 0, 0, 0, 0x01, 0x06, 0, 0, 0x01, 0x02, 7, 2]
        );
        streamed.extend_from_slice(&data);
        let pdu = Pdu::PData(PData {
            pdvs: vec![Pdv {
                context_id: 7,
                control: Pdv::LAST,
                data,
            }],
        });
        assert_eq!(streamed, encode_to_vec(&pdu));
        assert_eq!(complete(&streamed).0, pdu);
        assert_eq!(
            PDATA_SINGLE_PDV_OVERHEAD,
            PDU_HEADER_LEN + PDV_ITEM_OVERHEAD
        );
    }

    // -----------------------------------------------------------------------------------
    // Lenient decoding
    // -----------------------------------------------------------------------------------

    #[test]
    fn pdu_ae_titles_and_uids_are_trimmed() {
        let mut body = assoc_fixed(b"  PACS  1       ", b"\0\0MOD\0\0\0\0\0\0\0\0\0\0\0");
        body.extend(item(0x10, b"1.2.840.10008.3.1.1.1\0"));
        let mut pc = vec![1, 0, 0, 0];
        pc.extend(item(0x30, b"1.2.840.10008.1.1\0"));
        pc.extend(item(0x40, b"1.2.840.10008.1.2 "));
        body.extend(item(0x20, &pc));
        body.extend(item(0x50, &item(0x52, b"1.2.3\0")));
        let Pdu::AssociateRq(rq) = complete(&pdu_bytes(1, &body)).0 else {
            panic!()
        };
        assert_eq!(rq.called_ae_title, "PACS  1");
        assert_eq!(rq.calling_ae_title, "MOD");
        assert_eq!(rq.application_context, DICOM_APPLICATION_CONTEXT);
        assert_eq!(
            rq.presentation_contexts[0].abstract_syntax,
            "1.2.840.10008.1.1"
        );
        assert_eq!(
            rq.presentation_contexts[0].transfer_syntaxes,
            ["1.2.840.10008.1.2"]
        );
        assert_eq!(
            rq.user_information.implementation_class_uid(),
            Some("1.2.3")
        );
    }

    #[test]
    fn pdu_non_ascii_text_decodes_as_question_marks() {
        let mut body = assoc_fixed(b"\xC3\xA9CHO           ", b"SCU             ");
        body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
        let Pdu::AssociateRq(rq) = complete(&pdu_bytes(1, &body)).0 else {
            panic!()
        };
        assert_eq!(rq.called_ae_title, "??CHO");
    }

    #[test]
    fn pdu_unknown_items_skipped_or_kept() {
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x77, b"whatever")); // unknown PDU-level item: skipped
        body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
        let mut pc = vec![1, 0, 0, 0];
        pc.extend(item(0x31, b"?")); // unknown presentation context sub-item: skipped
        pc.extend(item(0x30, b"1.2.840.10008.1.1"));
        pc.extend(item(0x40, b"1.2.840.10008.1.2"));
        body.extend(item(0x20, &pc));
        let mut ui = item(0x51, &[0, 0, 0x80, 0]);
        ui.extend(item(0x5F, &[1, 2, 3])); // unknown user sub-item: kept
        body.extend(item(0x50, &ui));
        body.extend(item(0x00, &[])); // another unknown item, empty
        let bytes = pdu_bytes(1, &body);
        let Pdu::AssociateRq(rq) = complete(&bytes).0 else {
            panic!()
        };
        assert_eq!(rq.presentation_contexts.len(), 1);
        assert_eq!(
            rq.user_information.items,
            [
                UserItem::MaximumLength(0x8000),
                UserItem::Unknown {
                    item_type: 0x5F,
                    data: vec![1, 2, 3]
                }
            ]
        );
        assert_eq!(rq.user_information.max_length(), Some(0x8000));
        // re-encoding drops the skipped items but keeps the unknown sub-item
        let again = encode_to_vec(&Pdu::AssociateRq(rq.clone()));
        assert_eq!(again.len(), bytes.len() - 12 - 4 - 5);
        assert_eq!(complete(&again).0, Pdu::AssociateRq(rq));
    }

    #[test]
    fn pdu_missing_user_information_and_transfer_syntaxes() {
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
        body.extend(item(
            0x20,
            &[[1u8, 0, 0, 0].as_slice(), &item(0x30, b"1.2")].concat(),
        ));
        let Pdu::AssociateRq(rq) = complete(&pdu_bytes(1, &body)).0 else {
            panic!()
        };
        assert!(rq.user_information.items.is_empty());
        assert!(rq.presentation_contexts[0].transfer_syntaxes.is_empty());
    }

    #[test]
    fn pdu_user_identity_without_secondary_length_is_tolerated() {
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2.840.10008.3.1.1.1"));
        body.extend(item(0x50, &item(0x58, &[1, 0, 0, 3, b'b', b'o', b'b'])));
        let Pdu::AssociateRq(rq) = complete(&pdu_bytes(1, &body)).0 else {
            panic!()
        };
        assert_eq!(
            rq.user_information.items,
            [UserItem::UserIdentityRq {
                identity_type: 1,
                positive_response_requested: false,
                primary_field: b"bob".to_vec(),
                secondary_field: vec![],
            }]
        );
    }

    // -----------------------------------------------------------------------------------
    // Errors
    // -----------------------------------------------------------------------------------

    #[test]
    fn pdu_unrecognized_type_is_abort_reason_1() {
        for t in [0x00u8, 0x08, 0x10, 0xFF] {
            let e = decode(&[t], 16384).unwrap_err();
            assert_eq!(e, PduError::UnrecognizedPduType(t));
            assert_eq!(e.abort_reason(), 1);
            assert!(e.to_string().contains(&format!("0x{t:02X}")), "{e}");
            assert!(decode(&[t, 0, 0, 0, 0, 4, 0, 0, 0, 0], 16384).is_err());
        }
    }

    #[test]
    fn pdu_too_long_before_reading_4gib() {
        let buf = [0x04, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];
        let e = decode(&buf, 16384).unwrap_err();
        assert_eq!(
            e,
            PduError::TooLong {
                declared: u32::MAX,
                limit: 16384
            }
        );
        assert_eq!(e.abort_reason(), 6);
        // with no limit it simply needs (a lot) more
        assert_eq!(
            decode(&buf, 0),
            Ok(Decoded::NeedMore(u32::MAX as usize + 6 - 10))
        );
        // the length is judged from the header alone
        assert!(matches!(
            decode(&buf[..6], 100),
            Err(PduError::TooLong { .. })
        ));
    }

    #[test]
    fn pdu_need_more_at_every_truncation_point() {
        for pdu in sample_pdus() {
            let bytes = encode_to_vec(&pdu);
            for cut in 0..bytes.len() {
                let want = if cut < 6 { 6 - cut } else { bytes.len() - cut };
                assert_eq!(
                    decode(&bytes[..cut], 0),
                    Ok(Decoded::NeedMore(want)),
                    "{pdu:?} cut at {cut}"
                );
                assert_eq!(
                    decode(&bytes[..cut], bytes.len() as u32),
                    Ok(Decoded::NeedMore(want))
                );
            }
            assert_eq!(complete(&bytes).1, bytes.len());
        }
    }

    #[test]
    fn pdu_pdata_errors() {
        // no PDV
        let e = decode(&[0x04, 0, 0, 0, 0, 0], 0).unwrap_err();
        assert!(matches!(&e, PduError::Malformed { what, .. } if what.contains("without any PDV")));
        assert_eq!(e.abort_reason(), 6);
        // PDV item length 0 and 1
        assert_eq!(
            malformed_offset(decode(&[0x04, 0, 0, 0, 0, 4, 0, 0, 0, 0], 0)),
            6
        );
        assert_eq!(
            malformed_offset(decode(&[0x04, 0, 0, 0, 0, 5, 0, 0, 0, 1, 1], 0)),
            6
        );
        // second PDV item longer than what remains of the PDU (offset of that item)
        let bad = [0x04, 0, 0, 0, 0, 13, 0, 0, 0, 3, 1, 2, 9, 0, 0, 0, 9, 1, 2];
        assert_eq!(malformed_offset(decode(&bad, 0)), 13);
        // a PDV item length that does not fit in the PDU at all
        let bad = [0x04, 0, 0, 0, 0, 6, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2];
        assert_eq!(malformed_offset(decode(&bad, 0)), 6);
        // truncated PDV item header
        assert_eq!(
            malformed_offset(decode(&[0x04, 0, 0, 0, 0, 3, 0, 0, 0], 0)),
            6
        );
    }

    #[test]
    fn pdu_associate_errors_name_offsets() {
        // item length past the end of the PDU: offset of the item
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend_from_slice(&[0x10, 0x00, 0x00, 0x40, b'1']);
        let e = decode(&pdu_bytes(1, &body), 0).unwrap_err();
        assert_eq!(e.abort_reason(), 6);
        assert!(matches!(&e, PduError::Malformed { offset: 74, .. }), "{e}");
        assert!(e.to_string().contains("offset 74"), "{e}");

        // body shorter than the fixed part
        assert_eq!(
            malformed_offset(decode(&pdu_bytes(1, &[0, 1, 0, 0, b'A']), 0)),
            10
        );

        // no application context item
        let body = assoc_fixed(b"A               ", b"B               ");
        assert_eq!(malformed_offset(decode(&pdu_bytes(2, &body), 0)), 74);

        // two application context items: offset of the second
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(0x10, b"1.2"));
        assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 81);

        // presentation context without abstract syntax
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(
            0x20,
            &[[1u8, 0, 0, 0].as_slice(), &item(0x40, b"1.2")].concat(),
        ));
        assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 81);

        // accepted presentation context without transfer syntax
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(0x21, &[1, 0, 0, 0]));
        assert_eq!(malformed_offset(decode(&pdu_bytes(2, &body), 0)), 81);

        // presentation context item shorter than its 4 fixed bytes
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(0x20, &[1, 0]));
        // item at 81, body at 85: id, then the 3 reserved bytes at 86 are missing
        assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 86);

        // maximum length sub-item with a wrong length
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(0x50, &item(0x51, &[0, 0, 1])));
        // user information item at 81, sub-item at 85, its body at 89
        assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 89);

        // role selection with a UID length past the item
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(0x50, &item(0x54, &[0, 9, b'1', 1, 1])));
        // the UID field starts at 91, after its 2-byte length
        assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 91);

        // role selection with trailing bytes
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(0x50, &item(0x54, &[0, 1, b'1', 1, 1, 0])));
        assert_eq!(malformed_offset(decode(&pdu_bytes(1, &body), 0)), 94);

        // common extended negotiation with a related-classes length past the item
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(
            0x50,
            &item(0x57, &[0, 1, b'1', 0, 1, b'2', 0, 5, 0, 1]),
        ));
        assert!(decode(&pdu_bytes(1, &body), 0).is_err());
    }

    #[test]
    fn pdu_misplaced_items_are_unexpected_parameters() {
        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(0x21, &[1, 0, 0, 0]));
        let e = decode(&pdu_bytes(1, &body), 0).unwrap_err();
        assert_eq!(
            e,
            PduError::UnexpectedItem {
                item_type: 0x21,
                context: "A-ASSOCIATE-RQ",
                offset: 81
            }
        );
        assert_eq!(e.abort_reason(), 5);

        let mut body = assoc_fixed(b"A               ", b"B               ");
        body.extend(item(0x10, b"1.2"));
        body.extend(item(0x51, &[0, 0, 0, 0]));
        assert!(matches!(
            decode(&pdu_bytes(2, &body), 0),
            Err(PduError::UnexpectedItem {
                item_type: 0x51,
                ..
            })
        ));
    }

    #[test]
    fn pdu_error_messages_are_clear() {
        let e = PduError::TooLong {
            declared: 70000,
            limit: 65536,
        };
        assert_eq!(
            e.to_string(),
            "PDU length 70000 exceeds the limit of 65536 bytes"
        );
        let e = PduError::Malformed {
            what: "x".into(),
            offset: 12,
        };
        assert_eq!(e.to_string(), "malformed PDU at byte offset 12: x");
        assert_eq!(PduError::Unencodable { what: "y".into() }.abort_reason(), 0);
    }

    #[test]
    fn pdu_unencodable_fields() {
        // a 70000-byte UID cannot be written: try_encode refuses and leaves out alone,
        // encode truncates without panicking
        let mut rq = echoscu_rq();
        rq.user_information
            .items
            .push(UserItem::ImplementationClassUid("1".repeat(70000)));
        let pdu = Pdu::AssociateRq(rq);
        let mut out = vec![1, 2, 3];
        let e = try_encode(&pdu, &mut out).unwrap_err();
        assert!(matches!(e, PduError::Unencodable { .. }));
        assert_eq!(out, [1, 2, 3]);
        let bytes = encode_to_vec(&pdu);
        // The PDU framing stays consistent (a receiver can skip it), but the user
        // information item was cut at 65535 bytes, in the middle of the long sub-item.
        assert_eq!(
            peek_header(&bytes).map(|h| h.1 as usize + 6),
            Some(bytes.len())
        );
        assert!(matches!(decode(&bytes, 0), Err(PduError::Malformed { .. })));

        // AE title longer than 16 bytes
        let mut rq = echoscu_rq();
        rq.calling_ae_title = "THIS_IS_TOO_LONG_AE".into();
        let pdu = Pdu::AssociateRq(rq);
        assert!(try_encode(&pdu, &mut Vec::new()).is_err());
        let Pdu::AssociateRq(back) = complete(&encode_to_vec(&pdu)).0 else {
            panic!()
        };
        assert_eq!(back.calling_ae_title, "THIS_IS_TOO_LONG");
    }

    #[test]
    fn pdu_every_single_byte_corruption_is_handled() {
        // Not vacuous: many corruptions (reserved bytes, text, values) still decode, and
        // then must re-encode to an equal PDU; the others must be clean errors.
        for pdu in sample_pdus() {
            let bytes = encode_to_vec(&pdu);
            let (mut complete_count, mut err_count) = (0, 0);
            for i in 0..bytes.len() {
                for v in [0x00, 0x01, 0x7F, 0xFF] {
                    let mut b = bytes.clone();
                    b[i] = v;
                    match decode(&b, 0) {
                        Ok(Decoded::Complete(p, n)) => {
                            complete_count += 1;
                            assert!(n <= b.len());
                            assert_eq!(complete(&encode_to_vec(&p)).0, p, "byte {i} = {v}");
                        }
                        Ok(Decoded::NeedMore(n)) => assert!(n > 0),
                        Err(_) => err_count += 1,
                    }
                }
            }
            assert!(complete_count > 0, "{pdu:?}");
            if !matches!(
                pdu,
                Pdu::ReleaseRq | Pdu::ReleaseRp | Pdu::Abort(_) | Pdu::AssociateRj(_)
            ) {
                assert!(err_count > 0, "{pdu:?}");
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Max-PDU arithmetic and fragmentation
    // -----------------------------------------------------------------------------------

    #[test]
    fn pdu_max_pdv_data_len_edges() {
        // 0 = no limit: we use 1 MiB bodies
        assert_eq!(max_pdv_data_len(0), (1 << 20) - 6);
        assert_eq!(
            max_pdv_data_len(0),
            max_pdv_data_len(UNLIMITED_PEER_MAX_PDU)
        );
        // usual values
        assert_eq!(max_pdv_data_len(16384), 16378);
        assert_eq!(max_pdv_data_len(16382), 16376); // dcmtk's default ASC_DEFAULTMAXPDU
        assert_eq!(max_pdv_data_len(65536), 65530);
        // smallest useful and degenerate
        assert_eq!(max_pdv_data_len(7), 1);
        assert_eq!(max_pdv_data_len(6), 1);
        assert_eq!(max_pdv_data_len(1), 1);
        // the largest
        assert_eq!(max_pdv_data_len(u32::MAX), u32::MAX as usize - 6);
    }

    /// Encode a message as the sender would for a peer with `peer_max`, and decode every PDU
    /// with the receiver's limit `peer_max`.
    fn send_and_receive(total: usize, peer_max: u32) -> (usize, Vec<u8>) {
        let msg: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        let ranges: Vec<_> = fragment_ranges(total, peer_max).collect();
        assert_eq!(ranges.len(), fragment_count(total, peer_max));
        for (i, r) in ranges.iter().enumerate() {
            let last = i + 1 == ranges.len();
            write_single_pdv_header(
                &mut wire,
                1,
                if last { Pdv::LAST } else { 0 },
                r.len() as u32,
            );
            wire.extend_from_slice(&msg[r.clone()]);
        }
        let mut got = Vec::new();
        let mut pos = 0;
        let mut pdus = 0;
        while pos < wire.len() {
            let (_, body_len) = peek_header(&wire[pos..]).unwrap();
            if peer_max != 0 {
                assert!(
                    body_len <= peer_max,
                    "PDU body {body_len} > peer max {peer_max}"
                );
            }
            match decode(&wire[pos..], peer_max).unwrap() {
                Decoded::Complete(Pdu::PData(p), n) => {
                    assert_eq!(p.pdvs.len(), 1);
                    assert_eq!(p.pdvs[0].is_last(), pos + n == wire.len());
                    got.extend_from_slice(&p.pdvs[0].data);
                    pos += n;
                    pdus += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, msg);
        (pdus, wire)
    }

    #[test]
    fn pdu_fragmentation_exactly_full_and_one_over() {
        let max = 16384u32;
        let chunk = max_pdv_data_len(max);
        // exactly full: one PDU whose body is exactly the peer's max
        let (n, wire) = send_and_receive(chunk, max);
        assert_eq!(n, 1);
        assert_eq!(wire.len(), max as usize + 6);
        assert_eq!(peek_header(&wire), Some((0x04, max)));
        // one byte over: two PDUs, the second carrying one byte
        let (n, wire) = send_and_receive(chunk + 1, max);
        assert_eq!(n, 2);
        assert_eq!(
            wire.len(),
            (max as usize + 6) + (PDATA_SINGLE_PDV_OVERHEAD + 1)
        );
        // one byte under: one PDU
        assert_eq!(send_and_receive(chunk - 1, max).0, 1);
        // two exactly full
        assert_eq!(send_and_receive(2 * chunk, max).0, 2);
        // empty message: one empty fragment with the last bit
        let (n, wire) = send_and_receive(0, max);
        assert_eq!((n, wire.len()), (1, PDATA_SINGLE_PDV_OVERHEAD));

        // a PDU one byte over the receiver's limit is refused before it is read
        let mut over = Vec::new();
        write_single_pdv_header(&mut over, 1, 2, chunk as u32 + 1);
        assert_eq!(
            decode(&over, max),
            Err(PduError::TooLong {
                declared: max + 1,
                limit: max
            })
        );
        let mut full = Vec::new();
        write_single_pdv_header(&mut full, 1, 2, chunk as u32);
        assert_eq!(decode(&full, max), Ok(Decoded::NeedMore(chunk)));
    }

    #[test]
    fn pdu_fragmentation_peer_smaller_than_ours_and_unlimited() {
        // We accept 65536 but the peer only 4096: fragments follow the peer's value.
        let ours = 65536u32;
        let peer = 4096u32;
        let total = 10_000;
        let (n, wire) = send_and_receive(total, peer);
        assert_eq!(n, 3); // 4090 + 4090 + 1820
        assert_eq!(fragment_count(total, peer), 3);
        let ranges: Vec<_> = fragment_ranges(total, peer).collect();
        assert_eq!(ranges, [0..4090, 4090..8180, 8180..10_000]);
        assert_eq!(wire.len(), total + 3 * PDATA_SINGLE_PDV_OVERHEAD);
        // and what the peer sends us (cut for our 65536) would be too long for the peer
        let mut big = Vec::new();
        write_single_pdv_header(&mut big, 1, 2, max_pdv_data_len(ours) as u32);
        assert!(matches!(decode(&big, peer), Err(PduError::TooLong { .. })));
        assert!(matches!(decode(&big, ours), Ok(Decoded::NeedMore(_))));

        // peer says 0 (unlimited): 1 MiB bodies
        assert_eq!(fragment_count(3 << 20, 0), 4);
        let r: Vec<_> = fragment_ranges(3 << 20, 0).collect();
        assert_eq!(r[0], 0..(1 << 20) - 6);
        assert_eq!(r.last().unwrap().end, 3 << 20);
        assert_eq!(send_and_receive(5000, 0).0, 1);
        // degenerate peer max still makes progress
        assert_eq!(fragment_count(3, 6), 3);
        assert_eq!(fragment_count(0, 6), 1);
    }

    // -----------------------------------------------------------------------------------
    // Property tests
    // -----------------------------------------------------------------------------------

    fn uid() -> impl Strategy<Value = String> {
        "[0-9.]{0,64}"
    }

    fn ae() -> impl Strategy<Value = String> {
        "([A-Z0-9_\\-]([A-Z0-9_ ]{0,14}[A-Z0-9_])?)?"
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>(), 0..max)
    }

    fn user_item() -> impl Strategy<Value = UserItem> {
        prop_oneof![
            any::<u32>().prop_map(UserItem::MaximumLength),
            uid().prop_map(UserItem::ImplementationClassUid),
            (any::<u16>(), any::<u16>()).prop_map(|(invoked, performed)| {
                UserItem::AsyncOperationsWindow { invoked, performed }
            }),
            (uid(), any::<u8>(), any::<u8>()).prop_map(|(sop_class_uid, scu_role, scp_role)| {
                UserItem::RoleSelection {
                    sop_class_uid,
                    scu_role,
                    scp_role,
                }
            }),
            "[!-~]{0,16}".prop_map(UserItem::ImplementationVersionName),
            (uid(), bytes(40)).prop_map(|(sop_class_uid, info)| {
                UserItem::SopClassExtendedNegotiation {
                    sop_class_uid,
                    info,
                }
            }),
            (uid(), uid(), prop::collection::vec(uid(), 0..4)).prop_map(|(a, b, c)| {
                UserItem::SopClassCommonExtendedNegotiation {
                    sop_class_uid: a,
                    service_class_uid: b,
                    related_general_sop_classes: c,
                }
            }),
            (any::<u8>(), any::<bool>(), bytes(40), bytes(40)).prop_map(|(t, p, a, b)| {
                UserItem::UserIdentityRq {
                    identity_type: t,
                    positive_response_requested: p,
                    primary_field: a,
                    secondary_field: b,
                }
            }),
            bytes(40).prop_map(|server_response| UserItem::UserIdentityAc { server_response }),
            (
                any::<u8>().prop_filter("undefined sub-item type", |t| !(0x51..=0x59).contains(t)),
                bytes(40)
            )
                .prop_map(|(item_type, data)| UserItem::Unknown { item_type, data }),
        ]
    }

    fn user_info() -> impl Strategy<Value = UserInformation> {
        prop::collection::vec(user_item(), 0..6).prop_map(|items| UserInformation { items })
    }

    fn arb_pdu() -> impl Strategy<Value = Pdu> {
        let rq_ctx =
            (any::<u8>(), uid(), prop::collection::vec(uid(), 0..4)).prop_map(|(id, a, t)| {
                PresentationContextRq {
                    id,
                    abstract_syntax: a,
                    transfer_syntaxes: t,
                }
            });
        let ac_ctx =
            (any::<u8>(), 0u8..6, uid()).prop_map(|(id, result, ts)| PresentationContextAc {
                id,
                result,
                transfer_syntax: ts,
            });
        let rq = (
            any::<u16>(),
            ae(),
            ae(),
            uid(),
            prop::collection::vec(rq_ctx, 0..4),
            user_info(),
        )
            .prop_map(|(v, called, calling, app, pcs, ui)| {
                Pdu::AssociateRq(AssociateRq {
                    protocol_version: v,
                    called_ae_title: called,
                    calling_ae_title: calling,
                    application_context: app,
                    presentation_contexts: pcs,
                    user_information: ui,
                })
            });
        let ac = (
            any::<u16>(),
            ae(),
            ae(),
            uid(),
            prop::collection::vec(ac_ctx, 0..4),
            user_info(),
        )
            .prop_map(|(v, called, calling, app, pcs, ui)| {
                Pdu::AssociateAc(AssociateAc {
                    protocol_version: v,
                    called_ae_title: called,
                    calling_ae_title: calling,
                    application_context: app,
                    presentation_contexts: pcs,
                    user_information: ui,
                })
            });
        let pdv =
            (any::<u8>(), any::<u8>(), bytes(100)).prop_map(|(context_id, control, data)| Pdv {
                context_id,
                control,
                data,
            });
        prop_oneof![
            rq,
            ac,
            (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(result, source, reason)| {
                Pdu::AssociateRj(AssociateRj {
                    result,
                    source,
                    reason,
                })
            }),
            prop::collection::vec(pdv, 1..4).prop_map(|pdvs| Pdu::PData(PData { pdvs })),
            Just(Pdu::ReleaseRq),
            Just(Pdu::ReleaseRp),
            (any::<u8>(), any::<u8>())
                .prop_map(|(source, reason)| Pdu::Abort(Abort { source, reason })),
        ]
    }

    /// Decode with no limit; if a PDU comes out, check the invariants: it used no more than
    /// the buffer, and it re-encodes to bytes that decode to the same PDU.
    fn check_decode_invariants(buf: &[u8]) -> Result<(), TestCaseError> {
        match decode(buf, 0) {
            Ok(Decoded::Complete(pdu, used)) => {
                prop_assert!(used >= 6 && used <= buf.len());
                let again = encode_to_vec(&pdu);
                let mut checked = Vec::new();
                prop_assert!(try_encode(&pdu, &mut checked).is_ok());
                match decode(&again, 0) {
                    Ok(Decoded::Complete(p2, n2)) => {
                        prop_assert_eq!(p2, pdu);
                        prop_assert_eq!(n2, again.len());
                    }
                    other => prop_assert!(false, "re-decode failed: {:?}", other),
                }
            }
            Ok(Decoded::NeedMore(n)) => prop_assert!(n > 0),
            Err(e) => {
                let _ = (e.to_string(), e.abort_reason());
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn pdu_prop_roundtrip(pdu in arb_pdu()) {
            let bytes = encode_to_vec(&pdu);
            prop_assert_eq!(decode(&bytes, 0), Ok(Decoded::Complete(pdu.clone(), bytes.len())));
            prop_assert_eq!(peek_header(&bytes).map(|h| h.1 as usize + 6), Some(bytes.len()));
            // with a limit of exactly the body length it is accepted, one less it is not
            let body = (bytes.len() - 6) as u32;
            prop_assert!(matches!(decode(&bytes, body), Ok(Decoded::Complete(..))));
            if body > 0 {
                prop_assert_eq!(
                    decode(&bytes, body - 1),
                    Err(PduError::TooLong { declared: body, limit: body - 1 })
                );
            }
        }

        #[test]
        fn pdu_prop_random_bytes_never_panic(buf in bytes(400)) {
            check_decode_invariants(&buf)?;
        }

        #[test]
        fn pdu_prop_random_framed_bodies_never_panic(ty in 1u8..=7, body in bytes(400)) {
            let buf = pdu_bytes(ty, &body);
            check_decode_invariants(&buf)?;
        }

        #[test]
        fn pdu_prop_mutated_valid_pdus_never_panic(
            pdu in arb_pdu(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut buf = encode_to_vec(&pdu);
            for (at, v) in edits {
                let i = at.index(buf.len());
                buf[i] = v;
            }
            if truncate {
                let n = cut.index(buf.len() + 1);
                buf.truncate(n);
            }
            check_decode_invariants(&buf)?;
        }

        #[test]
        fn pdu_prop_mutated_lengths_never_panic(
            pdu in arb_pdu(),
            at in any::<prop::sample::Index>(),
            len in prop_oneof![Just(0u16), Just(1), Just(2), Just(0xFFFF), any::<u16>()],
        ) {
            // Overwrite a 2-byte window (often an item length) with a hostile value,
            // keeping the PDU length consistent so the body is actually parsed.
            let mut buf = encode_to_vec(&pdu);
            if buf.len() > 8 {
                let i = 6 + at.index(buf.len() - 7);
                buf[i..i + 2].copy_from_slice(&len.to_be_bytes());
                check_decode_invariants(&buf)?;
            }
        }
    }
}
