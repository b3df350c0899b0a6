//! The storage SCP: each incoming C-STORE data set streams straight into a temporary
//! file in the storage folder (behind a Part-10 preamble and meta group written first),
//! and is renamed into place only once the whole instance arrived. A peer that aborts
//! or vanishes mid-instance leaves nothing behind: the temporary file is removed when
//! its sink is dropped without being committed.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use log::{debug, info, warn};

use crate::dataset::{self, FileMeta, TransferSyntax};
use crate::dimse::{field, Command};
use crate::net::{Association, DataSink, MessageData, NetError, Sink};
use crate::service::serve::ServiceHandler;
use crate::service::echo::answer_echo_or_unrecognized;
use crate::ul::Negotiated;

use crate::dataset::scan::scan_raw;
use super::status;

pub const TAG_SOP_CLASS_UID: u32 = 0x0008_0016;
pub const TAG_SOP_INSTANCE_UID: u32 = 0x0008_0018;
pub const TAG_PATIENT_ID: u32 = 0x0010_0020;
pub const TAG_STUDY_INSTANCE_UID: u32 = 0x0020_000D;
pub const TAG_SERIES_INSTANCE_UID: u32 = 0x0020_000E;

/// The default file layout under the storage folder.
pub const DEFAULT_LAYOUT: &str = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm";

/// What to do when an instance with the same path is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicatePolicy {
    /// Replace the stored file (atomically); status success.
    Overwrite,
    /// Keep the stored file, drop the new copy; status success.
    Keep,
    /// Keep the stored file, answer 0x0111 (duplicate SOP instance).
    Reject,
}

/// One stored instance, as reported to the `on_stored` callback.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax: String,
    pub patient_id: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub calling_ae_title: String,
    pub called_ae_title: String,
    /// Size of the data set in bytes (without the Part-10 header).
    pub dataset_bytes: u64,
    /// Values of [`StorageConfig::extra_tags`] found (raw bytes, padding removed).
    pub attributes: Vec<(u32, Vec<u8>)>,
}

/// Called after an instance is in place. Returns the status to answer (None = keep
/// ours) or an error text (answered as 0x0110 processing failure). A failure status
/// removes the stored file.
pub type OnStored = dyn Fn(&StoredInstance) -> Result<Option<u16>, String> + Send + Sync;

/// What became of one stored instance handed to the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexOutcome {
    /// Committed: C-FIND, C-MOVE and C-GET find it.
    Indexed,
    /// The instance cannot be indexed (it lacks a key the index needs, such as its
    /// StudyInstanceUID); it is stored, and logged.
    Skipped(String),
    /// The index could not record it (the database failed): not acknowledged.
    Failed(String),
}

/// Receives stored instances in batches, on the indexer thread (see [`Indexer`]), and
/// returns one outcome per instance, in order, once the batch is committed.
pub type OnIndex = dyn Fn(&[StoredInstance]) -> Vec<IndexOutcome> + Send + Sync;

#[allow(clippy::large_enum_variant)] // one per stored instance
enum IndexMsg {
    Item(StoredInstance, Option<std::sync::mpsc::SyncSender<IndexOutcome>>),
    Flush(std::sync::mpsc::Sender<()>),
}

/// Hands stored instances to an index in batches, on its own thread (group commit: one
/// call, one transaction per batch). Each instance pushed gets an [`IndexTicket`] that
/// resolves once its batch is committed: the C-STORE response waits for it, so a success
/// goes out only for what C-FIND can see. [`Indexer::flush`] waits until everything
/// pushed so far is indexed.
pub struct Indexer {
    tx: Mutex<std::sync::mpsc::Sender<IndexMsg>>,
}

/// The outcome of one instance handed to the [`Indexer`], once its batch is committed.
pub struct IndexTicket(std::sync::mpsc::Receiver<IndexOutcome>);

/// Longest a C-STORE response waits for the index.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl IndexTicket {
    /// The outcome if known now.
    pub fn try_outcome(&self) -> Option<IndexOutcome> {
        match self.0.try_recv() {
            Ok(o) => Some(o),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(IndexOutcome::Failed("the indexer stopped".into())),
        }
    }

    /// Wait for the outcome (at most [`INDEX_WAIT`]).
    pub fn wait(&self) -> IndexOutcome {
        match self.0.recv_timeout(INDEX_WAIT) {
            Ok(o) => o,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                IndexOutcome::Failed(format!("the index did not commit within {} s", INDEX_WAIT.as_secs()))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => IndexOutcome::Failed("the indexer stopped".into()),
        }
    }
}

