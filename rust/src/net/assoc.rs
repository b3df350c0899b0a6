//! One association over one TCP connection, for either role.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::socket::{connect, quick_ack, socket_readable};
#[cfg(target_os = "linux")]
use super::socket::tune_buffers;
use super::{NetError, Timeouts};
use crate::dimse::{self, Command, DimseEvent, Reassembler};
use crate::pdu::{self, AssociateRj, Decoded, Pdu, Pdv};
use crate::ul::{
    self, AcceptorConfig, AcceptorDecision, Event, Indication, Negotiated, Output, RequestorConfig,
    StateMachine,
};

/// Largest PDU body accepted before an association is established (A-ASSOCIATE-RQ/AC
/// with 128 presentation contexts of many transfer syntaxes stays far below this).
const ASSOCIATION_PDU_LIMIT: u32 = 1 << 20;
/// Largest PDU accepted when we advertised "no limit" (max length 0).
const UNLIMITED_PDU_LIMIT: u32 = 1 << 30;
/// Bytes read from the socket at most per read call; the receive buffer grows only with
/// bytes that actually arrived, never with what a length field claims.
const READ_CHUNK: usize = 256 * 1024;

/// Where the data set of an incoming message goes, chosen when its command arrives.
pub enum DataSink {
    /// Collect it in memory (small identifiers, C-FIND).
    Memory,
    /// Stream each fragment to this writer as it arrives (C-STORE to a file).
    Writer(Box<dyn Sink>),
    /// Read and drop it.
    Discard,
}

/// A writer that can be handed back to its creator (who knows its concrete type).
pub trait Sink: Write + Send {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any>;

    /// A file descriptor that data may be spliced into directly (after anything buffered
    /// has been flushed), or None (the default) to get every byte through `write`.
    fn splice_fd(&mut self) -> Option<i32> {
        None
    }

    /// `n` bytes were spliced into `splice_fd` behind the writer's back.
    fn spliced(&mut self, _n: u64) {}

    /// How many more bytes the sink would like through `write` before any are spliced
    /// (a header it reads from memory later); 0 (the default) = none.
    fn prefix_wanted(&self) -> usize {
        0
    }
}

/// Most bytes read through the buffer for [`Sink::prefix_wanted`] per data PDV.
const PREFIX_READ: usize = 16 * 1024;

/// Data PDVs at least this large are spliced from the socket into a file sink (Linux).
const SPLICE_MIN: u32 = 32 * 1024;

/// Zero-copy receive is on unless FASTDIMSE_NO_SPLICE is set (for comparison, or for a
/// file system that does not support splice).
fn splice_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FASTDIMSE_NO_SPLICE").is_none())
}

/// The data set of a received message.
pub enum MessageData {
    /// The command announced no data set.
    None,
    /// Collected in memory.
    Memory(Vec<u8>),
    /// Streamed into the sink; `error` is the first write error, if any (later fragments
    /// were then read and dropped so that the association stays in step).
    Sink { sink: Box<dyn Sink>, error: Option<std::io::Error> },
    /// Read and dropped.
    Discarded,
}

impl MessageData {
    /// The bytes, if collected in memory.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            MessageData::Memory(v) => Some(v),
            _ => None,
        }
    }
}

/// A response given later than its request was handled: a C-STORE-RSP held until the
/// instance is committed to the index ("acknowledged means findable"). The association
/// keeps reading requests while responses wait (a peer with an asynchronous operations
/// window keeps sending), and settles them, in order, before it would block waiting for
/// the peer, before it sends anything else, and before it answers a release.
pub trait Deferred: Send {
    /// The response, if it can be given now without waiting.
    fn ready(&mut self) -> Option<Command>;
    /// Wait for the response (the implementation bounds the wait).
    fn wait(self: Box<Self>) -> Command;
}

/// Most responses held at once; past this the oldest is settled first.
const MAX_DEFERRED: usize = 64;

/// What `Association::receive` returns.
#[allow(clippy::large_enum_variant)] // one per message; boxing the command buys nothing
pub enum Received {
    /// A complete DIMSE message: its command and its data set.
    Message { context_id: u8, command: Command, data: MessageData },
    /// The peer asked to release; answer with [`Association::release_response`].
    ReleaseRequested,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Received::Message { context_id, command, .. } => write!(f, "Message({context_id}, {command})"),
            Received::ReleaseRequested => write!(f, "ReleaseRequested"),
        }
    }
}

/// A message being received.
struct Rx {
    current: Option<(u8, Command)>,
    sink: Option<DataSink>,
    mem: Vec<u8>,
    sink_error: Option<std::io::Error>,
}

/// An established association (or one being established) and its connection.
pub struct Association {
    stream: TcpStream,
    /// Receive buffer: bytes `rpos..rend` are received and not yet consumed; the rest
    /// is room for the next read (zeroed once when the buffer grows, never per read).
    rbuf: Vec<u8>,
    rpos: usize,
    rend: usize,
    wbuf: Vec<u8>,
    sm: StateMachine,
    negotiated: Option<Negotiated>,
    reasm: Reassembler,
    pending: VecDeque<Pdv>,
    timeouts: Timeouts,
    artim: Option<Instant>,
    closed: bool,
    next_message_id: u16,
    peer: String,
    /// The A-ASSOCIATE-RJ we sent, if any (for the log and the error).
    sent_reject: Option<AssociateRj>,
    /// Set by `receive_with` while a data set streams into a sink that can take spliced
    /// data: large data PDVs are then not read into the receive buffer.
    splice_ready: bool,
    /// The pipe used to splice socket -> file (Linux), made on first use.
    pipe: Option<(i32, i32)>,
    /// The socket's receive / send timeouts as last set (None: not known), so that they
    /// are set again only when they change noticeably.
    rcv_timeout: Option<Option<Duration>>,
    snd_timeout: Option<Option<Duration>>,
    /// Responses held back (see [`Deferred`]), oldest first, with their context ids.
    deferred: VecDeque<(u8, Box<dyn Deferred>)>,
}

