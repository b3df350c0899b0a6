//! The storage SCU: send files (or in-memory data sets) with C-STORE.
//!
//! Planning streams (see "the streaming planner" below): a scanner reads only each
//! file's meta group, a bounded window ahead of the senders; an association proposes
//! the contexts of the classes seen so far (more than 128 contexts spill into further
//! associations) and another is opened when an instance needs a context it did not
//! propose. Each instance goes over a context in its own transfer syntax, or is
//! transcoded on the fly to another uncompressed one the peer accepted. A compressed
//! instance the peer will not take as is fails alone, with a reason, and the rest go on.
//! `parallel` > 1 sends over that many associations at once.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use log::{debug, info, warn};

use crate::dataset::{read_part10_meta_path, uids, TransferSyntax, Transcoder};
use crate::dimse::{field, priority, Command};
use crate::net::{Association, NetError, Received, Timeouts};
use crate::ul::{RequestorConfig, MAX_PRESENTATION_CONTEXTS};

use super::status;

mod exchange;

pub use exchange::send_on;
use exchange::{collect_one, fail_waiting, last_reason, settle_lost, start_one, window_of, Collected, InFlight, Started};

/// Data sets up to this size are read whole and sent with their command in one write.
const SMALL_FILE: u64 = 256 * 1024;

/// Media Storage Directory (DICOMDIR) is not an instance to send.
use crate::uid::MEDIA_STORAGE_DIRECTORY;

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
    /// Top-level elements rewritten in every instance's header part before it is sent
    /// (`dataset::coerce_header`); the files are only read.
    pub coerce: Option<Arc<crate::dataset::Coercion>>,
    /// Every association over TLS.
    pub tls: Option<Arc<crate::net::TlsClient>>,
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
            coerce: None,
            tls: None,
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
    /// In-memory bytes counted against the streaming planner's budget.
    #[allow(dead_code)]
    hold: Option<MemoryHold>,
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

/// Folders with at most this many entries are walked in name order; a larger one is
/// walked in the order the file system lists it (sorting it would mean holding every
/// name of it at once).
const SORTED_FOLDER: usize = 4096;

/// A lazy, depth-first walk of one folder: at most [`SORTED_FOLDER`] names per level
/// are held at a time.
struct Walker {
    stack: Vec<(VecDeque<PathBuf>, Option<std::fs::ReadDir>)>,
}

impl Walker {
    fn new(dir: &Path) -> Walker {
        let mut w = Walker { stack: Vec::new() };
        w.enter(dir);
        w
    }

    fn enter(&mut self, dir: &Path) {
        let mut rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) => {
                warn!("cannot read folder {}: {e}", dir.display());
                return;
            }
        };
        let mut first = VecDeque::new();
        let mut more = false;
        for e in rd.by_ref() {
            match e {
                Ok(e) => first.push_back(e.path()),
                Err(e) => warn!("cannot read an entry of {}: {e}", dir.display()),
            }
            if first.len() >= SORTED_FOLDER {
                more = true;
                break;
            }
        }
        if more {
            debug!("{}: more than {SORTED_FOLDER} entries, walked in file-system order", dir.display());
        } else {
            first.make_contiguous().sort();
        }
        self.stack.push((first, more.then_some(rd)));
    }
}

impl Iterator for Walker {
    type Item = PathBuf;
    fn next(&mut self) -> Option<PathBuf> {
        loop {
            let (first, rest) = self.stack.last_mut()?;
            let next = match first.pop_front() {
                Some(p) => Some(p),
                None => match rest.as_mut().and_then(|rd| rd.next()) {
                    Some(Ok(e)) => Some(e.path()),
                    Some(Err(e)) => {
                        warn!("cannot read a folder entry: {e}");
                        continue;
                    }
                    None => None,
                },
            };
            match next {
                None => {
                    self.stack.pop();
                }
                Some(p) if p.is_dir() => self.enter(&p),
                Some(p) => return Some(p),
            }
        }
    }
}

