"""Dataset codec: pydicom datasets to and from DICOM bytes, split in Rust.

``decode`` and ``read_file`` let the Rust core find every top-level element
(tag, VR, length, where the value lies; undefined-length sequences are walked
iteratively) and hand pydicom a dict of raw elements, exactly what pydicom's
own reader builds. Values convert lazily on access and a sequence stays one
raw value until someone reads it, so you pay only for what you read. When it is
read, its items are split in Rust too (into Datasets of raw elements, as
pydicom's reader builds them): importing this module registers a pydicom
``raw_element_value`` callback that does this for the elements this module made
and passes every other element to the callback registered before it.

``encode`` and ``write_file`` write elements that are still raw straight from
their bytes (as pydicom's writer does); converted elements are written by
pydicom's own element writer, so the bytes equal ``pydicom.dcmwrite``'s for the
dataset's own syntax. Raw sequences going to another syntax, and bulk values
changing byte order, are converted in Rust.

``transcode`` and ``transcode_file`` convert between the uncompressed transfer
syntaxes entirely in Rust, without building Python objects; see the notes in
``rust/src/dataset/mod.rs`` for the rules (unknown tags become UN, containers
get undefined lengths when implicit <-> explicit, and so on).

Every failure on malformed data is a :class:`fastdimse.errors.DatasetError`
naming the byte offset and the tag (and the path, for files).
"""

from __future__ import annotations

import os
from typing import Any

_tuple_new = tuple.__new__

from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element, write_dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import convert_raw_data_element
from pydicom.misc import size_in_bytes
from pydicom.hooks import hooks as pydicom_hooks
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom import config as _pydicom_config

from . import _core, uids
from .errors import DatasetError

__all__ = [
    "decode",
    "encode",
    "read_file",
    "write_file",
    "transcode",
    "transcode_file",
    "read_meta",
    "IMPLICIT_VR_LE",
    "EXPLICIT_VR_LE",
    "EXPLICIT_VR_BE",
    "DEFLATED_EXPLICIT_VR_LE",
]

IMPLICIT_VR_LE = uids.IMPLICIT_VR_LITTLE_ENDIAN
EXPLICIT_VR_LE = uids.EXPLICIT_VR_LITTLE_ENDIAN
EXPLICIT_VR_BE = uids.EXPLICIT_VR_BIG_ENDIAN
DEFLATED_EXPLICIT_VR_LE = uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

_UNDEFINED = 0xFFFFFFFF
_LONG_VR = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_BULK_VR = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})



