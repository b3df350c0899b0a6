//! Part-10 file meta information (PS3.10 7.1): read it without touching the
//! dataset that follows, and write it.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::dictionary::{self, DictVr};
use super::header::{read_header_from, write_element_header, StreamHeader};
use super::{has_long_length, DatasetError, Encoding};

pub use crate::uid::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// One file meta element as stored (value bytes with their padding).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaElement {
    pub tag: u32,
    pub vr: [u8; 2],
    pub value: Vec<u8>,
}

/// The file meta information group. The named fields are the commonly used
/// elements, decoded (padding removed); `elements` holds every element read
/// (or extra ones to write) with its raw value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileMeta {
    pub transfer_syntax: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub implementation_class_uid: String,
    pub implementation_version_name: Option<String>,
    pub source_ae_title: Option<String>,
    /// All elements of group 0002 in file order (when read). When writing,
    /// elements here other than the ones the named fields produce (and the
    /// group length, which is always computed) are written too, in tag order.
    pub elements: Vec<MetaElement>,
}

const TAG_GROUP_LENGTH: u32 = 0x0002_0000;
const TAG_VERSION: u32 = 0x0002_0001;
const TAG_SOP_CLASS: u32 = 0x0002_0002;
const TAG_SOP_INSTANCE: u32 = 0x0002_0003;
const TAG_TS: u32 = 0x0002_0010;
const TAG_IMPL_CLASS: u32 = 0x0002_0012;
const TAG_IMPL_VERSION: u32 = 0x0002_0013;
const TAG_SOURCE_AE: u32 = 0x0002_0016;

fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).trim_end_matches(['\0', ' ']).trim_start_matches(' ').to_string()
}

impl FileMeta {
    /// Meta information for a new file, with fastdimse's implementation class
    /// UID and version name.
    pub fn new(sop_class_uid: &str, sop_instance_uid: &str, transfer_syntax: &str) -> FileMeta {
        FileMeta {
            transfer_syntax: transfer_syntax.to_string(),
            sop_class_uid: sop_class_uid.to_string(),
            sop_instance_uid: sop_instance_uid.to_string(),
            implementation_class_uid: IMPLEMENTATION_CLASS_UID.to_string(),
            implementation_version_name: Some(IMPLEMENTATION_VERSION_NAME.to_string()),
            source_ae_title: None,
            elements: Vec::new(),
        }
    }

    /// The raw element with this tag, if it was read.
    pub fn element(&self, tag: u32) -> Option<&MetaElement> {
        self.elements.iter().find(|e| e.tag == tag)
    }

    fn from_elements(elements: Vec<MetaElement>, offset: u64, require_ts: bool) -> Result<FileMeta, DatasetError> {
        let get = |tag: u32| elements.iter().find(|e| e.tag == tag).map(|e| text(&e.value));
        let transfer_syntax = match get(TAG_TS) {
            Some(ts) => ts,
            None if !require_ts => String::new(),
            None => {
                return Err(DatasetError::BadMeta {
                    tag: Some(TAG_TS),
                    offset,
                    detail: "the file meta information has no Transfer Syntax UID".into(),
                })
            }
        };
        Ok(FileMeta {
            transfer_syntax,
            sop_class_uid: get(TAG_SOP_CLASS).unwrap_or_default(),
            sop_instance_uid: get(TAG_SOP_INSTANCE).unwrap_or_default(),
            implementation_class_uid: get(TAG_IMPL_CLASS).unwrap_or_default(),
            implementation_version_name: get(TAG_IMPL_VERSION),
            source_ae_title: get(TAG_SOURCE_AE),
            elements,
        })
    }
}

/// Read the 128-byte preamble, "DICM" and the meta group from `r` (positioned
/// at the start of the file). Returns the meta information and the offset of
/// the first dataset byte; `r` is left positioned there. A meta group
/// without (0002,0010) Transfer Syntax UID is an error.
pub fn read_part10_meta<R: Read + Seek>(r: &mut R) -> Result<(FileMeta, u64), DatasetError> {
    read_meta_impl(r, true)
}

/// As [`parse_part10_meta`], but a missing Transfer Syntax UID leaves
/// `transfer_syntax` empty (the caller guesses, as pydicom does).
pub fn parse_part10_meta_lenient(data: &[u8]) -> Result<(FileMeta, u64), DatasetError> {
    read_meta_impl(&mut std::io::Cursor::new(data), false)
}

