//! PDU and item types of PS3.8 section 9.3 and Annex D.
//!
//! These are plain data: the codec in `codec.rs` turns them into bytes and back.
//! AE titles are kept as `String` without padding (the codec pads to 16 bytes with
//! spaces and trims on decode). UIDs are kept without their trailing NUL padding.

/// PDU type bytes (PS3.8 9.3.1).
pub mod pdu_type {
    pub const ASSOCIATE_RQ: u8 = 0x01;
    pub const ASSOCIATE_AC: u8 = 0x02;
    pub const ASSOCIATE_RJ: u8 = 0x03;
    pub const P_DATA_TF: u8 = 0x04;
    pub const RELEASE_RQ: u8 = 0x05;
    pub const RELEASE_RP: u8 = 0x06;
    pub const ABORT: u8 = 0x07;
}

/// Item type bytes (PS3.8 9.3.2 and Annex D).
pub mod item_type {
    pub const APPLICATION_CONTEXT: u8 = 0x10;
    pub const PRESENTATION_CONTEXT_RQ: u8 = 0x20;
    pub const PRESENTATION_CONTEXT_AC: u8 = 0x21;
    pub const ABSTRACT_SYNTAX: u8 = 0x30;
    pub const TRANSFER_SYNTAX: u8 = 0x40;
    pub const USER_INFORMATION: u8 = 0x50;
    pub const MAXIMUM_LENGTH: u8 = 0x51;
    pub const IMPLEMENTATION_CLASS_UID: u8 = 0x52;
    pub const ASYNC_OPERATIONS_WINDOW: u8 = 0x53;
    pub const ROLE_SELECTION: u8 = 0x54;
    pub const IMPLEMENTATION_VERSION_NAME: u8 = 0x55;
    pub const SOP_CLASS_EXTENDED_NEGOTIATION: u8 = 0x56;
    pub const SOP_CLASS_COMMON_EXTENDED_NEGOTIATION: u8 = 0x57;
    pub const USER_IDENTITY_RQ: u8 = 0x58;
    pub const USER_IDENTITY_AC: u8 = 0x59;
}

/// The DICOM application context name (PS3.7 Annex A.2.1).
pub use crate::uid::DICOM_APPLICATION_CONTEXT;

/// A protocol data unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    AssociateRq(AssociateRq),
    AssociateAc(AssociateAc),
    AssociateRj(AssociateRj),
    PData(PData),
    ReleaseRq,
    ReleaseRp,
    Abort(Abort),
}

/// A-ASSOCIATE-RQ (type 0x01).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociateRq {
    /// Bit 0 set = version 1 (the only one defined).
    pub protocol_version: u16,
    pub called_ae_title: String,
    pub calling_ae_title: String,
    pub application_context: String,
    pub presentation_contexts: Vec<PresentationContextRq>,
    pub user_information: UserInformation,
}

/// A-ASSOCIATE-AC (type 0x02).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociateAc {
    pub protocol_version: u16,
    /// Reserved in the standard, but sent back as received in the RQ.
    pub called_ae_title: String,
    pub calling_ae_title: String,
    pub application_context: String,
    pub presentation_contexts: Vec<PresentationContextAc>,
    pub user_information: UserInformation,
}

/// A-ASSOCIATE-RJ (type 0x03), PS3.8 9.3.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssociateRj {
    /// 1 = rejected-permanent, 2 = rejected-transient.
    pub result: u8,
    /// 1 = service-user, 2 = service-provider (ACSE), 3 = service-provider (presentation).
    pub source: u8,
    /// Meaning depends on `source` (see `ul::reject` helpers).
    pub reason: u8,
}

/// A-ABORT (type 0x07), PS3.8 9.3.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort {
    /// 0 = service-user initiated, 2 = service-provider initiated.
    pub source: u8,
    /// For source 2: 0 not specified, 1 unrecognized PDU, 2 unexpected PDU,
    /// 4 unrecognized PDU parameter, 5 unexpected PDU parameter, 6 invalid PDU parameter value.
    pub reason: u8,
}

