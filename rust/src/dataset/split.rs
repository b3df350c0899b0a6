//! Splitting a dataset into its top-level elements (the decode path).

use super::dictionary::{self, DictVr};
use super::header::read_header;
use super::{swap_unit, DatasetError, Encoding, TAG_ITEM, TAG_ITEM_DELIMITER, TAG_PIXEL_DATA, TAG_SEQUENCE_DELIMITER, UNDEFINED_LENGTH};

/// A top-level element: where its value lies in the data that was split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawElement {
    pub tag: u32,
    /// Explicit VR as read (an undefined-length UN holds a sequence, PS3.5
    /// 6.2.2); in implicit VR `Some(SQ)` for an undefined-length sequence,
    /// else `None`.
    pub vr: Option<[u8; 2]>,
    /// The length field as written (0xFFFFFFFF: undefined).
    pub length: u32,
    pub header_offset: usize,
    pub value_start: usize,
    /// Exclusive; for undefined lengths, the offset of the sequence delimiter.
    pub value_end: usize,
}

/// Check a defined value length against its VR's unit size (US 2, UL 4, AT 4,
/// FD 8, ...; in implicit VR the dictionary's VR): [`DatasetError::OddLength`]
/// otherwise. `offset` names the element header in the error.
pub fn check_value_length(tag: u32, vr: Option<[u8; 2]>, length: u32, offset: usize) -> Result<(), DatasetError> {
    let vr = match vr {
        Some(vr) => vr,
        None => match dictionary::lookup(tag) {
            Some(DictVr::Exact(vr)) => vr,
            _ => return Ok(()),
        },
    };
    let unit = match &vr {
        b"AT" => 4,
        _ => swap_unit(vr),
    };
    if unit > 1 && length as usize % unit != 0 {
        return Err(DatasetError::OddLength { tag, offset: offset as u64, length: length as u64, vr });
    }
    Ok(())
}

/// Walk the content of an undefined-length sequence (or of encapsulated pixel
/// data: the same layout of items) that starts at `start`, and return the
/// offset of the sequence delimitation item that closes it. `tag` and
/// `header_offset` name the element in errors. Iterative: no recursion.
pub fn skip_undefined_length(
    data: &[u8],
    start: usize,
    enc: Encoding,
    tag: u32,
    header_offset: usize,
) -> Result<usize, DatasetError> {
    skip_container(data, start, enc, tag, header_offset, false)
}

/// Like [`skip_undefined_length`] for the content of one undefined-length item:
/// returns the offset of the item delimitation item that closes it.
pub fn skip_undefined_item(data: &[u8], start: usize, enc: Encoding, header_offset: usize) -> Result<usize, DatasetError> {
    skip_container(data, start, enc, TAG_ITEM, header_offset, true)
}

fn skip_container(
    data: &[u8],
    start: usize,
    enc: Encoding,
    tag: u32,
    header_offset: usize,
    item: bool,
) -> Result<usize, DatasetError> {
    // One entry per open container: false = a sequence (items expected),
    // true = an undefined-length item (elements expected).
    let mut stack: Vec<bool> = vec![item];
    // Where each open container began, for error messages (tag, offset).
    let mut opened: Vec<(u32, usize)> = vec![(tag, header_offset)];
    let size = data.len() as u64;
    let mut pos = start;
    loop {
        let in_item = match stack.last() {
            Some(&b) => b,
            None => return Ok(pos),
        };
        if data.len().saturating_sub(pos) < 8 {
            let (t, o) = opened.last().copied().unwrap_or((tag, header_offset));
            return Err(DatasetError::Unclosed { tag: t, offset: o as u64, size });
        }
        let h = read_header(data, pos, enc)?;
        let value_start = pos + h.header_len;
        let descend = match (in_item, h.tag) {
            (false, TAG_ITEM) => true,
            (true, TAG_ITEM) | (true, TAG_SEQUENCE_DELIMITER) | (true, TAG_ITEM_DELIMITER) => false,
            (false, _) => false,
            (true, _) => true,
        };
        if descend {
            if h.length == UNDEFINED_LENGTH {
                stack.push(!in_item);
                opened.push((h.tag, pos));
                pos = value_start;
            } else {
                if in_item {
                    check_value_length(h.tag, h.vr, h.length, pos)?;
                }
                let end = value_start as u64 + h.length as u64;
                if end > size {
                    return Err(DatasetError::Truncated {
                        tag: Some(h.tag),
                        offset: pos as u64,
                        length: h.length as u64,
                        size,
                    });
                }
                pos = end as usize;
            }
            continue;
        }
        match (in_item, h.tag) {
            (false, TAG_SEQUENCE_DELIMITER) | (true, TAG_ITEM_DELIMITER) => {
                stack.pop();
                opened.pop();
                if stack.is_empty() {
                    return Ok(pos);
                }
                pos = value_start;
            }
            (false, t) => {
                return Err(DatasetError::UnexpectedTag {
                    tag: t,
                    offset: pos as u64,
                    expected: "an item (FFFE,E000) or sequence delimiter (FFFE,E0DD)",
                })
            }
            (true, t) => {
                return Err(DatasetError::UnexpectedTag {
                    tag: t,
                    offset: pos as u64,
                    expected: "a data element or item delimiter (FFFE,E00D)",
                })
            }
        }
    }
}

