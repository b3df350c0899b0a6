//! The DICOM upper-layer state machine of PS3.8 section 9.2, sans-I/O.
//!
//! # Theory of operation
//!
//! Everything that affects the upper-layer state machine lives in this file.
//!
//! PS3.8 9.2 describes one DICOM UL protocol machine per transport connection, for both the
//! association-requestor (the side that opens the TCP connection) and the association-acceptor.
//! It has thirteen states (Sta1..Sta13, [`State`]) and nineteen events (Evt1..Evt19,
//! [`EventKind`]). Table 9-10 of the standard says, for each (event, state) pair, which action
//! to perform (AE-1..AE-8, DT-1..DT-2, AR-1..AR-10, AA-1..AA-8, [`Action`]); each action does
//! some side effects and names the next state. This module keeps that table as one constant,
//! [`TABLE`], written row by row in the same layout as Table 9-10, and one small method per action.
//!
//! The machine does no I/O and owns no clock. The driver (the `net` layer) feeds it [`Event`]s:
//!
//! - *local user primitives* (from the DIMSE layer or the application): Evt1, Evt7, Evt8, Evt9,
//!   Evt11, Evt14, Evt15;
//! - *received PDUs*, already decoded by the `pdu` codec: Evt3, Evt4, Evt6, Evt10, Evt12, Evt13,
//!   Evt16 ([`Event::from_pdu`] maps a [`Pdu`] to its event), and Evt19 when the codec could not
//!   decode a PDU;
//! - *transport and timer happenings*: Evt2 (our connect completed), Evt5 (we accepted an
//!   incoming connection), Evt17 (the connection closed), Evt18 (the ARTIM timer expired).
//!
//! [`StateMachine::handle`] returns the [`Output`]s the driver must carry out, in order: send a
//! PDU, open or close the transport, start or stop the ARTIM timer, or pass an [`Indication`] up
//! to the user. The ARTIM timer (PS3.8 9.1.5) is owned by the driver: on `StartArtim` it
//! (re)arms a deadline, on `StopArtim` it disarms it, and when the deadline passes it feeds
//! [`Event::ArtimExpired`]. The machine tracks whether it believes the timer runs; by
//! construction the timer runs exactly in Sta2 and Sta13.
//!
//! ## P-DATA carries no data here
//!
//! Evt9 and Evt10 go through the table like every other event, but without their PDVs:
//! the machine decides only *whether* a P-DATA-TF may be sent or is delivered, never
//! looks at its contents. So the connection (`ul::connection`) keeps received PDVs in its
//! receive buffer (and may let the driver splice a data PDV from the socket into a file)
//! and encodes outgoing ones straight into its output, with no copy for the machine's
//! sake. DT-1/AR-7 answer [`Output::SendPData`] ("send the P-DATA-TF of this request"),
//! DT-2/AR-6 [`Indication::PData`] ("deliver the P-DATA-TF just received"). "May I send
//! P-DATA" is [`StateMachine::can_send_data`], read from the Evt9 row of the table.
//!
//! ## Blank cells
//!
//! Table 9-10 leaves some cells blank: the standard considers those events impossible in that
//! state (a PDU cannot arrive before a connection exists; a timer that is not running cannot
//! expire) or a local-user error (P-DATA request before the association is established).
//! [`StateMachine::try_handle`] reports such an event as an [`InvalidEvent`] error and changes
//! nothing; [`StateMachine::handle`] logs it at debug level and returns no outputs. Drivers use
//! `try_handle` for local user primitives (to give the caller a clear error, for example
//! "cannot send P-DATA: association not established") and may use `handle` for everything else
//! (a stale ARTIM expiry, for example, is harmless to ignore; so is a `TransportClosed` fed
//! after the machine itself asked for `CloseTransport`). A local abort (Evt15) is blank in Sta2
//! and Sta13, where no association exists: to drop such a connection the driver closes the
//! socket and feeds [`Event::TransportClosed`] (AA-5 or AR-5, back to Sta1).
//!
//! ## Readings of the standard that are ours
//!
//! - **AA-1 for a received PDU in Sta2.** The table answers an unexpected or invalid PDU in Sta2
//!   (before any A-ASSOCIATE-RQ) with AA-1, whose text says "A-ABORT (service-user source)". In
//!   Sta2 there is no service-user yet, so we send a provider abort (source 2) with the
//!   diagnostic (2 unexpected PDU, or the reason carried by Evt19); that tells the peer's logs
//!   what went wrong. AA-1 caused by the local user (Evt15) sends source 0, reason 0.
//! - **AA-7** ("send A-ABORT PDU" in Sta13) sends a provider abort (source 2) with reason 2
//!   (unexpected PDU) for Evt6, or the Evt19 reason.
//! - **AE-6** ("if A-ASSOCIATE-RQ acceptable by service-provider") checks only what belongs to
//!   the provider: bit 0 of the protocol version. Otherwise it sends A-ASSOCIATE-RJ
//!   (1 rejected-permanent, 2 service-provider ACSE, 2 protocol-version-not-supported). All
//!   service-user checks (AE titles, application context, presentation contexts) are the user's,
//!   see [`crate::ul::negotiation::negotiate_acceptor`].
//! - **AE-5** ("issue transport connection response primitive") has no output: the driver has
//!   already accepted the TCP connection when it feeds Evt5.
//! - **A-P-ABORT indications.** AA-3 reports a received A-ABORT as
//!   [`Indication::Aborted`] with `from_peer: true`; AA-8 (we abort because the peer misbehaved)
//!   as `Aborted { source: 2, reason, from_peer: false }`; AA-4 (the transport closed under an
//!   association, or the connect failed in Sta4) as [`Indication::TransportClosed`].
//! - **Release collision.** AR-8 is reported as [`Indication::ReleaseCollision`]`{ requestor }`.
//!   The requestor side (Sta9) must answer at once with [`Event::ReleaseResponse`] (AR-9 sends
//!   A-RELEASE-RP, then Sta11 waits for the peer's A-RELEASE-RP, AR-3 confirms and closes). The
//!   acceptor side (Sta10) must wait: the peer's A-RELEASE-RP gives
//!   [`Indication::ReleaseConfirmed`] (AR-10, Sta12), and only then does the user answer with
//!   [`Event::ReleaseResponse`] (AR-4 sends A-RELEASE-RP, Sta13).
//!   [`StateMachine::awaiting_release_response`] tells a driver when a response is due.
//! - **Role.** Whether this machine is the association-requestor (needed by AR-8) is set by
//!   AE-1 (requestor) or AE-5 (acceptor); the constructors only give the initial value.