fn read_meta_impl<R: Read + Seek>(r: &mut R, require_ts: bool) -> Result<(FileMeta, u64), DatasetError> {
    let io = |offset: u64| move |source: std::io::Error| DatasetError::Io { offset, source };
    let mut pre = [0u8; 132];
    let got = read_full(r, &mut pre).map_err(io(0))?;
    if got < 132 || &pre[128..132] != b"DICM" {
        return Err(DatasetError::BadMeta {
            tag: None,
            offset: 128,
            detail: "not a DICOM Part-10 file: no \"DICM\" after the 128-byte preamble".into(),
        });
    }
    let mut pos = 132u64;
    let mut elements = Vec::new();
    loop {
        let h = match read_header_from(r, Encoding::EXPLICIT_LE).map_err(io(pos))? {
            StreamHeader::End => break, // a file with meta information and an empty dataset
            StreamHeader::Header(h) => h,
            // cut inside the 4-byte length of a long explicit VR header
            StreamHeader::Truncated { got, tag: Some(tag) } if got >= 8 => {
                if tag >> 16 == 0x0002 {
                    return Err(DatasetError::Truncated { tag: Some(tag), offset: pos, length: 12, size: pos + got as u64 });
                }
                r.seek(SeekFrom::Start(pos)).map_err(io(pos))?; // the dataset's first element
                break;
            }
            StreamHeader::Truncated { got, .. } => {
                return Err(DatasetError::Truncated { tag: None, offset: pos, length: 8, size: pos + got as u64 });
            }
        };
        let tag = h.tag;
        if tag >> 16 != 0x0002 {
            r.seek(SeekFrom::Start(pos)).map_err(io(pos))?;
            break;
        }
        let vr = match h.vr {
            Some(vr) => vr,
            // Implicit VR meta (non-conformant, but seen): VR from the dictionary.
            None => match dictionary::lookup(tag) {
                Some(DictVr::Exact(vr)) => vr,
                _ => *b"UN",
            },
        };
        let (length, header_len) = (h.length, h.header_len as u64);
        if length == super::UNDEFINED_LENGTH {
            return Err(DatasetError::BadMeta {
                tag: Some(tag),
                offset: pos,
                detail: "undefined length in the file meta information".into(),
            });
        }
        // Never allocate from the length field: read what is actually there.
        let mut value = Vec::new();
        let got = r.by_ref().take(length as u64).read_to_end(&mut value).map_err(io(pos))?;
        if (got as u64) < length as u64 {
            return Err(DatasetError::Truncated {
                tag: Some(tag),
                offset: pos,
                length: length as u64,
                size: pos + header_len + got as u64,
            });
        }
        pos += header_len + length as u64;
        elements.push(MetaElement { tag, vr, value });
    }
    let meta = FileMeta::from_elements(elements, 132, require_ts)?;
    Ok((meta, pos))
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// [`read_part10_meta`] on a file path (reads only the meta group).
pub fn read_part10_meta_path(path: &Path) -> Result<(FileMeta, u64), DatasetError> {
    let f = std::fs::File::open(path).map_err(|source| DatasetError::Io { offset: 0, source })?;
    let mut r = std::io::BufReader::with_capacity(8192, f);
    read_part10_meta(&mut r)
}

/// [`read_part10_meta`] on a file held in memory.
pub fn parse_part10_meta(data: &[u8]) -> Result<(FileMeta, u64), DatasetError> {
    read_part10_meta(&mut std::io::Cursor::new(data))
}

fn padded(value: &str, pad: u8) -> Vec<u8> {
    let mut v = value.as_bytes().to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    v
}

/// Write preamble (128 zero bytes), "DICM" and the meta group: group length,
/// version 00 01, media storage SOP class/instance, transfer syntax,
/// implementation class UID / version name, source AE title, then any other
/// element of `meta.elements`. Returns the number of bytes written (the
/// dataset starts right after).
pub fn write_part10_meta<W: Write>(w: &mut W, meta: &FileMeta) -> Result<u64, DatasetError> {
    let mut elems: Vec<MetaElement> = Vec::new();
    let version = meta.element(TAG_VERSION).map(|e| e.value.clone()).unwrap_or_else(|| vec![0, 1]);
    elems.push(MetaElement { tag: TAG_VERSION, vr: *b"OB", value: version });
    elems.push(MetaElement { tag: TAG_SOP_CLASS, vr: *b"UI", value: padded(&meta.sop_class_uid, 0) });
    elems.push(MetaElement { tag: TAG_SOP_INSTANCE, vr: *b"UI", value: padded(&meta.sop_instance_uid, 0) });
    elems.push(MetaElement { tag: TAG_TS, vr: *b"UI", value: padded(&meta.transfer_syntax, 0) });
    let impl_uid = if meta.implementation_class_uid.is_empty() {
        IMPLEMENTATION_CLASS_UID
    } else {
        meta.implementation_class_uid.as_str()
    };
    elems.push(MetaElement { tag: TAG_IMPL_CLASS, vr: *b"UI", value: padded(impl_uid, 0) });
    if let Some(v) = &meta.implementation_version_name {
        elems.push(MetaElement { tag: TAG_IMPL_VERSION, vr: *b"SH", value: padded(v, b' ') });
    }
    if let Some(ae) = &meta.source_ae_title {
        elems.push(MetaElement { tag: TAG_SOURCE_AE, vr: *b"AE", value: padded(ae, b' ') });
    }
    for e in &meta.elements {
        if e.tag >> 16 == 0x0002 && !elems.iter().any(|x| x.tag == e.tag) && e.tag != TAG_GROUP_LENGTH {
            elems.push(e.clone());
        }
    }
    elems.sort_by_key(|e| e.tag);
    let mut body = Vec::with_capacity(256);
    for e in &elems {
        if !has_long_length(e.vr) && e.value.len() > 0xFFFF {
            return Err(DatasetError::BadMeta {
                tag: Some(e.tag),
                offset: 0,
                detail: format!("value of {} bytes does not fit a 2-byte length", e.value.len()),
            });
        }
        write_element_header(&mut body, Encoding::EXPLICIT_LE, e.tag, Some(e.vr), e.value.len() as u32);
        body.extend_from_slice(&e.value);
    }
    let mut head = Vec::with_capacity(144 + body.len());
    head.extend_from_slice(&[0u8; 128]);
    head.extend_from_slice(b"DICM");
    write_element_header(&mut head, Encoding::EXPLICIT_LE, TAG_GROUP_LENGTH, Some(*b"UL"), 4);
    head.extend_from_slice(&(body.len() as u32).to_le_bytes());
    head.extend_from_slice(&body);
    w.write_all(&head).map_err(|source| DatasetError::Io { offset: 0, source })?;
    Ok(head.len() as u64)
}

/// Rewrite the Part-10 file `src` as `dst` in transfer syntax `to_uid`, in
/// bounded memory (64 KiB chunks through a [`super::Transcoder`]). The new meta
/// group names fastdimse as the implementation; `source_ae_title`, when
/// given, replaces (0002,0016). Returns the number of bytes written. On
/// error the partly written `dst` is removed.
pub fn transcode_file(
    src: &Path,
    dst: &Path,
    to_uid: &str,
    source_ae_title: Option<&str>,
) -> Result<u64, DatasetError> {
    let result = transcode_file_inner(src, dst, to_uid, source_ae_title);
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

fn transcode_file_inner(
    src: &Path,
    dst: &Path,
    to_uid: &str,
    source_ae_title: Option<&str>,
) -> Result<u64, DatasetError> {
    let f = std::fs::File::open(src).map_err(|source| DatasetError::Io { offset: 0, source })?;
    let mut r = std::io::BufReader::with_capacity(64 * 1024, f);
    let (mut meta, offset) = read_part10_meta(&mut r)?;
    let mut t = super::Transcoder::new(&meta.transfer_syntax, to_uid)?;
    t.set_base_offset(offset);
    meta.transfer_syntax = to_uid.to_string();
    meta.implementation_class_uid = IMPLEMENTATION_CLASS_UID.to_string();
    meta.implementation_version_name = Some(IMPLEMENTATION_VERSION_NAME.to_string());
    if let Some(ae) = source_ae_title {
        meta.source_ae_title = Some(ae.to_string());
    }
    let out_file = std::fs::File::create(dst).map_err(|source| DatasetError::Io { offset: 0, source })?;
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, out_file);
    let written = write_part10_meta(&mut w, &meta)?;
    let (body, pos) = t.pump(&mut r, &mut w, offset)?;
    w.flush().map_err(|source| DatasetError::Io { offset: pos, source })?;
    Ok(written + body)
}
