//! Shared by the integration tests: servers on 127.0.0.1 port 0 (stopped by their
//! guard, also on panic), requestor configurations, and data sets built by hand
//! (PS3.5 7.1, explicit VR little endian).
//!
//! Every use of the service modules (store, qr) is in this file, so that a move of
//! those modules changes these imports only.
#![allow(dead_code)] // each test file uses its part

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fastdimse::service::server::{Server, ServerConfig, ServiceHandler};
use fastdimse::net::{Association, Timeouts};
use fastdimse::service::echo::EchoOnlyHandler;
use fastdimse::ul::{AcceptorConfig, RequestorConfig};

#[allow(unused_imports)] // the fuzz runner uses none of them
pub use fastdimse::service::qr::{Failure, FindResults, QrHandler, QrProvider, QrRequest, Retrieval};
pub use fastdimse::service::store::{StorageConfig, StorageHandler};

pub use fastdimse::dimse::{EXPLICIT_VR_LE as EXPLICIT_LE, IMPLICIT_VR_LE as IMPLICIT_LE, VERIFICATION_SOP_CLASS as VERIFICATION};
pub use fastdimse::service::qr::sop::STUDY_ROOT_FIND;
/// Storage SOP classes (PS3.4 B.5), which the crate does not name.
pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";

/// Short timeouts, so that a test that goes wrong fails in seconds, not minutes.
pub fn timeouts() -> Timeouts {
    Timeouts {
        connect: Some(Duration::from_secs(5)),
        acse: Some(Duration::from_secs(5)),
        dimse: Some(Duration::from_secs(20)),
        network: Some(Duration::from_secs(20)),
    }
}

/// A running server; dropping the guard stops it (and waits for its threads).
pub struct Running {
    pub server: Server,
}

impl Running {
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn addr_string(&self) -> String {
        self.addr().to_string()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.stop();
    }
}

fn start(acceptor: AcceptorConfig, handler: Arc<dyn ServiceHandler>) -> Running {
    let config = ServerConfig { acceptor, timeouts: timeouts(), max_associations: 8, tls: None };
    let server = Server::start("127.0.0.1:0", config, handler).expect("the server starts on 127.0.0.1:0");
    assert_ne!(server.local_addr().port(), 0);
    Running { server }
}

/// Verification only.
pub fn echo_server(ae: &str) -> Running {
    let mut acc = AcceptorConfig::new(ae);
    acc.supported = vec![(VERIFICATION.into(), vec![IMPLICIT_LE.into(), EXPLICIT_LE.into()])];
    start(acc, Arc::new(EchoOnlyHandler))
}

/// A storage SCP writing into `dir` with the default layout; accepts any SOP class.
pub fn store_server(ae: &str, dir: &Path) -> Running {
    let handler = StorageHandler::new(StorageConfig::new(dir), None).expect("the storage folder is usable");
    let mut acc = AcceptorConfig::new(ae);
    acc.supported = vec![(VERIFICATION.into(), vec![])];
    acc.accept_any_abstract = true;
    acc.default_transfer_syntaxes = vec![EXPLICIT_LE.into(), IMPLICIT_LE.into()];
    start(acc, Arc::new(handler))
}

/// A Q/R SCP (no storage) answering from `provider`.
pub fn qr_server(ae: &str, provider: Arc<dyn QrProvider>) -> Running {
    let handler = QrHandler {
        storage: None,
        provider: Some(provider),
        ae_title: ae.into(),
        timeouts: timeouts(),
        max_pdu_length: 16384,
    };
    let mut acc = AcceptorConfig::new(ae);
    acc.supported = vec![
        (VERIFICATION.into(), vec![]),
        (STUDY_ROOT_FIND.into(), vec![EXPLICIT_LE.into(), IMPLICIT_LE.into()]),
    ];
    acc.synchronous_abstract_syntaxes = vec![STUDY_ROOT_FIND.into()];
    start(acc, Arc::new(handler))
}

/// A requestor proposing each abstract syntax with `transfer_syntaxes`.
pub fn requestor(called: &str, abstract_syntaxes: &[&str], transfer_syntaxes: &[&str]) -> RequestorConfig {
    let mut cfg = RequestorConfig::new("RUSTSCU", called);
    cfg.contexts = abstract_syntaxes
        .iter()
        .map(|a| (a.to_string(), transfer_syntaxes.iter().map(|t| t.to_string()).collect()))
        .collect();
    cfg
}

