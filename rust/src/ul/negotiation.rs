//! Association negotiation for both roles, as pure functions (PS3.8 7.1, 9.3.2-9.3.4;
//! PS3.7 Annex D.3.3).
//!
//! Requestor side: [`build_associate_rq`] turns a [`RequestorConfig`] into the A-ASSOCIATE-RQ
//! to feed the state machine as `Event::AssociateRequest`; when the A-ASSOCIATE-AC comes back,
//! [`interpret_associate_ac`] gives the [`Negotiated`] parameters or a [`NegotiationError`] for
//! an answer that breaks the protocol (the driver then aborts).
//!
//! Acceptor side: on `Indication::AssociateRequest`, [`negotiate_acceptor`] applies an
//! [`AcceptorConfig`] and returns either an A-ASSOCIATE-AC plus the [`Negotiated`] parameters,
//! or an A-ASSOCIATE-RJ; the driver feeds `Event::AssociateAccept` / `Event::AssociateReject`.
//!
//! # Decisions
//!
//! - **Rejections** (PS3.8 9.3.4), checked in this order: protocol version without bit 0
//!   (1 permanent, 2 service-provider ACSE, 2 protocol-version-not-supported); application
//!   context name other than the DICOM one (1, 1 service-user, 2
//!   application-context-name-not-supported); called AE title not ours when
//!   `require_called_ae` (1, 1, 7 called-AE-title-not-recognized); calling AE title not in
//!   `allowed_calling_aes` (1, 1, 3 calling-AE-title-not-recognized). All of these are
//!   *permanent*: retrying with the same parameters cannot succeed. *Transient* rejections
//!   (result 2) say "try again later": [`reject::TEMPORARY_CONGESTION`] and
//!   [`reject::LOCAL_LIMIT_EXCEEDED`] (source 3) are for a driver that is out of capacity, for
//!   example at its maximum number of associations; this module never produces them itself.
//! - **No acceptable presentation context** does not reject the association: the A-ASSOCIATE-AC
//!   carries the per-context results (3 or 4), which tell the requestor more than a bare
//!   rejection would. The requestor sees an empty [`Negotiated::contexts`].
//! - **Transfer syntax choice:** for each proposed context we take the first transfer syntax
//!   of *our* preference list that the requestor proposed (result 0); none in common gives
//!   result 4; an abstract syntax we do not support gives result 3. An empty preference list
//!   means "any": we take the requestor's first (its preferred) transfer syntax.
//! - **Odd context IDs** (PS3.8 9.3.2.2): an even ID gets result 2 (no-reason, provider
//!   rejection). A repeated ID is answered once, for its first occurrence; later duplicates are
//!   dropped from the answer (one answer per ID is all the AC can carry).
//! - **Role selection** (PS3.7 D.3.3.4): we answer only for SOP classes the requestor sent an
//!   item for (first item per class), with the same value (1) where we accept its proposal
//!   and 0 where we refuse it or it did not propose the role. We accept the requestor's SCU
//!   role whenever proposed; its SCP role (it serves C-STORE sub-operations of a C-GET, for
//!   example) only as [`ScpRolePolicy`] allows. Resulting roles per context: with no item
//!   offered or none answered, requestor SCU / acceptor SCP; otherwise each role is on only if
//!   proposed *and* accepted. A context may thus end up with neither role; it stays accepted
//!   and the DIMSE layer refuses to use it.
//! - **Maximum length** (PS3.8 D.1): 0 means unlimited, passed through as 0. A peer that omits
//!   the (mandatory) sub-item is taken to accept [`PEER_MAX_PDU_IF_ABSENT`] bytes, the
//!   conservative size every implementation supports.
//! - **Asynchronous operations window** (PS3.7 D.3.3.3): the acceptor answers only if the
//!   requestor proposed one and the config has a window; each value is the smaller of the two
//!   (0 = unlimited). Absent in the AC: 1 and 1 (synchronous).
//! - **AC answers on the requestor side:** an answer for an ID we never proposed, or an
//!   accepted transfer syntax that we did not propose for that ID, is an error (the peer is
//!   broken; going on would send data in a syntax the peer did not agree to). A proposed
//!   context the AC does not answer is treated as rejected with result 2 (no-reason).
//! - **Comparisons:** AE titles ignore leading/trailing spaces and are case-sensitive (PS3.5
//!   AE VR); UIDs ignore trailing NUL and space padding.
//! - **User identity** (PS3.7 D.3.3.7): the requestor's item is passed through in
//!   [`Negotiated::peer_user_identity`]; deciding on it is the application's business (a
//!   driver may turn an Accept into a rejection). We never send a server response.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::pdu::{
    Abort, AssociateAc, AssociateRj, AssociateRq, PresentationContextAc, PresentationContextRq,
    UserInformation, UserItem, DICOM_APPLICATION_CONTEXT,
};

