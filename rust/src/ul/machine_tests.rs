//! Unit tests of `ul::machine` (kept beside it so that machine.rs holds only the code).

use super::*;
use crate::pdu::{PData, Pdv, PresentationContextRq, UserInformation, UserItem};
use proptest::prelude::*;

fn rq() -> AssociateRq {
    AssociateRq {
        protocol_version: 1,
        called_ae_title: "ANY-SCP".into(),
        calling_ae_title: "ECHOSCU".into(),
        application_context: crate::pdu::DICOM_APPLICATION_CONTEXT.into(),
        presentation_contexts: vec![PresentationContextRq {
            id: 1,
            abstract_syntax: "1.2.840.10008.1.1".into(),
            transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
        }],
        user_information: UserInformation {
            items: vec![UserItem::MaximumLength(16384)],
        },
    }
}

fn ac() -> AssociateAc {
    AssociateAc {
        protocol_version: 1,
        called_ae_title: "ANY-SCP".into(),
        calling_ae_title: "ECHOSCU".into(),
        application_context: crate::pdu::DICOM_APPLICATION_CONTEXT.into(),
        presentation_contexts: vec![],
        user_information: UserInformation::default(),
    }
}

fn rj() -> AssociateRj {
    AssociateRj {
        result: 1,
        source: 1,
        reason: 7,
    }
}

fn pdata(byte: u8) -> PData {
    PData {
        pdvs: vec![Pdv {
            context_id: 1,
            control: 3,
            data: vec![byte; 4],
        }],
    }
}

fn sample_event(kind: EventKind) -> Event {
    match kind {
        EventKind::Evt1 => Event::AssociateRequest(rq()),
        EventKind::Evt2 => Event::TransportConnected,
        EventKind::Evt3 => Event::AssociateAcReceived(ac()),
        EventKind::Evt4 => Event::AssociateRjReceived(rj()),
        EventKind::Evt5 => Event::TransportIndication,
        EventKind::Evt6 => Event::AssociateRqReceived(rq()),
        EventKind::Evt7 => Event::AssociateAccept(ac()),
        EventKind::Evt8 => Event::AssociateReject(rj()),
        EventKind::Evt9 => Event::PDataRequest,
        EventKind::Evt10 => Event::PDataReceived,
        EventKind::Evt11 => Event::ReleaseRequest,
        EventKind::Evt12 => Event::ReleaseRqReceived,
        EventKind::Evt13 => Event::ReleaseRpReceived,
        EventKind::Evt14 => Event::ReleaseResponse,
        EventKind::Evt15 => Event::AbortRequest,
        EventKind::Evt16 => Event::AbortReceived(Abort {
            source: 0,
            reason: 0,
        }),
        EventKind::Evt17 => Event::TransportClosed,
        EventKind::Evt18 => Event::ArtimExpired,
        EventKind::Evt19 => Event::InvalidPdu { abort_reason: 1 },
    }
}

/// Feed events that must all be allowed.
fn feed(m: &mut StateMachine, events: impl IntoIterator<Item = Event>) {
    for e in events {
        let kind = e.kind();
        let state = m.state();
        m.try_handle(e)
            .unwrap_or_else(|err| panic!("{kind:?} in {state:?}: {err}"));
    }
}

