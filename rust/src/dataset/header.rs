//! The element header (PS3.5 7.1.1-7.1.3, 7.5): the one reader every walker of a data
//! set uses (split, the streaming transcoder, the header scan, the Part-10 meta reader),
//! and the one writer.
//!
//! A header is 8 bytes (implicit VR; explicit VR with a 2-byte length; items and
//! delimiters, which have no VR in any encoding) or 12 (explicit VR whose length field
//! is 4 bytes after 2 reserved ones: OB, OW, SQ, UN, UT, ...). [`parse_header`] decodes
//! it from however many bytes the caller holds, and when they are too few says how many
//! it needs; nothing here allocates, indexes out of bounds or trusts a length.
//!
//! An explicit VR data set whose VR bytes are not two upper-case letters is read as
//! implicit VR at that element (a 4-byte length after the tag), as some writers switch.

use std::io::{self, Read};

use super::{has_long_length, is_vr, DatasetError, Encoding, UNDEFINED_LENGTH};

/// One element header as read from the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub tag: u32,
    /// The VR bytes in explicit VR; `None` in implicit VR, for items and
    /// delimiters, and when an explicit-VR dataset switches to implicit
    /// (no valid VR letters where the VR should be, as some writers do).
    pub vr: Option<[u8; 2]>,
    /// The length field as written (0xFFFFFFFF: undefined).
    pub length: u32,
    /// 8 or 12.
    pub header_len: usize,
}

impl Header {
    pub fn is_undefined_length(&self) -> bool {
        self.length == UNDEFINED_LENGTH
    }

    /// An item, item delimiter or sequence delimiter (group FFFE).
    pub fn is_item_or_delimiter(&self) -> bool {
        self.tag >> 16 == 0xFFFE
    }
}

/// The header needs this many bytes (8 or 12) and fewer were given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need(pub usize);

#[inline]
fn u16_of(b: [u8; 2], little: bool) -> u16 {
    if little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) }
}

#[inline]
fn u32_of(b: [u8; 4], little: bool) -> u32 {
    if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) }
}

/// The tag in the first 4 bytes of `b`, if there are 4.
pub fn tag_of(b: &[u8], enc: Encoding) -> Option<u32> {
    match b {
        [g0, g1, e0, e1, ..] => {
            let le = enc.little_endian;
            Some(((u16_of([*g0, *g1], le) as u32) << 16) | u16_of([*e0, *e1], le) as u32)
        }
        _ => None,
    }
}

/// Decode the element header at the start of `b` (bytes after it are ignored).
/// `Err(Need(n))` when `b` holds fewer than the `n` bytes this header takes.
#[inline]
pub fn parse_header(b: &[u8], enc: Encoding) -> Result<Header, Need> {
    let [g0, g1, e0, e1, b4, b5, b6, b7, rest @ ..] = b else { return Err(Need(8)) };
    let le = enc.little_endian;
    let tag = ((u16_of([*g0, *g1], le) as u32) << 16) | u16_of([*e0, *e1], le) as u32;
    let vr = [*b4, *b5];
    if enc.implicit_vr || tag >> 16 == 0xFFFE || !is_vr(vr) {
        return Ok(Header { tag, vr: None, length: u32_of([*b4, *b5, *b6, *b7], le), header_len: 8 });
    }
    if !has_long_length(vr) {
        return Ok(Header { tag, vr: Some(vr), length: u16_of([*b6, *b7], le) as u32, header_len: 8 });
    }
    match rest {
        [l0, l1, l2, l3, ..] => Ok(Header { tag, vr: Some(vr), length: u32_of([*l0, *l1, *l2, *l3], le), header_len: 12 }),
        _ => Err(Need(12)),
    }
}

/// Read the element header at `data[pos..]`; a header cut short by the end of `data`
/// is [`DatasetError::Truncated`] naming `pos` (offsets are relative to `data`) and,
/// when its 4 bytes are there, the tag.
#[inline]
pub fn read_header(data: &[u8], pos: usize, enc: Encoding) -> Result<Header, DatasetError> {
    let b = data.get(pos..).unwrap_or(&[]);
    parse_header(b, enc).map_err(|Need(n)| DatasetError::Truncated {
        tag: tag_of(b, enc),
        offset: pos as u64,
        length: n as u64,
        size: data.len() as u64,
    })
}

