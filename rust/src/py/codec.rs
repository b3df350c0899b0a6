//! PyO3 bindings of the dataset codec (`crate::dataset`): thin wrappers that
//! move bytes in and out, release the GIL while Rust works, and map
//! `DatasetError` to `fastdimse.errors.DatasetError(message, offset, tag, path)`.
//! `python/fastdimse/codec.py` builds the pydicom objects.

use std::io::Read;

use std::path::Path;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::dataset::{
    self, has_long_length, is_vr, DatasetError, Encoding, FileMeta, TransferSyntax, VrContext,
};

fn dataset_error(py: Python<'_>, e: &DatasetError, path: Option<&str>) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let cls = py.import("fastdimse.errors")?.getattr("DatasetError")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("offset", e.offset())?;
        kwargs.set_item("tag", e.tag())?;
        kwargs.set_item("path", path)?;
        let inst = cls.call((e.message(path),), Some(&kwargs))?;
        Ok(PyErr::from_value(inst))
    };
    build().unwrap_or_else(|err| err)
}

fn vr_str(vr: Option<[u8; 2]>) -> Option<String> {
    vr.map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// Encoding of the top-level dataset as pydicom decides it: the transfer
/// syntax's, unless the first element's VR bytes say otherwise.
fn detect_encoding(data: &[u8], enc: Encoding) -> Encoding {
    if data.len() < 6 {
        return enc;
    }
    let looks_explicit = is_vr([data[4], data[5]]);
    Encoding { implicit_vr: !looks_explicit, little_endian: enc.little_endian }
}

fn inflate_all(data: &[u8]) -> Result<Vec<u8>, DatasetError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(3));
    flate2::read::DeflateDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| DatasetError::Deflate { offset: 0, detail: e.to_string() })?;
    Ok(out)
}

/// Split `data[start:]` into its top-level elements.
///
/// Returns `(buffer, elements, is_implicit_VR, is_little_endian)`: `buffer`
/// is `data` itself, or the inflated dataset for the deflated syntax; each
/// element is `(tag, VR or None, length, value_start, value_end)` with offsets
/// into `buffer`.
#[pyfunction]
#[pyo3(signature = (data, transfer_syntax, start=0, path=None))]
fn codec_split<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyBytes>,
    transfer_syntax: &str,
    start: usize,
    path: Option<&str>,
) -> PyResult<Bound<'py, PyTuple>> {
    let ts = TransferSyntax::from_uid(transfer_syntax);
    let all = data.as_bytes();
    let start = start.min(all.len());
    let (buffer, base, inflated) = if ts.is_deflated() {
        let body = &all[start..];
        let inflated = py.detach(|| inflate_all(body)).map_err(|e| dataset_error(py, &e.shifted(start as u64), path))?;
        (PyBytes::new(py, &inflated), 0usize, true)
    } else {
        (data.clone(), start, false)
    };
    let bytes = buffer.as_bytes();
    let body = &bytes[base..];
    let enc = detect_encoding(body, ts.encoding());
    let elements = py
        .detach(|| dataset::split_elements(body, enc))
        .map_err(|e| {
            // offsets in a deflated file are positions in the inflated stream
            let e = if inflated { e } else { e.shifted(base as u64) };
            dataset_error(py, &e, path)
        })?;
    let list = PyList::empty(py);
    for el in elements {
        list.append((
            el.tag,
            vr_str(el.vr),
            el.length,
            el.value_start + base,
            el.value_end + base,
        ))?;
    }
    PyTuple::new(
        py,
        [
            buffer.into_any(),
            list.into_any(),
            enc.implicit_vr.into_pyobject(py)?.to_owned().into_any(),
            enc.little_endian.into_pyobject(py)?.to_owned().into_any(),
        ],
    )
}

/// Split a sequence's value into items: `[(item offset, undefined length?, [(tag, VR or
/// None, length, value_start, value_end)])]`, offsets into `data`; None
/// when the value is malformed or irregular (the caller then uses pydicom's reader,
/// which reports or tolerates each quirk its own way).
/// Text VRs whose ASCII values are the same bytes in every character set (and IS, DS).
fn is_text_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"AE" | b"AS" | b"CS" | b"DA" | b"DT" | b"LO" | b"LT" | b"SH" | b"ST" | b"TM" | b"UC" | b"UI" | b"UR"
            | b"UT" | b"PN" | b"IS" | b"DS"
    )
}