/// A machine driven through legal events into `state`.
fn machine_in(state: State) -> StateMachine {
    use Event::*;
    let requestor_to_sta6 = || {
        vec![
            AssociateRequest(rq()),
            TransportConnected,
            AssociateAcReceived(ac()),
        ]
    };
    let acceptor_to_sta6 = || {
        vec![
            TransportIndication,
            AssociateRqReceived(rq()),
            AssociateAccept(ac()),
        ]
    };
    let (mut m, events) = match state {
        State::Sta1 => (StateMachine::new_requestor(), vec![]),
        State::Sta2 => (StateMachine::new_acceptor(), vec![TransportIndication]),
        State::Sta3 => (
            StateMachine::new_acceptor(),
            vec![TransportIndication, AssociateRqReceived(rq())],
        ),
        State::Sta4 => (StateMachine::new_requestor(), vec![AssociateRequest(rq())]),
        State::Sta5 => (
            StateMachine::new_requestor(),
            vec![AssociateRequest(rq()), TransportConnected],
        ),
        State::Sta6 => (StateMachine::new_requestor(), requestor_to_sta6()),
        State::Sta7 => {
            let mut e = requestor_to_sta6();
            e.push(ReleaseRequest);
            (StateMachine::new_requestor(), e)
        }
        State::Sta8 => {
            let mut e = acceptor_to_sta6();
            e.push(ReleaseRqReceived);
            (StateMachine::new_acceptor(), e)
        }
        State::Sta9 => {
            let mut e = requestor_to_sta6();
            e.extend([ReleaseRequest, ReleaseRqReceived]);
            (StateMachine::new_requestor(), e)
        }
        State::Sta10 => {
            let mut e = acceptor_to_sta6();
            e.extend([ReleaseRequest, ReleaseRqReceived]);
            (StateMachine::new_acceptor(), e)
        }
        State::Sta11 => {
            let mut e = requestor_to_sta6();
            e.extend([ReleaseRequest, ReleaseRqReceived, ReleaseResponse]);
            (StateMachine::new_requestor(), e)
        }
        State::Sta12 => {
            let mut e = acceptor_to_sta6();
            e.extend([ReleaseRequest, ReleaseRqReceived, ReleaseRpReceived]);
            (StateMachine::new_acceptor(), e)
        }
        State::Sta13 => (
            StateMachine::new_acceptor(),
            vec![
                TransportIndication,
                AssociateRqReceived(rq()),
                AssociateReject(rj()),
            ],
        ),
    };
    feed(&mut m, events);
    assert_eq!(m.state(), state);
    m
}

fn ind(i: Indication) -> Output {
    Output::Indication(i)
}

fn send(p: Pdu) -> Output {
    Output::SendPdu(p)
}

fn provider_abort(reason: u8) -> Output {
    send(Pdu::Abort(Abort { source: 2, reason }))
}

#[test]
fn requestor_normal_path() {
    let mut m = StateMachine::new_requestor();
    assert!(m.is_closed());
    assert_eq!(
        m.handle(Event::AssociateRequest(rq())),
        vec![Output::ConnectTransport]
    );
    assert_eq!(m.state(), State::Sta4);
    assert_eq!(
        m.handle(Event::TransportConnected),
        vec![send(Pdu::AssociateRq(rq()))]
    );
    assert_eq!(m.state(), State::Sta5);
    assert_eq!(m.associate_rq(), Some(&rq()));
    assert_eq!(
        m.handle(Event::from_pdu(Pdu::AssociateAc(ac()))),
        vec![ind(Indication::AssociateAccepted(ac()))]
    );
    assert_eq!(m.state(), State::Sta6);
    assert!(m.is_established() && m.can_send_data());
    assert_eq!(
        m.handle(Event::PDataRequest),
        vec![Output::SendPData]
    );
    assert_eq!(
        m.handle(Event::PDataReceived),
        vec![ind(Indication::PData)]
    );
    assert_eq!(m.state(), State::Sta6);
    assert_eq!(m.handle(Event::ReleaseRequest), vec![send(Pdu::ReleaseRq)]);
    assert_eq!(m.state(), State::Sta7);
    assert!(!m.can_send_data());
    // AR-6: data still arriving while we wait for the A-RELEASE-RP.
    assert_eq!(
        m.handle(Event::PDataReceived),
        vec![ind(Indication::PData)]
    );
    assert_eq!(m.state(), State::Sta7);
    assert_eq!(
        m.handle(Event::from_pdu(Pdu::ReleaseRp)),
        vec![ind(Indication::ReleaseConfirmed), Output::CloseTransport]
    );
    assert!(m.is_closed() && !m.artim_running());
}

