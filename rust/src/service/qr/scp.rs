//! The Q/R SCP: C-FIND, C-MOVE and C-GET answered from a [`QrProvider`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use log::{info, warn};

use crate::dataset::{write_element_header, Encoding, TransferSyntax};
use crate::dimse::{field, Command};
use crate::service::echo::answer_echo_or_unrecognized;
use crate::net::{Association, DataSink, MessageData, NetError, Received, Timeouts};
use crate::service::serve::ServiceHandler;
use crate::service::store::scu::{plan_file, send_on, StreamOptions};
use crate::service::store::{self, status as store_status, StorageHandler, StoreItem, StoreOptions, StoreResult};
use crate::ul::{Negotiated, RequestorConfig};

use super::{status, Failure, Located, QrProvider, QrRequest};

/// Serves storage, Q/R and verification.
pub struct QrHandler {
    pub storage: Option<StorageHandler>,
    pub provider: Option<Arc<dyn QrProvider>>,
    /// Our AE title: the calling AE of C-MOVE sub-associations.
    pub ae_title: String,
    pub timeouts: Timeouts,
    /// Largest PDU we accept on C-MOVE sub-associations.
    pub max_pdu_length: u32,
}

impl ServiceHandler for QrHandler {
    fn data_sink(&self, negotiated: &Negotiated, context_id: u8, command: &Command) -> DataSink {
        match (&self.storage, command.command_field) {
            (Some(s), field::C_STORE_RQ) => s.data_sink(negotiated, context_id, command),
            _ => DataSink::Memory,
        }
    }

    fn on_message(&self, assoc: &mut Association, ctx: u8, command: Command, data: MessageData) -> Result<(), NetError> {
        let provider = self.provider.as_ref();
        if matches!(command.command_field, field::C_FIND_RQ | field::C_MOVE_RQ | field::C_GET_RQ) {
            // A query sees every instance stored before it.
            if let Some(ix) = self.storage.as_ref().and_then(|s| s.indexer.as_ref()) {
                ix.flush();
            }
        }
        match (command.command_field, provider) {
            (field::C_STORE_RQ, _) if self.storage.is_some() => {
                self.storage.as_ref().expect("checked").on_message(assoc, ctx, command, data)
            }
            (field::C_STORE_RQ, _) => {
                let mut rsp = Command::response_to(&command, store_status::SOP_CLASS_NOT_SUPPORTED);
                rsp.error_comment = Some("this SCP does not store instances".into());
                assoc.send_message(ctx, &rsp, None)
            }
            (field::C_FIND_RQ, Some(p)) => self.find(p.as_ref(), assoc, ctx, &command, data),
            (field::C_MOVE_RQ, Some(p)) => self.retrieve(p.as_ref(), assoc, ctx, &command, data, false),
            (field::C_GET_RQ, Some(p)) => self.retrieve(p.as_ref(), assoc, ctx, &command, data, true),
            _ => answer_echo_or_unrecognized(assoc, ctx, &command),
        }
    }
}

/// Counts of sub-operations. The DIMSE fields are 16-bit (US): a count above 65535 is
/// sent as 65535 (completed, failed, warning), and Remaining, which a pending response
/// may leave out (PS3.7 C.4.2/C.4.3: conditional), is left out while it is unknown (the
/// back end cannot count) or above 65535, so that no count sent is ever wrong.
#[derive(Default, Clone, Copy)]
struct Counts {
    /// Sub-operations of this retrieve, when the back end counted them.
    total: Option<u64>,
    /// Sub-operations settled (completed, failed or warning).
    settled: u64,
    completed: u64,
    failed: u64,
    warning: u64,
}

impl Counts {
    fn remaining(&self) -> Option<u64> {
        self.total.map(|t| t.saturating_sub(self.settled))
    }

    /// Remaining as sent: None while unknown or too large for US.
    fn wire_remaining(&self) -> Option<u16> {
        self.remaining().and_then(|r| u16::try_from(r).ok())
    }

    /// Another sub-operation may follow (always, when not counted).
    fn more_to_come(&self) -> bool {
        self.remaining().is_none_or(|r| r > 0)
    }

