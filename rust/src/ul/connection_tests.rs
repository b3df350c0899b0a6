//! Tests of `ul::Connection`: bytes only, no sockets.

use super::*;
use crate::dimse::{field, IMPLICIT_VR_LE, VERIFICATION_SOP_CLASS};
use crate::pdu::PData;
use crate::ul::message::Sink;

const STORAGE: &str = "1.2.840.10008.5.1.4.1.1.7";

fn acceptor_cfg(max_pdu: u32) -> AcceptorConfig {
    let mut cfg = AcceptorConfig::new("ACCEPTOR");
    cfg.supported = vec![(VERIFICATION_SOP_CLASS.into(), vec![]), (STORAGE.into(), vec![])];
    cfg.default_transfer_syntaxes = vec![IMPLICIT_VR_LE.into()];
    cfg.max_pdu_length = max_pdu;
    cfg
}

fn requestor_cfg(max_pdu: u32) -> RequestorConfig {
    let mut cfg = RequestorConfig::new("REQUESTOR", "ACCEPTOR");
    cfg.contexts = vec![(VERIFICATION_SOP_CLASS.into(), vec![IMPLICIT_VR_LE.into()]), (STORAGE.into(), vec![IMPLICIT_VR_LE.into()])];
    cfg.max_pdu_length = max_pdu;
    cfg
}

type Events = Vec<Result<Event, String>>;

/// Every event the connection gives for what it has, data sets in memory.
fn drain(c: &mut Connection) -> Events {
    let mut evs = Vec::new();
    loop {
        match c.next_event(&mut |_, _| DataSink::Memory) {
            Ok(Some(e)) => evs.push(Ok(e)),
            Ok(None) => return evs,
            Err(e) => {
                evs.push(Err(e.to_string()));
                return evs;
            }
        }
    }
}

/// An established (requestor, acceptor) pair; the acceptor accepts PDUs up to `max_pdu`.
fn pair(max_pdu: u32) -> (Connection, Connection) {
    let mut r = Connection::requestor(&requestor_cfg(0), "acceptor").unwrap();
    let mut a = Connection::acceptor("requestor");
    assert_eq!(a.state(), State::Sta2);
    assert_eq!(a.take_artim(), Some(true));
    r.connected().unwrap();
    a.feed(&r.take_outgoing());
    let Some(Ok(Event::AssociateRequest(rq))) = drain(&mut a).pop() else { panic!("no A-ASSOCIATE-RQ") };
    let decision = negotiation::negotiate_acceptor(&rq, &acceptor_cfg(max_pdu));
    assert!(a.decide(&rq, decision).unwrap());
    r.feed(&a.take_outgoing());
    assert!(matches!(drain(&mut r).as_slice(), [Ok(Event::Established)]));
    assert!(r.is_established() && a.is_established());
    assert_eq!(r.negotiated().unwrap().peer_max_pdu, max_pdu);
    (r, a)
}

fn echo_rq(id: u16) -> Command {
    Command::echo_rq(id)
}

fn store_rq(id: u16) -> Command {
    Command {
        command_field: field::C_STORE_RQ,
        affected_sop_class_uid: Some(STORAGE.into()),
        affected_sop_instance_uid: Some("1.2.3".into()),
        message_id: Some(id),
        priority: Some(0),
        ..Default::default()
    }
}

fn message(ev: &Result<Event, String>) -> (u8, &Command, &MessageData) {
    match ev {
        Ok(Event::Received(Received::Message { context_id, command, data })) => (*context_id, command, data),
        other => panic!("expected a message, got {other:?}"),
    }
}

#[test]
fn association_accepted_and_echo_answered() {
    let (mut r, mut a) = pair(16384);
    let mut out = Vec::new();
    r.send_message(1, &echo_rq(7), None, &mut out).unwrap();
    a.feed(&out);
    let evs = drain(&mut a);
    assert_eq!(evs.len(), 1);
    let (ctx, cmd, data) = message(&evs[0]);
    assert_eq!((ctx, cmd.command_field, cmd.message_id), (1, field::C_ECHO_RQ, Some(7)));
    assert!(matches!(data, MessageData::None));
    assert!(!a.has_input(), "nothing left once the PDU is read (a driver may block now)");
    let mut out = Vec::new();
    a.send_message(1, &Command::response_to(cmd, 0), None, &mut out).unwrap();
    r.feed(&out);
    let evs = drain(&mut r);
    assert_eq!(message(&evs[0]).1.command_field, field::C_ECHO_RSP);
}

