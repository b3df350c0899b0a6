//! One DICOM upper-layer connection, sans-I/O: bytes in, events out; requests in, bytes out.
//!
//! # Theory of operation
//!
//! A [`Connection`] is everything one association does except moving bytes and keeping
//! clocks, in the way of h11's `Connection`. The driver (`net/` for blocking sockets; a TLS
//! stream or an asyncio loop later) does only this:
//!
//! - **Bytes in.** Read into [`Connection::recv_buf`] (a window of the receive buffer sized
//!   to what the connection wants now) and report the count with [`Connection::received`];
//!   or hand over bytes with [`Connection::feed`]. An end of stream is
//!   [`Connection::transport_closed`].
//! - **Events out.** [`Connection::next_event`] until it returns `Ok(None)` ("need more
//!   bytes"). A DIMSE message comes out whole ([`Event::Received`]); its data set went,
//!   fragment by fragment and straight from the receive buffer, where the caller's
//!   `sink_for` said when its command arrived ([`DataSink`]).
//! - **Requests in, bytes out.** Sending a message, releasing, answering a release,
//!   aborting: each is an event of the PS3.8 state machine ([`StateMachine`]) and is refused
//!   when the table has a blank cell for it. P-DATA goes to the caller's buffer (`out`
//!   arguments, so that a command leaves in the same write as its data); every other PDU
//!   the machine sends (A-ASSOCIATE, A-RELEASE, A-ABORT) waits in [`Connection::take_outgoing`].
//! - **Timer.** [`Connection::take_artim`] says when the machine (re)started or stopped the
//!   ARTIM timer; when it expires the driver calls [`Connection::artim_expired`].
//! - **Close.** [`Connection::should_close`] turns true once the machine closed the
//!   transport or sent an A-ABORT (we close right after an abort; see docs/architecture.md).
//!
//! Every state decision is the table's: each received P-DATA-TF is Evt10 (delivered only on
//! DT-2/AR-6), each P-DATA request is Evt9 ([`StateMachine::can_send_data`] is read from
//! that row). Malformed input (a bad PDU, a PDV out of order, a message on a context that
//! was not accepted) queues an A-ABORT and returns an error.
//!
//! ## Zero-copy paths
//!
//! - **Receive (splice).** With [`Connection::set_splice`] the driver says it can move data
//!   from its transport into a file itself. While a message's data set goes to a sink with a
//!   `splice_fd`, `recv_buf` offers only the 12 header bytes of the next PDU, and a P-DATA-TF
//!   holding one data PDV at least that large comes out as [`Event::Splice`]: "the next `len`
//!   bytes on the wire are value bytes of this message's data set; move them into `fd` and
//!   report with [`Connection::spliced`]". Bytes already buffered, and the prefix the sink
//!   wants through `write`, go the ordinary way first.
//! - **Send (sendfile).** [`Connection::send_command`] encodes a command whose data set the
//!   driver sends itself, and [`Connection::data_header`] gives the 12-byte P-DATA-TF + PDV
//!   header of each data PDU (Evt9 each time), so the data can go by sendfile(2).

use std::collections::VecDeque;

use log::{debug, info, warn};

use super::machine::{Event as Ev, Indication, Output, State, StateMachine};
use super::message::{DataSink, Deferred, Inbox, MessageData, Received};
use super::negotiation::{self, AcceptorConfig, AcceptorDecision, Negotiated, RequestorConfig};
use crate::dimse::{self, Command, DimseError, DimseEvent, Reassembler};
use crate::pdu::{self, AssociateAc, AssociateRj, AssociateRq, Decoded, Pdu, PduError, Pdv};

/// Largest PDU body accepted before an association is established (A-ASSOCIATE-RQ/AC
/// with 128 presentation contexts of many transfer syntaxes stays far below this).
pub const ASSOCIATION_PDU_LIMIT: u32 = 1 << 20;
/// Largest PDU accepted when we advertised "no limit" (max length 0).
const UNLIMITED_PDU_LIMIT: u32 = 1 << 30;
/// Bytes offered for one read at most; the receive buffer grows only with bytes that
/// actually arrived, never with what a length field claims.
pub const READ_CHUNK: usize = 256 * 1024;
/// Most bytes read through the buffer for [`Sink::prefix_wanted`](super::Sink) per PDV.
const PREFIX_READ: usize = 16 * 1024;
/// Data PDVs at least this large are spliced into a file sink by a driver that can.
pub const SPLICE_MIN: u32 = 32 * 1024;
/// Most responses held at once; past this the oldest is settled first.
const MAX_DEFERRED: usize = 64;
/// A P-DATA-TF header and its first PDV item header.
const HEADERS: usize = pdu::PDATA_SINGLE_PDV_OVERHEAD;

