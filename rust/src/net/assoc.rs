//! One association over one transport, for either role: the blocking driver of a
//! [`Connection`]. It reads into the connection, writes what it produces, keeps the
//! deadlines and the ARTIM timer, and runs the zero-copy paths (splice, sendfile) where
//! the transport has a socket.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::tls::{plaintext_saw_tls, tls_failure};
use super::{connect, NetError, Timeouts, TlsClient, Transport};
use crate::dimse::Command;
use crate::pdu::AssociateRj;
use crate::ul::{self, stream::{DataFramer, FrameError}, AcceptorConfig, ConnError, ConnEvent, Connection, DataSink, Deferred, Negotiated, Received, RequestorConfig};

/// A socket timeout within this much of the wanted one is left as it is (it saves one
/// setsockopt per read; the waits are in seconds).
const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

/// An established association (or one being established) and its connection.
pub struct Association {
    t: Box<dyn Transport>,
    conn: Connection,
    /// The buffer messages are encoded into and written from (kept between messages).
    wbuf: Vec<u8>,
    timeouts: Timeouts,
    artim: Option<Instant>,
    closed: bool,
    peer: String,
    /// The pipe used to splice socket -> file (Linux), made on first use.
    #[cfg(target_os = "linux")]
    pipe: Option<super::sys::Pipe>,
    /// The transport's receive / send timeouts as last set (None: not known).
    timeouts_set: [Option<Option<Duration>>; 2],
}