#[test]
fn association_rejected() {
    let mut r = Connection::requestor(&requestor_cfg(0), "acceptor").unwrap();
    let mut a = Connection::acceptor("requestor");
    r.connected().unwrap();
    a.feed(&r.take_outgoing());
    let Some(Ok(Event::AssociateRequest(rq))) = drain(&mut a).pop() else { panic!() };
    let rj = AssociateRj { result: 1, source: 1, reason: 7 };
    assert!(!a.decide(&rq, AcceptorDecision::Reject(rj)).unwrap());
    assert_eq!((a.state(), a.sent_reject()), (State::Sta13, Some(rj)));
    let mut out = Vec::new();
    assert!(matches!(a.send_message(1, &echo_rq(1), None, &mut out), Err(ConnError::NotAllowed(State::Sta13))));
    r.feed(&a.take_outgoing());
    assert!(matches!(drain(&mut r).as_slice(), [Ok(Event::Rejected(x))] if *x == rj));
    assert!(r.should_close());
}

#[test]
fn nothing_is_sent_before_the_association_exists() {
    let mut a = Connection::acceptor("peer");
    let mut out = Vec::new();
    assert!(matches!(a.send_message(1, &echo_rq(1), None, &mut out), Err(ConnError::NotAllowed(State::Sta2))));
    assert!(matches!(a.data_header(1, 10, true), Err(ConnError::NotAllowed(State::Sta2))));
    assert!(out.is_empty());
}

#[test]
fn provider_rejects_an_unsupported_protocol_version() {
    let mut r = Connection::requestor(&requestor_cfg(0), "acceptor").unwrap();
    let mut a = Connection::acceptor("requestor");
    r.connected().unwrap();
    let mut rq = r.take_outgoing();
    rq[7] = 0x02; // protocol version 2 (bit 0 clear)
    rq[6] = 0;
    a.feed(&rq);
    assert!(matches!(drain(&mut a).as_slice(), [Err(e)] if e == "association rejected"));
    assert_eq!(a.take_outgoing()[0], pdu::pdu_type::ASSOCIATE_RJ);
}

/// A data set over many PDUs (the acceptor takes at most 1 KiB), fed one byte at a time.
#[test]
fn fragmented_message_fed_one_byte_at_a_time() {
    let (mut r, mut a) = pair(1024);
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    let mut out = Vec::new();
    let cmd = store_rq(3);
    r.send_message(3, &cmd, Some(&data), &mut out).unwrap();
    assert!(out.len() >= data.len() + 10 * HEADERS, "split into at least 10 PDUs");
    let mut evs = Vec::new();
    for b in &out {
        a.feed(std::slice::from_ref(b));
        evs.extend(drain(&mut a));
    }
    assert_eq!(evs.len(), 1);
    let (ctx, got, d) = message(&evs[0]);
    assert_eq!((ctx, got.command_field), (3, field::C_STORE_RQ));
    assert!(matches!(d, MessageData::Memory(v) if *v == data));
}

/// Several PDVs in one PDU: a command in two fragments and a data set in two, then a
/// second message in the same PDU (kept for the next call, in order).
#[test]
fn several_pdvs_in_one_pdu() {
    let (_r, mut a) = pair(0);
    let cmd = Command { has_dataset: true, ..store_rq(9) }.encode();
    let (c1, c2) = cmd.split_at(10);
    let echo = echo_rq(10).encode();
    let pdv = |control: u8, data: &[u8]| Pdv { context_id: 3, control, data: data.to_vec() };
    let pdvs = vec![
        pdv(Pdv::COMMAND, c1),
        pdv(Pdv::COMMAND | Pdv::LAST, c2),
        pdv(0, b"abc"),
        pdv(Pdv::LAST, b"def"),
        Pdv { context_id: 1, control: Pdv::COMMAND | Pdv::LAST, data: echo },
    ];
    a.feed(&pdu::encode_to_vec(&Pdu::PData(PData { pdvs })));
    let evs = drain(&mut a);
    assert_eq!(evs.len(), 2);
    assert!(matches!(message(&evs[0]), (3, c, MessageData::Memory(v)) if c.command_field == field::C_STORE_RQ && v == b"abcdef"));
    assert!(matches!(message(&evs[1]), (1, c, MessageData::None) if c.message_id == Some(10)));
}