/// One batch through the callback; a batch that failed as a whole is tried again one
/// instance at a time, so that one instance the index chokes on fails alone.
fn index_batch(on_index: &OnIndex, batch: &[StoredInstance]) -> Vec<IndexOutcome> {
    let call = |items: &[StoredInstance]| -> Vec<IndexOutcome> {
        let mut out = on_index(items);
        out.resize(items.len(), IndexOutcome::Failed("the index gave no answer for it".into()));
        out
    };
    let out = call(batch);
    if batch.len() > 1 && out.iter().all(|o| matches!(o, IndexOutcome::Failed(_))) {
        warn!("indexing a batch of {} failed; trying each instance alone", batch.len());
        return batch.iter().flat_map(|one| call(std::slice::from_ref(one))).collect();
    }
    out
}

impl Indexer {
    pub fn new(on_index: Arc<OnIndex>) -> Indexer {
        let (tx, rx) = std::sync::mpsc::channel::<IndexMsg>();
        let _ = std::thread::Builder::new().name("fastdimse-indexer".into()).spawn(move || {
            const BATCH: usize = 1024;
            while let Ok(first) = rx.recv() {
                let mut batch = Vec::new();
                let mut tickets = Vec::new();
                let mut waiters = Vec::new();
                let mut next = Some(first);
                while let Some(msg) = next.take() {
                    match msg {
                        IndexMsg::Item(i, t) => {
                            batch.push(i);
                            tickets.push(t);
                        }
                        IndexMsg::Flush(w) => waiters.push(w),
                    }
                    if batch.len() >= BATCH {
                        break;
                    }
                    next = rx.try_recv().ok();
                }
                if !batch.is_empty() {
                    let outcomes = index_batch(on_index.as_ref(), &batch);
                    for ((item, ticket), outcome) in batch.iter().zip(tickets).zip(outcomes) {
                        match &outcome {
                            IndexOutcome::Indexed => {}
                            IndexOutcome::Skipped(why) => warn!("not indexed: {}: {why}", item.path.display()),
                            IndexOutcome::Failed(why) => warn!("index failed for {}: {why}", item.path.display()),
                        }
                        if let Some(t) = ticket {
                            let _ = t.send(outcome);
                        }
                    }
                }
                for w in waiters {
                    let _ = w.send(());
                }
            }
        });
        Indexer { tx: Mutex::new(tx) }
    }

    /// Hand one stored instance to the index; the ticket resolves once it is committed.
    pub fn push(&self, item: StoredInstance) -> IndexTicket {
        let (ttx, trx) = std::sync::mpsc::sync_channel(1);
        if let Ok(tx) = self.tx.lock() {
            let _ = tx.send(IndexMsg::Item(item, Some(ttx)));
        }
        IndexTicket(trx)
    }

    /// Wait until every instance pushed so far has been indexed.
    pub fn flush(&self) {
        let (wtx, wrx) = std::sync::mpsc::channel();
        let sent = self.tx.lock().map(|tx| tx.send(IndexMsg::Flush(wtx)).is_ok()).unwrap_or(false);
        if sent {
            let _ = wrx.recv_timeout(INDEX_WAIT);
        }
    }
}

impl Drop for Indexer {
    /// Everything stored is indexed before the storage handler goes away.
    fn drop(&mut self) {
        self.flush();
    }
}

/// A C-STORE-RSP held until the instance's index entry is committed.
struct PendingStore {
    request: Command,
    status: u16,
    comment: Option<String>,
    ticket: IndexTicket,
}

impl PendingStore {
    fn response(&self, outcome: IndexOutcome) -> Command {
        match outcome {
            IndexOutcome::Indexed | IndexOutcome::Skipped(_) => store_response(&self.request, self.status, self.comment.clone()),
            IndexOutcome::Failed(why) => {
                warn!("{} not acknowledged: {why}", self.request.affected_sop_instance_uid.as_deref().unwrap_or("?"));
                store_response(&self.request, status::OUT_OF_RESOURCES, Some(format!("stored but not indexed: {why}")))
            }
        }
    }
}