/// Split `data` (one dataset, no file meta) into its top-level elements.
/// Errors carry offsets relative to `data`; callers add their base offset
/// with [`DatasetError::shifted`].
pub fn split_elements(data: &[u8], enc: Encoding) -> Result<Vec<RawElement>, DatasetError> {
    let mut out = Vec::new();
    let size = data.len() as u64;
    let mut pos = 0usize;
    while pos < data.len() {
        let h = read_header(data, pos, enc)?;
        if h.tag >> 16 == 0xFFFE {
            return Err(DatasetError::UnexpectedTag {
                tag: h.tag,
                offset: pos as u64,
                expected: "a data element (items and delimiters belong inside sequences)",
            });
        }
        let value_start = pos + h.header_len;
        if h.length == UNDEFINED_LENGTH {
            let end = skip_undefined_length(data, value_start, enc, h.tag, pos)?;
            let vr = match h.vr {
                Some(vr) => Some(vr),
                None if h.tag == TAG_PIXEL_DATA => None,
                None => match dictionary::lookup(h.tag) {
                    Some(DictVr::Exact(vr)) if &vr == b"SQ" => Some(vr),
                    Some(_) => None,
                    None => {
                        let first_is_item = data.len() >= value_start + 4
                            && read_header(data, value_start, enc).map(|n| n.tag == TAG_ITEM).unwrap_or(false);
                        if first_is_item { Some(*b"SQ") } else { None }
                    }
                },
            };
            out.push(RawElement { tag: h.tag, vr, length: h.length, header_offset: pos, value_start, value_end: end });
            pos = end + 8;
        } else {
            check_value_length(h.tag, h.vr, h.length, pos)?;
            let end = value_start as u64 + h.length as u64;
            if end > size {
                return Err(DatasetError::Truncated { tag: Some(h.tag), offset: pos as u64, length: h.length as u64, size });
            }
            out.push(RawElement {
                tag: h.tag,
                vr: h.vr,
                length: h.length,
                header_offset: pos,
                value_start,
                value_end: end as usize,
            });
            pos = end as usize;
        }
    }
    Ok(out)
}

/// One item of a sequence: where its header is and its top-level elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawItem {
    /// Offset of the item's (FFFE,E000) header.
    pub offset: usize,
    pub undefined_length: bool,
    /// Offsets relative to the data that was split (not to the item).
    pub elements: Vec<RawElement>,
}

/// Split the value of a sequence (its items, without the closing sequence delimiter
/// of an undefined-length sequence) into items and each item's top-level elements.
/// `Ok(None)` when the value is not plainly regular — something other than an item
/// where an item belongs, an element whose VR letters are missing in explicit VR, or an
/// undefined-length UN: such values are left to a reader that knows every quirk.
pub fn split_items(data: &[u8], enc: Encoding) -> Result<Option<Vec<RawItem>>, DatasetError> {
    let mut items = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let h = read_header(data, pos, enc)?;
        if h.tag == TAG_SEQUENCE_DELIMITER {
            break;
        }
        if h.tag != TAG_ITEM {
            return Ok(None);
        }
        let start = pos + h.header_len;
        let (end, next) = if h.length == UNDEFINED_LENGTH {
            let end = skip_undefined_item(data, start, enc, pos)?;
            (end, end + 8)
        } else {
            let end = start as u64 + h.length as u64;
            if end > data.len() as u64 {
                return Err(DatasetError::Truncated { tag: Some(h.tag), offset: pos as u64, length: h.length as u64, size: data.len() as u64 });
            }
            (end as usize, end as usize)
        };
        let mut elements = split_elements(&data[start..end], enc).map_err(|e| e.shifted(start as u64))?;
        for el in &mut elements {
            let irregular = (el.vr.is_none() && !enc.implicit_vr && el.tag != TAG_PIXEL_DATA)
                || (el.length == UNDEFINED_LENGTH && el.vr == Some(*b"UN"));
            if irregular {
                return Ok(None);
            }
            el.header_offset += start;
            el.value_start += start;
            el.value_end += start;
        }
        items.push(RawItem { offset: pos, undefined_length: h.length == UNDEFINED_LENGTH, elements });
        pos = next;
    }
    Ok(Some(items))
}
