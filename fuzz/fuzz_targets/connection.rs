//! Fuzz the upper-layer connection: `cargo +nightly fuzz run connection` from the repository
//! root. The bytes go to an acceptor `ul::Connection` that accepts any association, in
//! chunks chosen by the data (see `ul::connection::fuzz_feed`); it must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fastdimse::ul::connection::fuzz_feed(data);
});
