//! `cargo +nightly fuzz run header_scan` (from fuzz/); the body and its invariants are
//! `fastdimse::fuzzing::header_scan`, which `rust/tests/fuzz.rs` also runs on stable.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fastdimse::fuzzing::header_scan(data));