pub use crate::uid::{IMPLEMENTATION_CLASS_UID as DEFAULT_IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME as DEFAULT_IMPLEMENTATION_VERSION_NAME};
/// The maximum P-DATA-TF PDU length we advertise by default.
pub const DEFAULT_MAX_PDU_LENGTH: u32 = 1_048_576;
/// The peer's maximum PDU length assumed when it omits the Maximum Length sub-item.
pub const PEER_MAX_PDU_IF_ABSENT: u32 = 16_384;
/// At most this many presentation contexts fit in the odd IDs 1..=255.
pub const MAX_PRESENTATION_CONTEXTS: usize = 128;

/// A-ASSOCIATE-RJ values (PS3.8 9.3.4) and ready-made rejections.
pub mod reject {
    use crate::pdu::AssociateRj;

    pub const RESULT_PERMANENT: u8 = 1;
    pub const RESULT_TRANSIENT: u8 = 2;
    pub const SOURCE_SERVICE_USER: u8 = 1;
    pub const SOURCE_PROVIDER_ACSE: u8 = 2;
    pub const SOURCE_PROVIDER_PRESENTATION: u8 = 3;

    /// Service-user, no-reason-given (permanent).
    pub const NO_REASON_GIVEN: AssociateRj = AssociateRj {
        result: 1,
        source: 1,
        reason: 1,
    };
    /// Service-user, application-context-name-not-supported (permanent).
    pub const APPLICATION_CONTEXT_NOT_SUPPORTED: AssociateRj = AssociateRj {
        result: 1,
        source: 1,
        reason: 2,
    };
    /// Service-user, calling-AE-title-not-recognized (permanent).
    pub const CALLING_AE_NOT_RECOGNIZED: AssociateRj = AssociateRj {
        result: 1,
        source: 1,
        reason: 3,
    };
    /// Service-user, called-AE-title-not-recognized (permanent).
    pub const CALLED_AE_NOT_RECOGNIZED: AssociateRj = AssociateRj {
        result: 1,
        source: 1,
        reason: 7,
    };
    /// Service-provider (ACSE), protocol-version-not-supported (permanent).
    pub const PROTOCOL_VERSION_NOT_SUPPORTED: AssociateRj = AssociateRj {
        result: 1,
        source: 2,
        reason: 2,
    };
    /// Service-provider (presentation), temporary-congestion (transient).
    pub const TEMPORARY_CONGESTION: AssociateRj = AssociateRj {
        result: 2,
        source: 3,
        reason: 1,
    };
    /// Service-provider (presentation), local-limit-exceeded (transient), for example too
    /// many associations.
    pub const LOCAL_LIMIT_EXCEEDED: AssociateRj = AssociateRj {
        result: 2,
        source: 3,
        reason: 2,
    };

    /// Whether retrying later may succeed (result 2, rejected-transient).
    pub fn is_transient(rj: &AssociateRj) -> bool {
        rj.result == RESULT_TRANSIENT
    }
}

/// Human words for an A-ASSOCIATE-RJ result (1 permanent, 2 transient).
pub fn reject_result_text(result: u8) -> &'static str {
    match result {
        1 => "rejected-permanent",
        2 => "rejected-transient",
        _ => "rejected (unknown result value)",
    }
}

/// Human words for an A-ASSOCIATE-RJ source.
pub fn reject_source_text(source: u8) -> &'static str {
    match source {
        1 => "DICOM UL service-user",
        2 => "DICOM UL service-provider (ACSE related function)",
        3 => "DICOM UL service-provider (presentation related function)",
        _ => "unknown source",
    }
}

/// Human words for the reason of an A-ASSOCIATE-RJ (PS3.8 9.3.4); the reason's meaning
/// depends on the source. `result` is not needed for the words but is taken so that a call
/// site can pass the three fields as received.
pub fn reject_reason_text(result: u8, source: u8, reason: u8) -> &'static str {
    let _ = result;
    match (source, reason) {
        (1, 1) => "no reason given",
        (1, 2) => "application context name not supported",
        (1, 3) => "calling AE title not recognized",
        (1, 7) => "called AE title not recognized",
        (1, 4..=6) | (1, 8..=10) => "reserved reason",
        (2, 1) => "no reason given",
        (2, 2) => "protocol version not supported",
        (3, 1) => "temporary congestion",
        (3, 2) => "local limit exceeded",
        (3, 0) | (3, 3..=7) => "reserved reason",
        _ => "unknown reason",
    }
}

/// "rejected-permanent by DICOM UL service-user: called AE title not recognized (result 1,
/// source 1, reason 7)".
pub fn describe_reject(rj: &AssociateRj) -> String {
    format!(
        "{} by {}: {} (result {}, source {}, reason {})",
        reject_result_text(rj.result),
        reject_source_text(rj.source),
        reject_reason_text(rj.result, rj.source, rj.reason),
        rj.result,
        rj.source,
        rj.reason
    )
}

