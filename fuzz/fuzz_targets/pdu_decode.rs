//! `cargo +nightly fuzz run pdu_decode` (from fuzz/); the body and its invariants are
//! `fastdimse::fuzzing::pdu_decode`, which `rust/tests/fuzz.rs` also runs on stable.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fastdimse::fuzzing::pdu_decode(data));
