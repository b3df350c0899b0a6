//! Read a few top-level element values from the start of a data set stream, without
//! reading the rest: what the storage SCP needs to name a file (PatientID, Study and
//! Series Instance UID) and what the SCU needs to plan (SOP Class/Instance UID of a
//! raw data set).
//!
//! Elements come in ascending tag order (PS3.5 7.1), so the scan stops at the first
//! top-level tag past the last one wanted; pixel data is never reached for the usual
//! tags. Values of other elements are skipped by reading them to nowhere, so the scan
//! works on any `Read` (a file, an inflating reader).

use std::collections::HashMap;
use std::io::{self, Read};

use log::debug;

use crate::dataset::{Encoding, TAG_ITEM, TAG_ITEM_DELIMITER, TAG_SEQUENCE_DELIMITER, UNDEFINED_LENGTH};

/// Largest value we keep for a wanted tag (these are short strings).
const MAX_VALUE: u32 = 1024;
/// Deepest nesting of undefined-length sequences and items we follow.
const MAX_DEPTH: usize = 64;

/// Why a scan stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("data set ends inside the element header at offset {0}")]
    Truncated(u64),
    #[error("nesting deeper than {MAX_DEPTH} at offset {0}")]
    TooDeep(u64),
    #[error("read error at offset {offset}: {source}")]
    Io { offset: u64, source: io::Error },
}

struct Counting<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Counting<R> {
    /// Fill `buf` completely; Ok(false) on a clean end of stream before the first byte.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, ScanError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => {
                    return if got == 0 { Ok(false) } else { Err(ScanError::Truncated(self.pos)) };
                }
                Ok(k) => {
                    got += k;
                    self.pos += k as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ScanError::Io { offset: self.pos, source: e }),
            }
        }
        Ok(true)
    }

    fn skip(&mut self, n: u64) -> Result<(), ScanError> {
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink())
            .map_err(|e| ScanError::Io { offset: self.pos, source: e })?;
        self.pos += copied;
        if copied < n {
            return Err(ScanError::Truncated(self.pos));
        }
        Ok(())
    }
}

/// Scan `r` (a data set in encoding `enc`) for the top-level `wanted` tags. Returns
/// the values found, as text with padding removed. Stops at the first top-level tag
/// greater than every wanted tag, or at the end of the stream. An error after some
/// values were found still returns them (the error is returned alongside).
pub fn scan_values<R: Read>(r: R, enc: Encoding, wanted: &[u32]) -> (HashMap<u32, String>, Option<ScanError>) {
    let (raw, err) = scan_raw(r, enc, wanted);
    let found = raw
        .into_iter()
        .map(|(t, v)| (t, String::from_utf8_lossy(&v).trim_matches(|ch: char| ch == '\0' || ch == ' ').to_string()))
        .collect();
    (found, err)
}

/// As [`scan_values`], but the values as raw bytes (character set not applied;
/// trailing padding removed).
pub fn scan_raw<R: Read>(r: R, enc: Encoding, wanted: &[u32]) -> (HashMap<u32, Vec<u8>>, Option<ScanError>) {
    let (found, _, err) = scan_raw_until(r, enc, wanted);
    (found, err)
}

/// As [`scan_raw`], also telling whether the scan got past the last wanted tag (so
/// that more data could not add anything): true when a later top-level tag was seen.
pub fn scan_raw_until<R: Read>(r: R, enc: Encoding, wanted: &[u32]) -> (HashMap<u32, Vec<u8>>, bool, Option<ScanError>) {
    let mut found = HashMap::new();
    let stop = wanted.iter().copied().max().unwrap_or(0);
    let mut c = Counting { inner: r, pos: 0 };
    match scan(&mut c, enc, wanted, stop, &mut found) {
        Ok(passed) => (found, passed, None),
        Err(e) => (found, false, Some(e)),
    }
}