impl crate::net::Deferred for PendingStore {
    fn ready(&mut self) -> Option<Command> {
        let outcome = self.ticket.try_outcome()?;
        Some(self.response(outcome))
    }
    fn wait(self: Box<Self>) -> Command {
        let outcome = self.ticket.wait();
        self.response(outcome)
    }
}

/// Settings of the storage SCP.
pub struct StorageConfig {
    pub storage_dir: PathBuf,
    /// Path template with `{Keyword}` placeholders (PatientID, StudyInstanceUID,
    /// SeriesInstanceUID, SOPInstanceUID, SOPClassUID), '/'-separated.
    pub layout: String,
    pub duplicates: DuplicatePolicy,
    /// fsync each file before renaming it into place.
    pub fsync: bool,
    /// More top-level tags whose values are read from each stored instance and passed
    /// on in [`StoredInstance::attributes`] (for an index).
    pub extra_tags: Vec<u32>,
}

impl StorageConfig {
    pub fn new(storage_dir: impl Into<PathBuf>) -> StorageConfig {
        StorageConfig {
            storage_dir: storage_dir.into(),
            layout: DEFAULT_LAYOUT.into(),
            duplicates: DuplicatePolicy::Overwrite,
            fsync: false,
            extra_tags: Vec::new(),
        }
    }

    /// Check the layout template: relative, no '..', only known placeholders.
    pub fn validate(&self) -> Result<(), String> {
        if self.layout.is_empty() || self.layout.starts_with('/') || self.layout.contains('\\') {
            return Err(format!("layout {:?} must be a relative '/'-separated path", self.layout));
        }
        for comp in self.layout.split('/') {
            if comp.is_empty() || comp == "." || comp == ".." {
                return Err(format!("layout {:?} has an empty, '.' or '..' component", self.layout));
            }
            let mut rest = comp;
            while let Some(i) = rest.find('{') {
                let j = rest[i..].find('}').ok_or_else(|| format!("layout {:?}: unclosed '{{'", self.layout))? + i;
                let key = &rest[i + 1..j];
                if !matches!(key, "PatientID" | "StudyInstanceUID" | "SeriesInstanceUID" | "SOPInstanceUID" | "SOPClassUID") {
                    return Err(format!("layout {:?}: unknown placeholder {{{key}}}", self.layout));
                }
                rest = &rest[j + 1..];
            }
        }
        Ok(())
    }
}

/// Make one path component safe: only [A-Za-z0-9._-+=@^], never empty, '.', '..',
/// never longer than 128 bytes. A value from a peer can therefore never name a folder
/// outside the storage folder or a hidden/temporary file.
pub fn sanitize_component(value: &str) -> String {
    let mut s: String = value
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '=' | '@' | '^') { c } else { '_' })
        .collect();
    if s.len() > 128 {
        s.truncate(128);
    }
    if s.is_empty() {
        return "UNKNOWN".into();
    }
    if s.starts_with('.') {
        s.replace_range(0..1, "_");
    }
    s
}

/// The relative path of an instance under the storage folder.
pub fn layout_path(layout: &str, values: &dyn Fn(&str) -> String) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in layout.split('/') {
        let mut s = String::new();
        let mut rest = comp;
        while let Some(i) = rest.find('{') {
            s.push_str(&rest[..i]);
            let Some(j) = rest[i..].find('}').map(|j| j + i) else { break };
            s.push_str(&values(&rest[i + 1..j]));
            rest = &rest[j + 1..];
        }
        s.push_str(rest);
        out.push(sanitize_component(&s));
    }
    debug_assert!(out.components().all(|c| matches!(c, Component::Normal(_))));
    out
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The sink of one incoming instance: a temporary file that deletes itself unless
/// committed.
pub struct TempFileSink {
    file: Option<BufWriter<File>>,
    tmp_path: PathBuf,
    meta_len: u64,
    written: u64,
    open_error: Option<io::Error>,
    committed: bool,
    /// The first bytes of the data set, kept while they come through `write` (spliced
    /// data is not seen): the header values are read from here, not from the file.
    prefix: Vec<u8>,
    /// False once a byte reached the file without passing through `prefix` (which then
    /// stops growing: it stays the data set's first bytes).
    prefix_contiguous: bool,
}

/// How much of each data set's start is kept to read its header values from.
const PREFIX_MAX: usize = 64 * 1024;
/// What a sink asks to see through `write` before data is spliced into it.
const PREFIX_WANTED: usize = 16 * 1024;

