//! Bodies of the fuzz targets, kept in the library so that two drivers share them:
//! cargo-fuzz (`fuzz/fuzz_targets/*.rs`, one-line wrappers, nightly) and the stable
//! runner `rust/tests/fuzz.rs` (a committed seed corpus plus a seeded mutation loop,
//! run by `cargo test`). Each function takes arbitrary bytes, must never panic on any
//! input, and asserts the invariants of what it exercises: a panic here is a bug found.
//!
//! Not part of the API: the module is hidden from the documentation and may change.

use std::io::Cursor;

use crate::dataset::{self, Encoding, RawElement, UNDEFINED_LENGTH};
use crate::dimse::{Command, DimseEvent, Reassembler};
use crate::pdu::{self, Decoded, Pdv};
// The header scan (moves to dataset/scan.rs; this is the one line to change).
use crate::dataset::scan;

/// One fuzz target: its name (of its corpus folder and cargo-fuzz binary) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target by name, as the runner and the corpus folders know them.
pub const TARGETS: &[Target] = &[
    ("pdu_decode", pdu_decode),
    ("dimse_reassembly", dimse_reassembly),
    ("dataset_split", dataset_split),
    ("header_scan", header_scan),
    ("transcode", transcode),
    ("connection", connection),
    ("coerce", coerce),
];

/// The sans-I/O upper-layer connection (an acceptor that accepts any association) fed a
/// random byte stream in chunks the first bytes choose: never panics, whatever arrives in
/// whatever state (`ul::connection::fuzz_feed`).
pub fn connection(data: &[u8]) {
    crate::ul::connection::fuzz_feed(data)
}

/// The PDU decoder: never panics, never claims more bytes than it was given, asks for
/// more only when more could help, and any PDU it accepts re-encodes to bytes that
/// decode to the same PDU. The first byte picks the length limit (odd: small limits).
pub fn pdu_decode(data: &[u8]) {
    let (limit, buf) = match data.split_first() {
        Some((&l, rest)) if l & 1 == 1 => (u32::from(l) * 64, rest),
        Some((_, rest)) => (0, rest),
        None => (0, data),
    };
    match pdu::decode(buf, limit) {
        Ok(Decoded::Complete(p, used)) => {
            assert!(used <= buf.len(), "used {used} of {} bytes", buf.len());
            let (_, body) = pdu::peek_header(buf).expect("a complete PDU has a header");
            assert_eq!(used, body as usize + 6);
            let again = pdu::encode_to_vec(&p);
            match pdu::decode(&again, 0) {
                Ok(Decoded::Complete(p2, n2)) => {
                    assert_eq!(p2, p);
                    assert_eq!(n2, again.len());
                }
                other => panic!("re-encoded PDU does not decode: {other:?}"),
            }
        }
        Ok(Decoded::NeedMore(n)) => assert!(n > 0),
        Err(e) => {
            let _ = (e.to_string(), e.abort_reason());
        }
    }
}

/// Cut `data` into PDVs: each record is context ID (1 byte), message control header
/// (1 byte), length (2 bytes, little endian) and that many bytes (fewer at the end).
pub fn pdv_records(mut data: &[u8]) -> Vec<Pdv> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = usize::from(u16::from_le_bytes([data[2], data[3]]));
        let end = (4 + len).min(data.len());
        out.push(Pdv { context_id: data[0], control: data[1] & 0x03, data: data[4..end].to_vec() });
        data = &data[end..];
    }
    out
}

/// The inverse of [`pdv_records`] (for the seed corpus): PDVs longer than 65535 bytes
/// are cut into several records of the same kind.
pub fn encode_pdv_records(pdvs: &[Pdv]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pdvs {
        let chunks: Vec<&[u8]> = if p.data.is_empty() { vec![&[][..]] } else { p.data.chunks(0xFFFF).collect() };
        let n = chunks.len();
        for (i, c) in chunks.into_iter().enumerate() {
            let control = if i + 1 == n { p.control } else { p.control & !Pdv::LAST };
            out.push(p.context_id);
            out.push(control);
            out.extend_from_slice(&(c.len() as u16).to_le_bytes());
            out.extend_from_slice(c);
        }
    }
    out
}

