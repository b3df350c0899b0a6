//! The real driver on loopback, through the crate's public API only: a server on
//! 127.0.0.1 port 0 and `net::Association` (or a raw socket) as the peer. C-ECHO,
//! C-STORE of instances of several sizes into a folder (each file byte-checked),
//! C-FIND against the Q/R handler over a small in-memory index, and hostile byte
//! streams after each of which the server still serves the next association.
//! Every server is stopped by its guard when the test ends (or panics).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use fastdimse::dataset::{self, Encoding};
use fastdimse::dimse::{field, Command};
use fastdimse::net::{Association, MessageData, Received};
use fastdimse::pdu;

#[test]
fn echo_request_echo_release() {
    let srv = echo_server("ECHOSCP");
    let cfg = requestor("ECHOSCP", &[VERIFICATION], &[EXPLICIT_LE, IMPLICIT_LE]);
    let mut a = Association::request(&srv.addr_string(), &cfg, timeouts()).expect("association accepted");
    assert!(a.is_established());
    let neg = a.negotiated().clone();
    assert_eq!(neg.peer_ae_title.trim(), "ECHOSCP");
    let ctx = neg.find_context(VERIFICATION, None).expect("verification accepted");
    // The acceptor's preference decides among the transfer syntaxes offered.
    assert_eq!(ctx.transfer_syntax, IMPLICIT_LE, "the SCP's first choice among those offered");
    for _ in 0..3 {
        let id = a.next_message_id();
        a.send_message(ctx.id, &Command::echo_rq(id), None).expect("C-ECHO-RQ sent");
        match a.receive(Some(Duration::from_secs(10)), "C-ECHO-RSP").expect("a response") {
            Received::Message { context_id, command, data } => {
                assert_eq!(context_id, ctx.id);
                assert_eq!(command.command_field, field::C_ECHO_RSP);
                assert_eq!(command.message_id_being_responded_to, Some(id));
                assert_eq!(command.status, Some(0x0000));
                assert!(matches!(data, MessageData::None));
            }
            other => panic!("expected C-ECHO-RSP, got {other:?}"),
        }
    }
    a.release().expect("released");
    assert!(!a.is_established());
    // An abstract syntax the SCP does not support is rejected per context.
    let cfg = requestor("ECHOSCP", &[CT_IMAGE_STORAGE, VERIFICATION], &[IMPLICIT_LE]);
    let mut a = Association::request(&srv.addr_string(), &cfg, timeouts()).expect("association accepted");
    assert!(a.negotiated().find_context(CT_IMAGE_STORAGE, None).is_none());
    assert_eq!(a.negotiated().rejected.len(), 1);
    a.release().expect("released");
}