impl TempFileSink {
    fn create(dir: &Path, meta: &FileMeta) -> TempFileSink {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        let pid = *PID.get_or_init(std::process::id);
        let tmp_path = dir.join(format!(".fastdimse-{pid}-{n}.part"));
        let mut sink = TempFileSink {
            file: None,
            tmp_path,
            meta_len: 0,
            written: 0,
            open_error: None,
            committed: false,
            prefix: Vec::new(),
            prefix_contiguous: true,
        };
        let r = (|| -> io::Result<()> {
            let f = File::create(&sink.tmp_path)?;
            // Small buffer: the meta group is buffered, PDV-sized data writes go straight through.
            let mut w = BufWriter::with_capacity(16 * 1024, f);
            sink.meta_len = dataset::write_part10_meta(&mut w, meta).map_err(|e| io::Error::other(e.to_string()))?;
            sink.file = Some(w);
            Ok(())
        })();
        if let Err(e) = r {
            let _ = fs::remove_file(&sink.tmp_path);
            sink.open_error = Some(e);
        }
        sink
    }

    fn finish(&mut self, fsync: bool) -> io::Result<()> {
        if let Some(e) = self.open_error.take() {
            return Err(e);
        }
        let w = self.file.take().ok_or_else(|| io::Error::other("temporary file already closed"))?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        if fsync {
            f.sync_all()?;
        }
        Ok(())
    }
}

impl Write for TempFileSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.file.as_mut() {
            Some(f) => {
                let n = f.write(buf)?;
                if self.prefix_contiguous && self.prefix.len() < PREFIX_MAX {
                    let take = n.min(PREFIX_MAX - self.prefix.len());
                    self.prefix.extend_from_slice(&buf[..take]);
                }
                self.written += n as u64;
                Ok(n)
            }
            None => Err(self
                .open_error
                .as_ref()
                .map(|e| io::Error::new(e.kind(), e.to_string()))
                .unwrap_or_else(|| io::Error::other("temporary file closed"))),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map(|f| f.flush()).unwrap_or(Ok(()))
    }
}

impl Sink for TempFileSink {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }

    fn splice_fd(&mut self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        let f = self.file.as_mut()?;
        if f.flush().is_err() {
            return None;
        }
        Some(f.get_ref().as_raw_fd())
    }

    fn prefix_wanted(&self) -> usize {
        // Enough for the header of most data sets: the keys of the layout are then read
        // from memory instead of from the file.
        if self.prefix_contiguous && self.file.is_some() {
            PREFIX_WANTED.saturating_sub(self.prefix.len())
        } else {
            0
        }
    }

    fn spliced(&mut self, n: u64) {
        if n > 0 && self.prefix.len() < PREFIX_MAX {
            self.prefix_contiguous = false;
        }
        self.written += n;
    }
}

impl Drop for TempFileSink {
    fn drop(&mut self) {
        if !self.committed {
            self.file = None;
            if fs::remove_file(&self.tmp_path).is_ok() {
                debug!("removed incomplete {}", self.tmp_path.display());
            }
        }
    }
}

/// Serves C-STORE (and C-ECHO) by writing files under the storage folder.
pub struct StorageHandler {
    pub config: StorageConfig,
    pub on_stored: Option<Arc<OnStored>>,
    pub indexer: Option<Indexer>,
    /// Folders already made (saves a create_dir_all walk per instance).
    known_dirs: Mutex<std::collections::HashSet<PathBuf>>,
}