def _syntax(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """(is_implicit_VR, is_little_endian, is_deflated) of a transfer syntax UID."""
    uid = str(transfer_syntax).rstrip("\0 ")
    if uid == IMPLICIT_VR_LE:
        return True, True, False
    if uid == EXPLICIT_VR_BE:
        return False, False, False
    if uid == DEFLATED_EXPLICIT_VR_LE:
        return False, True, True
    return False, True, False  # explicit VR LE and every encapsulated syntax


def _uid_for(implicit: bool, little: bool) -> str:
    if implicit:
        return IMPLICIT_VR_LE
    return EXPLICIT_VR_LE if little else EXPLICIT_VR_BE


# ---------------------------------------------------------------- decoding

class _FdRaw(RawDataElement):
    """A raw element made by this module. Exactly a pydicom RawDataElement, except that
    when it is a sequence its items are split in Rust as it is read (see
    :func:`_raw_element_value`)."""

    __slots__ = ()


_RAW_TYPES = (RawDataElement, _FdRaw)

# _FdRaw(...) goes through the named tuple's Python __new__; decode() makes them by
# the thousand (a C-FIND answer has a dozen), so it builds the tuple directly, with
# the defaults of the fields after the seven it gives (pydicom 3: is_raw, is_buffered).
_RAW_FIELDS = ("tag", "VR", "length", "value", "value_tell", "is_implicit_VR", "is_little_endian")
_RAW_TAIL: tuple | None = None
if tuple(_FdRaw._fields[:7]) == _RAW_FIELDS and all(f in _FdRaw._field_defaults for f in _FdRaw._fields[7:]):
    _RAW_TAIL = tuple(_FdRaw._field_defaults[f] for f in _FdRaw._fields[7:])


def _sequence(raw: RawDataElement, encoding: Any) -> Sequence | None:
    """The Sequence of a raw sequence value, its items split in Rust: Datasets of raw
    elements, as pydicom's reader builds them (nested sequences stay raw until read).
    None when Rust finds the value irregular or malformed: pydicom's reader then takes
    it, with its own tolerance and messages."""
    value = raw.value
    if type(value) is not bytes or not value:
        return None
    items = _core.codec_split_items(value, bool(raw.is_implicit_VR), bool(raw.is_little_endian))
    if items is None:
        return None
    implicit, little = raw.is_implicit_VR, raw.is_little_endian
    base = raw.value_tell or 0
    # as pydicom's convert_value: a list of encodings
    parent_encoding = [encoding] if isinstance(encoding, str) else (encoding or [default_encoding])
    out = []
    for offset, undefined, elements in items:
        elems: dict = {}
        for tag, vr, length, start, end in elements:
            t = BaseTag(tag)
            elems[t] = _FdRaw(t, vr, length, value[start:end] if length else empty_value_for_VR(vr, raw=True),
                              base + start, implicit, little)
        item = Dataset(elems, parent_encoding=parent_encoding)
        charset = elems.get(0x00080005)
        item_encoding = (convert_encodings(convert_raw_data_element(charset).value)
                         if charset is not None else parent_encoding)
        item.set_original_encoding(implicit, little, item_encoding)
        item.is_undefined_length_sequence_item = undefined
        item.seq_item_tell = item.file_tell = base + offset
        out.append(item)
    seq = Sequence(out)
    seq.is_undefined_length = raw.length == _UNDEFINED
    return seq


def _install_sequence_hook() -> None:
    """Register a pydicom ``raw_element_value`` callback that splits the sequences of
    this module's raw elements in Rust and hands every other element, unchanged, to the
    callback that was registered before. A callback registered later replaces it; the
    sequences are then read by pydicom's own reader, with the same result, only slower."""
    previous = pydicom_hooks.raw_element_value
    if getattr(previous, "_fastdimse", False):
        return

    def raw_element_value(raw: RawDataElement, data: dict, **kwargs: Any) -> None:
        if type(raw) is _FdRaw and data.get("VR") == "SQ":
            seq = _sequence(raw, kwargs.get("encoding"))
            if seq is not None:
                data["value"] = seq
                return
        previous(raw, data, **kwargs)

    raw_element_value._fastdimse = True  # type: ignore[attr-defined]
    pydicom_hooks.register_callback("raw_element_value", raw_element_value)


_install_sequence_hook()


class _BlankDataset:
    """Makes ``Dataset(raw)`` without running ``Dataset.__init__``: the instance state
    of a Dataset made by pydicom's own ``__init__`` (taken once per value of
    pydicom's ``config._use_future``, which the state depends on) is copied, its
    mutable members (dicts, lists) fresh for each new Dataset, and ``_dict`` set to
    ``raw``. ``__init__`` sets a dozen attributes through ``Dataset.__setattr__``
    (about 8 us); this is under 1 us, which counts for C-FIND answers by the
    thousand. Used only when the copy of a pydicom-made Dataset is found equal to it
    (checked once, at first use): otherwise ``Dataset(raw)``."""

    def __init__(self) -> None:
        self._state: dict | None = None
        self._future: Any = object()
        self._mutable: tuple = ()

    def _take(self) -> None:
        self._future = getattr(_pydicom_config, "_use_future", None)
        proto = Dataset({})
        state = dict(proto.__dict__)
        mutable = tuple(k for k, v in state.items() if isinstance(v, (dict, list, set)) and k != "_dict")
        self._state, self._mutable = state, mutable
        probe = {BaseTag(0x00100020): RawDataElement(BaseTag(0x00100020), "LO", 2, b"X ", 0, False, True)}
        made, ref = self._make(probe), Dataset(probe)
        if (type(Dataset).__call__ is not type.__call__ or Dataset.__new__ is not object.__new__
                or made.__dict__.keys() != ref.__dict__.keys()
                or any(made.__dict__[k] != ref.__dict__[k] for k in ref.__dict__)):
            self._state = None  # pydicom made it otherwise: use its __init__

    def _make(self, raw: dict) -> Dataset:
        ds = object.__new__(Dataset)
        d = ds.__dict__
        d.update(self._state)
        for k in self._mutable:
            d[k] = self._state[k].copy()
        d["_dict"] = raw
        return ds

    def __call__(self, raw: dict) -> Dataset:
        if getattr(_pydicom_config, "_use_future", None) != self._future:
            self._take()
        if self._state is None:
            return Dataset(raw)
        return self._make(raw)


_new_dataset = _BlankDataset()


def _dataset(values: list, implicit: bool, little: bool) -> Dataset:
    """A Dataset of raw elements from [(tag, VR, length, value, value_tell)]."""
    raw: dict = {}
    eager = []
    for tag, vr, length, value, tell in values:
        t = BaseTag(tag)
        if vr == "UN" and length == _UNDEFINED:
            # An undefined-length UN holds a sequence (PS3.5 6.2.2); pydicom's
            # reader parses it at once as SQ, and so do we.
            vr = "SQ"
            eager.append(t)
        if not length:
            value = empty_value_for_VR(vr, raw=True)
        # (a None value with a length is deferred: pydicom reads it from the
        # file when it is accessed)
        raw[t] = _FdRaw(t, vr, length, value, tell, implicit, little)
    ds = _finish_dataset(raw, implicit, little)
    for tag in eager:
        ds[tag]  # convert now
    return ds


def _finish_dataset(raw: dict, implicit: bool, little: bool) -> Dataset:
    ds = _new_dataset(raw)
    charset: Any = default_encoding
    elem = raw.get(0x00080005)
    if elem is not None:
        charset = convert_encodings(convert_raw_data_element(elem).value)
    ds.set_original_encoding(implicit, little, charset)
    return ds


def decode(data: bytes, transfer_syntax: str) -> Dataset:
    """Decode a dataset (no preamble, no file meta) encoded in `transfer_syntax`.

    Returns a pydicom :class:`~pydicom.dataset.Dataset` of raw elements that
    convert on access. Raises :class:`~fastdimse.errors.DatasetError`.
    """
    data = bytes(data)
    buf, elements, implicit, little = _core.codec_split(data, str(transfer_syntax))
    raw: dict = {}
    tail = _RAW_TAIL
    for tag, vr, length, start, end in elements:
        if vr == "UN" and length == _UNDEFINED or tail is None:  # the general path
            values = [(tag, vr, length, buf[start:end], start) for tag, vr, length, start, end in elements]
            return _dataset(values, implicit, little)
        t = BaseTag(tag)
        raw[t] = _tuple_new(_FdRaw, (t, vr, length, buf[start:end] if length else empty_value_for_VR(vr, raw=True),
                                     start, implicit, little) + tail)
    return _finish_dataset(raw, implicit, little)


def read_meta(path: str | os.PathLike) -> dict:
    """Read only the preamble and file meta group of a Part-10 file (in Rust).

    Returns ``transfer_syntax``, ``sop_class_uid``, ``sop_instance_uid``,
    ``implementation_class_uid``, ``implementation_version_name``,
    ``source_ae_title`` and ``dataset_offset`` (where the dataset begins).
    """
    return _core.codec_read_meta(os.fspath(path))


_DEFERRED = object()


def _read_value(f: Any, v: tuple, path: str) -> tuple:
    tag, vr, length, value, tell = v
    if value is None and length:
        f.seek(tell)
        value = f.read(length)
        if len(value) != length:  # the file shrank since it was scanned
            raise DatasetError(
                f"truncated element ({tag >> 16:04X},{tag & 0xFFFF:04X}) at offset {tell} in {path}: "
                f"length {length} runs past end of data",
                offset=tell, tag=tag, path=path,
            )
    return tag, vr, length, value, tell


def read_file(
    path: str | os.PathLike,
    *,
    defer_size: int | str | float | None = None,
    stop_before_pixels: bool = False,
) -> FileDataset:
    """Read a Part-10 file into a :class:`~pydicom.dataset.FileDataset`.

    Rust reads the meta group and splits the dataset; each top-level value is
    read once from the file and converts lazily on access. As with
    ``pydicom.dcmread``: values longer than `defer_size` (bytes, or a string
    such as ``"512 KB"``) are not read until accessed, and
    `stop_before_pixels` ends the dataset before the pixel data.
    """
    path = os.fspath(path)
    preamble, meta_elements, ts, values, implicit, little = _core.codec_read_file(path, stop_before_pixels)
    limit = size_in_bytes(defer_size)
    if limit is not None:
        # deferred values stay None: pydicom reads them from the file on access
        values = [v if v[3] is not None or v[2] <= limit or v[0] == 0x00080005 else (*v[:3], _DEFERRED, v[4])
                  for v in values]
    if any(v[3] is None and v[2] for v in values):
        with open(path, "rb") as f:
            values = [_read_value(f, v, path) for v in values]
    values = [(*v[:3], None, v[4]) if v[3] is _DEFERRED else v for v in values]
    meta_dict: dict = {}
    for tag, vr, value, tell in meta_elements:
        t = BaseTag(tag)
        length = len(value)
        meta_dict[t] = RawDataElement(
            t, vr, length, value if length else empty_value_for_VR(vr, raw=True), tell, False, True
        )
    file_meta = FileMetaDataset(meta_dict)
    dataset = _dataset(values, implicit, little)
    # Like pydicom, the file-level encoding is the transfer syntax's even when
    # the elements turned out to be encoded otherwise (they carry their own).
    ts_implicit, ts_little, _ = _syntax(ts)
    ds = FileDataset(path, dataset, preamble, file_meta, ts_implicit, ts_little)
    ds.set_original_encoding(ts_implicit, ts_little, dataset._character_set)
    return ds


# ---------------------------------------------------------------- encoding
#
# Python decides what each element is (raw and in the target encoding, raw in another
# one, converted text, a sequence, or something only pydicom's writer can encode) and
# hands Rust a list of entries; Rust (``_core.codec_write``, rust/src/dataset/write.rs)
# writes the headers, pads text, frames sequences and items and writes undefined
# lengths with their delimiters. Entry kinds (rust/src/py/codec.rs, ``mod kind``):

_K_VALUE = 0       # (kind, tag, VR or None, value bytes): header + value as it is
_K_UNDEFINED = 1   # (kind, tag, VR or None, content): undefined length + content + delimiter
_K_TEXT = 2        # (kind, tag, VR, ASCII str): header + text padded to even length
_K_ENCODED = 3     # (kind, bytes): whole elements already encoded (pydicom's writer)
_K_SEQUENCE = 4    # (kind, tag, undefined, [(undefined item, [entries])])
_K_SWAP = 5        # (kind, tag, VR, value bytes, source little endian): bulk value byte-swapped
_K_TRANSCODE = 6   # (kind, tag, VR or None, length, value, src implicit, src little, bits, pixrep)


def _context(ds: Dataset) -> tuple[int | None, int | None]:
    def get(tag: int) -> int | None:
        try:
            v = ds[tag].value if tag in ds else None
            return int(v) if v is not None else None
        except Exception:
            return None

    return get(0x00280100), get(0x00280103)


def _write_pydicom(elem: DataElement, implicit: bool, little: bool, encodings: Any) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_data_element(fp, elem, encodings)
    return fp.getvalue()


def _dictionary_vr(tag: int) -> str | None:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _encode_sequence(elem: DataElement, implicit: bool, little: bool, encodings: Any, out: list) -> None:
    items = []
    for item in elem.value:
        entries: list = []
        _encode_dataset(item, implicit, little, entries, encodings)
        items.append((bool(getattr(item, "is_undefined_length_sequence_item", False)), entries))
    out.append((_K_SEQUENCE, elem.tag, bool(elem.is_undefined_length), items))


def _encode_dataset(ds: Dataset, implicit: bool, little: bool, out: list, parent_encoding: Any) -> None:
    """Append the entries of `ds` (see the kinds above) to `out`."""
    if ds.original_character_set != ds._character_set:
        # The character set changed: every text value must be re-encoded, the
        # way pydicom's writer does it.
        fp = DicomBytesIO()
        fp.is_implicit_VR = implicit
        fp.is_little_endian = little
        write_dataset(fp, ds, parent_encoding)
        out.append((_K_ENCODED, fp.getvalue()))
        return
    encodings: Any = None
    context: tuple | None = None
    raw_dict = ds._dict
    for tag in sorted(raw_dict):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        elem = raw_dict[tag]
        if type(elem) in _RAW_TYPES:
            vr = elem.VR
            value = elem.value
            if (
                value is not None
                and elem.is_implicit_VR == implicit
                and elem.is_little_endian == little
                and (implicit or vr)
            ):
                out.append((_K_UNDEFINED if elem.length == _UNDEFINED else _K_VALUE, tag, vr, value))
                continue
            if (vr or _dictionary_vr(tag)) == "SQ":
                # A raw sequence in another encoding: converted in Rust.
                if context is None:
                    context = _context(ds)
                out.append((_K_TRANSCODE, tag, "SQ" if not elem.is_implicit_VR else None,
                            _UNDEFINED if elem.length == _UNDEFINED else len(value or b""), value or b"",
                            bool(elem.is_implicit_VR), bool(elem.is_little_endian), *context))
                continue
            src_little = elem.is_little_endian
            elem = ds[tag]  # converts (VR lookup, ambiguity resolved)
        else:
            src_little = None
        if encodings is None:
            encodings = ds.get("SpecificCharacterSet", parent_encoding)
        if elem.VR == "SQ":
            _encode_sequence(elem, implicit, little, encodings, out)
            continue
        if " or " in elem.VR:
            elem = correct_ambiguous_vr_element(elem, ds, little)
        if (
            src_little is not None
            and src_little != little
            and elem.VR in _BULK_VR
            and isinstance(elem.value, bytes)
            and not elem.is_undefined_length
        ):
            # Bulk binary values keep their original byte order in pydicom:
            # swapped in Rust.
            out.append((_K_SWAP, tag, elem.VR, elem.value, bool(src_little)))
            continue
        text = _text_value(elem)
        if text is not None:
            out.append((_K_TEXT, tag, elem.VR, text))
            continue
        out.append((_K_ENCODED, _write_pydicom(elem, implicit, little, encodings)))


# Text VRs whose ASCII values encode the same in every character set, padded with a
# space (UI: NUL) to even length, values joined by backslash: the bytes pydicom writes.
_TEXT_VR = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT", "PN"})
_SINGLE_VALUED = frozenset({"LT", "ST", "UR", "UT"})


def _text_value(elem: DataElement) -> str | None:
    """The ASCII text of a plain text element (Rust pads it), or None (pydicom writes it)."""
    vr = elem.VR
    if vr not in _TEXT_VR:
        return None
    value = elem.value
    if value is None or value == "":
        return ""
    if isinstance(value, str):  # str and pydicom's UID
        text = str(value)
    elif vr == "PN" and type(value).__name__ == "PersonName" and value.original_string is None:
        text = str(value)
    elif vr not in _SINGLE_VALUED and type(value).__name__ == "MultiValue" and all(isinstance(v, str) for v in value):
        text = "\\".join(value)
    else:
        return None
    return text if text.isascii() else None


def encode_text_elements(elements, transfer_syntax: str) -> bytes | None:
    """Encode a flat data set of ASCII text elements, given as (tag, VR, value) with
    str / list-of-str / None values, without building a pydicom Dataset. Returns None
    when an element is anything else (the caller then uses :func:`encode`)."""
    implicit, little, deflated = _syntax(transfer_syntax)
    if deflated:
        return None
    return _core.codec_encode_text(elements, implicit, little)


def _encode_text_elements_py(elements, transfer_syntax: str) -> bytes | None:
    """The Python reference of :func:`encode_text_elements` (the tests compare them):
    the same rules in Python, each element then written by pydicom's writer."""
    implicit, little, deflated = _syntax(transfer_syntax)
    if deflated:
        return None
    out = []
    for tag, vr, value in sorted(elements, key=lambda e: e[0]):
        if vr not in _TEXT_VR and vr not in ("IS", "DS"):
            return None
        if value is None or value == "" or value == []:
            data = b""
        else:
            if vr == "IS" and type(value) is int:
                text = str(value)
            elif isinstance(value, str):
                text = value
            elif isinstance(value, (list, tuple)) and vr not in _SINGLE_VALUED and all(isinstance(v, str) for v in value):
                text = "\\".join(value)
            else:
                return None
            if not text.isascii():
                return None
            data = text.encode("ascii")
            if len(data) % 2:
                data += b"\0" if vr == "UI" else b" "
        if not implicit and vr not in _LONG_VR and len(data) > 0xFFFF:
            return None  # too long for a 16-bit length field
        raw = RawDataElement(BaseTag(tag), vr, len(data), data, 0, implicit, little)
        out.append(_write_pydicom(raw, implicit, little, default_encoding))
    return b"".join(out)


_UNCOMPRESSED = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_EXPLICIT_VR_LE})