#[test]
fn store_instances_of_several_sizes_into_a_folder() {
    let dir = tempdir("store");
    let srv = store_server("STORESCP", &dir);
    // 0 bytes, small, just under/over the splice threshold (32 KiB data PDVs), and
    // several PDUs long: the last two go through more than one P-DATA-TF.
    let sizes = [0usize, 2, 1000, 32 * 1024 - 2, 100_000, 3 * 1024 * 1024];
    let study = "1.2.826.0.1.3680043.2.1143.1";
    let sent: Vec<(String, String, String, Vec<u8>)> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let class = if i % 2 == 0 { CT_IMAGE_STORAGE } else { SECONDARY_CAPTURE };
            let uid = format!("{study}.{}.{}", i + 1, n);
            let series = format!("{study}.{}", i % 2);
            let ds = instance(class, &uid, "PAT1", study, &series, n);
            (class.to_string(), uid, series, ds.bytes)
        })
        .collect();
    let mut cfg = requestor("STORESCP", &[CT_IMAGE_STORAGE, SECONDARY_CAPTURE], &[EXPLICIT_LE]);
    cfg.max_pdu_length = 16384;
    let mut a = Association::request(&srv.addr_string(), &cfg, timeouts()).expect("association accepted");
    for (class, uid, _, bytes) in &sent {
        let ctx = a.negotiated().find_context(class, Some(EXPLICIT_LE)).expect("storage context").id;
        let id = a.next_message_id();
        let mut rq = request(field::C_STORE_RQ, class, id);
        rq.affected_sop_instance_uid = Some(uid.clone());
        a.send_message(ctx, &rq, Some(bytes)).expect("C-STORE-RQ sent");
        match a.receive(Some(Duration::from_secs(20)), "C-STORE-RSP").expect("a response") {
            Received::Message { command, .. } => {
                assert_eq!(command.command_field, field::C_STORE_RSP);
                assert_eq!(command.message_id_being_responded_to, Some(id));
                assert_eq!(command.status, Some(0x0000), "{uid}: {:?}", command.error_comment);
                assert_eq!(command.affected_sop_instance_uid.as_deref(), Some(uid.as_str()));
            }
            other => panic!("expected C-STORE-RSP, got {other:?}"),
        }
    }
    a.release().expect("released");
    drop(srv);

    let files = walk(&dir);
    assert_eq!(files.len(), sent.len(), "one file per instance: {files:?}");
    for (class, uid, series, bytes) in &sent {
        let path = dir.join("PAT1").join(study).join(series).join(format!("{uid}.dcm"));
        let file = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (meta, start) = dataset::parse_part10_meta(&file).expect("a Part-10 file");
        assert_eq!(meta.sop_class_uid, *class);
        assert_eq!(meta.sop_instance_uid, *uid);
        assert_eq!(meta.transfer_syntax, EXPLICIT_LE);
        assert!(file[start as usize..] == bytes[..], "{uid}: the data set in the file differs from what was sent");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A Q/R back end over a list of studies (patient ID, study UID, study date), matching
/// PatientID by single value (or universal when empty) at STUDY level, as a minimal
/// provider of the `QrProvider` trait. The identifiers it answers are encoded here.
struct Studies {
    rows: Vec<(&'static str, &'static str, &'static str)>,
    asked: Mutex<Vec<String>>,
}

impl QrProvider for Studies {
    fn find(&self, rq: &QrRequest) -> Result<FindResults, Failure> {
        let enc = dataset::TransferSyntax::from_uid(rq.transfer_syntax).encoding();
        let elements = dataset::split_elements(rq.identifier, enc)
            .map_err(|e| Failure { status: 0xA900, comment: e.to_string() })?;
        let value = |tag: u32| {
            elements.iter().find(|e| e.tag == tag).map(|e| {
                String::from_utf8_lossy(&rq.identifier[e.value_start..e.value_end]).trim_matches([' ', '\0']).to_string()
            })
        };
        if value(0x0008_0052).as_deref() != Some("STUDY") {
            return Err(Failure { status: 0xA900, comment: "only STUDY level here".into() });
        }
        let pid = value(0x0010_0020).unwrap_or_default();
        self.asked.lock().unwrap().push(pid.clone());
        let out: Vec<Result<Vec<u8>, Failure>> = self
            .rows
            .iter()
            .filter(|(p, _, _)| pid.is_empty() || *p == pid)
            .map(|(p, study, date)| {
                let ds = DataSet::new()
                    .text(0x0008_0020, b"DA", date)
                    .text(0x0008_0052, b"CS", "STUDY")
                    .text(0x0010_0020, b"LO", p)
                    .text(0x0020_000D, b"UI", study);
                Ok(ds.bytes)
            })
            .collect();
        Ok(Box::new(out.into_iter()))
    }

    fn locate(&self, _rq: &QrRequest) -> Result<Retrieval, Failure> {
        Err(Failure { status: 0xC000, comment: "no retrieves here".into() })
    }

    fn destination(&self, _ae_title: &str) -> Option<String> {
        None
    }
}

fn find(a: &mut Association, ctx: u8, identifier: &[u8]) -> (Vec<Vec<u8>>, u16) {
    let id = a.next_message_id();
    let rq = request(field::C_FIND_RQ, STUDY_ROOT_FIND, id);
    a.send_message(ctx, &rq, Some(identifier)).expect("C-FIND-RQ sent");
    let mut answers = Vec::new();
    loop {
        match a.receive(Some(Duration::from_secs(10)), "C-FIND-RSP").expect("a response") {
            Received::Message { command, data, .. } => {
                assert_eq!(command.command_field, field::C_FIND_RSP);
                assert_eq!(command.message_id_being_responded_to, Some(id));
                let status = command.status.expect("a status");
                if status == 0xFF00 || status == 0xFF01 {
                    answers.push(data.into_bytes().expect("a pending response carries an identifier"));
                } else {
                    assert!(!command.has_dataset, "a final C-FIND-RSP carries no identifier");
                    return (answers, status);
                }
            }
            other => panic!("expected C-FIND-RSP, got {other:?}"),
        }
    }
}

fn study_uids(answers: &[Vec<u8>]) -> Vec<String> {
    let mut uids: Vec<String> = answers
        .iter()
        .map(|a| {
            let els = dataset::split_elements(a, Encoding::EXPLICIT_LE).expect("an identifier that splits");
            let e = els.iter().find(|e| e.tag == 0x0020_000D).expect("StudyInstanceUID returned");
            String::from_utf8_lossy(&a[e.value_start..e.value_end]).trim_end_matches('\0').to_string()
        })
        .collect();
    uids.sort();
    uids
}

#[test]
fn find_against_the_qr_handler() {
    let provider = Arc::new(Studies {
        rows: vec![
            ("P1", "1.2.3.1", "20240101"),
            ("P1", "1.2.3.2", "20240202"),
            ("P2", "1.2.3.3", "20240303"),
        ],
        asked: Mutex::new(Vec::new()),
    });
    let srv = qr_server("QRSCP", provider.clone());
    let cfg = requestor("QRSCP", &[STUDY_ROOT_FIND], &[EXPLICIT_LE]);
    let mut a = Association::request(&srv.addr_string(), &cfg, timeouts()).expect("association accepted");
    let ctx = a.negotiated().find_context(STUDY_ROOT_FIND, None).expect("find accepted").id;
    let query = |pid: &str| {
        DataSet::new()
            .text(0x0008_0052, b"CS", "STUDY")
            .text(0x0010_0020, b"LO", pid)
            .text(0x0020_000D, b"UI", "")
            .bytes
    };
    let (answers, status) = find(&mut a, ctx, &query("P1"));
    assert_eq!(status, 0x0000);
    assert_eq!(study_uids(&answers), ["1.2.3.1", "1.2.3.2"]);
    let (answers, status) = find(&mut a, ctx, &query(""));
    assert_eq!(status, 0x0000);
    assert_eq!(study_uids(&answers), ["1.2.3.1", "1.2.3.2", "1.2.3.3"]);
    let (answers, status) = find(&mut a, ctx, &query("NOBODY"));
    assert_eq!((answers.len(), status), (0, 0x0000));
    // A refusal of the back end is the final status, with nothing pending before it.
    let series = DataSet::new().text(0x0008_0052, b"CS", "SERIES").bytes;
    let (answers, status) = find(&mut a, ctx, &series);
    assert_eq!((answers.len(), status), (0, 0xA900));
    a.release().expect("released");
    assert_eq!(*provider.asked.lock().unwrap(), ["P1", "", "NOBODY"]);
}

/// Send `bytes` on a fresh connection (then, if `close_write`, end our side) and read
/// what the server answers until it closes. Returns the bytes received. Fails if the
/// server keeps the connection open past `limit`.
fn hostile(srv: &Running, bytes: &[u8], close_write: bool, limit: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(srv.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // The server may close before everything is written: that is an answer too.
    let _ = s.write_all(bytes);
    if close_write {
        let _ = s.shutdown(Shutdown::Write);
    }
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return got, // reset by the server
        }
        assert!(t0.elapsed() < limit, "the server kept the connection open for {limit:?}; got {got:?}");
    }
}

/// What a hostile peer may get back: nothing (closed), or one A-ABORT PDU
/// (type 7, length 4), or (for a request it could decode) one A-ASSOCIATE-RJ.
fn assert_abort_or_close(got: &[u8], what: &str) {
    if got.is_empty() {
        return;
    }
    match pdu::decode(got, 0) {
        Ok(pdu::Decoded::Complete(pdu::Pdu::Abort(_), used)) => assert_eq!(used, got.len(), "{what}: more after A-ABORT"),
        other => panic!("{what}: expected A-ABORT or a close, got {other:?} ({got:02x?})"),
    }
}

fn associate_rq_bytes() -> Vec<u8> {
    let cfg = requestor("HOSTSCP", &[VERIFICATION], &[IMPLICIT_LE]);
    let rq = fastdimse::ul::build_associate_rq(&cfg).expect("a valid request");
    pdu::encode_to_vec(&pdu::Pdu::AssociateRq(rq))
}

#[test]
fn hostile_byte_streams_end_the_connection_and_the_server_keeps_serving() {
    let srv = echo_server("HOSTSCP");
    let limit = Duration::from_secs(15); // ARTIM (the ACSE timeout, 5 s) plus slack
    let rq = associate_rq_bytes();
    let mut pdata_before = Vec::new();
    fastdimse::dimse::fragment(1, true, &Command::echo_rq(1).encode(), 0, &mut pdata_before);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("garbage", (0..512u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 0x80).collect(), false),
        ("unknown PDU type", vec![0x55, 0, 0, 0, 0, 4, 1, 2, 3, 4], false),
        ("A-ASSOCIATE-RQ claiming 4 GiB", vec![0x01, 0, 0xFF, 0xFF, 0xFF, 0xF0, 0, 1, 0, 0], false),
        ("P-DATA claiming 4 GiB", vec![0x04, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0], false),
        ("truncated A-ASSOCIATE-RQ, then end of stream", rq[..rq.len() / 2].to_vec(), true),
        ("truncated PDU header, then end of stream", rq[..3].to_vec(), true),
        ("P-DATA before association", pdata_before, false),
        ("A-RELEASE-RQ before association", vec![0x05, 0, 0, 0, 0, 4, 0, 0, 0, 0], false),
    ];
    for (what, bytes, close_write) in cases {
        let got = hostile(&srv, &bytes, close_write, limit);
        assert_abort_or_close(&got, what);
        eprintln!("{what}: {}", if got.is_empty() { "closed".to_string() } else { format!("A-ABORT {:02x?}", &got[6..]) });
        echo_once(&srv, "HOSTSCP");
    }
    // Inside an association: a PDV whose item length runs past its PDU.
    let mut s = TcpStream::connect(srv.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&rq).unwrap();
    let mut head = [0u8; 6];
    s.read_exact(&mut head).expect("an answer to A-ASSOCIATE-RQ");
    assert_eq!(head[0], 0x02, "A-ASSOCIATE-AC");
    let body_len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
    let mut body = vec![0u8; body_len];
    s.read_exact(&mut body).expect("the AC body");
    let bad_pdv = [0x04, 0, 0, 0, 0, 8, 0, 0, 0x10, 0, 1, 0x03, 0, 0];
    s.write_all(&bad_pdv).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert_abort_or_close(&rest, "PDV longer than its PDU");
    echo_once(&srv, "HOSTSCP");
    // Every connection ends: the server's count of live associations comes back to 0
    // (each thread removes its own as it finishes; polled).
    let t0 = Instant::now();
    while srv.server.active_associations() != 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "{} association(s) still open", srv.server.active_associations());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(srv.server.is_running());
}

#[test]
fn many_associations_one_after_another() {
    let srv = echo_server("ECHOSCP");
    for _ in 0..20 {
        echo_once(&srv, "ECHOSCP");
    }
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("fastdimse-it-{tag}-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