/// Human words for an A-ABORT (PS3.8 9.3.8). For source 0 the reason is not significant.
pub fn abort_reason_text(source: u8, reason: u8) -> &'static str {
    match (source, reason) {
        (0, _) => "aborted by the service-user",
        (2, 0) => "reason not specified",
        (2, 1) => "unrecognized PDU",
        (2, 2) => "unexpected PDU",
        (2, 4) => "unrecognized PDU parameter",
        (2, 5) => "unexpected PDU parameter",
        (2, 6) => "invalid PDU parameter value",
        (2, _) => "reserved reason",
        _ => "unknown abort source",
    }
}

/// "A-ABORT from the service-provider: unexpected PDU (source 2, reason 2)".
pub fn describe_abort(abort: &Abort) -> String {
    let who = match abort.source {
        0 => "service-user",
        2 => "service-provider",
        _ => "unknown source",
    };
    format!(
        "A-ABORT from the {who}: {} (source {}, reason {})",
        abort_reason_text(abort.source, abort.reason),
        abort.source,
        abort.reason
    )
}

/// Human words for a presentation context result (PS3.8 9.3.3.2).
pub fn context_result_text(result: u8) -> &'static str {
    match result {
        0 => "acceptance",
        1 => "user-rejection",
        2 => "no-reason (provider rejection)",
        3 => "abstract-syntax-not-supported (provider rejection)",
        4 => "transfer-syntaxes-not-supported (provider rejection)",
        _ => "unknown result",
    }
}

/// Errors of the requestor side: a config that cannot be sent, or an A-ASSOCIATE-AC that
/// breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("no presentation context to propose")]
    NoContexts,
    #[error("{0} presentation contexts proposed; at most 128 fit in the odd context IDs 1..=255")]
    TooManyContexts(usize),
    #[error("the presentation context for {abstract_syntax:?} proposes no transfer syntax")]
    NoTransferSyntax { abstract_syntax: String },
    #[error("invalid AE title {title:?}: {reason}")]
    InvalidAeTitle { title: String, reason: &'static str },
    #[error("invalid association configuration: {0}")]
    InvalidConfig(String),
    #[error("the A-ASSOCIATE-AC answers presentation context {0}, which was not proposed")]
    UnknownContextId(u8),
    #[error(
        "the A-ASSOCIATE-AC accepts presentation context {id} with transfer syntax \
         {transfer_syntax:?}, which was not proposed for it"
    )]
    TransferSyntaxNotProposed { id: u8, transfer_syntax: String },
}

/// A user identity (PS3.7 D.3.3.7). `Debug` hides the secondary field (a password).
#[derive(Clone, PartialEq, Eq)]
pub struct UserIdentity {
    /// 1 username, 2 username and passcode, 3 Kerberos, 4 SAML, 5 JWT.
    pub identity_type: u8,
    pub positive_response_requested: bool,
    pub primary_field: Vec<u8>,
    pub secondary_field: Vec<u8>,
}

impl UserIdentity {
    pub fn username(username: &str, positive_response_requested: bool) -> Self {
        UserIdentity {
            identity_type: 1,
            positive_response_requested,
            primary_field: username.as_bytes().to_vec(),
            secondary_field: Vec::new(),
        }
    }

    pub fn username_password(
        username: &str,
        password: &str,
        positive_response_requested: bool,
    ) -> Self {
        UserIdentity {
            identity_type: 2,
            positive_response_requested,
            primary_field: username.as_bytes().to_vec(),
            secondary_field: password.as_bytes().to_vec(),
        }
    }

    fn to_item(&self) -> UserItem {
        UserItem::UserIdentityRq {
            identity_type: self.identity_type,
            positive_response_requested: self.positive_response_requested,
            primary_field: self.primary_field.clone(),
            secondary_field: self.secondary_field.clone(),
        }
    }
}

impl fmt::Debug for UserIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A username is shown; a token (Kerberos, SAML, JWT) is not.
        let primary = match self.identity_type {
            1 | 2 => format!("{:?}", String::from_utf8_lossy(&self.primary_field)),
            _ => format!("<{} bytes hidden>", self.primary_field.len()),
        };
        f.debug_struct("UserIdentity")
            .field("identity_type", &self.identity_type)
            .field(
                "positive_response_requested",
                &self.positive_response_requested,
            )
            .field("primary_field", &format_args!("{primary}"))
            .field(
                "secondary_field",
                &format_args!("<{} bytes hidden>", self.secondary_field.len()),
            )
            .finish()
    }
}

/// What the association-requestor proposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestorConfig {
    pub calling_ae: String,
    pub called_ae: String,
    /// (abstract syntax, transfer syntaxes in order of preference); each entry becomes one
    /// presentation context, IDs 1, 3, 5, ... in this order. An abstract syntax may appear
    /// more than once (one context per transfer syntax, for example).
    pub contexts: Vec<(String, Vec<String>)>,
    /// (SOP class UID, we support the SCU role, we support the SCP role), sent as SCP/SCU
    /// Role Selection items. A C-GET SCU proposes (storage class, true, true), for example.
    pub role_selections: Vec<(String, bool, bool)>,
    /// The largest P-DATA-TF PDU we accept; 0 = unlimited.
    pub max_pdu_length: u32,
    pub implementation_class_uid: String,
    /// Empty = no Implementation Version Name item.
    pub implementation_version_name: String,
    /// (max operations we invoke, max operations we perform), 0 = unlimited; None = no item
    /// (synchronous).
    pub async_ops_window: Option<(u16, u16)>,
    pub user_identity: Option<UserIdentity>,
}

