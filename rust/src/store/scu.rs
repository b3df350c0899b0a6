//! The storage SCU: send files (or in-memory data sets) with C-STORE.
//!
//! Planning reads only each file's meta group. One association carries a whole batch
//! (more SOP classes than 128 presentation contexts spill over into further
//! associations); each instance goes over a context in its own transfer syntax, or is
//! transcoded on the fly to another uncompressed one the peer accepted. A compressed
//! instance the peer will not take as is fails alone, with a reason, and the rest go on.
//! `parallel` > 1 splits the batch over that many associations at once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use log::{debug, info, warn};

use crate::dataset::{read_part10_meta_path, uids, TransferSyntax, Transcoder};
use crate::dimse::{field, priority, Command};
use crate::net::{Association, NetError, Received, Timeouts};
use crate::ul::{RequestorConfig, MAX_PRESENTATION_CONTEXTS};

use super::status;

/// Data sets up to this size are read whole and sent with their command in one write.
const SMALL_FILE: u64 = 256 * 1024;

/// Media Storage Directory (DICOMDIR) is not an instance to send.
const MEDIA_STORAGE_DIRECTORY: &str = "1.2.840.10008.1.3.10";

/// Something to send.
pub enum StoreItem {
    /// A Part-10 file, or a folder walked recursively.
    Path(PathBuf),
    /// A data set already encoded in `transfer_syntax`.
    Memory { label: String, sop_class_uid: String, sop_instance_uid: String, transfer_syntax: String, data: Vec<u8> },
}

/// The outcome for one instance.
#[derive(Debug, Clone)]
pub struct StoreResult {
    /// Position in the expanded list of instances.
    pub index: usize,
    pub path: Option<PathBuf>,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    /// The instance's own transfer syntax.
    pub transfer_syntax: String,
    /// The syntax it was sent in (differs when transcoded); None when not sent.
    pub sent_transfer_syntax: Option<String>,
    /// The DIMSE status of the C-STORE-RSP; None when it was not sent (see `reason`).
    pub status: Option<u16>,
    /// Why it failed (or the warning), in words.
    pub reason: Option<String>,
    /// Data set bytes sent.
    pub bytes: u64,
}

impl StoreResult {
    pub fn is_success(&self) -> bool {
        self.status.map(|s| !status::is_failure(s)).unwrap_or(false)
    }
}

/// How to reach the peer and send.
#[derive(Clone)]
pub struct StoreOptions {
    /// "host:port".
    pub addr: String,
    /// Calling/called AE, max PDU etc.; the contexts are planned here.
    pub requestor: RequestorConfig,
    pub timeouts: Timeouts,
    /// Associations used at once (at least 1).
    pub parallel: usize,
    pub priority: u16,
    /// For C-STORE sub-operations of a C-MOVE: (move originator AE title, message id).
    pub move_originator: Option<(String, u16)>,
    /// Set (by anyone) to stop before the next instance: the rest are reported as
    /// not sent, with reason "cancelled". A C-CANCEL-RQ seen while waiting for a
    /// C-STORE-RSP on a C-GET association sets it too.
    pub cancel: Option<Arc<AtomicBool>>,
    /// C-STOREs kept in flight on one association (PS3.7 D.3.3.3 asynchronous operations
    /// window): proposed to the peer unless `requestor` already carries a window; the
    /// peer's answer decides (no answer = one at a time). 1 = do not propose.
    pub window: u16,
}

/// Default for [`StoreOptions::window`].
pub const DEFAULT_WINDOW: u16 = 16;

impl StoreOptions {
    pub fn new(addr: impl Into<String>, requestor: RequestorConfig) -> StoreOptions {
        StoreOptions {
            addr: addr.into(),
            requestor,
            timeouts: Timeouts::default(),
            parallel: 1,
            priority: priority::MEDIUM,
            move_originator: None,
            cancel: None,
            window: DEFAULT_WINDOW,
        }
    }
}

enum Source {
    File { path: PathBuf, offset: u64, len: u64 },
    Memory(Vec<u8>),
}

/// An instance ready to send: where its data set is, its UIDs and syntax.
pub struct Planned {
    index: usize,
    source: Source,
    class: String,
    instance: String,
    ts: String,
}