/// Read one item's meta group: the instance to send, or why it cannot be sent.
#[allow(clippy::result_large_err)]
fn plan_one(index: usize, it: StoreItem) -> Result<Planned, StoreResult> {
    match it {
        StoreItem::Path(path) => {
            let meta = read_part10_meta_path(&path);
            let len = std::fs::metadata(&path).map(|m| m.len());
            match (meta, len) {
                (Ok((m, offset)), Ok(len)) => {
                    if m.sop_class_uid == MEDIA_STORAGE_DIRECTORY {
                        Err(failed(index, Some(path), "a DICOMDIR (media storage directory) is not sent".into()))
                    } else if m.sop_class_uid.is_empty() || m.sop_instance_uid.is_empty() {
                        Err(failed(index, Some(path), "the file meta group has no Media Storage SOP Class/Instance UID".into()))
                    } else {
                        Ok(Planned {
                            index,
                            source: Source::File { path, offset, len: len.saturating_sub(offset) },
                            class: m.sop_class_uid,
                            instance: m.sop_instance_uid,
                            ts: m.transfer_syntax,
                            hold: None,
                        })
                    }
                }
                (Err(e), _) => {
                    let reason = e.message(Some(&path.display().to_string()));
                    Err(failed(index, Some(path), reason))
                }
                (_, Err(e)) => Err(failed(index, Some(path.clone()), format!("cannot read {}: {e}", path.display()))),
            }
        }
        StoreItem::Memory { label, sop_class_uid, sop_instance_uid, transfer_syntax, data } => {
            if sop_class_uid.is_empty() || sop_instance_uid.is_empty() {
                return Err(failed(index, None, format!("{label}: no SOP Class/Instance UID")));
            }
            Ok(Planned { index, source: Source::Memory(data), class: sop_class_uid, instance: sop_instance_uid, ts: transfer_syntax, hold: None })
        }
    }
}

fn is_uncompressed(ts: &str) -> bool {
    TransferSyntax::from_uid(ts).is_uncompressed()
}

/// The presentation contexts for one SOP class: one per transfer syntax found, plus one
/// with the other uncompressed syntaxes as a fall-back when the class has an uncompressed
/// instance.
fn class_contexts<'a>(class: &str, tss: impl Iterator<Item = &'a str> + Clone) -> Vec<(String, Vec<String>)> {
    let fallback_all = [uids::EXPLICIT_VR_LE, uids::IMPLICIT_VR_LE, uids::EXPLICIT_VR_BE];
    let mut ctxs: Vec<(String, Vec<String>)> = tss.clone().map(|ts| (class.to_string(), vec![ts.to_string()])).collect();
    if tss.clone().any(is_uncompressed) {
        let rest: Vec<String> = fallback_all.iter().filter(|t| !tss.clone().any(|s| s == **t)).map(|t| t.to_string()).collect();
        if !rest.is_empty() {
            ctxs.push((class.to_string(), rest));
        }
    }
    ctxs
}

/// Presentation contexts for a set of instances, grouped so that no association
/// carries more than 128 (see [`class_contexts`]).
#[cfg(test)]
fn contexts_for(instances: &[Planned]) -> Vec<Vec<(String, Vec<String>)>> {
    let mut by_class: std::collections::BTreeMap<&str, BTreeSet<&str>> = std::collections::BTreeMap::new();
    for p in instances {
        by_class.entry(p.class.as_str()).or_default().insert(p.ts.as_str());
    }
    let mut groups: Vec<Vec<(String, Vec<String>)>> = vec![Vec::new()];
    for (class, tss) in by_class {
        let ctxs = class_contexts(class, tss.iter().copied());
        let last = groups.last_mut().expect("never empty");
        if last.len() + ctxs.len() > MAX_PRESENTATION_CONTEXTS && !last.is_empty() {
            groups.push(Vec::new());
        }
        groups.last_mut().expect("never empty").extend(ctxs);
    }
    groups
}