#[test]
fn acceptor_normal_path() {
    let mut m = StateMachine::new_acceptor();
    assert_eq!(
        m.handle(Event::TransportIndication),
        vec![Output::StartArtim]
    );
    assert_eq!(m.state(), State::Sta2);
    assert!(m.artim_running());
    assert_eq!(
        m.handle(Event::from_pdu(Pdu::AssociateRq(rq()))),
        vec![Output::StopArtim, ind(Indication::AssociateRequest(rq()))]
    );
    assert_eq!(m.state(), State::Sta3);
    assert_eq!(
        m.handle(Event::AssociateAccept(ac())),
        vec![send(Pdu::AssociateAc(ac()))]
    );
    assert_eq!(m.state(), State::Sta6);
    assert_eq!(
        m.handle(Event::PDataReceived),
        vec![ind(Indication::PData)]
    );
    assert_eq!(
        m.handle(Event::from_pdu(Pdu::ReleaseRq)),
        vec![ind(Indication::ReleaseRequested)]
    );
    assert_eq!(m.state(), State::Sta8);
    assert!(m.awaiting_release_response() && m.can_send_data());
    // AR-7: a last response may still go out before we answer the release.
    assert_eq!(
        m.handle(Event::PDataRequest),
        vec![Output::SendPData]
    );
    assert_eq!(m.state(), State::Sta8);
    assert_eq!(
        m.handle(Event::ReleaseResponse),
        vec![send(Pdu::ReleaseRp), Output::StartArtim]
    );
    assert_eq!(m.state(), State::Sta13);
    assert!(!m.is_established());
    assert_eq!(m.handle(Event::TransportClosed), vec![Output::StopArtim]);
    assert!(m.is_closed());
}

#[test]
fn requestor_rejected() {
    let mut m = machine_in(State::Sta5);
    assert_eq!(
        m.handle(Event::from_pdu(Pdu::AssociateRj(rj()))),
        vec![
            ind(Indication::AssociateRejected(rj())),
            Output::CloseTransport
        ]
    );
    assert!(m.is_closed());
}

#[test]
fn acceptor_rejects_then_peer_closes() {
    let mut m = machine_in(State::Sta3);
    assert_eq!(
        m.handle(Event::AssociateReject(rj())),
        vec![send(Pdu::AssociateRj(rj())), Output::StartArtim]
    );
    assert_eq!(m.state(), State::Sta13);
    assert_eq!(m.handle(Event::TransportClosed), vec![Output::StopArtim]);
    assert!(m.is_closed());
}

#[test]
fn acceptor_rejects_bad_protocol_version_itself() {
    let mut m = machine_in(State::Sta2);
    let mut bad = rq();
    bad.protocol_version = 2; // bit 0 clear
    assert_eq!(
        m.handle(Event::AssociateRqReceived(bad)),
        vec![
            Output::StopArtim,
            send(Pdu::AssociateRj(AssociateRj {
                result: 1,
                source: 2,
                reason: 2
            })),
            Output::StartArtim
        ]
    );
    assert_eq!(m.state(), State::Sta13);
    // Version with bit 0 set and other bits too is acceptable.
    let mut m = machine_in(State::Sta2);
    let mut multi = rq();
    multi.protocol_version = 0x0003;
    m.handle(Event::AssociateRqReceived(multi));
    assert_eq!(m.state(), State::Sta3);
}

#[test]
fn acceptor_releases_and_requestor_answers() {
    // Release initiated by the acceptor side.
    let mut a = machine_in(State::Sta3);
    feed(&mut a, [Event::AssociateAccept(ac())]);
    assert_eq!(a.handle(Event::ReleaseRequest), vec![send(Pdu::ReleaseRq)]);
    assert_eq!(a.state(), State::Sta7);
    // The requestor gets it.
    let mut r = machine_in(State::Sta6);
    assert_eq!(
        r.handle(Event::ReleaseRqReceived),
        vec![ind(Indication::ReleaseRequested)]
    );
    assert_eq!(r.state(), State::Sta8);
    assert_eq!(
        r.handle(Event::ReleaseResponse),
        vec![send(Pdu::ReleaseRp), Output::StartArtim]
    );
    assert_eq!(r.state(), State::Sta13);
    assert_eq!(
        a.handle(Event::ReleaseRpReceived),
        vec![ind(Indication::ReleaseConfirmed), Output::CloseTransport]
    );
    assert!(a.is_closed());
    assert_eq!(r.handle(Event::TransportClosed), vec![Output::StopArtim]);
    assert!(r.is_closed());
}