/// The DIMSE reassembler fed random PDVs (see [`pdv_records`]), as the driver feeds it:
/// up to the first error, after which the association is aborted. Checked against an
/// independent model of the rules: a data fragment comes only after a command that
/// announced a data set, on its context, and hands out exactly the bytes given; a
/// command comes only between messages; a decoded command re-encodes to one that
/// decodes equal; the idle / in-data flags agree with the model.
pub fn dimse_reassembly(data: &[u8]) {
    let mut r = Reassembler::new();
    // model: Some(ctx) while a data set is expected; the context of a partial command
    let mut expecting: Option<u8> = None;
    let mut partial_cmd: Option<u8> = None;
    for pdv in pdv_records(data) {
        let is_cmd = pdv.control & Pdv::COMMAND != 0;
        let last = pdv.control & Pdv::LAST != 0;
        match r.push(&pdv) {
            Ok(Some(DimseEvent::Command { context_id, command })) => {
                assert!(is_cmd && last, "a command event from a non-final or data PDV");
                assert_eq!(context_id, pdv.context_id);
                assert!(expecting.is_none(), "a command while a data set was expected");
                assert!(partial_cmd.is_none_or(|c| c == context_id));
                partial_cmd = None;
                // Re-encoding normalizes (elements in ascending order, PS3.5 7.1): the
                // result decodes to the same command, and encodes to the same bytes again.
                let bytes = command.encode();
                let again = Command::decode(&bytes).expect("a re-encoded command decodes");
                assert_eq!(again.encode(), bytes, "command encoding is not a fixed point");
                let sorted = |c: &Command| {
                    let mut c = c.clone();
                    c.other.sort();
                    c
                };
                assert_eq!(sorted(&again), sorted(&command), "command does not round-trip");
                expecting = command.has_dataset.then_some(context_id);
            }
            Ok(Some(DimseEvent::Data { context_id, data: d, last: l })) => {
                assert!(!is_cmd);
                assert_eq!(expecting, Some(context_id), "data without an announced data set");
                assert_eq!(context_id, pdv.context_id);
                assert_eq!(d, &pdv.data[..], "data fragment not handed out as given");
                assert_eq!(l, last);
                if l {
                    expecting = None;
                }
            }
            Ok(None) => {
                assert!(is_cmd && !last, "only a non-final command fragment yields nothing");
                assert!(expecting.is_none());
                partial_cmd = Some(pdv.context_id);
            }
            Err(e) => {
                let _ = e.to_string();
                return;
            }
        }
        assert_eq!(r.in_data(), expecting.is_some());
        assert_eq!(r.is_idle(), expecting.is_none() && partial_cmd.is_none());
    }
}

/// The encoding picked by a selector byte.
fn encoding_of(b: u8) -> Encoding {
    match b % 3 {
        0 => Encoding::IMPLICIT_LE,
        1 => Encoding::EXPLICIT_LE,
        _ => Encoding::EXPLICIT_BE,
    }
}

fn check_elements(elements: &[RawElement], len: usize) {
    let mut prev_end = 0usize;
    for el in elements {
        assert!(el.header_offset >= prev_end, "elements overlap");
        assert!(el.header_offset < el.value_start, "header of no size");
        assert!(el.value_start <= el.value_end && el.value_end <= len, "value outside the data");
        if el.length != UNDEFINED_LENGTH {
            assert_eq!((el.value_end - el.value_start) as u64, u64::from(el.length));
            prev_end = el.value_end;
        } else {
            prev_end = el.value_end + 8; // the sequence delimiter
            assert!(prev_end <= len, "delimiter outside the data");
        }
    }
}