impl Planned {
    fn result(&self) -> StoreResult {
        StoreResult {
            index: self.index,
            path: match &self.source {
                Source::File { path, .. } => Some(path.clone()),
                Source::Memory(_) => None,
            },
            sop_class_uid: self.class.clone(),
            sop_instance_uid: self.instance.clone(),
            transfer_syntax: self.ts.clone(),
            sent_transfer_syntax: None,
            status: None,
            reason: None,
            bytes: 0,
        }
    }
}

fn failed(index: usize, path: Option<PathBuf>, reason: String) -> StoreResult {
    StoreResult {
        index,
        path,
        sop_class_uid: String::new(),
        sop_instance_uid: String::new(),
        transfer_syntax: String::new(),
        sent_transfer_syntax: None,
        status: None,
        reason: Some(reason),
        bytes: 0,
    }
}

/// Expand folders (sorted, recursive) into files.
fn expand(items: Vec<StoreItem>) -> Vec<StoreItem> {
    fn walk(dir: &Path, out: &mut Vec<StoreItem>) {
        let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
            Err(e) => {
                warn!("cannot read folder {}: {e}", dir.display());
                return;
            }
        };
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(StoreItem::Path(p));
            }
        }
    }
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        match it {
            StoreItem::Path(p) if p.is_dir() => walk(&p, &mut out),
            other => out.push(other),
        }
    }
    out
}

fn plan(items: Vec<StoreItem>, results: &mut Vec<StoreResult>) -> Vec<Planned> {
    let mut planned = Vec::with_capacity(items.len());
    for (index, it) in expand(items).into_iter().enumerate() {
        match it {
            StoreItem::Path(path) => {
                let meta = read_part10_meta_path(&path);
                let len = std::fs::metadata(&path).map(|m| m.len());
                match (meta, len) {
                    (Ok((m, offset)), Ok(len)) => {
                        if m.sop_class_uid == MEDIA_STORAGE_DIRECTORY {
                            results.push(failed(index, Some(path), "a DICOMDIR (media storage directory) is not sent".into()));
                        } else if m.sop_class_uid.is_empty() || m.sop_instance_uid.is_empty() {
                            results.push(failed(index, Some(path), "the file meta group has no Media Storage SOP Class/Instance UID".into()));
                        } else {
                            planned.push(Planned {
                                index,
                                source: Source::File { path, offset, len: len.saturating_sub(offset) },
                                class: m.sop_class_uid,
                                instance: m.sop_instance_uid,
                                ts: m.transfer_syntax,
                            });
                        }
                    }
                    (Err(e), _) => {
                        let reason = e.message(Some(&path.display().to_string()));
                        results.push(failed(index, Some(path), reason));
                    }
                    (_, Err(e)) => results.push(failed(index, Some(path.clone()), format!("cannot read {}: {e}", path.display()))),
                }
            }
            StoreItem::Memory { label, sop_class_uid, sop_instance_uid, transfer_syntax, data } => {
                if sop_class_uid.is_empty() || sop_instance_uid.is_empty() {
                    results.push(failed(index, None, format!("{label}: no SOP Class/Instance UID")));
                    continue;
                }
                planned.push(Planned { index, source: Source::Memory(data), class: sop_class_uid, instance: sop_instance_uid, ts: transfer_syntax });
            }
        }
    }
    planned
}

fn is_uncompressed(ts: &str) -> bool {
    TransferSyntax::from_uid(ts).is_uncompressed()
}

/// Presentation contexts for a set of instances, grouped so that no association
/// carries more than 128: per SOP class, one context per transfer syntax found, plus
/// one with the other uncompressed syntaxes as a fall-back when the class has an
/// uncompressed instance.
fn contexts_for(instances: &[Planned]) -> Vec<Vec<(String, Vec<String>)>> {
    let mut by_class: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in instances {
        by_class.entry(p.class.as_str()).or_default().insert(p.ts.as_str());
    }
    let fallback_all = [uids::EXPLICIT_VR_LE, uids::IMPLICIT_VR_LE, uids::EXPLICIT_VR_BE];
    let mut groups: Vec<Vec<(String, Vec<String>)>> = vec![Vec::new()];
    for (class, tss) in by_class {
        let mut ctxs: Vec<(String, Vec<String>)> = tss.iter().map(|ts| (class.to_string(), vec![ts.to_string()])).collect();
        if tss.iter().any(|t| is_uncompressed(t)) {
            let rest: Vec<String> = fallback_all.iter().filter(|t| !tss.contains(**t)).map(|t| t.to_string()).collect();
            if !rest.is_empty() {
                ctxs.push((class.to_string(), rest));
            }
        }
        let last = groups.last_mut().expect("never empty");
        if last.len() + ctxs.len() > MAX_PRESENTATION_CONTEXTS && !last.is_empty() {
            groups.push(Vec::new());
        }
        groups.last_mut().expect("never empty").extend(ctxs);
    }
    groups
}