#[test]
fn release_collision_requestor_side() {
    let mut m = machine_in(State::Sta7);
    assert_eq!(m.role(), Role::Requestor);
    assert_eq!(
        m.handle(Event::ReleaseRqReceived),
        vec![ind(Indication::ReleaseCollision { requestor: true })]
    );
    assert_eq!(m.state(), State::Sta9);
    assert!(m.awaiting_release_response());
    assert_eq!(m.handle(Event::ReleaseResponse), vec![send(Pdu::ReleaseRp)]);
    assert_eq!(m.state(), State::Sta11);
    assert!(!m.awaiting_release_response());
    assert_eq!(
        m.handle(Event::ReleaseRpReceived),
        vec![ind(Indication::ReleaseConfirmed), Output::CloseTransport]
    );
    assert!(m.is_closed());
}

#[test]
fn release_collision_acceptor_side() {
    let mut m = machine_in(State::Sta3);
    feed(
        &mut m,
        [Event::AssociateAccept(ac()), Event::ReleaseRequest],
    );
    assert_eq!(m.state(), State::Sta7);
    assert_eq!(
        m.handle(Event::ReleaseRqReceived),
        vec![ind(Indication::ReleaseCollision { requestor: false })]
    );
    assert_eq!(m.state(), State::Sta10);
    // The acceptor must not answer before the peer's A-RELEASE-RP.
    assert!(!m.awaiting_release_response());
    assert_eq!(
        m.try_handle(Event::ReleaseResponse),
        Err(InvalidEvent {
            state: State::Sta10,
            event: EventKind::Evt14
        })
    );
    assert_eq!(m.state(), State::Sta10);
    assert_eq!(
        m.handle(Event::ReleaseRpReceived),
        vec![ind(Indication::ReleaseConfirmed)]
    );
    assert_eq!(m.state(), State::Sta12);
    assert!(m.awaiting_release_response());
    assert_eq!(
        m.handle(Event::ReleaseResponse),
        vec![send(Pdu::ReleaseRp), Output::StartArtim]
    );
    assert_eq!(m.state(), State::Sta13);
    assert_eq!(m.handle(Event::TransportClosed), vec![Output::StopArtim]);
    assert!(m.is_closed());
}

/// Two machines joined back to back: every SendPdu of one is received by the other.
#[test]
fn release_collision_end_to_end() {
    let mut r = machine_in(State::Sta6);
    let mut a = machine_in(State::Sta3);
    feed(&mut a, [Event::AssociateAccept(ac())]);

    fn pdus(out: Vec<Output>) -> Vec<Pdu> {
        out.into_iter()
            .filter_map(|o| match o {
                Output::SendPdu(p) => Some(p),
                _ => None,
            })
            .collect()
    }
    // Both users ask to release at the same moment.
    let from_r = pdus(r.handle(Event::ReleaseRequest));
    let from_a = pdus(a.handle(Event::ReleaseRequest));
    // The RQs cross on the wire.
    for p in from_a {
        r.handle(Event::from_pdu(p));
    }
    for p in from_r {
        a.handle(Event::from_pdu(p));
    }
    assert_eq!((r.state(), a.state()), (State::Sta9, State::Sta10));
    // The requestor answers at once; the acceptor must wait.
    let from_r = pdus(r.handle(Event::ReleaseResponse));
    assert_eq!(from_r, vec![Pdu::ReleaseRp]);
    let mut a_out = Vec::new();
    for p in from_r {
        a_out.extend(a.handle(Event::from_pdu(p)));
    }
    assert_eq!(a_out, vec![ind(Indication::ReleaseConfirmed)]);
    let from_a = pdus(a.handle(Event::ReleaseResponse));
    assert_eq!(a.state(), State::Sta13);
    let mut r_out = Vec::new();
    for p in from_a {
        r_out.extend(r.handle(Event::from_pdu(p)));
    }
    assert_eq!(
        r_out,
        vec![ind(Indication::ReleaseConfirmed), Output::CloseTransport]
    );
    assert!(r.is_closed());
    // The requestor closed the connection: the acceptor sees it close.
    assert_eq!(a.handle(Event::TransportClosed), vec![Output::StopArtim]);
    assert!(a.is_closed());
}

