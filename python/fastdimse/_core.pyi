"""Type stubs of the compiled module fastdimse._core."""

__version__: str

# ---- dataset codec (rust/src/py/codec.rs; used by fastdimse.codec) ----------------------

def codec_split(
    data: bytes, transfer_syntax: str, start: int = 0, path: str | None = None
) -> tuple[bytes, list[tuple[int, str | None, int, int, int]], bool, bool]:
    """Split data[start:] into top-level elements: (buffer, [(tag, VR, length,
    value_start, value_end)], is_implicit_VR, is_little_endian). `buffer` is
    `data`, or the inflated dataset for the deflated syntax."""

def codec_transcode(
    data: bytes,
    from_syntax: str,
    to_syntax: str,
    bits_allocated: int | None = None,
    pixel_representation: int | None = None,
) -> bytes: ...
def codec_parse_meta(
    data: bytes, path: str | None = None
) -> tuple[bytes, list[tuple[int, str, bytes, int]], int]:
    """(preamble, [(tag, VR, value, value_offset)], dataset_offset)."""

def codec_read_meta(path: str) -> dict[str, str | int | None]: ...
def codec_build_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_ae_title: str | None = None
) -> bytes: ...
def codec_transcode_file(
    src: str, dst: str, transfer_syntax: str, source_ae_title: str | None = None
) -> int: ...

def codec_read_file(
    path: str, stop_before_pixels: bool = False
) -> tuple[bytes, list[tuple[int, str, bytes, int]], str, list[tuple[int, str | None, int, bytes | None, int]], bool, bool]:
    """(preamble, meta, transfer_syntax, [(tag, VR, length, value or None, value_offset)],
    is_implicit_VR, is_little_endian); a None value is read by the caller at value_offset."""

# ---- end dataset codec -------------------------------------------------------------------