def _encode_parts(ds: Dataset, transfer_syntax: str) -> list:
    implicit, little, deflated = _syntax(transfer_syntax)
    pixels = ds._dict.get(0x7FE00010)
    if (
        pixels is not None
        and str(transfer_syntax).rstrip("\0 ") in _UNCOMPRESSED
        and (pixels.length == _UNDEFINED if type(pixels) in _RAW_TYPES else pixels.is_undefined_length)
    ):
        raise DatasetError(
            f"encapsulated (compressed) pixel data cannot be written in {transfer_syntax}: "
            "decompress it first (the codec converts only between uncompressed syntaxes)",
            tag=0x7FE00010,
        )
    entries: list = []
    _encode_dataset(ds, implicit, little, entries, default_encoding)
    out = _core.codec_write(entries, implicit, little)
    if deflated:
        out = [_core.codec_transcode(b"".join(out), EXPLICIT_VR_LE, DEFLATED_EXPLICIT_VR_LE)]
    return out


def encode(ds: Dataset, transfer_syntax: str) -> bytes:
    """Encode `ds` (no preamble, no file meta) in `transfer_syntax`.

    Encapsulated syntaxes are written as explicit VR little endian, with the
    pixel data as it is in `ds`; the deflated syntax is deflated in Rust.
    """
    return b"".join(_encode_parts(ds, transfer_syntax))