// --- the streaming planner ---------------------------------------------------------------
//
// One scanner thread pulls the items (a Vec, a Python iterator, ...), walks folders
// lazily, reads each file's meta group and records its (SOP class, transfer syntax) in
// the shared `Plan` before it hands the instance to a bounded channel: the plan always
// knows the classes of up to `lookahead` instances ahead of the senders. `parallel`
// sender threads take instances from the channel; each holds one association at a time.
// An association proposes the contexts of the classes the plan knows when it is opened
// (those needed right now first, then the most recently seen, at most 128 contexts).
// An instance whose class or syntax that association did not propose makes the sender
// settle its outstanding C-STOREs, release, and open another association proposing what
// is needed (when the plan has more classes than 128 contexts can carry, such instances
// are first parked, up to PARKED, so that the associations do not alternate at every
// instance). Nothing per instance outlives its result, except what a caller asks to keep.

/// Instances parked by a sender for the next association, at most.
const PARKED: usize = 256;
/// Classes the plan remembers (the least recently seen are forgotten beyond this).
const PLAN_CLASSES: usize = 2048;
/// Bytes of in-memory data sets (pydicom Datasets) queued ahead of the senders, at most
/// (one is always let through, whatever its size).
const MEMORY_BUDGET: u64 = 32 * 1024 * 1024;
/// Default for [`StreamOptions::lookahead`].
pub const DEFAULT_LOOKAHEAD: usize = 1024;
/// How long a sender about to open an association waits for the scanner to fill its
/// look-ahead window (so that the first association already proposes what follows).
const LOOKAHEAD_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// What the streaming store keeps and how far it reads ahead.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Keep every result (for a list in input order); otherwise only the summary.
    pub keep_results: bool,
    /// Failures kept in the summary (with their reasons); the rest are only counted.
    pub max_failures: usize,
    /// Instances scanned (meta group read) ahead of the senders, at most.
    pub lookahead: usize,
    /// When cancelled, go on reading the input and report every remaining item as
    /// "cancelled" (for a finite input); otherwise stop reading it.
    pub drain_on_cancel: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions { keep_results: false, max_failures: 1000, lookahead: DEFAULT_LOOKAHEAD, drain_on_cancel: false }
    }
}

/// Counts over a whole store.
#[derive(Debug, Clone, Default)]
pub struct StoreSummary {
    /// Instances reported (each exactly once).
    pub total: u64,
    /// Status 0x0000.
    pub completed: u64,
    /// A warning status (stored).
    pub warning: u64,
    /// Not stored: a failure status, or not sent (see the reasons).
    pub failed: u64,
    /// Data set bytes sent (of instances answered, whatever the status).
    pub bytes: u64,
    /// Associations opened.
    pub associations: u64,
    /// The first `max_failures` failures, with their reasons.
    pub failures: Vec<StoreResult>,
    /// Stopped by the cancel flag.
    pub cancelled: bool,
}

impl StoreSummary {
    fn add(&mut self, r: &StoreResult, max_failures: usize) {
        self.total += 1;
        self.bytes += r.bytes;
        match r.status {
            Some(status::SUCCESS) => self.completed += 1,
            Some(s) if !status::is_failure(s) => self.warning += 1,
            _ => {
                self.failed += 1;
                if self.failures.len() < max_failures {
                    self.failures.push(r.clone());
                }
            }
        }
    }
}

struct Seen {
    tss: BTreeSet<String>,
    last: u64,
}

#[derive(Default)]
struct PlanState {
    classes: std::collections::HashMap<String, Seen>,
    /// Instances planned (sent into the channel) and taken from it.
    scanned: u64,
    taken: u64,
    done: bool,
    /// Bytes of in-memory data sets planned and not yet dropped.
    memory: u64,
}

struct Plan {
    state: Mutex<PlanState>,
    cond: std::sync::Condvar,
    lookahead: u64,
}