#[test]
fn release_by_either_side() {
    for requestor_asks in [true, false] {
        let (mut r, mut a) = pair(0);
        let (asker, answerer) = if requestor_asks { (&mut r, &mut a) } else { (&mut a, &mut r) };
        asker.release();
        assert_eq!(asker.state(), State::Sta7);
        answerer.feed(&asker.take_outgoing());
        assert!(matches!(drain(answerer).as_slice(), [Ok(Event::Received(Received::ReleaseRequested))]));
        assert!(answerer.awaiting_release_response());
        // P-DATA may still go before the answer (Sta8).
        let mut out = Vec::new();
        answerer.send_message(1, &echo_rq(5), None, &mut out).unwrap();
        answerer.release_response();
        out.extend(answerer.take_outgoing());
        assert_eq!(answerer.state(), State::Sta13);
        asker.feed(&out);
        // The P-DATA reaches the asker in Sta7 (AR-6) and is dropped: it asked to release.
        let evs = drain(asker);
        assert!(matches!(evs.as_slice(), [Ok(Event::ReleaseConfirmed)]), "{evs:?}");
        assert!(asker.should_close());
    }
}

/// Both sides ask at once (PS3.8 9.2.2): the connections answer each other's request in
/// the order the standard gives (the requestor side at once, the acceptor side after the
/// peer's A-RELEASE-RP), and both see the release confirmed.
#[test]
fn release_collision() {
    let (mut r, mut a) = pair(0);
    r.release();
    a.release();
    let (r_rq, a_rq) = (r.take_outgoing(), a.take_outgoing());
    r.feed(&a_rq);
    a.feed(&r_rq);
    assert!(drain(&mut r).is_empty() && drain(&mut a).is_empty());
    assert_eq!((r.state(), a.state()), (State::Sta11, State::Sta10));
    let r_rp = r.take_outgoing();
    assert_eq!(r_rp, [6, 0, 0, 0, 0, 4, 0, 0, 0, 0], "the requestor answers at once");
    assert!(a.take_outgoing().is_empty(), "the acceptor waits");
    a.feed(&r_rp);
    assert!(matches!(drain(&mut a).as_slice(), [Ok(Event::ReleaseConfirmed)]));
    assert_eq!(a.state(), State::Sta13);
    r.feed(&a.take_outgoing());
    assert!(matches!(drain(&mut r).as_slice(), [Ok(Event::ReleaseConfirmed)]));
    assert_eq!(r.state(), State::Sta1);
}

#[test]
fn abort_reaches_the_peer() {
    let (mut r, mut a) = pair(0);
    r.abort();
    assert!(r.should_close());
    a.feed(&r.take_outgoing());
    assert!(matches!(drain(&mut a).as_slice(), [Ok(Event::Aborted { source: 0, reason: 0 })]));
    assert!(a.should_close());
}

/// Each malformed input: an error event, and an A-ABORT (provider) as the bytes out.
#[test]
fn malformed_input_aborts() {
    let cmd = |ctx: u8| Pdv { context_id: ctx, control: Pdv::COMMAND | Pdv::LAST, data: echo_rq(1).encode() };
    let pdata = |pdvs: Vec<Pdv>| pdu::encode_to_vec(&Pdu::PData(PData { pdvs }));
    let mut too_long = vec![4, 0];
    too_long.extend_from_slice(&(1u32 << 30).to_be_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unknown PDU type", vec![0x09, 0, 0, 0, 0, 0], "invalid PDU"),
        ("PDU over the limit", too_long, "invalid PDU"),
        ("data before a command", pdata(vec![Pdv { context_id: 1, control: Pdv::LAST, data: vec![1] }]), "DIMSE error"),
        ("context not accepted", pdata(vec![cmd(7)]), "not accepted"),
        ("empty P-DATA-TF", vec![4, 0, 0, 0, 0, 0], "without any PDV item"),
        ("PDV item too long", vec![4, 0, 0, 0, 0, 6, 0, 0, 0, 9, 1, 3], "invalid PDU"),
        ("bad command set", pdata(vec![Pdv { context_id: 1, control: 3, data: vec![1, 2, 3] }]), "DIMSE error"),
        ("A-ASSOCIATE-RQ again", {
            let mut r = Connection::requestor(&requestor_cfg(0), "x").unwrap();
            r.connected().unwrap();
            r.take_outgoing()
        }, "aborted"),
    ];
    for (name, bytes, want) in cases {
        let (_r, mut a) = pair(16384);
        a.feed(&bytes);
        let evs = drain(&mut a);
        let got = match evs.last() {
            Some(Err(e)) => e.clone(),
            Some(Ok(Event::Aborted { source: 2, .. })) => "aborted".into(),
            other => panic!("{name}: {other:?}"),
        };
        assert!(got.contains(want), "{name}: {got}");
        let out = a.take_outgoing();
        assert_eq!((out.first(), out.get(8)), (Some(&pdu::pdu_type::ABORT), Some(&2)), "{name}: provider A-ABORT");
        assert!(a.should_close(), "{name}");
    }
}

