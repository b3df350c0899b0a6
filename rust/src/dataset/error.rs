//! [`DatasetError`]: every way a dataset or Part-10 file can be refused.
//! Each variant knows the byte offset (in the decoded stream; for files, in
//! the file) and, where one was being read, the tag.

/// `(GGGG,EEEE)`.
pub fn fmt_tag(tag: u32) -> String {
    format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF)
}

fn elem_name(tag: Option<u32>) -> String {
    match tag {
        Some(t) => format!("element {}", fmt_tag(t)),
        None => "element header".to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{}", self.message(None))]
pub enum DatasetError {
    /// The value (or header) runs past the end of the data or of its container.
    Truncated { tag: Option<u32>, offset: u64, length: u64, size: u64 },
    /// A length that PS3.5 7.1.1 requires to be even (or a multiple of the VR's unit) is not.
    OddLength { tag: u32, offset: u64, length: u64, vr: [u8; 2] },
    /// An undefined-length sequence or item is never closed by its delimiter.
    Unclosed { tag: u32, offset: u64, size: u64 },
    /// Something other than an item (or the right delimiter) where one was required.
    UnexpectedTag { tag: u32, offset: u64, expected: &'static str },
    /// Not a Part-10 file, or its meta group is unusable.
    BadMeta { tag: Option<u32>, offset: u64, detail: String },
    /// The transcoder cannot convert between these syntaxes.
    Unsupported { detail: String },
    /// The deflate stream is corrupt.
    Deflate { offset: u64, detail: String },
    /// Reading or writing failed.
    Io { offset: u64, source: std::io::Error },
    /// A value (or sequence, or item) too long for its length field, when writing.
    TooLong { tag: u32, length: u64, limit: u64 },
}

impl DatasetError {
    pub fn offset(&self) -> Option<u64> {
        match self {
            DatasetError::Truncated { offset, .. }
            | DatasetError::OddLength { offset, .. }
            | DatasetError::Unclosed { offset, .. }
            | DatasetError::UnexpectedTag { offset, .. }
            | DatasetError::BadMeta { offset, .. }
            | DatasetError::Deflate { offset, .. }
            | DatasetError::Io { offset, .. } => Some(*offset),
            DatasetError::Unsupported { .. } | DatasetError::TooLong { .. } => None,
        }
    }

    pub fn tag(&self) -> Option<u32> {
        match self {
            DatasetError::Truncated { tag, .. } | DatasetError::BadMeta { tag, .. } => *tag,
            DatasetError::OddLength { tag, .. }
            | DatasetError::Unclosed { tag, .. }
            | DatasetError::UnexpectedTag { tag, .. }
            | DatasetError::TooLong { tag, .. } => Some(*tag),
            _ => None,
        }
    }

    /// Shift the offset by `base` (a stream's offset inside a file).
    pub fn shifted(mut self, base: u64) -> Self {
        match &mut self {
            DatasetError::Truncated { offset, size, .. } | DatasetError::Unclosed { offset, size, .. } => {
                *offset += base;
                *size += base;
            }
            DatasetError::OddLength { offset, .. }
            | DatasetError::UnexpectedTag { offset, .. }
            | DatasetError::BadMeta { offset, .. }
            | DatasetError::Deflate { offset, .. }
            | DatasetError::Io { offset, .. } => *offset += base,
            DatasetError::Unsupported { .. } | DatasetError::TooLong { .. } => {}
        }
        self
    }

    /// The message, naming the file when `path` is given, e.g.
    /// `truncated element (7FE0,0010) at offset 1234 in /x/y.dcm: length 4294967294 runs past end of data (size 1024)`.
    pub fn message(&self, path: Option<&str>) -> String {
        let inp = path.map(|p| format!(" in {p}")).unwrap_or_default();
        match self {
            DatasetError::Truncated { tag, offset, length, size } => format!(
                "truncated {} at offset {offset}{inp}: length {length} runs past end of data (size {size})",
                elem_name(*tag)
            ),
            DatasetError::OddLength { tag, offset, length, vr } => format!(
                "odd length in element {} at offset {offset}{inp}: length {length} is not a multiple of the {} unit size",
                fmt_tag(*tag),
                String::from_utf8_lossy(vr)
            ),
            DatasetError::Unclosed { tag, offset, size } => format!(
                "unclosed sequence or item {} at offset {offset}{inp}: no delimitation item before end of data (size {size})",
                fmt_tag(*tag)
            ),
            DatasetError::UnexpectedTag { tag, offset, expected } => format!(
                "unexpected tag {} at offset {offset}{inp}: expected {expected}",
                fmt_tag(*tag)
            ),
            DatasetError::BadMeta { tag, offset, detail } => match tag {
                Some(t) => format!("bad file meta element {} at offset {offset}{inp}: {detail}", fmt_tag(*t)),
                None => format!("bad Part-10 file at offset {offset}{inp}: {detail}"),
            },
            DatasetError::Unsupported { detail } => format!("unsupported{inp}: {detail}"),
            DatasetError::Deflate { offset, detail } => {
                format!("corrupt deflate stream at offset {offset}{inp}: {detail}")
            }
            DatasetError::Io { offset, source } => format!("I/O error at offset {offset}{inp}: {source}"),
            DatasetError::TooLong { tag, length, limit } => format!(
                "element {}{inp}: a value of {length} bytes does not fit its length field (at most {limit})",
                fmt_tag(*tag)
            ),
        }
    }
}