use std::fmt;

use crate::pdu::{Abort, AssociateAc, AssociateRj, AssociateRq, Pdu};

/// Abort source values (PS3.8 9.3.8).
const ABORT_SOURCE_USER: u8 = 0;
const ABORT_SOURCE_PROVIDER: u8 = 2;
/// Provider abort reason "unexpected-PDU" (PS3.8 9.3.8).
const ABORT_REASON_UNEXPECTED_PDU: u8 = 2;

/// The states of PS3.8 Tables 9-1 to 9-5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Idle.
    Sta1,
    /// Transport connection open (Awaiting A-ASSOCIATE-RQ PDU).
    Sta2,
    /// Awaiting local A-ASSOCIATE response primitive (from local user).
    Sta3,
    /// Awaiting transport connection opening to complete (from local transport service).
    Sta4,
    /// Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU.
    Sta5,
    /// Association established and ready for data transfer.
    Sta6,
    /// Awaiting A-RELEASE-RP PDU.
    Sta7,
    /// Awaiting local A-RELEASE response primitive (from local user).
    Sta8,
    /// Release collision requestor side; awaiting A-RELEASE response (from local user).
    Sta9,
    /// Release collision acceptor side; awaiting A-RELEASE-RP PDU.
    Sta10,
    /// Release collision requestor side; awaiting A-RELEASE-RP PDU.
    Sta11,
    /// Release collision acceptor side; awaiting A-RELEASE response primitive (from local user).
    Sta12,
    /// Awaiting Transport Connection Close Indication (Association no longer exists).
    Sta13,
}

impl State {
    /// All states, in table column order.
    pub const ALL: [State; 13] = [
        State::Sta1,
        State::Sta2,
        State::Sta3,
        State::Sta4,
        State::Sta5,
        State::Sta6,
        State::Sta7,
        State::Sta8,
        State::Sta9,
        State::Sta10,
        State::Sta11,
        State::Sta12,
        State::Sta13,
    ];

    /// The number in the standard's name (1 for Sta1).
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    /// The standard's definition of the state.
    pub fn description(self) -> &'static str {
        match self {
            State::Sta1 => "Idle",
            State::Sta2 => "Transport connection open (Awaiting A-ASSOCIATE-RQ PDU)",
            State::Sta3 => "Awaiting local A-ASSOCIATE response primitive (from local user)",
            State::Sta4 => {
                "Awaiting transport connection opening to complete (from local transport service)"
            }
            State::Sta5 => "Awaiting A-ASSOCIATE-AC or A-ASSOCIATE-RJ PDU",
            State::Sta6 => "Association established and ready for data transfer",
            State::Sta7 => "Awaiting A-RELEASE-RP PDU",
            State::Sta8 => "Awaiting local A-RELEASE response primitive (from local user)",
            State::Sta9 => {
                "Release collision requestor side; awaiting A-RELEASE response (from local user)"
            }
            State::Sta10 => "Release collision acceptor side; awaiting A-RELEASE-RP PDU",
            State::Sta11 => "Release collision requestor side; awaiting A-RELEASE-RP PDU",
            State::Sta12 => {
                "Release collision acceptor side; awaiting A-RELEASE response primitive (from local user)"
            }
            State::Sta13 => {
                "Awaiting Transport Connection Close Indication (Association no longer exists)"
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sta{} ({})", self.number(), self.description())
    }
}

/// The events of PS3.8 Table 9-10 without their data (see [`Event`] for the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Evt1,
    Evt2,
    Evt3,
    Evt4,
    Evt5,
    Evt6,
    Evt7,
    Evt8,
    Evt9,
    Evt10,
    Evt11,
    Evt12,
    Evt13,
    Evt14,
    Evt15,
    Evt16,
    Evt17,
    Evt18,
    Evt19,
}

