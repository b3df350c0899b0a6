//! `cargo +nightly fuzz run transcode` (from fuzz/); the body and its invariants are
//! `fastdimse::fuzzing::transcode`, which `rust/tests/fuzz.rs` also runs on stable.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fastdimse::fuzzing::transcode(data));
