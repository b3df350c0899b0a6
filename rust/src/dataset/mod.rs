//! The data element codec (PS3.5), transcoding between the uncompressed
//! transfer syntaxes, and Part-10 file meta information (PS3.10 7.1).
//!
//! # Design notes
//!
//! * **No Python here.** Everything in this module is plain Rust over byte
//!   slices, `Read`/`Write` streams and small structs, so the network layer
//!   (C-STORE, C-GET, C-MOVE) can move datasets file <-> socket without the GIL,
//!   and `cargo test` runs without an interpreter. `py/codec.rs` is the only
//!   place that knows pydicom exists.
//! * **One element-header reader** (`header.rs`: [`parse_header`], [`read_header`],
//!   [`read_header_from`]) serves every walker here: splitting, the streaming
//!   transcoder, the Part-10 meta reader and the header scan ([`scan`], which reads
//!   the few values the storage SCP and SCU need); `header.rs` also has the one header
//!   writer. [`ElementWriter`] (`write.rs`) writes whole data sets from values (the
//!   encode path of `fastdimse.codec`): headers, padding, sequence and item framing.
//! * **Splitting, not decoding.** [`split_elements`] finds the top-level data
//!   elements of a dataset (tag, VR, length, where the value lies) and nothing
//!   more. Values are handed to pydicom as raw elements and converted lazily on
//!   access, exactly as pydicom's own reader does; a sequence stays one raw SQ
//!   value that pydicom parses when someone reads it. Undefined-length
//!   sequences still have to be walked to find where they end: that walk
//!   ([`skip_undefined_length`]) is iterative with an explicit stack of one byte
//!   per open container, so hostile nesting cannot overflow the call stack and
//!   the stack can never outgrow the input (each level consumes >= 8 bytes).
//! * **Lengths are never trusted.** Every length is checked against the bytes
//!   actually present before anything is sliced; nothing is allocated from a
//!   length field. Errors ([`DatasetError`]) carry the byte offset and the tag.
//!   Where pydicom silently accepts a short read (a truncated last element), we
//!   report an error instead.
//! * **Odd lengths.** PS3.5 7.1.1 requires even value lengths. We reject odd
//!   lengths where they would break the byte layout: binary VRs whose length is
//!   not a multiple of their unit size (US 2, UL 4, FD 8, AT 4, OW 2, ...):
//!   those cannot be byte-swapped or decoded. Odd-length text and OB/UN values,
//!   and the odd item/sequence lengths they cause (a common writer bug, which
//!   pydicom's own writer produces for UN), are passed through.
//! * **Transcoding** ([`Transcoder`]) is a push parser: it keeps one element
//!   header (at most 12 bytes), a stack of open sequences/items, and streams
//!   values through in whatever chunks arrive, swapping bytes per VR unit when
//!   the byte order changes (a unit split across two chunks is carried over).
//!   Memory is bounded by the caller's chunk size plus a few small buffers,
//!   whatever the dataset size. Rules it follows:
//!   - implicit -> explicit takes each VR from the dictionary generated from
//!     pydicom's (see `dictionary.rs`); unknown and private tags become UN,
//!     private creators LO, group lengths UL (PS3.5 6.2.2); the ambiguous VRs
//!     are resolved from Bits Allocated / Pixel Representation seen earlier in
//!     the top-level dataset (US or SS -> SS only for Pixel Representation 1;
//!     "OB or OW" -> OW, as PS3.5 A.1 says pixel data read without a VR is).
//!   - a value longer than 0xFFFF bytes whose VR has a 2-byte length field in
//!     explicit VR is written as UN (PS3.5 6.2.2 allows this; pydicom does the
//!     same) instead of failing.
//!   - when header sizes change (implicit <-> explicit) the lengths of defined-
//!     length sequences and items would change too, and a bounded-memory stream
//!     cannot know them in advance: such containers are written with undefined
//!     length and delimitation items, which PS3.5 7.5 allows everywhere.
//!     Group length elements (gggg,0000), retired outside groups 0000/0002,
//!     would be stale and are dropped in that case. Explicit LE <-> BE keeps
//!     every length as it is.
//!   - UN values are copied as they are (their content is little-endian
//!     implicit VR by definition); an undefined-length UN is read as a sequence.
//!   - encapsulated pixel data (undefined-length, item fragments with the basic
//!     offset table first) passes through untouched. Encapsulated (compressed)
//!     transfer syntaxes themselves are only ever copied (from == to).
//!   - deflate (1.2.840.10008.1.2.1.99) is raw deflate (no zlib header) via
//!     flate2, on the input side, the output side, or both.
//! * **Part 10** ([`read_part10_meta`], [`write_part10_meta`]): the meta group
//!   is always explicit VR little endian with a computed (0002,0000) group
//!   length; reading stops at the first non-0002 tag and reports the offset
//!   where the dataset begins, so a sender can stream the rest untouched.