impl EventKind {
    /// All events, in table row order.
    pub const ALL: [EventKind; 19] = [
        EventKind::Evt1,
        EventKind::Evt2,
        EventKind::Evt3,
        EventKind::Evt4,
        EventKind::Evt5,
        EventKind::Evt6,
        EventKind::Evt7,
        EventKind::Evt8,
        EventKind::Evt9,
        EventKind::Evt10,
        EventKind::Evt11,
        EventKind::Evt12,
        EventKind::Evt13,
        EventKind::Evt14,
        EventKind::Evt15,
        EventKind::Evt16,
        EventKind::Evt17,
        EventKind::Evt18,
        EventKind::Evt19,
    ];

    /// The number in the standard's name (1 for Evt1).
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    /// The standard's description of the event.
    pub fn description(self) -> &'static str {
        match self {
            EventKind::Evt1 => "A-ASSOCIATE Request (local user)",
            EventKind::Evt2 => "Transport Connect Confirm (local transport service)",
            EventKind::Evt3 => "A-ASSOCIATE-AC PDU (received on transport connection)",
            EventKind::Evt4 => "A-ASSOCIATE-RJ PDU (received on transport connection)",
            EventKind::Evt5 => "Transport Connection Indication (local transport service)",
            EventKind::Evt6 => "A-ASSOCIATE-RQ PDU (received on transport connection)",
            EventKind::Evt7 => "A-ASSOCIATE response primitive (accept)",
            EventKind::Evt8 => "A-ASSOCIATE response primitive (reject)",
            EventKind::Evt9 => "P-DATA request primitive",
            EventKind::Evt10 => "P-DATA-TF PDU",
            EventKind::Evt11 => "A-RELEASE Request primitive",
            EventKind::Evt12 => "A-RELEASE-RQ PDU (received on open transport connection)",
            EventKind::Evt13 => "A-RELEASE-RP PDU (received on transport connection)",
            EventKind::Evt14 => "A-RELEASE Response primitive",
            EventKind::Evt15 => "A-ABORT Request primitive",
            EventKind::Evt16 => "A-ABORT PDU (received on open transport connection)",
            EventKind::Evt17 => "Transport connection closed indication (local transport service)",
            EventKind::Evt18 => "ARTIM timer expired (Association reject/release timer)",
            EventKind::Evt19 => "Unrecognized or invalid PDU received",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Evt{} ({})", self.number(), self.description())
    }
}

/// An event fed to the machine, with its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Evt1: the local user asks to associate; the machine answers `ConnectTransport` and
    /// sends this A-ASSOCIATE-RQ once the driver reports [`Event::TransportConnected`].
    AssociateRequest(AssociateRq),
    /// Evt2: the transport connection the driver opened is up.
    TransportConnected,
    /// Evt3: an A-ASSOCIATE-AC PDU arrived.
    AssociateAcReceived(AssociateAc),
    /// Evt4: an A-ASSOCIATE-RJ PDU arrived.
    AssociateRjReceived(AssociateRj),
    /// Evt5: the driver accepted an incoming transport connection (acceptor side).
    TransportIndication,
    /// Evt6: an A-ASSOCIATE-RQ PDU arrived.
    AssociateRqReceived(AssociateRq),
    /// Evt7: the local user accepts the association with this A-ASSOCIATE-AC.
    AssociateAccept(AssociateAc),
    /// Evt8: the local user rejects the association with this A-ASSOCIATE-RJ.
    AssociateReject(AssociateRj),
    /// Evt9: the local user asks to send a P-DATA-TF (the bytes stay with the caller, see
    /// "P-DATA carries no data here" above).
    PDataRequest,
    /// Evt10: a P-DATA-TF PDU arrived (its PDVs stay in the caller's receive buffer).
    PDataReceived,
    /// Evt11: the local user asks to release the association.
    ReleaseRequest,
    /// Evt12: an A-RELEASE-RQ PDU arrived.
    ReleaseRqReceived,
    /// Evt13: an A-RELEASE-RP PDU arrived.
    ReleaseRpReceived,
    /// Evt14: the local user answers a release request (A-RELEASE response primitive).
    ReleaseResponse,
    /// Evt15: the local user aborts the association.
    AbortRequest,
    /// Evt16: an A-ABORT PDU arrived.
    AbortReceived(Abort),
    /// Evt17: the transport connection closed (or the connect attempt failed).
    TransportClosed,
    /// Evt18: the ARTIM timer the driver armed on `StartArtim` expired.
    ArtimExpired,
    /// Evt19: an unrecognized or invalid PDU arrived; `abort_reason` is the A-ABORT
    /// diagnostic to send (PS3.8 9.3.8: 1 unrecognized PDU, 4 unrecognized PDU parameter,
    /// 5 unexpected PDU parameter, 6 invalid PDU parameter value, 0 not specified).
    InvalidPdu { abort_reason: u8 },
}

