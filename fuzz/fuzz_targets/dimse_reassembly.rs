//! `cargo +nightly fuzz run dimse_reassembly` (from fuzz/); the body and its invariants are
//! `fastdimse::fuzzing::dimse_reassembly`, which `rust/tests/fuzz.rs` also runs on stable.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fastdimse::fuzzing::dimse_reassembly(data));
