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
mod tests {
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
}
