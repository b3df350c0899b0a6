//! `cargo +nightly fuzz run dataset_split` (from fuzz/); the body and its invariants are
//! `fastdimse::fuzzing::dataset_split`, which `rust/tests/fuzz.rs` also runs on stable.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fastdimse::fuzzing::dataset_split(data));