    /// Count one result; a failure is listed by its UID (or `uid`, the one the back
    /// end gave for its file). An instance not sent because of a C-CANCEL stays
    /// remaining: its sub-operation was never started.
    fn tally(&mut self, failed_uids: &mut Vec<String>, r: &StoreResult, uid: Option<String>) {
        if r.status.is_none() && r.reason.as_deref() == Some("cancelled") {
            return;
        }
        self.settled += 1;
        match r.status {
            Some(s) if s == store_status::SUCCESS => self.completed += 1,
            Some(s) if !store_status::is_failure(s) => self.warning += 1,
            _ => {
                self.failed += 1;
                let u = if r.sop_instance_uid.is_empty() { uid.unwrap_or_default() } else { r.sop_instance_uid.clone() };
                if !u.is_empty() {
                    failed_uids.push(u);
                }
            }
        }
    }
}

/// Most bytes of pending C-FIND responses gathered before they are written.
const FIND_WRITE_BYTES: usize = 64 * 1024;

fn clamp16(n: u64) -> u16 {
    n.min(u16::MAX as u64) as u16
}

impl QrHandler {
    fn request_parts<'a>(
        assoc: &'a Association,
        ctx: u8,
        command: &Command,
        data: &'a MessageData,
    ) -> Result<(String, String, String, &'a [u8]), Failure> {
        let n = assoc.negotiated();
        let c = n.context(ctx).ok_or(Failure { status: status::UNABLE_TO_PROCESS, comment: "unknown context".into() })?;
        let class = command.affected_sop_class_uid.clone().unwrap_or_else(|| c.abstract_syntax.clone());
        if class != c.abstract_syntax {
            return Err(Failure {
                status: status::IDENTIFIER_MISMATCH,
                comment: format!("SOP class {class} is not the context's {}", c.abstract_syntax),
            });
        }
        let ident = match data {
            MessageData::Memory(v) => v.as_slice(),
            _ => return Err(Failure { status: status::IDENTIFIER_MISMATCH, comment: "request without an identifier".into() }),
        };
        Ok((class, n.peer_ae_title.clone(), c.transfer_syntax.clone(), ident))
    }

    fn find(&self, p: &dyn QrProvider, assoc: &mut Association, ctx: u8, command: &Command, data: MessageData) -> Result<(), NetError> {
        let parts = Self::request_parts(assoc, ctx, command, &data);
        let results = parts.and_then(|(class, calling, ts, ident)| {
            p.find(&QrRequest { sop_class_uid: &class, calling_ae_title: &calling, transfer_syntax: &ts, identifier: ident })
        });
        let mut results = match results {
            Ok(r) => r,
            Err(f) => return send_final(assoc, ctx, command, f.status, Some(&f.comment), None, None),
        };
        // Pending responses are gathered into one write while the provider has more
        // matches at hand (its size_hint lower bound: a batch already pulled), up to
        // FIND_WRITE_BYTES; C-CANCEL is polled before each batch, that is between writes.
        let mut out: Vec<u8> = Vec::new();
        let mut sent = 0usize;
        loop {
            if out.is_empty() && cancel_requested(assoc, command)? {
                info!("C-FIND cancelled by the peer after {sent} match(es)");
                drop(results);
                return send_final(assoc, ctx, command, status::CANCEL, None, None, None);
            }
            match results.next() {
                None => break,
                Some(Ok(identifier)) => {
                    let rsp = Command::response_to(command, status::PENDING);
                    assoc.append_message(ctx, &rsp, Some(&identifier), &mut out);
                    sent += 1;
                    if out.len() >= FIND_WRITE_BYTES || results.size_hint().0 == 0 {
                        assoc.send_encoded(&out)?;
                        out.clear();
                    }
                }
                Some(Err(f)) => {
                    drop(results);
                    assoc.send_encoded(&out)?;
                    return send_final(assoc, ctx, command, f.status, Some(&f.comment), None, None);
                }
            }
        }
        drop(results);
        info!("C-FIND: {sent} match(es)");
        // The final response goes in the same write as the last pending ones.
        let mut rsp = Command::response_to(command, status::SUCCESS);
        rsp.affected_sop_instance_uid = None;
        assoc.append_message(ctx, &rsp, None, &mut out);
        assoc.send_encoded(&out)
    }

    fn retrieve(
        &self,
        p: &dyn QrProvider,
        assoc: &mut Association,
        ctx: u8,
        command: &Command,
        data: MessageData,
        get: bool,
    ) -> Result<(), NetError> {
        let what = if get { "C-GET" } else { "C-MOVE" };
        let parts = match Self::request_parts(assoc, ctx, command, &data) {
            Ok(x) => x,
            Err(f) => return send_final(assoc, ctx, command, f.status, Some(&f.comment), None, None),
        };
        let (class, calling, ts, ident) = parts;
        let dest_addr = if get {
            None
        } else {
            let dest = command.move_destination.clone().unwrap_or_default();
            match p.destination(&dest) {
                Some(a) => Some((dest, a)),
                None => {
                    warn!("C-MOVE to unknown destination {dest:?} refused");
                    return send_final(
                        assoc,
                        ctx,
                        command,
                        status::MOVE_DESTINATION_UNKNOWN,
                        Some(&format!("move destination {dest} unknown")),
                        None,
                        None,
                    );
                }
            }
        };
        let located = match p.locate(&QrRequest { sop_class_uid: &class, calling_ae_title: &calling, transfer_syntax: &ts, identifier: ident }) {
            Ok(l) => l,
            Err(f) => return send_final(assoc, ctx, command, f.status, Some(&f.comment), None, None),
        };
        let total = located.total;
        let mut items = located.items.peekable();
        // A back end that fails at its first row (a query error) refuses the retrieve
        // before anything is sent, as one that fails in `locate` does.
        if matches!(items.peek(), Some(Err(_))) {
            if let Some(Err(f)) = items.next() {
                return send_final(assoc, ctx, command, f.status, Some(&f.comment), None, None);
            }
        }
        let error: Arc<Mutex<Option<Failure>>> = Arc::new(Mutex::new(None));
        let mut feed = Feed { items, cap: total, seen: 0, error: error.clone() };
        let mut counts = Counts { total, ..Default::default() };
        let mut failed_uids: Vec<String> = Vec::new();
        let cancel = Arc::new(AtomicBool::new(false));
        let mut refused: Option<String> = None;
        if get {
            let mut opts = StoreOptions::new(String::new(), RequestorConfig::new("", ""));
            opts.timeouts = self.timeouts;
            opts.cancel = Some(cancel.clone());
            let mut index = 0usize;
            loop {
                if cancel.load(Ordering::SeqCst) || !assoc.is_established() {
                    break;
                }
                let Some((path, uid)) = feed.next() else { break };
                let r = match plan_file(index, path) {
                    Ok(planned) => {
                        let mut out = None;
                        send_on(assoc, &opts, std::slice::from_ref(&planned), &mut |_, r: &StoreResult| out = Some(r.clone()));
                        out
                    }
                    Err(mut r) => {
                        warn!("C-GET: cannot send {:?}: {}", r.path, r.reason.as_deref().unwrap_or(""));
                        if r.sop_instance_uid.is_empty() {
                            r.sop_instance_uid = uid.unwrap_or_default();
                        }
                        Some(r)
                    }
                };
                index += 1;
                if let Some(r) = r {
                    counts.tally(&mut failed_uids, &r, None);
                }
                if !cancel.load(Ordering::SeqCst) && matches!(cancel_requested(assoc, command), Ok(true)) {
                    cancel.store(true, Ordering::SeqCst);
                }
                if counts.more_to_come() && !cancel.load(Ordering::SeqCst) && assoc.is_established() {
                    let _ = send_pending(assoc, ctx, command, &counts);
                }
            }
        } else if feed.items.peek().is_some() {
            let (dest_ae, addr) = dest_addr.expect("C-MOVE has a destination");
            let mut cfg = RequestorConfig::new(self.ae_title.clone(), dest_ae.clone());
            cfg.max_pdu_length = self.max_pdu_length;
            let mut opts = StoreOptions::new(addr, cfg);
            opts.timeouts = self.timeouts;
            opts.cancel = Some(cancel.clone());
            opts.move_originator = Some((calling.clone(), command.message_id.unwrap_or(0)));
            // The SOP Instance UIDs of the listed files that are not settled yet (a file
            // that cannot be read is reported by path): bounded by the look-ahead.
            let uid_of: Arc<Mutex<HashMap<PathBuf, String>>> = Arc::new(Mutex::new(HashMap::new()));
            let uids_in = uid_of.clone();
            let paths = (&mut feed).map(move |(path, uid)| {
                if let (Some(u), Ok(mut m)) = (uid, uids_in.lock()) {
                    m.insert(path.clone(), u);
                }
                StoreItem::Path(path)
            });
            let so = StreamOptions { keep_results: false, max_failures: 0, lookahead: RETRIEVE_LOOKAHEAD, drain_on_cancel: false };
            let state = Mutex::new((&mut *assoc, &mut counts, &mut failed_uids));
            let result = store::scu::store_stream(&opts, paths, &so, &|r: &StoreResult| {
                let uid = r.path.as_ref().and_then(|p| uid_of.lock().ok().and_then(|mut m| m.remove(p)));
                if let Ok(mut g) = state.lock() {
                    let (a, c, f) = &mut *g;
                    if r.status.is_none() && r.sop_instance_uid.is_empty() {
                        warn!("C-MOVE: cannot send {:?}: {}", r.path, r.reason.as_deref().unwrap_or(""));
                    }
                    c.tally(f, r, uid);
                    if matches!(cancel_requested(a, command), Ok(true)) {
                        cancel.store(true, Ordering::SeqCst);
                    }
                    if c.more_to_come() && !cancel.load(Ordering::SeqCst) {
                        let _ = send_pending(a, ctx, command, c);
                    }
                }
            });
            let _ = state.into_inner();
            if let Err(e) = result {
                // Every instance listed was reported failed through the progress callback.
                warn!("C-MOVE: cannot associate with {dest_ae}: {e}");
                refused = Some(format!("cannot associate with move destination {dest_ae}: {e}"));
            }
        }
        drop(feed.items);
        if !assoc.is_established() {
            return Err(NetError::Closed("during the sub-operations"));
        }
        let cancelled = cancel.load(Ordering::SeqCst);
        let failure = error.lock().ok().and_then(|mut e| e.take());
        if !cancelled {
            if let Some(t) = total {
                // Listed fewer than counted: removed meanwhile, or the listing failed.
                // Those sub-operations failed, so that the counts add up to the total.
                if feed.seen < t {
                    warn!("{what}: {} of the {t} instances counted were not listed", t - feed.seen);
                    counts.failed += t - feed.seen;
                    counts.settled += t - feed.seen;
                }
            }
        }
        let st = if let Some(f) = &failure {
            f.status
        } else if cancelled {
            status::CANCEL
        } else if refused.is_some() || (counts.completed == 0 && counts.warning == 0 && counts.failed > 0) {
            status::SUBOPS_REFUSED
        } else if counts.failed > 0 || counts.warning > 0 {
            status::SUBOPS_WARNING
        } else {
            status::SUCCESS
        };
        info!(
            "{what}: {} completed, {} failed, {} warning(s), {} remaining{}",
            counts.completed,
            counts.failed,
            counts.warning,
            counts.remaining().map(|r| r.to_string()).unwrap_or_else(|| "? (not counted)".into()),
            if cancelled { " (cancelled)" } else { "" }
        );
        let list = if failed_uids.is_empty() { None } else { Some(failed_uid_list(&failed_uids, &ts)) };
        let comment = failure.as_ref().map(|f| f.comment.clone()).or(refused);
        send_final(assoc, ctx, command, st, comment.as_deref(), Some((counts, cancelled)), list.as_deref())
    }
}

