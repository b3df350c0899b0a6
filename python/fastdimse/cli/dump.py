"""``fastdimse dump``: a DICOM file's elements, one per line (as dcmdump), or its DICOM
JSON model (PS3.18 F).

Files are read through fastdimse's codec (:func:`fastdimse.codec.read_file`: Rust splits
the file, pydicom converts each value as it is printed); a file that is only a data set
(no preamble, no meta group) is decoded in the syntax its first element shows. A file
that cannot be read (truncated, not DICOM, a malformed element) is reported as one line
on stderr naming the file and the byte offset, and the command goes on with the next
file; the exit code is then 1.

Line format (values longer than ``--max-length`` characters end in ``...``; bulk data
such as the pixel data shows its length only):

    (0010,0010) PN [DOE^JOHN]                              # PatientName
    (0008,1140) SQ (Sequence with 1 item)                  # ReferencedImageSequence
      (fffe,e000) na (Item #1)
        (0008,1150) UI [1.2.840.10008.5.1.4.1.1.2]         # ReferencedSOPClassUID (CT Image Storage)
    (7fe0,0010) OW (6144 bytes)                            # PixelData
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .common import EXIT_FAILED, EXIT_OK, emit_json, logging_options, report_error, returns_exit_code

__all__ = ["dump", "dump_lines", "DumpError"]

# The value column is padded to this width before the comment (as dcmdump does).
_VALUE_COLUMN = 52
_INDENT = "  "
# Binary VRs: shown as hex bytes (short values) or by length (bulk data).
_BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"})
# Numbers stored in binary (no brackets, as dcmdump prints them).
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "US or SS", "US or SS or OW"})
# Bulk data: always shown by length.
_BULK_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009, 0x7FE00001, 0x7FE00002})


class DumpError(Exception):
    """A file that cannot be dumped: the message names the file and the offset."""


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04x},{tag & 0xFFFF:04x})"


def _truncate(text: str, max_length: int) -> str:
    if max_length > 0 and len(text) > max_length:
        return text[:max_length] + "..."
    return text


def _keyword(elem: Any) -> str:
    kw = elem.keyword
    if kw:
        return kw
    if elem.tag.is_private:
        return "PrivateCreator" if elem.tag.is_private_creator else "PrivateTag"
    return "UnknownTag"


def _value_text(elem: Any, max_length: int) -> str:
    """The value column of one (non-sequence) element."""
    value = elem.value
    vr = elem.VR
    if int(elem.tag) in _BULK_TAGS and isinstance(value, (bytes, bytearray)):
        if elem.is_undefined_length:
            return f"(encapsulated, {len(value)} bytes)"
        return f"({len(value)} bytes)"
    if value is None or value == "" or (isinstance(value, (bytes, bytearray, list)) and len(value) == 0):
        return "(no value)"
    if isinstance(value, (bytes, bytearray)):
        shown = max(1, max_length // 3) if max_length > 0 else len(value)
        text = "\\".join(f"{b:02x}" for b in value[:shown])
        return text + (f"... ({len(value)} bytes)" if len(value) > shown else "")
    values = list(value) if elem.VM > 1 or isinstance(value, list) else [value]
    if vr == "AT":
        text = "\\".join(_tag_text(int(v)) for v in values)
        return _truncate(text, max_length)
    text = "\\".join(str(v) for v in values)
    if vr in _NUMBER_VRS:
        return _truncate(text, max_length)
    return f"[{_truncate(text, max_length)}]"


def _comment(elem: Any) -> str:
    comment = f"# {_keyword(elem)}"
    if elem.VR == "UI" and elem.VM == 1 and elem.value:
        name = getattr(elem.value, "name", "")
        if name and name != str(elem.value):
            comment += f" ({name})"
    return comment


def _line(depth: int, tag: int, vr: str, value: str, comment: str) -> str:
    left = f"{_INDENT * depth}{_tag_text(tag)} {vr} {value}"
    return f"{left:<{_VALUE_COLUMN}} {comment}" if comment else left


class _BadElement(Exception):
    def __init__(self, tag: int, reason: str) -> None:
        super().__init__(reason)
        self.tag = tag


def _element(ds: Any, tag: int) -> Any:
    """The converted element ``tag`` of ``ds``; _BadElement if pydicom cannot convert it."""
    try:
        return ds[tag]
    except Exception as exc:
        raise _BadElement(tag, str(exc) or type(exc).__name__) from None


def _dataset_lines(ds: Any, max_length: int, path: str) -> Iterator[str]:
    """The lines of a top-level data set. A value that cannot be converted is a DumpError naming it and
    the file offset of its top-level element (as the codec found it: offsets inside
    sequences that pydicom's own reader split are relative to the sequence)."""
    for tag in sorted(ds.keys()):
        # (read before the conversion, which replaces the raw element)
        offset = getattr(ds.get_item(tag, keep_deferred=True), "value_tell", None)
        try:
            yield from _element_lines(ds, tag, 0, max_length)
        except _BadElement as exc:
            where = f"at offset {offset}" if offset is not None else "at an unknown offset"
            inner = f"{_tag_text(exc.tag)} in " if exc.tag != tag else ""
            raise DumpError(f"{path}: invalid element {inner}{_tag_text(tag)} (its value {where}): "
                            f"{exc}") from None


def _element_lines(ds: Any, tag: int, depth: int, max_length: int) -> Iterator[str]:
    elem = _element(ds, tag)
    vr = str(elem.VR)
    if vr != "SQ":
        yield _line(depth, tag, vr, _value_text(elem, max_length), _comment(elem))
        return
    items = elem.value or []
    n = len(items)
    yield _line(depth, tag, vr, f"(Sequence with {n} item{'s' if n != 1 else ''})", _comment(elem))
    for i, item in enumerate(items, 1):
        yield _line(depth + 1, 0xFFFEE000, "na", f"(Item #{i})", "")
        for inner in sorted(item.keys()):
            yield from _element_lines(item, inner, depth + 2, max_length)


def _syntax_name(uid: Any) -> str:
    from pydicom.uid import UID

    uid = UID(str(uid))
    return f"{uid.name} ({uid})" if uid.name != str(uid) else str(uid)


def _dataset_error(path: str, exc: Any) -> DumpError:
    message = str(exc).replace(f" in {path}", "")
    if exc.offset is not None and f"offset {exc.offset}" not in message:
        message = f"at offset {exc.offset}: {message}"
    return DumpError(f"{path}: {message}")


def _bare_syntax(head: bytes) -> str | None:
    """The transfer syntax of a file that is a bare data set (no preamble, no meta group,
    as some old tools write them), guessed from its first element (group 0008, as such
    files begin); None if it does not look like one."""
    from .. import uids

    if len(head) < 8 or head[:2] not in (b"\x08\x00", b"\x00\x08"):
        return None
    explicit = head[4:6].isalpha() and head[4:6].isupper()
    if head[:2] == b"\x00\x08":
        return uids.EXPLICIT_VR_BIG_ENDIAN if explicit else None
    return uids.EXPLICIT_VR_LITTLE_ENDIAN if explicit else uids.IMPLICIT_VR_LITTLE_ENDIAN


def _read(path: str) -> tuple[Any, str | None]:
    """The file through fastdimse's codec (a Part-10 file, or a bare data set), and the
    transfer syntax a bare data set was read in (None for a Part-10 file); a DumpError
    naming the file and offset."""
    from ..codec import decode, read_file
    from ..errors import DatasetError

    try:
        return read_file(path), None
    except DatasetError as exc:
        error = exc
    except OSError as exc:
        raise DumpError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise DumpError(f"{path}: cannot read: {exc.strerror or exc}") from None
    ts = _bare_syntax(data[:8])
    if ts is None:
        raise _dataset_error(path, error)
    try:
        return decode(data, ts), ts
    except DatasetError as exc:
        raise _dataset_error(path, exc) from None


def dump_lines(path: str | os.PathLike, *, max_length: int = 64) -> list[str]:
    """The dump of one file as lines (meta group first); DumpError if it cannot be read.
    Built completely before anything is printed, so a bad file prints only its error."""
    path = os.fspath(path)
    ds, bare = _read(path)
    lines = [f"# {path}"]
    if bare is None:
        meta = ds.file_meta
        lines.append("# File meta information: explicit VR little endian")
        lines += _dataset_lines(meta, max_length, path)
        ts = meta.get("TransferSyntaxUID")
        lines.append(f"# Data set: {_syntax_name(ts) if ts else 'transfer syntax not stated'}")
    else:
        lines.append(f"# Data set (no file meta information; read as {_syntax_name(bare)})")
    lines += _dataset_lines(ds, max_length, path)
    return lines


def _json_of(path: str) -> dict:
    ds, _ = _read(path)
    for _ in _dataset_lines(ds, 0, path):  # every element converted: a bad one named with its offset
        pass
    try:
        return ds.to_json_dict()
    except Exception as exc:
        raise DumpError(f"{path}: cannot be written as DICOM JSON: {exc}") from None


DUMP_EXAMPLE = """\b
Example:
  fastdimse dump image.dcm
  fastdimse dump --max-length 0 a.dcm b.dcm
  fastdimse dump --json image.dcm | jq '.[0]["00100010"]'
"""


@click.command("dump", epilog=DUMP_EXAMPLE)
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--max-length", "max_length", type=click.IntRange(0), default=64, show_default=True,
              help="Longest value shown in full; longer ones end in '...' (0: no limit).")
@click.option("--json", "json_out", is_flag=True,
              help="A JSON list with each file's data set in the DICOM JSON model (PS3.18 F).")
@logging_options
@returns_exit_code
def dump(files: tuple[Path, ...], max_length: int, json_out: bool) -> int:
    """Print a DICOM file's elements, one per line: the file meta group first, then the
    data set, sequences indented, long values truncated, pixel data by its length
    (dcmdump).

    A file that cannot be read gets one line on stderr with its name and the byte
    offset; the other files are still dumped, and the exit code is 1.
    """
    failed = 0
    printed = False
    docs: list[dict] = []
    for file in files:
        try:
            if json_out:
                docs.append(_json_of(os.fspath(file)))
                continue
            lines = dump_lines(file, max_length=max_length)
        except DumpError as exc:
            report_error(str(exc))
            failed += 1
            continue
        if printed:
            click.echo()
        click.echo("\n".join(lines))
        printed = True
    if json_out:
        emit_json(docs)
    return EXIT_FAILED if failed else EXIT_OK