/// The value bytes of one text element, or None when Python must write it.
fn text_value(vr: &[u8], value: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    use pyo3::types::{PyInt, PyString};
    let ascii = |s: &str| -> Option<Vec<u8>> { s.is_ascii().then(|| s.as_bytes().to_vec()) };
    let mut data = if value.is_none() {
        Vec::new()
    } else if let Ok(s) = value.cast::<PyString>() {
        match ascii(&s.to_cow()?) {
            Some(d) => d,
            None => return Ok(None),
        }
    } else if vr == b"IS" && value.is_exact_instance_of::<PyInt>() {
        value.str()?.to_cow()?.as_bytes().to_vec()
    } else if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let empty_list = value.is_instance_of::<PyList>() && value.len()? == 0;
        if empty_list {
            return Ok(Some(Vec::new()));
        }
        if matches!(vr, b"LT" | b"ST" | b"UR" | b"UT") {
            return Ok(None);
        }
        let mut out = Vec::new();
        for (i, v) in value.try_iter()?.enumerate() {
            let v = v?;
            let Ok(s) = v.cast::<PyString>() else { return Ok(None) };
            let Some(d) = ascii(&s.to_cow()?) else { return Ok(None) };
            if i > 0 {
                out.push(b'\\');
            }
            out.extend_from_slice(&d);
        }
        out
    } else {
        return Ok(None);
    };
    if data.len() % 2 == 1 {
        data.push(if vr == b"UI" { 0 } else { b' ' });
    }
    Ok(Some(data))
}

/// Encode a flat data set of ASCII text elements `[(tag, VR, value)]` (values None,
/// str, list or tuple of str, int for IS) in the given encoding, sorted by tag.
/// None when an element is anything else, or too long for its length field: the
/// caller then writes the data set with pydicom's writer.
#[pyfunction]
fn codec_encode_text<'py>(
    py: Python<'py>,
    elements: &Bound<'py, PyAny>,
    implicit: bool,
    little: bool,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let enc = Encoding { implicit_vr: implicit, little_endian: little };
    let mut parts: Vec<(u32, [u8; 2], Vec<u8>)> = Vec::new();
    for item in elements.try_iter()? {
        let item = item?;
        let (tag, vr, value): (u32, Bound<'py, PyAny>, Bound<'py, PyAny>) = item.extract()?;
        let Ok(vr) = vr.cast::<pyo3::types::PyString>() else { return Ok(None) };
        let vr = vr.to_cow()?;
        let vr = vr.as_bytes();
        if vr.len() != 2 || !is_text_vr(vr) {
            return Ok(None);
        }
        let Some(data) = text_value(vr, &value)? else { return Ok(None) };
        let vr = [vr[0], vr[1]];
        let limit = if !implicit && !has_long_length(vr) { 0xFFFF } else { 0xFFFF_FFFE };
        if data.len() > limit {
            return Ok(None);
        }
        parts.push((tag, vr, data));
    }
    parts.sort_by_key(|p| p.0); // stable, as Python's sorted()
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.2.len() + 12).sum());
    for (tag, vr, data) in &parts {
        dataset::write_element_header(&mut out, enc, *tag, Some(*vr), data.len() as u32);
        out.extend_from_slice(data);
    }
    Ok(Some(PyBytes::new(py, &out)))
}

/// Kinds of the entries `codec_write` takes (python/fastdimse/codec.py names them).
mod kind {
    pub const VALUE: u8 = 0;
    pub const UNDEFINED: u8 = 1;
    pub const TEXT: u8 = 2;
    pub const ENCODED: u8 = 3;
    pub const SEQUENCE: u8 = 4;
    pub const SWAP: u8 = 5;
    pub const TRANSCODE: u8 = 6;
}

/// Values at least this long are handed back as their own Python object, not copied
/// into the output (top level only: a sequence's length is patched in place).
const SEPARATE: usize = 64 * 1024;

