//! Tag -> VR lookups, from the table generated out of pydicom's data dictionary
//! (`gen_dictionary.py` writes `dictionary_gen.rs`; nothing here is typed by hand).

use super::dictionary_gen::{ENTRIES, REPEATERS};

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
        for &(value, mask, vr) in REPEATERS {
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
}
