//! The fuzz targets of `fastdimse::fuzzing` on stable Rust: every file of the seed
//! corpus (fuzz/corpus/<target>/, committed), then a seeded mutation loop (bit flips,
//! byte insert/delete/overwrite, interesting lengths, splices of corpus entries) for
//! FASTDIMSE_FUZZ_SECONDS per target (default 5; FASTDIMSE_FUZZ_SEED picks the seed).
//! An input that panics is written to target/fuzz-crashes/<target>-<hash> and fails
//! the test; copied into the corpus as found_<what> it stays a regression test (the
//! generator below keeps found_* files).
//!
//! `cargo test --release -p fastdimse --test fuzz -- --ignored write_seed_corpus`
//! regenerates the seed corpus from PDUs, command sets and data sets built here and from
//! the Part-10 files named in FASTDIMSE_SEED_FILES (':'-separated; for example a few
//! of pydicom's test files).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fastdimse::dataset;
use fastdimse::dimse::{self, field, Command};
use fastdimse::fuzzing::{self, TARGETS};
use fastdimse::pdu::{self, Abort, AssociateRj, Decoded, PData, Pdu, Pdv};
use fastdimse::ul::{self, AcceptorConfig, AcceptorDecision};

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("fuzz").join("corpus")
}

fn crash_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("fuzz-crashes")
}

fn read_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_root().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u32; 10] = [0, 1, 2, 4, 6, 0x7F, 0xFF, 0xFFFF, 0x7FFF_FFFF, 0xFFFF_FFFF];
const MAX_LEN: usize = 64 * 1024;

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next() as u8;
            }
            2 if len < MAX_LEN => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    input.insert(i, rng.next() as u8);
                }
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(16)).min(len - i);
                input.drain(i..i + n);
            }
            4 if len >= 4 => {
                // an interesting 16- or 32-bit value, either byte order, where lengths sit
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let wide = rng.below(2) == 0 && len >= 4;
                let bytes: Vec<u8> = match (wide, rng.below(2)) {
                    (true, 0) => v.to_le_bytes().to_vec(),
                    (true, _) => v.to_be_bytes().to_vec(),
                    (false, 0) => (v as u16).to_le_bytes().to_vec(),
                    (false, _) => (v as u16).to_be_bytes().to_vec(),
                };
                let i = rng.below(len - bytes.len() + 1);
                input[i..i + bytes.len()].copy_from_slice(&bytes);
            }
            5 if !corpus.is_empty() => {
                // splice: our head, another entry's tail
                let other = &corpus[rng.below(corpus.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(cut);
                input.extend_from_slice(&other[from..]);
                input.truncate(MAX_LEN);
            }
            6 if len > 1 => {
                // duplicate a block (repeated items, PDVs, elements)
                let i = rng.below(len);
                let n = (1 + rng.below(64)).min(len - i);
                let block = input[i..i + n].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, block);
                input.truncate(MAX_LEN);
            }
            7 if len > 0 => {
                input.truncate(rng.below(len));
            }
            _ => input.push(rng.next() as u8),
        }
    }
}

fn fuzz_seconds() -> f64 {
    std::env::var("FASTDIMSE_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0)
}

fn seed() -> u64 {
    std::env::var("FASTDIMSE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED_F00D)
}

fn run_one(name: &str, f: fn(&[u8]), input: &[u8]) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(input))) {
        let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
        let dir = crash_dir();
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{name}-{hash:016x}"));
        let _ = std::fs::write(&path, input);
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        panic!("{name}: panic on an input of {} bytes, saved as {}: {}", input.len(), path.display(), msg.unwrap_or_default());
    }
}

fn fuzz(name: &str) {
    let f = TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f).expect("a known target");
    let corpus = read_corpus(name);
    assert!(!corpus.is_empty(), "no seed corpus for {name}");
    for input in &corpus {
        run_one(name, f, input);
    }
    let budget = Duration::from_secs_f64(fuzz_seconds());
    let t0 = Instant::now();
    let mut rng = Rng(seed() ^ name.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b)) | 1);
    let mut execs = 0u64;
    let mut input = Vec::new();
    while t0.elapsed() < budget {
        // a fresh corpus entry now and then, else keep mutating the last input
        if execs % 64 == 0 {
            input = corpus[rng.below(corpus.len())].clone();
        }
        mutate(&mut rng, &mut input, &corpus);
        run_one(name, f, &input);
        execs += 1;
    }
    eprintln!(
        "fuzz {name}: {} seed(s), {execs} mutated execs in {:.1} s ({:.0}/s)",
        corpus.len(),
        t0.elapsed().as_secs_f64(),
        execs as f64 / t0.elapsed().as_secs_f64().max(1e-9)
    );
}