/// "waiting for X (DIMSE timeout)" -> "waiting for X": the note names the timeout that
/// bounds the wait, which is beside the point when the peer closed the connection.
fn without_timeout_note(what: &'static str) -> &'static str {
    match what.rfind(" (") {
        Some(i) if what.ends_with("timeout)") => &what[..i],
        _ => what,
    }
}

enum StreamError {
    /// Writing to the peer failed (the association is gone).
    Net(NetError),
    /// Reading or transcoding the source failed (the association must be aborted).
    Source(NetError),
}

fn tcp(stream: TcpStream) -> Box<dyn Transport> {
    let _ = stream.set_nodelay(true);
    #[cfg(target_os = "linux")]
    super::sys::tune_buffers(std::os::fd::AsRawFd::as_raw_fd(&stream));
    Box::new(stream)
}

type SinkFor<'a> = &'a mut dyn FnMut(u8, &Command) -> DataSink;

impl Association {
    fn over(t: Box<dyn Transport>, mut conn: Connection, timeouts: Timeouts) -> Self {
        if t.raw_fd().is_some() {
            conn.enable_splice();
        }
        let peer = t.peer();
        let mut a = Association {
            t,
            conn,
            wbuf: Vec::new(),
            timeouts,
            artim: None,
            closed: false,
            peer,
            #[cfg(target_os = "linux")]
            pipe: None,
            timeouts_set: [None, None],
        };
        let _ = a.sync();
        a
    }

    /// Requestor: connect to `addr`, propose the association, wait for the answer.
    pub fn request(addr: &str, cfg: &RequestorConfig, timeouts: Timeouts) -> Result<Association, NetError> {
        Self::request_tls(addr, cfg, timeouts, None)
    }

    /// [`request`](Self::request), over TLS when `tls` is given (the handshake within
    /// the ACSE timeout, else the connect timeout).
    pub fn request_tls(addr: &str, cfg: &RequestorConfig, timeouts: Timeouts, tls: Option<&TlsClient>) -> Result<Association, NetError> {
        let conn = Connection::requestor(cfg, addr).map_err(|e| NetError::Negotiation(e.to_string()))?;
        let t = match tls {
            Some(tls) => Box::new(tls.connect(connect(addr, timeouts.connect)?, addr, timeouts.acse.or(timeouts.connect))?),
            None => tcp(connect(addr, timeouts.connect)?),
        };
        let mut a = Association::over(t, conn, timeouts);
        debug!("{}: connected, sending A-ASSOCIATE-RQ {} -> {}", a.peer, cfg.calling_ae, cfg.called_ae);
        a.conn.connected().map_err(|e| a.fail(e, "connecting"))?;
        a.sync()?;
        let deadline = timeouts.acse.map(|d| Instant::now() + d);
        let what = "waiting for A-ASSOCIATE-AC (ACSE timeout)";
        match a.next(deadline, what, &mut |_, _| DataSink::Discard).map_err(|e| plaintext_saw_tls(e, true))? {
            ConnEvent::Established => {
                let neg = a.negotiated();
                info!(
                    "association with {} ({}) accepted: {} context(s), peer max PDU {}",
                    neg.peer_ae_title,
                    a.peer,
                    neg.contexts.len(),
                    neg.peer_max_pdu
                );
                Ok(a)
            }
            ConnEvent::Rejected(rj) => {
                a.close();
                info!("association with {} rejected: {}", a.peer, ul::reject_reason_text(rj.result, rj.source, rj.reason));
                Err(NetError::Rejected(rj))
            }
            other => Err(a.unexpected(other, what)),
        }
    }

    /// Acceptor: run negotiation on an accepted TCP connection, answering any valid
    /// request with `reject` when given (a server at its association limit rejects this
    /// way). On rejection the A-ASSOCIATE-RJ is sent and an error returned.
    pub fn accept(stream: TcpStream, cfg: &AcceptorConfig, timeouts: Timeouts, reject: Option<AssociateRj>) -> Result<Association, NetError> {
        Self::accept_over(tcp(stream), cfg, timeouts, reject)
    }

    /// [`accept`](Self::accept) over any transport (TLS, for example).
    pub fn accept_over(t: Box<dyn Transport>, cfg: &AcceptorConfig, timeouts: Timeouts, reject: Option<AssociateRj>) -> Result<Association, NetError> {
        let peer = t.peer();
        let mut a = Association::over(t, Connection::acceptor(&peer), timeouts);
        // The ARTIM timer, started by the state machine, bounds the wait for the RQ.
        let what = "waiting for A-ASSOCIATE-RQ (ARTIM)";
        let rq = match a.next(None, what, &mut |_, _| DataSink::Discard).map_err(|e| plaintext_saw_tls(e, false))? {
            ConnEvent::AssociateRequest(rq) => rq,
            other => return Err(a.unexpected(other, what)),
        };
        let accepted = a.conn.answer(&rq, cfg, reject).map_err(|e| a.fail(e, what))?;
        a.sync()?;
        if !accepted {
            a.drain_until_closed();
            return Err(a.conn.sent_reject().map_or(NetError::Closed(what), NetError::Rejected));
        }
        Ok(a)
    }

    /// What was negotiated (always present once `request`/`accept` returned Ok).
    pub fn negotiated(&self) -> &Negotiated {
        self.conn.negotiated().expect("negotiated is set before an Association is returned")
    }

    pub fn peer_addr(&self) -> &str {
        &self.peer
    }

    pub fn is_established(&self) -> bool {
        !self.closed && self.conn.is_established()
    }

    /// A fresh message id (1, 2, ... wrapping, never 0).
    pub fn next_message_id(&mut self) -> u16 {
        self.conn.next_message_id()
    }

    /// Send one DIMSE message: the command, then the data set if given. Responses held
    /// back ([`defer_response`](Self::defer_response)) go first.
    pub fn send_message(&mut self, context_id: u8, command: &Command, data: Option<&[u8]>) -> Result<(), NetError> {
        self.send_with(true, |c, out| c.send_message(context_id, command, data, out))
    }

    /// Append one DIMSE message to `out` as P-DATA-TF PDUs, to be sent later with
    /// [`send_encoded`](Self::send_encoded): several small responses in one write.
    pub fn append_message(&self, context_id: u8, command: &Command, data: Option<&[u8]>, out: &mut Vec<u8>) {
        self.conn.encode_message(context_id, command, data, out);
    }

    /// Send messages encoded by [`append_message`](Self::append_message), in one write
    /// (responses held back go first, as with [`send_message`](Self::send_message)).
    pub fn send_encoded(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        self.send_with(true, |c, _| c.pdata_request())?;
        if bytes.is_empty() {
            return Ok(());
        }
        self.write_all(bytes)
    }

    /// Hold a response back until it is ready (see [`Deferred`]). It is sent before the
    /// association next waits for the peer, sends anything else or answers a release.
    pub fn defer_response(&mut self, context_id: u8, response: Box<dyn Deferred>) -> Result<(), NetError> {
        self.send_with(false, |c, out| c.defer(context_id, response, out))
    }

    /// Responses held back now.
    pub fn deferred_responses(&self) -> usize {
        self.conn.deferred_len()
    }

    /// Let the connection encode into the write buffer (after the held responses, with
    /// `settle`), then write what it produced in one write.
    fn send_with(&mut self, settle: bool, f: impl FnOnce(&mut Connection, &mut Vec<u8>) -> Result<(), ConnError>) -> Result<(), NetError> {
        let mut out = std::mem::take(&mut self.wbuf);
        out.clear();
        let r = if settle { self.conn.settle(true, &mut out) } else { Ok(()) };
        let r = match r.and_then(|_| f(&mut self.conn, &mut out)) {
            Ok(()) if out.is_empty() => Ok(()),
            Ok(()) => self.write_all(&out),
            Err(e) => Err(self.fail(e, "sending")),
        };
        self.wbuf = out;
        r
    }

    /// Wait for the next DIMSE message (or a release request), collecting any data set
    /// in memory. `timeout` bounds the wait (the DIMSE timeout for a requestor waiting on
    /// a response, the network timeout for an acceptor waiting for the next request).
    pub fn receive(&mut self, timeout: Option<Duration>, what: &'static str) -> Result<Received, NetError> {
        self.receive_with(timeout, what, &mut |_, _| DataSink::Memory)
    }

    /// Like [`receive`](Self::receive), but `sink_for` decides, when a command with a data
    /// set arrives, where its data fragments go. Fragments are written straight from the
    /// receive buffer (or spliced from the socket): a data set is never held whole in
    /// memory unless asked for.
    pub fn receive_with(&mut self, timeout: Option<Duration>, what: &'static str, sink_for: SinkFor) -> Result<Received, NetError> {
        if self.conn.deferred_len() > 0 {
            // Held responses: those ready go now; the rest wait while the peer is still
            // sending (a window of requests in flight), and are settled before we block.
            self.send_with(false, |c, out| c.settle(false, out))?;
            if self.conn.deferred_len() > 0 && !(self.conn.has_input() || self.t.readable()) {
                self.send_with(false, |c, out| c.settle(true, out))?;
            }
        }
        let deadline = timeout.map(|d| Instant::now() + d);
        match self.next(deadline, what, sink_for)? {
            ConnEvent::Received(r) => Ok(r),
            other => Err(self.unexpected(other, what)),
        }
    }

    /// Send one DIMSE message whose data set is read from `source` (see [`DataFramer`]).
    /// An error while reading or transcoding leaves the message unfinished on the wire;
    /// the association is then aborted (the only way to end a half-sent message).
    pub fn send_message_from(
        &mut self,
        context_id: u8,
        command: &Command,
        source: &mut dyn Read,
        len: Option<u64>,
        transcoder: Option<&mut crate::dataset::Transcoder>,
    ) -> Result<u64, NetError> {
        debug!("{}: sending {} on context {} (streamed)", self.peer, command, context_id);
        let mut out = std::mem::take(&mut self.wbuf);
        out.clear();
        // The command leaves with the first data PDU (see `sys::quick_ack` for why).
        let r = match self.conn.send_command(context_id, command, &mut out) {
            Err(e) => Err(StreamError::Net(self.fail(e, "sending"))),
            Ok(()) => {
                let mut f = DataFramer::new(&self.conn, context_id, source, len, transcoder, &mut out);
                loop {
                    break match f.next(&mut self.conn, &mut out) {
                        Ok(Some(n)) => match self.write_all(&out[..n]) {
                            Ok(()) => continue,
                            Err(e) => Err(StreamError::Net(e)),
                        },
                        Ok(None) => Ok(f.sent()),
                        Err(FrameError::Conn(e)) => Err(StreamError::Net(self.fail(e, "sending"))),
                        Err(FrameError::Read(e)) => Err(StreamError::Source(NetError::Io(e))),
                        Err(FrameError::Transcode(e)) => Err(StreamError::Source(NetError::Protocol(e))),
                    };
                }
            }
        };
        self.wbuf = out;
        self.finish_stream(command, r)
    }

    /// Send one DIMSE message whose data set is `len` bytes of `file` from `offset`, as
    /// is. On Linux the bytes go from the page cache to the socket with sendfile(2)
    /// (no copy through user space); elsewhere, or over a transport without a socket,
    /// through the PDU buffer.
    pub fn send_message_from_file(&mut self, context_id: u8, command: &Command, file: &std::fs::File, offset: u64, len: u64) -> Result<u64, NetError> {
        #[cfg(target_os = "linux")]
        if let Some(sock) = self.t.raw_fd() {
            debug!("{}: sending {} on context {} (sendfile)", self.peer, command, context_id);
            let mut out = std::mem::take(&mut self.wbuf);
            out.clear();
            let r = match self.conn.send_command(context_id, command, &mut out) {
                Err(e) => Err(StreamError::Net(self.fail(e, "sending"))),
                Ok(()) => self.sendfile_pdus(sock, context_id, &out, file, offset, len),
            };
            self.wbuf = out;
            return self.finish_stream(command, r);
        }
        use std::io::Seek as _;
        let mut f = file;
        f.seek(std::io::SeekFrom::Start(offset))?;
        self.send_message_from(context_id, command, &mut f.take(len), Some(len), None)
    }

    fn finish_stream(&mut self, command: &Command, r: Result<u64, StreamError>) -> Result<u64, NetError> {
        match r {
            Ok(n) => Ok(n),
            Err(StreamError::Net(e)) => Err(e),
            Err(StreamError::Source(e)) => {
                warn!("{}: cannot finish the data set of {}: {e}; aborting the association", self.peer, command);
                let _ = self.abort();
                Err(e)
            }
        }
    }

    /// `command`: the command PDU(s), sent before the first data PDU's header. Each header
    /// goes with MSG_MORE so that it leaves in the same segment as the data.
    #[cfg(target_os = "linux")]
    fn sendfile_pdus(&mut self, sock: i32, ctx: u8, command: &[u8], file: &std::fs::File, offset: u64, total: u64) -> Result<u64, StreamError> {
        let max = self.conn.max_pdv_data() as u64;
        let _ = self.set_timeout(1, self.timeouts.network);
        let mut hdr = command.to_vec();
        let (mut left, mut off) = (total, offset);
        loop {
            let n = left.min(max);
            hdr.extend_from_slice(&self.conn.data_header(ctx, n as usize, left == n).map_err(|e| StreamError::Net(self.fail(e, "sending")))?);
            super::sys::send_more(sock, &hdr).map_err(|e| StreamError::Net(self.send_error(e)))?;
            hdr.clear();
            match super::sys::sendfile(sock, std::os::fd::AsRawFd::as_raw_fd(file), &mut off, n as usize) {
                Ok(true) => {}
                Ok(false) => {
                    let msg = format!("the file ended early ({} of {total} bytes sent)", off - offset);
                    return Err(StreamError::Source(NetError::Io(std::io::Error::new(ErrorKind::UnexpectedEof, msg))));
                }
                Err(e) => return Err(StreamError::Net(self.send_error(e))),
            }
            left -= n;
            if left == 0 {
                return Ok(total);
            }
        }
    }

    /// Without waiting: a message that has already (at least partly) arrived, such as a
    /// C-CANCEL-RQ during a long C-FIND/C-MOVE/C-GET, or None when nothing is there.
    pub fn poll_message(&mut self) -> Result<Option<Received>, NetError> {
        if self.closed {
            return Err(NetError::Closed("(polling)"));
        }
        if !self.conn.has_input() {
            self.t.set_nonblocking(true)?;
            let r = self.t.read(self.conn.recv_buf());
            let restore = self.t.set_nonblocking(false);
            match r {
                Ok(0) => {
                    self.close();
                    return Err(NetError::Closed("during the operation"));
                }
                Ok(k) => {
                    self.conn.received(k);
                    self.t.after_read();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(e) => return Err(NetError::Io(e)),
            }
            restore?;
            if !self.conn.has_input() {
                return Ok(None);
            }
        }
        let t = self.timeouts.network.or(Some(Duration::from_secs(30)));
        self.receive(t, "reading a message that had started to arrive").map(Some)
    }

    /// Answer a release request (A-RELEASE-RP) and close.
    pub fn release_response(&mut self) -> Result<(), NetError> {
        // Every response before A-RELEASE-RP (P-DATA may still go in Sta8).
        self.send_with(false, |c, out| c.settle(true, out))?;
        self.conn.release_response();
        self.sync()?;
        info!("association with {} released by the peer", self.peer);
        self.close();
        Ok(())
    }

    /// Orderly release as the side that asks (A-RELEASE-RQ, wait for RP).
    pub fn release(&mut self) -> Result<(), NetError> {
        if self.closed {
            return Ok(());
        }
        self.conn.release();
        self.sync()?;
        let deadline = self.timeouts.acse.map(|d| Instant::now() + d);
        let what = "waiting for A-RELEASE-RP (ACSE timeout)";
        match self.next(deadline, what, &mut |_, _| DataSink::Discard) {
            Ok(ConnEvent::ReleaseConfirmed) => {
                let _ = self.sync();
                info!("association with {} released", self.peer);
                self.close();
                Ok(())
            }
            Ok(ConnEvent::Closed) => {
                self.close();
                Ok(())
            }
            Ok(other) => Err(self.unexpected(other, what)),
            Err(e) => {
                let _ = self.abort();
                Err(e)
            }
        }
    }

    /// A-ABORT as service user (source 0) and close.
    pub fn abort(&mut self) -> Result<(), NetError> {
        if self.closed {
            return Ok(());
        }
        self.conn.abort();
        let r = self.sync();
        info!("association with {} aborted by us", self.peer);
        self.close();
        r
    }

    fn unexpected(&mut self, ev: ConnEvent, what: &'static str) -> NetError {
        match ev {
            ConnEvent::Aborted { source, reason } => {
                self.close();
                info!("association with {} aborted: {}", self.peer, ul::abort_reason_text(source, reason));
                NetError::Aborted { by: source, reason }
            }
            ConnEvent::Closed => {
                self.close();
                NetError::Closed(without_timeout_note(what))
            }
            other => {
                warn!("{}: unexpected {:?}", self.peer, other);
                NetError::Protocol(format!("unexpected {other:?}"))
            }
        }
    }

    /// After a connection error: send the A-ABORT it queued, close if it says so, and
    /// say what went wrong.
    fn fail(&mut self, e: ConnError, what: &'static str) -> NetError {
        let _ = self.sync();
        match e {
            ConnError::Pdu(e) => NetError::Pdu(e),
            ConnError::Dimse(e) => NetError::Dimse(e),
            ConnError::Protocol(s) => NetError::Protocol(s),
            ConnError::Unexpected(x) => {
                self.close();
                NetError::Protocol(format!("unexpected {x} ({what})"))
            }
            ConnError::Rejected(rj) => {
                self.drain_until_closed();
                NetError::Rejected(rj)
            }
            ConnError::NotAllowed(_) => NetError::NotEstablished(if self.closed { "closed" } else { "not established" }),
            ConnError::Negotiation(s) => NetError::Negotiation(s),
        }
    }

    /// Events from the connection until one is not the driver's own business, reading
    /// (within `deadline` and the ARTIM timer) whenever it needs bytes.
    fn next(&mut self, deadline: Option<Instant>, what: &'static str, sink_for: SinkFor) -> Result<ConnEvent, NetError> {
        loop {
            if self.closed {
                return Err(NetError::Closed(without_timeout_note(what)));
            }
            let r = self.conn.next_event(sink_for);
            let synced = self.sync();
            match r {
                Ok(Some(ConnEvent::Splice { fd, len })) => self.splice(fd, len)?,
                Ok(Some(ev)) => return synced.map(|_| ev),
                Ok(None) => {
                    synced?;
                    self.fill(deadline, what)?
                }
                Err(e) => return Err(self.fail(e, what)),
            }
        }
    }

    /// One read from the transport into the connection.
    fn fill(&mut self, deadline: Option<Instant>, what: &'static str) -> Result<(), NetError> {
        let until = match (deadline, self.artim) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let now = Instant::now();
        if until.is_some_and(|t| now >= t) {
            return Err(self.timed_out(deadline, what));
        }
        self.set_timeout(0, until.map(|t| (t - now).max(Duration::from_millis(1))))?;
        let r = self.t.read(self.conn.recv_buf());
        match r {
            Ok(0) => {}
            Ok(k) => {
                self.conn.received(k);
                self.t.after_read();
                return Ok(());
            }
            Err(e) => match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => return Err(self.timed_out(deadline, what)),
                ErrorKind::Interrupted => return Ok(()),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {}
                _ => {
                    self.close();
                    return Err(tls_failure(e));
                }
            },
        }
        self.close();
        Err(NetError::Closed(without_timeout_note(what)))
    }

    fn timed_out(&mut self, deadline: Option<Instant>, what: &'static str) -> NetError {
        if self.artim.is_some_and(|t| Instant::now() >= t) {
            warn!("{}: ARTIM timer expired ({what}); closing", self.peer);
            self.artim = None;
            self.conn.artim_expired();
            let _ = self.sync();
            self.close();
            return NetError::Timeout { what, after: self.timeouts.acse.unwrap_or_default() };
        }
        warn!("{}: timed out {what}; aborting", self.peer);
        let _ = self.abort();
        let t = &self.timeouts;
        let after = if what.contains("ACSE") {
            t.acse
        } else if what.contains("DIMSE") {
            t.dimse
        } else {
            t.network
        };
        NetError::Timeout { what, after: deadline.and(after).unwrap_or_default() }
    }

    /// Move `len` data bytes from the socket into `fd` (splice, Linux); a failing file gets
    /// the rest the ordinary way (dropped), a failing socket ends the association.
    #[cfg(target_os = "linux")]
    fn splice(&mut self, fd: i32, len: usize) -> Result<(), NetError> {
        use super::sys::{Pipe, SpliceError};
        if self.pipe.is_none() {
            match Pipe::new() {
                Ok(p) => self.pipe = Some(p),
                Err(e) => {
                    self.conn.spliced(0, Some(e));
                    return Ok(());
                }
            }
        }
        let _ = self.set_timeout(0, self.timeouts.network);
        let (Some(sock), Some(pipe)) = (self.t.raw_fd(), self.pipe.as_ref()) else {
            self.conn.spliced(0, Some(std::io::Error::other("nothing to splice from")));
            return Ok(());
        };
        let t = &self.t;
        let err = match pipe.splice(sock, fd, len, || t.after_read()) {
            Ok(()) => {
                self.conn.spliced(len, None);
                return Ok(());
            }
            Err((moved, SpliceError::Sink(e))) => {
                // The file could not take it: the rest is read the ordinary way.
                self.conn.spliced(moved, Some(e));
                return Ok(());
            }
            Err((_, SpliceError::Socket(e))) => self.send_error(e),
            Err((_, SpliceError::Closed)) => NetError::Closed("in the middle of a data set"),
        };
        self.close();
        Err(err)
    }

    #[cfg(not(target_os = "linux"))]
    fn splice(&mut self, _fd: i32, _len: usize) -> Result<(), NetError> {
        self.conn.spliced(0, Some(std::io::Error::other("no splice here")));
        Ok(())
    }

    /// Carry out what the connection asked for: the PDUs it queued, the ARTIM timer, the
    /// close. A failed write of an A-ABORT changes nothing: we close anyway.
    fn sync(&mut self) -> Result<(), NetError> {
        if let Some(on) = self.conn.take_artim() {
            self.artim = if on { self.timeouts.acse.map(|d| Instant::now() + d) } else { None };
        }
        let out = self.conn.take_outgoing();
        let mut r = Ok(());
        if !out.is_empty() {
            if let Err(e) = self.write_all(&out) {
                if !self.conn.should_close() {
                    r = Err(e);
                }
            }
        }
        if self.conn.should_close() {
            self.close();
        }
        r
    }

    /// SO_RCVTIMEO (`which` 0) or SO_SNDTIMEO (1), unless the one set already is close enough.
    fn set_timeout(&mut self, which: usize, want: Option<Duration>) -> std::io::Result<()> {
        let close_enough = match (self.timeouts_set[which], want) {
            (Some(None), None) => true,
            (Some(Some(c)), Some(w)) => c.abs_diff(w) <= TIMEOUT_SLACK.max(w / 100).min(w / 2),
            _ => false,
        };
        if !close_enough {
            self.timeouts_set[which] = None;
            if which == 0 {
                self.t.set_read_timeout(want)?;
            } else {
                self.t.set_write_timeout(want)?;
            }
            self.timeouts_set[which] = Some(want);
        }
        Ok(())
    }

    fn send_error(&self, e: std::io::Error) -> NetError {
        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
            NetError::Timeout { what: "sending (network timeout)", after: self.timeouts.network.unwrap_or_default() }
        } else {
            NetError::Io(e)
        }
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        if self.closed {
            return Err(NetError::Closed("while sending"));
        }
        let _ = self.set_timeout(1, self.timeouts.network);
        self.t.write_all(bytes).map_err(|e| self.send_error(e))
    }

    /// After sending A-ASSOCIATE-RJ: wait (ARTIM) for the peer to close, then close.
    fn drain_until_closed(&mut self) {
        let until = self.artim.unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let mut buf = [0u8; 1024];
        while !self.closed && Instant::now() < until {
            let _ = self.set_timeout(0, Some(until - Instant::now()));
            if !matches!(self.t.read(&mut buf), Ok(n) if n > 0) {
                break;
            }
        }
        self.close();
    }

    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.t.shutdown();
            self.conn.transport_closed();
        }
    }
}

impl Drop for Association {
    fn drop(&mut self) {
        if !self.closed && self.conn.is_established() {
            let _ = self.abort();
        }
        self.close();
    }
}