/// "waiting for X (DIMSE timeout)" -> "waiting for X": the note names the timeout that
/// bounds the wait, which is beside the point when the peer closed the connection.
fn without_timeout_note(what: &'static str) -> &'static str {
    match what.rfind(" (") {
        Some(i) if what.ends_with("timeout)") => &what[..i],
        _ => what,
    }
}

/// A socket timeout within this much of the wanted one is left as it is (it saves one
/// setsockopt per read; the waits are in seconds).
const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

fn close_enough(set: Option<Option<Duration>>, want: Option<Duration>) -> bool {
    match (set, want) {
        (Some(None), None) => true,
        (Some(Some(c)), Some(w)) => {
            c.abs_diff(w) <= TIMEOUT_SLACK.max(w / 100).min(w / 2)
        }
        _ => false,
    }
}

impl Association {
    fn new(stream: TcpStream, sm: StateMachine, timeouts: Timeouts) -> Self {
        let _ = stream.set_nodelay(true);
        #[cfg(target_os = "linux")]
        tune_buffers(&stream);
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        Association {
            stream,
            rbuf: Vec::new(),
            rpos: 0,
            rend: 0,
            wbuf: Vec::new(),
            sm,
            negotiated: None,
            reasm: Reassembler::new(),
            pending: VecDeque::new(),
            timeouts,
            artim: None,
            closed: false,
            next_message_id: 1,
            peer,
            sent_reject: None,
            splice_ready: false,
            pipe: None,
            rcv_timeout: None,
            snd_timeout: None,
            deferred: VecDeque::new(),
        }
    }

    /// SO_RCVTIMEO, unless the one set already is close enough.
    fn set_read_timeout(&mut self, want: Option<Duration>) -> std::io::Result<()> {
        if !close_enough(self.rcv_timeout, want) {
            self.rcv_timeout = None;
            self.stream.set_read_timeout(want)?;
            self.rcv_timeout = Some(want);
        }
        Ok(())
    }

    /// SO_SNDTIMEO, unless the one set already is close enough.
    fn set_write_timeout(&mut self, want: Option<Duration>) -> std::io::Result<()> {
        if !close_enough(self.snd_timeout, want) {
            self.snd_timeout = None;
            self.stream.set_write_timeout(want)?;
            self.snd_timeout = Some(want);
        }
        Ok(())
    }

    /// Requestor: connect to `addr`, propose the association, wait for the answer.
    pub fn request(addr: &str, cfg: &RequestorConfig, timeouts: Timeouts) -> Result<Association, NetError> {
        let rq = ul::build_associate_rq(cfg).map_err(|e| NetError::Negotiation(e.to_string()))?;
        let mut sm = StateMachine::new_requestor();
        let outputs = sm.handle(Event::AssociateRequest(rq.clone()));
        if !outputs.iter().any(|o| matches!(o, Output::ConnectTransport)) {
            return Err(NetError::Protocol("state machine did not ask for a transport connection".into()));
        }
        let stream = connect(addr, timeouts.connect)?;
        let mut a = Association::new(stream, sm, timeouts);
        debug!("{}: connected, sending A-ASSOCIATE-RQ {} -> {}", a.peer, cfg.calling_ae, cfg.called_ae);
        a.step(Event::TransportConnected)?;
        let deadline = timeouts.acse.map(|d| Instant::now() + d);
        loop {
            for ind in a.next_indications(deadline, "waiting for A-ASSOCIATE-AC (ACSE timeout)")? {
                match ind {
                    Indication::AssociateAccepted(ac) => {
                        let neg = ul::interpret_associate_ac(&rq, &ac).map_err(|e| {
                            let _ = a.abort();
                            NetError::Negotiation(e.to_string())
                        })?;
                        info!(
                            "association with {} ({}) accepted: {} context(s), peer max PDU {}",
                            neg.peer_ae_title,
                            a.peer,
                            neg.contexts.len(),
                            neg.peer_max_pdu
                        );
                        a.negotiated = Some(neg);
                        return Ok(a);
                    }
                    Indication::AssociateRejected(rj) => {
                        a.close();
                        info!("association with {} rejected: {}", a.peer, ul::reject_reason_text(rj.result, rj.source, rj.reason));
                        return Err(NetError::Rejected(rj));
                    }
                    other => a.unexpected(other)?,
                }
            }
        }
    }

    /// Acceptor: run negotiation on an accepted TCP connection. On rejection the
    /// A-ASSOCIATE-RJ is sent and an error returned.
    pub fn accept(stream: TcpStream, cfg: &AcceptorConfig, timeouts: Timeouts) -> Result<Association, NetError> {
        Self::accept_or_reject(stream, cfg, timeouts, None)
    }

    /// Like [`accept`](Self::accept), but answers any valid request with `reject` when
    /// given (a server at its association limit rejects this way).
    pub fn accept_or_reject(
        stream: TcpStream,
        cfg: &AcceptorConfig,
        timeouts: Timeouts,
        reject: Option<AssociateRj>,
    ) -> Result<Association, NetError> {
        let mut a = Association::new(stream, StateMachine::new_acceptor(), timeouts);
        a.step(Event::TransportIndication)?;
        loop {
            // The ARTIM timer, started by the state machine, bounds the wait for the RQ.
            for ind in a.next_indications(None, "waiting for A-ASSOCIATE-RQ (ARTIM)")? {
                match ind {
                    Indication::AssociateRequest(rq) => match reject
                        .map(AcceptorDecision::Reject)
                        .unwrap_or_else(|| ul::negotiate_acceptor(&rq, cfg))
                    {
                        AcceptorDecision::Accept(ac, neg) => {
                            a.step(Event::AssociateAccept(ac))?;
                            info!(
                                "association from {} ({}) to {} accepted: {} of {} context(s), peer max PDU {}",
                                neg.peer_ae_title,
                                a.peer,
                                neg.our_ae_title,
                                neg.contexts.len(),
                                rq.presentation_contexts.len(),
                                neg.peer_max_pdu
                            );
                            a.negotiated = Some(neg);
                            return Ok(a);
                        }
                        AcceptorDecision::Reject(rj) => {
                            info!(
                                "association from {} ({}) to {} rejected: {}",
                                rq.calling_ae_title,
                                a.peer,
                                rq.called_ae_title,
                                ul::reject_reason_text(rj.result, rj.source, rj.reason)
                            );
                            a.step(Event::AssociateReject(rj))?;
                            a.drain_until_closed();
                            return Err(NetError::Rejected(rj));
                        }
                    },
                    other => a.unexpected(other)?,
                }
            }
        }
    }

    /// What was negotiated (always present once `request`/`accept` returned Ok).
    pub fn negotiated(&self) -> &Negotiated {
        self.negotiated.as_ref().expect("negotiated is set before an Association is returned")
    }

    pub fn peer_addr(&self) -> &str {
        &self.peer
    }

    pub fn is_established(&self) -> bool {
        !self.closed && self.sm.is_established()
    }

    /// A fresh message id (1, 2, ... wrapping, never 0).
    pub fn next_message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Send one DIMSE message: the command, then the data set if given. Responses held
    /// back ([`defer_response`](Self::defer_response)) go first.
    pub fn send_message(&mut self, context_id: u8, command: &Command, data: Option<&[u8]>) -> Result<(), NetError> {
        if !self.sm.is_established() || self.closed {
            return Err(NetError::NotEstablished(if self.closed { "closed" } else { "not established" }));
        }
        self.settle_deferred(true)?;
        let mut out = std::mem::take(&mut self.wbuf);
        out.clear();
        self.encode_message(context_id, command, data, &mut out);
        let r = self.write_all(&out);
        self.wbuf = out;
        r
    }

    /// Append one DIMSE message to `out` as P-DATA-TF PDUs, to be sent later with
    /// [`send_encoded`](Self::send_encoded): several small responses in one write.
    pub fn append_message(&self, context_id: u8, command: &Command, data: Option<&[u8]>, out: &mut Vec<u8>) {
        self.encode_message(context_id, command, data, out);
    }

    /// Send messages encoded by [`append_message`](Self::append_message), in one write
    /// (responses held back go first, as with [`send_message`](Self::send_message)).
    pub fn send_encoded(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        if !self.sm.is_established() || self.closed {
            return Err(NetError::NotEstablished(if self.closed { "closed" } else { "not established" }));
        }
        self.settle_deferred(true)?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.write_all(bytes)
    }

    /// Append one DIMSE message (command, then the data set if given) as P-DATA-TF PDUs.
    fn encode_message(&self, context_id: u8, command: &Command, data: Option<&[u8]>, out: &mut Vec<u8>) {
        let max = self.negotiated.as_ref().map(|n| n.peer_max_pdu).unwrap_or(0);
        debug!("{}: sending {} on context {}", self.peer, command, context_id);
        let mut cmd = command.clone();
        cmd.has_dataset = data.is_some();
        dimse::fragment(context_id, true, &cmd.encode(), max, out);
        if let Some(d) = data {
            dimse::fragment(context_id, false, d, max, out);
        }
    }

    /// Hold a response back until it is ready (see [`Deferred`]). It is sent before the
    /// association next waits for the peer, sends anything else or answers a release.
    pub fn defer_response(&mut self, context_id: u8, response: Box<dyn Deferred>) -> Result<(), NetError> {
        self.deferred.push_back((context_id, response));
        if self.deferred.len() > MAX_DEFERRED {
            self.settle_oldest()?;
        }
        Ok(())
    }

    /// Responses held back now.
    pub fn deferred_responses(&self) -> usize {
        self.deferred.len()
    }

    fn settle_oldest(&mut self) -> Result<(), NetError> {
        if let Some((ctx, d)) = self.deferred.pop_front() {
            let rsp = d.wait();
            let mut out = Vec::new();
            self.encode_message(ctx, &rsp, None, &mut out);
            self.write_all(&out)?;
        }
        Ok(())
    }

    /// Send the held responses that are ready (all of them, waiting, with `wait`), oldest
    /// first and in one write.
    fn settle_deferred(&mut self, wait: bool) -> Result<(), NetError> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        while let Some((ctx, mut d)) = self.deferred.pop_front() {
            let rsp = if wait {
                d.wait()
            } else {
                match d.ready() {
                    Some(r) => r,
                    None => {
                        self.deferred.push_front((ctx, d));
                        break;
                    }
                }
            };
            self.encode_message(ctx, &rsp, None, &mut out);
        }
        if out.is_empty() {
            return Ok(());
        }
        if self.closed || !self.sm.is_established() {
            self.deferred.clear();
            return Err(NetError::NotEstablished(if self.closed { "closed" } else { "not established" }));
        }
        self.write_all(&out)
    }

    /// Whether more input is there without waiting: buffered bytes or PDVs, or bytes
    /// readable on the socket.
    fn input_waiting(&self) -> bool {
        if !self.pending.is_empty() || self.rpos < self.rend {
            return true;
        }
        socket_readable(&self.stream)
    }

    /// Wait for the next DIMSE message (or a release request), collecting any data set
    /// in memory. `timeout` bounds the wait (the DIMSE timeout for a requestor waiting on
    /// a response, the network timeout for an acceptor waiting for the next request).
    pub fn receive(&mut self, timeout: Option<Duration>, what: &'static str) -> Result<Received, NetError> {
        self.receive_with(timeout, what, &mut |_, _| DataSink::Memory)
    }

    /// Like [`receive`](Self::receive), but `sink_for` decides, when a command with a data
    /// set arrives, where its data fragments go. Fragments are written straight from the
    /// receive buffer: a data set is never held whole in memory unless asked for.
    pub fn receive_with(
        &mut self,
        timeout: Option<Duration>,
        what: &'static str,
        sink_for: &mut dyn FnMut(u8, &Command) -> DataSink,
    ) -> Result<Received, NetError> {
        if !self.deferred.is_empty() {
            // Held responses: those ready go now; the rest wait while the peer is still
            // sending (a window of requests in flight), and are settled before we block.
            self.settle_deferred(false)?;
            if !self.deferred.is_empty() && !self.input_waiting() {
                self.settle_deferred(true)?;
            }
        }
        let deadline = timeout.map(|d| Instant::now() + d);
        let mut rx = Rx { current: None, sink: None, mem: Vec::new(), sink_error: None };
        loop {
            // PDVs left over from a PDU that also ended the previous message (rare).
            while let Some(pdv) = self.pending.pop_front() {
                let r = absorb(&mut self.reasm, self.negotiated.as_ref(), &mut rx, sink_for, pdv.context_id, pdv.control, &pdv.data);
                match r {
                    Err(e) => return Err(self.fail_dimse(e)),
                    Ok(Some(done)) => return Ok(done),
                    Ok(None) => {}
                }
            }
            self.splice_ready = cfg!(target_os = "linux")
                && splice_enabled()
                && rx.sink_error.is_none()
                && matches!(rx.sink.as_mut().map(|s| match s { DataSink::Writer(w) => w.splice_fd().is_some(), _ => false }), Some(true));
            let step = self.next_step(deadline, what);
            self.splice_ready = false;
            match step? {
                Step::PDataStream { context_id, control, len } => {
                    match self.reasm.push_ref(context_id, control, &[]) {
                        Ok(Some(DimseEvent::Data { .. })) => {}
                        Ok(_) => return Err(self.fail_dimse(NetError::Protocol("data PDV out of place".into()))),
                        Err(e) => return Err(self.fail_dimse(e.into())),
                    }
                    self.stream_into_sink(&mut rx, len)?;
                    if control & Pdv::LAST != 0 {
                        let (context_id, command) = rx
                            .current
                            .take()
                            .ok_or_else(|| NetError::Protocol("data set without a command".into()))?;
                        let data = match rx.sink.take() {
                            Some(DataSink::Writer(sink)) => MessageData::Sink { sink, error: rx.sink_error.take() },
                            _ => MessageData::Discarded,
                        };
                        return Ok(Received::Message { context_id, command, data });
                    }
                }
                Step::PData(range) => {
                    let mut items = pdu::pdv_items(&self.rbuf[range.clone()]);
                    let mut count = 0usize;
                    let mut outcome: Result<Option<Received>, NetError> = Ok(None);
                    for item in items.by_ref() {
                        count += 1;
                        let item = match item {
                            Ok(i) => i,
                            Err(e) => {
                                outcome = Err(NetError::Pdu(e));
                                break;
                            }
                        };
                        match absorb(&mut self.reasm, self.negotiated.as_ref(), &mut rx, sink_for, item.context_id, item.control, item.data) {
                            Ok(None) => {}
                            other => {
                                outcome = other;
                                break;
                            }
                        }
                    }
                    if count == 0 && outcome.is_ok() {
                        outcome = Err(NetError::Protocol("P-DATA-TF without any PDV item".into()));
                    }
                    match outcome {
                        Ok(None) => {}
                        Ok(Some(done)) => {
                            // Keep what follows the message's end in this PDU.
                            for rest in items {
                                match rest {
                                    Ok(i) => self.pending.push_back(Pdv { context_id: i.context_id, control: i.control, data: i.data.to_vec() }),
                                    Err(e) => return Err(self.fail_pdu(e)),
                                }
                            }
                            return Ok(done);
                        }
                        Err(NetError::Pdu(e)) => return Err(self.fail_pdu(e)),
                        Err(e) => return Err(self.fail_dimse(e)),
                    }
                }
                Step::Indications(inds) => {
                    for ind in inds {
                        match ind {
                            Indication::PData(p) => self.pending.extend(p.pdvs),
                            Indication::ReleaseRequested => {
                                if rx.current.is_some() {
                                    warn!("{}: A-RELEASE-RQ in the middle of a message", self.peer);
                                }
                                return Ok(Received::ReleaseRequested);
                            }
                            other => self.unexpected(other)?,
                        }
                    }
                }
            }
        }
    }

    /// Send one DIMSE message whose data set is read from `source`: `len` bytes when
    /// known (sent as is), or until end of input. With a `transcoder` the bytes pass
    /// through it on the way. Memory: one PDU-sized buffer plus the transcoder's.
    ///
    /// An error while reading or transcoding leaves the message unfinished on the wire;
    /// the association is then aborted (the only way to end a half-sent message).
    pub fn send_message_from(
        &mut self,
        context_id: u8,
        command: &Command,
        source: &mut dyn std::io::Read,
        len: Option<u64>,
        transcoder: Option<&mut crate::dataset::Transcoder>,
    ) -> Result<u64, NetError> {
        if !self.sm.can_send_data() || self.closed {
            return Err(NetError::NotEstablished(if self.closed { "closed" } else { "not established" }));
        }
        let max = pdu::max_pdv_data_len(self.negotiated().peer_max_pdu).max(1);
        debug!("{}: sending {} on context {} (streamed)", self.peer, command, context_id);
        let mut cmd = command.clone();
        cmd.has_dataset = true;
        let mut out = std::mem::take(&mut self.wbuf);
        out.clear();
        // The command PDU stays at the front of `out` and leaves with the first data PDU,
        // in one write (see `quick_ack` for why writes are kept whole).
        dimse::fragment(context_id, true, &cmd.encode(), self.negotiated().peer_max_pdu, &mut out);
        let result = match (len, transcoder) {
            (Some(total), None) => self.stream_known(context_id, source, total, max, &mut out),
            (_, t) => self.stream_unknown(context_id, source, t, max, &mut out),
        };
        self.wbuf = out;
        match result {
            Ok(n) => Ok(n),
            Err(StreamError::Net(e)) => Err(e),
            Err(StreamError::Source(e)) => {
                warn!("{}: cannot finish the data set of {}: {e}; aborting the association", self.peer, command);
                let _ = self.abort();
                Err(e)
            }
        }
    }

    /// Send one DIMSE message whose data set is `len` bytes of `file` from `offset`, as
    /// is. On Linux the bytes go from the page cache to the socket with sendfile(2)
    /// (no copy through user space); elsewhere through the PDU buffer.
    pub fn send_message_from_file(
        &mut self,
        context_id: u8,
        command: &Command,
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> Result<u64, NetError> {
        #[cfg(target_os = "linux")]
        {
            if !self.sm.can_send_data() || self.closed {
                return Err(NetError::NotEstablished(if self.closed { "closed" } else { "not established" }));
            }
            let max = pdu::max_pdv_data_len(self.negotiated().peer_max_pdu).max(1);
            debug!("{}: sending {} on context {} (sendfile)", self.peer, command, context_id);
            let mut cmd = command.clone();
            cmd.has_dataset = true;
            let mut out = std::mem::take(&mut self.wbuf);
            out.clear();
            dimse::fragment(context_id, true, &cmd.encode(), self.negotiated().peer_max_pdu, &mut out);
            // The command goes out with the first data PDU's header (MSG_MORE), so that
            // both leave in the segment that carries the start of the data.
            let r = self.sendfile_pdus(context_id, &out, file, offset, len, max);
            self.wbuf = out;
            return match r {
                Ok(n) => Ok(n),
                Err(StreamError::Net(e)) => Err(e),
                Err(StreamError::Source(e)) => {
                    warn!("{}: cannot finish the data set of {}: {e}; aborting the association", self.peer, command);
                    let _ = self.abort();
                    Err(e)
                }
            };
        }
        #[allow(unreachable_code)]
        {
            use std::io::{Read as _, Seek as _};
            let mut f = file;
            f.seek(std::io::SeekFrom::Start(offset))?;
            let mut limited = f.take(len);
            self.send_message_from(context_id, command, &mut limited, Some(len), None)
        }
    }

    #[cfg(target_os = "linux")]
    /// `command`: the command PDU(s), sent before the first data PDU's header.
    fn sendfile_pdus(&mut self, ctx: u8, command: &[u8], file: &std::fs::File, offset: u64, total: u64, max: usize) -> Result<u64, StreamError> {
        use std::os::fd::AsRawFd;
        let sock = self.stream.as_raw_fd();
        let fd = file.as_raw_fd();
        let _ = self.set_write_timeout(self.timeouts.network);
        let mut hdr = Vec::with_capacity(command.len() + pdu::PDATA_SINGLE_PDV_OVERHEAD);
        hdr.extend_from_slice(command);
        let mut left = total;
        let mut off = offset as libc::off_t;
        loop {
            let n = left.min(max as u64) as usize;
            let control = if left == n as u64 { Pdv::LAST } else { 0 };
            if left != total {
                hdr.clear();
            }
            pdu::write_single_pdv_header(&mut hdr, ctx, control, n as u32);
            // The header goes with MSG_MORE so that it leaves in the same segment as the data.
            let mut sent = 0;
            while sent < hdr.len() {
                // SAFETY: `hdr` is a live buffer of `hdr.len()` bytes; `sock` is our open socket.
                let r = unsafe {
                    libc::send(sock, hdr[sent..].as_ptr().cast(), hdr.len() - sent, libc::MSG_MORE | libc::MSG_NOSIGNAL)
                };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(StreamError::Net(self.send_error(e)));
                }
                sent += r as usize;
            }
            let mut rest = n;
            while rest > 0 {
                // SAFETY: both descriptors are open for the duration of the call; `off` is ours.
                let r = unsafe { libc::sendfile(sock, fd, &mut off, rest) };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == ErrorKind::Interrupted {
                        continue;
                    }
                    return Err(StreamError::Net(self.send_error(e)));
                }
                if r == 0 {
                    return Err(StreamError::Source(NetError::Io(std::io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("the file ended early ({} of {total} bytes sent)", total - left + (n - rest) as u64),
                    ))));
                }
                rest -= r as usize;
            }
            left -= n as u64;
            if left == 0 {
                return Ok(total);
            }
        }
    }

    fn send_error(&self, e: std::io::Error) -> NetError {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            NetError::Timeout { what: "sending (network timeout)", after: self.timeouts.network.unwrap_or_default() }
        } else {
            NetError::Io(e)
        }
    }

    /// `out` holds the command PDU(s), sent in one write with the first data PDU.
    fn stream_known(&mut self, ctx: u8, source: &mut dyn std::io::Read, total: u64, max: usize, out: &mut Vec<u8>) -> Result<u64, StreamError> {
        const H: usize = pdu::PDATA_SINGLE_PDV_OVERHEAD;
        // One buffer of the command and a whole PDU, zeroed once; each PDU is read into it
        // (behind the command the first time) and sent.
        let mut at = out.len();
        let need = at + H + (total.min(max as u64) as usize);
        if out.len() < need {
            out.resize(need, 0);
        }
        let mut hdr = Vec::with_capacity(H);
        let mut left = total;
        loop {
            let n = left.min(max as u64) as usize;
            let control = if left == n as u64 { Pdv::LAST } else { 0 };
            hdr.clear();
            pdu::write_single_pdv_header(&mut hdr, ctx, control, n as u32);
            out[at..at + H].copy_from_slice(&hdr);
            source.read_exact(&mut out[at + H..at + H + n]).map_err(|e| {
                StreamError::Source(NetError::Io(std::io::Error::new(e.kind(), format!("reading the data set ({} of {total} bytes sent): {e}", total - left))))
            })?;
            self.write_all(&out[..at + H + n]).map_err(StreamError::Net)?;
            if at > 0 {
                // From now on each PDU at the front of the buffer.
                at = 0;
            }
            left -= n as u64;
            if left == 0 {
                return Ok(total);
            }
        }
    }

    fn stream_unknown(
        &mut self,
        ctx: u8,
        source: &mut dyn std::io::Read,
        mut transcoder: Option<&mut crate::dataset::Transcoder>,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<u64, StreamError> {
        // `out` holds the command PDU(s): they leave with the first data PDU, in one write.
        let mut command = out.len();
        let mut pend: Vec<u8> = Vec::with_capacity(max * 2);
        let mut chunk = vec![0u8; max.clamp(4096, 1 << 20)];
        let mut sent = 0u64;
        let mut eof = false;
        while !eof {
            let k = loop {
                match source.read(&mut chunk) {
                    Ok(k) => break k,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(StreamError::Source(NetError::Io(e))),
                }
            };
            match transcoder.as_deref_mut() {
                Some(t) if k == 0 => t.finish(&mut pend).map_err(|e| StreamError::Source(NetError::Protocol(e.to_string())))?,
                Some(t) => t.feed(&chunk[..k], &mut pend).map_err(|e| StreamError::Source(NetError::Protocol(e.to_string())))?,
                None => pend.extend_from_slice(&chunk[..k]),
            }
            eof = k == 0;
            // Send whole PDVs, keeping at least one byte back until the end so that the
            // last fragment can carry the "last" bit.
            let mut start = 0;
            while pend.len() - start > max || (eof && start < pend.len()) {
                let n = (pend.len() - start).min(max);
                let last = eof && start + n == pend.len();
                out.truncate(command);
                command = 0;
                pdu::write_single_pdv_header(out, ctx, if last { Pdv::LAST } else { 0 }, n as u32);
                out.extend_from_slice(&pend[start..start + n]);
                self.write_all(out).map_err(StreamError::Net)?;
                start += n;
                sent += n as u64;
            }
            pend.drain(..start);
        }
        if sent == 0 {
            out.truncate(command);
            pdu::write_single_pdv_header(out, ctx, Pdv::LAST, 0);
            self.write_all(out).map_err(StreamError::Net)?;
        }
        Ok(sent)
    }

    /// Move `len` data bytes of a streamed PDV into the message's sink: first what is
    /// already in the receive buffer, then the rest spliced from the socket (Linux).
    fn stream_into_sink(&mut self, rx: &mut Rx, len: usize) -> Result<(), NetError> {
        let have = (self.rend - self.rpos).min(len);
        let Some(DataSink::Writer(sink)) = rx.sink.as_mut() else {
            return Err(NetError::Protocol("streamed data without a sink".into()));
        };
        if have > 0 {
            if let Err(e) = sink.write_all(&self.rbuf[self.rpos..self.rpos + have]) {
                rx.sink_error.get_or_insert(e);
            }
            self.rpos += have;
        }
        let mut rest = len - have;
        if rest == 0 {
            return Ok(());
        }
        // The first bytes of a data set the sink wants to see (to read its header from
        // memory afterwards) come through the buffer; the rest may be spliced.
        let want = if rx.sink_error.is_none() { sink.prefix_wanted().min(rest) } else { 0 };
        if want > 0 {
            self.read_into_sink(rx, want, &mut [0u8; PREFIX_READ])?;
            rest -= want;
            if rest == 0 {
                return Ok(());
            }
        }
        let Some(DataSink::Writer(sink)) = rx.sink.as_mut() else {
            return Err(NetError::Protocol("streamed data without a sink".into()));
        };
        let fd = sink.splice_fd();
        #[cfg(target_os = "linux")]
        if let (Some(fd), None) = (fd, rx.sink_error.as_ref()) {
            match self.splice_to(fd, rest) {
                Ok(()) => {
                    sink.spliced(rest as u64);
                    return Ok(());
                }
                Err((moved, e)) => {
                    sink.spliced(moved as u64);
                    if let SpliceError::Sink(err) = e {
                        // The file could not take it: read the rest the ordinary way.
                        rx.sink_error.get_or_insert(err);
                        rest -= moved;
                    } else {
                        let SpliceError::Socket(err) = e else { unreachable!() };
                        let _ = self.sm.handle(Event::TransportClosed);
                        self.close();
                        return Err(err);
                    }
                }
            }
        }
        let _ = fd;
        // Fallback: read the remaining bytes through the buffer, into the sink or away.
        self.read_into_sink(rx, rest, &mut vec![0u8; rest.min(256 * 1024)])
    }

    /// Read `n` bytes of a data PDV from the socket through `buf` into the message's sink
    /// (dropped once the sink has failed: the association stays in step).
    fn read_into_sink(&mut self, rx: &mut Rx, mut n: usize, buf: &mut [u8]) -> Result<(), NetError> {
        let _ = self.set_read_timeout(self.timeouts.network);
        while n > 0 {
            let k = n.min(buf.len());
            match self.stream.read(&mut buf[..k]) {
                Ok(0) => {
                    let _ = self.sm.handle(Event::TransportClosed);
                    self.close();
                    return Err(NetError::Closed("in the middle of a data set"));
                }
                Ok(got) => {
                    quick_ack(&self.stream);
                    if rx.sink_error.is_none() {
                        if let Some(DataSink::Writer(w)) = rx.sink.as_mut() {
                            if let Err(e) = w.write_all(&buf[..got]) {
                                rx.sink_error = Some(e);
                            }
                        }
                    }
                    n -= got;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close();
                    return Err(self.send_error(e));
                }
            }
        }
        Ok(())
    }

    /// splice(2) `len` bytes socket -> pipe -> `fd`. On error: how many reached `fd`.
    #[cfg(target_os = "linux")]
    fn splice_to(&mut self, fd: i32, len: usize) -> Result<(), (usize, SpliceError)> {
        use std::os::fd::AsRawFd;
        let (pr, pw) = match self.pipe {
            Some(p) => p,
            None => {
                let mut fds = [0i32; 2];
                // SAFETY: `fds` has room for the two descriptors pipe2 writes.
                if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                    return Err((0, SpliceError::Sink(std::io::Error::last_os_error())));
                }
                // SAFETY: fds[1] is the pipe we just made; a failure only keeps the default size.
                unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20) };
                self.pipe = Some((fds[0], fds[1]));
                (fds[0], fds[1])
            }
        };
        let sock = self.stream.as_raw_fd();
        let _ = self.set_read_timeout(self.timeouts.network);
        let mut done = 0usize;
        while done < len {
            // SAFETY: valid descriptors; null offsets mean "current position".
            let n = unsafe {
                libc::splice(sock, std::ptr::null_mut(), pw, std::ptr::null_mut(), len - done, libc::SPLICE_F_MOVE)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err((done, SpliceError::Socket(self.send_error(e))));
            }
            if n == 0 {
                return Err((done, SpliceError::Socket(NetError::Closed("in the middle of a data set"))));
            }
            quick_ack(&self.stream);
            let mut k = 0usize;
            while k < n as usize {
                // SAFETY: as above.
                let m = unsafe {
                    libc::splice(pr, std::ptr::null_mut(), fd, std::ptr::null_mut(), n as usize - k, libc::SPLICE_F_MOVE)
                };
                if m <= 0 {
                    let e = if m == 0 { std::io::Error::new(ErrorKind::WriteZero, "file took no bytes") } else { std::io::Error::last_os_error() };
                    if e.kind() == ErrorKind::Interrupted {
                        continue;
                    }
                    // Bytes stuck in the pipe are lost for the file; drain them and read the rest normally.
                    self.drain_pipe(pr, n as usize - k);
                    return Err((done + k, SpliceError::Sink(e)));
                }
                k += m as usize;
            }
            done += n as usize;
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn drain_pipe(&mut self, pr: i32, mut n: usize) {
        let mut buf = [0u8; 65536];
        while n > 0 {
            // SAFETY: reading into our own buffer from our pipe.
            let r = unsafe { libc::read(pr, buf.as_mut_ptr().cast(), n.min(buf.len())) };
            if r <= 0 {
                break;
            }
            n -= r as usize;
        }
    }

    fn fail_dimse(&mut self, e: NetError) -> NetError {
        warn!("{}: {}; aborting", self.peer, e);
        let _ = self.abort_provider(6);
        e
    }

    fn fail_pdu(&mut self, e: pdu::PduError) -> NetError {
        warn!("{}: invalid P-DATA-TF ({e}); aborting the association", self.peer);
        let _ = self.abort_provider(e.abort_reason());
        NetError::Pdu(e)
    }

    /// Without waiting: a message that has already (at least partly) arrived, such as a
    /// C-CANCEL-RQ during a long C-FIND/C-MOVE/C-GET, or None when nothing is there.
    pub fn poll_message(&mut self) -> Result<Option<Received>, NetError> {
        if self.closed {
            return Err(NetError::Closed("(polling)"));
        }
        if self.pending.is_empty() && self.rpos == self.rend {
            if self.rbuf.len() - self.rend < 4096 {
                self.rbuf.copy_within(self.rpos..self.rend, 0);
                self.rend -= self.rpos;
                self.rpos = 0;
                if self.rbuf.len() - self.rend < 4096 {
                    self.rbuf.resize(self.rend + 4096, 0);
                }
            }
            self.stream.set_nonblocking(true)?;
            let r = self.stream.read(&mut self.rbuf[self.rend..]);
            let restore = self.stream.set_nonblocking(false);
            match r {
                Ok(0) => {
                    let _ = self.sm.handle(Event::TransportClosed);
                    self.close();
                    return Err(NetError::Closed("during the operation"));
                }
                Ok(k) => {
                    self.rend += k;
                    quick_ack(&self.stream);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(NetError::Io(e)),
            }
            restore?;
            if self.rpos == self.rend {
                return Ok(None);
            }
        }
        let t = self.timeouts.network.or(Some(Duration::from_secs(30)));
        self.receive(t, "reading a message that had started to arrive").map(Some)
    }

    /// Answer a release request (A-RELEASE-RP) and close.
    pub fn release_response(&mut self) -> Result<(), NetError> {
        // Every response before A-RELEASE-RP (P-DATA may still go in Sta8).
        self.settle_deferred(true)?;
        self.step(Event::ReleaseResponse)?;
        info!("association with {} released by the peer", self.peer);
        self.close();
        Ok(())
    }

    /// Orderly release as the side that asks (A-RELEASE-RQ, wait for RP).
    pub fn release(&mut self) -> Result<(), NetError> {
        if self.closed {
            return Ok(());
        }
        self.step(Event::ReleaseRequest)?;
        let deadline = self.timeouts.acse.map(|d| Instant::now() + d);
        loop {
            let inds = match self.next_indications(deadline, "waiting for A-RELEASE-RP (ACSE timeout)") {
                Ok(i) => i,
                Err(e) => {
                    let _ = self.abort();
                    return Err(e);
                }
            };
            for ind in inds {
                match ind {
                    Indication::ReleaseConfirmed => {
                        if self.sm.awaiting_release_response() {
                            // acceptor side of a release collision: now we answer (AR-4)
                            self.step(Event::ReleaseResponse)?;
                        }
                        info!("association with {} released", self.peer);
                        self.close();
                        return Ok(());
                    }
                    // Release collision (PS3.8 9.2.2): both sides asked. The requestor
                    // answers at once; the acceptor answers after the peer's A-RELEASE-RP.
                    Indication::ReleaseCollision { requestor } => {
                        debug!("{}: release collision (we are the {})", self.peer, if requestor { "requestor" } else { "acceptor" });
                        if self.sm.awaiting_release_response() {
                            self.step(Event::ReleaseResponse)?;
                        }
                    }
                    Indication::ReleaseRequested => {
                        self.step(Event::ReleaseResponse)?;
                    }
                    // P-DATA may still arrive before the peer sees our RQ (AR-6): dropped.
                    Indication::PData(_) => debug!("{}: P-DATA after A-RELEASE-RQ ignored", self.peer),
                    other => self.unexpected(other)?,
                }
            }
            if self.sm.is_closed() {
                self.close();
                return Ok(());
            }
        }
    }

    /// A-ABORT as service user (source 0) and close.
    pub fn abort(&mut self) -> Result<(), NetError> {
        if self.closed {
            return Ok(());
        }
        let outputs = self.sm.handle(Event::AbortRequest);
        self.run_outputs(outputs)?;
        info!("association with {} aborted by us", self.peer);
        self.close();
        Ok(())
    }

    /// A-ABORT as service provider (source 2) with `reason`, then close: used when the
    /// peer breaks the DIMSE protocol inside well-formed PDUs.
    fn abort_provider(&mut self, reason: u8) -> Result<(), NetError> {
        let outputs = self.sm.handle(Event::InvalidPdu { abort_reason: reason });
        let r = self.run_outputs(outputs);
        self.close();
        r.map(|_| ())
    }

    fn unexpected(&mut self, ind: Indication) -> Result<(), NetError> {
        match ind {
            Indication::Aborted { source, reason, .. } => {
                self.close();
                info!("association with {} aborted: {}", self.peer, ul::abort_reason_text(source, reason));
                Err(NetError::Aborted { by: source, reason })
            }
            Indication::TransportClosed => {
                self.close();
                info!("{}: connection closed by the peer", self.peer);
                Err(NetError::Closed("while the association was open"))
            }
            other => {
                warn!("{}: unexpected {:?}", self.peer, other);
                Err(NetError::Protocol(format!("unexpected {other:?}")))
            }
        }
    }

    /// Feed one event to the state machine and carry out its outputs; return indications.
    fn step(&mut self, ev: Event) -> Result<Vec<Indication>, NetError> {
        let outputs = self.sm.handle(ev);
        self.run_outputs(outputs)
    }

    fn run_outputs(&mut self, outputs: Vec<Output>) -> Result<Vec<Indication>, NetError> {
        let mut inds = Vec::new();
        for o in outputs {
            match o {
                Output::SendPdu(p) => {
                    match &p {
                        Pdu::Abort(a) => debug!("{}: sending A-ABORT ({})", self.peer, ul::abort_reason_text(a.source, a.reason)),
                        Pdu::AssociateRj(rj) => self.sent_reject = Some(*rj),
                        _ => {}
                    }
                    let bytes = pdu::encode_to_vec(&p);
                    if let Err(e) = self.write_all(&bytes) {
                        // A failed write of an A-ABORT changes nothing: we close anyway.
                        if !matches!(p, Pdu::Abort(_)) {
                            return Err(e);
                        }
                    }
                }
                Output::CloseTransport => self.close(),
                Output::StartArtim => self.artim = self.timeouts.acse.map(|d| Instant::now() + d),
                Output::StopArtim => self.artim = None,
                Output::ConnectTransport => {}
                Output::Indication(i) => inds.push(i),
            }
        }
        Ok(inds)
    }

    /// Read PDUs until the state machine produces at least one indication; a P-DATA-TF
    /// is handed back whole as the range of its body in the receive buffer.
    fn next_indications(&mut self, deadline: Option<Instant>, what: &'static str) -> Result<Vec<Indication>, NetError> {
        match self.next_step(deadline, what)? {
            Step::Indications(i) => Ok(i),
            Step::PDataStream { .. } => Err(NetError::Protocol("streamed P-DATA outside a receive".into())),
            Step::PData(range) => {
                // Outside receive(): decode it the slow way.
                let mut pdvs = Vec::new();
                for item in pdu::pdv_items(&self.rbuf[range]) {
                    match item {
                        Ok(i) => pdvs.push(Pdv { context_id: i.context_id, control: i.control, data: i.data.to_vec() }),
                        Err(e) => return Err(self.fail_pdu(e)),
                    }
                }
                Ok(vec![Indication::PData(crate::pdu::PData { pdvs })])
            }
        }
    }

    fn next_step(&mut self, deadline: Option<Instant>, what: &'static str) -> Result<Step, NetError> {
        loop {
            if self.closed {
                return Err(NetError::Closed(without_timeout_note(what)));
            }
            let limit = self.receive_limit();
            let ev = match self.read_pdu(deadline, limit) {
                Ok(Incoming::Pdu(p)) => Event::from_pdu(p),
                Ok(Incoming::PDataStream { context_id, control, len }) => {
                    let inds = self.step(Event::PDataReceived(crate::pdu::PData { pdvs: Vec::new() }))?;
                    if inds.iter().any(|i| matches!(i, Indication::PData(_))) {
                        return Ok(Step::PDataStream { context_id, control, len });
                    }
                    // Not acceptable here: the state machine aborted; nothing more to read.
                    self.close();
                    return Err(NetError::Protocol(format!("unexpected P-DATA-TF ({what})")));
                }
                Ok(Incoming::PData(range)) => {
                    let inds = self.step(Event::PDataReceived(crate::pdu::PData { pdvs: Vec::new() }))?;
                    if inds.iter().any(|i| matches!(i, Indication::PData(_))) {
                        return Ok(Step::PData(range));
                    }
                    if !inds.is_empty() {
                        return Ok(Step::Indications(inds));
                    }
                    if matches!(self.sm.state(), ul::State::Sta13) || self.sm.is_closed() {
                        warn!("{}: P-DATA-TF in state {:?}; association aborted", self.peer, self.sm.state());
                        self.close();
                        return Err(NetError::Protocol(format!("unexpected P-DATA-TF ({what})")));
                    }
                    continue;
                }
                Err(ReadError::Timeout) => {
                    if self.artim.map(|t| Instant::now() >= t).unwrap_or(false) {
                        warn!("{}: ARTIM timer expired ({what}); closing", self.peer);
                        self.artim = None;
                        let outs = self.sm.handle(Event::ArtimExpired);
                        let _ = self.run_outputs(outs);
                        self.close();
                        return Err(NetError::Timeout { what, after: self.timeouts.acse.unwrap_or_default() });
                    }
                    warn!("{}: timed out {what}; aborting", self.peer);
                    let _ = self.abort();
                    let after = deadline.map(|_| self.elapsed_hint(what)).unwrap_or_default();
                    return Err(NetError::Timeout { what, after });
                }
                Err(ReadError::Closed) => {
                    let outs = self.sm.handle(Event::TransportClosed);
                    let inds = self.run_outputs(outs)?;
                    self.close();
                    for ind in inds {
                        if let Indication::Aborted { source, reason, .. } = ind {
                            debug!("{}: connection closed ({what})", self.peer);
                            return Err(NetError::Aborted { by: source, reason });
                        }
                    }
                    return Err(NetError::Closed(without_timeout_note(what)));
                }
                Err(ReadError::Io(e)) => {
                    let _ = self.sm.handle(Event::TransportClosed);
                    self.close();
                    return Err(NetError::Io(e));
                }
                Err(ReadError::Pdu(e)) => {
                    warn!("{}: invalid PDU ({e}); aborting the association", self.peer);
                    let outs = self.sm.handle(Event::InvalidPdu { abort_reason: e.abort_reason() });
                    let _ = self.run_outputs(outs);
                    self.close();
                    return Err(NetError::Pdu(e));
                }
            };
            let inds = self.step(ev)?;
            if self.sm.is_closed() && inds.is_empty() {
                self.close();
                return Err(NetError::Closed(without_timeout_note(what)));
            }
            if !inds.is_empty() {
                return Ok(Step::Indications(inds));
            }
            if let (ul::State::Sta13, Some(rj)) = (self.sm.state(), self.sent_reject) {
                // The provider itself rejected the request (AE-6: protocol version).
                info!("association from {} rejected: {}", self.peer, ul::reject_reason_text(rj.result, rj.source, rj.reason));
                self.drain_until_closed();
                return Err(NetError::Rejected(rj));
            }
            if matches!(self.sm.state(), ul::State::Sta13) && !self.closed {
                // We sent an A-ABORT for an unexpected PDU: nothing more to read.
                warn!("{}: unexpected PDU in state {:?}; association aborted", self.peer, self.sm.state());
                self.close();
                return Err(NetError::Protocol(format!("unexpected PDU ({what})")));
            }
        }
    }

    fn elapsed_hint(&self, what: &str) -> Duration {
        if what.contains("ACSE") {
            self.timeouts.acse.unwrap_or_default()
        } else if what.contains("DIMSE") {
            self.timeouts.dimse.unwrap_or_default()
        } else {
            self.timeouts.network.unwrap_or_default()
        }
    }

    fn receive_limit(&self) -> u32 {
        match &self.negotiated {
            None => ASSOCIATION_PDU_LIMIT,
            Some(n) if n.our_max_pdu == 0 => UNLIMITED_PDU_LIMIT,
            // A few bytes of slack: some peers count the PDV header in, some do not.
            Some(n) => n.our_max_pdu.saturating_add(16).max(ASSOCIATION_PDU_LIMIT.min(64 * 1024)),
        }
    }

    /// Read one whole PDU; the earliest of `deadline` and the ARTIM timer bounds the wait.
    fn read_pdu(&mut self, deadline: Option<Instant>, limit: u32) -> Result<Incoming, ReadError> {
        if self.rpos == self.rend {
            self.rpos = 0;
            self.rend = 0;
        }
        loop {
            // P-DATA-TF: not decoded into owned PDVs; its body is handed out in place.
            if let Some((pdu::pdu_type::P_DATA_TF, len)) = pdu::peek_header(&self.rbuf[self.rpos..self.rend]) {
                if limit != 0 && len > limit {
                    return Err(ReadError::Pdu(pdu::PduError::TooLong { declared: len, limit }));
                }
                if self.splice_ready && len >= SPLICE_MIN && self.rend - self.rpos >= 12 {
                    let h = &self.rbuf[self.rpos..self.rpos + 12];
                    let item_len = u32::from_be_bytes([h[6], h[7], h[8], h[9]]);
                    let (ctx, control) = (h[10], h[11]);
                    // Exactly one data PDV filling the PDU: stream it.
                    if item_len == len.saturating_sub(4) && control & Pdv::COMMAND == 0 {
                        self.rpos += 12;
                        return Ok(Incoming::PDataStream { context_id: ctx, control, len: (item_len - 2) as usize });
                    }
                }
                let end = self.rpos + pdu::PDU_HEADER_LEN + len as usize;
                if self.rend >= end {
                    let body = self.rpos + pdu::PDU_HEADER_LEN..end;
                    self.rpos = end;
                    return Ok(Incoming::PData(body));
                }
            }
            match pdu::decode(&self.rbuf[self.rpos..self.rend], limit) {
                Ok(Decoded::Complete(p, used)) => {
                    self.rpos += used;
                    return Ok(Incoming::Pdu(p));
                }
                Ok(Decoded::NeedMore(n)) => {
                    let want = n.clamp(1, READ_CHUNK);
                    if self.rbuf.len() - self.rend < want {
                        // Move the unconsumed bytes to the front, then grow if still short.
                        self.rbuf.copy_within(self.rpos..self.rend, 0);
                        self.rend -= self.rpos;
                        self.rpos = 0;
                        if self.rbuf.len() - self.rend < want {
                            self.rbuf.resize(self.rend + want, 0);
                        }
                    }
                    let until = match (deadline, self.artim) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    let timeout = match until {
                        Some(t) => {
                            let now = Instant::now();
                            if now >= t {
                                return Err(ReadError::Timeout);
                            }
                            Some((t - now).max(Duration::from_millis(1)))
                        }
                        None => None,
                    };
                    self.set_read_timeout(timeout).map_err(ReadError::Io)?;
                    // While a data set streams into a file, read only up to the next PDU's
                    // and PDV's headers: the data itself is spliced, never copied in here.
                    let buffered = self.rend - self.rpos;
                    let cap = if self.splice_ready && buffered < 12 { 12 - buffered } else { self.rbuf.len() - self.rend };
                    let r = self.stream.read(&mut self.rbuf[self.rend..self.rend + cap]);
                    match r {
                        Ok(0) => {
                            return Err(ReadError::Closed);
                        }
                        Ok(k) => {
                            self.rend += k;
                            quick_ack(&self.stream);
                        }
                        Err(e) => {
                            match e.kind() {
                                ErrorKind::WouldBlock | ErrorKind::TimedOut => return Err(ReadError::Timeout),
                                ErrorKind::Interrupted => {}
                                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                                    return Err(ReadError::Closed)
                                }
                                _ => return Err(ReadError::Io(e)),
                            }
                        }
                    }
                }
                Err(e) => return Err(ReadError::Pdu(e)),
            }
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        if self.closed {
            return Err(NetError::Closed("while sending"));
        }
        let _ = self.set_write_timeout(self.timeouts.network);
        self.stream.write_all(bytes).map_err(|e| {
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
                NetError::Timeout { what: "sending (network timeout)", after: self.timeouts.network.unwrap_or_default() }
            } else {
                NetError::Io(e)
            }
        })
    }

    /// After sending A-ASSOCIATE-RJ: wait (ARTIM) for the peer to close, then close.
    fn drain_until_closed(&mut self) {
        let until = self.artim.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let mut buf = [0u8; 1024];
        loop {
            let now = Instant::now();
            if self.closed || now >= until {
                break;
            }
            let _ = self.set_read_timeout(Some(until - now));
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.close();
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Association {
    fn drop(&mut self) {
        if let Some((r, w)) = self.pipe.take() {
            // SAFETY: our own pipe, closed once.
            unsafe {
                libc::close(r);
                libc::close(w);
            }
        }
        if !self.closed && self.sm.is_established() {
            let _ = self.abort();
        }
        self.close();
    }
}

enum Incoming {
    Pdu(Pdu),
    /// A P-DATA-TF holding one data PDV, whose 12 header bytes were consumed; its
    /// `len` data bytes follow (partly in the receive buffer, the rest on the socket).
    PDataStream { context_id: u8, control: u8, len: usize },
    /// The body of a P-DATA-TF, as a range of the receive buffer.
    PData(std::ops::Range<usize>),
}

enum Step {
    Indications(Vec<Indication>),
    PDataStream { context_id: u8, control: u8, len: usize },
    PData(std::ops::Range<usize>),
}

#[cfg(target_os = "linux")]
enum SpliceError {
    /// Reading the socket failed: the association is gone.
    Socket(NetError),
    /// Writing the file failed: the rest of the data set is read and dropped.
    Sink(std::io::Error),
}

enum StreamError {
    /// Writing to the peer failed (the association is gone).
    Net(NetError),
    /// Reading or transcoding the source failed (the association must be aborted).
    Source(NetError),
}

/// Feed one PDV to the reassembler and route its data; `Some` when a message completed.
fn absorb(
    reasm: &mut Reassembler,
    negotiated: Option<&Negotiated>,
    rx: &mut Rx,
    sink_for: &mut dyn FnMut(u8, &Command) -> DataSink,
    context_id: u8,
    control: u8,
    data: &[u8],
) -> Result<Option<Received>, NetError> {
    match reasm.push_ref(context_id, control, data)? {
        None => Ok(None),
        Some(DimseEvent::Command { context_id, command }) => {
            debug!("received {} on context {}", command, context_id);
            if negotiated.map(|n| n.context(context_id).is_none()).unwrap_or(true) {
                return Err(NetError::Protocol(format!("message on presentation context {context_id}, which was not accepted")));
            }
            if !command.has_dataset {
                return Ok(Some(Received::Message { context_id, command, data: MessageData::None }));
            }
            rx.sink = Some(sink_for(context_id, &command));
            rx.current = Some((context_id, command));
            rx.mem.clear();
            rx.sink_error = None;
            Ok(None)
        }
        Some(DimseEvent::Data { data, last, .. }) => {
            match rx.sink.as_mut() {
                Some(DataSink::Memory) => rx.mem.extend_from_slice(data),
                Some(DataSink::Writer(w)) => {
                    if rx.sink_error.is_none() {
                        if let Err(e) = w.write_all(data) {
                            rx.sink_error = Some(e);
                        }
                    }
                }
                Some(DataSink::Discard) | None => {}
            }
            if !last {
                return Ok(None);
            }
            let (context_id, command) = rx.current.take().ok_or_else(|| NetError::Protocol("data set without a command".into()))?;
            let data = match rx.sink.take() {
                Some(DataSink::Memory) | None => MessageData::Memory(std::mem::take(&mut rx.mem)),
                Some(DataSink::Writer(sink)) => MessageData::Sink { sink, error: rx.sink_error.take() },
                Some(DataSink::Discard) => MessageData::Discarded,
            };
            Ok(Some(Received::Message { context_id, command, data }))
        }
    }
}

enum ReadError {
    Timeout,
    Closed,
    Io(std::io::Error),
    Pdu(pdu::PduError),
}