fn vr_of(v: &Bound<'_, PyAny>) -> PyResult<Option<[u8; 2]>> {
    if v.is_none() {
        return Ok(None);
    }
    let s = v.cast::<pyo3::types::PyString>()?.to_cow()?;
    match s.as_bytes() {
        [a, b] => Ok(Some([*a, *b])),
        _ => Err(pyo3::exceptions::PyValueError::new_err(format!("not a VR: {s:?}"))),
    }
}

fn bytes_of<'py>(v: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
    match v.cast_into::<PyBytes>() {
        Ok(b) => Ok(b),
        Err(e) => {
            let v = e.into_inner();
            Ok(v.py().get_type::<PyBytes>().call1((v,))?.cast_into::<PyBytes>()?)
        }
    }
}

fn uid_of(enc: Encoding) -> &'static str {
    match (enc.implicit_vr, enc.little_endian) {
        (true, _) => dataset::uids::IMPLICIT_VR_LE,
        (false, true) => dataset::uids::EXPLICIT_VR_LE,
        (false, false) => dataset::uids::EXPLICIT_VR_BE,
    }
}

/// Where `codec_write` puts its output: the writer, and the parts already closed.
struct Parts<'py> {
    w: dataset::ElementWriter,
    parts: Vec<Bound<'py, PyAny>>,
}

impl<'py> Parts<'py> {
    fn flush(&mut self, py: Python<'py>) {
        let done = self.w.take();
        if !done.is_empty() {
            self.parts.push(PyBytes::new(py, &done).into_any());
        }
    }

    /// A value: copied, or (large, at top level) handed back as its own object.
    fn put(&mut self, py: Python<'py>, value: &Bound<'py, PyBytes>) {
        if self.w.depth() == 0 && value.as_bytes().len() >= SEPARATE {
            self.flush(py);
            self.parts.push(value.clone().into_any());
        } else {
            self.w.encoded(value.as_bytes());
        }
    }

    fn write(&mut self, py: Python<'py>, entries: &Bound<'py, PyAny>) -> Result<(), PyErr> {
        let enc = self.w.encoding();
        let err = |e: DatasetError| dataset_error(py, &e, None);
        for entry in entries.try_iter()? {
            let entry = entry?;
            let t = entry.cast::<PyTuple>()?;
            let k: u8 = t.get_item(0)?.extract()?;
            match k {
                kind::ENCODED => {
                    let b = bytes_of(t.get_item(1)?)?;
                    self.put(py, &b);
                }
                kind::VALUE | kind::UNDEFINED | kind::TEXT | kind::SWAP => {
                    let tag: u32 = t.get_item(1)?.extract()?;
                    let vr = vr_of(&t.get_item(2)?)?;
                    let value = t.get_item(3)?;
                    match k {
                        kind::TEXT => {
                            let text = value.cast::<pyo3::types::PyString>()?.to_cow()?;
                            let vr = vr.ok_or_else(|| pyo3::exceptions::PyValueError::new_err("a text element needs its VR"))?;
                            self.w.text(tag, vr, text.as_bytes()).map_err(err)?;
                        }
                        kind::VALUE => {
                            let b = bytes_of(value)?;
                            self.w.value_header(tag, vr, b.as_bytes().len() as u64).map_err(err)?;
                            self.put(py, &b);
                        }
                        kind::UNDEFINED => {
                            let b = bytes_of(value)?;
                            self.w.undefined_header(tag, vr);
                            self.put(py, &b);
                            self.w.sequence_delimiter();
                        }
                        _ => {
                            // a bulk value in the other byte order: swapped as the transcoder does
                            let b = bytes_of(value)?;
                            let src_little: bool = t.get_item(4)?.extract()?;
                            let src = Encoding { implicit_vr: false, little_endian: src_little };
                            let mut whole = Vec::with_capacity(b.as_bytes().len() + 12);
                            dataset::write_element_header(&mut whole, src, tag, vr, b.as_bytes().len() as u32);
                            whole.extend_from_slice(b.as_bytes());
                            let out = py.detach(|| dataset::transcode(&whole, uid_of(src), uid_of(enc))).map_err(err)?;
                            self.w.encoded(&out);
                        }
                    }
                }
                kind::SEQUENCE => {
                    let tag: u32 = t.get_item(1)?.extract()?;
                    let undefined: bool = t.get_item(2)?.extract()?;
                    self.w.start_sequence(tag, undefined);
                    for item in t.get_item(3)?.try_iter()? {
                        let item = item?;
                        let item = item.cast::<PyTuple>()?;
                        self.w.start_item(item.get_item(0)?.extract()?);
                        self.write(py, &item.get_item(1)?)?;
                        self.w.end_item().map_err(err)?;
                    }
                    self.w.end_sequence().map_err(err)?;
                }
                kind::TRANSCODE => {
                    // a raw sequence read in another encoding: framed as read, then transcoded
                    let tag: u32 = t.get_item(1)?.extract()?;
                    let vr = vr_of(&t.get_item(2)?)?;
                    let length: u32 = t.get_item(3)?.extract()?;
                    let value = bytes_of(t.get_item(4)?)?;
                    let src = Encoding { implicit_vr: t.get_item(5)?.extract()?, little_endian: t.get_item(6)?.extract()? };
                    let ctx = VrContext { bits_allocated: t.get_item(7)?.extract()?, pixel_representation: t.get_item(8)?.extract()? };
                    let value = value.as_bytes();
                    let mut src_writer = dataset::ElementWriter::new(src);
                    if length == dataset::UNDEFINED_LENGTH {
                        src_writer.undefined(tag, vr, value);
                    } else {
                        src_writer.value(tag, vr, value).map_err(err)?;
                    }
                    let whole = src_writer.finish().map_err(err)?;
                    let out = py
                        .detach(|| -> Result<Vec<u8>, DatasetError> {
                            let mut tr = dataset::Transcoder::new(uid_of(src), uid_of(enc))?;
                            tr.set_context(ctx);
                            let mut out = Vec::with_capacity(whole.len() + whole.len() / 16 + 64);
                            tr.feed(&whole, &mut out)?;
                            tr.finish(&mut out)?;
                            Ok(out)
                        })
                        .map_err(err)?;
                    self.w.encoded(&out);
                }
                other => return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown entry kind {other}"))),
            }
        }
        Ok(())
    }
}