#[test]
fn every_target_has_a_test_here() {
    let here = ["pdu_decode", "dimse_reassembly", "dataset_split", "header_scan", "transcode", "connection", "coerce"];
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, here, "a new target needs its #[test] below and a corpus folder");
    for n in names {
        assert!(corpus_root().join(n).is_dir(), "fuzz/corpus/{n} missing");
        let wrapper = corpus_root().join("..").join("fuzz_targets").join(format!("{n}.rs"));
        assert!(wrapper.is_file(), "{} missing", wrapper.display());
    }
}

#[test]
fn fuzz_pdu_decode() {
    fuzz("pdu_decode");
}

#[test]
fn fuzz_dimse_reassembly() {
    fuzz("dimse_reassembly");
}

#[test]
fn fuzz_dataset_split() {
    fuzz("dataset_split");
}

#[test]
fn fuzz_header_scan() {
    fuzz("header_scan");
}

#[test]
fn fuzz_transcode() {
    fuzz("transcode");
}

#[test]
fn fuzz_connection() {
    fuzz("connection");
}

#[test]
fn fuzz_coerce() {
    fuzz("coerce");
}

#[test]
fn the_mutator_makes_the_pdu_decoder_see_every_outcome() {
    // Without this the loop could silently test nothing: mutated seeds must reach a
    // complete PDU, a "need more" and an error.
    let corpus = read_corpus("pdu_decode");
    let mut rng = Rng(7);
    let (mut complete, mut more, mut err) = (0, 0, 0);
    for i in 0..3000 {
        let mut input = corpus[i % corpus.len()].clone();
        if i % 3 != 0 {
            mutate(&mut rng, &mut input, &corpus);
        }
        let Some((&l, rest)) = input.split_first() else { continue };
        let limit = if l & 1 == 1 { u32::from(l) * 64 } else { 0 };
        match pdu::decode(rest, limit) {
            Ok(Decoded::Complete(..)) => complete += 1,
            Ok(Decoded::NeedMore(_)) => more += 1,
            Err(_) => err += 1,
        }
    }
    assert!(complete > 0 && more > 0 && err > 0, "complete {complete}, need more {more}, error {err}");
}

// --- the seed corpus ----------------------------------------------------------------------

fn requestor_config() -> ul::RequestorConfig {
    let mut cfg = common::requestor(
        "FUZZSCP",
        &[common::VERIFICATION, common::CT_IMAGE_STORAGE, common::STUDY_ROOT_FIND],
        &[common::EXPLICIT_LE, common::IMPLICIT_LE],
    );
    cfg.role_selections = vec![(common::CT_IMAGE_STORAGE.into(), true, true)];
    cfg.async_ops_window = Some((8, 1));
    cfg
}

fn seed_pdus() -> Vec<(String, Vec<u8>)> {
    let rq = ul::build_associate_rq(&requestor_config()).expect("a valid request");
    let mut acc = AcceptorConfig::new("FUZZSCP");
    acc.supported = vec![(common::VERIFICATION.into(), vec![]), (common::CT_IMAGE_STORAGE.into(), vec![])];
    acc.async_ops_window = Some((4, 1));
    let AcceptorDecision::Accept(ac, _) = ul::negotiate_acceptor(&rq, &acc) else { panic!("accepted") };
    let mut pdata = Vec::new();
    dimse::fragment(1, true, &Command::echo_rq(7).encode(), 0, &mut pdata);
    let mut store = Vec::new();
    let ds = common::instance(common::CT_IMAGE_STORAGE, "1.2.3.4.5", "P", "1.2.3", "1.2.3.4", 40).bytes;
    dimse::fragment(3, true, &store_rq(9, true).encode(), 0, &mut store);
    dimse::fragment(3, false, &ds, 128, &mut store);
    let two_pdvs = pdu::encode_to_vec(&Pdu::PData(PData {
        pdvs: vec![
            Pdv { context_id: 1, control: Pdv::COMMAND, data: vec![0; 10] },
            Pdv { context_id: 1, control: Pdv::COMMAND | Pdv::LAST, data: vec![1; 3] },
        ],
    }));
    vec![
        ("associate_rq".into(), pdu::encode_to_vec(&Pdu::AssociateRq(rq))),
        ("associate_ac".into(), pdu::encode_to_vec(&Pdu::AssociateAc(ac))),
        ("associate_rj".into(), pdu::encode_to_vec(&Pdu::AssociateRj(AssociateRj { result: 1, source: 1, reason: 7 }))),
        ("p_data_echo".into(), pdata),
        ("p_data_two_pdvs".into(), two_pdvs),
        ("p_data_store_first".into(), store[..store.len().min(400)].to_vec()),
        ("release_rq".into(), pdu::encode_to_vec(&Pdu::ReleaseRq)),
        ("release_rp".into(), pdu::encode_to_vec(&Pdu::ReleaseRp)),
        ("abort".into(), pdu::encode_to_vec(&Pdu::Abort(Abort { source: 2, reason: 6 }))),
    ]
}

