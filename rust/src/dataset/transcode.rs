//! Streaming transcoder between the uncompressed transfer syntaxes.
//! See the module notes in `mod.rs` for the rules it follows.

use std::io::{Read, Write};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::{explicit_vr_for, VrContext};
use super::header::{parse_header, write_element_header, Header, Need};
use super::{
    has_long_length, swap_unit, DatasetError, Encoding, TransferSyntax, TAG_ITEM, TAG_ITEM_DELIMITER, TAG_PIXEL_DATA,
    TAG_SEQUENCE_DELIMITER, UNDEFINED_LENGTH,
};

const CHUNK: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sequence,
    Item,
    /// Encapsulated pixel data: items are fragments, copied as they are.
    Fragments,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    kind: Kind,
    /// Input offset where a defined-length container ends.
    end: Option<u64>,
    tag: u32,
    offset: u64,
    /// We wrote it with undefined length: close it with a delimiter.
    out_undefined: bool,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Header,
    Value {
        tag: u32,
        header_offset: u64,
        length: u64,
        remaining: u64,
        unit: usize,
        skip: bool,
        capture: bool,
    },
}

/// A push transcoder: [`feed`](Transcoder::feed) it the dataset bytes in chunks
/// of any size, then call [`finish`](Transcoder::finish). Output goes to the
/// `Vec` you pass (appended). Memory: a few small buffers plus, with deflate,
/// one 64 KiB staging buffer per side.
pub struct Transcoder {
    fe: Encoding,
    te: Encoding,
    identity: bool,
    swap: bool,
    relength: bool,
    inflate: Option<Decompress>,
    inflate_done: bool,
    deflate: Option<Compress>,
    hdr: [u8; 12],
    hdr_len: usize,
    state: State,
    stack: Vec<Frame>,
    pos: u64,
    base: u64,
    ctx: VrContext,
    carry: [u8; 8],
    carry_len: usize,
    captured: [u8; 2],
    captured_len: usize,
    inflate_buf: Vec<u8>,
    stage: Vec<u8>,
    finished: bool,
}

impl Transcoder {
    /// A transcoder from one transfer syntax UID to another. Equal UIDs copy
    /// bytes through untouched (this covers every encapsulated syntax); any
    /// two of implicit VR LE, explicit VR LE, explicit VR BE and deflated
    /// explicit VR LE convert; anything else is [`DatasetError::Unsupported`].
    pub fn new(from_uid: &str, to_uid: &str) -> Result<Transcoder, DatasetError> {
        let from = TransferSyntax::from_uid(from_uid);
        let to = TransferSyntax::from_uid(to_uid);
        let same = from_uid.trim_end_matches(['\0', ' ']) == to_uid.trim_end_matches(['\0', ' ']);
        let convertible = from.is_uncompressed() && to.is_uncompressed();
        if !same && !convertible {
            return Err(DatasetError::Unsupported {
                detail: format!(
                    "cannot transcode from {from_uid} to {to_uid}: only between the uncompressed transfer syntaxes"
                ),
            });
        }
        let fe = from.encoding();
        let te = to.encoding();
        Ok(Transcoder {
            fe,
            te,
            identity: same,
            swap: fe.little_endian != te.little_endian,
            relength: fe.implicit_vr != te.implicit_vr,
            inflate: (!same && from.is_deflated()).then(|| Decompress::new(false)),
            inflate_done: false,
            deflate: (!same && to.is_deflated()).then(|| Compress::new(Compression::default(), false)),
            hdr: [0; 12],
            hdr_len: 0,
            state: State::Header,
            stack: Vec::new(),
            pos: 0,
            base: 0,
            ctx: VrContext::default(),
            carry: [0; 8],
            carry_len: 0,
            captured: [0; 2],
            captured_len: 0,
            inflate_buf: Vec::new(),
            stage: Vec::new(),
            finished: false,
        })
    }

    /// True when the two syntaxes are the same UID: bytes are copied as they are.
    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// Report error offsets relative to `base` (e.g. where the dataset starts in a file).
    /// With deflated input, offsets are positions in the inflated stream.
    pub fn set_base_offset(&mut self, base: u64) {
        self.base = base;
    }