impl RequestorConfig {
    /// Defaults: no contexts yet, no role selection, [`DEFAULT_MAX_PDU_LENGTH`], our
    /// implementation UID and version name, synchronous, no user identity.
    pub fn new(calling_ae: impl Into<String>, called_ae: impl Into<String>) -> Self {
        RequestorConfig {
            calling_ae: calling_ae.into(),
            called_ae: called_ae.into(),
            contexts: Vec::new(),
            role_selections: Vec::new(),
            max_pdu_length: DEFAULT_MAX_PDU_LENGTH,
            implementation_class_uid: DEFAULT_IMPLEMENTATION_CLASS_UID.to_string(),
            implementation_version_name: DEFAULT_IMPLEMENTATION_VERSION_NAME.to_string(),
            async_ops_window: None,
            user_identity: None,
        }
    }
}

/// How the acceptor answers a requestor that proposes the SCP role for a SOP class (so that
/// we, the acceptor, act as SCU for it: C-STORE sub-operations of a C-GET).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ScpRolePolicy {
    /// Refuse (answer 0): the default roles of PS3.7 D.3.3.4.
    #[default]
    Refuse,
    /// Accept for every SOP class.
    AcceptAll,
    /// Accept for these SOP class UIDs only.
    AcceptFor(Vec<String>),
}

impl ScpRolePolicy {
    fn allows(&self, sop_class_uid: &str) -> bool {
        match self {
            ScpRolePolicy::Refuse => false,
            ScpRolePolicy::AcceptAll => true,
            ScpRolePolicy::AcceptFor(list) => list.iter().any(|c| uid_eq(c, sop_class_uid)),
        }
    }
}

/// What the association-acceptor accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptorConfig {
    pub ae_title: String,
    /// Reject (1, 1, 7) an RQ whose called AE title is not `ae_title`.
    pub require_called_ae: bool,
    /// If set, reject (1, 1, 3) an RQ whose calling AE title is not in the list.
    pub allowed_calling_aes: Option<Vec<String>>,
    /// (abstract syntax, transfer syntaxes in our order of preference). An empty list uses
    /// `default_transfer_syntaxes`.
    pub supported: Vec<(String, Vec<String>)>,
    /// Accept any abstract syntax not in `supported`, with `default_transfer_syntaxes`
    /// (a storage SCP that keeps whatever it is sent, for example).
    pub accept_any_abstract: bool,
    /// Preference list for entries with an empty list and for `accept_any_abstract`. Empty =
    /// accept any transfer syntax, taking the requestor's first.
    pub default_transfer_syntaxes: Vec<String>,
    /// Whether we accept the requestor's SCP role (see [`ScpRolePolicy`]).
    pub requestor_scp_role: ScpRolePolicy,
    /// The largest P-DATA-TF PDU we accept, advertised in the AC; 0 = unlimited.
    pub max_pdu_length: u32,
    /// (max operations we invoke, max operations we perform), 0 = unlimited; None = do not
    /// answer the requestor's window (it falls back to synchronous).
    pub async_ops_window: Option<(u16, u16)>,
    /// Abstract syntaxes whose operations we serve strictly one at a time: an association
    /// with any of them accepted gets no window answer (synchronous), whatever
    /// `async_ops_window` says. A Q/R SCP lists its C-FIND/C-MOVE/C-GET classes here,
    /// since it reads nothing but C-CANCEL while an operation runs.
    pub synchronous_abstract_syntaxes: Vec<String>,
    pub implementation_class_uid: String,
    /// Empty = no Implementation Version Name item.
    pub implementation_version_name: String,
}

impl AcceptorConfig {
    /// Defaults: called AE not checked, any calling AE, nothing supported yet, SCP role
    /// refused, [`DEFAULT_MAX_PDU_LENGTH`], synchronous, our implementation UID and name.
    pub fn new(ae_title: impl Into<String>) -> Self {
        AcceptorConfig {
            ae_title: ae_title.into(),
            require_called_ae: false,
            allowed_calling_aes: None,
            supported: Vec::new(),
            accept_any_abstract: false,
            default_transfer_syntaxes: Vec::new(),
            requestor_scp_role: ScpRolePolicy::Refuse,
            max_pdu_length: DEFAULT_MAX_PDU_LENGTH,
            async_ops_window: None,
            synchronous_abstract_syntaxes: Vec::new(),
            implementation_class_uid: DEFAULT_IMPLEMENTATION_CLASS_UID.to_string(),
            implementation_version_name: DEFAULT_IMPLEMENTATION_VERSION_NAME.to_string(),
        }
    }
}

/// One accepted presentation context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
    /// The association-requestor may act as SCU (invoke operations) on this context.
    pub scu_role: bool,
    /// The association-requestor may act as SCP (perform operations) on this context.
    pub scp_role: bool,
}

