//! C-STOREs on one open association: [`start_one`] sends a C-STORE-RQ (from a file,
//! checked first, or from memory, transcoded when the accepted syntax differs),
//! [`collect_one`] settles the next C-STORE-RSP (matched by message ID, in any order),
//! within the window [`window_of`] allows; [`send_on`] sends one at a time on an
//! association opened by the peer (a C-GET SCP).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::Ordering;

use log::{debug, info, warn};

use super::*;
use crate::dataset::{coerce_header, Coercion};

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
}

/// The reason recorded on the last instance that failed to send.
pub(super) fn last_reason(waiting: &[InFlight]) -> String {
    waiting.last().and_then(|f| f.result.reason.clone()).unwrap_or_else(|| "sending failed".into())
}

/// An association ended with `waiting` instances unanswered. If it proposed an
/// asynchronous operations window and never answered a single C-STORE, the window item
/// itself may be what the peer cannot take (some PACS drop the connection at the first
/// request when the A-ASSOCIATE-RQ carried one): further associations propose none, and
/// the unanswered instances are sent once more, first. Otherwise they fail with `why`.
pub(super) fn settle_lost(
    waiting: &mut Vec<InFlight>,
    why: &str,
    answered: usize,
    cfg: &mut RequestorConfig,
    queue: &mut VecDeque<(Planned, bool)>,
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
            } else if let Some(p) = f.planned {
                again.push(p);
            } else {
                let mut r = f.result;
                r.reason = Some(why.to_string());
                emit(r);
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
pub(super) fn window_of(a: &Association, proposed: Option<(u16, u16)>) -> usize {
    let Some((asked, _)) = proposed else { return 1 };
    let cap = |n: u16| if n == 0 { MAX_WINDOW } else { (n as usize).min(MAX_WINDOW) };
    cap(a.negotiated().async_ops_window.0).min(cap(asked))
}

/// A C-STORE-RQ sent, its response not yet in.
pub(super) struct InFlight {
    /// The instance itself, kept (by the streaming sender) for a retry.
    pub(super) planned: Option<Planned>,
    pub(super) id: u16,
    pub(super) result: StoreResult,
    /// (from, to) when the instance was transcoded on the way.
    pub(super) transcoded: Option<(String, String)>,
    /// Sent before, on an association that ended without answering it.
    pub(super) retried: bool,
}

pub(super) enum Started {
    /// Settled without sending: refused before the first byte (no context, unreadable or
    /// damaged file, ...).
    Done(StoreResult),
    Waiting(InFlight),
    /// The association failed while the instance was being sent (`result.reason` says
    /// how); it is aborted if it was not over already.
    SendFailed(InFlight),
}

/// What [`collect_one`] saw.
pub(super) enum Collected {
    /// A C-STORE-RSP settled one waiting instance.
    One,
    /// The association ended (failed or released by the peer): the waiting instances
    /// are still in the list, for the caller to settle.
    Lost(String),
}

/// Report every waiting instance as failed with `why`.
pub(super) fn fail_waiting(waiting: &mut Vec<InFlight>, why: &str, emit: &mut dyn FnMut(StoreResult)) {
    for f in waiting.drain(..) {
        let mut r = f.result;
        r.reason = Some(why.to_string());
        emit(r);
    }
}

/// Wait for the next C-STORE-RSP and settle the instance it answers (responses may come
/// in any order). When the association fails or is released instead, the waiting
/// instances stay in `waiting` and the caller settles them (none is left unreported).
pub(super) fn collect_one(a: &mut Association, opts: &StoreOptions, waiting: &mut Vec<InFlight>, emit: &mut dyn FnMut(StoreResult)) -> Collected {
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
pub(super) fn start_one(a: &mut Association, opts: &StoreOptions, p: &Planned) -> Started {
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
        return not_sent(r, if any.is_empty() {
            format!("the peer accepted no presentation context for SOP class {}", p.class)
        } else {
            format!(
                "the peer does not accept transfer syntax {} for SOP class {} (it accepted {}), and fastdimse does not decompress",
                p.ts,
                p.class,
                any.join(", ")
            )
        });
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
            Err(e) => return not_sent(r, format!("cannot transcode: {e}")),
        }
    } else {
        None
    };
    r.sent_transfer_syntax = Some(ts.clone());
    if let Some(co) = opts.coerce.as_deref().filter(|c| !c.is_empty()) {
        let sent = match send_coerced(a, ctx, &cmd, p, co, transcoder.as_mut()) {
            Ok(sent) => sent,
            Err(why) => return not_sent(r, why),
        };
        return finish_sent(a, r, id, sent, transcode.then(|| (p.ts.clone(), ts)));
    }
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
                            crate::dataset::scan::check_complete(&mut std::io::Cursor::new(&data), *len, syntax.encoding(), *offset)
                        }
                    }
                    Ok(n) => Err(format!("the file changed while being read ({n} of {len} bytes)")),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(why) = checked {
                    return not_sent(r, format!("not sent: {}: {why}", path.display()));
                }
                a.send_message(ctx, &cmd, Some(&data)).map(|_| *len)
            }
            Ok(f) => {
                // Never pass a damaged file on: its structure is checked first (a few
                // small reads; values are skipped with seeks).
                if let Err(why) = check_file(&f, *offset, *len, &p.ts) {
                    return not_sent(r, format!("not sent: {}: {why}", path.display()));
                }
                a.send_message_from_file(ctx, &cmd, &f, *offset, *len)
            }
            Err(e) => return not_sent(r, format!("cannot open {}: {e}", path.display())),
        },
        Source::File { path, offset, len } => {
            let f = File::open(path).and_then(|mut f| f.seek(SeekFrom::Start(*offset)).map(|_| f));
            match f {
                Ok(mut f) => {
                    let mut limited = (&mut f).take(*len);
                    a.send_message_from(ctx, &cmd, &mut limited, None, transcoder.as_mut())
                }
                Err(e) => return not_sent(r, format!("cannot open {}: {e}", path.display())),
            }
        }
        Source::Memory(d) => {
            let mut cur = std::io::Cursor::new(d.as_slice());
            let known = if transcode { None } else { Some(d.len() as u64) };
            a.send_message_from(ctx, &cmd, &mut cur, known, transcoder.as_mut())
        }
    };
    finish_sent(a, r, id, sent, transcode.then(|| (p.ts.clone(), ts)))
}