pub mod coerce;
mod dictionary;
mod error;
mod header;
mod part10;
pub mod scan;
mod split;
mod transcode;
mod write;
#[cfg(test)]
mod tests;

pub use coerce::{coerce_header, CoercedHeader, Coercion};
pub use dictionary::{explicit_vr_for, is_sequence, lookup as dictionary_lookup, DictVr, VrContext};
pub use error::{fmt_tag, DatasetError};
pub use part10::{
    parse_part10_meta, parse_part10_meta_lenient, read_part10_meta, read_part10_meta_path, transcode_file, write_part10_meta, FileMeta,
    MetaElement, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME,
};
pub use header::{parse_header, read_header, read_header_from, tag_of, write_element_header, Header, Need, StreamHeader};
pub use split::{check_value_length, skip_undefined_item, skip_undefined_length, split_elements, split_items, RawElement, RawItem};
pub use transcode::{transcode, transcode_stream, Transcoder};
pub use write::{pad_byte, ElementWriter};

/// Transfer syntax UIDs this module knows by name (from [`crate::uid`]).
pub mod uids {
    pub use crate::uid::{DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE};
}

pub const TAG_ITEM: u32 = 0xFFFE_E000;
pub const TAG_ITEM_DELIMITER: u32 = 0xFFFE_E00D;
pub const TAG_SEQUENCE_DELIMITER: u32 = 0xFFFE_E0DD;
pub const TAG_PIXEL_DATA: u32 = 0x7FE0_0010;
pub const UNDEFINED_LENGTH: u32 = 0xFFFF_FFFF;

/// How a dataset's elements are encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Encoding {
    pub implicit_vr: bool,
    pub little_endian: bool,
}

impl Encoding {
    pub const IMPLICIT_LE: Encoding = Encoding { implicit_vr: true, little_endian: true };
    pub const EXPLICIT_LE: Encoding = Encoding { implicit_vr: false, little_endian: true };
    pub const EXPLICIT_BE: Encoding = Encoding { implicit_vr: false, little_endian: false };
}

/// A transfer syntax as the codec sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferSyntax {
    ImplicitVrLittleEndian,
    ExplicitVrLittleEndian,
    ExplicitVrBigEndian,
    DeflatedExplicitVrLittleEndian,
    /// Any other UID: explicit VR little endian with (usually) encapsulated
    /// pixel data; the codec never changes its bytes.
    Encapsulated,
}

impl TransferSyntax {
    /// Classify a UID (trailing NUL/space padding is ignored).
    pub fn from_uid(uid: &str) -> TransferSyntax {
        match uid.trim_end_matches(['\0', ' ']) {
            uids::IMPLICIT_VR_LE => TransferSyntax::ImplicitVrLittleEndian,
            uids::EXPLICIT_VR_LE => TransferSyntax::ExplicitVrLittleEndian,
            uids::EXPLICIT_VR_BE => TransferSyntax::ExplicitVrBigEndian,
            uids::DEFLATED_EXPLICIT_VR_LE => TransferSyntax::DeflatedExplicitVrLittleEndian,
            _ => TransferSyntax::Encapsulated,
        }
    }

    pub fn encoding(self) -> Encoding {
        match self {
            TransferSyntax::ImplicitVrLittleEndian => Encoding::IMPLICIT_LE,
            TransferSyntax::ExplicitVrBigEndian => Encoding::EXPLICIT_BE,
            _ => Encoding::EXPLICIT_LE,
        }
    }

    pub fn is_deflated(self) -> bool {
        self == TransferSyntax::DeflatedExplicitVrLittleEndian
    }

    /// True for the four syntaxes the transcoder can convert between.
    pub fn is_uncompressed(self) -> bool {
        self != TransferSyntax::Encapsulated
    }
}

/// VRs whose explicit-VR header has 2 reserved bytes and a 4-byte length.
pub fn has_long_length(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB" | b"OD" | b"OF" | b"OL" | b"OV" | b"OW" | b"SQ" | b"SV" | b"UC" | b"UN" | b"UR"
            | b"UT" | b"UV"
    )
}

/// Size of the unit whose bytes are swapped between little and big endian
/// (0: a byte string, nothing to swap). AT is a pair of 16-bit numbers.
pub fn swap_unit(vr: [u8; 2]) -> usize {
    match &vr {
        b"US" | b"SS" | b"OW" | b"AT" => 2,
        b"UL" | b"SL" | b"FL" | b"OF" | b"OL" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 0,
    }
}

/// True when the two bytes can be a VR (two upper-case letters).
pub fn is_vr(b: [u8; 2]) -> bool {
    b[0].is_ascii_uppercase() && b[1].is_ascii_uppercase()
}