fn store_rq(id: u16, data: bool) -> Command {
    let mut c = common::request(field::C_STORE_RQ, common::CT_IMAGE_STORAGE, id);
    c.affected_sop_instance_uid = Some("1.2.3.4.5".into());
    c.has_dataset = data;
    c
}

/// Data sets: built here (sequences of defined and undefined length, pixel data, a
/// private tag), and the data sets of the Part-10 files in FASTDIMSE_SEED_FILES, each
/// as (name, transfer syntax UID, bytes).
fn seed_datasets() -> Vec<(String, String, Vec<u8>)> {
    use common::DataSet;
    let item = DataSet::new().text(0x0008_1150, b"UI", common::CT_IMAGE_STORAGE).text(0x0008_1155, b"UI", "1.2.3.9");
    let nested = DataSet::new().sequence(0x0008_1115, std::slice::from_ref(&item), true);
    let built = DataSet::new()
        .text(0x0008_0005, b"CS", "ISO_IR 100")
        .text(0x0008_0016, b"UI", common::CT_IMAGE_STORAGE)
        .text(0x0008_0018, b"UI", "1.2.3.4.5.6")
        .sequence(0x0008_1110, &[item.clone(), nested], false)
        .text(0x0010_0010, b"PN", "Doe^Jane")
        .text(0x0010_0020, b"LO", "PID-7")
        .text(0x0009_0010, b"LO", "PRIVATE CREATOR")
        .text(0x0020_000D, b"UI", "1.2.3.4")
        .text(0x0020_000E, b"UI", "1.2.3.4.1")
        .us(0x0028_0100, 16)
        .us(0x0028_0103, 0)
        .ob(0x7FE0_0010, 64);
    let mut out = vec![("built_explicit_le".to_string(), common::EXPLICIT_LE.to_string(), built.bytes.clone())];
    for (name, ts) in [("built_implicit_le", common::IMPLICIT_LE), ("built_explicit_be", dataset::uids::EXPLICIT_VR_BE)] {
        out.push((name.into(), ts.into(), dataset::transcode(&built.bytes, common::EXPLICIT_LE, ts).expect("transcodes")));
    }
    for path in std::env::var("FASTDIMSE_SEED_FILES").unwrap_or_default().split(':').filter(|s| !s.is_empty()) {
        let file = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let Ok((meta, start)) = dataset::parse_part10_meta(&file) else { continue };
        let ts = dataset::TransferSyntax::from_uid(&meta.transfer_syntax);
        if !ts.is_uncompressed() || ts.is_deflated() {
            continue;
        }
        let stem = Path::new(path).file_stem().unwrap().to_string_lossy().replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        let mut data = file[start as usize..].to_vec();
        data.truncate(8 * 1024);
        out.push((stem, meta.transfer_syntax.clone(), data));
    }
    out
}