/// A request of `command_field` on `sop_class` with a data set, medium priority (the
/// caller sets the affected SOP instance where the service has one).
pub fn request(command_field: u16, sop_class: &str, message_id: u16) -> fastdimse::dimse::Command {
    fastdimse::dimse::Command {
        command_field,
        affected_sop_class_uid: Some(sop_class.to_string()),
        message_id: Some(message_id),
        priority: Some(0),
        has_dataset: true,
        ..Default::default()
    }
}

/// Associate with `running` (echo only) and check one C-ECHO; release.
pub fn echo_once(running: &Running, called: &str) {
    let cfg = requestor(called, &[VERIFICATION], &[IMPLICIT_LE]);
    let mut a = Association::request(&running.addr_string(), &cfg, timeouts()).expect("association accepted");
    let ctx = a.negotiated().find_context(VERIFICATION, None).expect("verification accepted").id;
    let id = a.next_message_id();
    a.send_message(ctx, &fastdimse::dimse::Command::echo_rq(id), None).expect("C-ECHO-RQ sent");
    match a.receive(Some(Duration::from_secs(10)), "C-ECHO-RSP").expect("a response") {
        fastdimse::net::Received::Message { command, .. } => {
            assert_eq!(command.command_field, fastdimse::dimse::field::C_ECHO_RSP);
            assert_eq!(command.message_id_being_responded_to, Some(id));
            assert_eq!(command.status, Some(0x0000));
        }
        other => panic!("expected C-ECHO-RSP, got {other:?}"),
    }
    a.release().expect("released");
}

/// A data set in explicit VR little endian, built element by element (tags ascending).
#[derive(Default, Clone)]
pub struct DataSet {
    pub bytes: Vec<u8>,
}

impl DataSet {
    pub fn new() -> DataSet {
        DataSet::default()
    }

    fn header(&mut self, tag: u32, vr: &[u8; 2], len: u32) {
        self.bytes.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        self.bytes.extend_from_slice(&((tag & 0xFFFF) as u16).to_le_bytes());
        self.bytes.extend_from_slice(vr);
        if matches!(vr, b"OB" | b"OW" | b"SQ" | b"UN" | b"UT" | b"UC" | b"UR" | b"OF" | b"OD" | b"OL" | b"OV") {
            self.bytes.extend_from_slice(&[0, 0]);
            self.bytes.extend_from_slice(&len.to_le_bytes());
        } else {
            self.bytes.extend_from_slice(&(len as u16).to_le_bytes());
        }
    }

    /// A text element, padded to even length (UI with NUL, others with a space).
    pub fn text(mut self, tag: u32, vr: &[u8; 2], value: &str) -> DataSet {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(if vr == b"UI" { 0 } else { b' ' });
        }
        self.header(tag, vr, v.len() as u32);
        self.bytes.extend_from_slice(&v);
        self
    }

    pub fn us(mut self, tag: u32, value: u16) -> DataSet {
        self.header(tag, b"US", 2);
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// An OB element of `len` bytes (even), filled with a pattern.
    pub fn ob(mut self, tag: u32, len: usize) -> DataSet {
        self.header(tag, b"OB", len as u32);
        self.bytes.extend((0..len).map(|i| (i * 31 % 251) as u8));
        self
    }

    /// An undefined-length sequence of items (each an explicit VR LE data set), with
    /// undefined-length items when `undefined_items`.
    pub fn sequence(mut self, tag: u32, items: &[DataSet], undefined_items: bool) -> DataSet {
        self.header(tag, b"SQ", 0xFFFF_FFFF);
        for it in items {
            self.bytes.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            if undefined_items {
                self.bytes.extend_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
                self.bytes.extend_from_slice(&it.bytes);
                self.bytes.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
            } else {
                self.bytes.extend_from_slice(&(it.bytes.len() as u32).to_le_bytes());
                self.bytes.extend_from_slice(&it.bytes);
            }
        }
        self.bytes.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        self
    }
}

/// A storable instance: SOP class and instance, patient, study and series, and
/// `pixel_bytes` of OB pixel data.
pub fn instance(sop_class: &str, sop_uid: &str, patient: &str, study: &str, series: &str, pixel_bytes: usize) -> DataSet {
    DataSet::new()
        .text(0x0008_0016, b"UI", sop_class)
        .text(0x0008_0018, b"UI", sop_uid)
        .text(0x0008_0060, b"CS", "OT")
        .text(0x0010_0010, b"PN", "Test^Patient")
        .text(0x0010_0020, b"LO", patient)
        .text(0x0020_000D, b"UI", study)
        .text(0x0020_000E, b"UI", series)
        .us(0x0028_0100, 8)
        .ob(0x7FE0_0010, pixel_bytes)
}