const ESTABLISHED: [State; 7] = [
    State::Sta6,
    State::Sta7,
    State::Sta8,
    State::Sta9,
    State::Sta10,
    State::Sta11,
    State::Sta12,
];

#[test]
fn local_abort_in_every_association_state() {
    for state in [State::Sta3, State::Sta5].into_iter().chain(ESTABLISHED) {
        let mut m = machine_in(state);
        assert_eq!(
            m.handle(Event::AbortRequest),
            vec![
                send(Pdu::Abort(Abort {
                    source: 0,
                    reason: 0
                })),
                Output::StartArtim
            ],
            "{state:?}"
        );
        assert_eq!(m.state(), State::Sta13);
        assert_eq!(
            m.handle(Event::ArtimExpired),
            vec![Output::StopArtim, Output::CloseTransport]
        );
        assert!(m.is_closed());
    }
}

#[test]
fn peer_abort_in_every_association_state() {
    for state in [State::Sta3, State::Sta5].into_iter().chain(ESTABLISHED) {
        let mut m = machine_in(state);
        let abort = Abort {
            source: 2,
            reason: 6,
        };
        assert_eq!(
            m.handle(Event::from_pdu(Pdu::Abort(abort))),
            vec![
                ind(Indication::Aborted {
                    source: 2,
                    reason: 6,
                    from_peer: true
                }),
                Output::CloseTransport
            ],
            "{state:?}"
        );
        assert!(m.is_closed());
    }
}

#[test]
fn connection_lost_in_every_association_state() {
    for state in [State::Sta3, State::Sta4, State::Sta5]
        .into_iter()
        .chain(ESTABLISHED)
    {
        let mut m = machine_in(state);
        assert_eq!(
            m.handle(Event::TransportClosed),
            vec![ind(Indication::TransportClosed)],
            "{state:?}"
        );
        assert!(m.is_closed());
    }
}

#[test]
fn abort_while_connecting_closes_without_pdu() {
    let mut m = machine_in(State::Sta4);
    assert_eq!(m.handle(Event::AbortRequest), vec![Output::CloseTransport]);
    assert!(m.is_closed());
}

#[test]
fn unexpected_pdu_in_sta2_aborts() {
    for (event, reason) in [
        (Event::AssociateAcReceived(ac()), 2),
        (Event::AssociateRjReceived(rj()), 2),
        (Event::PDataReceived, 2),
        (Event::ReleaseRqReceived, 2),
        (Event::ReleaseRpReceived, 2),
        (Event::InvalidPdu { abort_reason: 1 }, 1),
    ] {
        let mut m = machine_in(State::Sta2);
        let kind = event.kind();
        // AA-1: abort and restart ARTIM; no indication, there is no user yet.
        assert_eq!(
            m.handle(event),
            vec![provider_abort(reason), Output::StartArtim],
            "{kind:?}"
        );
        assert_eq!(m.state(), State::Sta13);
        assert!(m.artim_running());
    }
}

#[test]
fn peer_abort_in_sta2_closes() {
    let mut m = machine_in(State::Sta2);
    assert_eq!(
        m.handle(Event::AbortReceived(Abort {
            source: 0,
            reason: 0
        })),
        vec![Output::StopArtim, Output::CloseTransport]
    );
    assert!(m.is_closed());
}