impl StorageHandler {
    pub fn new(config: StorageConfig, on_stored: Option<Arc<OnStored>>) -> io::Result<StorageHandler> {
        config.validate().map_err(io::Error::other)?;
        fs::create_dir_all(&config.storage_dir)?;
        // Leftovers of a crashed earlier run: a .part is never a complete instance; a
        // .replaced is an acknowledged copy set aside for a replacement that was never
        // acknowledged (the aside goes before the response does), so it goes back.
        if let Ok(rd) = fs::read_dir(&config.storage_dir) {
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".fastdimse-") && name.ends_with(".part") {
                    let _ = fs::remove_file(e.path());
                } else if name.starts_with(".fastdimse-") && name.ends_with(".replaced.target") {
                    restore_aside(&config.storage_dir, &e.path());
                }
            }
        }
        Ok(StorageHandler { config, on_stored, indexer: None, known_dirs: Mutex::new(Default::default()) })
    }

    /// Make the folder of `path` (and remember it was made).
    fn make_parent(&self, path: &Path) -> Result<(), (u16, Option<String>)> {
        let Some(parent) = path.parent() else { return Ok(()) };
        fs::create_dir_all(parent)
            .map_err(|e| (status::OUT_OF_RESOURCES, Some(format!("cannot create {}: {e}", parent.display()))))?;
        if let Ok(mut d) = self.known_dirs.lock() {
            if d.len() > 10_000 {
                d.clear();
            }
            d.insert(parent.to_path_buf());
        }
        Ok(())
    }

    /// Finish one received instance: returns (status, error comment), and the index
    /// ticket the response must wait for when the instance went to the index.
    fn store(&self, negotiated: &Negotiated, ts: &str, command: &Command, data: MessageData) -> (u16, Option<String>, Option<IndexTicket>) {
        let (st, comment, stored) = self.store_file(negotiated, ts, command, data);
        let ticket = match (stored, &self.indexer) {
            (Some(item), Some(ix)) => Some(ix.push(item)),
            _ => None,
        };
        (st, comment, ticket)
    }

    /// Write the instance into place: (status, comment, the stored instance if it is in place).
    fn store_file(&self, negotiated: &Negotiated, ts: &str, command: &Command, data: MessageData) -> (u16, Option<String>, Option<StoredInstance>) {
        let class = command.affected_sop_class_uid.clone().unwrap_or_default();
        let instance = command.affected_sop_instance_uid.clone().unwrap_or_default();
        let (sink, error) = match data {
            MessageData::Sink { sink, error } => (sink, error),
            MessageData::Memory(_) | MessageData::Discarded | MessageData::None => {
                return (status::CANNOT_UNDERSTAND, Some("C-STORE-RQ without a data set".into()), None);
            }
        };
        let Ok(mut sink) = sink.into_any().downcast::<TempFileSink>() else {
            return (status::PROCESSING_FAILURE, Some("internal error: unexpected sink".into()), None);
        };
        if let Some(e) = error.or_else(|| sink.finish(self.config.fsync).err()) {
            warn!("cannot store {instance}: {e}");
            return (status::OUT_OF_RESOURCES, Some(format!("cannot write the instance: {e}")), None);
        }
        // Read the keys the layout needs from the file just written.
        let mut wanted = vec![TAG_SOP_CLASS_UID, TAG_SOP_INSTANCE_UID, TAG_PATIENT_ID, TAG_STUDY_INSTANCE_UID, TAG_SERIES_INSTANCE_UID];
        wanted.extend(self.config.extra_tags.iter().copied());
        // The prefix is always the data set's first bytes (it stops growing at the first
        // spliced byte); when the wanted keys lie within it, the file is not read again.
        let from_prefix = if !TransferSyntax::from_uid(ts).is_deflated() {
            let (found, passed, err) =
                crate::dataset::scan::scan_raw_until(&sink.prefix[..], TransferSyntax::from_uid(ts).encoding(), &wanted);
            // Final when the scan got past the wanted tags, or the prefix is the whole data
            // set (and something could be read from it; else the file gives the error).
            let whole = sink.prefix.len() as u64 == sink.written && !(found.is_empty() && err.is_some());
            (passed || whole).then_some(found)
        } else {
            None
        };
        let raw = match from_prefix.map(Ok).unwrap_or_else(|| read_keys(&sink.tmp_path, sink.meta_len, ts, &wanted)) {
            Ok(v) => v,
            Err(e) => {
                warn!("cannot read the data set of {instance}: {e}");
                return (status::CANNOT_UNDERSTAND, Some(format!("cannot parse the data set: {e}")), None);
            }
        };
        let text = |v: &Vec<u8>| String::from_utf8_lossy(v).trim_start_matches(' ').to_string();
        let values: std::collections::HashMap<u32, String> = raw.iter().map(|(t, v)| (*t, text(v))).collect();
        let mut st = status::SUCCESS;
        let mut comment = None;
        let ds_class = values.get(&TAG_SOP_CLASS_UID).cloned().unwrap_or_default();
        let ds_instance = values.get(&TAG_SOP_INSTANCE_UID).cloned().unwrap_or_default();
        if ds_class != class || ds_instance != instance {
            st = status::WARNING_DATASET_MISMATCH;
            comment = Some(format!(
                "data set SOP class/instance ({ds_class} / {ds_instance}) differ from the command's ({class} / {instance})"
            ));
        }
        let get = |k: &str| -> String {
            match k {
                "PatientID" => values.get(&TAG_PATIENT_ID).cloned().unwrap_or_default(),
                "StudyInstanceUID" => values.get(&TAG_STUDY_INSTANCE_UID).cloned().unwrap_or_default(),
                "SeriesInstanceUID" => values.get(&TAG_SERIES_INSTANCE_UID).cloned().unwrap_or_default(),
                "SOPInstanceUID" => instance.clone(),
                "SOPClassUID" => class.clone(),
                _ => String::new(),
            }
        };
        let final_path = self.config.storage_dir.join(layout_path(&self.config.layout, &get));
        // Folders made (or found) before are not looked at again: if one has gone since,
        // the rename below fails and makes it again.
        let known = final_path.parent().map(|p| self.known_dirs.lock().map(|d| d.contains(p)).unwrap_or(false)).unwrap_or(true);
        if !known {
            if let Err(e) = self.make_parent(&final_path) {
                return (e.0, e.1, None);
            }
        }
        // With "overwrite", the copy already stored is set aside until the new one is
        // accepted (by the handler, if any), so a refused replacement loses nothing.
        // Without a handler nothing can refuse it any more: the rename replaces the
        // earlier copy atomically, and there is no need to look first.
        let mut previous: Option<PathBuf> = None;
        let look = !(self.config.duplicates == DuplicatePolicy::Overwrite && self.on_stored.is_none());
        if look && final_path.exists() {
            match self.config.duplicates {
                DuplicatePolicy::Overwrite => {
                    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
                    let aside = self.config.storage_dir.join(format!(".fastdimse-{}-{n}.replaced", std::process::id()));
                    if let Err(e) = set_aside(&final_path, &aside, &self.config.storage_dir, self.config.fsync) {
                        return (status::OUT_OF_RESOURCES, Some(format!("cannot replace {}: {e}", final_path.display())), None);
                    }
                    info!("replacing {}", final_path.display());
                    previous = Some(aside);
                }
                DuplicatePolicy::Keep => {
                    info!("{instance} already stored at {}; new copy dropped", final_path.display());
                    return (st, comment, None);
                }
                DuplicatePolicy::Reject => {
                    return (status::DUPLICATE_SOP_INSTANCE, Some(format!("{instance} is already stored")), None);
                }
            }
        }
        let restore = |previous: &Option<PathBuf>| {
            if let Some(p) = previous {
                match fs::rename(p, &final_path) {
                    Ok(()) => {
                        let _ = fs::remove_file(target_of(p));
                    }
                    Err(e) => warn!("cannot put back the earlier copy of {}: {e}", final_path.display()),
                }
            }
        };
        let mut moved = fs::rename(&sink.tmp_path, &final_path);
        if matches!(&moved, Err(e) if e.kind() == std::io::ErrorKind::NotFound) && sink.tmp_path.exists() {
            // the folder went away since we made it
            if let Err(e) = self.make_parent(&final_path) {
                restore(&previous);
                return (e.0, e.1, None);
            }
            moved = fs::rename(&sink.tmp_path, &final_path);
        }
        if let Err(e) = moved {
            restore(&previous);
            return (status::OUT_OF_RESOURCES, Some(format!("cannot move the file into place: {e}")), None);
        }
        sink.committed = true;
        if self.config.fsync {
            // The rename (and any folder made for it) is durable too, not only the bytes.
            if let Err(e) = sync_dirs(&final_path, &self.config.storage_dir, !known) {
                warn!("cannot sync the folder of {}: {e}", final_path.display());
                return (status::OUT_OF_RESOURCES, Some(format!("cannot sync the folder: {e}")), None);
            }
        }
        let stored = StoredInstance {
            path: final_path.clone(),
            sop_class_uid: class.clone(),
            sop_instance_uid: instance.clone(),
            transfer_syntax: ts.to_string(),
            patient_id: get("PatientID"),
            study_instance_uid: get("StudyInstanceUID"),
            series_instance_uid: get("SeriesInstanceUID"),
            calling_ae_title: negotiated.peer_ae_title.clone(),
            called_ae_title: negotiated.our_ae_title.clone(),
            dataset_bytes: sink.written,
            attributes: self.config.extra_tags.iter().filter_map(|t| raw.get(t).map(|v| (*t, v.clone()))).collect(),
        };
        debug!("stored {} ({} bytes)", final_path.display(), sink.written);
        let mut answer = (st, comment);
        if let Some(cb) = &self.on_stored {
            match cb(&stored) {
                Ok(None) => {}
                Ok(Some(s)) => answer = (s, None),
                Err(e) => {
                    warn!("storage handler failed for {}: {e}", stored.sop_instance_uid);
                    answer = (status::PROCESSING_FAILURE, Some(e));
                }
            }
        }
        if status::is_failure(answer.0) {
            // Refused by the handler: the new copy goes, an earlier one comes back.
            let _ = fs::remove_file(&final_path);
            restore(&previous);
            return (answer.0, answer.1, None);
        }
        if let Some(p) = previous {
            // The aside first, then the note of where it belonged (see `restore_aside`).
            if fs::remove_file(&p).is_ok() {
                let _ = fs::remove_file(target_of(&p));
            }
        }
        (answer.0, answer.1, Some(stored))
    }
}