fn scan<R: Read>(
    c: &mut Counting<R>,
    enc: Encoding,
    wanted: &[u32],
    stop: u32,
    found: &mut HashMap<u32, Vec<u8>>,
) -> Result<bool, ScanError> {
    // depth counts open undefined-length sequences and items.
    let mut depth = 0usize;
    let mut enc = enc;
    let mut first = true;
    let le = enc.little_endian;
    let u16_of = |b: [u8; 2]| if le { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) };
    let u32_of = |b: [u8; 4]| if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) };
    loop {
        let start = c.pos;
        let mut h = [0u8; 8];
        if !c.fill(&mut h)? {
            return Ok(false);
        }
        let tag = (u32::from(u16_of([h[0], h[1]])) << 16) | u32::from(u16_of([h[2], h[3]]));
        // Items and delimiters have no VR in any encoding.
        if tag == TAG_ITEM || tag == TAG_ITEM_DELIMITER || tag == TAG_SEQUENCE_DELIMITER {
            let len = u32_of([h[4], h[5], h[6], h[7]]);
            match tag {
                TAG_ITEM if len == UNDEFINED_LENGTH => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(ScanError::TooDeep(start));
                    }
                }
                TAG_ITEM => c.skip(u64::from(len))?,
                _ => depth = depth.saturating_sub(1),
            }
            continue;
        }
        if depth == 0 && tag > stop {
            return Ok(true);
        }
        // Some writers put implicit VR data under an explicit VR transfer syntax; like
        // other readers we follow what the first element shows.
        if first {
            first = false;
            if !enc.implicit_vr && !crate::dataset::is_vr([h[4], h[5]]) && le {
                debug!("data set is implicit VR although its transfer syntax says explicit");
                enc = Encoding::IMPLICIT_LE;
            }
        }
        let (vr, len) = if enc.implicit_vr {
            (None, u32_of([h[4], h[5], h[6], h[7]]))
        } else {
            let vr = [h[4], h[5]];
            if crate::dataset::has_long_length(vr) {
                let mut l = [0u8; 4];
                if !c.fill(&mut l)? {
                    return Err(ScanError::Truncated(c.pos));
                }
                (Some(vr), u32_of(l))
            } else {
                (Some(vr), u32::from(u16_of([h[6], h[7]])))
            }
        };
        if len == UNDEFINED_LENGTH {
            // An undefined-length sequence (SQ, or UN holding one): its items follow.
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(ScanError::TooDeep(start));
            }
            continue;
        }
        if depth == 0 && wanted.contains(&tag) && len <= MAX_VALUE && vr.map(|v| &v != b"SQ").unwrap_or(true) {
            let mut v = vec![0u8; len as usize];
            if len > 0 && !c.fill(&mut v)? {
                return Err(ScanError::Truncated(c.pos));
            }
            while v.last().is_some_and(|b| *b == 0 || *b == b' ') {
                v.pop();
            }
            found.insert(tag, v);
        } else {
            c.skip(u64::from(len))?;
        }
    }
}