/// Send everything; one result per instance (in input order). An error only when no
/// association could be established at all.
pub fn store(opts: &StoreOptions, items: Vec<StoreItem>, progress: &(dyn Fn(&StoreResult) + Sync)) -> Result<Vec<StoreResult>, NetError> {
    let mut results = Vec::new();
    let planned = plan(items, &mut results);
    for r in &results {
        progress(r);
    }
    let parallel = opts.parallel.max(1).min(planned.len().max(1));
    let mut buckets: Vec<Vec<Planned>> = (0..parallel).map(|_| Vec::new()).collect();
    // Contiguous slices of similar byte size keep each association's work even.
    let total: u64 = planned.iter().map(|p| p.size()).sum();
    let per = total / parallel as u64 + 1;
    let (mut b, mut acc) = (0usize, 0u64);
    for p in planned {
        if acc >= per * (b as u64 + 1) && b + 1 < parallel {
            b += 1;
        }
        acc += p.size();
        buckets[b].push(p);
    }
    let collected = Mutex::new(results);
    let first_error: Mutex<Option<NetError>> = Mutex::new(None);
    let any_associated = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for bucket in buckets.into_iter().filter(|b| !b.is_empty()) {
            let (collected, first_error, any_associated) = (&collected, &first_error, &any_associated);
            s.spawn(move || {
                send_bucket(opts, bucket, &|r: StoreResult| {
                    progress(&r);
                    if let Ok(mut c) = collected.lock() {
                        c.push(r);
                    }
                }, first_error, any_associated);
            });
        }
    });
    let mut results = collected.into_inner().unwrap_or_else(|p| p.into_inner());
    if !any_associated.load(std::sync::atomic::Ordering::SeqCst) {
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
    }
    results.sort_by_key(|r| r.index);
    Ok(results)
}

impl StoreOptions {
    fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().map(|c| c.load(Ordering::SeqCst)).unwrap_or(false)
    }
}

/// Read the meta groups of `paths` (not walking folders) for sending with [`send_on`].
pub fn plan_files(paths: Vec<PathBuf>) -> (Vec<Planned>, Vec<StoreResult>) {
    let mut failures = Vec::new();
    let planned = plan(paths.into_iter().map(StoreItem::Path).collect(), &mut failures);
    (planned, failures)
}

/// Send planned instances over an association that is already open, where we act as
/// SCU for the storage contexts (a C-GET SCP answering on the requestor's association).
/// Stops early when `opts.cancel` is set; the rest are reported as not sent.
pub fn send_on(a: &mut Association, opts: &StoreOptions, planned: &[Planned], progress: &mut dyn FnMut(&mut Association, &StoreResult)) {
    for p in planned {
        let r = if opts.is_cancelled() || !a.is_established() {
            let mut r = p.result();
            r.reason = Some(if a.is_established() { "cancelled".into() } else { "the association is gone".into() });
            r
        } else {
            // One at a time: this association's window was negotiated by its requestor,
            // for its own operations.
            match start_one(a, opts, p) {
                Started::Done(r) | Started::SendFailed(InFlight { result: r, .. }) => r,
                Started::Waiting(f) => {
                    let mut waiting = vec![f];
                    let mut out = None;
                    if let Collected::Lost(why) = collect_one(a, opts, &mut waiting, &mut |r| out = Some(r)) {
                        fail_waiting(&mut waiting, &why, &mut |r| out = Some(r));
                    }
                    out.expect("the only waiting instance is settled")
                }
            }
        };
        progress(a, &r);
    }
}

impl Planned {
    /// The SOP instance UID (for failure lists).
    pub fn sop_instance_uid(&self) -> &str {
        &self.instance
    }

