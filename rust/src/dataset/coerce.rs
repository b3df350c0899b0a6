//! Tag coercion on the streaming path: [`Coercion`] holds the top-level elements to set
//! or delete; [`coerce_header`] reads a data set's header part from a stream (every
//! element up to the end of the last group coerced, never past Pixel Data), rewrites
//! it and says how many input bytes it took. The caller sends the rewritten bytes, then
//! the rest of the stream unchanged (pixel data, native or encapsulated, is never read
//! into memory here).
//!
//! Rules: a coerced element is replaced in place or inserted in tag order; its value is
//! padded to even length (NUL for UI, a space for the other text VRs) or, for the binary
//! numbers (US, SS, UL, SL, FL, FD), encoded from the decimal text in the data set's byte
//! order; `None` deletes it. Group length elements (gggg,0000) of a group that changed
//! are recomputed (dropped when not a 4-byte value); the other elements' bytes are kept
//! as they are (odd lengths too). Deflated data sets cannot be rewritten this way:
//! callers refuse them before calling.

use std::io::{ErrorKind, Read};

use super::dictionary::{lookup, DictVr};
use super::header::{parse_header, tag_of, Header, Need};
use super::write::pad_byte;
use super::{fmt_tag, has_long_length, DatasetError, Encoding, TAG_ITEM, TAG_ITEM_DELIMITER, TAG_PIXEL_DATA, TAG_SEQUENCE_DELIMITER};

/// Most bytes of header part (the elements before the cut) held in memory.
pub const MAX_HEADER_PART: u64 = 64 << 20;

/// Deepest nesting of undefined-length sequences and items walked.
const MAX_DEPTH: usize = 256;

const SPECIFIC_CHARACTER_SET: u32 = 0x0008_0005;

/// The elements to coerce, sorted by tag: (tag, new value as text, or None to delete).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coercion {
    edits: Vec<(u32, Option<String>)>,
}

/// VRs whose value is set from text as it is.
fn is_text_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"AE" | b"AS" | b"CS" | b"DA" | b"DS" | b"DT" | b"IS" | b"LO" | b"LT" | b"PN" | b"SH" | b"ST" | b"TM" | b"UC" | b"UI"
            | b"UR" | b"UT"
    )
}

/// VRs whose value is set from decimal text, one number per backslash-separated part.
fn is_number_vr(vr: [u8; 2]) -> bool {
    matches!(&vr, b"US" | b"SS" | b"UL" | b"SL" | b"FL" | b"FD")
}

fn vr_str(vr: [u8; 2]) -> String {
    String::from_utf8_lossy(&vr).into_owned()
}

/// The dictionary VR used for a coerced element: exact, or US for "US or SS".
fn dictionary_vr(tag: u32) -> Option<[u8; 2]> {
    match lookup(tag)? {
        DictVr::Exact(vr) => Some(vr),
        DictVr::UsOrSs => Some(*b"US"),
        _ => None,
    }
}

fn unsupported(detail: String) -> DatasetError {
    DatasetError::Unsupported { detail }
}

impl Coercion {
    /// Check and sort the edits. Refused: tags outside the data set proper (groups 0000
    /// to 0007, items, Pixel Data and what follows it), group lengths, tags not in the
    /// data dictionary (the VR would be a guess), VRs that have no text form, a tag given
    /// twice.
    pub fn new(edits: Vec<(u32, Option<String>)>) -> Result<Coercion, DatasetError> {
        let mut edits = edits;
        edits.sort_by_key(|e| e.0);
        for w in edits.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(unsupported(format!("cannot coerce {} twice", fmt_tag(w[0].0))));
            }
        }
        for (tag, value) in &edits {
            let t = fmt_tag(*tag);
            if *tag >> 16 < 0x0008 || *tag >= 0x7FE0_0000 {
                return Err(unsupported(format!("cannot coerce {t}: only data set elements of groups 0008 to 7FDF")));
            }
            if *tag & 0xFFFF == 0 {
                return Err(unsupported(format!("cannot coerce {t}: group lengths are recomputed, not set")));
            }
            let Some(vr) = dictionary_vr(*tag) else {
                return Err(unsupported(format!("cannot coerce {t}: not in the data dictionary (its VR is unknown)")));
            };
            if !is_text_vr(vr) && !is_number_vr(vr) {
                return Err(unsupported(format!("cannot coerce {t}: VR {} has no text form", vr_str(vr))));
            }
            if let Some(v) = value {
                // Numbers are checked here; lengths when written (they depend on the encoding).
                encode_value(*tag, vr, v, Encoding::IMPLICIT_LE)?;
            }
        }
        Ok(Coercion { edits })
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The edits, sorted by tag.
    pub fn edits(&self) -> &[(u32, Option<String>)] {
        &self.edits
    }

    fn last_group(&self) -> u32 {
        self.edits.last().map(|e| e.0 >> 16).unwrap_or(0)
    }
}