#[test]
fn unexpected_pdu_in_sta5_and_sta6_aborts_with_indication() {
    let cases = [
        (State::Sta5, Event::AssociateRqReceived(rq()), 2),
        (State::Sta5, Event::PDataReceived, 2),
        (State::Sta5, Event::ReleaseRqReceived, 2),
        (State::Sta5, Event::InvalidPdu { abort_reason: 4 }, 4),
        (State::Sta6, Event::AssociateAcReceived(ac()), 2),
        (State::Sta6, Event::AssociateRqReceived(rq()), 2),
        (State::Sta6, Event::ReleaseRpReceived, 2),
        (State::Sta6, Event::InvalidPdu { abort_reason: 6 }, 6),
        (State::Sta3, Event::PDataReceived, 2),
        (State::Sta8, Event::PDataReceived, 2),
    ];
    for (state, event, reason) in cases {
        let mut m = machine_in(state);
        let kind = event.kind();
        assert_eq!(
            m.handle(event),
            vec![
                provider_abort(reason),
                ind(Indication::Aborted {
                    source: 2,
                    reason,
                    from_peer: false
                }),
                Output::StartArtim
            ],
            "{kind:?} in {state:?}"
        );
        assert_eq!(m.state(), State::Sta13);
    }
}

#[test]
fn artim_expiry_in_sta2_and_sta13() {
    let mut m = machine_in(State::Sta2);
    assert_eq!(
        m.handle(Event::ArtimExpired),
        vec![Output::StopArtim, Output::CloseTransport]
    );
    assert!(m.is_closed());
    let mut m = machine_in(State::Sta13);
    assert_eq!(
        m.handle(Event::ArtimExpired),
        vec![Output::StopArtim, Output::CloseTransport]
    );
    assert!(m.is_closed());
    // A stale expiry elsewhere is a blank cell: ignored.
    let mut m = machine_in(State::Sta6);
    assert!(m.handle(Event::ArtimExpired).is_empty());
    assert_eq!(m.state(), State::Sta6);
}

#[test]
fn sta13_ignores_pdus_and_aborts_on_rq_or_garbage() {
    let mut m = machine_in(State::Sta13);
    for e in [
        Event::PDataReceived,
        Event::AssociateAcReceived(ac()),
        Event::AssociateRjReceived(rj()),
        Event::ReleaseRqReceived,
        Event::ReleaseRpReceived,
    ] {
        assert!(m.handle(e).is_empty()); // AA-6
        assert_eq!(m.state(), State::Sta13);
    }
    assert_eq!(
        m.handle(Event::AssociateRqReceived(rq())),
        vec![provider_abort(2)]
    ); // AA-7
    assert_eq!(
        m.handle(Event::InvalidPdu { abort_reason: 1 }),
        vec![provider_abort(1)]
    );
    assert_eq!(m.state(), State::Sta13);
    assert!(m.artim_running());
    assert_eq!(
        m.handle(Event::AbortReceived(Abort {
            source: 0,
            reason: 0
        })),
        vec![Output::StopArtim, Output::CloseTransport]
    ); // AA-2
    assert!(m.is_closed());
}

#[test]
fn blank_cells_are_errors_and_change_nothing() {
    let mut m = StateMachine::new_requestor();
    assert_eq!(
        m.try_handle(Event::PDataRequest),
        Err(InvalidEvent {
            state: State::Sta1,
            event: EventKind::Evt9
        })
    );
    assert!(m.handle(Event::ReleaseRequest).is_empty());
    assert!(m.handle(Event::TransportClosed).is_empty());
    assert_eq!(m.state(), State::Sta1);
    let mut m = machine_in(State::Sta7);
    assert!(!m.accepts(EventKind::Evt9));
    assert!(m.try_handle(Event::PDataRequest).is_err());
    assert!(m.try_handle(Event::AssociateRequest(rq())).is_err());
    assert_eq!(m.state(), State::Sta7);
    let msg = InvalidEvent {
        state: State::Sta1,
        event: EventKind::Evt9,
    }
    .to_string();
    assert!(
        msg.contains("P-DATA request") && msg.contains("Idle"),
        "{msg}"
    );
}