/// `.fastdimse-P-N.replaced` -> `.fastdimse-P-N.replaced.target`: the note, beside the
/// aside copy, of the path it was taken from.
fn target_of(aside: &Path) -> PathBuf {
    let mut s = aside.as_os_str().to_os_string();
    s.push(".target");
    PathBuf::from(s)
}

/// Set the stored copy at `path` aside to `aside`, writing first (durably with `fsync`)
/// where it came from, so that a crash before the replacement is acknowledged can put
/// it back (`restore_aside` at the next start).
fn set_aside(path: &Path, aside: &Path, storage_dir: &Path, fsync: bool) -> io::Result<()> {
    let target = target_of(aside);
    let rel = path.strip_prefix(storage_dir).unwrap_or(path);
    let mut f = File::create(&target)?;
    f.write_all(rel.as_os_str().as_encoded_bytes())?;
    if fsync {
        f.sync_all()?;
    }
    drop(f);
    if let Err(e) = fs::rename(path, aside) {
        let _ = fs::remove_file(&target);
        return Err(e);
    }
    if fsync {
        File::open(storage_dir)?.sync_all()?;
    }
    Ok(())
}

/// At start: put an aside copy back where its note says it came from (over whatever is
/// there: that replacement was never acknowledged), then drop the note.
fn restore_aside(storage_dir: &Path, target: &Path) {
    let aside = target.with_extension("");
    let rel = match fs::read(target) {
        Ok(b) if !b.is_empty() => PathBuf::from(String::from_utf8_lossy(&b).into_owned()),
        _ => {
            warn!("cannot read {}; leaving {} for a person to look at", target.display(), aside.display());
            return;
        }
    };
    // Only inside the storage folder: the note is our own, but a path from disk is checked.
    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        warn!("{} names a path outside the storage folder; left as it is", target.display());
        return;
    }
    if aside.exists() {
        let dest = storage_dir.join(&rel);
        if let Some(parent) = dest.parent() {
            let _ = fs::create_dir_all(parent);
        }
        if let Err(e) = fs::rename(&aside, &dest) {
            warn!("cannot put {} back at {}: {e}", aside.display(), dest.display());
            return;
        }
        warn!("put back {} (its replacement was interrupted before it was acknowledged)", dest.display());
    }
    let _ = fs::remove_file(target);
}