/// Write a data set from the entries Python made of it (see `kind`; codec.py's
/// `_encode_dataset`): Rust writes every header, pads text, frames sequences and items
/// (defined lengths patched, undefined ones delimited) and converts raw values read in
/// another encoding. Returns the bytes as a list of parts (large values are their own
/// objects, not copied). With `group_length`, the parts are preceded by that group
/// length element (UL) holding their total size.
#[pyfunction]
#[pyo3(signature = (entries, implicit, little, group_length=None))]
fn codec_write<'py>(
    py: Python<'py>,
    entries: &Bound<'py, PyAny>,
    implicit: bool,
    little: bool,
    group_length: Option<u32>,
) -> PyResult<Bound<'py, PyList>> {
    let enc = Encoding { implicit_vr: implicit, little_endian: little };
    let mut p = Parts { w: dataset::ElementWriter::new(enc), parts: Vec::new() };
    p.write(py, entries)?;
    p.flush(py);
    if let Some(tag) = group_length {
        let total: usize = p.parts.iter().map(|b| b.len().unwrap_or(0)).sum();
        let mut w = dataset::ElementWriter::new(enc);
        let n = total as u32;
        let v = if little { n.to_le_bytes() } else { n.to_be_bytes() };
        w.value(tag, Some(*b"UL"), &v).map_err(|e| dataset_error(py, &e, None))?;
        p.parts.insert(0, PyBytes::new(py, &w.take()).into_any());
    }
    PyList::new(py, p.parts)
}

#[pyfunction]
fn codec_split_items<'py>(py: Python<'py>, data: &Bound<'py, PyBytes>, implicit: bool, little: bool) -> PyResult<Option<Bound<'py, PyList>>> {
    let bytes = data.as_bytes();
    let enc = dataset::Encoding { implicit_vr: implicit, little_endian: little };
    let Ok(Some(items)) = py.detach(|| dataset::split_items(bytes, enc)) else {
        return Ok(None);
    };
    let out = PyList::empty(py);
    for item in items {
        let elements = PyList::empty(py);
        for el in item.elements {
            elements.append((el.tag, vr_str(el.vr), el.length, el.value_start, el.value_end))?;
        }
        out.append((item.offset, item.undefined_length, elements))?;
    }
    Ok(Some(out))
}

