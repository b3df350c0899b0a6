//! Fuzz the PDU decoder: `cargo +nightly fuzz run pdu_decode` from the repository root.
//!
//! Checks that `decode` never panics, never claims more bytes than it was given, asks for
//! more only when more could help, and that any PDU it accepts re-encodes to bytes that
//! decode to the same PDU.
#![no_main]

use fastdimse::pdu::{decode, encode_to_vec, peek_header, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a limit, so that both "no limit" and small limits are exercised.
    let (limit, buf) = match data.split_first() {
        Some((&l, rest)) if l & 1 == 1 => (u32::from(l) * 64, rest),
        Some((_, rest)) => (0, rest),
        None => (0, data),
    };
    match decode(buf, limit) {
        Ok(Decoded::Complete(pdu, used)) => {
            assert!(used <= buf.len());
            let (_, body) = peek_header(buf).expect("complete PDU has a header");
            assert_eq!(used, body as usize + 6);
            let again = encode_to_vec(&pdu);
            match decode(&again, 0) {
                Ok(Decoded::Complete(p2, n2)) => {
                    assert_eq!(p2, pdu);
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
});