impl AcceptedContext {
    /// Whether the local side may invoke operations (act as SCU) on this context.
    pub fn local_is_scu(&self, we_are_requestor: bool) -> bool {
        if we_are_requestor {
            self.scu_role
        } else {
            self.scp_role
        }
    }

    /// Whether the local side may perform operations (act as SCP) on this context.
    pub fn local_is_scp(&self, we_are_requestor: bool) -> bool {
        if we_are_requestor {
            self.scp_role
        } else {
            self.scu_role
        }
    }
}

/// The outcome of a successful negotiation, the same shape on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The accepted presentation contexts, in proposal order.
    pub contexts: Vec<AcceptedContext>,
    /// (context ID, abstract syntax, result 1..=4) of the contexts not accepted.
    pub rejected: Vec<(u8, String, u8)>,
    /// The largest PDU the peer accepts (what we may send); 0 = unlimited.
    pub peer_max_pdu: u32,
    /// The largest PDU we accept (what we advertised); 0 = unlimited.
    pub our_max_pdu: u32,
    pub peer_implementation_class_uid: Option<String>,
    pub peer_implementation_version_name: Option<String>,
    pub peer_ae_title: String,
    pub our_ae_title: String,
    /// Whether we are the association-requestor.
    pub requestor: bool,
    /// (operations the requestor may invoke, operations the requestor may perform)
    /// outstanding at once, as answered in the AC; 0 = unlimited; (1, 1) when not answered.
    pub async_ops_window: (u16, u16),
    /// Acceptor side: the user identity the requestor presented, if any.
    pub peer_user_identity: Option<UserIdentity>,
    /// Requestor side: the acceptor's User Identity server response, if any.
    pub user_identity_response: Option<Vec<u8>>,
}

impl Negotiated {
    /// The first accepted context for `abstract_syntax` (and `transfer_syntax`, if given).
    pub fn find_context(
        &self,
        abstract_syntax: &str,
        transfer_syntax: Option<&str>,
    ) -> Option<&AcceptedContext> {
        self.contexts.iter().find(|c| {
            uid_eq(&c.abstract_syntax, abstract_syntax)
                && transfer_syntax.is_none_or(|ts| uid_eq(&c.transfer_syntax, ts))
        })
    }

    /// As [`Negotiated::find_context`], among contexts where we may act as SCU.
    pub fn find_context_as_scu(
        &self,
        abstract_syntax: &str,
        transfer_syntax: Option<&str>,
    ) -> Option<&AcceptedContext> {
        self.contexts.iter().find(|c| {
            c.local_is_scu(self.requestor)
                && uid_eq(&c.abstract_syntax, abstract_syntax)
                && transfer_syntax.is_none_or(|ts| uid_eq(&c.transfer_syntax, ts))
        })
    }

    /// The accepted context with this ID.
    pub fn context(&self, id: u8) -> Option<&AcceptedContext> {
        self.contexts.iter().find(|c| c.id == id)
    }
}

/// The acceptor's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // made once per association; boxing buys nothing
pub enum AcceptorDecision {
    Accept(AssociateAc, Negotiated),
    Reject(AssociateRj),
}

fn ae_trim(s: &str) -> &str {
    s.trim_matches(' ')
}

fn uid_trim(s: &str) -> &str {
    s.trim_end_matches(['\0', ' ']).trim_start_matches(' ')
}

fn uid_eq(a: &str, b: &str) -> bool {
    uid_trim(a) == uid_trim(b)
}

fn ae_eq(a: &str, b: &str) -> bool {
    ae_trim(a) == ae_trim(b)
}

/// Check an AE title against PS3.5 6.2 (VR AE): 1 to 16 characters of the default
/// repertoire, no backslash, no control characters; leading and trailing spaces are not
/// significant, so a title of only spaces is empty. Returns the significant part. The one
/// home of this rule: Python's `fastdimse.entity.validate_ae_title` calls it.
pub fn validate_ae_title(title: &str) -> Result<&str, NegotiationError> {
    let err = |reason| {
        Err(NegotiationError::InvalidAeTitle {
            title: title.to_string(),
            reason,
        })
    };
    let trimmed = ae_trim(title);
    if trimmed.is_empty() {
        return err("it is empty (or only spaces)");
    }
    if trimmed.chars().count() > 16 {
        return err("it is longer than 16 characters");
    }
    if trimmed.contains('\\') {
        return err("it contains a backslash");
    }
    for c in trimmed.chars() {
        if c < ' ' || c == '\x7f' {
            return err("it contains a control character");
        }
        if c > '~' {
            return err("it contains a character outside the DICOM default character repertoire");
        }
    }
    Ok(trimmed)
}

/// "min" where 0 means unlimited.
fn min_window(a: u16, b: u16) -> u16 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (x, y) => x.min(y),
    }
}