/// P-DATA-TF (type 0x04): one or more presentation data value items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PData {
    pub pdvs: Vec<Pdv>,
}

/// One presentation data value item (PS3.8 9.3.5.1 and Annex E.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdv {
    pub context_id: u8,
    /// Message control header: bit 0 = command (1) / data (0), bit 1 = last fragment.
    pub control: u8,
    pub data: Vec<u8>,
}

impl Pdv {
    pub const COMMAND: u8 = 0x01;
    pub const LAST: u8 = 0x02;
    pub fn is_command(&self) -> bool {
        self.control & Self::COMMAND != 0
    }
    pub fn is_last(&self) -> bool {
        self.control & Self::LAST != 0
    }
}

/// Presentation context item in an A-ASSOCIATE-RQ (item type 0x20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContextRq {
    /// Odd integer 1..=255.
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<String>,
}

/// Presentation context item in an A-ASSOCIATE-AC (item type 0x21).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContextAc {
    pub id: u8,
    /// 0 acceptance, 1 user-rejection, 2 no-reason (provider rejection),
    /// 3 abstract-syntax-not-supported, 4 transfer-syntaxes-not-supported.
    pub result: u8,
    /// The accepted transfer syntax; ignored (may be empty) when `result != 0`.
    pub transfer_syntax: String,
}

/// User information item (0x50) and its sub-items, in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInformation {
    pub items: Vec<UserItem>,
}

/// Sub-items of the user information item (PS3.8 D.1, PS3.7 Annex D.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserItem {
    /// 0x51: maximum length of P-DATA-TF PDUs the sender can receive; 0 = no limit.
    MaximumLength(u32),
    /// 0x52
    ImplementationClassUid(String),
    /// 0x53: maximum number operations invoked / performed.
    AsyncOperationsWindow { invoked: u16, performed: u16 },
    /// 0x54: SCP/SCU role selection.
    RoleSelection { sop_class_uid: String, scu_role: u8, scp_role: u8 },
    /// 0x55
    ImplementationVersionName(String),
    /// 0x56: service-class-application-information is opaque bytes.
    SopClassExtendedNegotiation { sop_class_uid: String, info: Vec<u8> },
    /// 0x57
    SopClassCommonExtendedNegotiation {
        sop_class_uid: String,
        service_class_uid: String,
        related_general_sop_classes: Vec<String>,
    },
    /// 0x58: type 1 username, 2 username+passcode, 3 Kerberos, 4 SAML, 5 JWT.
    UserIdentityRq {
        identity_type: u8,
        positive_response_requested: bool,
        primary_field: Vec<u8>,
        secondary_field: Vec<u8>,
    },
    /// 0x59
    UserIdentityAc { server_response: Vec<u8> },
    /// Any other sub-item type: kept so that it can be logged; not acted upon.
    Unknown { item_type: u8, data: Vec<u8> },
}

impl UserInformation {
    pub fn max_length(&self) -> Option<u32> {
        self.items.iter().find_map(|i| match i {
            UserItem::MaximumLength(n) => Some(*n),
            _ => None,
        })
    }
    pub fn implementation_class_uid(&self) -> Option<&str> {
        self.items.iter().find_map(|i| match i {
            UserItem::ImplementationClassUid(s) => Some(s.as_str()),
            _ => None,
        })
    }
    pub fn implementation_version_name(&self) -> Option<&str> {
        self.items.iter().find_map(|i| match i {
            UserItem::ImplementationVersionName(s) => Some(s.as_str()),
            _ => None,
        })
    }
    /// Role selection items as (sop class, scu_role, scp_role).
    pub fn role_selections(&self) -> impl Iterator<Item = (&str, u8, u8)> {
        self.items.iter().filter_map(|i| match i {
            UserItem::RoleSelection { sop_class_uid, scu_role, scp_role } => {
                Some((sop_class_uid.as_str(), *scu_role, *scp_role))
            }
            _ => None,
        })
    }
}
