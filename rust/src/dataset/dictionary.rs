//! Tag -> VR lookups, from the table generated out of pydicom's data dictionary
//! (`gen_dictionary.py` writes `dictionary.txt`; nothing here is typed by hand).
//!
//! The text table is embedded and parsed at compile time (`const fn`) into two sorted
//! arrays, so a lookup is a binary search over `(u32, DictVr)` pairs with no start-up
//! cost; a malformed table is a compile error, never a run-time one.

/// The table `gen_dictionary.py` writes (its format is described there).
const TABLE: &[u8] = include_bytes!("dictionary.txt");
/// Bytes of one entry line: "TTTTTTTT VR\n".
const LINE: usize = 12;

/// `(start of the first entry line, number of standard entries, number of repeaters)`.
const fn layout() -> (usize, usize, usize) {
    let mut pos = 0;
    // comment lines
    while pos < TABLE.len() && TABLE[pos] == b'#' {
        while pos < TABLE.len() && TABLE[pos] != b'\n' {
            pos += 1;
        }
        pos += 1;
    }
    let start = pos;
    assert!((TABLE.len() - start) % LINE == 0, "dictionary.txt: every entry line is 12 bytes");
    let (mut entries, mut repeaters) = (0, 0);
    while pos < TABLE.len() {
        if is_repeater(pos) {
            repeaters += 1;
        } else {
            assert!(repeaters == 0, "dictionary.txt: repeaters come after the standard entries");
            entries += 1;
        }
        pos += LINE;
    }
    (start, entries, repeaters)
}

const fn is_repeater(line: usize) -> bool {
    let mut i = 0;
    while i < 8 {
        if TABLE[line + i] == b'x' {
            return true;
        }
        i += 1;
    }
    false
}

/// `(value, mask)` of the tag of the line at `line` ("x" digits are 0 in both).
const fn parse_tag(line: usize) -> (u32, u32) {
    let (mut value, mut mask) = (0u32, 0u32);
    let mut i = 0;
    while i < 8 {
        let (digit, m) = match TABLE[line + i] {
            c @ b'0'..=b'9' => ((c - b'0') as u32, 0xF),
            c @ b'A'..=b'F' => ((c - b'A' + 10) as u32, 0xF),
            b'x' => (0, 0),
            _ => panic!("dictionary.txt: a tag is 8 hex digits"),
        };
        value = (value << 4) | digit;
        mask = (mask << 4) | m;
        i += 1;
    }
    assert!(TABLE[line + 8] == b' ' && TABLE[line + 11] == b'\n', "dictionary.txt: malformed line");
    (value, mask)
}

const fn parse_vr(line: usize) -> DictVr {
    let vr = [TABLE[line + 9], TABLE[line + 10]];
    match &vr {
        b"ss" => DictVr::UsOrSs,
        b"ow" => DictVr::ObOrOw,
        b"sw" => DictVr::UsOrSsOrOw,
        b"uw" => DictVr::UsOrOw,
        b"--" => DictVr::None,
        _ => {
            assert!(vr[0].is_ascii_uppercase() && vr[1].is_ascii_uppercase(), "dictionary.txt: unknown VR code");
            DictVr::Exact(vr)
        }
    }
}

const LAYOUT: (usize, usize, usize) = layout();

const fn entries() -> [(u32, DictVr); LAYOUT.1] {
    let mut out = [(0u32, DictVr::None); LAYOUT.1];
    let mut i = 0;
    while i < LAYOUT.1 {
        let line = LAYOUT.0 + i * LINE;
        out[i] = (parse_tag(line).0, parse_vr(line));
        assert!(i == 0 || out[i - 1].0 < out[i].0, "dictionary.txt: entries sorted by tag");
        i += 1;
    }
    out
}

const fn repeaters() -> [(u32, u32, DictVr); LAYOUT.2] {
    let mut out = [(0u32, 0u32, DictVr::None); LAYOUT.2];
    let mut i = 0;
    while i < LAYOUT.2 {
        let line = LAYOUT.0 + (LAYOUT.1 + i) * LINE;
        let (value, mask) = parse_tag(line);
        out[i] = (value, mask, parse_vr(line));
        i += 1;
    }
    out
}

/// (tag, VR) of the standard elements, sorted by tag.
static ENTRIES: [(u32, DictVr); LAYOUT.1] = entries();
/// Repeating groups/elements: (value, mask, VR); a tag t matches when t & mask == value.
static REPEATERS: [(u32, u32, DictVr); LAYOUT.2] = repeaters();

/// A VR as the data dictionary states it: exact, or one of PS3.6's ambiguous forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DictVr {
    Exact([u8; 2]),
    UsOrSs,
    ObOrOw,
    UsOrSsOrOw,
    UsOrOw,
    /// Item and delimitation tags (FFFE,xxxx): no VR at all.
    None,
}