/// The first role selection item per SOP class: class -> (scu, scp) as booleans.
fn role_items(info: &UserInformation) -> HashMap<&str, (bool, bool)> {
    let mut map = HashMap::new();
    for (class, scu, scp) in info.role_selections() {
        map.entry(uid_trim(class)).or_insert((scu != 0, scp != 0));
    }
    map
}

fn async_window(info: &UserInformation) -> Option<(u16, u16)> {
    info.items.iter().find_map(|i| match i {
        UserItem::AsyncOperationsWindow { invoked, performed } => Some((*invoked, *performed)),
        _ => None,
    })
}

/// Roles of a context from what the requestor proposed and the acceptor answered.
fn context_roles(
    abstract_syntax: &str,
    proposed: &HashMap<&str, (bool, bool)>,
    answered: &HashMap<&str, (bool, bool)>,
) -> (bool, bool) {
    let key = uid_trim(abstract_syntax);
    match (proposed.get(key), answered.get(key)) {
        (Some(&(rq_scu, rq_scp)), Some(&(ac_scu, ac_scp))) => (rq_scu && ac_scu, rq_scp && ac_scp),
        _ => (true, false),
    }
}

/// Build the A-ASSOCIATE-RQ for `cfg`: context IDs 1, 3, 5, ...; user information items in
/// type order (maximum length, implementation class UID, asynchronous operations window,
/// role selections, implementation version name, user identity).
pub fn build_associate_rq(cfg: &RequestorConfig) -> Result<AssociateRq, NegotiationError> {
    validate_ae_title(&cfg.calling_ae)?;
    validate_ae_title(&cfg.called_ae)?;
    if cfg.contexts.is_empty() {
        return Err(NegotiationError::NoContexts);
    }
    if cfg.contexts.len() > MAX_PRESENTATION_CONTEXTS {
        return Err(NegotiationError::TooManyContexts(cfg.contexts.len()));
    }
    if uid_trim(&cfg.implementation_class_uid).is_empty() {
        return Err(NegotiationError::InvalidConfig(
            "empty implementation class UID".into(),
        ));
    }
    if cfg.implementation_version_name.len() > 16 {
        return Err(NegotiationError::InvalidConfig(format!(
            "implementation version name {:?} is longer than 16 characters",
            cfg.implementation_version_name
        )));
    }
    let mut presentation_contexts = Vec::with_capacity(cfg.contexts.len());
    for (i, (abstract_syntax, transfer_syntaxes)) in cfg.contexts.iter().enumerate() {
        if uid_trim(abstract_syntax).is_empty() {
            return Err(NegotiationError::InvalidConfig(format!(
                "presentation context {} has an empty abstract syntax",
                2 * i + 1
            )));
        }
        if transfer_syntaxes.is_empty() {
            return Err(NegotiationError::NoTransferSyntax {
                abstract_syntax: abstract_syntax.clone(),
            });
        }
        presentation_contexts.push(PresentationContextRq {
            id: (2 * i + 1) as u8, // i < 128, so at most 255
            abstract_syntax: abstract_syntax.clone(),
            transfer_syntaxes: transfer_syntaxes.clone(),
        });
    }
    let mut items = vec![
        UserItem::MaximumLength(cfg.max_pdu_length),
        UserItem::ImplementationClassUid(cfg.implementation_class_uid.clone()),
    ];
    if let Some((invoked, performed)) = cfg.async_ops_window {
        items.push(UserItem::AsyncOperationsWindow { invoked, performed });
    }
    for (sop_class_uid, scu, scp) in &cfg.role_selections {
        items.push(UserItem::RoleSelection {
            sop_class_uid: sop_class_uid.clone(),
            scu_role: u8::from(*scu),
            scp_role: u8::from(*scp),
        });
    }
    if !cfg.implementation_version_name.is_empty() {
        items.push(UserItem::ImplementationVersionName(
            cfg.implementation_version_name.clone(),
        ));
    }
    if let Some(identity) = &cfg.user_identity {
        items.push(identity.to_item());
    }
    Ok(AssociateRq {
        protocol_version: 1,
        called_ae_title: ae_trim(&cfg.called_ae).to_string(),
        calling_ae_title: ae_trim(&cfg.calling_ae).to_string(),
        application_context: DICOM_APPLICATION_CONTEXT.to_string(),
        presentation_contexts,
        user_information: UserInformation { items },
    })
}