impl Event {
    /// Which of Evt1..Evt19 this is.
    pub fn kind(&self) -> EventKind {
        match self {
            Event::AssociateRequest(_) => EventKind::Evt1,
            Event::TransportConnected => EventKind::Evt2,
            Event::AssociateAcReceived(_) => EventKind::Evt3,
            Event::AssociateRjReceived(_) => EventKind::Evt4,
            Event::TransportIndication => EventKind::Evt5,
            Event::AssociateRqReceived(_) => EventKind::Evt6,
            Event::AssociateAccept(_) => EventKind::Evt7,
            Event::AssociateReject(_) => EventKind::Evt8,
            Event::PDataRequest => EventKind::Evt9,
            Event::PDataReceived => EventKind::Evt10,
            Event::ReleaseRequest => EventKind::Evt11,
            Event::ReleaseRqReceived => EventKind::Evt12,
            Event::ReleaseRpReceived => EventKind::Evt13,
            Event::ReleaseResponse => EventKind::Evt14,
            Event::AbortRequest => EventKind::Evt15,
            Event::AbortReceived(_) => EventKind::Evt16,
            Event::TransportClosed => EventKind::Evt17,
            Event::ArtimExpired => EventKind::Evt18,
            Event::InvalidPdu { .. } => EventKind::Evt19,
        }
    }

    /// The event for a PDU received from the peer (Evt3, 4, 6, 10, 12, 13 or 16).
    pub fn from_pdu(pdu: Pdu) -> Event {
        match pdu {
            Pdu::AssociateRq(rq) => Event::AssociateRqReceived(rq),
            Pdu::AssociateAc(ac) => Event::AssociateAcReceived(ac),
            Pdu::AssociateRj(rj) => Event::AssociateRjReceived(rj),
            Pdu::PData(_) => Event::PDataReceived,
            Pdu::ReleaseRq => Event::ReleaseRqReceived,
            Pdu::ReleaseRp => Event::ReleaseRpReceived,
            Pdu::Abort(abort) => Event::AbortReceived(abort),
        }
    }

    /// The A-ABORT diagnostic to send when this event is an unexpected or invalid PDU.
    fn abort_reason(&self) -> u8 {
        match self {
            Event::InvalidPdu { abort_reason } => *abort_reason,
            _ => ABORT_REASON_UNEXPECTED_PDU,
        }
    }
}

/// What the driver must do, in the order returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open the transport connection to the peer; report [`Event::TransportConnected`] or,
    /// on failure, [`Event::TransportClosed`].
    ConnectTransport,
    /// Encode and write this PDU.
    SendPdu(Pdu),
    /// DT-1, AR-7: write the P-DATA-TF PDU of the P-DATA request (Evt9) just handled.
    SendPData,
    /// Close the transport connection (or abandon the pending connect). Always the last
    /// output of its batch; the machine is already in Sta1, so a later
    /// [`Event::TransportClosed`] is not needed (and is ignored).
    CloseTransport,
    /// Arm (or re-arm) the ARTIM timer.
    StartArtim,
    /// Disarm the ARTIM timer.
    StopArtim,
    /// Pass this to the local user.
    Indication(Indication),
}

/// Primitives passed up to the local user (the DIMSE layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indication {
    /// AE-6: a peer asks to associate. Decide (see `negotiate_acceptor`) and feed
    /// [`Event::AssociateAccept`] or [`Event::AssociateReject`].
    AssociateRequest(AssociateRq),
    /// AE-3: our A-ASSOCIATE-RQ was accepted; the association is established.
    AssociateAccepted(AssociateAc),
    /// AE-4: our A-ASSOCIATE-RQ was rejected; the transport is being closed.
    AssociateRejected(AssociateRj),
    /// DT-2, AR-6: deliver the P-DATA-TF that was received (Evt10) to the user.
    PData,
    /// AR-2: the peer asks to release; answer with [`Event::ReleaseResponse`] (after sending
    /// any P-DATA still due, which Sta8 allows).
    ReleaseRequested,
    /// AR-8: both sides asked to release at once. `requestor: true` (Sta9): answer now with
    /// [`Event::ReleaseResponse`]. `requestor: false` (Sta10): wait for
    /// [`Indication::ReleaseConfirmed`], then answer with [`Event::ReleaseResponse`].
    ReleaseCollision { requestor: bool },
    /// AR-3, AR-10: the peer confirmed our release request.
    ReleaseConfirmed,
    /// AA-3: the peer sent A-ABORT (`from_peer: true`, source and reason as received:
    /// source 0 = service-user, 2 = service-provider).
    /// AA-8: we aborted because the peer sent an unexpected or invalid PDU
    /// (`from_peer: false`, source 2, reason the diagnostic we sent).
    Aborted {
        source: u8,
        reason: u8,
        from_peer: bool,
    },
    /// AA-4: the transport connection closed (or could not be opened) while an association
    /// was being set up or was in place: an A-P-ABORT.
    TransportClosed,
}