/// Instances listed (meta group read) ahead of the C-MOVE sub-operations, at most.
const RETRIEVE_LOOKAHEAD: usize = 256;

/// The provider's listing as the sub-operations take it: at most the counted total
/// (rows stored after the count are not part of this retrieve, so the counts sent stay
/// true), ending at the first error (kept for the final response).
struct Feed {
    items: std::iter::Peekable<Located>,
    cap: Option<u64>,
    seen: u64,
    error: Arc<Mutex<Option<Failure>>>,
}

impl Iterator for Feed {
    type Item = (PathBuf, Option<String>);
    fn next(&mut self) -> Option<Self::Item> {
        if self.cap.is_some_and(|c| self.seen >= c) {
            return None;
        }
        match self.items.next()? {
            Ok(x) => {
                self.seen += 1;
                Some(x)
            }
            Err(f) => {
                warn!("the Q/R back end failed while listing the instances: {}", f.comment);
                if let Ok(mut e) = self.error.lock() {
                    e.get_or_insert(f);
                }
                None
            }
        }
    }
}

/// A C-CANCEL-RQ for this request has arrived?
fn cancel_requested(assoc: &mut Association, command: &Command) -> Result<bool, NetError> {
    while let Some(msg) = assoc.poll_message()? {
        match msg {
            Received::Message { command: c, .. } if c.command_field == field::C_CANCEL_RQ => {
                if c.message_id_being_responded_to == command.message_id {
                    return Ok(true);
                }
                warn!("C-CANCEL-RQ for message {:?}, which is not running", c.message_id_being_responded_to);
            }
            Received::Message { command: c, .. } => warn!("ignoring {c} during a running operation"),
            Received::ReleaseRequested => {
                warn!("A-RELEASE-RQ during a running operation");
                return Err(NetError::Protocol("release requested during an operation".into()));
            }
        }
    }
    Ok(false)
}