/// Read the acceptor's A-ASSOCIATE-AC against the A-ASSOCIATE-RQ we sent.
pub fn interpret_associate_ac(
    rq: &AssociateRq,
    ac: &AssociateAc,
) -> Result<Negotiated, NegotiationError> {
    if !uid_eq(&ac.application_context, DICOM_APPLICATION_CONTEXT) {
        log::warn!(
            "A-ASSOCIATE-AC names application context {:?}; proceeding as DICOM",
            ac.application_context
        );
    }
    let proposed_roles = role_items(&rq.user_information);
    let answered_roles = role_items(&ac.user_information);
    let proposed: HashMap<u8, &PresentationContextRq> = rq
        .presentation_contexts
        .iter()
        .rev()
        .map(|pc| (pc.id, pc))
        .collect();
    let mut answers: HashMap<u8, &PresentationContextAc> = HashMap::new();
    for answer in &ac.presentation_contexts {
        if !proposed.contains_key(&answer.id) {
            return Err(NegotiationError::UnknownContextId(answer.id));
        }
        answers.entry(answer.id).or_insert(answer);
    }
    let mut contexts = Vec::new();
    let mut rejected = Vec::new();
    let mut seen = HashSet::new();
    for pc in &rq.presentation_contexts {
        if !seen.insert(pc.id) {
            continue;
        }
        match answers.get(&pc.id) {
            Some(answer) if answer.result == 0 => {
                let Some(ts) = pc
                    .transfer_syntaxes
                    .iter()
                    .find(|ts| uid_eq(ts, &answer.transfer_syntax))
                else {
                    return Err(NegotiationError::TransferSyntaxNotProposed {
                        id: pc.id,
                        transfer_syntax: answer.transfer_syntax.clone(),
                    });
                };
                let (scu_role, scp_role) =
                    context_roles(&pc.abstract_syntax, &proposed_roles, &answered_roles);
                contexts.push(AcceptedContext {
                    id: pc.id,
                    abstract_syntax: uid_trim(&pc.abstract_syntax).to_string(),
                    transfer_syntax: uid_trim(ts).to_string(),
                    scu_role,
                    scp_role,
                });
            }
            Some(answer) => rejected.push((
                pc.id,
                uid_trim(&pc.abstract_syntax).to_string(),
                answer.result,
            )),
            None => {
                log::warn!(
                    "A-ASSOCIATE-AC does not answer presentation context {}",
                    pc.id
                );
                rejected.push((pc.id, uid_trim(&pc.abstract_syntax).to_string(), 2));
            }
        }
    }
    let info = &ac.user_information;
    Ok(Negotiated {
        contexts,
        rejected,
        peer_max_pdu: info.max_length().unwrap_or(PEER_MAX_PDU_IF_ABSENT),
        our_max_pdu: rq.user_information.max_length().unwrap_or(0),
        peer_implementation_class_uid: info.implementation_class_uid().map(str::to_string),
        peer_implementation_version_name: info.implementation_version_name().map(str::to_string),
        peer_ae_title: ae_trim(&rq.called_ae_title).to_string(),
        our_ae_title: ae_trim(&rq.calling_ae_title).to_string(),
        requestor: true,
        async_ops_window: async_window(info).unwrap_or((1, 1)),
        peer_user_identity: None,
        user_identity_response: info.items.iter().find_map(|i| match i {
            UserItem::UserIdentityAc { server_response } => Some(server_response.clone()),
            _ => None,
        }),
    })
}

/// The acceptor's choice for one proposed context: (result, transfer syntax to answer).
fn choose_transfer_syntax(pc: &PresentationContextRq, cfg: &AcceptorConfig) -> (u8, String) {
    // Answer for non-accepted contexts: not significant (PS3.8 9.3.3.2); echo the first.
    let echo = || pc.transfer_syntaxes.first().cloned().unwrap_or_default();
    if pc.id % 2 == 0 {
        return (2, echo());
    }
    let entry = cfg
        .supported
        .iter()
        .find(|(a, _)| uid_eq(a, &pc.abstract_syntax));
    let ours: &[String] = match entry {
        Some((_, list)) if !list.is_empty() => list,
        Some(_) => &cfg.default_transfer_syntaxes,
        None if cfg.accept_any_abstract && !uid_trim(&pc.abstract_syntax).is_empty() => {
            &cfg.default_transfer_syntaxes
        }
        None => return (3, echo()),
    };
    let offered = || {
        pc.transfer_syntaxes
            .iter()
            .filter(|ts| !uid_trim(ts).is_empty())
    };
    let chosen = if ours.is_empty() {
        offered().next()
    } else {
        ours.iter()
            .find(|mine| offered().any(|ts| uid_eq(ts, mine)))
    };
    match chosen {
        Some(ts) => (0, uid_trim(ts).to_string()),
        None => (4, echo()),
    }
}