/// The actions of PS3.8 Tables 9-6 to 9-9.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Issue TRANSPORT CONNECT request primitive to local transport service. Next Sta4.
    Ae1,
    /// Send A-ASSOCIATE-RQ-PDU. Next Sta5.
    Ae2,
    /// Issue A-ASSOCIATE confirmation (accept) primitive. Next Sta6.
    Ae3,
    /// Issue A-ASSOCIATE confirmation (reject) primitive and close transport connection. Next Sta1.
    Ae4,
    /// Issue Transport connection response primitive; start ARTIM timer. Next Sta2.
    Ae5,
    /// Stop ARTIM timer and if A-ASSOCIATE-RQ acceptable by service-provider: issue
    /// A-ASSOCIATE indication primitive, next Sta3; otherwise issue A-ASSOCIATE-RJ-PDU and
    /// start ARTIM timer, next Sta13.
    Ae6,
    /// Send A-ASSOCIATE-AC PDU. Next Sta6.
    Ae7,
    /// Send A-ASSOCIATE-RJ PDU and start ARTIM timer. Next Sta13.
    Ae8,
    /// Send P-DATA-TF PDU. Next Sta6.
    Dt1,
    /// Send P-DATA indication primitive. Next Sta6.
    Dt2,
    /// Send A-RELEASE-RQ PDU. Next Sta7.
    Ar1,
    /// Issue A-RELEASE indication primitive. Next Sta8.
    Ar2,
    /// Issue A-RELEASE confirmation primitive, and close transport connection. Next Sta1.
    Ar3,
    /// Issue A-RELEASE-RP PDU and start ARTIM timer. Next Sta13.
    Ar4,
    /// Stop ARTIM timer. Next Sta1.
    Ar5,
    /// Issue P-DATA indication. Next Sta7.
    Ar6,
    /// Issue P-DATA-TF PDU. Next Sta8.
    Ar7,
    /// Issue A-RELEASE indication (release collision): if association-requestor, next Sta9,
    /// if not, next Sta10.
    Ar8,
    /// Send A-RELEASE-RP PDU. Next Sta11.
    Ar9,
    /// Issue A-RELEASE confirmation primitive. Next Sta12.
    Ar10,
    /// Send A-ABORT PDU (service-user source) and start (or restart if already started)
    /// ARTIM timer. Next Sta13.
    Aa1,
    /// Stop ARTIM timer if running. Close transport connection. Next Sta1.
    Aa2,
    /// Issue A-ABORT (service-user initiated) or A-P-ABORT (service-provider initiated)
    /// indication and close transport connection. Next Sta1.
    Aa3,
    /// Issue A-P-ABORT indication primitive. Next Sta1.
    Aa4,
    /// Stop ARTIM timer. Next Sta1.
    Aa5,
    /// Ignore PDU. Next Sta13.
    Aa6,
    /// Send A-ABORT PDU. Next Sta13.
    Aa7,
    /// Send A-ABORT PDU (service-provider source), issue an A-P-ABORT indication, and start
    /// ARTIM timer. Next Sta13.
    Aa8,
}