/// What [`read_header_from`] found in a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamHeader {
    /// The stream ended cleanly before the header's first byte.
    End,
    Header(Header),
    /// The stream ended inside the header after `got` bytes (`tag` once 4 were read).
    Truncated { got: usize, tag: Option<u32> },
}

/// Read one element header from a stream, taking exactly its 8 or 12 bytes.
pub fn read_header_from<R: Read>(r: &mut R, enc: Encoding) -> io::Result<StreamHeader> {
    let mut buf = [0u8; 12];
    let mut got = 0usize;
    let mut need = 8usize;
    loop {
        while got < need {
            match r.read(&mut buf[got..need]) {
                Ok(0) => {
                    return Ok(if got == 0 {
                        StreamHeader::End
                    } else {
                        StreamHeader::Truncated { got, tag: tag_of(&buf[..got], enc) }
                    })
                }
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match parse_header(&buf[..got], enc) {
            Ok(h) => return Ok(StreamHeader::Header(h)),
            Err(Need(n)) => need = n,
        }
    }
}

/// Encode an element header into `out`. Items and delimiters (group FFFE) and
/// implicit VR get no VR; a 2-byte length field takes the low 16 bits of `length`
/// (the caller checks that the value fits).
pub fn write_element_header(out: &mut Vec<u8>, enc: Encoding, tag: u32, vr: Option<[u8; 2]>, length: u32) {
    let group = (tag >> 16) as u16;
    let elem = tag as u16;
    let le = enc.little_endian;
    let b16 = |v: u16| if le { v.to_le_bytes() } else { v.to_be_bytes() };
    let b32 = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
    out.extend_from_slice(&b16(group));
    out.extend_from_slice(&b16(elem));
    match vr {
        Some(vr) if !enc.implicit_vr && group != 0xFFFE => {
            out.extend_from_slice(&vr);
            if has_long_length(vr) {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&b32(length));
            } else {
                out.extend_from_slice(&b16(length as u16));
            }
        }
        _ => out.extend_from_slice(&b32(length)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENCODINGS: [Encoding; 3] = [Encoding::IMPLICIT_LE, Encoding::EXPLICIT_LE, Encoding::EXPLICIT_BE];

    /// (tag, VR, length) of the headers the reader must round-trip in each encoding:
    /// a short VR, every long VR, undefined lengths, items and delimiters.
    fn cases() -> Vec<(u32, Option<[u8; 2]>, u32)> {
        let mut v = vec![
            (0x0010_0010, Some(*b"PN"), 10),
            (0x0028_0010, Some(*b"US"), 2),
            (0x0008_0018, Some(*b"UI"), 0xFFFE),
            (0x0008_1115, Some(*b"SQ"), UNDEFINED_LENGTH),
            (0x7FE0_0010, Some(*b"OB"), UNDEFINED_LENGTH),
            (0xFFFE_E000, None, 24),
            (0xFFFE_E000, None, UNDEFINED_LENGTH),
            (0xFFFE_E00D, None, 0),
            (0xFFFE_E0DD, None, 0),
        ];
        for vr in [b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"] {
            v.push((0x0009_1010, Some(*vr), 0x0001_0002));
        }
        for vr in [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"SH", b"SL", b"SS", b"ST", b"TM", b"UL", b"US"] {
            v.push((0x0009_1011, Some(*vr), 0x1234));
        }
        v
    }

    /// Every case in every encoding, with the header bytes the writer makes of it.
    fn written() -> Vec<(Encoding, u32, Option<[u8; 2]>, u32, Vec<u8>)> {
        let mut out = Vec::new();
        for enc in ENCODINGS {
            for (tag, vr, length) in cases() {
                let mut b = Vec::new();
                write_element_header(&mut b, enc, tag, vr, length);
                out.push((enc, tag, vr, length, b));
            }
        }
        out
    }

    #[test]
    fn every_vr_class_round_trips_in_every_encoding() {
        for (enc, tag, vr, length, mut b) in written() {
            let expect_len = if enc.implicit_vr || tag >> 16 == 0xFFFE || !has_long_length(vr.unwrap()) { 8 } else { 12 };
            assert_eq!(b.len(), expect_len, "{tag:08X} {vr:?} {enc:?}");
            b.extend_from_slice(b"trailing bytes are not read");
            let h = parse_header(&b, enc).unwrap();
            let want_vr = if enc.implicit_vr || tag >> 16 == 0xFFFE { None } else { vr };
            assert_eq!(h, Header { tag, vr: want_vr, length, header_len: expect_len }, "{enc:?}");
            assert_eq!(h.is_undefined_length(), length == UNDEFINED_LENGTH);
            assert_eq!(h.is_item_or_delimiter(), tag >> 16 == 0xFFFE);
            assert_eq!(read_header(&b, 0, enc).unwrap(), h);
            let mut cursor = &b[..];
            assert_eq!(read_header_from(&mut cursor, enc).unwrap(), StreamHeader::Header(h));
            assert_eq!(cursor.len(), b.len() - expect_len, "the stream reader takes the header only");
        }
    }

    #[test]
    fn known_bytes_decode_as_the_standard_lays_them_out() {
        // (0010,0010) PN length 4, explicit VR little endian
        let b = [0x10, 0x00, 0x10, 0x00, b'P', b'N', 0x04, 0x00];
        assert_eq!(parse_header(&b, Encoding::EXPLICIT_LE), Ok(Header { tag: 0x0010_0010, vr: Some(*b"PN"), length: 4, header_len: 8 }));
        // the same tag, big endian, OB with a 4-byte length
        let b = [0x00, 0x10, 0x00, 0x10, b'O', b'B', 0, 0, 0x00, 0x00, 0x01, 0x00];
        assert_eq!(parse_header(&b, Encoding::EXPLICIT_BE), Ok(Header { tag: 0x0010_0010, vr: Some(*b"OB"), length: 256, header_len: 12 }));
        // implicit VR: tag then 4-byte length, whatever the bytes look like
        let b = [0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0];
        assert_eq!(parse_header(&b, Encoding::IMPLICIT_LE), Ok(Header { tag: 0x0008_1115, vr: None, length: 0x5153, header_len: 8 }));
        // explicit VR data switching to implicit (no VR letters): a 4-byte length
        let b = [0x10, 0x00, 0x20, 0x00, 0x06, 0x00, 0x00, 0x00];
        assert_eq!(parse_header(&b, Encoding::EXPLICIT_LE), Ok(Header { tag: 0x0010_0020, vr: None, length: 6, header_len: 8 }));
        // an undefined-length item in explicit VR has no VR
        let b = [0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF];
        assert_eq!(parse_header(&b, Encoding::EXPLICIT_LE), Ok(Header { tag: 0xFFFE_E000, vr: None, length: UNDEFINED_LENGTH, header_len: 8 }));
    }

    #[test]
    fn a_header_cut_at_every_offset_is_a_clear_error_naming_the_offset() {
        for (enc, tag, _, _, whole) in written() {
            for cut in 0..whole.len() {
                // the header at offset 5 of a buffer that ends inside it
                let mut data = vec![0xAA; 5];
                data.extend_from_slice(&whole[..cut]);
                let need = parse_header(&whole[..cut], enc).unwrap_err();
                assert_eq!(need, Need(if cut < 8 { 8 } else { whole.len() }));
                let err = read_header(&data, 5, enc).unwrap_err();
                match &err {
                    DatasetError::Truncated { tag: t, offset, length, size } => {
                        assert_eq!(*offset, 5);
                        assert_eq!(*length, need.0 as u64);
                        assert_eq!(*size, data.len() as u64);
                        assert_eq!(*t, (cut >= 4).then_some(tag));
                    }
                    other => panic!("{other:?}"),
                }
                assert!(err.to_string().contains("offset 5"), "{err}");
                let mut cursor = &whole[..cut];
                let got = read_header_from(&mut cursor, enc).unwrap();
                let want = if cut == 0 { StreamHeader::End } else { StreamHeader::Truncated { got: cut, tag: (cut >= 4).then_some(tag) } };
                assert_eq!(got, want);
            }
        }
        // a position past the end is a truncation too, not a panic
        assert!(matches!(read_header(&[0; 4], 9, Encoding::EXPLICIT_LE), Err(DatasetError::Truncated { offset: 9, tag: None, .. })));
    }
}
