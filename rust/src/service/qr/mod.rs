//! The Query/Retrieve service class (PS3.4 Annex C), both roles.
//!
//! `scp`: C-FIND answered from a [`QrProvider`] (the Python SQLite index by default, or
//! any user back end), C-MOVE sending the matches over a new association to a known
//! destination, C-GET sending them back over the requestor's own association; C-CANCEL
//! honoured between responses. `scu`: C-FIND, C-MOVE and C-GET as the service user.
//! The data paths (C-STORE sub-operations) stream from file to socket in Rust.

use std::path::PathBuf;

pub mod scp;
pub mod scu;

pub use scp::{failed_uid_list, QrHandler};
pub use scu::get_scu;

/// Q/R SOP classes (PS3.4 C.6).
pub mod sop {
    pub use crate::uid::{PATIENT_ROOT_FIND, PATIENT_ROOT_GET, PATIENT_ROOT_MOVE, QR_SOP_CLASSES as ALL, STUDY_ROOT_FIND, STUDY_ROOT_GET, STUDY_ROOT_MOVE};
}

/// Q/R statuses (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).
pub mod status {
    pub use crate::dimse::status::{CANCEL, PENDING, PENDING_WARNING, SUCCESS};
    /// Warning: sub-operations complete, one or more failures or warnings.
    pub const SUBOPS_WARNING: u16 = 0xB000;
    /// Refused: out of resources, unable to perform sub-operations.
    pub const SUBOPS_REFUSED: u16 = 0xA702;
    /// Refused: move destination unknown.
    pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
    /// Error: identifier does not match SOP class.
    pub const IDENTIFIER_MISMATCH: u16 = 0xA900;
    /// Failed: unable to process.
    pub const UNABLE_TO_PROCESS: u16 = 0xC000;
}

/// A refusal from the provider: the status to answer and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub comment: String,
}

/// One Q/R request as the provider sees it.
pub struct QrRequest<'a> {
    pub sop_class_uid: &'a str,
    pub calling_ae_title: &'a str,
    /// The transfer syntax of the identifier (and of the answers to encode).
    pub transfer_syntax: &'a str,
    pub identifier: &'a [u8],
}

/// Matches of a C-FIND, each an identifier encoded in the request's transfer syntax.
pub type FindResults = Box<dyn Iterator<Item = Result<Vec<u8>, Failure>> + Send>;

/// The files of a C-MOVE / C-GET as the provider lists them, each with its SOP Instance
/// UID when known. The sub-operations take them as they come (bounded look-ahead).
pub type Located = Box<dyn Iterator<Item = Result<(PathBuf, Option<String>), Failure>> + Send>;

/// What `locate` returns: the listing, and how many instances it holds when the back
/// end can count them cheaply (then the pending responses carry Number of Remaining
/// Sub-operations; without a count they leave it out). Rows listed beyond `total` are
/// not sent (stored after the count); fewer rows than `total` count as failed.
pub struct Retrieval {
    pub total: Option<u64>,
    pub items: Located,
}

/// What the Q/R SCP asks of its back end.
pub trait QrProvider: Send + Sync {
    fn find(&self, rq: &QrRequest) -> Result<FindResults, Failure>;
    /// The files of the matching instances (C-MOVE, C-GET), streamed, each with its SOP
    /// Instance UID when known (so that a missing file can be listed as failed), and
    /// their number when the back end can count them.
    fn locate(&self, rq: &QrRequest) -> Result<Retrieval, Failure>;
    /// "host:port" of a known move destination, None if unknown.
    fn destination(&self, ae_title: &str) -> Option<String>;
}