impl Action {
    /// The standard's name, for example "AA-8".
    pub fn name(self) -> &'static str {
        match self {
            Action::Ae1 => "AE-1",
            Action::Ae2 => "AE-2",
            Action::Ae3 => "AE-3",
            Action::Ae4 => "AE-4",
            Action::Ae5 => "AE-5",
            Action::Ae6 => "AE-6",
            Action::Ae7 => "AE-7",
            Action::Ae8 => "AE-8",
            Action::Dt1 => "DT-1",
            Action::Dt2 => "DT-2",
            Action::Ar1 => "AR-1",
            Action::Ar2 => "AR-2",
            Action::Ar3 => "AR-3",
            Action::Ar4 => "AR-4",
            Action::Ar5 => "AR-5",
            Action::Ar6 => "AR-6",
            Action::Ar7 => "AR-7",
            Action::Ar8 => "AR-8",
            Action::Ar9 => "AR-9",
            Action::Ar10 => "AR-10",
            Action::Aa1 => "AA-1",
            Action::Aa2 => "AA-2",
            Action::Aa3 => "AA-3",
            Action::Aa4 => "AA-4",
            Action::Aa5 => "AA-5",
            Action::Aa6 => "AA-6",
            Action::Aa7 => "AA-7",
            Action::Aa8 => "AA-8",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Short names for the table cells.
const __: Option<Action> = None;
const AE1: Option<Action> = Some(Action::Ae1);
const AE2: Option<Action> = Some(Action::Ae2);
const AE3: Option<Action> = Some(Action::Ae3);
const AE4: Option<Action> = Some(Action::Ae4);
const AE5: Option<Action> = Some(Action::Ae5);
const AE6: Option<Action> = Some(Action::Ae6);
const AE7: Option<Action> = Some(Action::Ae7);
const AE8: Option<Action> = Some(Action::Ae8);
const DT1: Option<Action> = Some(Action::Dt1);
const DT2: Option<Action> = Some(Action::Dt2);
const AR1: Option<Action> = Some(Action::Ar1);
const AR2: Option<Action> = Some(Action::Ar2);
const AR3: Option<Action> = Some(Action::Ar3);
const AR4: Option<Action> = Some(Action::Ar4);
const AR5: Option<Action> = Some(Action::Ar5);
const AR6: Option<Action> = Some(Action::Ar6);
const AR7: Option<Action> = Some(Action::Ar7);
const AR8: Option<Action> = Some(Action::Ar8);
const AR9: Option<Action> = Some(Action::Ar9);
const AR10: Option<Action> = Some(Action::Ar10);
const AA1: Option<Action> = Some(Action::Aa1);
const AA2: Option<Action> = Some(Action::Aa2);
const AA3: Option<Action> = Some(Action::Aa3);
const AA4: Option<Action> = Some(Action::Aa4);
const AA5: Option<Action> = Some(Action::Aa5);
const AA6: Option<Action> = Some(Action::Aa6);
const AA7: Option<Action> = Some(Action::Aa7);
const AA8: Option<Action> = Some(Action::Aa8);

/// PS3.8 Table 9-10, "DICOM Upper Layer Protocol State Transition Table": one row per event,
/// one column per state, `__` for a blank cell.
#[rustfmt::skip]
pub const TABLE: [[Option<Action>; 13]; 19] = [
    //          Sta1  Sta2  Sta3  Sta4  Sta5  Sta6  Sta7  Sta8  Sta9  Sta10 Sta11 Sta12 Sta13
    /* Evt1  */ [AE1,  __,   __,   __,   __,   __,   __,   __,   __,   __,   __,   __,   __ ], // A-ASSOCIATE request (local user)
    /* Evt2  */ [__,   __,   __,   AE2,  __,   __,   __,   __,   __,   __,   __,   __,   __ ], // transport connect confirm
    /* Evt3  */ [__,   AA1,  AA8,  __,   AE3,  AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA6], // A-ASSOCIATE-AC PDU
    /* Evt4  */ [__,   AA1,  AA8,  __,   AE4,  AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA6], // A-ASSOCIATE-RJ PDU
    /* Evt5  */ [AE5,  __,   __,   __,   __,   __,   __,   __,   __,   __,   __,   __,   __ ], // transport connection indication
    /* Evt6  */ [__,   AE6,  AA8,  __,   AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA7], // A-ASSOCIATE-RQ PDU
    /* Evt7  */ [__,   __,   AE7,  __,   __,   __,   __,   __,   __,   __,   __,   __,   __ ], // A-ASSOCIATE response (accept)
    /* Evt8  */ [__,   __,   AE8,  __,   __,   __,   __,   __,   __,   __,   __,   __,   __ ], // A-ASSOCIATE response (reject)
    /* Evt9  */ [__,   __,   __,   __,   __,   DT1,  __,   AR7,  __,   __,   __,   __,   __ ], // P-DATA request
    /* Evt10 */ [__,   AA1,  AA8,  __,   AA8,  DT2,  AR6,  AA8,  AA8,  AA8,  AA8,  AA8,  AA6], // P-DATA-TF PDU
    /* Evt11 */ [__,   __,   __,   __,   __,   AR1,  __,   __,   __,   __,   __,   __,   __ ], // A-RELEASE request
    /* Evt12 */ [__,   AA1,  AA8,  __,   AA8,  AR2,  AR8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA6], // A-RELEASE-RQ PDU
    /* Evt13 */ [__,   AA1,  AA8,  __,   AA8,  AA8,  AR3,  AA8,  AA8,  AR10, AR3,  AA8,  AA6], // A-RELEASE-RP PDU
    /* Evt14 */ [__,   __,   __,   __,   __,   __,   __,   AR4,  AR9,  __,   __,   AR4,  __ ], // A-RELEASE response
    /* Evt15 */ [__,   __,   AA1,  AA2,  AA1,  AA1,  AA1,  AA1,  AA1,  AA1,  AA1,  AA1,  __ ], // A-ABORT request
    /* Evt16 */ [__,   AA2,  AA3,  __,   AA3,  AA3,  AA3,  AA3,  AA3,  AA3,  AA3,  AA3,  AA2], // A-ABORT PDU
    /* Evt17 */ [__,   AA5,  AA4,  AA4,  AA4,  AA4,  AA4,  AA4,  AA4,  AA4,  AA4,  AA4,  AR5], // transport closed
    /* Evt18 */ [__,   AA2,  __,   __,   __,   __,   __,   __,   __,   __,   __,   __,   AA2], // ARTIM timer expired
    /* Evt19 */ [__,   AA1,  AA8,  __,   AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA8,  AA7], // invalid PDU
];

/// The action Table 9-10 gives for `event` in `state`, or `None` for a blank cell.
pub fn transition(state: State, event: EventKind) -> Option<Action> {
    TABLE[event.index()][state.index()]
}

/// An event for which Table 9-10 has a blank cell in the current state. Nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{event} is not allowed in {state}")]
pub struct InvalidEvent {
    pub state: State,
    pub event: EventKind,
}

/// Which end of the association this machine is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Requestor,
    Acceptor,
}

/// One PS3.8 upper-layer protocol machine, for one transport connection.
#[derive(Debug, Clone)]
pub struct StateMachine {
    state: State,
    role: Role,
    artim_running: bool,
    /// The A-ASSOCIATE-RQ given with Evt1: sent by AE-2, kept for negotiation afterwards.
    associate_rq: Option<AssociateRq>,
}

impl StateMachine {
    /// A machine in Sta1 that will request an association (feed [`Event::AssociateRequest`]).
    pub fn new_requestor() -> Self {
        Self::with_role(Role::Requestor)
    }

    /// A machine in Sta1 that will accept one (feed [`Event::TransportIndication`] once the
    /// incoming connection is accepted: Sta2).
    pub fn new_acceptor() -> Self {
        Self::with_role(Role::Acceptor)
    }