/// fsync the folder holding `path` and, when `made` (folders may have been created for
/// it), every folder above it up to `root`.
fn sync_dirs(path: &Path, root: &Path, made: bool) -> io::Result<()> {
    let mut dir = path.parent();
    while let Some(d) = dir {
        File::open(d)?.sync_all()?;
        if !made || d == root || !d.starts_with(root) {
            break;
        }
        dir = d.parent();
    }
    Ok(())
}

fn read_keys(path: &Path, offset: u64, ts: &str, wanted: &[u32]) -> Result<std::collections::HashMap<u32, Vec<u8>>, String> {
    use std::io::{BufReader, Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let r = BufReader::with_capacity(16 * 1024, f);
    let syntax = TransferSyntax::from_uid(ts);
    let (found, err) = if syntax.is_deflated() {
        scan_raw(flate2::read::DeflateDecoder::new(r), syntax.encoding(), wanted)
    } else {
        scan_raw(r, syntax.encoding(), wanted)
    };
    match err {
        Some(e) if found.is_empty() => Err(e.to_string()),
        _ => Ok(found),
    }
}

impl ServiceHandler for StorageHandler {
    fn data_sink(&self, negotiated: &Negotiated, context_id: u8, command: &Command) -> DataSink {
        if command.command_field != field::C_STORE_RQ {
            return DataSink::Memory;
        }
        let ts = negotiated.context(context_id).map(|c| c.transfer_syntax.clone()).unwrap_or_default();
        let mut meta = FileMeta::new(
            command.affected_sop_class_uid.as_deref().unwrap_or(""),
            command.affected_sop_instance_uid.as_deref().unwrap_or(""),
            &ts,
        );
        meta.implementation_class_uid = crate::ul::DEFAULT_IMPLEMENTATION_CLASS_UID.to_string();
        meta.source_ae_title = Some(negotiated.peer_ae_title.clone());
        DataSink::Writer(Box::new(TempFileSink::create(&self.config.storage_dir, &meta)))
    }

    fn on_message(&self, assoc: &mut Association, ctx: u8, command: Command, data: MessageData) -> Result<(), NetError> {
        if command.command_field != field::C_STORE_RQ {
            return answer_echo_or_unrecognized(assoc, ctx, &command);
        }
        let negotiated = assoc.negotiated();
        let accepted = negotiated.context(ctx).cloned();
        let (st, comment, ticket) = match accepted {
            Some(c) if command.affected_sop_class_uid.as_deref() == Some(c.abstract_syntax.as_str()) => {
                self.store(negotiated, &c.transfer_syntax, &command, data)
            }
            Some(c) => (
                status::SOP_CLASS_NOT_SUPPORTED,
                Some(format!(
                    "affected SOP class {} is not the abstract syntax {} of presentation context {ctx}",
                    command.affected_sop_class_uid.as_deref().unwrap_or("(none)"),
                    c.abstract_syntax
                )),
                None,
            ),
            None => (status::SOP_CLASS_NOT_SUPPORTED, Some(format!("presentation context {ctx} not accepted")), None),
        };
        match ticket {
            // Acknowledged means findable: the response waits for the index commit
            // (group commit: the association reads on while the peer keeps sending).
            Some(ticket) if !status::is_failure(st) => {
                assoc.defer_response(ctx, Box::new(PendingStore { request: command, status: st, comment, ticket }))
            }
            _ => assoc.send_message(ctx, &store_response(&command, st, comment), None),
        }
    }
}

/// The C-STORE-RSP for `request`, with the comment as Error Comment where it belongs.
fn store_response(request: &Command, st: u16, comment: Option<String>) -> Command {
    let mut rsp = Command::response_to(request, st);
    if let Some(c) = comment {
        if status::is_failure(st) || st & 0xF000 == 0xB000 {
            rsp.error_comment = Some(truncate_lo(&c));
        }
    }
    rsp
}

/// Error Comment is LO: at most 64 characters.
fn truncate_lo(s: &str) -> String {
    s.chars().filter(|c| *c != '\\' && !c.is_control()).take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_stay_inside_the_storage_folder() {
        let evil = |k: &str| match k {
            "PatientID" => "../../etc".to_string(),
            "StudyInstanceUID" => "/abs/path".to_string(),
            "SeriesInstanceUID" => "..".to_string(),
            _ => "a\0b\\c:d".to_string(),
        };
        let p = layout_path(DEFAULT_LAYOUT, &evil);
        assert!(p.components().all(|c| matches!(c, Component::Normal(_))), "{p:?}");
        assert_eq!(p.components().count(), 4);
        assert!(p.iter().all(|c| c != ".." && c != "." && !c.to_string_lossy().starts_with('.')), "{p:?}");
        assert_eq!(sanitize_component(""), "UNKNOWN");
        assert_eq!(sanitize_component("."), "_");
        assert_eq!(sanitize_component("1.2.3"), "1.2.3");
        assert!(sanitize_component(&"x".repeat(1000)).len() <= 128);
    }

    #[test]
    fn layout_templates_are_validated() {
        let mut c = StorageConfig::new("/tmp/x");
        assert!(c.validate().is_ok());
        for bad in ["/abs/{SOPInstanceUID}", "{PatientID}/../x", "{Nope}.dcm", "a//b", "{PatientID"] {
            c.layout = bad.into();
            assert!(c.validate().is_err(), "{bad}");
        }
        c.layout = "{SOPClassUID}/{SOPInstanceUID}".into();
        assert!(c.validate().is_ok());
    }
}