/// Every non-blank cell of the table runs (the action gets the data it needs) and every
/// blank cell is refused.
#[test]
fn every_cell_of_the_table() {
    let mut filled = 0;
    for state in State::ALL {
        for kind in EventKind::ALL {
            let mut m = machine_in(state);
            let result = m.try_handle(sample_event(kind));
            match transition(state, kind) {
                Some(action) => {
                    filled += 1;
                    assert!(result.is_ok(), "{action} for {kind:?} in {state:?}");
                }
                None => {
                    assert!(result.is_err(), "{kind:?} in {state:?}");
                    assert_eq!(m.state(), state);
                }
            }
        }
    }
    // Non-blank cells per row of Table 9-10: 1+1+11+11+1+11+1+1+2+11+1+11+11+3+10+11+12+2+11.
    assert_eq!(filled, 123);
}

#[test]
fn spot_checks_against_table_9_10() {
    use Action::*;
    use EventKind::*;
    use State::*;
    let cases = [
        (Sta1, Evt1, Ae1),
        (Sta4, Evt2, Ae2),
        (Sta5, Evt3, Ae3),
        (Sta5, Evt4, Ae4),
        (Sta1, Evt5, Ae5),
        (Sta2, Evt6, Ae6),
        (Sta3, Evt7, Ae7),
        (Sta3, Evt8, Ae8),
        (Sta6, Evt9, Dt1),
        (Sta6, Evt10, Dt2),
        (Sta6, Evt11, Ar1),
        (Sta6, Evt12, Ar2),
        (Sta7, Evt13, Ar3),
        (Sta11, Evt13, Ar3),
        (Sta8, Evt14, Ar4),
        (Sta12, Evt14, Ar4),
        (Sta13, Evt17, Ar5),
        (Sta7, Evt10, Ar6),
        (Sta8, Evt9, Ar7),
        (Sta7, Evt12, Ar8),
        (Sta9, Evt14, Ar9),
        (Sta10, Evt13, Ar10),
        (Sta2, Evt3, Aa1),
        (Sta6, Evt15, Aa1),
        (Sta4, Evt15, Aa2),
        (Sta2, Evt18, Aa2),
        (Sta13, Evt16, Aa2),
        (Sta6, Evt16, Aa3),
        (Sta4, Evt17, Aa4),
        (Sta2, Evt17, Aa5),
        (Sta13, Evt10, Aa6),
        (Sta13, Evt6, Aa7),
        (Sta13, Evt19, Aa7),
        (Sta6, Evt6, Aa8),
        (Sta12, Evt19, Aa8),
    ];
    for (state, event, action) in cases {
        assert_eq!(
            transition(state, event),
            Some(action),
            "{event:?} in {state:?}"
        );
    }
    assert_eq!(transition(Sta7, Evt9), None);
    assert_eq!(transition(Sta10, Evt14), None);
    assert_eq!(transition(Sta13, Evt15), None);
}

#[test]
fn from_pdu_maps_every_pdu() {
    assert_eq!(
        Event::from_pdu(Pdu::AssociateRq(rq())).kind(),
        EventKind::Evt6
    );
    assert_eq!(
        Event::from_pdu(Pdu::AssociateAc(ac())).kind(),
        EventKind::Evt3
    );
    assert_eq!(
        Event::from_pdu(Pdu::AssociateRj(rj())).kind(),
        EventKind::Evt4
    );
    assert_eq!(
        Event::from_pdu(Pdu::PData(pdata(0))).kind(),
        EventKind::Evt10
    );
    assert_eq!(Event::from_pdu(Pdu::ReleaseRq).kind(), EventKind::Evt12);
    assert_eq!(Event::from_pdu(Pdu::ReleaseRp).kind(), EventKind::Evt13);
    assert_eq!(
        Event::from_pdu(Pdu::Abort(Abort {
            source: 0,
            reason: 0
        }))
        .kind(),
        EventKind::Evt16
    );
}