    fn with_role(role: Role) -> Self {
        StateMachine {
            state: State::Sta1,
            role,
            artim_running: false,
            associate_rq: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the machine believes the ARTIM timer runs (true exactly in Sta2 and Sta13).
    pub fn artim_running(&self) -> bool {
        self.artim_running
    }

    /// The A-ASSOCIATE-RQ this machine sent (requestor side), for `interpret_associate_ac`.
    pub fn associate_rq(&self) -> Option<&AssociateRq> {
        self.associate_rq.as_ref()
    }

    /// An association exists and has not been released or aborted (Sta6 to Sta12).
    pub fn is_established(&self) -> bool {
        matches!(
            self.state,
            State::Sta6
                | State::Sta7
                | State::Sta8
                | State::Sta9
                | State::Sta10
                | State::Sta11
                | State::Sta12
        )
    }

    /// The local user may send P-DATA now: the Evt9 (P-DATA request) row of the table has
    /// an action in the current state.
    pub fn can_send_data(&self) -> bool {
        self.accepts(EventKind::Evt9)
    }

    /// The local user owes an A-RELEASE response now: the Evt14 (A-RELEASE response) row
    /// of the table has an action in the current state.
    pub fn awaiting_release_response(&self) -> bool {
        self.accepts(EventKind::Evt14)
    }

    /// Idle (Sta1): no connection and no association.
    pub fn is_closed(&self) -> bool {
        self.state == State::Sta1
    }

    /// Whether `event` has a non-blank cell in the current state.
    pub fn accepts(&self, event: EventKind) -> bool {
        transition(self.state, event).is_some()
    }

    /// Handle one event; a blank-cell event is logged and ignored (no outputs, no change).
    /// Never panics.
    pub fn handle(&mut self, event: Event) -> Vec<Output> {
        match self.try_handle(event) {
            Ok(outputs) => outputs,
            Err(err) => {
                log::debug!("upper layer: ignoring {err}");
                Vec::new()
            }
        }
    }

    /// Handle one event, or report that Table 9-10 has a blank cell for it (state unchanged).
    pub fn try_handle(&mut self, event: Event) -> Result<Vec<Output>, InvalidEvent> {
        let kind = event.kind();
        let invalid = InvalidEvent {
            state: self.state,
            event: kind,
        };
        let action = transition(self.state, kind).ok_or(invalid)?;
        let mut out = Vec::with_capacity(3);
        let next = self.execute(action, event, &mut out).ok_or(invalid)?;
        log::trace!(
            "upper layer: Sta{} + Evt{} -> {} -> Sta{}",
            self.state.number(),
            kind.number(),
            action,
            next.number()
        );
        self.state = next;
        Ok(out)
    }

    /// Run `action` for `event`, pushing outputs; returns the next state. `None` only if the
    /// event lacks the data the action needs, which the table never asks for (tested).
    fn execute(&mut self, action: Action, event: Event, out: &mut Vec<Output>) -> Option<State> {
        use Action::*;
        let next = match (action, event) {
            (Ae1, Event::AssociateRequest(rq)) => self.ae1(rq, out),
            (Ae2, _) => self.ae2(out)?,
            (Ae3, Event::AssociateAcReceived(ac)) => self.ae3(ac, out),
            (Ae4, Event::AssociateRjReceived(rj)) => self.ae4(rj, out),
            (Ae5, _) => self.ae5(out),
            (Ae6, Event::AssociateRqReceived(rq)) => self.ae6(rq, out),
            (Ae7, Event::AssociateAccept(ac)) => self.ae7(ac, out),
            (Ae8, Event::AssociateReject(rj)) => self.ae8(rj, out),
            (Dt1, Event::PDataRequest) => self.dt1(out),
            (Dt2, Event::PDataReceived) => self.dt2(out),
            (Ar1, _) => self.ar1(out),
            (Ar2, _) => self.ar2(out),
            (Ar3, _) => self.ar3(out),
            (Ar4, _) => self.ar4(out),
            (Ar5, _) => self.ar5(out),
            (Ar6, Event::PDataReceived) => self.ar6(out),
            (Ar7, Event::PDataRequest) => self.ar7(out),
            (Ar8, _) => self.ar8(out),
            (Ar9, _) => self.ar9(out),
            (Ar10, _) => self.ar10(out),
            (Aa1, event) => self.aa1(&event, out),
            (Aa2, _) => self.aa2(out),
            (Aa3, Event::AbortReceived(abort)) => self.aa3(abort, out),
            (Aa4, _) => self.aa4(out),
            (Aa5, _) => self.aa5(out),
            (Aa6, _) => self.aa6(),
            (Aa7, event) => self.aa7(event.abort_reason(), out),
            (Aa8, event) => self.aa8(event.abort_reason(), out),
            _ => return None,
        };
        Some(next)
    }

    fn start_artim(&mut self, out: &mut Vec<Output>) {
        self.artim_running = true;
        out.push(Output::StartArtim);
    }

    fn stop_artim(&mut self, out: &mut Vec<Output>) {
        if self.artim_running {
            self.artim_running = false;
            out.push(Output::StopArtim);
        }
    }

    fn send_abort(out: &mut Vec<Output>, source: u8, reason: u8) {
        out.push(Output::SendPdu(Pdu::Abort(Abort { source, reason })));
    }

    // ---- Association establishment (Table 9-6) ----

    fn ae1(&mut self, rq: AssociateRq, out: &mut Vec<Output>) -> State {
        self.role = Role::Requestor;
        self.associate_rq = Some(rq);
        out.push(Output::ConnectTransport);
        State::Sta4
    }

    fn ae2(&mut self, out: &mut Vec<Output>) -> Option<State> {
        let rq = self.associate_rq.clone()?;
        out.push(Output::SendPdu(Pdu::AssociateRq(rq)));
        Some(State::Sta5)
    }

    fn ae3(&mut self, ac: AssociateAc, out: &mut Vec<Output>) -> State {
        out.push(Output::Indication(Indication::AssociateAccepted(ac)));
        State::Sta6
    }

    fn ae4(&mut self, rj: AssociateRj, out: &mut Vec<Output>) -> State {
        out.push(Output::Indication(Indication::AssociateRejected(rj)));
        out.push(Output::CloseTransport);
        State::Sta1
    }

    fn ae5(&mut self, out: &mut Vec<Output>) -> State {
        self.role = Role::Acceptor;
        self.associate_rq = None;
        self.start_artim(out);
        State::Sta2
    }

    fn ae6(&mut self, rq: AssociateRq, out: &mut Vec<Output>) -> State {
        self.stop_artim(out);
        if rq.protocol_version & 0x0001 != 0 {
            out.push(Output::Indication(Indication::AssociateRequest(rq)));
            State::Sta3
        } else {
            // rejected-permanent, service-provider (ACSE), protocol-version-not-supported
            let rj = AssociateRj {
                result: 1,
                source: 2,
                reason: 2,
            };
            out.push(Output::SendPdu(Pdu::AssociateRj(rj)));
            self.start_artim(out);
            State::Sta13
        }
    }

    fn ae7(&mut self, ac: AssociateAc, out: &mut Vec<Output>) -> State {
        out.push(Output::SendPdu(Pdu::AssociateAc(ac)));
        State::Sta6
    }

    fn ae8(&mut self, rj: AssociateRj, out: &mut Vec<Output>) -> State {
        out.push(Output::SendPdu(Pdu::AssociateRj(rj)));
        self.start_artim(out);
        State::Sta13
    }

    // ---- Data transfer (Table 9-7) ----

    fn dt1(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::SendPData);
        State::Sta6
    }

    fn dt2(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::Indication(Indication::PData));
        State::Sta6
    }