/// What one association proposed: per SOP class, the exact syntaxes, and whether an
/// uncompressed one (so any uncompressed instance can go, transcoded if need be).
#[derive(Default)]
struct Coverage(std::collections::HashMap<String, (BTreeSet<String>, bool)>);

impl Coverage {
    fn covers(&self, p: &Planned) -> bool {
        self.0.get(&p.class).map(|(tss, unc)| tss.contains(&p.ts) || (*unc && is_uncompressed(&p.ts))).unwrap_or(false)
    }
}

impl Plan {
    fn lock(&self) -> std::sync::MutexGuard<'_, PlanState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, p: &Planned) {
        let mut s = self.lock();
        s.scanned += 1;
        let seq = s.scanned;
        if let Some(seen) = s.classes.get_mut(&p.class) {
            seen.last = seq;
            if !seen.tss.contains(&p.ts) {
                seen.tss.insert(p.ts.clone());
            }
        } else {
            if s.classes.len() >= PLAN_CLASSES {
                if let Some(oldest) = s.classes.iter().min_by_key(|(_, v)| v.last).map(|(k, _)| k.clone()) {
                    s.classes.remove(&oldest);
                }
            }
            s.classes.insert(p.class.clone(), Seen { tss: BTreeSet::from([p.ts.clone()]), last: seq });
        }
        if s.scanned - s.taken >= self.lookahead {
            self.cond.notify_all();
        }
    }

    fn finish(&self) {
        self.lock().done = true;
        self.cond.notify_all();
    }

    fn taken(&self) {
        let mut s = self.lock();
        s.taken += 1;
    }

    /// Wait (briefly) until the look-ahead window is full or the input is over.
    fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + LOOKAHEAD_WAIT;
        let mut s = self.lock();
        while !(s.done || s.scanned.saturating_sub(s.taken) >= self.lookahead) {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            s = match self.cond.wait_timeout(s, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// The total number of contexts every known class needs.
    fn contexts_needed(&self) -> usize {
        let s = self.lock();
        s.classes.iter().map(|(c, v)| class_contexts(c, v.tss.iter().map(|t| t.as_str())).len()).sum()
    }

    /// Contexts for a new association: the classes of `needed` first, then the others,
    /// most recently seen first, as many as 128 contexts hold.
    fn propose(&self, needed: &[&Planned]) -> (Vec<(String, Vec<String>)>, Coverage) {
        let s = self.lock();
        let mut order: Vec<(String, BTreeSet<String>)> = Vec::new();
        for p in needed {
            if let Some((_, tss)) = order.iter_mut().find(|(c, _)| *c == p.class) {
                tss.insert(p.ts.clone());
            } else {
                let mut tss = s.classes.get(&p.class).map(|v| v.tss.clone()).unwrap_or_default();
                tss.insert(p.ts.clone());
                order.push((p.class.clone(), tss));
            }
        }
        let mut rest: Vec<(&String, &Seen)> = s.classes.iter().filter(|(c, _)| !order.iter().any(|(o, _)| o == *c)).collect();
        rest.sort_by_key(|(_, v)| std::cmp::Reverse(v.last));
        order.extend(rest.into_iter().map(|(c, v)| (c.clone(), v.tss.clone())));
        drop(s);
        let mut ctxs: Vec<(String, Vec<String>)> = Vec::new();
        let mut cov = Coverage::default();
        for (class, tss) in order {
            let mut mine = class_contexts(&class, tss.iter().map(|t| t.as_str()));
            if ctxs.len() + mine.len() > MAX_PRESENTATION_CONTEXTS {
                if !ctxs.is_empty() {
                    continue;
                }
                mine.truncate(MAX_PRESENTATION_CONTEXTS);
            }
            let unc = mine.iter().any(|(_, t)| t.iter().any(|t| is_uncompressed(t)));
            let exact: BTreeSet<String> = mine.iter().filter(|(_, t)| t.len() == 1).map(|(_, t)| t[0].clone()).collect();
            cov.0.insert(class, (exact, unc));
            ctxs.extend(mine);
        }
        (ctxs, cov)
    }

    /// Wait until in-memory data sets queued ahead use less than the budget.
    fn reserve_memory(&self, n: u64) {
        let mut s = self.lock();
        while s.memory > 0 && s.memory + n > MEMORY_BUDGET {
            s = match self.cond.wait(s) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
        s.memory += n;
    }

    fn release_memory(&self, n: u64) {
        let mut s = self.lock();
        s.memory = s.memory.saturating_sub(n);
        self.cond.notify_all();
    }
}

/// In-memory bytes an instance holds against the plan's budget, given back when dropped.
struct MemoryHold {
    bytes: u64,
    plan: Arc<Plan>,
}

impl Drop for MemoryHold {
    fn drop(&mut self) {
        self.plan.release_memory(self.bytes);
    }
}

/// Send everything; one result per instance (in input order). An error only when no
/// association could be established at all.
pub fn store(opts: &StoreOptions, items: Vec<StoreItem>, progress: &(dyn Fn(&StoreResult) + Sync)) -> Result<Vec<StoreResult>, NetError> {
    let so = StreamOptions { keep_results: true, drain_on_cancel: true, ..Default::default() };
    let (_, results) = store_stream(opts, items.into_iter(), &so, progress)?;
    Ok(results.unwrap_or_default())
}

/// Send whatever `items` yields, planning as it goes (see the comment above). Results go
/// to `progress` as they settle (from the scanner and sender threads); the summary counts
/// them, and with `keep_results` they also come back as a list in input order. An error
/// only when no association could be established at all.
pub fn store_stream(
    opts: &StoreOptions,
    items: impl Iterator<Item = StoreItem> + Send,
    so: &StreamOptions,
    progress: &(dyn Fn(&StoreResult) + Sync),
) -> Result<(StoreSummary, Option<Vec<StoreResult>>), NetError> {
    let plan = Arc::new(Plan { state: Mutex::new(PlanState::default()), cond: std::sync::Condvar::new(), lookahead: so.lookahead.max(1) as u64 });
    let (tx, rx) = std::sync::mpsc::sync_channel::<Planned>(so.lookahead.max(1));
    let rx = Mutex::new(rx);
    let summary = Mutex::new(StoreSummary::default());
    let kept: Mutex<Vec<StoreResult>> = Mutex::new(Vec::new());
    let emit = |r: StoreResult| {
        if let Ok(mut s) = summary.lock() {
            s.add(&r, so.max_failures);
        }
        progress(&r);
        if so.keep_results {
            if let Ok(mut k) = kept.lock() {
                k.push(r);
            }
        }
    };
    let first_error: Mutex<Option<NetError>> = Mutex::new(None);
    let associations = std::sync::atomic::AtomicU64::new(0);
    let parallel = opts.parallel.max(1);
    let live = std::sync::atomic::AtomicUsize::new(parallel);
    std::thread::scope(|s| {
        let (plan_s, emit_s) = (&plan, &emit);
        s.spawn(move || {
            scan(opts, so, items, plan_s, tx, emit_s);
            plan_s.finish();
        });
        for n in 0..parallel {
            let ctx = SenderCtx { opts, plan: &plan, rx: &rx, emit: &emit, first_error: &first_error, associations: &associations, live: &live };
            std::thread::Builder::new()
                .name(format!("fastdimse-store-{n}"))
                .spawn_scoped(s, move || Sender::new(ctx).run())
                .map(|_| ())
                .unwrap_or_else(|e| warn!("cannot start a sender thread: {e}"));
        }
    });
    let mut summary = summary.into_inner().unwrap_or_else(|p| p.into_inner());
    summary.associations = associations.load(Ordering::SeqCst);
    summary.cancelled = opts.is_cancelled();
    if summary.associations == 0 {
        if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
    }
    let results = so.keep_results.then(|| {
        let mut k = kept.into_inner().unwrap_or_else(|p| p.into_inner());
        k.sort_by_key(|r| r.index);
        k
    });
    Ok((summary, results))
}

/// The scanner: expand, read meta groups, record in the plan, hand on (blocking when the
/// look-ahead window is full).
fn scan(
    opts: &StoreOptions,
    so: &StreamOptions,
    items: impl Iterator<Item = StoreItem>,
    plan: &Arc<Plan>,
    tx: std::sync::mpsc::SyncSender<Planned>,
    emit: &dyn Fn(StoreResult),
) {
    let mut index = 0usize;
    for it in items {
        let expanded: Box<dyn Iterator<Item = StoreItem>> = match it {
            StoreItem::Path(p) if p.is_dir() => Box::new(Walker::new(&p).map(StoreItem::Path)),
            other => Box::new(std::iter::once(other)),
        };
        for it in expanded {
            let i = index;
            index += 1;
            if opts.is_cancelled() {
                if !so.drain_on_cancel {
                    return;
                }
                let path = match &it {
                    StoreItem::Path(p) => Some(p.clone()),
                    StoreItem::Memory { .. } => None,
                };
                emit(failed(i, path, "cancelled".into()));
                continue;
            }
            let mut p = match plan_one(i, it) {
                Ok(p) => p,
                Err(r) => {
                    emit(r);
                    continue;
                }
            };
            if let Source::Memory(d) = &p.source {
                let n = d.len() as u64;
                plan.reserve_memory(n);
                p.hold = Some(MemoryHold { bytes: n, plan: plan.clone() });
            }
            plan.record(&p);
            if let Err(std::sync::mpsc::SendError(p)) = tx.send(p) {
                // The receiving end is dropped only after the senders end, which is after
                // this thread: not expected, but reported rather than lost.
                let mut r = p.result();
                r.reason = Some("no sender left (see the errors above)".into());
                emit(r);
            }
        }
    }
}

struct SenderCtx<'s> {
    opts: &'s StoreOptions,
    plan: &'s Arc<Plan>,
    rx: &'s Mutex<std::sync::mpsc::Receiver<Planned>>,
    emit: &'s (dyn Fn(StoreResult) + Sync),
    first_error: &'s Mutex<Option<NetError>>,
    associations: &'s std::sync::atomic::AtomicU64,
    live: &'s std::sync::atomic::AtomicUsize,
}

/// One sender thread: one association at a time, the window of C-STOREs in flight on it.
struct Sender<'s> {
    c: SenderCtx<'s>,
    cfg: RequestorConfig,
    assoc: Option<Association>,
    coverage: Coverage,
    waiting: Vec<InFlight>,
    /// C-STORE-RSPs received on the current association.
    answered: usize,
    /// (instance, already sent once on an association that ended unanswered): first.
    retry: VecDeque<(Planned, bool)>,
    /// Instances for the next association (their class is not on the current one).
    parked: VecDeque<(Planned, bool)>,
    input_done: bool,
}