#[test]
fn machine_can_be_reused_after_returning_to_idle() {
    let mut m = machine_in(State::Sta2);
    m.handle(Event::ArtimExpired);
    assert!(m.is_closed());
    feed(
        &mut m,
        [Event::AssociateRequest(rq()), Event::TransportConnected],
    );
    assert_eq!((m.state(), m.role()), (State::Sta5, Role::Requestor));
}

fn arb_event() -> impl Strategy<Value = Event> {
    (0usize..19, any::<u8>(), any::<bool>()).prop_map(|(i, byte, flag)| {
        match sample_event(EventKind::ALL[i]) {
            Event::InvalidPdu { .. } => Event::InvalidPdu {
                abort_reason: byte % 7,
            },
            Event::AbortReceived(_) => Event::AbortReceived(Abort {
                source: byte % 3,
                reason: byte,
            }),
            Event::AssociateRqReceived(mut r) => {
                r.protocol_version = if flag { 1 } else { byte as u16 & 0xFE };
                Event::AssociateRqReceived(r)
            }
            other => other,
        }
    })
}

proptest! {
    /// Random event sequences never panic and keep the machine's invariants: the timer
    /// runs exactly in Sta2 and Sta13 (as the driver sees it from Start/Stop outputs), a
    /// PDU is only sent on an open connection, CloseTransport is last and leads to Sta1,
    /// and Sta1 is only reached by closing or by the connection closing.
    #[test]
    fn random_events_keep_invariants(
        requestor in any::<bool>(),
        events in prop::collection::vec(arb_event(), 0..60),
    ) {
        let mut m = if requestor { StateMachine::new_requestor() } else { StateMachine::new_acceptor() };
        let mut timer = false; // as the driver sees it
        let mut open = false;  // transport connection, as the driver sees it
        for event in events {
            let before = m.state();
            let kind = event.kind();
            let allowed = m.accepts(kind);
            let out = m.handle(event);
            let after = m.state();
            if !allowed {
                prop_assert!(out.is_empty());
                prop_assert_eq!(before, after);
                continue;
            }
            if matches!(kind, EventKind::Evt2 | EventKind::Evt5) {
                open = true;
            }
            if kind == EventKind::Evt17 {
                open = false;
            }
            for (i, o) in out.iter().enumerate() {
                match o {
                    Output::StartArtim => timer = true,
                    Output::StopArtim => {
                        prop_assert!(timer, "StopArtim without StartArtim");
                        timer = false;
                    }
                    Output::SendPdu(_) | Output::SendPData => prop_assert!(open, "send on closed transport in {:?}", before),
                    Output::CloseTransport => {
                        prop_assert_eq!(i, out.len() - 1);
                        prop_assert_eq!(after, State::Sta1);
                        open = false;
                    }
                    Output::ConnectTransport => prop_assert_eq!(before, State::Sta1),
                    Output::Indication(Indication::AssociateAccepted(_)) => {
                        prop_assert_eq!(after, State::Sta6)
                    }
                    Output::Indication(_) => {}
                }
            }
            prop_assert_eq!(timer, m.artim_running());
            prop_assert_eq!(timer, matches!(after, State::Sta2 | State::Sta13));
            if after == State::Sta1 {
                prop_assert!(!open);
            }
            if after == State::Sta1 && before != State::Sta1 {
                prop_assert!(
                    kind == EventKind::Evt17 || out.last() == Some(&Output::CloseTransport),
                    "{:?} in {:?} reached Sta1 without closing", kind, before
                );
            }
            prop_assert_eq!(
                m.is_established(),
                (State::Sta6..=State::Sta12).contains(&after)
            );
        }
    }
}