/// Transcode a dataset (or a run of whole elements) between transfer syntaxes.
#[pyfunction]
#[pyo3(signature = (data, from_syntax, to_syntax, bits_allocated=None, pixel_representation=None))]
fn codec_transcode<'py>(
    py: Python<'py>,
    data: &[u8],
    from_syntax: &str,
    to_syntax: &str,
    bits_allocated: Option<u16>,
    pixel_representation: Option<u16>,
) -> PyResult<Bound<'py, PyBytes>> {
    let result = py.detach(|| -> Result<Vec<u8>, DatasetError> {
        let mut t = dataset::Transcoder::new(from_syntax, to_syntax)?;
        t.set_context(VrContext { bits_allocated, pixel_representation });
        let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 64);
        t.feed(data, &mut out)?;
        t.finish(&mut out)?;
        Ok(out)
    });
    match result {
        Ok(out) => Ok(PyBytes::new(py, &out)),
        Err(e) => Err(dataset_error(py, &e, None)),
    }
}

/// `[(tag, vr, value, value_offset)]` of the meta elements parsed from `data` (the
/// file's first bytes), their offsets found again by the element-header reader.
fn meta_list<'py>(py: Python<'py>, data: &[u8], meta: &FileMeta) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    let mut pos = 132usize;
    for e in &meta.elements {
        let header = dataset::read_header(data, pos, Encoding::EXPLICIT_LE).map_or(8, |h| h.header_len);
        list.append((e.tag, vr_str(Some(e.vr)), PyBytes::new(py, &e.value), pos + header))?;
        pos += header + e.value.len();
    }
    Ok(list)
}

/// Parse the preamble and file meta group of a Part-10 file held in `data`.
/// Returns `(preamble, [(tag, vr, value, value_offset)], dataset_offset)`.
#[pyfunction]
#[pyo3(signature = (data, path=None))]
fn codec_parse_meta<'py>(
    py: Python<'py>,
    data: &[u8],
    path: Option<&str>,
) -> PyResult<Bound<'py, PyTuple>> {
    let (meta, offset) = dataset::parse_part10_meta_lenient(data).map_err(|e| dataset_error(py, &e, path))?;
    let list = meta_list(py, data, &meta)?;
    PyTuple::new(
        py,
        [
            PyBytes::new(py, &data[..128]).into_any(),
            list.into_any(),
            offset.into_pyobject(py)?.into_any(),
        ],
    )
}

/// Read only the meta group of the file at `path` (Rust `read_part10_meta`).
/// Returns a dict of the named fields plus `dataset_offset`.
#[pyfunction]
fn codec_read_meta<'py>(py: Python<'py>, path: &str) -> PyResult<Bound<'py, PyDict>> {
    let (meta, offset) = py
        .detach(|| dataset::read_part10_meta_path(Path::new(path)))
        .map_err(|e| dataset_error(py, &e, Some(path)))?;
    let d = PyDict::new(py);
    d.set_item("transfer_syntax", &meta.transfer_syntax)?;
    d.set_item("sop_class_uid", &meta.sop_class_uid)?;
    d.set_item("sop_instance_uid", &meta.sop_instance_uid)?;
    d.set_item("implementation_class_uid", &meta.implementation_class_uid)?;
    d.set_item("implementation_version_name", &meta.implementation_version_name)?;
    d.set_item("source_ae_title", &meta.source_ae_title)?;
    d.set_item("dataset_offset", offset)?;
    Ok(d)
}

/// Part-10 header bytes (preamble, DICM, meta group) from Rust's `write_part10_meta`.
#[pyfunction]
#[pyo3(signature = (sop_class_uid, sop_instance_uid, transfer_syntax, source_ae_title=None))]
fn codec_build_meta<'py>(
    py: Python<'py>,
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax: &str,
    source_ae_title: Option<&str>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut meta = FileMeta::new(sop_class_uid, sop_instance_uid, transfer_syntax);
    meta.source_ae_title = source_ae_title.map(str::to_string);
    let mut out = Vec::new();
    dataset::write_part10_meta(&mut out, &meta).map_err(|e| dataset_error(py, &e, None))?;
    Ok(PyBytes::new(py, &out))
}