/// The value bytes of `text` as `vr` in `enc`, padded to even length.
fn encode_value(tag: u32, vr: [u8; 2], text: &str, enc: Encoding) -> Result<Vec<u8>, DatasetError> {
    let mut out = Vec::with_capacity(text.len() + 1);
    if is_text_vr(vr) {
        out.extend_from_slice(text.as_bytes());
        if out.len() % 2 == 1 {
            out.push(pad_byte(vr));
        }
    } else {
        for part in text.split('\\') {
            let p = part.trim();
            let bad = || unsupported(format!("cannot coerce {}: {p:?} is not a value of VR {}", fmt_tag(tag), vr_str(vr)));
            let le = enc.little_endian;
            macro_rules! put {
                ($t:ty) => {{
                    let v: $t = p.parse().map_err(|_| bad())?;
                    out.extend_from_slice(&if le { v.to_le_bytes() } else { v.to_be_bytes() });
                }};
            }
            match &vr {
                b"US" => put!(u16),
                b"SS" => put!(i16),
                b"UL" => put!(u32),
                b"SL" => put!(i32),
                b"FL" => put!(f32),
                _ => put!(f64),
            }
        }
    }
    let limit = if !enc.implicit_vr && !has_long_length(vr) { 0xFFFF } else { 0xFFFF_FFFE };
    if out.len() as u64 > limit {
        return Err(DatasetError::TooLong { tag, length: out.len() as u64, limit });
    }
    Ok(out)
}

/// What [`coerce_header`] produced.
#[derive(Debug)]
pub struct CoercedHeader {
    /// The rewritten header part, followed by the raw header of the element where the
    /// cut was made (if any): send these bytes, then the input from `consumed` on.
    pub bytes: Vec<u8>,
    /// Input bytes read (the header part and that element header).
    pub consumed: u64,
}

/// One top-level element of the header part: its tag, VR as read (explicit VR), its
/// raw bytes (`start..end` in the buffer).
struct Elem {
    tag: u32,
    vr: Option<[u8; 2]>,
    start: usize,
    end: usize,
}

/// Reads raw bytes, never past `len`, counting them.
struct Input<'a, R: Read> {
    r: &'a mut R,
    len: u64,
    pos: u64,
    base: u64,
}

impl<R: Read> Input<'_, R> {
    fn io(&self, source: std::io::Error) -> DatasetError {
        DatasetError::Io { offset: self.base + self.pos, source }
    }

    /// Read one element header (raw bytes appended to `out`); None at the end of input.
    fn header(&mut self, enc: Encoding, out: &mut Vec<u8>) -> Result<Option<Header>, DatasetError> {
        if self.pos == self.len {
            return Ok(None);
        }
        let mut buf = [0u8; 12];
        let mut got = 0usize;
        let mut need = 8usize;
        loop {
            while got < need {
                if self.pos == self.len {
                    return Err(DatasetError::Truncated {
                        tag: tag_of(&buf[..got], enc),
                        offset: self.base + self.pos - got as u64,
                        length: need as u64,
                        size: self.base + self.len,
                    });
                }
                let room = ((need - got) as u64).min(self.len - self.pos) as usize;
                match self.r.read(&mut buf[got..got + room]) {
                    Ok(0) => {
                        return Err(DatasetError::Truncated {
                            tag: tag_of(&buf[..got], enc),
                            offset: self.base + self.pos - got as u64,
                            length: need as u64,
                            size: self.base + self.pos,
                        })
                    }
                    Ok(k) => {
                        got += k;
                        self.pos += k as u64;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.io(e)),
                }
            }
            match parse_header(&buf[..got], enc) {
                Ok(h) => {
                    out.extend_from_slice(&buf[..got]);
                    return Ok(Some(h));
                }
                Err(Need(n)) => need = n,
            }
        }
    }

    /// Copy a defined-length value of `h` (its header at `at`) into `out`, checked
    /// against the input length and the header part limit.
    fn value(&mut self, h: &Header, at: u64, limit: Option<u64>, out: &mut Vec<u8>) -> Result<(), DatasetError> {
        let length = h.length as u64;
        let end = limit.unwrap_or(self.len).min(self.len);
        if self.pos + length > end {
            return Err(DatasetError::Truncated { tag: Some(h.tag), offset: self.base + at, length, size: self.base + end });
        }
        if out.len() as u64 + length > MAX_HEADER_PART {
            return Err(unsupported(format!(
                "the elements before the cut ({} at offset {}) exceed {} MiB",
                fmt_tag(h.tag),
                self.base + at,
                MAX_HEADER_PART >> 20
            )));
        }
        let before = out.len();
        let got = (&mut *self.r).take(length).read_to_end(out).map_err(|e| self.io(e))?;
        self.pos += got as u64;
        if (got as u64) < length {
            out.truncate(before + got);
            return Err(DatasetError::Truncated {
                tag: Some(h.tag),
                offset: self.base + at,
                length,
                size: self.base + self.pos,
            });
        }
        Ok(())
    }
}