fn send_pending(assoc: &mut Association, ctx: u8, command: &Command, c: &Counts) -> Result<(), NetError> {
    let mut rsp = Command::response_to(command, status::PENDING);
    rsp.remaining = c.wire_remaining();
    rsp.completed = Some(clamp16(c.completed));
    rsp.failed = Some(clamp16(c.failed));
    rsp.warning = Some(clamp16(c.warning));
    assoc.send_message(ctx, &rsp, None)
}

fn send_final(
    assoc: &mut Association,
    ctx: u8,
    command: &Command,
    st: u16,
    comment: Option<&str>,
    counts: Option<(Counts, bool)>,
    data: Option<&[u8]>,
) -> Result<(), NetError> {
    let mut rsp = Command::response_to(command, st);
    rsp.affected_sop_instance_uid = None;
    if let Some(c) = comment {
        rsp.error_comment = Some(c.chars().filter(|ch| *ch != '\\' && !ch.is_control()).take(64).collect());
    }
    if let Some((c, with_remaining)) = counts {
        if with_remaining {
            // Cancelled: the sub-operations never started, when counted (PS3.4 C.4.2.3).
            rsp.remaining = c.wire_remaining();
        }
        rsp.completed = Some(clamp16(c.completed));
        rsp.failed = Some(clamp16(c.failed));
        rsp.warning = Some(clamp16(c.warning));
    }
    assoc.send_message(ctx, &rsp, data)
}