/// The dictionary VR of a standard element, `None` when the tag is not in the
/// standard dictionary (private elements, unknown tags).
pub fn lookup(tag: u32) -> Option<DictVr> {
    if let Ok(i) = ENTRIES.binary_search_by_key(&tag, |e| e.0) {
        return Some(ENTRIES[i].1);
    }
    if (tag >> 16) & 1 == 0 {
        for &(value, mask, vr) in REPEATERS.iter() {
            if tag & mask == value {
                return Some(vr);
            }
        }
    }
    None
}

/// Context that resolves the ambiguous VRs (taken from the dataset being read).
#[derive(Clone, Copy, Debug, Default)]
pub struct VrContext {
    pub bits_allocated: Option<u16>,
    pub pixel_representation: Option<u16>,
}

/// The VR to write in an explicit VR encoding for an element read without one
/// (implicit VR): the dictionary's, with ambiguity resolved from `ctx`; private
/// creators (gggg,0010-00FF, odd gggg) are LO, group lengths UL, and everything
/// the dictionary does not know is UN (PS3.5 6.2.2). `ctx.bits_allocated` is
/// kept for callers, but "OB or OW" elements read from implicit VR are OW.
pub fn explicit_vr_for(tag: u32, ctx: &VrContext) -> [u8; 2] {
    let group = tag >> 16;
    let elem = tag & 0xFFFF;
    if elem == 0 {
        return *b"UL";
    }
    if group & 1 == 1 {
        if (0x0010..=0x00FF).contains(&elem) {
            return *b"LO";
        }
        return *b"UN";
    }
    match lookup(tag) {
        Some(DictVr::Exact(vr)) => vr,
        Some(DictVr::UsOrSs) => {
            if ctx.pixel_representation == Some(1) {
                *b"SS"
            } else {
                *b"US"
            }
        }
        // Read without a VR, pixel data is OW (PS3.5 A.1), and so are the
        // waveform and overlay data (pydicom resolves them the same way).
        Some(DictVr::ObOrOw) => *b"OW",
        Some(DictVr::UsOrSsOrOw) | Some(DictVr::UsOrOw) => *b"OW",
        Some(DictVr::None) | None => *b"UN",
    }
}

/// True when the dictionary says this tag is a sequence.
pub fn is_sequence(tag: u32) -> bool {
    matches!(lookup(tag), Some(DictVr::Exact(vr)) if &vr == b"SQ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_dictionary_lookups() {
        assert_eq!(lookup(0x0010_0010), Some(DictVr::Exact(*b"PN")));
        assert_eq!(lookup(0x3006_0039), Some(DictVr::Exact(*b"SQ")));
        assert_eq!(lookup(0x7FE0_0010), Some(DictVr::ObOrOw));
        // repeating group 60xx
        assert_eq!(lookup(0x6002_3000), Some(DictVr::ObOrOw));
        assert_eq!(lookup(0x6002_0010), Some(DictVr::Exact(*b"US")));
        assert_eq!(lookup(0x0009_1001), None);
        let ctx = VrContext::default();
        assert_eq!(&explicit_vr_for(0x0009_0010, &ctx), b"LO");
        assert_eq!(&explicit_vr_for(0x0009_1001, &ctx), b"UN");
        assert_eq!(&explicit_vr_for(0x0008_0000, &ctx), b"UL");
        assert_eq!(&explicit_vr_for(0x7FE0_0010, &ctx), b"OW");
        let ctx8 = VrContext { bits_allocated: Some(8), pixel_representation: Some(1) };
        assert_eq!(&explicit_vr_for(0x7FE0_0010, &ctx8), b"OW");
        assert_eq!(&explicit_vr_for(0x0028_0106, &ctx8), b"SS");
        assert!(is_sequence(0x0008_1115));
    }

    #[test]
    fn dataset_dictionary_table_is_parsed_whole() {
        assert_eq!(ENTRIES.len(), 5091);
        assert_eq!(REPEATERS.len(), 88);
        assert_eq!(ENTRIES[0], (0x0000_0000, DictVr::Exact(*b"UL")));
        assert_eq!(REPEATERS.last().copied(), Some((0x7F00_0040, 0xFF00_FFFF, DictVr::Exact(*b"OW"))));
        assert_eq!(lookup(0xFFFE_E000), Some(DictVr::None));
        assert_eq!(lookup(0x0028_1200), Some(DictVr::UsOrSsOrOw));
        assert_eq!(lookup(0x0020_3100), Some(DictVr::Exact(*b"CS")));
    }
}