/// What the connection hands up.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per message; boxing the command buys nothing
pub enum Event {
    /// Acceptor: the peer asks to associate; answer with [`Connection::accept`] or
    /// [`Connection::reject`] (or [`Connection::decide`]).
    AssociateRequest(AssociateRq),
    /// Requestor: the association is established; see [`Connection::negotiated`].
    Established,
    /// Requestor: the peer rejected the association.
    Rejected(AssociateRj),
    /// A complete DIMSE message, or the peer's release request (answer it with
    /// [`Connection::release_response`] after sending what is still due).
    Received(Received),
    /// The peer confirmed our release request (after a release collision, PS3.8 9.2.2,
    /// the connection itself answered the peer's request in its turn).
    ReleaseConfirmed,
    /// The association was aborted: by the peer (its source and reason), or by us because
    /// the peer sent an unexpected PDU (source 2).
    Aborted { source: u8, reason: u8 },
    /// The machine is idle again without anything to report (an A-ABORT before any
    /// association, for example): close.
    Closed,
    /// Move the next `len` bytes of the transport into `fd` (see "Zero-copy paths"), then
    /// call [`Connection::spliced`].
    Splice { fd: i32, len: usize },
}

/// Why the connection failed. Where the peer is at fault an A-ABORT is already queued in
/// [`Connection::take_outgoing`] and [`Connection::should_close`] is true.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("invalid PDU from the peer: {0}")]
    Pdu(#[from] PduError),
    #[error("DIMSE error: {0}")]
    Dimse(#[from] DimseError),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The state machine aborted: this PDU cannot come now.
    #[error("unexpected {0}")]
    Unexpected(&'static str),
    /// The service provider rejected the request (AE-6: protocol version).
    #[error("association rejected")]
    Rejected(AssociateRj),
    /// A local request for which the table has a blank cell in this state.
    #[error("not allowed in {0:?}")]
    NotAllowed(State),
    #[error("association negotiation failed: {0}")]
    Negotiation(String),
}

/// What taking the next PDU from the buffer gave.
#[allow(clippy::large_enum_variant)] // transient
enum Next {
    Event(Event),
    /// Something was consumed: look again.
    Again,
    NeedBytes,
}

/// See the module documentation.
pub struct Connection {
    sm: StateMachine,
    peer: String,
    /// Receive buffer: bytes `pos..end` are received and not yet consumed; the rest is room
    /// for the next read (zeroed once when the buffer grows, never per read).
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Bytes the decoder asked for last.
    need: usize,
    /// PDU bytes the machine sends (everything but P-DATA-TF).
    out: Vec<u8>,
    rq: Option<AssociateRq>,
    negotiated: Option<Negotiated>,
    reasm: Reassembler,
    inbox: Inbox,
    /// PDV items of a delivered P-DATA-TF still to read: (start, end, items read so far).
    pdata: Option<(usize, usize, usize)>,
    /// A streamed data PDV: (bytes still to come, it is the last fragment).
    raw: Option<(usize, bool)>,
    splice_min: Option<u32>,
    artim: Option<bool>,
    must_close: bool,
    sent_reject: Option<AssociateRj>,
    deferred: VecDeque<(u8, Box<dyn Deferred>)>,
    /// We asked to release: a collision is answered here, messages are dropped.
    releasing: bool,
    next_message_id: u16,
}

impl Connection {
    fn new(sm: StateMachine, peer: &str) -> Self {
        Connection {
            sm,
            peer: peer.to_string(),
            buf: Vec::new(),
            pos: 0,
            end: 0,
            need: pdu::PDU_HEADER_LEN,
            out: Vec::new(),
            rq: None,
            negotiated: None,
            reasm: Reassembler::new(),
            inbox: Inbox::default(),
            pdata: None,
            raw: None,
            splice_min: None,
            artim: None,
            must_close: false,
            sent_reject: None,
            deferred: VecDeque::new(),
            releasing: false,
            next_message_id: 1,
        }
    }

    /// Requestor (Evt1): the driver opens the transport, then calls [`connected`](Self::connected).
    pub fn requestor(cfg: &RequestorConfig, peer: &str) -> Result<Self, ConnError> {
        let rq = negotiation::build_associate_rq(cfg).map_err(|e| ConnError::Negotiation(e.to_string()))?;
        let mut c = Connection::new(StateMachine::new_requestor(), peer);
        let outs = c.sm.handle(Ev::AssociateRequest(rq.clone()));
        if !outs.iter().any(|o| matches!(o, Output::ConnectTransport)) {
            return Err(ConnError::Protocol("state machine did not ask for a transport connection".into()));
        }
        c.rq = Some(rq);
        Ok(c)
    }

    /// Requestor: the transport is open (Evt2); the A-ASSOCIATE-RQ goes out.
    pub fn connected(&mut self) -> Result<(), ConnError> {
        self.local(Ev::TransportConnected)
    }

    /// Acceptor: on a transport connection just accepted (Evt5; ARTIM starts).
    pub fn acceptor(peer: &str) -> Self {
        let mut c = Connection::new(StateMachine::new_acceptor(), peer);
        c.step(Ev::TransportIndication);
        c
    }

    pub fn state(&self) -> State {
        self.sm.state()
    }

    /// What was negotiated, once established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// An association exists and has not been released or aborted (Sta6 to Sta12).
    pub fn is_established(&self) -> bool {
        self.sm.is_established()
    }

    /// The transport should be closed now (the machine closed it, or we sent an A-ABORT).
    pub fn should_close(&self) -> bool {
        self.sm.is_closed() || self.must_close
    }

    /// The A-ASSOCIATE-RJ this side sent, if any.
    pub fn sent_reject(&self) -> Option<AssociateRj> {
        self.sent_reject
    }

    // ---- bytes in ----

    /// Zero-copy receive: stream data PDVs of at least `min` bytes into sinks that can take
    /// spliced data ([`Event::Splice`]); None (the default) reads every byte through here.
    pub fn set_splice(&mut self, min: Option<u32>) {
        self.splice_min = min;
    }

    /// The driver can splice: data PDVs of [`SPLICE_MIN`] bytes or more are offered to it,
    /// unless FASTDIMSE_NO_SPLICE is set (for comparison, or for a file system that does
    /// not support splice).
    pub fn enable_splice(&mut self) {
        static SPLICE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if *SPLICE.get_or_init(|| std::env::var_os("FASTDIMSE_NO_SPLICE").is_none()) {
            self.set_splice(Some(SPLICE_MIN));
        }
    }

    /// A fresh message id (1, 2, ... wrapping, never 0).
    pub fn next_message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Received bytes not yet turned into events.
    pub fn has_input(&self) -> bool {
        self.pos < self.end || self.pdata.is_some()
    }

    fn splice_ready(&mut self) -> bool {
        self.splice_min.is_some() && self.inbox.splice_fd().is_some()
    }

    /// Room for the next read: the driver reads into it (at most its length; never more,
    /// the window is exact while data is spliced) and reports with [`received`](Self::received).
    pub fn recv_buf(&mut self) -> &mut [u8] {
        if self.pos == self.end && self.pdata.is_none() {
            self.pos = 0;
            self.end = 0;
        }
        let buffered = self.end - self.pos;
        let headers_only = self.raw.is_none() && buffered < HEADERS && self.splice_ready();
        let (want, exact) = match self.raw {
            Some((left, _)) if self.inbox.prefix_wanted() > 0 => (self.inbox.prefix_wanted().min(left).min(PREFIX_READ), true),
            Some((left, _)) => (left.min(READ_CHUNK), true),
            None if headers_only => (HEADERS - buffered, true),
            None => (self.need.clamp(1, READ_CHUNK), false),
        };
        if self.buf.len() - self.end < want {
            if self.pdata.is_none() {
                // Move the unconsumed bytes to the front, then grow if still short.
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            }
            if self.buf.len() - self.end < want {
                self.buf.resize(self.end + want, 0);
            }
        }
        let n = if exact { want } else { self.buf.len() - self.end };
        &mut self.buf[self.end..self.end + n]
    }

    /// `n` bytes were read into [`recv_buf`](Self::recv_buf).
    pub fn received(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Hand over received bytes (a copy; drivers read into `recv_buf` instead).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = self.recv_buf();
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            self.received(n);
            bytes = &bytes[n..];
        }
    }

    /// `moved` bytes of an [`Event::Splice`] reached its fd; `error`: the fd failed after
    /// that (the rest of the data set is then read through here and dropped).
    pub fn spliced(&mut self, moved: usize, error: Option<std::io::Error>) {
        self.inbox.spliced(moved, error);
        if let Some((left, last)) = self.raw {
            self.raw = Some((left.saturating_sub(moved), last));
        }
    }

    /// The transport closed (Evt17).
    pub fn transport_closed(&mut self) {
        self.step(Ev::TransportClosed);
    }

    /// The ARTIM timer expired (Evt18).
    pub fn artim_expired(&mut self) {
        self.artim = None;
        self.step(Ev::ArtimExpired);
    }

    /// Whether the ARTIM timer was (re)started (`Some(true)`) or stopped since last asked.
    pub fn take_artim(&mut self) -> Option<bool> {
        self.artim.take()
    }

    // ---- bytes out ----

    /// PDUs the machine sent (A-ASSOCIATE, A-RELEASE, A-ABORT), to be written before
    /// anything else; taking them empties the queue.
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    // ---- events out ----

    /// The next event, or `Ok(None)` when more bytes are needed. `sink_for` chooses, when a
    /// command with a data set arrives, where its data goes. Never panics.
    pub fn next_event(&mut self, sink_for: &mut dyn FnMut(u8, &Command) -> DataSink) -> Result<Option<Event>, ConnError> {
        loop {
            if let Some((left, last)) = self.raw {
                if left > 0 {
                    let have = (self.end - self.pos).min(left);
                    if have > 0 {
                        self.inbox.write(&self.buf[self.pos..self.pos + have]);
                        self.pos += have;
                        self.raw = Some((left - have, last));
                        continue;
                    }
                    if self.inbox.prefix_wanted() == 0 {
                        if let Some(fd) = self.splice_min.and(self.inbox.splice_fd()) {
                            return Ok(Some(Event::Splice { fd, len: left }));
                        }
                    }
                    return Ok(None);
                }
                self.raw = None;
                if last {
                    match self.inbox.finish() {
                        Some(r) => match self.deliver(r) {
                            Some(ev) => return Ok(Some(ev)),
                            None => continue,
                        },
                        None => return Err(self.fail_dimse(ConnError::Protocol("data set without a command".into()))),
                    }
                }
                continue;
            }
            if let Some((start, end, seen)) = self.pdata {
                if start >= end {
                    self.pdata = None;
                    if seen == 0 {
                        return Err(self.fail_dimse(ConnError::Protocol("P-DATA-TF without any PDV item".into())));
                    }
                    continue;
                }
                let (ctx, control, len) = match pdu::pdv_items(&self.buf[start..end]).next() {
                    Some(Ok(i)) => (i.context_id, i.control, i.data.len()),
                    Some(Err(e)) => return Err(self.fail_pdu(e)),
                    None => (0, 0, usize::MAX),
                };
                if len == usize::MAX {
                    self.pdata = Some((end, end, seen));
                    continue;
                }
                let data = start + pdu::PDV_ITEM_OVERHEAD..start + pdu::PDV_ITEM_OVERHEAD + len;
                // The last item done, the PDU is (and the buffer may be compacted).
                self.pdata = (data.end < end).then_some((data.end, end, seen + 1));
                if let Some(ev) = self.absorb(ctx, control, data, sink_for)? {
                    return Ok(Some(ev));
                }
                continue;
            }
            match self.next_pdu()? {
                Next::Event(ev) => return Ok(Some(ev)),
                Next::Again => {}
                Next::NeedBytes => return Ok(None),
            }
        }
    }

    /// Take the next PDU from the buffer.
    fn next_pdu(&mut self) -> Result<Next, ConnError> {
        let limit = self.receive_limit();
        let header = pdu::peek_header(&self.buf[self.pos..self.end]);
        if let Some((pdu::pdu_type::P_DATA_TF, len)) = header {
            let buffered = self.end - self.pos;
            if len > limit {
                return Err(self.invalid_pdu(PduError::TooLong { declared: len, limit }));
            }
            let total = pdu::PDU_HEADER_LEN + len as usize;
            if buffered >= HEADERS && self.splice_min.is_some_and(|m| len >= m) {
                let h = &self.buf[self.pos..self.pos + HEADERS];
                let item_len = u32::from_be_bytes([h[6], h[7], h[8], h[9]]);
                let (ctx, control) = (h[10], h[11]);
                // Exactly one data PDV filling the PDU, into a sink that takes spliced data.
                if item_len == len.saturating_sub(4) && item_len >= 2 && control & Pdv::COMMAND == 0 && self.splice_ready() {
                    if let Some(ev) = self.pdata_received()? {
                        return Ok(Next::Event(ev));
                    }
                    match self.reasm.push_ref(ctx, control, &[]) {
                        Ok(Some(DimseEvent::Data { .. })) => {}
                        Ok(_) => return Err(self.fail_dimse(ConnError::Protocol("data PDV out of place".into()))),
                        Err(e) => return Err(self.fail_dimse(e.into())),
                    }
                    self.pos += HEADERS;
                    self.raw = Some(((item_len - 2) as usize, control & Pdv::LAST != 0));
                    return Ok(Next::Again);
                }
            }
            if buffered < total {
                self.need = total - buffered;
                return Ok(Next::NeedBytes);
            }
            let body = (self.pos + pdu::PDU_HEADER_LEN, self.pos + total);
            self.pos += total;
            if let Some(ev) = self.pdata_received()? {
                return Ok(Next::Event(ev));
            }
            self.pdata = Some((body.0, body.1, 0));
            return Ok(Next::Again);
        }
        match pdu::decode(&self.buf[self.pos..self.end], limit) {
            Ok(Decoded::Complete(p, used)) => {
                self.pos += used;
                Ok(self.on_pdu(p)?.map(Next::Event).unwrap_or(Next::Again))
            }
            Ok(Decoded::NeedMore(n)) => {
                self.need = n;
                Ok(Next::NeedBytes)
            }
            Err(e) => Err(self.invalid_pdu(e)),
        }
    }

    /// Evt10 through the table: `Ok(None)` when the P-DATA-TF is to be delivered (DT-2, AR-6).
    fn pdata_received(&mut self) -> Result<Option<Event>, ConnError> {
        let inds = self.step(Ev::PDataReceived);
        if inds.contains(&Indication::PData) {
            return Ok(None);
        }
        for ind in inds {
            if let Some(ev) = self.indication(ind)? {
                return Ok(Some(ev));
            }
        }
        warn!("{}: P-DATA-TF in state {:?}; association aborted", self.peer, self.sm.state());
        self.must_close = true;
        Err(ConnError::Unexpected("P-DATA-TF"))
    }

    /// A PDU other than P-DATA-TF, through the table.
    fn on_pdu(&mut self, p: Pdu) -> Result<Option<Event>, ConnError> {
        for ind in self.step(Ev::from_pdu(p)) {
            if let Some(ev) = self.indication(ind)? {
                return Ok(Some(ev));
            }
        }
        if self.sm.is_closed() {
            return Ok(Some(Event::Closed));
        }
        if self.sm.state() == State::Sta13 {
            if let Some(rj) = self.sent_reject {
                // The provider itself rejected the request (AE-6: protocol version).
                info!("association from {} rejected: {}", self.peer, negotiation::reject_reason_text(rj.result, rj.source, rj.reason));
                return Err(ConnError::Rejected(rj));
            }
            warn!("{}: unexpected PDU in state {:?}; association aborted", self.peer, self.sm.state());
            self.must_close = true;
            return Err(ConnError::Unexpected("PDU"));
        }
        Ok(None)
    }

    fn indication(&mut self, ind: Indication) -> Result<Option<Event>, ConnError> {
        Ok(Some(match ind {
            Indication::AssociateRequest(rq) => Event::AssociateRequest(rq),
            Indication::AssociateAccepted(ac) => {
                let rq = self.rq.as_ref().ok_or_else(|| ConnError::Protocol("A-ASSOCIATE-AC without a request".into()))?;
                match negotiation::interpret_associate_ac(rq, &ac) {
                    Ok(neg) => {
                        self.negotiated = Some(neg);
                        Event::Established
                    }
                    Err(e) => {
                        self.abort();
                        return Err(ConnError::Negotiation(e.to_string()));
                    }
                }
            }
            Indication::AssociateRejected(rj) => Event::Rejected(rj),
            Indication::PData => return Ok(None),
            Indication::ReleaseRequested => {
                if self.inbox.current.is_some() {
                    warn!("{}: A-RELEASE-RQ in the middle of a message", self.peer);
                }
                Event::Received(Received::ReleaseRequested)
            }
            // Release collision: the requestor side answers at once (AR-9), the acceptor side
            // after the peer's A-RELEASE-RP (AR-10, then AR-4 below).
            Indication::ReleaseCollision { requestor } => {
                debug!("{}: release collision (we are the {})", self.peer, if requestor { "requestor" } else { "acceptor" });
                if self.awaiting_release_response() {
                    self.release_response();
                }
                return Ok(None);
            }
            Indication::ReleaseConfirmed => {
                if self.awaiting_release_response() {
                    self.release_response();
                }
                Event::ReleaseConfirmed
            }
            Indication::Aborted { source, reason, .. } => Event::Aborted { source, reason },
            Indication::TransportClosed => Event::Closed,
        }))
    }

    /// Feed one PDV (its data is `data` in the receive buffer) to the reassembler and route it.
    fn absorb(
        &mut self,
        ctx: u8,
        control: u8,
        data: std::ops::Range<usize>,
        sink_for: &mut dyn FnMut(u8, &Command) -> DataSink,
    ) -> Result<Option<Event>, ConnError> {
        let event = match self.reasm.push_ref(ctx, control, &self.buf[data]) {
            Ok(e) => e,
            Err(e) => return Err(self.fail_dimse(e.into())),
        };
        match event {
            None => Ok(None),
            Some(DimseEvent::Command { context_id, command }) => {
                debug!("received {} on context {}", command, context_id);
                if self.negotiated.as_ref().and_then(|n| n.context(context_id)).is_none() {
                    let msg = format!("message on presentation context {context_id}, which was not accepted");
                    return Err(self.fail_dimse(ConnError::Protocol(msg)));
                }
                if !command.has_dataset {
                    return Ok(self.deliver(Received::Message { context_id, command, data: MessageData::None }));
                }
                let sink = sink_for(context_id, &command);
                self.inbox.start(context_id, command, sink);
                Ok(None)
            }
            Some(DimseEvent::Data { data, last, .. }) => {
                self.inbox.write(data);
                if !last {
                    return Ok(None);
                }
                match self.inbox.finish() {
                    Some(r) => Ok(self.deliver(r)),
                    None => Err(self.fail_dimse(ConnError::Protocol("data set without a command".into()))),
                }
            }
        }
    }

    /// A complete message, unless we asked to release: P-DATA may still arrive before the
    /// peer sees our A-RELEASE-RQ (AR-6), and is dropped.
    fn deliver(&self, r: Received) -> Option<Event> {
        if self.releasing {
            debug!("{}: P-DATA after A-RELEASE-RQ ignored", self.peer);
            return None;
        }
        Some(Event::Received(r))
    }

    fn receive_limit(&self) -> u32 {
        match &self.negotiated {
            None => ASSOCIATION_PDU_LIMIT,
            Some(n) if n.our_max_pdu == 0 => UNLIMITED_PDU_LIMIT,
            // A few bytes of slack: some peers count the PDV header in, some do not.
            Some(n) => n.our_max_pdu.saturating_add(16).max(ASSOCIATION_PDU_LIMIT.min(64 * 1024)),
        }
    }

    // ---- requests in ----

    /// Acceptor: answer an [`Event::AssociateRequest`] with the user's decision; true when
    /// accepted.
    pub fn decide(&mut self, rq: &AssociateRq, decision: AcceptorDecision) -> Result<bool, ConnError> {
        match decision {
            AcceptorDecision::Accept(ac, neg) => {
                info!(
                    "association from {} ({}) to {} accepted: {} of {} context(s), peer max PDU {}",
                    neg.peer_ae_title,
                    self.peer,
                    neg.our_ae_title,
                    neg.contexts.len(),
                    rq.presentation_contexts.len(),
                    neg.peer_max_pdu
                );
                self.accept(ac, neg)?;
                Ok(true)
            }
            AcceptorDecision::Reject(rj) => {
                info!(
                    "association from {} ({}) to {} rejected: {}",
                    rq.calling_ae_title,
                    self.peer,
                    rq.called_ae_title,
                    negotiation::reject_reason_text(rj.result, rj.source, rj.reason)
                );
                self.reject(rj)?;
                Ok(false)
            }
        }
    }

    /// Acceptor: answer `rq` with `reject` when given (a server at its association limit),
    /// else as `cfg` negotiates it; true when accepted.
    pub fn answer(&mut self, rq: &AssociateRq, cfg: &AcceptorConfig, reject: Option<AssociateRj>) -> Result<bool, ConnError> {
        let decision = reject.map(AcceptorDecision::Reject).unwrap_or_else(|| negotiation::negotiate_acceptor(rq, cfg));
        self.decide(rq, decision)
    }

    /// Acceptor: accept (Evt7, A-ASSOCIATE-AC out).
    pub fn accept(&mut self, ac: AssociateAc, negotiated: Negotiated) -> Result<(), ConnError> {
        self.local(Ev::AssociateAccept(ac))?;
        self.negotiated = Some(negotiated);
        Ok(())
    }

    /// Acceptor: reject (Evt8, A-ASSOCIATE-RJ out; ARTIM waits for the peer to close).
    pub fn reject(&mut self, rj: AssociateRj) -> Result<(), ConnError> {
        self.local(Ev::AssociateReject(rj))
    }

    /// A-RELEASE request (Evt11); ignored where the table has no action. Then wait for
    /// [`Event::ReleaseConfirmed`] (or [`Event::Closed`]).
    pub fn release(&mut self) {
        self.releasing = true;
        self.step(Ev::ReleaseRequest);
    }

    /// A-RELEASE response (Evt14); ignored where the table has no action.
    pub fn release_response(&mut self) {
        self.step(Ev::ReleaseResponse);
    }

    /// Whether the user owes an A-RELEASE response now (read from the Evt14 row).
    pub fn awaiting_release_response(&self) -> bool {
        self.sm.awaiting_release_response()
    }

    /// A-ABORT as service user (Evt15).
    pub fn abort(&mut self) {
        self.step(Ev::AbortRequest);
    }

    /// A-ABORT as service provider with `reason` (Evt19): the peer broke the protocol
    /// inside well-formed PDUs.
    pub fn abort_provider(&mut self, reason: u8) {
        self.step(Ev::InvalidPdu { abort_reason: reason });
    }

    /// A P-DATA request (Evt9) through the table: Ok when a P-DATA-TF may go now.
    pub fn pdata_request(&mut self) -> Result<(), ConnError> {
        let outs = self.sm.try_handle(Ev::PDataRequest).map_err(|e| ConnError::NotAllowed(e.state))?;
        self.apply(outs);
        Ok(())
    }

    fn peer_max_pdu(&self) -> u32 {
        self.negotiated.as_ref().map(|n| n.peer_max_pdu).unwrap_or(0)
    }

    /// The largest PDV data a P-DATA-TF to the peer may carry.
    pub fn max_pdv_data(&self) -> usize {
        pdu::max_pdv_data_len(self.peer_max_pdu()).max(1)
    }

    /// Append one DIMSE message (command, then the data set if given) as P-DATA-TF PDUs to
    /// `out`, without asking the table (for messages sent later through [`send_message`](Self::send_message)'s checks).
    pub fn encode_message(&self, ctx: u8, command: &Command, data: Option<&[u8]>, out: &mut Vec<u8>) {
        let max = self.peer_max_pdu();
        debug!("{}: sending {} on context {}", self.peer, command, ctx);
        let mut cmd = command.clone();
        cmd.has_dataset = data.is_some();
        dimse::fragment(ctx, true, &cmd.encode(), max, out);
        if let Some(d) = data {
            dimse::fragment(ctx, false, d, max, out);
        }
    }

    /// Send one DIMSE message (Evt9): its PDUs are appended to `out`.
    pub fn send_message(&mut self, ctx: u8, command: &Command, data: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), ConnError> {
        self.pdata_request()?;
        self.encode_message(ctx, command, data, out);
        Ok(())
    }

    /// The command of a message whose data set follows in PDUs framed by
    /// [`data_header`](Self::data_header) (Evt9): appended to `out`.
    pub fn send_command(&mut self, ctx: u8, command: &Command, out: &mut Vec<u8>) -> Result<(), ConnError> {
        self.pdata_request()?;
        let mut cmd = command.clone();
        cmd.has_dataset = true;
        dimse::fragment(ctx, true, &cmd.encode(), self.peer_max_pdu(), out);
        Ok(())
    }

    /// The P-DATA-TF and PDV headers of one data PDU of `len` bytes (Evt9).
    pub fn data_header(&mut self, ctx: u8, len: usize, last: bool) -> Result<[u8; HEADERS], ConnError> {
        self.pdata_request()?;
        let mut h = Vec::with_capacity(HEADERS);
        pdu::write_single_pdv_header(&mut h, ctx, if last { Pdv::LAST } else { 0 }, len as u32);
        let mut a = [0u8; HEADERS];
        a.copy_from_slice(&h[..HEADERS]);
        Ok(a)
    }

    /// Frame whole data PDVs from the front of `pending` into `out`, keeping at least one
    /// byte back until `eof` so that the last fragment can carry the "last" bit. Returns the
    /// bytes framed. At `eof` an empty data set still gets its (empty, last) PDV when
    /// `nothing_sent`.
    pub fn frame_data(&mut self, ctx: u8, pending: &mut Vec<u8>, eof: bool, nothing_sent: bool, out: &mut Vec<u8>) -> Result<usize, ConnError> {
        let max = self.max_pdv_data();
        let mut start = 0;
        while pending.len() - start > max || (eof && start < pending.len()) {
            let n = (pending.len() - start).min(max);
            let last = eof && start + n == pending.len();
            out.extend_from_slice(&self.data_header(ctx, n, last)?);
            out.extend_from_slice(&pending[start..start + n]);
            start += n;
        }
        pending.drain(..start);
        if eof && nothing_sent && start == 0 {
            out.extend_from_slice(&self.data_header(ctx, 0, true)?);
        }
        Ok(start)
    }

    /// Hold a response back until it is ready (see [`Deferred`]); past the limit the oldest
    /// is settled into `out`.
    pub fn defer(&mut self, ctx: u8, response: Box<dyn Deferred>, out: &mut Vec<u8>) -> Result<(), ConnError> {
        self.deferred.push_back((ctx, response));
        if self.deferred.len() > MAX_DEFERRED {
            if let Some((ctx, d)) = self.deferred.pop_front() {
                let rsp = d.wait();
                self.send_message(ctx, &rsp, None, out)?;
            }
        }
        Ok(())
    }

    /// Responses held back now.
    pub fn deferred_len(&self) -> usize {
        self.deferred.len()
    }

    /// Encode the held responses that are ready (all of them, waiting, with `wait`) into
    /// `out`, oldest first. If none may be sent any more they are dropped and the error
    /// says why.
    pub fn settle(&mut self, wait: bool, out: &mut Vec<u8>) -> Result<(), ConnError> {
        let mut any = false;
        let at = out.len();
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
            any = true;
            self.encode_message(ctx, &rsp, None, out);
        }
        if any {
            if let Err(e) = self.pdata_request() {
                self.deferred.clear();
                out.truncate(at);
                return Err(e);
            }
        }
        Ok(())
    }

    // ---- the machine ----

    /// A local request: refused (state unchanged) where the table has a blank cell.
    fn local(&mut self, ev: Ev) -> Result<(), ConnError> {
        let outs = self.sm.try_handle(ev).map_err(|e| ConnError::NotAllowed(e.state))?;
        self.apply(outs);
        Ok(())
    }

    fn step(&mut self, ev: Ev) -> Vec<Indication> {
        let outs = self.sm.handle(ev);
        self.apply(outs)
    }

    fn apply(&mut self, outputs: Vec<Output>) -> Vec<Indication> {
        let mut inds = Vec::new();
        for o in outputs {
            match o {
                Output::SendPdu(p) => {
                    match &p {
                        Pdu::Abort(a) => {
                            debug!("{}: sending A-ABORT ({})", self.peer, negotiation::abort_reason_text(a.source, a.reason));
                            self.must_close = true;
                        }
                        Pdu::AssociateRj(rj) => self.sent_reject = Some(*rj),
                        _ => {}
                    }
                    pdu::encode(&p, &mut self.out);
                }
                // P-DATA-TF bytes are the caller's; connecting and closing the driver's
                // (`should_close`).
                Output::SendPData | Output::ConnectTransport | Output::CloseTransport => {}
                Output::StartArtim => self.artim = Some(true),
                Output::StopArtim => self.artim = Some(false),
                Output::Indication(i) => inds.push(i),
            }
        }
        inds
    }

    fn fail_dimse(&mut self, e: ConnError) -> ConnError {
        warn!("{}: {}; aborting", self.peer, e);
        self.abort_provider(6);
        self.failed();
        e
    }

    /// After an error: nothing more is read from what was received.
    fn failed(&mut self) {
        self.must_close = true;
        self.pdata = None;
        self.raw = None;
    }

    fn fail_pdu(&mut self, e: PduError) -> ConnError {
        warn!("{}: invalid P-DATA-TF ({e}); aborting the association", self.peer);
        self.invalid_pdu(e)
    }

    fn invalid_pdu(&mut self, e: PduError) -> ConnError {
        debug!("{}: invalid PDU ({e})", self.peer);
        self.abort_provider(e.abort_reason());
        self.failed();
        ConnError::Pdu(e)
    }
}