/// Decide on an A-ASSOCIATE-RQ as the association-acceptor (see the module documentation
/// for the rules).
pub fn negotiate_acceptor(rq: &AssociateRq, cfg: &AcceptorConfig) -> AcceptorDecision {
    if rq.protocol_version & 0x0001 == 0 {
        return AcceptorDecision::Reject(reject::PROTOCOL_VERSION_NOT_SUPPORTED);
    }
    if !uid_eq(&rq.application_context, DICOM_APPLICATION_CONTEXT) {
        return AcceptorDecision::Reject(reject::APPLICATION_CONTEXT_NOT_SUPPORTED);
    }
    if cfg.require_called_ae && !ae_eq(&rq.called_ae_title, &cfg.ae_title) {
        return AcceptorDecision::Reject(reject::CALLED_AE_NOT_RECOGNIZED);
    }
    if let Some(allowed) = &cfg.allowed_calling_aes {
        if !allowed.iter().any(|a| ae_eq(a, &rq.calling_ae_title)) {
            return AcceptorDecision::Reject(reject::CALLING_AE_NOT_RECOGNIZED);
        }
    }

    // Role selection: one answer per SOP class the requestor sent an item for.
    let mut role_answers: Vec<UserItem> = Vec::new();
    let mut seen_classes = HashSet::new();
    for (class, scu, scp) in rq.user_information.role_selections() {
        let class = uid_trim(class);
        if !seen_classes.insert(class) {
            continue;
        }
        let accept_scu = scu != 0;
        let accept_scp = scp != 0 && cfg.requestor_scp_role.allows(class);
        role_answers.push(UserItem::RoleSelection {
            sop_class_uid: class.to_string(),
            scu_role: u8::from(accept_scu),
            scp_role: u8::from(accept_scp),
        });
    }
    let proposed_roles = role_items(&rq.user_information);
    let answered_info = UserInformation {
        items: role_answers,
    };
    let answered_roles = role_items(&answered_info);

    let mut answers = Vec::with_capacity(rq.presentation_contexts.len());
    let mut contexts = Vec::new();
    let mut rejected = Vec::new();
    let mut seen_ids = HashSet::new();
    for pc in &rq.presentation_contexts {
        if !seen_ids.insert(pc.id) {
            log::warn!(
                "A-ASSOCIATE-RQ repeats presentation context ID {}; ignored",
                pc.id
            );
            continue;
        }
        let (result, transfer_syntax) = choose_transfer_syntax(pc, cfg);
        if result == 0 {
            let (scu_role, scp_role) =
                context_roles(&pc.abstract_syntax, &proposed_roles, &answered_roles);
            contexts.push(AcceptedContext {
                id: pc.id,
                abstract_syntax: uid_trim(&pc.abstract_syntax).to_string(),
                transfer_syntax: transfer_syntax.clone(),
                scu_role,
                scp_role,
            });
        } else {
            rejected.push((pc.id, uid_trim(&pc.abstract_syntax).to_string(), result));
        }
        answers.push(PresentationContextAc {
            id: pc.id,
            result,
            transfer_syntax,
        });
    }

    // Asynchronous operations window: answer only a proposal, and only if configured.
    let mut async_ops_window = (1, 1);
    let mut async_item = None;
    let synchronous = contexts.iter().any(|c| {
        cfg.synchronous_abstract_syntaxes.iter().any(|s| uid_eq(s, &c.abstract_syntax))
    });
    if let (Some((rq_invoked, rq_performed)), Some((our_invoked, our_performed)), false) =
        (async_window(&rq.user_information), cfg.async_ops_window, synchronous)
    {
        // The requestor invokes what we perform, and performs what we invoke.
        let invoked = min_window(rq_invoked, our_performed);
        let performed = min_window(rq_performed, our_invoked);
        async_ops_window = (invoked, performed);
        async_item = Some(UserItem::AsyncOperationsWindow { invoked, performed });
    }

    let mut items = vec![
        UserItem::MaximumLength(cfg.max_pdu_length),
        UserItem::ImplementationClassUid(cfg.implementation_class_uid.clone()),
    ];
    items.extend(async_item);
    items.extend(answered_info.items.iter().cloned());
    if !cfg.implementation_version_name.is_empty() {
        items.push(UserItem::ImplementationVersionName(
            cfg.implementation_version_name.clone(),
        ));
    }

    let info = &rq.user_information;
    let peer_user_identity = info.items.iter().find_map(|i| match i {
        UserItem::UserIdentityRq {
            identity_type,
            positive_response_requested,
            primary_field,
            secondary_field,
        } => Some(UserIdentity {
            identity_type: *identity_type,
            positive_response_requested: *positive_response_requested,
            primary_field: primary_field.clone(),
            secondary_field: secondary_field.clone(),
        }),
        _ => None,
    });
    let negotiated = Negotiated {
        contexts,
        rejected,
        peer_max_pdu: info.max_length().unwrap_or(PEER_MAX_PDU_IF_ABSENT),
        our_max_pdu: cfg.max_pdu_length,
        peer_implementation_class_uid: info.implementation_class_uid().map(str::to_string),
        peer_implementation_version_name: info.implementation_version_name().map(str::to_string),
        peer_ae_title: ae_trim(&rq.calling_ae_title).to_string(),
        our_ae_title: ae_trim(&cfg.ae_title).to_string(),
        requestor: false,
        async_ops_window,
        peer_user_identity,
        user_identity_response: None,
    };
    let ac = AssociateAc {
        protocol_version: 1,
        // Reserved fields, sent back as received (PS3.8 9.3.3).
        called_ae_title: rq.called_ae_title.clone(),
        calling_ae_title: rq.calling_ae_title.clone(),
        application_context: DICOM_APPLICATION_CONTEXT.to_string(),
        presentation_contexts: answers,
        user_information: UserInformation { items },
    };
    AcceptorDecision::Accept(ac, negotiated)
}

#[cfg(test)]
#[path = "negotiation_tests.rs"]
mod tests;