struct SpliceSink(Vec<u8>, u64);

impl std::io::Write for SpliceSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink for SpliceSink {
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
    fn splice_fd(&mut self) -> Option<i32> {
        Some(99)
    }
    fn spliced(&mut self, n: u64) {
        self.1 += n;
    }
    fn prefix_wanted(&self) -> usize {
        4usize.saturating_sub(self.0.len())
    }
}

/// A large data PDV into a sink with a file descriptor: the connection offers only the
/// headers for reading, hands the prefix through `write`, and asks the driver to splice
/// the rest.
#[test]
fn data_pdv_is_offered_for_splicing() {
    let (mut r, mut a) = pair(0);
    a.set_splice(Some(64));
    let mut out = Vec::new();
    r.send_message(3, &store_rq(4), Some(&[7u8; 1000]), &mut out).unwrap();
    let cmd_len = out.len() - 1000 - HEADERS;
    a.feed(&out[..cmd_len]);
    let mut sink_for = |_: u8, _: &Command| DataSink::Writer(Box::new(SpliceSink(Vec::new(), 0)));
    assert!(a.next_event(&mut sink_for).unwrap().is_none());
    assert_eq!(a.recv_buf().len(), HEADERS, "only the headers are read");
    a.feed(&out[cmd_len..cmd_len + HEADERS + 2]);
    assert!(a.next_event(&mut sink_for).unwrap().is_none());
    assert_eq!(a.recv_buf().len(), 2, "the prefix the sink wants, exactly");
    a.feed(&out[cmd_len + HEADERS + 2..cmd_len + HEADERS + 4]);
    let Some(Event::Splice { fd: 99, len: 996 }) = a.next_event(&mut sink_for).unwrap() else { panic!("no splice") };
    a.spliced(996, None);
    let ev = a.next_event(&mut sink_for).unwrap();
    let Some(Event::Received(Received::Message { data: MessageData::Sink { sink, error: None }, .. })) = ev else { panic!() };
    let sink = sink.into_any().downcast::<SpliceSink>().unwrap();
    assert_eq!((sink.0.as_slice(), sink.1), (&[7u8; 4][..], 996));
}

#[test]
fn deferred_responses_settle_in_order() {
    struct Later(Command, bool);
    impl Deferred for Later {
        fn ready(&mut self) -> Option<Command> {
            self.1.then(|| self.0.clone())
        }
        fn wait(self: Box<Self>) -> Command {
            self.0
        }
    }
    let (mut r, mut a) = pair(0);
    let mut out = Vec::new();
    for (id, ready) in [(1, true), (2, false), (3, true)] {
        a.defer(1, Box::new(Later(Command::response_to(&echo_rq(id), 0), ready)), &mut out).unwrap();
    }
    a.settle(false, &mut out).unwrap();
    assert_eq!(a.deferred_len(), 2, "stops at the first not ready");
    a.settle(true, &mut out).unwrap();
    assert_eq!(a.deferred_len(), 0);
    r.feed(&out);
    let ids: Vec<_> = drain(&mut r).iter().map(|e| message(e).1.message_id_being_responded_to).collect();
    assert_eq!(ids, vec![Some(1), Some(2), Some(3)]);
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Random and mutated byte streams never panic (bounded: a few seconds at most).
#[test]
fn random_and_mutated_streams_never_panic() {
    let mut r = Connection::requestor(&requestor_cfg(0), "x").unwrap();
    r.connected().unwrap();
    let mut session = vec![1, 255];
    session.extend(r.take_outgoing());
    let mut out = Vec::new();
    let (mut r2, _a) = pair(0);
    r2.send_message(3, &store_rq(1), Some(&[5u8; 300]), &mut out).unwrap();
    session.extend(&out);
    session.extend([5, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let start = std::time::Instant::now();
    for i in 0..4000 {
        if start.elapsed() > std::time::Duration::from_secs(3) {
            break;
        }
        let mut s = if i % 4 == 0 { (0..rng.next() % 600).map(|_| rng.next() as u8).collect() } else { session.clone() };
        for _ in 0..rng.next() % 8 {
            let at = (rng.next() as usize) % s.len().max(1);
            if let Some(b) = s.get_mut(at) {
                *b = rng.next() as u8;
            }
        }
        if i % 7 == 0 {
            s.truncate((rng.next() as usize) % (s.len() + 1));
        }
        fuzz_feed(&s);
    }
    fuzz_feed(&session);
}