    /// The file, when the instance comes from one.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::File { path, .. } => Some(path),
            Source::Memory(_) => None,
        }
    }

    fn size(&self) -> u64 {
        match &self.source {
            Source::File { len, .. } => *len + 4096,
            Source::Memory(d) => d.len() as u64 + 4096,
        }
    }
}

fn send_bucket(
    opts: &StoreOptions,
    bucket: Vec<Planned>,
    emit: &dyn Fn(StoreResult),
    first_error: &Mutex<Option<NetError>>,
    any_associated: &std::sync::atomic::AtomicBool,
) {
    let mut emit_mut = |r: StoreResult| emit(r);
    for ctx_group in contexts_for(&bucket) {
        let classes: BTreeSet<&str> = ctx_group.iter().map(|(c, _)| c.as_str()).collect();
        let mut cfg = opts.requestor.clone();
        cfg.contexts = ctx_group.clone();
        if cfg.async_ops_window.is_none() && opts.window > 1 {
            cfg.async_ops_window = Some((opts.window, 1));
        }
        // (instance, already sent once on an association that ended unanswered)
        let mut queue: VecDeque<(&Planned, bool)> =
            bucket.iter().filter(|p| classes.contains(p.class.as_str())).map(|p| (p, false)).collect();
        let mut assoc: Option<Association> = None;
        let mut waiting: Vec<InFlight> = Vec::new();
        // C-STORE-RSPs received on the current association.
        let mut answered = 0usize;
        while let Some((p, retried)) = queue.pop_front() {
            if opts.is_cancelled() {
                let mut r = p.result();
                r.reason = Some("cancelled".into());
                emit(r);
                continue;
            }
            if assoc.as_ref().map(|a| !a.is_established()).unwrap_or(true) {
                answered = 0;
                match Association::request(&opts.addr, &cfg, opts.timeouts) {
                    Ok(a) => {
                        any_associated.store(true, std::sync::atomic::Ordering::SeqCst);
                        assoc = Some(a);
                    }
                    Err(e) => {
                        let reason = format!("no association: {e}");
                        for q in std::iter::once(p).chain(queue.drain(..).map(|(q, _)| q)) {
                            let mut r = q.result();
                            r.reason = Some(reason.clone());
                            emit(r);
                        }
                        if let Ok(mut f) = first_error.lock() {
                            f.get_or_insert(e);
                        }
                        break;
                    }
                }
            }
            let a = assoc.as_mut().expect("set above");
            match start_one(a, opts, p) {
                Started::Done(r) => emit(r),
                Started::Waiting(mut f) => {
                    f.retried = retried;
                    waiting.push(f);
                }
                Started::SendFailed(mut f) => {
                    // The association broke while this one was being sent.
                    f.retried = retried;
                    waiting.push(f);
                    let why = last_reason(&waiting);
                    settle_lost(&mut waiting, &why, answered, &mut cfg, &mut queue, &mut emit_mut);
                    continue;
                }
            }
            // Room for the next request; after the last one, every response (collected
            // here, so that instances of an association lost now can still be retried).
            let keep = if queue.is_empty() { 0 } else { window_of(a, cfg.async_ops_window) - 1 };
            while waiting.len() > keep {
                match collect_one(a, opts, &mut waiting, &mut emit_mut) {
                    Collected::One => answered += 1,
                    Collected::Lost(why) => {
                        settle_lost(&mut waiting, &why, answered, &mut cfg, &mut queue, &mut emit_mut);
                        break;
                    }
                }
            }
        }
        fail_waiting(&mut waiting, "the association ended before the C-STORE-RSP arrived", &mut emit_mut);
        if let Some(mut a) = assoc {
            if a.is_established() {
                if let Err(e) = a.release() {
                    debug!("release after C-STORE failed: {e}");
                }
            }
        }
    }
}

/// The reason recorded on the last instance that failed to send.
fn last_reason(waiting: &[InFlight]) -> String {
    waiting.last().and_then(|f| f.result.reason.clone()).unwrap_or_else(|| "sending failed".into())
}