    /// Seed the context that resolves ambiguous VRs (Bits Allocated, Pixel
    /// Representation), for transcoding a fragment of a larger dataset.
    pub fn set_context(&mut self, ctx: VrContext) {
        self.ctx = ctx;
    }

    /// Feed the next chunk of input; converted bytes are appended to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DatasetError> {
        if self.identity {
            out.extend_from_slice(input);
            return Ok(());
        }
        let mut stage = std::mem::take(&mut self.stage);
        stage.clear();
        let res = {
            let target: &mut Vec<u8> = if self.deflate.is_some() { &mut stage } else { &mut *out };
            if self.inflate.is_some() {
                self.inflate_into(input, false, target)
            } else {
                self.process(input, target)
            }
        };
        let res = res.and_then(|_| self.deflate_into(&stage, false, out));
        self.stage = stage;
        res.map_err(|e| e.shifted(self.base))
    }

    /// End of input: check that nothing is left open and flush.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), DatasetError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if self.identity {
            return Ok(());
        }
        let mut stage = std::mem::take(&mut self.stage);
        stage.clear();
        let res = {
            let target: &mut Vec<u8> = if self.deflate.is_some() { &mut stage } else { &mut *out };
            let r = if self.inflate.is_some() { self.inflate_into(&[], true, target) } else { Ok(()) };
            r.and_then(|_| self.check_complete(target))
        };
        let res = res.and_then(|_| self.deflate_into(&stage, true, out));
        self.stage = stage;
        res.map_err(|e| e.shifted(self.base))
    }

    fn check_complete(&mut self, out: &mut Vec<u8>) -> Result<(), DatasetError> {
        match self.state {
            State::Value { tag, header_offset, length, .. } => {
                return Err(DatasetError::Truncated { tag: Some(tag), offset: header_offset, length, size: self.pos })
            }
            State::Header if self.hdr_len > 0 => {
                return Err(DatasetError::Truncated {
                    tag: None,
                    offset: self.pos - self.hdr_len as u64,
                    length: 8,
                    size: self.pos,
                })
            }
            State::Header => {}
        }
        self.close_frames(out)?;
        if let Some(f) = self.stack.last() {
            return Err(DatasetError::Unclosed { tag: f.tag, offset: f.offset, size: self.pos });
        }
        Ok(())
    }

    fn inflate_into(&mut self, mut input: &[u8], finish: bool, target: &mut Vec<u8>) -> Result<(), DatasetError> {
        if self.inflate_done {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.inflate_buf);
        buf.resize(CHUNK, 0);
        let result = loop {
            let Some(d) = self.inflate.as_mut() else { break Ok(()) };
            let (in0, out0) = (d.total_in(), d.total_out());
            let flush = if finish { FlushDecompress::Finish } else { FlushDecompress::None };
            let status = match d.decompress(input, &mut buf, flush) {
                Ok(s) => s,
                Err(e) => break Err(DatasetError::Deflate { offset: in0, detail: e.to_string() }),
            };
            let consumed = (d.total_in() - in0) as usize;
            let produced = (d.total_out() - out0) as usize;
            input = &input[consumed.min(input.len())..];
            if let Err(e) = self.process(&buf[..produced], target) {
                break Err(e);
            }
            if status == Status::StreamEnd {
                self.inflate_done = true;
                break Ok(());
            }
            if consumed == 0 && produced == 0 {
                break Ok(());
            }
            if input.is_empty() && produced < buf.len() && !finish {
                break Ok(());
            }
        };
        self.inflate_buf = buf;
        result
    }

    fn deflate_into(&mut self, mut input: &[u8], finish: bool, out: &mut Vec<u8>) -> Result<(), DatasetError> {
        let Some(c) = self.deflate.as_mut() else { return Ok(()) };
        let err = |e: flate2::CompressError| DatasetError::Deflate { offset: 0, detail: e.to_string() };
        while !input.is_empty() {
            out.reserve(input.len() / 2 + 1024);
            let before = c.total_in();
            c.compress_vec(input, out, FlushCompress::None).map_err(err)?;
            let used = (c.total_in() - before) as usize;
            input = &input[used.min(input.len())..];
        }
        if finish {
            loop {
                out.reserve(4096);
                if c.compress_vec(&[], out, FlushCompress::Finish).map_err(err)? == Status::StreamEnd {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Pop every defined-length container that ends here.
    fn close_frames(&mut self, out: &mut Vec<u8>) -> Result<(), DatasetError> {
        while let Some(f) = self.stack.last().copied() {
            match f.end {
                Some(end) if end == self.pos => {
                    self.stack.pop();
                    if f.out_undefined {
                        let t = if f.kind == Kind::Item { TAG_ITEM_DELIMITER } else { TAG_SEQUENCE_DELIMITER };
                        write_element_header(out, self.te, t, None, 0);
                    }
                }
                Some(end) if end < self.pos => {
                    return Err(DatasetError::Truncated {
                        tag: Some(f.tag),
                        offset: f.offset,
                        length: end - f.offset,
                        size: end,
                    })
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn process(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), DatasetError> {
        loop {
            if matches!(self.state, State::Header) && self.hdr_len == 0 {
                self.close_frames(out)?;
            }
            if input.is_empty() {
                return Ok(());
            }
            match self.state {
                State::Header => {
                    // Take bytes up to what the header needs (8, then 12 for a long
                    // explicit VR), then decode it with the one header reader.
                    let need = match parse_header(&self.hdr[..self.hdr_len], self.fe) {
                        Ok(h) => {
                            self.on_header(h, out)?;
                            continue;
                        }
                        Err(Need(n)) => n,
                    };
                    let take = (need - self.hdr_len).min(input.len());
                    self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&input[..take]);
                    self.hdr_len += take;
                    self.pos += take as u64;
                    input = &input[take..];
                    if let Ok(h) = parse_header(&self.hdr[..self.hdr_len], self.fe) {
                        self.on_header(h, out)?;
                    }
                }
                State::Value { tag, header_offset, length, remaining, unit, skip, capture } => {
                    let n = (remaining.min(input.len() as u64)) as usize;
                    let chunk = &input[..n];
                    if capture && self.captured_len < 2 {
                        let k = (2 - self.captured_len).min(n);
                        self.captured[self.captured_len..self.captured_len + k].copy_from_slice(&chunk[..k]);
                        self.captured_len += k;
                    }
                    if !skip {
                        if self.swap && unit > 1 {
                            self.swap_into(chunk, unit, out);
                        } else {
                            out.extend_from_slice(chunk);
                        }
                    }
                    input = &input[n..];
                    self.pos += n as u64;
                    let remaining = remaining - n as u64;
                    if remaining == 0 {
                        if capture && self.captured_len == 2 {
                            let v = if self.fe.little_endian {
                                u16::from_le_bytes(self.captured)
                            } else {
                                u16::from_be_bytes(self.captured)
                            };
                            if tag == 0x0028_0100 {
                                self.ctx.bits_allocated = Some(v);
                            } else {
                                self.ctx.pixel_representation = Some(v);
                            }
                        }
                        self.state = State::Header;
                    } else {
                        self.state = State::Value { tag, header_offset, length, remaining, unit, skip, capture };
                    }
                }
            }
        }
    }

    fn swap_into(&mut self, mut chunk: &[u8], unit: usize, out: &mut Vec<u8>) {
        if self.carry_len > 0 {
            let k = (unit - self.carry_len).min(chunk.len());
            self.carry[self.carry_len..self.carry_len + k].copy_from_slice(&chunk[..k]);
            self.carry_len += k;
            chunk = &chunk[k..];
            if self.carry_len == unit {
                out.extend(self.carry[..unit].iter().rev());
                self.carry_len = 0;
            } else {
                return;
            }
        }
        let full = chunk.len() / unit * unit;
        let start = out.len();
        out.extend_from_slice(&chunk[..full]);
        for u in out[start..].chunks_exact_mut(unit) {
            u.reverse();
        }
        let rest = &chunk[full..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carry_len = rest.len();
    }

    /// Nearest enclosing defined-length container's end.
    fn container_end(&self) -> Option<u64> {
        self.stack.iter().rev().find_map(|f| f.end)
    }

    fn check_within(&self, tag: u32, header_offset: u64, length: u64) -> Result<(), DatasetError> {
        if let Some(end) = self.container_end() {
            if self.pos + length > end {
                return Err(DatasetError::Truncated { tag: Some(tag), offset: header_offset, length, size: end });
            }
        }
        Ok(())
    }

    fn on_header(&mut self, h: Header, out: &mut Vec<u8>) -> Result<(), DatasetError> {
        self.hdr_len = 0;
        let header_offset = self.pos - h.header_len as u64;
        let Header { tag, vr: src_vr, length, .. } = h;
        let parent = self.stack.last().map(|f| (f.kind, f.end));
        let te = self.te;
        match tag {
            TAG_ITEM => match parent {
                Some((Kind::Sequence, _)) => {
                    if length == UNDEFINED_LENGTH {
                        write_element_header(out, te, TAG_ITEM, None, UNDEFINED_LENGTH);
                        self.stack.push(Frame { kind: Kind::Item, end: None, tag, offset: header_offset, out_undefined: false });
                    } else {
                        self.open_defined(Kind::Item, tag, None, length, header_offset, out)?;
                    }
                }
                Some((Kind::Fragments, _)) => {
                    if length == UNDEFINED_LENGTH {
                        return Err(DatasetError::UnexpectedTag {
                            tag,
                            offset: header_offset,
                            expected: "a defined-length fragment item in encapsulated pixel data",
                        });
                    }
                    write_element_header(out, te, TAG_ITEM, None, length);
                    self.start_value(tag, header_offset, length as u64, 0, false, false);
                }
                _ => {
                    return Err(DatasetError::UnexpectedTag {
                        tag,
                        offset: header_offset,
                        expected: "a data element (an item outside a sequence)",
                    })
                }
            },
            TAG_ITEM_DELIMITER | TAG_SEQUENCE_DELIMITER => {
                // a delimiter closes the undefined-length container it belongs to
                let closes = match (tag, parent) {
                    (TAG_ITEM_DELIMITER, Some((Kind::Item, None))) => true,
                    (TAG_SEQUENCE_DELIMITER, Some((Kind::Sequence | Kind::Fragments, None))) => true,
                    _ => false,
                };
                if !closes {
                    let expected = if tag == TAG_ITEM_DELIMITER {
                        "an item delimiter only inside an undefined-length item"
                    } else {
                        "a sequence delimiter only inside an undefined-length sequence"
                    };
                    return Err(DatasetError::UnexpectedTag { tag, offset: header_offset, expected });
                }
                self.stack.pop();
                write_element_header(out, te, tag, None, 0);
            }
            _ => {
                if matches!(parent, Some((Kind::Sequence, _)) | Some((Kind::Fragments, _))) {
                    return Err(DatasetError::UnexpectedTag {
                        tag,
                        offset: header_offset,
                        expected: "an item (FFFE,E000) or sequence delimiter (FFFE,E0DD)",
                    });
                }
                if tag >> 16 == 0xFFFE {
                    return Err(DatasetError::UnexpectedTag { tag, offset: header_offset, expected: "a data element" });
                }
                self.on_element(tag, src_vr, length, header_offset, out)?;
            }
        }
        Ok(())
    }

    /// Open a defined-length sequence or item: written with its length, or with an
    /// undefined one (closed by a delimiter) when header sizes change.
    fn open_defined(
        &mut self,
        kind: Kind,
        tag: u32,
        vr: Option<[u8; 2]>,
        length: u32,
        header_offset: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), DatasetError> {
        self.check_within(tag, header_offset, length as u64)?;
        let out_len = if self.relength { UNDEFINED_LENGTH } else { length };
        write_element_header(out, self.te, tag, vr, out_len);
        self.stack.push(Frame { kind, end: Some(self.pos + length as u64), tag, offset: header_offset, out_undefined: self.relength });
        Ok(())
    }

    fn start_value(&mut self, tag: u32, header_offset: u64, length: u64, unit: usize, skip: bool, capture: bool) {
        self.carry_len = 0;
        self.captured_len = 0;
        if length > 0 {
            self.state = State::Value { tag, header_offset, length, remaining: length, unit, skip, capture };
        }
    }

    fn on_element(
        &mut self,
        tag: u32,
        src_vr: Option<[u8; 2]>,
        length: u32,
        header_offset: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), DatasetError> {
        let te = self.te;
        let vr = src_vr.unwrap_or_else(|| explicit_vr_for(tag, &self.ctx));
        if length == UNDEFINED_LENGTH {
            // Items of an undefined-length OB/OW value (encapsulated pixel data,
            // or any other OB/OW) are fragments; SQ, UN and implicit VR
            // elements other than pixel data hold a sequence.
            let fragments = match src_vr {
                Some(v) => &v == b"OB" || &v == b"OW",
                None => tag == TAG_PIXEL_DATA,
            };
            // encapsulated pixel data is OB (PS3.5 A.4)
            let vr = if fragments && src_vr.is_none() { *b"OB" } else { vr };
            let (kind, out_vr) = if fragments { (Kind::Fragments, vr) } else { (Kind::Sequence, *b"SQ") };
            write_element_header(out, te, tag, Some(out_vr), UNDEFINED_LENGTH);
            self.stack.push(Frame { kind, end: None, tag, offset: header_offset, out_undefined: false });
            return Ok(());
        }
        let length64 = length as u64;
        if &vr == b"SQ" {
            return self.open_defined(Kind::Sequence, tag, Some(vr), length, header_offset, out);
        }
        self.check_within(tag, header_offset, length64)?;
        let unit = swap_unit(vr);
        let check = if &vr == b"AT" { 4 } else { unit };
        if check > 1 && length as usize % check != 0 {
            return Err(DatasetError::OddLength { tag, offset: header_offset, length: length64, vr });
        }
        let skip = self.relength && tag & 0xFFFF == 0;
        if !skip {
            let out_vr = if !has_long_length(vr) && length > 0xFFFF { *b"UN" } else { vr };
            write_element_header(out, te, tag, Some(out_vr), length);
        }
        let capture = self.stack.is_empty() && (tag == 0x0028_0100 || tag == 0x0028_0103);
        let unit = if self.swap { unit } else { 0 };
        self.start_value(tag, header_offset, length64, unit, skip, capture);
        Ok(())
    }
}

/// Transcode a whole dataset held in memory.
pub fn transcode(data: &[u8], from_uid: &str, to_uid: &str) -> Result<Vec<u8>, DatasetError> {
    let mut t = Transcoder::new(from_uid, to_uid)?;
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 64);
    t.feed(data, &mut out)?;
    t.finish(&mut out)?;
    Ok(out)
}

/// Transcode from `r` to `w` in 64 KiB chunks; returns the bytes written.
pub fn transcode_stream<R: Read, W: Write>(
    r: &mut R,
    w: &mut W,
    from_uid: &str,
    to_uid: &str,
) -> Result<u64, DatasetError> {
    let mut t = Transcoder::new(from_uid, to_uid)?;
    Ok(t.pump(r, w, 0)?.0)
}

impl Transcoder {
    /// Feed all of `r` (whose first byte is at offset `start`, for I/O errors) through
    /// the transcoder into `w` in 64 KiB chunks, then finish. Returns (bytes written,
    /// offset after the last byte read).
    pub fn pump<R: Read, W: Write>(&mut self, r: &mut R, w: &mut W, start: u64) -> Result<(u64, u64), DatasetError> {
        let mut buf = vec![0u8; CHUNK];
        let mut out = Vec::with_capacity(CHUNK * 2);
        let mut pos = start;
        let mut written = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(DatasetError::Io { offset: pos, source }),
            };
            pos += n as u64;
            out.clear();
            self.feed(&buf[..n], &mut out)?;
            w.write_all(&out).map_err(|source| DatasetError::Io { offset: pos, source })?;
            written += out.len() as u64;
        }
        out.clear();
        self.finish(&mut out)?;
        w.write_all(&out).map_err(|source| DatasetError::Io { offset: pos, source })?;
        Ok((written + out.len() as u64, pos))
    }
}
