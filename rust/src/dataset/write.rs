//! Writing data elements (PS3.5 7.1, 7.5): the encode path. [`ElementWriter`] takes
//! values (already in their value encoding) and writes everything around them: element
//! headers, the padding of text to even length, sequences and items with defined
//! lengths (patched once their content is written) or undefined lengths with their
//! delimitation items. `py/codec.rs` drives it from the values Python hands over.

use super::header::write_element_header;
use super::{has_long_length, DatasetError, Encoding, TAG_ITEM, TAG_ITEM_DELIMITER, TAG_SEQUENCE_DELIMITER, UNDEFINED_LENGTH};

/// Largest defined length: 0xFFFFFFFF means undefined.
const MAX_LENGTH: u64 = 0xFFFF_FFFE;

/// An open sequence or item: where its length field is (None: undefined length).
#[derive(Clone, Copy, Debug)]
struct Open {
    tag: u32,
    length_at: Option<usize>,
}

/// Writes elements in one encoding into a byte buffer.
pub struct ElementWriter {
    enc: Encoding,
    out: Vec<u8>,
    open: Vec<Open>,
}

/// The padding byte of a text VR: NUL for UI, a space for the others (PS3.5 6.2).
pub fn pad_byte(vr: [u8; 2]) -> u8 {
    if &vr == b"UI" { 0 } else { b' ' }
}

impl ElementWriter {
    pub fn new(enc: Encoding) -> ElementWriter {
        ElementWriter { enc, out: Vec::new(), open: Vec::new() }
    }

    pub fn encoding(&self) -> Encoding {
        self.enc
    }

    /// How many sequences and items are open.
    pub fn depth(&self) -> usize {
        self.open.len()
    }