enum Next {
    Item(Planned, bool),
    End,
}

impl<'s> Sender<'s> {
    fn new(c: SenderCtx<'s>) -> Sender<'s> {
        let mut cfg = c.opts.requestor.clone();
        if cfg.async_ops_window.is_none() && c.opts.window > 1 {
            cfg.async_ops_window = Some((c.opts.window, 1));
        }
        Sender {
            c,
            cfg,
            assoc: None,
            coverage: Coverage::default(),
            waiting: Vec::new(),
            answered: 0,
            retry: VecDeque::new(),
            parked: VecDeque::new(),
            input_done: false,
        }
    }

    fn emit(&self, r: StoreResult) {
        (self.c.emit)(r)
    }

    fn established(&self) -> bool {
        self.assoc.as_ref().map(|a| a.is_established()).unwrap_or(false)
    }

    /// Settle the next C-STORE-RSP; an association lost goes through `settle_lost`.
    fn collect(&mut self) {
        let Some(a) = self.assoc.as_mut() else { return };
        let emit = self.c.emit;
        match collect_one(a, self.c.opts, &mut self.waiting, &mut |r| emit(r)) {
            Collected::One => self.answered += 1,
            Collected::Lost(why) => settle_lost(&mut self.waiting, &why, self.answered, &mut self.cfg, &mut self.retry, &mut |r| emit(r)),
        }
    }

    /// The next instance to send: retries first, then parked instances the current
    /// association covers (any, once the input is over), then the channel; between them,
    /// responses are collected.
    fn next(&mut self) -> Next {
        loop {
            if let Some((p, retried)) = self.retry.pop_front() {
                return Next::Item(p, retried);
            }
            let pos = if self.input_done || !self.established() {
                (!self.parked.is_empty()).then_some(0)
            } else {
                self.parked.iter().position(|(p, _)| self.coverage.covers(p))
            };
            if let Some((p, retried)) = pos.and_then(|i| self.parked.remove(i)) {
                return Next::Item(p, retried);
            }
            if !self.input_done {
                let got = {
                    let rx = self.c.rx.lock().unwrap_or_else(|p| p.into_inner());
                    if self.waiting.is_empty() {
                        rx.recv().map_err(|_| true)
                    } else {
                        match rx.try_recv() {
                            Ok(p) => Ok(p),
                            Err(std::sync::mpsc::TryRecvError::Empty) => Err(false),
                            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(true),
                        }
                    }
                };
                match got {
                    Ok(p) => {
                        self.c.plan.taken();
                        return Next::Item(p, false);
                    }
                    Err(true) => self.input_done = true,
                    Err(false) => self.collect(),
                }
                continue;
            }
            if !self.waiting.is_empty() {
                self.collect();
                continue;
            }
            return Next::End;
        }
    }

    /// Settle every outstanding C-STORE and release the association.
    fn finish_association(&mut self) {
        while !self.waiting.is_empty() && self.established() {
            self.collect();
        }
        let emit = self.c.emit;
        fail_waiting(&mut self.waiting, "the association ended before the C-STORE-RSP arrived", &mut |r| emit(r));
        if let Some(mut a) = self.assoc.take() {
            if a.is_established() {
                if let Err(e) = a.release() {
                    debug!("release after C-STORE failed: {e}");
                }
            }
        }
    }

    /// Open an association proposing what `p` and the parked instances need.
    fn open(&mut self, p: &Planned) -> Result<(), String> {
        self.c.plan.wait_ready();
        let needed: Vec<&Planned> = std::iter::once(p).chain(self.retry.iter().map(|(q, _)| q)).chain(self.parked.iter().map(|(q, _)| q)).collect();
        let (ctxs, coverage) = self.c.plan.propose(&needed);
        self.cfg.contexts = ctxs;
        self.answered = 0;
        match Association::request_tls(&self.c.opts.addr, &self.cfg, self.c.opts.timeouts, self.c.opts.tls.as_deref()) {
            Ok(a) => {
                let n = self.c.associations.fetch_add(1, Ordering::SeqCst) + 1;
                info!(
                    "store: association {n} with {} proposing {} context(s) for {} SOP class(es)",
                    self.cfg.called_ae,
                    self.cfg.contexts.len(),
                    coverage.0.len()
                );
                self.coverage = coverage;
                self.assoc = Some(a);
                Ok(())
            }
            Err(e) => {
                let reason = format!("no association: {e}");
                if let Ok(mut f) = self.c.first_error.lock() {
                    f.get_or_insert(e);
                }
                Err(reason)
            }
        }
    }

    /// No association could be opened: report what this sender holds, and when it was
    /// the last sender, everything still to come.
    fn give_up(&mut self, p: Planned, reason: &str) {
        let mut held = vec![p];
        held.extend(self.retry.drain(..).map(|(q, _)| q));
        held.extend(self.parked.drain(..).map(|(q, _)| q));
        for q in held {
            let mut r = q.result();
            r.reason = Some(reason.to_string());
            self.emit(r);
        }
        if self.c.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            let rx = self.c.rx.lock().unwrap_or_else(|p| p.into_inner());
            while let Ok(q) = rx.recv() {
                self.c.plan.taken();
                let mut r = q.result();
                r.reason = Some(reason.to_string());
                self.emit(r);
            }
        }
    }