/// Transcode the Part-10 file `src` into `dst` in bounded memory.
#[pyfunction]
#[pyo3(signature = (src, dst, transfer_syntax, source_ae_title=None))]
fn codec_transcode_file(
    py: Python<'_>,
    src: &str,
    dst: &str,
    transfer_syntax: &str,
    source_ae_title: Option<&str>,
) -> PyResult<u64> {
    py.detach(|| dataset::transcode_file(Path::new(src), Path::new(dst), transfer_syntax, source_ae_title))
        .map_err(|e| dataset_error(py, &e, Some(src)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(codec_split, m)?)?;
    m.add_function(wrap_pyfunction!(codec_encode_text, m)?)?;
    m.add_function(wrap_pyfunction!(codec_write, m)?)?;
    m.add_function(wrap_pyfunction!(codec_split_items, m)?)?;
    m.add_function(wrap_pyfunction!(codec_transcode, m)?)?;
    m.add_function(wrap_pyfunction!(codec_parse_meta, m)?)?;
    m.add_function(wrap_pyfunction!(codec_read_meta, m)?)?;
    m.add_function(wrap_pyfunction!(codec_build_meta, m)?)?;
    m.add_function(wrap_pyfunction!(codec_transcode_file, m)?)?;
    m.add_function(wrap_pyfunction!(codec_read_file, m)?)?;
    Ok(())
}

/// Scan a Part-10 file: meta group, then the top-level element headers,
/// seeking over defined-length values (their lengths checked against the file
/// size). Returns `(preamble, meta, transfer_syntax, elements,
/// is_implicit_VR, is_little_endian)` with meta as in `codec_parse_meta` and
/// elements as `(tag, VR, length, value, value_offset)`, where `value` is
/// `None` for a value the caller reads from the file at `value_offset` (one
/// copy, as pydicom's reader does), or the bytes already read (after an
/// undefined-length element, and for the deflated syntax).
/// With `stop_before_pixels`, scanning ends at the first of (7FE0,0008),
/// (7FE0,0009), (7FE0,0010), as pydicom's option does.
#[pyfunction]
#[pyo3(signature = (path, stop_before_pixels=false))]
fn codec_read_file<'py>(py: Python<'py>, path: &str, stop_before_pixels: bool) -> PyResult<Bound<'py, PyTuple>> {
    let is_pixels = |tag: u32| stop_before_pixels && matches!(tag, 0x7FE0_0008 | 0x7FE0_0009 | 0x7FE0_0010);
    use std::io::{BufReader, Seek, SeekFrom};
    let err = |e: DatasetError| dataset_error(py, &e, Some(path));
    let io_err = |offset: u64| move |source: std::io::Error| DatasetError::Io { offset, source };
    let file = std::fs::File::open(path).map_err(|e| err(io_err(0)(e)))?;
    let size = file.metadata().map_err(|e| err(io_err(0)(e)))?.len();
    let mut r = BufReader::with_capacity(64 * 1024, file);
    // The meta group is small: parse it from the first bytes of the file.
    let mut meta_buf = Vec::new();
    (&mut r).take(1 << 20).read_to_end(&mut meta_buf).map_err(|e| err(io_err(0)(e)))?;
    let (meta, offset) = match dataset::parse_part10_meta_lenient(&meta_buf) {
        Ok(m) => m,
        Err(DatasetError::Truncated { .. }) if size > meta_buf.len() as u64 => {
            // a meta group over 1 MiB: read it all
            let data = std::fs::read(path).map_err(|e| err(io_err(0)(e)))?;
            meta_buf = data;
            dataset::parse_part10_meta_lenient(&meta_buf).map_err(err)?
        }
        Err(e) => return Err(err(e)),
    };
    let meta_list = meta_list(py, &meta_buf, &meta)?;
    let preamble = PyBytes::new(py, &meta_buf[..128.min(meta_buf.len())]);
    let mut ts_uid = meta.transfer_syntax.clone();
    // Peek at the first dataset element for the syntax guess / implicit switch.
    let first: Vec<u8> = meta_buf.get(offset as usize..(offset as usize + 6).min(meta_buf.len())).unwrap_or(&[]).to_vec();
    if ts_uid.is_empty() {
        ts_uid = if first.len() < 6 || !is_vr([first[4], first[5]]) {
            dataset::uids::IMPLICIT_VR_LE.to_string()
        } else if u16::from_le_bytes([first[0], first[1]]) >= 1024 {
            dataset::uids::EXPLICIT_VR_BE.to_string()
        } else {
            dataset::uids::EXPLICIT_VR_LE.to_string()
        };
    }
    let ts = TransferSyntax::from_uid(&ts_uid);
    let elements = PyList::empty(py);
    let enc;
    if ts.is_deflated() {
        let mut rest = Vec::new();
        r.seek(SeekFrom::Start(offset)).map_err(|e| err(io_err(offset)(e)))?;
        r.read_to_end(&mut rest).map_err(|e| err(io_err(offset)(e)))?;
        let inflated = py.detach(|| inflate_all(&rest)).map_err(|e| err(e.shifted(offset)))?;
        enc = detect_encoding(&inflated, ts.encoding());
        let els = py.detach(|| dataset::split_elements(&inflated, enc)).map_err(err)?;
        for el in els.into_iter().take_while(|el| !is_pixels(el.tag)) {
            let v = PyBytes::new(py, &inflated[el.value_start..el.value_end]);
            elements.append((el.tag, vr_str(el.vr), el.length, v, el.value_start))?;
        }
    } else {
        enc = detect_encoding(&first, ts.encoding());
        r.seek(SeekFrom::Start(offset)).map_err(|e| err(io_err(offset)(e)))?;
        let mut pos = offset;
        let mut hdr = [0u8; 12];
        while pos < size {
            let want = (size - pos).min(12) as usize;
            r.read_exact(&mut hdr[..want]).map_err(|e| err(io_err(pos)(e)))?;
            let h = dataset::read_header(&hdr[..want], 0, enc).map_err(|e| err(e.shifted(pos)))?;
            if h.header_len < want {
                r.seek_relative(h.header_len as i64 - want as i64).map_err(|e| err(io_err(pos)(e)))?;
            }
            if is_pixels(h.tag) {
                break;
            }
            if h.length == dataset::UNDEFINED_LENGTH || h.tag >> 16 == 0xFFFE {
                // Undefined length (sequence, encapsulated pixel data): walk
                // the rest of the file in memory, as `codec_split` does.
                let mut rest = Vec::with_capacity((size - pos) as usize);
                r.seek(SeekFrom::Start(pos)).map_err(|e| err(io_err(pos)(e)))?;
                r.read_to_end(&mut rest).map_err(|e| err(io_err(pos)(e)))?;
                let els = py.detach(|| dataset::split_elements(&rest, enc)).map_err(|e| err(e.shifted(pos)))?;
                for el in els.into_iter().take_while(|el| !is_pixels(el.tag)) {
                    let v = PyBytes::new(py, &rest[el.value_start..el.value_end]);
                    elements.append((el.tag, vr_str(el.vr), el.length, v, el.value_start + pos as usize))?;
                }
                break;
            }
            let value_pos = pos + h.header_len as u64;
            if value_pos + h.length as u64 > size {
                return Err(err(DatasetError::Truncated {
                    tag: Some(h.tag),
                    offset: pos,
                    length: h.length as u64,
                    size,
                }));
            }
            // the same unit-size check as split_elements
            dataset::check_value_length(h.tag, h.vr, h.length, 0).map_err(|e| err(e.shifted(pos)))?;
            // The length is within the file. The value is read by the caller
            // (Python's file.read allocates once, uninitialised, and reads).
            r.seek_relative(h.length as i64).map_err(|e| err(io_err(pos)(e)))?;
            elements.append((h.tag, vr_str(h.vr), h.length, py.None(), value_pos))?;
            pos = value_pos + h.length as u64;
        }
    }
    PyTuple::new(
        py,
        [
            preamble.into_any(),
            meta_list.into_any(),
            ts_uid.into_pyobject(py)?.into_any(),
            elements.into_any(),
            enc.implicit_vr.into_pyobject(py)?.to_owned().into_any(),
            enc.little_endian.into_pyobject(py)?.to_owned().into_any(),
        ],
    )
}