    /// The bytes written so far (taken: the writer continues with an empty buffer).
    /// Only between top-level elements: while a sequence is open (see
    /// [`depth`](Self::depth)) nothing is taken, its length is still to be patched.
    pub fn take(&mut self) -> Vec<u8> {
        if !self.open.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut self.out)
    }

    /// The length field's limit for this VR in this encoding.
    fn limit(&self, vr: Option<[u8; 2]>) -> u64 {
        match vr {
            Some(vr) if !self.enc.implicit_vr && !has_long_length(vr) => 0xFFFF,
            _ => MAX_LENGTH,
        }
    }

    /// The header of an element whose `length` bytes of value the caller writes next.
    pub fn value_header(&mut self, tag: u32, vr: Option<[u8; 2]>, length: u64) -> Result<(), DatasetError> {
        let limit = self.limit(vr);
        if length > limit {
            return Err(DatasetError::TooLong { tag, length, limit });
        }
        write_element_header(&mut self.out, self.enc, tag, vr, length as u32);
        Ok(())
    }

    /// An element with a defined-length value, written as it is (odd lengths too).
    pub fn value(&mut self, tag: u32, vr: Option<[u8; 2]>, value: &[u8]) -> Result<(), DatasetError> {
        self.value_header(tag, vr, value.len() as u64)?;
        self.out.extend_from_slice(value);
        Ok(())
    }

    /// A text value, padded to even length with the VR's padding byte.
    pub fn text(&mut self, tag: u32, vr: [u8; 2], text: &[u8]) -> Result<(), DatasetError> {
        let odd = text.len() % 2 == 1;
        self.value_header(tag, Some(vr), text.len() as u64 + odd as u64)?;
        self.out.extend_from_slice(text);
        if odd {
            self.out.push(pad_byte(vr));
        }
        Ok(())
    }

    /// An undefined-length element whose `content` (items, or fragments of encapsulated
    /// pixel data) is already encoded: header, content, sequence delimitation item.
    pub fn undefined(&mut self, tag: u32, vr: Option<[u8; 2]>, content: &[u8]) {
        self.undefined_header(tag, vr);
        self.out.extend_from_slice(content);
        self.sequence_delimiter();
    }

    /// The header of an undefined-length element whose content the caller writes next,
    /// then [`sequence_delimiter`](Self::sequence_delimiter).
    pub fn undefined_header(&mut self, tag: u32, vr: Option<[u8; 2]>) {
        write_element_header(&mut self.out, self.enc, tag, vr, UNDEFINED_LENGTH);
    }

    pub fn sequence_delimiter(&mut self) {
        write_element_header(&mut self.out, self.enc, TAG_SEQUENCE_DELIMITER, None, 0);
    }

    /// Bytes already encoded in this writer's encoding (whole elements).
    pub fn encoded(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn start(&mut self, tag: u32, vr: Option<[u8; 2]>, undefined: bool) {
        let length = if undefined { UNDEFINED_LENGTH } else { 0 };
        write_element_header(&mut self.out, self.enc, tag, vr, length);
        let length_at = (!undefined).then(|| self.out.len() - 4);
        self.open.push(Open { tag, length_at });
    }

    fn end(&mut self, delimiter: u32, item: bool) -> Result<(), DatasetError> {
        let Some(open) = self.open.pop() else {
            return Err(DatasetError::Unsupported { detail: "writer: nothing open to close".into() });
        };
        if (open.tag == TAG_ITEM) != item {
            return Err(DatasetError::Unsupported { detail: "writer: items and sequences closed out of order".into() });
        }
        match open.length_at {
            None => write_element_header(&mut self.out, self.enc, delimiter, None, 0),
            Some(at) => {
                let lost = || DatasetError::Unsupported { detail: "writer: output taken while a sequence was open".into() };
                let length = self.out.len().checked_sub(at + 4).ok_or_else(lost)? as u64;
                if length > MAX_LENGTH {
                    return Err(DatasetError::TooLong { tag: open.tag, length, limit: MAX_LENGTH });
                }
                let b = if self.enc.little_endian { (length as u32).to_le_bytes() } else { (length as u32).to_be_bytes() };
                self.out.get_mut(at..at + 4).ok_or_else(lost)?.copy_from_slice(&b);
            }
        }
        Ok(())
    }

    /// Open a sequence (SQ); its items follow, then [`end_sequence`](Self::end_sequence).
    pub fn start_sequence(&mut self, tag: u32, undefined: bool) {
        self.start(tag, Some(*b"SQ"), undefined);
    }

    pub fn end_sequence(&mut self) -> Result<(), DatasetError> {
        self.end(TAG_SEQUENCE_DELIMITER, false)
    }

    /// Open an item of the open sequence; its elements follow, then [`end_item`](Self::end_item).
    pub fn start_item(&mut self, undefined: bool) {
        self.start(TAG_ITEM, None, undefined);
    }

    pub fn end_item(&mut self) -> Result<(), DatasetError> {
        self.end(TAG_ITEM_DELIMITER, true)
    }

    /// All written: nothing may be open.
    pub fn finish(mut self) -> Result<Vec<u8>, DatasetError> {
        if let Some(open) = self.open.last() {
            return Err(DatasetError::Unclosed { tag: open.tag, offset: 0, size: self.out.len() as u64 });
        }
        Ok(std::mem::take(&mut self.out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{split_elements, split_items, transcode, uids};

    /// (0008,1115) SQ holding one item with (0008,1150) UI "1.2", of defined lengths.
    fn one_item_sequence(w: &mut ElementWriter) {
        w.start_sequence(0x0008_1115, false);
        w.start_item(false);
        w.text(0x0008_1150, *b"UI", b"1.2").unwrap();
        w.end_item().unwrap();
        w.end_sequence().unwrap();
    }

    /// A data set with nested sequences (defined and undefined lengths), odd-length
    /// values and text of both paddings, written by the writer.
    fn sample(enc: Encoding) -> Vec<u8> {
        let mut w = ElementWriter::new(enc);
        w.text(0x0008_0016, *b"UI", b"1.2.3").unwrap();
        w.start_sequence(0x0008_1115, false);
        w.start_item(true);
        w.text(0x0008_1150, *b"UI", b"1.2").unwrap();
        w.start_sequence(0x0008_114A, true);
        w.start_item(false);
        w.text(0x0008_1155, *b"UI", b"9.8.7").unwrap();
        w.end_item().unwrap();
        w.end_sequence().unwrap();
        w.end_item().unwrap();
        w.end_sequence().unwrap();
        w.text(0x0010_0010, *b"PN", b"Doe^J").unwrap();
        w.value(0x0011_0010, Some(*b"LO"), b"ODD").unwrap(); // odd raw value: written as it is
        w.value(0x0028_0010, Some(*b"US"), &if enc.little_endian { 512u16.to_le_bytes() } else { 512u16.to_be_bytes() }).unwrap();
        w.undefined(0x7FE0_0010, Some(*b"OB"), &{
            let mut frag = Vec::new();
            write_element_header(&mut frag, enc, TAG_ITEM, None, 0);
            write_element_header(&mut frag, enc, TAG_ITEM, None, 3);
            frag.extend_from_slice(b"abc");
            frag
        });
        w.finish().unwrap()
    }

    #[test]
    fn writes_the_bytes_ps3_5_lays_out() {
        let mut w = ElementWriter::new(Encoding::EXPLICIT_LE);
        w.text(0x0010_0020, *b"LO", b"ABC").unwrap();
        one_item_sequence(&mut w);
        let got = w.finish().unwrap();
        let mut want = vec![0x10, 0, 0x20, 0, b'L', b'O', 4, 0, b'A', b'B', b'C', b' '];
        want.extend_from_slice(&[0x08, 0, 0x15, 0x11, b'S', b'Q', 0, 0, 20, 0, 0, 0]); // 8 + 12
        want.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 12, 0, 0, 0]);
        want.extend_from_slice(&[0x08, 0, 0x50, 0x11, b'U', b'I', 4, 0, b'1', b'.', b'2', 0]);
        assert_eq!(got, want);
        // implicit VR, undefined lengths: delimiters instead of lengths
        let mut w = ElementWriter::new(Encoding::IMPLICIT_LE);
        w.start_sequence(0x0008_1115, true);
        w.start_item(true);
        w.end_item().unwrap();
        w.end_sequence().unwrap();
        let got = w.finish().unwrap();
        assert_eq!(
            got,
            [
                &[0x08, 0, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF][..],
                &[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF],
                &[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0],
                &[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0],
            ]
            .concat()
        );
    }

    #[test]
    fn what_it_writes_reads_back_and_transcodes_like_the_same_data_in_another_encoding() {
        let encs = [(Encoding::IMPLICIT_LE, uids::IMPLICIT_VR_LE), (Encoding::EXPLICIT_LE, uids::EXPLICIT_VR_LE), (Encoding::EXPLICIT_BE, uids::EXPLICIT_VR_BE)];
        for (enc, _) in encs {
            let data = sample(enc);
            let els = split_elements(&data, enc).unwrap();
            let tags: Vec<u32> = els.iter().map(|e| e.tag).collect();
            assert_eq!(tags, [0x0008_0016, 0x0008_1115, 0x0010_0010, 0x0011_0010, 0x0028_0010, 0x7FE0_0010]);
            assert_eq!(&data[els[0].value_start..els[0].value_end], b"1.2.3\0");
            assert_eq!(&data[els[2].value_start..els[2].value_end], b"Doe^J ");
            assert_eq!(els[3].length, 3);
            let seq = &data[els[1].value_start..els[1].value_end];
            let items = split_items(seq, enc).unwrap().unwrap();
            assert_eq!(items.len(), 1);
            assert!(items[0].undefined_length);
            assert_eq!(items[0].elements.len(), 2);
        }
        // the writer in encoding B writes what the transcoder makes of its output in A
        // (explicit LE <-> BE keep every length, so the bytes are equal)
        let le = sample(Encoding::EXPLICIT_LE);
        let be = sample(Encoding::EXPLICIT_BE);
        assert_eq!(transcode(&le, uids::EXPLICIT_VR_LE, uids::EXPLICIT_VR_BE).unwrap(), be);
        assert_eq!(transcode(&be, uids::EXPLICIT_VR_BE, uids::EXPLICIT_VR_LE).unwrap(), le);
    }

    #[test]
    fn too_long_values_and_unbalanced_framing_are_errors() {
        let mut w = ElementWriter::new(Encoding::EXPLICIT_LE);
        let long = vec![b'x'; 0x1_0000];
        assert!(matches!(w.value(0x0010_0020, Some(*b"LO"), &long), Err(DatasetError::TooLong { tag: 0x0010_0020, length: 0x1_0000, limit: 0xFFFF })));
        assert!(matches!(w.text(0x0010_0020, *b"LO", &long[..0xFFFF]), Err(DatasetError::TooLong { length: 0x1_0000, .. })));
        w.text(0x0010_0020, *b"UT", &long).unwrap(); // a 4-byte length
        let mut imp = ElementWriter::new(Encoding::IMPLICIT_LE);
        imp.value(0x0010_0020, Some(*b"LO"), &long).unwrap(); // implicit VR: 4-byte lengths
        assert!(w.end_item().is_err());
        w.start_sequence(0x0008_1115, false);
        assert!(w.end_item().is_err(), "an item end closes no sequence");
        let mut w = ElementWriter::new(Encoding::EXPLICIT_LE);
        w.start_sequence(0x0008_1115, true);
        assert!(matches!(w.finish(), Err(DatasetError::Unclosed { tag: 0x0008_1115, .. })));
        // nothing is taken while a defined length is still to be patched
        let mut w = ElementWriter::new(Encoding::EXPLICIT_LE);
        w.start_sequence(0x0008_1115, false);
        assert!(w.take().is_empty());
        w.end_sequence().unwrap();
        assert_eq!(w.take(), [0x08, 0, 0x15, 0x11, b'S', b'Q', 0, 0, 0, 0, 0, 0]);
    }
}
