//! The Q/R SCU: C-FIND and C-MOVE as an [`Operation`] whose responses are read as they
//! come (pending ones one by one, then the final one), with C-CANCEL and the drain after
//! it; C-GET ([`get_scu`]), whose instances stream to files through the storage SCP.
//!
//! PS3.7 9.1.2 (C-FIND), 9.1.4 (C-MOVE), 9.3.2.3 (C-CANCEL): every response carries the
//! request's message ID in Message ID Being Responded To; pending ones have status
//! 0xFF00 or 0xFF01; after a C-CANCEL-RQ the SCP still sends pending responses it had
//! under way, then a final one (Cancel 0xFE00, or any other final status).

use std::collections::VecDeque;
use std::time::Duration;

use log::warn;

use super::status;
use crate::dataset::{split_elements, TransferSyntax};
use crate::dimse::{field, Command};
use crate::net::{Association, NetError, Received};
use crate::service::serve::ServiceHandler;
use crate::service::prepare_request;
use crate::service::store::StorageHandler;

/// Responses read per call at most (the first one waits, the others were already there).
pub const BATCH: usize = 256;

/// Failed SOP Instance UID List (0008,0058).
const TAG_FAILED_SOP_INSTANCE_UID_LIST: u32 = 0x0008_0058;

/// A response of a C-FIND, C-MOVE or C-GET as the SCU reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct QrResponse {
    pub command: Command,
    /// The identifier (C-FIND: a match; C-MOVE/C-GET: the failed SOP instance list).
    pub data: Option<Vec<u8>>,
}

impl QrResponse {
    /// The status; a response without one counts as a failure (0xC000).
    pub fn status(&self) -> u16 {
        self.command.status.unwrap_or(status::UNABLE_TO_PROCESS)
    }

    pub fn is_pending(&self) -> bool {
        is_pending(self.command.status)
    }

    /// Failed SOP Instance UID List of a C-MOVE/C-GET response, from its identifier in
    /// `transfer_syntax`. A list that cannot be read is logged and taken as empty: it
    /// must not hide the status.
    pub fn failed_sop_instance_uids(&self, transfer_syntax: &str) -> Vec<String> {
        let Some(data) = self.data.as_deref().filter(|d| !d.is_empty()) else { return Vec::new() };
        match failed_uids(data, transfer_syntax) {
            Ok(v) => v,
            Err(e) => {
                warn!("cannot read the Failed SOP Instance UID List: {e}");
                Vec::new()
            }
        }
    }
}

fn is_pending(status: Option<u16>) -> bool {
    matches!(status, Some(status::PENDING) | Some(status::PENDING_WARNING))
}

fn failed_uids(data: &[u8], transfer_syntax: &str) -> Result<Vec<String>, String> {
    let ts = TransferSyntax::from_uid(transfer_syntax);
    if ts.is_deflated() {
        return Err("a deflated identifier".into());
    }
    let elements = split_elements(data, ts.encoding()).map_err(|e| e.to_string())?;
    let Some(el) = elements.iter().find(|e| e.tag == TAG_FAILED_SOP_INSTANCE_UID_LIST) else { return Ok(Vec::new()) };
    let value = data.get(el.value_start..el.value_end).ok_or("the list's value lies outside the data set")?;
    let text = std::str::from_utf8(value).map_err(|_| "the list is not ASCII")?;
    let text = text.trim_end_matches(['\0', ' ']);
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text.split('\\').map(|u| u.trim_matches(['\0', ' ']).to_string()).collect())
}

/// A C-FIND or C-MOVE request sent and not finished yet: [`Operation::next_pending`]
/// yields its pending responses, then `None` once the final one is read
/// ([`Operation::final_response`]). Responses to other message IDs are ignored (a C-FIND
/// logs them). [`Operation::cancel`] sends C-CANCEL-RQ and drains until the final one.
#[derive(Debug)]
pub struct Operation {
    what: &'static str,
    context_id: u8,
    message_id: u16,
    transfer_syntax: String,
    /// Waiting for each response (the DIMSE timeout).
    timeout: Option<Duration>,
    ready: VecDeque<QrResponse>,
    /// Met while reading further responses of a batch: returned after the ready ones.
    error: Option<NetError>,
    final_response: Option<QrResponse>,
    cancelled: bool,
}