/// Check, without reading values, that a data set of `len` bytes in encoding `enc`
/// is complete: every element's value, every item and every undefined-length
/// sequence end inside it. Values are skipped with seeks, so a large file costs a few
/// small reads. Returns a description of the first problem, naming its offset
/// (relative to the data set's start) and tag. A tail of zero bytes shorter than one
/// element header (padding some writers leave) is accepted.
pub fn check_complete<R: Read + std::io::Seek>(r: &mut R, len: u64, enc: Encoding, base: u64) -> Result<(), String> {
    use std::io::SeekFrom;
    let start = r.stream_position().map_err(|e| format!("cannot read the data set: {e}"))?;
    let le = enc.little_endian;
    let mut implicit = enc.implicit_vr;
    let u16_of = |b: [u8; 2]| if le { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) };
    let u32_of = |b: [u8; 4]| if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) };
    let mut pos = 0u64;
    let mut depth = 0usize;
    let mut first = true;
    let fmt = |t: u32| format!("({:04X},{:04X})", t >> 16, t & 0xFFFF);
    loop {
        if pos == len {
            break;
        }
        if len - pos < 8 {
            let mut tail = vec![0u8; (len - pos) as usize];
            r.read_exact(&mut tail).map_err(|e| format!("cannot read offset {}: {e}", base + pos))?;
            if depth == 0 && tail.iter().all(|b| *b == 0) {
                break; // zero padding shorter than a header, left by some writers
            }
            return Err(format!("truncated: the data set ends at offset {} inside an element header", base + len));
        }
        let mut h = [0u8; 8];
        r.read_exact(&mut h).map_err(|e| format!("cannot read offset {}: {e}", base + pos))?;
        let tag = (u32::from(u16_of([h[0], h[1]])) << 16) | u32::from(u16_of([h[2], h[3]]));
        let mut hlen = 8u64;
        let vlen: u32;
        if tag == TAG_ITEM || tag == TAG_ITEM_DELIMITER || tag == TAG_SEQUENCE_DELIMITER {
            vlen = u32_of([h[4], h[5], h[6], h[7]]);
            match tag {
                TAG_ITEM if vlen == UNDEFINED_LENGTH => {
                    depth += 1;
                    pos += 8;
                    continue;
                }
                TAG_ITEM => {}
                _ => {
                    if depth == 0 {
                        return Err(format!("a delimiter {} at offset {} closes nothing", fmt(tag), base + pos));
                    }
                    depth -= 1;
                    pos += 8;
                    continue;
                }
            }
        } else {
            if first && !implicit && !crate::dataset::is_vr([h[4], h[5]]) && le {
                implicit = true;
            }
            first = false;
            if implicit {
                vlen = u32_of([h[4], h[5], h[6], h[7]]);
            } else {
                let vr = [h[4], h[5]];
                if crate::dataset::has_long_length(vr) {
                    let mut l = [0u8; 4];
                    r.read_exact(&mut l).map_err(|_| format!("truncated: element {} at offset {} has no length", fmt(tag), base + pos))?;
                    hlen = 12;
                    vlen = u32_of(l);
                } else {
                    vlen = u32::from(u16_of([h[6], h[7]]));
                }
            }
            if vlen == UNDEFINED_LENGTH {
                depth += 1;
                if depth > 4096 {
                    return Err(format!("nesting deeper than 4096 at offset {}", base + pos));
                }
                pos += hlen;
                continue;
            }
        }
        let end = pos + hlen + u64::from(vlen);
        if end > len {
            return Err(format!(
                "truncated: element {} at offset {} needs {vlen} bytes, the data set ends at offset {}",
                fmt(tag),
                base + pos,
                base + len
            ));
        }
        r.seek(SeekFrom::Start(start + end)).map_err(|e| format!("cannot read offset {}: {e}", base + end))?;
        pos = end;
    }
    if depth > 0 {
        return Err(format!("truncated: {depth} sequence(s) or item(s) still open at the end (offset {})", base + len));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el_explicit(out: &mut Vec<u8>, tag: u32, vr: &[u8; 2], value: &[u8]) {
        out.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        out.extend_from_slice(&(tag as u16).to_le_bytes());
        out.extend_from_slice(vr);
        if crate::dataset::has_long_length(*vr) {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(value);
    }

    #[test]
    fn finds_values_past_an_undefined_length_sequence_and_stops_early() {
        let mut d = Vec::new();
        el_explicit(&mut d, 0x0008_0016, b"UI", b"1.2.3\0");
        // (0008,1115) SQ undefined length with one undefined-length item holding (0020,000E)
        d.extend_from_slice(&[0x08, 0, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        el_explicit(&mut d, 0x0020_000E, b"UI", b"9.9.9\0");
        d.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        el_explicit(&mut d, 0x0010_0020, b"LO", b"PAT 1 ");
        el_explicit(&mut d, 0x0020_000E, b"UI", b"1.2.3.4\0");
        el_explicit(&mut d, 0x7FE0_0010, b"OW", &[0u8; 4]);
        // garbage after the stop tag is never read
        let (found, err) = scan_values(&d[..], Encoding::EXPLICIT_LE, &[0x0010_0020, 0x0020_000E, 0x0008_0016]);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(found.get(&0x0010_0020).map(String::as_str), Some("PAT 1"));
        assert_eq!(found.get(&0x0020_000E).map(String::as_str), Some("1.2.3.4"));
        assert_eq!(found.get(&0x0008_0016).map(String::as_str), Some("1.2.3"));
    }

    #[test]
    fn truncated_and_hostile_input_is_an_error_not_a_panic() {
        let mut d = Vec::new();
        el_explicit(&mut d, 0x0010_0020, b"LO", b"ABCD");
        d.extend_from_slice(&[0x20, 0, 0x0D, 0, b'O', b'B', 0, 0, 0xFE, 0xFF, 0xFF, 0x7F]);
        let (found, err) = scan_values(&d[..], Encoding::EXPLICIT_LE, &[0x0010_0020, 0x0020_000E]);
        assert_eq!(found.get(&0x0010_0020).map(String::as_str), Some("ABCD"));
        assert!(matches!(err, Some(ScanError::Truncated(_))));
        for cut in 0..d.len() {
            let _ = scan_values(&d[..cut], Encoding::IMPLICIT_LE, &[0x0020_000E]);
            let _ = scan_values(&d[..cut], Encoding::EXPLICIT_BE, &[0x0020_000E]);
        }
        // endless nesting
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        let (_, err) = scan_values(&deep[..], Encoding::IMPLICIT_LE, &[0x0020_000E]);
        assert!(matches!(err, Some(ScanError::TooDeep(_))));
    }

    #[test]
    fn complete_data_sets_pass_and_every_truncation_fails() {
        let mut d = Vec::new();
        el_explicit(&mut d, 0x0008_0016, b"UI", b"1.2.3\0");
        d.extend_from_slice(&[0x08, 0, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        el_explicit(&mut d, 0x0020_000E, b"UI", b"9.9\0");
        d.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        el_explicit(&mut d, 0x7FE0_0010, b"OW", &[7u8; 64]);
        assert_eq!(check_complete(&mut std::io::Cursor::new(&d), d.len() as u64, Encoding::EXPLICIT_LE, 0), Ok(()));
        // A cut between two top-level elements leaves a complete (shorter) data set;
        // every other cut is a truncation.
        let sq_end = d.len() - (8 + 4 + 64);
        let boundaries = [14usize, sq_end];
        for cut in 1..d.len() {
            let r = check_complete(&mut std::io::Cursor::new(&d[..cut]), cut as u64, Encoding::EXPLICIT_LE, 0);
            assert_eq!(r.is_ok(), boundaries.contains(&cut), "cut at {cut}: {r:?}");
        }
        // zero padding shorter than a header is accepted
        let mut padded = d.clone();
        padded.extend_from_slice(&[0, 0, 0]);
        assert_eq!(check_complete(&mut std::io::Cursor::new(&padded), padded.len() as u64, Encoding::EXPLICIT_LE, 0), Ok(()));
        let msg = check_complete(&mut std::io::Cursor::new(&d[..d.len() - 10]), (d.len() - 10) as u64, Encoding::EXPLICIT_LE, 0).unwrap_err();
        assert!(msg.contains("(7FE0,0010)") && msg.contains("offset"), "{msg}");
    }
}