/// A container open while walking an undefined-length element: its end when its
/// length is defined, its encoding (UN of undefined length holds implicit VR LE).
#[derive(Clone, Copy)]
struct Open {
    tag: u32,
    offset: u64,
    end: Option<u64>,
    enc: Encoding,
    /// True for a sequence (items inside), false for an item (elements inside).
    sequence: bool,
}

/// Copy the content of an undefined-length element whose header was just read (at
/// `at`), up to and including its sequence delimiter.
fn copy_undefined<R: Read>(inp: &mut Input<'_, R>, first: Header, at: u64, enc: Encoding, out: &mut Vec<u8>) -> Result<(), DatasetError> {
    let inner = if first.vr == Some(*b"UN") { Encoding::IMPLICIT_LE } else { enc };
    let mut stack = vec![Open { tag: first.tag, offset: at, end: None, enc: inner, sequence: true }];
    while let Some(top) = stack.last().copied() {
        if let Some(end) = top.end {
            if inp.pos == end {
                stack.pop();
                continue;
            }
        }
        let at = inp.pos;
        let Some(h) = inp.header(top.enc, out)? else {
            return Err(DatasetError::Unclosed { tag: top.tag, offset: inp.base + top.offset, size: inp.base + inp.len });
        };
        let limit = stack.iter().rev().find_map(|o| o.end);
        if top.sequence {
            match h.tag {
                TAG_SEQUENCE_DELIMITER if top.end.is_none() => {
                    stack.pop();
                }
                TAG_ITEM if h.is_undefined_length() => {
                    stack.push(Open { tag: TAG_ITEM, offset: at, end: None, enc: top.enc, sequence: false });
                }
                TAG_ITEM => inp.value(&h, at, limit, out)?,
                _ => {
                    return Err(DatasetError::UnexpectedTag { tag: h.tag, offset: inp.base + at, expected: "an item or a sequence delimiter" })
                }
            }
        } else if h.tag == TAG_ITEM_DELIMITER && top.end.is_none() {
            stack.pop();
        } else if h.is_item_or_delimiter() {
            return Err(DatasetError::UnexpectedTag { tag: h.tag, offset: inp.base + at, expected: "an element or an item delimiter" });
        } else if h.is_undefined_length() {
            let enc = if h.vr == Some(*b"UN") { Encoding::IMPLICIT_LE } else { top.enc };
            stack.push(Open { tag: h.tag, offset: at, end: None, enc, sequence: true });
        } else {
            inp.value(&h, at, limit, out)?;
        }
        if stack.len() > MAX_DEPTH {
            return Err(unsupported(format!("sequences nested deeper than {MAX_DEPTH} levels at offset {}", inp.base + at)));
        }
    }
    Ok(())
}

/// Read the header part of a data set of `len` bytes encoded as `enc` from `r` (its
/// first byte at offset `base`, for messages), apply `c` and return the rewritten
/// bytes. The cut is made before the first top-level element of a group after the last
/// coerced one, or before Pixel Data, or at the end of the data set; the header of the
/// element there is read and handed back unchanged in [`CoercedHeader::bytes`].
pub fn coerce_header<R: Read>(r: &mut R, len: u64, enc: Encoding, c: &Coercion, base: u64) -> Result<CoercedHeader, DatasetError> {
    let mut raw = Vec::with_capacity(4096);
    let mut elems: Vec<Elem> = Vec::new();
    let mut inp = Input { r, len, pos: 0, base };
    let last_group = c.last_group();
    let mut cut_header: Vec<u8> = Vec::new();
    loop {
        let at = inp.pos;
        let start = raw.len();
        let Some(h) = inp.header(enc, &mut raw)? else { break };
        if h.is_item_or_delimiter() {
            return Err(DatasetError::UnexpectedTag { tag: h.tag, offset: base + at, expected: "a top-level element" });
        }
        if h.tag >= TAG_PIXEL_DATA || h.tag >> 16 > last_group {
            cut_header = raw.split_off(start);
            break;
        }
        if h.is_undefined_length() {
            copy_undefined(&mut inp, h, at, enc, &mut raw)?;
        } else {
            inp.value(&h, at, None, &mut raw)?;
        }
        elems.push(Elem { tag: h.tag, vr: h.vr, start, end: raw.len() });
    }
    let charset = elems.iter().find(|e| e.tag == SPECIFIC_CHARACTER_SET).map(|e| {
        let hl = element_header_len(&raw[e.start..e.end], enc);
        String::from_utf8_lossy(&raw[e.start + hl..e.end]).into_owned()
    });
    let bytes = rewrite(&raw, &elems, enc, c, charset.as_deref())?;
    let mut bytes = bytes;
    bytes.extend_from_slice(&cut_header);
    Ok(CoercedHeader { bytes, consumed: inp.pos })
}