/// Fuzzing entry point: feed `data` to an acceptor connection that accepts any association
/// (the first bytes choose the chunk sizes), draining events and answering releases. Never
/// panics.
#[doc(hidden)]
pub fn fuzz_feed(data: &[u8]) {
    let mut cfg = AcceptorConfig::new("FUZZ");
    cfg.accept_any_abstract = true;
    let (sizes, mut rest) = data.split_at(data.len().min(4));
    let mut c = Connection::acceptor("fuzz");
    c.set_splice(if sizes.first().is_some_and(|b| b & 1 == 1) { Some(64) } else { None });
    let mut i = 0usize;
    while !rest.is_empty() {
        let n = (sizes.get(i % sizes.len().max(1)).copied().unwrap_or(255) as usize).max(1).min(rest.len());
        i += 1;
        c.feed(&rest[..n]);
        rest = &rest[n..];
        loop {
            match c.next_event(&mut |_, _| DataSink::Memory) {
                Ok(Some(Event::AssociateRequest(rq))) => {
                    let d = negotiation::negotiate_acceptor(&rq, &cfg);
                    let _ = c.decide(&rq, d);
                }
                Ok(Some(Event::Received(Received::ReleaseRequested))) => c.release_response(),
                Ok(Some(Event::Splice { len, .. })) => c.spliced(len, None),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        c.take_outgoing();
        if c.should_close() {
            return;
        }
    }
    c.transport_closed();
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