impl Operation {
    /// Send C-FIND-RQ with `identifier` (encoded in the context's transfer syntax) on
    /// the accepted context for `sop_class`.
    pub fn find(
        assoc: &mut Association,
        sop_class: &str,
        identifier: &[u8],
        message_id: Option<u16>,
        priority: u16,
        timeout: Option<Duration>,
    ) -> Result<Operation, NetError> {
        let rq = Command { command_field: field::C_FIND_RQ, message_id, priority: Some(priority), ..Default::default() };
        Self::start(assoc, "C-FIND", sop_class, rq, identifier, timeout)
    }

    /// Send C-MOVE-RQ: the peer stores the matches of `identifier` at `destination` (an
    /// AE title the peer knows).
    pub fn move_to(
        assoc: &mut Association,
        sop_class: &str,
        identifier: &[u8],
        destination: &str,
        message_id: Option<u16>,
        priority: u16,
        timeout: Option<Duration>,
    ) -> Result<Operation, NetError> {
        let rq = Command {
            command_field: field::C_MOVE_RQ,
            message_id,
            priority: Some(priority),
            move_destination: Some(destination.to_string()),
            ..Default::default()
        };
        Self::start(assoc, "C-MOVE", sop_class, rq, identifier, timeout)
    }

    fn start(
        assoc: &mut Association,
        what: &'static str,
        sop_class: &str,
        mut rq: Command,
        identifier: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Operation, NetError> {
        let context_id = prepare_request(assoc, sop_class, &mut rq)?;
        let transfer_syntax = assoc.negotiated().context(context_id).map(|c| c.transfer_syntax.clone()).unwrap_or_default();
        assoc.send_message(context_id, &rq, Some(identifier))?;
        Ok(Operation {
            what,
            context_id,
            message_id: rq.message_id.unwrap_or(0),
            transfer_syntax,
            timeout,
            ready: VecDeque::new(),
            error: None,
            final_response: None,
            cancelled: false,
        })
    }

    pub fn context_id(&self) -> u8 {
        self.context_id
    }

    pub fn message_id(&self) -> u16 {
        self.message_id
    }

    /// The transfer syntax of the identifiers (the context's).
    pub fn transfer_syntax(&self) -> &str {
        &self.transfer_syntax
    }

    /// The final response, once read.
    pub fn final_response(&self) -> Option<&QrResponse> {
        self.final_response.as_ref()
    }

    /// Nothing more to read: the final response came (or a C-CANCEL drained it).
    pub fn is_finished(&self) -> bool {
        (self.final_response.is_some() && self.ready.is_empty()) || self.cancelled
    }

    /// A pending response already read, without any I/O; then the error met while
    /// reading after it, if any. `Ok(None)`: read more ([`Operation::next_pending`]), or
    /// finished ([`Operation::is_finished`]).
    pub fn pop_pending(&mut self) -> Result<Option<QrResponse>, NetError> {
        if let Some(r) = self.ready.pop_front() {
            return Ok(Some(r));
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// The next pending response, reading from `assoc` when none is at hand; `None`
    /// once the final response is read.
    pub fn next_pending(&mut self, assoc: &mut Association) -> Result<Option<QrResponse>, NetError> {
        loop {
            if let Some(r) = self.pop_pending()? {
                return Ok(Some(r));
            }
            if self.is_finished() {
                return Ok(None);
            }
            self.read_batch(assoc)?;
        }
    }

    /// Wait for the next message, then take, without waiting, the further ones already
    /// arrived (up to [`BATCH`]), stopping at the final response.
    fn read_batch(&mut self, assoc: &mut Association) -> Result<(), NetError> {
        let mut next = Some(self.receive(assoc)?);
        let mut n = 0;
        while let Some(m) = next.take() {
            n += 1;
            match m {
                Received::Message { command, data, .. } => self.take(command, data.into_bytes()),
                Received::ReleaseRequested => {
                    let _ = assoc.release_response();
                    let e = NetError::Closed("(it asked to release)");
                    if self.ready.is_empty() {
                        return Err(e);
                    }
                    self.error = Some(e);
                    return Ok(());
                }
            }
            if self.final_response.is_some() || n >= BATCH || !assoc.is_established() {
                break;
            }
            match assoc.poll_message() {
                Ok(m) => next = m,
                Err(e) if self.ready.is_empty() => return Err(e),
                Err(e) => self.error = Some(e),
            }
        }
        Ok(())
    }

    fn receive(&self, assoc: &mut Association) -> Result<Received, NetError> {
        let what = if self.what == "C-FIND" {
            "waiting for a C-FIND response (DIMSE timeout)"
        } else {
            "waiting for a C-MOVE response (DIMSE timeout)"
        };
        assoc.receive(self.timeout, what)
    }

    fn take(&mut self, command: Command, data: Option<Vec<u8>>) {
        if command.message_id_being_responded_to != Some(self.message_id) {
            if self.what == "C-FIND" {
                warn!(
                    "ignoring a response to message {} during C-FIND {}",
                    command.message_id_being_responded_to.map(|m| m.to_string()).unwrap_or_else(|| "None".into()),
                    self.message_id
                );
            }
            return;
        }
        let r = QrResponse { command, data };
        if r.is_pending() {
            self.ready.push_back(r);
        } else {
            self.final_response = Some(r);
        }
    }

    /// Stop early: send C-CANCEL-RQ and read responses until the final one (PS3.7
    /// 9.3.2.3). Pending responses not yet taken are dropped. Nothing is sent when the
    /// final response has already been read.
    pub fn cancel(&mut self, assoc: &mut Association) -> Result<(), NetError> {
        self.ready.clear();
        self.error = None;
        if self.final_response.is_some() || self.cancelled {
            self.cancelled = true;
            return Ok(());
        }
        self.cancelled = true;
        let cancel = Command {
            command_field: field::C_CANCEL_RQ,
            message_id_being_responded_to: Some(self.message_id),
            ..Default::default()
        };
        assoc.send_message(self.context_id, &cancel, None)?;
        loop {
            match self.receive(assoc)? {
                Received::Message { command, data, .. } => {
                    if command.message_id_being_responded_to == Some(self.message_id) && !is_pending(command.status) {
                        self.final_response = Some(QrResponse { command, data: data.into_bytes() });
                        return Ok(());
                    }
                }
                Received::ReleaseRequested => {
                    let _ = assoc.release_response();
                    return Err(NetError::Closed("(it asked to release)"));
                }
            }
        }
    }
}

/// C-GET as SCU: send the request, store every C-STORE sub-operation that comes back
/// on this association through `storage` (streamed to files), report each pending
/// C-GET-RSP to `on_pending`, and return the final response with the transfer syntax
/// of its identifier (the context's).
pub fn get_scu(
    assoc: &mut Association,
    sop_class: &str,
    mut request: Command,
    identifier: &[u8],
    storage: &StorageHandler,
    dimse_timeout: Option<Duration>,
    on_pending: &mut dyn FnMut(&QrResponse),
) -> Result<(QrResponse, String), NetError> {
    let ctx = prepare_request(assoc, sop_class, &mut request)?;
    let ts = assoc.negotiated().context(ctx).map(|c| c.transfer_syntax.clone()).unwrap_or_default();
    assoc.send_message(ctx, &request, Some(identifier))?;
    let negotiated = assoc.negotiated().clone();
    loop {
        let msg = assoc.receive_with(dimse_timeout, "waiting for C-GET-RSP or C-STORE-RQ (DIMSE timeout)", &mut |c, cmd| {
            storage.data_sink(&negotiated, c, cmd)
        })?;
        match msg {
            Received::Message { context_id, command, data } if command.command_field == field::C_STORE_RQ => {
                storage.on_message(assoc, context_id, command, data)?;
            }
            Received::Message { command, data, .. }
                if command.command_field == field::C_GET_RSP && command.message_id_being_responded_to == request.message_id =>
            {
                let r = QrResponse { command, data: data.into_bytes() };
                if r.is_pending() {
                    on_pending(&r);
                    continue;
                }
                return Ok((r, ts));
            }
            Received::Message { command, .. } => warn!("ignoring {command} during C-GET"),
            Received::ReleaseRequested => {
                let _ = assoc.release_response();
                return Err(NetError::Closed("(it asked to release during C-GET)"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The SCU loops against a scripted peer: our own `service::server::Server` on loopback, whose
    //! handler answers each request with a fixed sequence of responses.
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::dataset::{write_element_header, Encoding};
    use crate::dimse::VERIFICATION_SOP_CLASS;
    use crate::net::{MessageData, Timeouts};
    use crate::service::server::{Server, ServerConfig};
    use crate::service::echo::{answer_echo_or_unrecognized, echo_scu};
    use crate::service::qr::scp::failed_uid_list;
    use crate::service::qr::sop::{STUDY_ROOT_FIND, STUDY_ROOT_MOVE};
    use crate::ul::{AcceptorConfig, RequestorConfig};

    const IMPLICIT: &str = "1.2.840.10008.1.2";
    const EXPLICIT: &str = "1.2.840.10008.1.2.1";

    type Script = dyn Fn(&mut Association, u8, &Command) -> Result<(), NetError> + Send + Sync;

    /// Runs the script for each C-FIND/C-MOVE; counts the C-CANCEL-RQs that come when
    /// no operation runs.
    struct Scripted(Box<Script>, Arc<Mutex<u32>>);

    impl ServiceHandler for Scripted {
        fn on_message(&self, assoc: &mut Association, ctx: u8, command: Command, _data: MessageData) -> Result<(), NetError> {
            match command.command_field {
                field::C_FIND_RQ | field::C_MOVE_RQ => (self.0)(assoc, ctx, &command),
                field::C_CANCEL_RQ => {
                    *self.1.lock().expect("lock") += 1;
                    Ok(())
                }
                _ => answer_echo_or_unrecognized(assoc, ctx, &command),
            }
        }
    }

    /// A server running `script` for each C-FIND/C-MOVE, and an association to it.
    fn peer(script: Box<Script>) -> (Server, Association) {
        peer_counting(script, Arc::default())
    }

    fn peer_counting(script: Box<Script>, stray_cancels: Arc<Mutex<u32>>) -> (Server, Association) {
        let classes = [STUDY_ROOT_FIND, STUDY_ROOT_MOVE, VERIFICATION_SOP_CLASS];
        let mut acceptor = AcceptorConfig::new("PEER");
        acceptor.supported = classes.iter().map(|c| (c.to_string(), vec![IMPLICIT.to_string()])).collect();
        let timeouts = Timeouts { dimse: Some(Duration::from_secs(5)), network: Some(Duration::from_secs(5)), ..Timeouts::default() };
        let config = ServerConfig { acceptor, timeouts, max_associations: 4, tls: None };
        let server = Server::start("127.0.0.1:0", config, Arc::new(Scripted(script, stray_cancels))).expect("server starts");
        let mut cfg = RequestorConfig::new("US", "PEER");
        cfg.contexts = classes.iter().map(|c| (c.to_string(), vec![IMPLICIT.to_string()])).collect();
        let assoc = Association::request(&server.local_addr().to_string(), &cfg, timeouts).expect("association");
        (server, assoc)
    }

    /// A data set of one element, PatientID = `value` (implicit VR little endian).
    fn patient(value: &str) -> Vec<u8> {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(b' ');
        }
        let mut out = Vec::new();
        write_element_header(&mut out, Encoding::IMPLICIT_LE, 0x0010_0020, None, v.len() as u32);
        out.extend_from_slice(&v);
        out
    }

    fn pending(assoc: &mut Association, ctx: u8, rq: &Command, status: u16, data: &[u8]) -> Result<(), NetError> {
        assoc.send_message(ctx, &Command::response_to(rq, status), Some(data))
    }

    fn final_rsp(assoc: &mut Association, ctx: u8, rq: &Command, status: u16, comment: Option<&str>) -> Result<(), NetError> {
        let mut rsp = Command::response_to(rq, status);
        rsp.affected_sop_instance_uid = None;
        rsp.error_comment = comment.map(str::to_string);
        assoc.send_message(ctx, &rsp, None)
    }

    const T: Option<Duration> = Some(Duration::from_secs(5));

    fn all_pending(op: &mut Operation, a: &mut Association) -> Vec<QrResponse> {
        let mut out = Vec::new();
        while let Some(r) = op.next_pending(a).expect("responses") {
            out.push(r);
        }
        out
    }

    #[test]
    fn find_yields_pending_matches_then_the_final_status() {
        let (_server, mut a) = peer(Box::new(|assoc, ctx, rq| {
            // A response to another message comes first: it is not part of this C-FIND.
            let mut foreign = Command::response_to(rq, status::PENDING);
            foreign.message_id_being_responded_to = rq.message_id.map(|m| m.wrapping_add(100));
            assoc.send_message(ctx, &foreign, Some(&patient("OTHER")))?;
            pending(assoc, ctx, rq, status::PENDING, &patient("P1"))?;
            pending(assoc, ctx, rq, status::PENDING_WARNING, &patient("P2"))?;
            pending(assoc, ctx, rq, status::PENDING, &patient("P3"))?;
            final_rsp(assoc, ctx, rq, status::SUCCESS, None)
        }));
        let mut op = Operation::find(&mut a, STUDY_ROOT_FIND, &patient(""), Some(7), 0, T).expect("sent");
        assert_eq!(op.message_id(), 7);
        assert_eq!(op.transfer_syntax(), IMPLICIT);
        let got = all_pending(&mut op, &mut a);
        let ids: Vec<Vec<u8>> = got.iter().map(|r| r.data.clone().unwrap_or_default()).collect();
        assert_eq!(ids, vec![patient("P1"), patient("P2"), patient("P3")]);
        assert_eq!(got.iter().map(|r| r.status()).collect::<Vec<_>>(), vec![0xFF00, 0xFF01, 0xFF00]);
        assert!(op.is_finished());
        assert_eq!(op.final_response().map(|r| r.status()), Some(status::SUCCESS));
        // Nothing more, and the association goes on.
        assert!(op.next_pending(&mut a).expect("no I/O").is_none());
        assert_eq!(echo_scu(&mut a, None, T).expect("echo").0, 0);
        a.release().expect("release");
    }

    #[test]
    fn a_final_failure_without_pending_ends_at_once() {
        let (_server, mut a) = peer(Box::new(|assoc, ctx, rq| final_rsp(assoc, ctx, rq, 0xC001, Some("no such key"))));
        let mut op = Operation::find(&mut a, STUDY_ROOT_FIND, &patient("X"), None, 0, T).expect("sent");
        assert!(all_pending(&mut op, &mut a).is_empty());
        let f = op.final_response().expect("final");
        assert_eq!(f.status(), 0xC001);
        assert_eq!(f.command.error_comment.as_deref(), Some("no such key"));
        assert_eq!(f.command.message_id_being_responded_to, Some(op.message_id()));
        a.release().expect("release");
    }

    #[test]
    fn cancel_sends_c_cancel_and_drains_up_to_the_final_response() {
        let cancels: Arc<Mutex<Vec<Option<u16>>>> = Arc::default();
        let seen = cancels.clone();
        let (_server, mut a) = peer(Box::new(move |assoc, ctx, rq| {
            pending(assoc, ctx, rq, status::PENDING, &patient("P1"))?;
            pending(assoc, ctx, rq, status::PENDING, &patient("P2"))?;
            // Wait for the C-CANCEL-RQ; one more match was under way when it came.
            match assoc.receive(T, "waiting for C-CANCEL-RQ")? {
                Received::Message { command, .. } if command.command_field == field::C_CANCEL_RQ => {
                    seen.lock().expect("lock").push(command.message_id_being_responded_to);
                }
                _ => return Err(NetError::Protocol("expected C-CANCEL-RQ".into())),
            }
            pending(assoc, ctx, rq, status::PENDING, &patient("P3"))?;
            final_rsp(assoc, ctx, rq, status::CANCEL, None)
        }));
        let mut op = Operation::find(&mut a, STUDY_ROOT_FIND, &patient(""), None, 0, T).expect("sent");
        let first = op.next_pending(&mut a).expect("read").expect("a match");
        assert_eq!(first.data, Some(patient("P1")));
        op.cancel(&mut a).expect("cancel and drain");
        assert!(op.is_finished());
        assert_eq!(op.final_response().map(|r| r.status()), Some(status::CANCEL));
        // The match still buffered and the one under way are dropped.
        assert!(op.next_pending(&mut a).expect("no I/O").is_none());
        assert_eq!(echo_scu(&mut a, None, T).expect("echo after the drain").0, 0);
        assert_eq!(*cancels.lock().expect("lock"), vec![Some(op.message_id())]);
        a.release().expect("release");
    }

    #[test]
    fn cancel_after_the_final_response_sends_nothing() {
        let cancels: Arc<Mutex<u32>> = Arc::default();
        let script: Box<Script> = Box::new(|assoc, ctx, rq| {
            pending(assoc, ctx, rq, status::PENDING, &patient("P1"))?;
            final_rsp(assoc, ctx, rq, status::SUCCESS, None)
        });
        let (_server, mut a) = peer_counting(script, cancels.clone());
        let mut op = Operation::find(&mut a, STUDY_ROOT_FIND, &patient(""), None, 0, T).expect("sent");
        let _ = op.next_pending(&mut a).expect("read");
        // Both responses were read in one batch: the final one is already here.
        while op.final_response().is_none() {
            let _ = op.next_pending(&mut a).expect("read");
        }
        op.cancel(&mut a).expect("nothing to cancel");
        assert_eq!(op.final_response().map(|r| r.status()), Some(status::SUCCESS));
        // A C-CANCEL-RQ would reach the peer before the C-ECHO-RQ that follows.
        assert_eq!(echo_scu(&mut a, None, T).expect("echo").0, 0);
        assert_eq!(*cancels.lock().expect("lock"), 0);
        a.release().expect("release");
    }

    #[test]
    fn move_reports_counts_and_the_failed_instances() {
        let (_server, mut a) = peer(Box::new(|assoc, ctx, rq| {
            assert_eq!(rq.move_destination.as_deref(), Some("CATCHER"));
            let mut p = Command::response_to(rq, status::PENDING);
            (p.remaining, p.completed, p.failed, p.warning) = (Some(2), Some(1), Some(0), Some(0));
            assoc.send_message(ctx, &p, None)?;
            let mut f = Command::response_to(rq, status::SUBOPS_WARNING);
            f.affected_sop_instance_uid = None;
            (f.completed, f.failed, f.warning) = (Some(2), Some(1), Some(0));
            assoc.send_message(ctx, &f, Some(&failed_uid_list(&["1.2.3.4".into()], IMPLICIT)))
        }));
        let mut op = Operation::move_to(&mut a, STUDY_ROOT_MOVE, &patient("P1"), "CATCHER", None, 0, T).expect("sent");
        let got = all_pending(&mut op, &mut a);
        assert_eq!(got.len(), 1);
        let c = &got[0].command;
        assert_eq!((c.remaining, c.completed, c.failed, c.warning), (Some(2), Some(1), Some(0), Some(0)));
        assert!(got[0].failed_sop_instance_uids(IMPLICIT).is_empty());
        let f = op.final_response().expect("final");
        assert_eq!(f.status(), status::SUBOPS_WARNING);
        assert_eq!((f.command.completed, f.command.failed), (Some(2), Some(1)));
        assert_eq!(f.failed_sop_instance_uids(op.transfer_syntax()), vec!["1.2.3.4".to_string()]);
        a.release().expect("release");
    }

    #[test]
    fn no_response_within_the_dimse_timeout_is_a_timeout() {
        let (_server, mut a) = peer(Box::new(|_assoc, _ctx, _rq| Ok(())));
        let mut op = Operation::find(&mut a, STUDY_ROOT_FIND, &patient(""), None, 0, Some(Duration::from_millis(200))).expect("sent");
        match op.next_pending(&mut a) {
            Err(NetError::Timeout { .. }) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
    }

    #[test]
    fn without_a_context_nothing_is_sent() {
        let (_server, mut a) = peer(Box::new(|_assoc, _ctx, _rq| Ok(())));
        match Operation::find(&mut a, crate::service::qr::sop::PATIENT_ROOT_FIND, &patient(""), None, 0, T) {
            Err(NetError::NoContext(s)) => assert_eq!(s, crate::service::qr::sop::PATIENT_ROOT_FIND),
            other => panic!("expected NoContext, got {other:?}"),
        }
        assert_eq!(echo_scu(&mut a, None, T).expect("echo").0, 0);
    }

    #[test]
    fn failed_list_in_both_encodings_and_malformed() {
        for ts in [IMPLICIT, EXPLICIT] {
            let r = QrResponse { command: Command::default(), data: Some(failed_uid_list(&["1.2".into(), "1.2.345".into()], ts)) };
            assert_eq!(r.failed_sop_instance_uids(ts), vec!["1.2".to_string(), "1.2.345".to_string()]);
        }
        // A truncated data set: the list cannot be read, the response still can.
        let mut bad = failed_uid_list(&["1.2.3".into()], IMPLICIT);
        bad.truncate(6);
        let r = QrResponse { command: Command { status: Some(0xA702), ..Default::default() }, data: Some(bad) };
        assert!(r.failed_sop_instance_uids(IMPLICIT).is_empty());
        assert_eq!(r.status(), 0xA702);
        // No status at all counts as a failure.
        assert_eq!(QrResponse { command: Command::default(), data: None }.status(), status::UNABLE_TO_PROCESS);
    }
}