/// A data set holding only Failed SOP Instance UID List (0008,0058), in `ts`.
pub fn failed_uid_list(uids: &[String], ts: &str) -> Vec<u8> {
    let enc: Encoding = TransferSyntax::from_uid(ts).encoding();
    let mut value = uids.join("\\").into_bytes();
    if value.len() % 2 == 1 {
        value.push(0);
    }
    let mut out = Vec::with_capacity(value.len() + 12);
    let vr = if enc.implicit_vr { None } else { Some(*b"UI") };
    if value.len() > 0xFFFF && !enc.implicit_vr {
        // UI has a 2-byte length in explicit VR: list only what fits.
        let mut cut = value[..0xFFFE].to_vec();
        while cut.last().is_some_and(|b| *b != b'\\') {
            cut.pop();
        }
        cut.pop();
        if cut.len() % 2 == 1 {
            cut.push(0);
        }
        value = cut;
    }
    write_element_header(&mut out, enc, 0x0008_0058, vr, value.len() as u32);
    out.extend_from_slice(&value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_list_is_one_ui_element() {
        let d = failed_uid_list(&["1.2".into(), "1.2.3".into()], "1.2.840.10008.1.2");
        assert_eq!(&d[..4], &[0x08, 0, 0x58, 0]);
        assert_eq!(u32::from_le_bytes(d[4..8].try_into().unwrap()), 10);
        assert_eq!(&d[8..], b"1.2\\1.2.3\0");
        let e = failed_uid_list(&["1.2".into()], "1.2.840.10008.1.2.1");
        assert_eq!(&e[4..6], b"UI");
    }
}