/// Dataset split: the first byte picks the encoding. Elements found lie inside the
/// data, in order, without overlap, each defined length exactly its value; the values
/// of sequences split into items whose elements lie inside the value; a first header
/// read agrees with the first element.
pub fn dataset_split(data: &[u8]) {
    let Some((&sel, buf)) = data.split_first() else { return };
    let enc = encoding_of(sel);
    if let Ok(h) = dataset::read_header(buf, 0, enc) {
        assert!(h.header_len == 8 || h.header_len == 12);
    }
    match dataset::split_elements(buf, enc) {
        Ok(elements) => {
            check_elements(&elements, buf.len());
            if let Some(first) = elements.first() {
                let h = dataset::read_header(buf, 0, enc).expect("the first element's header reads");
                assert_eq!((h.tag, h.length), (first.tag, first.length));
            }
            for el in &elements {
                let value = &buf[el.value_start..el.value_end];
                let is_seq = el.vr == Some(*b"SQ") || el.length == UNDEFINED_LENGTH;
                if !is_seq {
                    continue;
                }
                if let Ok(Some(items)) = dataset::split_items(value, enc) {
                    let mut prev = 0usize;
                    for it in &items {
                        assert!(it.offset >= prev && it.offset < value.len().max(1));
                        prev = it.offset;
                        for e in &it.elements {
                            assert!(e.value_start <= e.value_end && e.value_end <= value.len());
                            assert!(e.header_offset >= it.offset);
                        }
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// Tags the header scan is asked for (those the storage SCP and SCU read).
const SCAN_TAGS: [u32; 6] = [0x0008_0016, 0x0008_0018, 0x0010_0020, 0x0020_000D, 0x0020_000E, 0x0008_0005];

/// The header scan: the first byte picks the encoding. Only wanted tags come back,
/// each value short (at most 1 KiB), without trailing padding, and made of bytes
/// present in the input; the same scan over a reader that hands out one byte at a
/// time finds the same; the completeness check never panics and agrees with a
/// successful split on well-formed data of defined lengths.
pub fn header_scan(data: &[u8]) {
    let Some((&sel, buf)) = data.split_first() else { return };
    let enc = encoding_of(sel);
    let (found, passed, err) = scan::scan_raw_until(buf, enc, &SCAN_TAGS);
    for (tag, v) in &found {
        assert!(SCAN_TAGS.contains(tag), "unwanted tag {tag:08X}");
        assert!(v.len() <= 1024);
        assert!(!v.last().is_some_and(|b| *b == 0 || *b == b' '), "padding kept");
        if !v.is_empty() && buf.len() <= 1 << 16 {
            assert!(buf.windows(v.len()).any(|w| w == &v[..]), "value not in the input");
        }
    }
    if passed {
        assert!(err.is_none());
    }
    let (found2, passed2, err2) = scan::scan_raw_until(OneByte(buf), enc, &SCAN_TAGS);
    assert_eq!(found2, found, "scan depends on how the input is read");
    assert_eq!((passed2, err2.is_some()), (passed, err.is_some()));
    let mut cur = Cursor::new(buf);
    let complete = scan::check_complete(&mut cur, buf.len() as u64, enc, 0);
    if let Ok(elements) = dataset::split_elements(buf, enc) {
        let plain = elements.iter().all(|e| e.length != UNDEFINED_LENGTH && e.vr != Some(*b"SQ") && e.vr.is_some());
        if plain && !enc.implicit_vr {
            assert!(complete.is_ok(), "split accepts what check_complete refuses: {complete:?}");
        }
    }
}

/// A reader that hands out one byte per call.
struct OneByte<'a>(&'a [u8]);

impl std::io::Read for OneByte<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        match (self.0.split_first(), out.first_mut()) {
            (Some((&b, rest)), Some(o)) => {
                *o = b;
                self.0 = rest;
                Ok(1)
            }
            _ => Ok(0),
        }
    }
}

const SYNTAXES: [&str; 4] = [
    dataset::uids::IMPLICIT_VR_LE,
    dataset::uids::EXPLICIT_VR_LE,
    dataset::uids::EXPLICIT_VR_BE,
    dataset::uids::DEFLATED_EXPLICIT_VR_LE,
];

/// The transcoder: the first byte picks the source and target syntaxes (of the four
/// uncompressed ones) and a chunk size. The same syntax copies bytes through; the
/// result does not depend on how the input is cut into chunks; a successful result in
/// a non-deflated syntax splits into elements again.
pub fn transcode(data: &[u8]) {
    let Some((&sel, buf)) = data.split_first() else { return };
    let (from, to) = (SYNTAXES[usize::from(sel & 3)], SYNTAXES[usize::from((sel >> 2) & 3)]);
    let chunk = 1 + usize::from(sel >> 4) * 7;
    let whole = dataset::transcode(buf, from, to);
    let mut t = dataset::Transcoder::new(from, to).expect("the uncompressed syntaxes convert");
    let mut out = Vec::new();
    let mut pieces: Result<(), dataset::DatasetError> = Ok(());
    for c in buf.chunks(chunk) {
        pieces = t.feed(c, &mut out);
        if pieces.is_err() {
            break;
        }
    }
    if pieces.is_ok() {
        pieces = t.finish(&mut out);
    }
    match (&whole, &pieces) {
        (Ok(w), Ok(())) => assert_eq!(w, &out, "output depends on the chunking ({chunk} bytes)"),
        (Err(_), Err(_)) => {}
        (w, p) => panic!("whole {:?} but in chunks of {chunk}: {:?}", w.as_ref().map(|v| v.len()), p),
    }
    let Ok(w) = whole else { return };
    if from == to {
        assert_eq!(&w[..], buf, "same syntax must copy bytes through");
        return;
    }
    let plain = |uid: &str| uid != dataset::uids::DEFLATED_EXPLICIT_VR_LE;
    if plain(from) && plain(to) {
        let (fe, te) = (dataset::TransferSyntax::from_uid(from).encoding(), dataset::TransferSyntax::from_uid(to).encoding());
        if dataset::split_elements(buf, fe).is_ok() {
            if let Err(e) = dataset::split_elements(&w, te) {
                panic!("transcoded from a data set that splits, the result does not: {e}");
            }
        }
    }
}

/// Tag coercion's header rewrite (`dataset::coerce_header`): the first byte picks the
/// encoding (implicit VR LE, explicit VR LE, explicit VR BE); a fixed coercion (set
/// PatientID, insert IssuerOfPatientID, delete OtherPatientIDs) is applied to the rest,
/// read as a stream. It never reads past the data set nor counts wrong; when the input
/// splits into elements, so does the result (rewritten header part, then the rest), and
/// its first PatientID is the new one.
pub fn coerce(data: &[u8]) {
    let Some((&sel, buf)) = data.split_first() else { return };
    let enc = [Encoding::IMPLICIT_LE, Encoding::EXPLICIT_LE, Encoding::EXPLICIT_BE][usize::from(sel % 3)];
    let edits = vec![(0x0010_0020, Some("X123".to_string())), (0x0010_0021, Some("SITE".to_string())), (0x0010_1000, None)];
    let c = dataset::Coercion::new(edits).expect("a valid coercion");
    let mut cur = Cursor::new(buf);
    let Ok(h) = dataset::coerce_header(&mut cur, buf.len() as u64, enc, &c, 0) else { return };
    assert_eq!(cur.position(), h.consumed, "consumed counts what was read");
    let rest = buf.get(h.consumed as usize..).expect("never past the data set");
    let out = [&h.bytes[..], rest].concat();
    let Ok(before) = dataset::split_elements(buf, enc) else { return };
    let after = match dataset::split_elements(&out, enc) {
        Ok(a) => a,
        Err(e) => panic!("coerced from a data set that splits, the result does not: {e}"),
    };
    let pid = after.iter().find(|e| e.tag == 0x0010_0020).expect("PatientID is there");
    assert_eq!(out.get(pid.value_start..pid.value_start + 4), Some(&b"X123"[..]));
    if before.windows(2).all(|w| w[0].tag < w[1].tag) {
        assert!(!after.iter().any(|e| e.tag == 0x0010_1000), "OtherPatientIDs deleted");
    }
}