    fn run(mut self) {
        loop {
            let (p, retried) = match self.next() {
                Next::Item(p, r) => (p, r),
                Next::End => break,
            };
            if self.c.opts.is_cancelled() {
                let mut r = p.result();
                r.reason = Some("cancelled".into());
                self.emit(r);
                continue;
            }
            if self.established() && !self.coverage.covers(&p) {
                // Park it while the senders can go on here and the other classes do not
                // all fit in one association anyway; else a new association now.
                let fits = self.c.plan.contexts_needed() <= MAX_PRESENTATION_CONTEXTS;
                if !fits && !self.input_done && self.parked.len() < PARKED {
                    self.parked.push_back((p, retried));
                    continue;
                }
                info!("store: SOP class {} in {} was not proposed on this association: opening another", p.class, p.ts);
                self.finish_association();
            }
            if !self.established() {
                // An association lost without a reply is settled (retried or failed) first.
                if !self.waiting.is_empty() {
                    self.finish_association();
                }
                if let Err(reason) = self.open(&p) {
                    self.give_up(p, &reason);
                    return;
                }
            }
            let a = self.assoc.as_mut().expect("opened above");
            match start_one(a, self.c.opts, &p) {
                Started::Done(r) => self.emit(r),
                Started::Waiting(mut f) => {
                    f.retried = retried;
                    f.planned = Some(p);
                    self.waiting.push(f);
                }
                Started::SendFailed(mut f) => {
                    // The association broke while this one was being sent.
                    f.retried = retried;
                    f.planned = Some(p);
                    self.waiting.push(f);
                    let why = last_reason(&self.waiting);
                    let emit = self.c.emit;
                    settle_lost(&mut self.waiting, &why, self.answered, &mut self.cfg, &mut self.retry, &mut |r| emit(r));
                    continue;
                }
            }
            // Room for the next request.
            let keep = window_of(self.assoc.as_ref().expect("opened above"), self.cfg.async_ops_window) - 1;
            while self.waiting.len() > keep && self.established() {
                self.collect();
            }
            if !self.established() && !self.waiting.is_empty() {
                self.finish_association();
            }
        }
        self.finish_association();
        self.c.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StoreOptions {
    fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().map(|c| c.load(Ordering::SeqCst)).unwrap_or(false)
    }
}

/// Read one file's meta group (not walking folders) for sending with [`send_on`]:
/// the instance, or the failed result saying why it cannot be sent (`index` is its
/// position, carried into its result).
#[allow(clippy::result_large_err)]
pub fn plan_file(index: usize, path: PathBuf) -> Result<Planned, StoreResult> {
    plan_one(index, StoreItem::Path(path))
}

/// Read the meta groups of `paths` (not walking folders) for sending with [`send_on`].
pub fn plan_files(paths: Vec<PathBuf>) -> (Vec<Planned>, Vec<StoreResult>) {
    let mut failures = Vec::new();
    let mut planned = Vec::with_capacity(paths.len());
    for (i, p) in paths.into_iter().enumerate() {
        match plan_one(i, StoreItem::Path(p)) {
            Ok(p) => planned.push(p),
            Err(r) => failures.push(r),
        }
    }
    (planned, failures)
}

#[cfg(test)]
#[path = "scu_tests.rs"]
mod tests;