def _meta_bytes(file_meta: Dataset) -> bytes:
    meta = Dataset({t: e for t, e in file_meta._dict.items() if t != 0x00020000})
    entries: list = []
    _encode_dataset(meta, False, True, entries, default_encoding)
    # Rust writes the group length (0002,0000) in front of the elements
    return b"".join(_core.codec_write(entries, False, True, 0x00020000))


def write_file(path: str | os.PathLike | Any, ds: Dataset, transfer_syntax: str | None = None) -> None:
    """Write `ds` as a Part-10 file: preamble, "DICM", file meta group (explicit
    VR little endian, with a correct group length), then the dataset.

    The transfer syntax is `transfer_syntax` when given, else
    ``ds.file_meta.TransferSyntaxUID``. Missing Media Storage SOP Class/Instance
    UIDs are taken from the dataset; a missing version, Implementation Class
    UID and Version Name are fastdimse's. When `transfer_syntax` is given and
    differs from the file meta's, the file meta is updated. `path` may also be
    a writable binary file object.
    """
    given_meta = getattr(ds, "file_meta", None)
    # a copy: the caller's file meta is left as it is
    file_meta = FileMetaDataset(dict(given_meta._dict) if given_meta else {})
    if transfer_syntax is not None:
        file_meta[0x00020010] = DataElement(0x00020010, "UI", transfer_syntax)
    if "TransferSyntaxUID" in file_meta:
        syntax = str(file_meta.TransferSyntaxUID)
    elif None not in ds.original_encoding:
        # The dataset's own encoding. A file meta given without a transfer
        # syntax is written as it is (as pydicom does); a new one names it.
        syntax = _uid_for(*ds.original_encoding)
        if not given_meta:
            file_meta[0x00020010] = DataElement(0x00020010, "UI", syntax)
    else:
        raise DatasetError("write_file: no transfer syntax (give one or set file_meta.TransferSyntaxUID)",
                           path=_path_str(path))
    if "FileMetaInformationVersion" not in file_meta:
        file_meta[0x00020001] = DataElement(0x00020001, "OB", b"\x00\x01")
    if "MediaStorageSOPClassUID" not in file_meta and "SOPClassUID" in ds:
        file_meta[0x00020002] = DataElement(0x00020002, "UI", ds.SOPClassUID)
    if "MediaStorageSOPInstanceUID" not in file_meta and "SOPInstanceUID" in ds:
        file_meta[0x00020003] = DataElement(0x00020003, "UI", ds.SOPInstanceUID)
    if "ImplementationClassUID" not in file_meta:
        defaults = _core.codec_build_meta("", "", "")  # Rust's own values
        parsed = _core.codec_parse_meta(defaults)[1]
        for tag, vr, value, _ in parsed:
            if tag in (0x00020012, 0x00020013) and tag not in file_meta:
                file_meta[tag] = DataElement(tag, vr, value.rstrip(b"\0 ").decode("ascii"))
    preamble = getattr(ds, "preamble", None) or b"\x00" * 128
    if len(preamble) != 128:
        raise DatasetError("write_file: the preamble must be 128 bytes long", path=_path_str(path))
    parts = _encode_parts(ds, syntax)
    if hasattr(path, "write"):
        _write_all(path, preamble, file_meta, parts)
    else:
        with open(path, "wb") as f:
            _write_all(f, preamble, file_meta, parts)


def _path_str(path: Any) -> str | None:
    return None if hasattr(path, "write") else os.fspath(path)


def _write_all(f: Any, preamble: bytes, file_meta: Dataset, parts: list) -> None:
    f.write(preamble)
    f.write(b"DICM")
    f.write(_meta_bytes(file_meta))
    f.writelines(parts)


# ---------------------------------------------------------------- transcoding

def transcode(data: bytes, from_syntax: str, to_syntax: str) -> bytes:
    """Transcode dataset bytes between the uncompressed transfer syntaxes in Rust
    (equal UIDs copy the bytes). No Python objects are built."""
    return _core.codec_transcode(bytes(data), str(from_syntax), str(to_syntax))


def transcode_file(src: str | os.PathLike, dst: str | os.PathLike, transfer_syntax: str) -> int:
    """Rewrite the Part-10 file `src` as `dst` in `transfer_syntax`, streaming in
    bounded memory in Rust. Returns the number of bytes written."""
    return _core.codec_transcode_file(os.fspath(src), os.fspath(dst), str(transfer_syntax))