/// The length of the element header at the start of `b` (8 when it cannot be read).
fn element_header_len(b: &[u8], enc: Encoding) -> usize {
    parse_header(b, enc).map(|h| h.header_len).unwrap_or(8)
}

/// True when a non-ASCII value may be written: the data set declares UTF-8 (ISO_IR 192).
fn allows_utf8(charset: Option<&str>) -> bool {
    charset.is_some_and(|cs| cs.split('\\').any(|t| t.trim_matches([' ', '\0']) == "ISO_IR 192"))
}

/// One element of the output: its tag and bytes (from the input, or newly encoded).
enum Piece<'a> {
    Kept(u32, &'a [u8]),
    New(u32, Vec<u8>),
}

fn rewrite(raw: &[u8], elems: &[Elem], enc: Encoding, c: &Coercion, charset: Option<&str>) -> Result<Vec<u8>, DatasetError> {
    let mut changed_groups: Vec<u32> = Vec::new();
    let mut pieces: Vec<Piece> = Vec::with_capacity(elems.len() + c.edits.len());
    let mut edits = c.edits.iter().peekable();
    let new_element = |tag: u32, vr_read: Option<[u8; 2]>, text: &str| -> Result<Vec<u8>, DatasetError> {
        let dict = dictionary_vr(tag).ok_or_else(|| unsupported(format!("cannot coerce {}: its VR is unknown", fmt_tag(tag))))?;
        // In explicit VR the element keeps the VR it was written with, when that VR has a text form.
        let vr = match vr_read {
            Some(v) if is_text_vr(v) || is_number_vr(v) => v,
            Some(v) if !enc.implicit_vr => {
                return Err(unsupported(format!("cannot coerce {}: it is written with VR {}, which has no text form", fmt_tag(tag), vr_str(v))))
            }
            _ => dict,
        };
        if !text.is_ascii() && is_text_vr(vr) && !allows_utf8(charset) {
            return Err(unsupported(format!(
                "cannot coerce {} to {text:?}: not ASCII, and the data set's Specific Character Set is not ISO_IR 192",
                fmt_tag(tag)
            )));
        }
        let value = encode_value(tag, vr, text, enc)?;
        let mut out = Vec::with_capacity(value.len() + 12);
        super::header::write_element_header(&mut out, enc, tag, Some(vr), value.len() as u32);
        out.extend_from_slice(&value);
        Ok(out)
    };
    for e in elems {
        while let Some((tag, value)) = edits.peek() {
            if *tag >= e.tag {
                break;
            }
            if let Some(text) = value {
                pieces.push(Piece::New(*tag, new_element(*tag, None, text)?));
                changed_groups.push(*tag >> 16);
            }
            edits.next();
        }
        match edits.peek() {
            Some((tag, value)) if *tag == e.tag => {
                if let Some(text) = value {
                    pieces.push(Piece::New(*tag, new_element(*tag, e.vr, text)?));
                }
                changed_groups.push(*tag >> 16);
                edits.next();
            }
            _ => pieces.push(Piece::Kept(e.tag, &raw[e.start..e.end])),
        }
    }
    for (tag, value) in edits {
        if let Some(text) = value {
            pieces.push(Piece::New(*tag, new_element(*tag, None, text)?));
            changed_groups.push(*tag >> 16);
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 256);
    for (i, p) in pieces.iter().enumerate() {
        match p {
            Piece::Kept(tag, bytes) if *tag & 0xFFFF == 0 && changed_groups.contains(&(*tag >> 16)) => {
                let group = *tag >> 16;
                let hl = element_header_len(bytes, enc);
                if bytes.len() != hl + 4 {
                    continue; // not a 4-byte UL: dropped (group lengths are optional)
                }
                let total: usize = pieces[i + 1..]
                    .iter()
                    .map(|p| match p {
                        Piece::Kept(t, b) => (*t, b.len()),
                        Piece::New(t, b) => (*t, b.len()),
                    })
                    .take_while(|(t, _)| *t >> 16 == group)
                    .map(|(_, n)| n)
                    .sum();
                let Ok(total) = u32::try_from(total) else { continue };
                out.extend_from_slice(&bytes[..hl]);
                out.extend_from_slice(&if enc.little_endian { total.to_le_bytes() } else { total.to_be_bytes() });
            }
            Piece::Kept(_, bytes) => out.extend_from_slice(bytes),
            Piece::New(_, bytes) => out.extend_from_slice(bytes),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "coerce_tests.rs"]
mod tests;