/// Settle what sending one C-STORE-RQ came to: waiting for its response, or failed.
fn finish_sent(a: &mut Association, mut r: StoreResult, id: u16, sent: Result<u64, NetError>, transcoded: Option<(String, String)>) -> Started {
    match sent {
        Ok(n) => r.bytes = n,
        Err(e) => {
            r.reason = Some(format!("sending failed: {e}"));
            // A message cut short cannot be resumed: the association is over.
            if a.is_established() {
                let _ = a.abort();
            }
            return Started::SendFailed(InFlight { planned: None, id, result: r, transcoded, retried: false });
        }
    }
    Started::Waiting(InFlight { planned: None, id, result: r, transcoded, retried: false })
}

/// JPIP Referenced Deflate: the data set is deflated, though the codec reads the UID as
/// an encapsulated one.
const JPIP_REFERENCED_DEFLATE: &str = "1.2.840.10008.1.2.4.95";

/// Send `p` with its header part rewritten by `co` (`dataset::coerce_header`): the
/// rewritten bytes from memory, then the rest of the data set (pixel data above all)
/// read on from the file or buffer, through `transcoder` when the accepted syntax
/// differs. Never with sendfile: the bytes sent differ from the file's. The file is only
/// read. `Err`: not sent, with the reason (a deflated data set, a damaged file, a value
/// that cannot be written).
fn send_coerced(
    a: &mut Association,
    ctx: u8,
    cmd: &Command,
    p: &Planned,
    co: &Coercion,
    transcoder: Option<&mut Transcoder>,
) -> Result<Result<u64, NetError>, String> {
    let syntax = TransferSyntax::from_uid(&p.ts);
    if syntax.is_deflated() || p.ts.trim_end_matches(['\0', ' ']) == JPIP_REFERENCED_DEFLATE {
        return Err(format!(
            "not sent: cannot coerce tags in a deflated data set (transfer syntax {}); fastdimse does not inflate and deflate again to rewrite it",
            p.ts
        ));
    }
    let enc = syntax.encoding();
    let plain = transcoder.is_none();
    let known = |head: usize, rest: u64| plain.then_some(head as u64 + rest);
    let edits = co.edits().len();
    match &p.source {
        Source::File { path, offset, len } => {
            let f = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            check_file(&f, *offset, *len, &p.ts).map_err(|why| format!("not sent: {}: {why}", path.display()))?;
            let mut rd = std::io::BufReader::with_capacity(64 * 1024, f);
            rd.seek(SeekFrom::Start(*offset)).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let h = coerce_header(&mut rd, *len, enc, co, *offset).map_err(|e| format!("not coerced, not sent: {}: {e}", path.display()))?;
            let rest = len.saturating_sub(h.consumed);
            debug!("{}: {edits} element(s) coerced, {} header bytes -> {}", p.instance, h.consumed, h.bytes.len());
            let total = known(h.bytes.len(), rest);
            let mut src = std::io::Cursor::new(h.bytes).chain(rd.take(rest));
            Ok(a.send_message_from(ctx, cmd, &mut src, total, transcoder))
        }
        Source::Memory(d) => {
            let h = coerce_header(&mut std::io::Cursor::new(d.as_slice()), d.len() as u64, enc, co, 0)
                .map_err(|e| format!("not coerced, not sent: {}: {e}", p.instance))?;
            let rest = d.get(h.consumed as usize..).unwrap_or(&[]);
            let total = known(h.bytes.len(), rest.len() as u64);
            let mut src = std::io::Cursor::new(h.bytes).chain(rest);
            Ok(a.send_message_from(ctx, cmd, &mut src, total, transcoder))
        }
    }
}

/// An instance settled without being sent: `why` is the reason.
fn not_sent(mut r: StoreResult, why: String) -> Started {
    r.sent_transfer_syntax = None;
    r.reason = Some(why);
    Started::Done(r)
}

/// The structure check of [`crate::dataset::scan::check_complete`] on a file's data set
/// (deflated data sets are checked while they are inflated, by the transcoder or not at all).
fn check_file(f: &File, offset: u64, len: u64, ts: &str) -> Result<(), String> {
    let syntax = TransferSyntax::from_uid(ts);
    if syntax.is_deflated() {
        return Ok(());
    }
    let mut r = std::io::BufReader::with_capacity(8192, f);
    r.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    crate::dataset::scan::check_complete(&mut r, len, syntax.encoding(), offset)
}