    // ---- Association release (Table 9-8) ----

    fn ar1(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::SendPdu(Pdu::ReleaseRq));
        State::Sta7
    }

    fn ar2(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::Indication(Indication::ReleaseRequested));
        State::Sta8
    }

    fn ar3(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::Indication(Indication::ReleaseConfirmed));
        out.push(Output::CloseTransport);
        State::Sta1
    }

    fn ar4(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::SendPdu(Pdu::ReleaseRp));
        self.start_artim(out);
        State::Sta13
    }

    fn ar5(&mut self, out: &mut Vec<Output>) -> State {
        self.stop_artim(out);
        State::Sta1
    }

    fn ar6(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::Indication(Indication::PData));
        State::Sta7
    }

    fn ar7(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::SendPData);
        State::Sta8
    }

    fn ar8(&mut self, out: &mut Vec<Output>) -> State {
        let requestor = self.role == Role::Requestor;
        out.push(Output::Indication(Indication::ReleaseCollision {
            requestor,
        }));
        if requestor {
            State::Sta9
        } else {
            State::Sta10
        }
    }

    fn ar9(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::SendPdu(Pdu::ReleaseRp));
        State::Sta11
    }

    fn ar10(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::Indication(Indication::ReleaseConfirmed));
        State::Sta12
    }

    // ---- Association abort (Table 9-9) ----

    fn aa1(&mut self, event: &Event, out: &mut Vec<Output>) -> State {
        match event {
            Event::AbortRequest => Self::send_abort(out, ABORT_SOURCE_USER, 0),
            // A PDU in Sta2: no service-user exists yet; see "Readings" above.
            other => Self::send_abort(out, ABORT_SOURCE_PROVIDER, other.abort_reason()),
        }
        // "start (or restart if already started)"
        self.start_artim(out);
        State::Sta13
    }

    fn aa2(&mut self, out: &mut Vec<Output>) -> State {
        self.stop_artim(out);
        out.push(Output::CloseTransport);
        State::Sta1
    }

    fn aa3(&mut self, abort: Abort, out: &mut Vec<Output>) -> State {
        out.push(Output::Indication(Indication::Aborted {
            source: abort.source,
            reason: abort.reason,
            from_peer: true,
        }));
        out.push(Output::CloseTransport);
        State::Sta1
    }

    fn aa4(&mut self, out: &mut Vec<Output>) -> State {
        out.push(Output::Indication(Indication::TransportClosed));
        State::Sta1
    }

    fn aa5(&mut self, out: &mut Vec<Output>) -> State {
        self.stop_artim(out);
        State::Sta1
    }

    fn aa6(&mut self) -> State {
        State::Sta13
    }

    fn aa7(&mut self, reason: u8, out: &mut Vec<Output>) -> State {
        Self::send_abort(out, ABORT_SOURCE_PROVIDER, reason);
        State::Sta13
    }

    fn aa8(&mut self, reason: u8, out: &mut Vec<Output>) -> State {
        Self::send_abort(out, ABORT_SOURCE_PROVIDER, reason);
        out.push(Output::Indication(Indication::Aborted {
            source: ABORT_SOURCE_PROVIDER,
            reason,
            from_peer: false,
        }));
        self.start_artim(out);
        State::Sta13
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