/// An association ended with `waiting` instances unanswered. If it proposed an
/// asynchronous operations window and never answered a single C-STORE, the window item
/// itself may be what the peer cannot take (some PACS drop the connection at the first
/// request when the A-ASSOCIATE-RQ carried one): further associations propose none, and
/// the unanswered instances are sent once more, first. Otherwise they fail with `why`.
fn settle_lost<'a>(
    waiting: &mut Vec<InFlight<'a>>,
    why: &str,
    answered: usize,
    cfg: &mut RequestorConfig,
    queue: &mut VecDeque<(&'a Planned, bool)>,
    emit: &mut dyn FnMut(StoreResult),
) {
    if answered == 0 && cfg.async_ops_window.is_some() {
        warn!(
            "{}: the association ended before any C-STORE-RSP ({why}); trying again without proposing an asynchronous operations window",
            cfg.called_ae
        );
        cfg.async_ops_window = None;
        let mut again = Vec::new();
        for f in waiting.drain(..) {
            if f.retried {
                let mut r = f.result;
                r.reason = Some(why.to_string());
                emit(r);
            } else {
                again.push(f.planned);
            }
        }
        for p in again.into_iter().rev() {
            queue.push_front((p, true));
        }
    } else {
        fail_waiting(waiting, why, emit);
    }
}

/// Most C-STOREs kept in flight, whatever the peer allows (its "unlimited" included).
const MAX_WINDOW: usize = 64;

/// How many C-STOREs may be outstanding on `a`: the number of operations we (the
/// requestor) may invoke as the peer granted it, never more than we `proposed` (a peer
/// granting a window we did not ask for, or more than we asked, gets what we asked), 0
/// meaning no limit, and at most [`MAX_WINDOW`].
fn window_of(a: &Association, proposed: Option<(u16, u16)>) -> usize {
    let Some((asked, _)) = proposed else { return 1 };
    let cap = |n: u16| if n == 0 { MAX_WINDOW } else { (n as usize).min(MAX_WINDOW) };
    cap(a.negotiated().async_ops_window.0).min(cap(asked))
}

/// A C-STORE-RQ sent, its response not yet in.
struct InFlight<'a> {
    planned: &'a Planned,
    id: u16,
    result: StoreResult,
    /// (from, to) when the instance was transcoded on the way.
    transcoded: Option<(String, String)>,
    /// Sent before, on an association that ended without answering it.
    retried: bool,
}

