//! Sans-I/O encoder and decoder of the upper-layer PDUs (PS3.8 9.3, Annex D; PS3.7 D.3.3).
//!
//! This file decodes; `encode.rs` writes (the same layout, the same limits).
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

#[cfg(test)]
use super::encode::*;

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "fragment_tests.rs"]
mod fragment_tests;
