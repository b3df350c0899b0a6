"""Type stubs of the compiled Rust core, fastdimse._core."""

from typing import Any, Callable, Iterable

__version__: str
IMPLEMENTATION_CLASS_UID: str
IMPLEMENTATION_VERSION_NAME: str

# --- networking (rust/src/py/net.rs) ---------------------------------------

class Association:
    """A requested association; every method blocks with the GIL released."""

    @staticmethod
    def request(
        host: str,
        port: int,
        calling_ae_title: str,
        called_ae_title: str,
        contexts: list[tuple[str, list[str]]],
        roles: list[tuple[str, bool, bool]] = ...,
        max_pdu_length: int = 1048576,
        connect_timeout: float | None = 10.0,
        acse_timeout: float | None = 30.0,
        dimse_timeout: float | None = 30.0,
        network_timeout: float | None = 60.0,
    ) -> Association: ...
    def echo(self, message_id: int | None = None) -> tuple[int, int]: ...
    def find(self, abstract_syntax: str, identifier: bytes, message_id: int | None = None, priority: int = 0) -> Responses: ...
    def move(
        self, abstract_syntax: str, identifier: bytes, destination: str, message_id: int | None = None, priority: int = 0
    ) -> Responses: ...
    def get(
        self,
        abstract_syntax: str,
        identifier: bytes,
        storage_dir: str,
        layout: str | None = None,
        duplicates: str = "overwrite",
        on_pending: Callable[[Response], None] | None = None,
        on_stored: Callable[[dict[str, Any]], int | None] | None = None,
        message_id: int | None = None,
        priority: int = 0,
    ) -> Response: ...
    def release(self) -> None: ...
    def abort(self) -> None: ...
    @property
    def is_established(self) -> bool: ...
    def info(self) -> dict[str, Any] | None: ...

# --- Q/R service user (rust/src/py/qr.rs) -----------------------------------

class Response:
    """One C-FIND/C-MOVE/C-GET response: status, sub-operation counts (None when the
    response leaves them out), its identifier as encoded on the wire, and for a
    C-MOVE/C-GET the Failed SOP Instance UID List read from it."""

    @property
    def status(self) -> int: ...
    @property
    def message_id_being_responded_to(self) -> int: ...
    @property
    def remaining(self) -> int | None: ...
    @property
    def completed(self) -> int | None: ...
    @property
    def failed(self) -> int | None: ...
    @property
    def warning(self) -> int | None: ...
    @property
    def error_comment(self) -> str | None: ...
    @property
    def identifier(self) -> bytes | None: ...
    @property
    def failed_sop_instance_uids(self) -> list[str]: ...
    @property
    def is_pending(self) -> bool: ...

class Responses:
    """The pending responses of a C-FIND or C-MOVE as they arrive; ``final_response``
    once the iteration ends. ``cancel()`` sends C-CANCEL-RQ and reads up to the final
    response."""

    def __iter__(self) -> Responses: ...
    def __next__(self) -> Response: ...
    def cancel(self) -> None: ...
    @property
    def final_response(self) -> Response | None: ...
    @property
    def finished(self) -> bool: ...
    @property
    def message_id(self) -> int: ...
    @property
    def context_id(self) -> int: ...

class Server:
    """A listening SCP; serves in background threads until stop()."""

    def __init__(
        self,
        host: str,
        port: int,
        ae_title: str,
        contexts: list[tuple[str, list[str]]],
        require_called_ae: bool = True,
        allowed_calling_aes: list[str] | None = None,
        max_pdu_length: int = 1048576,
        acse_timeout: float | None = 30.0,
        dimse_timeout: float | None = 30.0,
        network_timeout: float | None = 60.0,
        max_associations: int = 64,
        storage_dir: str | None = None,
        layout: str | None = None,
        duplicates: str = "overwrite",
        on_stored: Callable[[dict[str, Any]], int | None] | None = None,
        fsync: bool = False,
    ) -> None: ...
    @property
    def port(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def is_running(self) -> bool: ...
    @property
    def active_associations(self) -> int: ...
    def stop(self) -> None: ...

class StoreCancel:
    """A flag store_instances checks before each instance."""

    def __init__(self) -> None: ...
    def cancel(self) -> None: ...
    @property
    def is_cancelled(self) -> bool: ...

def store_instances(
    host: str,
    port: int,
    calling_ae_title: str,
    called_ae_title: str,
    items: Iterable[str | tuple[str, str, str, str, bytes]],
    max_pdu_length: int = 1048576,
    parallel: int = 1,
    connect_timeout: float | None = 10.0,
    acse_timeout: float | None = 30.0,
    dimse_timeout: float | None = 30.0,
    network_timeout: float | None = 60.0,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    move_originator: tuple[str, int] | None = None,
    window: int = 16,
    *,
    keep_results: bool = True,
    max_failures: int = 1000,
    lookahead: int = 1024,
    cancel: StoreCancel | None = None,
) -> dict[str, Any]:
    """C-STORE whatever `items` (any iterable, pulled lazily) yields: paths (folders
    walked) or (label, SOP class UID, SOP instance UID, transfer syntax UID, data set
    bytes). Returns a summary dict: total, completed, warning, failed, bytes,
    associations, cancelled, failures (dicts), results (dicts in input order when
    keep_results, else None)."""

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
