//! `cargo +nightly fuzz run coerce` (from fuzz/); the body and its invariants are
//! `fastdimse::fuzzing::coerce`, which `rust/tests/fuzz.rs` also runs on stable.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fastdimse::fuzzing::coerce(data));