fn selector_of(ts: &str) -> u8 {
    match ts {
        common::IMPLICIT_LE => 0,
        common::EXPLICIT_LE => 1,
        _ => 2,
    }
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_root().join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand when the seeds should change"]
fn write_seed_corpus() {
    // Generated seeds are rewritten; inputs kept from fuzzing runs (found_*) stay.
    for t in TARGETS {
        for e in std::fs::read_dir(corpus_root().join(t.0)).into_iter().flatten().flatten() {
            if !e.file_name().to_string_lossy().starts_with("found_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // Whole requestor byte streams for the connection: the first 4 bytes are the chunk
    // sizes it is fed in (odd first byte: the splice path on).
    let pdus: std::collections::HashMap<String, Vec<u8>> = seed_pdus().into_iter().collect();
    let stream = |parts: &[&str]| -> Vec<u8> { parts.iter().flat_map(|p| pdus[*p].clone()).collect() };
    for (name, sizes, parts) in [
        ("echo_release", [255u8, 255, 255, 255], &["associate_rq", "p_data_echo", "release_rq"][..]),
        ("echo_bytewise", [1, 1, 1, 1], &["associate_rq", "p_data_echo", "release_rq"][..]),
        ("store_splice", [3, 7, 64, 255], &["associate_rq", "p_data_store_first", "p_data_two_pdvs", "abort"][..]),
        ("data_before_association", [16, 16, 16, 16], &["p_data_echo", "associate_rq"][..]),
    ] {
        write("connection", name, &[&sizes[..], &stream(parts)].concat());
    }
    for (name, bytes) in seed_pdus() {
        // even selector: no limit; odd: a small limit
        write("pdu_decode", &name, &[&[0u8][..], &bytes].concat());
        write("pdu_decode", &format!("{name}_limit"), &[&[0x41u8][..], &bytes].concat());
    }
    // PDVs of whole messages: an echo, a store with its data set in several fragments,
    // a command cut in two fragments, and a find with an identifier.
    let mut messages: Vec<(&str, Vec<Pdv>)> = Vec::new();
    let pdvs_of = |bytes: &[u8]| -> Vec<Pdv> {
        let mut rest = bytes;
        let mut out = Vec::new();
        while let Ok(Decoded::Complete(Pdu::PData(p), used)) = pdu::decode(rest, 0) {
            out.extend(p.pdvs);
            rest = &rest[used..];
        }
        out
    };
    let mut b = Vec::new();
    dimse::fragment(1, true, &Command::echo_rq(1).encode(), 0, &mut b);
    messages.push(("echo", pdvs_of(&b)));
    let ds = common::instance(common::CT_IMAGE_STORAGE, "1.2.3.4.5", "P", "1.2.3", "1.2.3.4", 300).bytes;
    let mut b = Vec::new();
    dimse::fragment(3, true, &store_rq(2, true).encode(), 64, &mut b);
    dimse::fragment(3, false, &ds, 128, &mut b);
    dimse::fragment(1, true, &Command::echo_rq(3).encode(), 0, &mut b);
    messages.push(("store_then_echo", pdvs_of(&b)));
    let mut find = store_rq(4, true);
    find.command_field = field::C_FIND_RQ;
    find.affected_sop_class_uid = Some(common::STUDY_ROOT_FIND.into());
    find.affected_sop_instance_uid = None;
    let ident = common::DataSet::new().text(0x0008_0052, b"CS", "STUDY").text(0x0010_0020, b"LO", "P*").bytes;
    let mut b = Vec::new();
    dimse::fragment(5, true, &find.encode(), 0, &mut b);
    dimse::fragment(5, false, &ident, 0, &mut b);
    let mut cancel = Command { command_field: field::C_CANCEL_RQ, message_id_being_responded_to: Some(4), ..Default::default() };
    cancel.has_dataset = false;
    dimse::fragment(5, true, &cancel.encode(), 0, &mut b);
    messages.push(("find_then_cancel", pdvs_of(&b)));
    let rsp = Command::response_to(&store_rq(2, true), 0xB007);
    let mut b = Vec::new();
    dimse::fragment(3, true, &rsp.encode(), 0, &mut b);
    messages.push(("store_response", pdvs_of(&b)));
    for (name, pdvs) in &messages {
        assert!(!pdvs.is_empty(), "{name}");
        write("dimse_reassembly", name, &fuzzing::encode_pdv_records(pdvs));
    }
    for (name, ts, data) in seed_datasets() {
        let sel = selector_of(&ts);
        write("dataset_split", &name, &[&[sel][..], &data].concat());
        write("header_scan", &name, &[&[sel][..], &data].concat());
        write("coerce", &name, &[&[sel][..], &data].concat());
        // transcode: low 2 bits source, next 2 target (0 implicit, 1 explicit LE,
        // 2 explicit BE, 3 deflated), high nibble the chunk size
        for to in 0..4u8 {
            if to != sel || name.starts_with("built_explicit_le") {
                let s = sel | (to << 2) | ((to * 5 + 3) << 4);
                write("transcode", &format!("{name}_to{to}"), &[&[s][..], &data].concat());
            }
        }
    }
    let deflated = dataset::transcode(&seed_datasets()[0].2, common::EXPLICIT_LE, dataset::uids::DEFLATED_EXPLICIT_VR_LE).unwrap();
    write("transcode", "built_deflated_to1", &[&[3u8 | (1 << 2) | (2 << 4)][..], &deflated].concat());
    for t in TARGETS {
        for input in read_corpus(t.0) {
            run_one(t.0, t.1, &input);
        }
    }
}