enum Started<'a> {
    /// Settled without sending: refused before the first byte (no context, unreadable or
    /// damaged file, ...).
    Done(StoreResult),
    Waiting(InFlight<'a>),
    /// The association failed while the instance was being sent (`result.reason` says
    /// how); it is aborted if it was not over already.
    SendFailed(InFlight<'a>),
}

/// What [`collect_one`] saw.
enum Collected {
    /// A C-STORE-RSP settled one waiting instance.
    One,
    /// The association ended (failed or released by the peer): the waiting instances
    /// are still in the list, for the caller to settle.
    Lost(String),
}

/// Report every waiting instance as failed with `why`.
fn fail_waiting(waiting: &mut Vec<InFlight<'_>>, why: &str, emit: &mut dyn FnMut(StoreResult)) {
    for f in waiting.drain(..) {
        let mut r = f.result;
        r.reason = Some(why.to_string());
        emit(r);
    }
}

/// Wait for the next C-STORE-RSP and settle the instance it answers (responses may come
/// in any order). When the association fails or is released instead, the waiting
/// instances stay in `waiting` and the caller settles them (none is left unreported).
fn collect_one(a: &mut Association, opts: &StoreOptions, waiting: &mut Vec<InFlight<'_>>, emit: &mut dyn FnMut(StoreResult)) -> Collected {
    loop {
        match a.receive(opts.timeouts.dimse, "waiting for C-STORE-RSP (DIMSE timeout)") {
            Ok(Received::Message { command, .. }) if command.command_field == field::C_STORE_RSP => {
                let Some(pos) = waiting.iter().position(|f| command.message_id_being_responded_to == Some(f.id)) else {
                    warn!("ignoring a C-STORE-RSP to message {:?}, which is not waiting", command.message_id_being_responded_to);
                    continue;
                };
                let f = waiting.swap_remove(pos);
                let mut r = f.result;
                let st = command.status.unwrap_or(status::PROCESSING_FAILURE);
                r.status = Some(st);
                if st != status::SUCCESS {
                    let mut why = format!("0x{st:04X} {}", status::describe(st));
                    if let Some(c) = command.error_comment.filter(|c| !c.is_empty()) {
                        why.push_str(": ");
                        why.push_str(&c);
                    }
                    r.reason = Some(why);
                }
                if let Some((from, to)) = f.transcoded {
                    debug!("{} sent transcoded {from} -> {to}", r.sop_instance_uid);
                }
                emit(r);
                return Collected::One;
            }
            Ok(Received::Message { command, .. }) if command.command_field == field::C_CANCEL_RQ => {
                info!("C-CANCEL-RQ received during a C-STORE sub-operation");
                if let Some(c) = &opts.cancel {
                    c.store(true, Ordering::SeqCst);
                }
            }
            Ok(Received::Message { command, .. }) => {
                warn!("ignoring {command} while waiting for a C-STORE-RSP");
            }
            Ok(Received::ReleaseRequested) => {
                let _ = a.release_response();
                return Collected::Lost("the peer released the association before answering".into());
            }
            Err(e) => {
                info!("no C-STORE-RSP for {} instance(s): {e}", waiting.len());
                return Collected::Lost(format!("no response: {e}"));
            }
        }
    }
}

/// Send one instance's C-STORE-RQ on `a` (its response is collected by [`collect_one`]);
/// the association may be gone afterwards (then the caller opens a new one for the next
/// instance).
fn start_one<'a>(a: &mut Association, opts: &StoreOptions, p: &'a Planned) -> Started<'a> {
    let mut r = p.result();
    let neg = a.negotiated();
    let own = neg.find_context_as_scu(&p.class, Some(&p.ts)).map(|c| (c.id, c.transfer_syntax.clone()));
    let chosen = own.or_else(|| {
        if !is_uncompressed(&p.ts) {
            return None;
        }
        [uids::EXPLICIT_VR_LE, uids::IMPLICIT_VR_LE, uids::DEFLATED_EXPLICIT_VR_LE, uids::EXPLICIT_VR_BE]
            .iter()
            .find_map(|ts| neg.find_context_as_scu(&p.class, Some(ts)).map(|c| (c.id, c.transfer_syntax.clone())))
    });
    let Some((ctx, ts)) = chosen else {
        let any = neg.contexts.iter().filter(|c| c.abstract_syntax == p.class).map(|c| c.transfer_syntax.clone()).collect::<Vec<_>>();
        r.reason = Some(if any.is_empty() {
            format!("the peer accepted no presentation context for SOP class {}", p.class)
        } else {
            format!(
                "the peer does not accept transfer syntax {} for SOP class {} (it accepted {}), and fastdimse does not decompress",
                p.ts,
                p.class,
                any.join(", ")
            )
        });
        return Started::Done(r);
    };
    let id = a.next_message_id();
    let mut cmd = Command {
        command_field: field::C_STORE_RQ,
        affected_sop_class_uid: Some(p.class.clone()),
        affected_sop_instance_uid: Some(p.instance.clone()),
        message_id: Some(id),
        priority: Some(opts.priority),
        has_dataset: true,
        ..Default::default()
    };
    if let Some((ae, mid)) = &opts.move_originator {
        cmd.move_originator_ae_title = Some(ae.clone());
        cmd.move_originator_message_id = Some(*mid);
    }
    let transcode = ts != p.ts;
    let mut transcoder = if transcode {
        match Transcoder::new(&p.ts, &ts) {
            Ok(t) => Some(t),
            Err(e) => {
                r.reason = Some(format!("cannot transcode: {e}"));
                return Started::Done(r);
            }
        }
    } else {
        None
    };
    r.sent_transfer_syntax = Some(ts.clone());
    let sent = match &p.source {
        Source::File { path, offset, len } if !transcode => match File::open(path) {
            Ok(f) if *len <= SMALL_FILE => {
                // Small: one read, the check in memory, command and data in one write.
                let mut data = Vec::with_capacity(*len as usize);
                let read = (&f).seek(SeekFrom::Start(*offset)).and_then(|_| (&f).take(*len).read_to_end(&mut data));
                let checked = match read {
                    Ok(n) if n as u64 == *len => {
                        let syntax = TransferSyntax::from_uid(&p.ts);
                        if syntax.is_deflated() {
                            Ok(())
                        } else {
                            super::header::check_complete(&mut std::io::Cursor::new(&data), *len, syntax.encoding(), *offset)
                        }
                    }
                    Ok(n) => Err(format!("the file changed while being read ({n} of {len} bytes)")),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(why) = checked {
                    r.sent_transfer_syntax = None;
                    r.reason = Some(format!("not sent: {}: {why}", path.display()));
                    return Started::Done(r);
                }
                a.send_message(ctx, &cmd, Some(&data)).map(|_| *len)
            }
            Ok(f) => {
                // Never pass a damaged file on: its structure is checked first (a few
                // small reads; values are skipped with seeks).
                if let Err(why) = check_file(&f, *offset, *len, &p.ts) {
                    r.sent_transfer_syntax = None;
                    r.reason = Some(format!("not sent: {}: {why}", path.display()));
                    return Started::Done(r);
                }
                a.send_message_from_file(ctx, &cmd, &f, *offset, *len)
            }
            Err(e) => {
                r.sent_transfer_syntax = None;
                r.reason = Some(format!("cannot open {}: {e}", path.display()));
                return Started::Done(r);
            }
        },
        Source::File { path, offset, len } => {
            let f = File::open(path).and_then(|mut f| f.seek(SeekFrom::Start(*offset)).map(|_| f));
            match f {
                Ok(mut f) => {
                    let mut limited = (&mut f).take(*len);
                    a.send_message_from(ctx, &cmd, &mut limited, None, transcoder.as_mut())
                }
                Err(e) => {
                    r.sent_transfer_syntax = None;
                    r.reason = Some(format!("cannot open {}: {e}", path.display()));
                    return Started::Done(r);
                }
            }
        }
        Source::Memory(d) => {
            let mut cur = std::io::Cursor::new(d.as_slice());
            let known = if transcode { None } else { Some(d.len() as u64) };
            a.send_message_from(ctx, &cmd, &mut cur, known, transcoder.as_mut())
        }
    };
    let transcoded = transcode.then(|| (p.ts.clone(), ts));
    match sent {
        Ok(n) => r.bytes = n,
        Err(e) => {
            r.reason = Some(format!("sending failed: {e}"));
            // A message cut short cannot be resumed: the association is over.
            if a.is_established() {
                let _ = a.abort();
            }
            return Started::SendFailed(InFlight { planned: p, id, result: r, transcoded, retried: false });
        }
    }
    Started::Waiting(InFlight { planned: p, id, result: r, transcoded, retried: false })
}

/// The structure check of [`super::header::check_complete`] on a file's data set
/// (deflated data sets are checked while they are inflated, by the transcoder or not at all).
fn check_file(f: &File, offset: u64, len: u64, ts: &str) -> Result<(), String> {
    let syntax = TransferSyntax::from_uid(ts);
    if syntax.is_deflated() {
        return Ok(());
    }
    let mut r = std::io::BufReader::with_capacity(8192, f);
    r.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    super::header::check_complete(&mut r, len, syntax.encoding(), offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(class: &str, ts: &str) -> Planned {
        Planned { index: 0, source: Source::Memory(Vec::new()), class: class.into(), instance: "1".into(), ts: ts.into() }
    }

    #[test]
    fn contexts_cover_own_syntax_and_fallbacks() {
        let g = contexts_for(&[p("1.1", uids::EXPLICIT_VR_LE), p("1.1", "1.2.840.10008.1.2.4.50"), p("1.2", "1.2.840.10008.1.2.5")]);
        assert_eq!(g.len(), 1);
        let c = &g[0];
        assert!(c.contains(&("1.1".into(), vec![uids::EXPLICIT_VR_LE.into()])));
        assert!(c.contains(&("1.1".into(), vec!["1.2.840.10008.1.2.4.50".into()])));
        assert!(c.contains(&("1.1".into(), vec![uids::IMPLICIT_VR_LE.into(), uids::EXPLICIT_VR_BE.into()])));
        // a class with only compressed instances gets no uncompressed fall-back
        assert_eq!(c.iter().filter(|(a, _)| a == "1.2").count(), 1);
    }

    #[test]
    fn more_than_128_contexts_spill_into_further_associations() {
        let many: Vec<Planned> = (0..200).map(|i| p(&format!("1.2.{i}"), uids::IMPLICIT_VR_LE)).collect();
        let g = contexts_for(&many);
        assert!(g.len() >= 3);
        assert!(g.iter().all(|x| x.len() <= 128));
        assert_eq!(g.iter().map(|x| x.len()).sum::<usize>(), 400);
    }
}
