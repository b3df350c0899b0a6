"""Type stubs of the compiled Rust core, fastdimse._core.

Complete: every function, class, method and attribute the extension exports, checked
against the built module by mypy's stubtest (tests/test_core_stub.py, part of
`make test`). A default the runtime shows as ``Ellipsis`` (not a literal in the Rust
signature) is written ``...`` here.
"""

from typing import Any, Callable, Iterable, Iterator, final

# Every name the module exports (stubtest compares this with the runtime's __all__).
__all__ = [
    "__version__", "IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION_NAME", "UIDS", "refresh_logging",
    "STATUS_SUCCESS", "STATUS_CANCEL", "STATUS_PENDING", "STATUS_PENDING_WARNING",
    "STATUS_UNRECOGNIZED_OPERATION", "STATUS_SOP_CLASS_NOT_SUPPORTED", "STATUS_PROCESSING_FAILURE",
    "status_category", "validate_ae_title",
    "Association", "AssociationInfo", "Server", "TlsContext", "Response", "Responses",
    "StoreCancel", "StoreResult", "StoreSummary", "StoredInstance", "store_instances",
    "codec_split", "codec_split_items", "codec_encode_text", "codec_transcode", "codec_parse_meta",
    "codec_read_meta", "codec_build_meta", "codec_transcode_file", "codec_read_file", "codec_write",
]

__version__: str
IMPLEMENTATION_CLASS_UID: str
IMPLEMENTATION_VERSION_NAME: str
#: every UID the Rust core spells by name (rust/src/uid.rs), read by fastdimse.uids
UIDS: dict[str, str]

def refresh_logging() -> None:
    """Make the core see the current levels of the Python loggers under "fastdimse"."""

# --- rules and constants Python takes from the core (rust/src/py/rules.rs) ----------------

STATUS_SUCCESS: int
STATUS_CANCEL: int
STATUS_PENDING: int
STATUS_PENDING_WARNING: int
STATUS_UNRECOGNIZED_OPERATION: int
STATUS_SOP_CLASS_NOT_SUPPORTED: int
STATUS_PROCESSING_FAILURE: int

def status_category(status: int) -> str:
    """'success', 'pending', 'cancel', 'warning' or 'failure' (PS3.7 C.1-C.4)."""

def validate_ae_title(title: str) -> str:
    """`title` without leading/trailing spaces, or ValueError saying what is wrong."""

# --- networking (rust/src/py/net.rs) ---------------------------------------

@final
class Association:
    """A requested association; every method blocks with the GIL released."""

    @staticmethod
    def request(
        host: str,
        port: int,
        calling_ae_title: str,
        called_ae_title: str,
        contexts: list[tuple[str, list[str]]],
        *,
        roles: list[tuple[str, bool, bool]] = ...,
        max_pdu_length: int = 1048576,
        connect_timeout: float | None = ...,
        acse_timeout: float | None = ...,
        dimse_timeout: float | None = ...,
        network_timeout: float | None = ...,
        tls: TlsContext | None = None,
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
        on_stored: Callable[[StoredInstance], int | None] | None = None,
        message_id: int | None = None,
        priority: int = 0,
    ) -> Response: ...
    def release(self) -> None: ...
    def abort(self) -> None: ...
    @property
    def is_established(self) -> bool: ...
    def info(self) -> AssociationInfo | None: ...

@final
class AssociationInfo:
    """The facts of a negotiated association: titles, maximum PDU lengths, the peer's
    implementation, accepted contexts (id, abstract syntax, transfer syntax, SCU role,
    SCP role) and rejected ones (id, abstract syntax, result)."""

    def __new__(
        cls,
        peer_ae_title: str,
        our_ae_title: str,
        peer_max_pdu: int,
        our_max_pdu: int,
        peer_implementation_class_uid: str | None,
        peer_implementation_version_name: str | None,
        accepted_contexts: tuple[tuple[int, str, str, bool, bool], ...],
        rejected_contexts: tuple[tuple[int, str, int], ...],
        peer_address: str,
    ) -> AssociationInfo: ...
    @property
    def peer_ae_title(self) -> str: ...
    @property
    def our_ae_title(self) -> str: ...
    @property
    def peer_max_pdu(self) -> int: ...
    @property
    def our_max_pdu(self) -> int: ...
    @property
    def peer_implementation_class_uid(self) -> str | None: ...
    @property
    def peer_implementation_version_name(self) -> str | None: ...
    @property
    def accepted_contexts(self) -> tuple[tuple[int, str, str, bool, bool], ...]: ...
    @property
    def rejected_contexts(self) -> tuple[tuple[int, str, int], ...]: ...
    @property
    def peer_address(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]

# --- Q/R service user (rust/src/py/qr.rs) -----------------------------------

@final
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

@final
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

@final
class Server:
    """A listening SCP; serves in background threads until stop()."""

    def __new__(
        cls,
        host: str,
        port: int,
        ae_title: str,
        contexts: list[tuple[str, list[str]]],
        *,
        require_called_ae: bool = True,
        allowed_calling_aes: list[str] | None = None,
        max_pdu_length: int = 1048576,
        acse_timeout: float | None = ...,
        dimse_timeout: float | None = ...,
        network_timeout: float | None = ...,
        max_associations: int = 64,
        storage_dir: str | None = None,
        layout: str | None = None,
        duplicates: str = "overwrite",
        on_stored: Callable[[StoredInstance], int | None] | None = None,
        fsync: bool = False,
        qr_provider: Any | None = None,
        index_tags: list[int] = ...,
        on_index: Callable[[list[StoredInstance]], list[tuple[Any, ...]] | None] | None = None,
        tls: TlsContext | None = None,
    ) -> Server: ...
    @property
    def port(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def is_running(self) -> bool: ...
    @property
    def active_associations(self) -> int: ...
    def stop(self) -> None: ...

# --- TLS (rust/src/py/tls.rs; used by fastdimse.tls) ---------------------------------------

@final
class TlsContext:
    """A loaded TLS configuration (PEM files read once), client or server side."""

    @staticmethod
    def client(
        *, ca: str | None, cert: str | None = None, key: str | None = None, verify_hostname: bool = True,
        server_name: str | None = None,
    ) -> TlsContext: ...
    @staticmethod
    def server(*, cert: str, key: str, ca: str | None = None, require_client_cert: bool = False) -> TlsContext: ...
    @property
    def is_server(self) -> bool: ...

# --- storage (rust/src/py/store.rs) -------------------------------------------------------

@final
class StoreCancel:
    """A flag store_instances checks before each instance."""

    def __new__(cls) -> StoreCancel: ...
    def cancel(self) -> None: ...
    @property
    def is_cancelled(self) -> bool: ...

@final
class StoreResult:
    """The outcome of C-STORE for one instance (``status`` None: not sent; ``reason``)."""

    def __new__(
        cls,
        sop_instance_uid: str,
        sop_class_uid: str,
        status: int | None,
        reason: str | None,
        path: str | None,
        transfer_syntax: str,
        sent_transfer_syntax: str | None,
        bytes: int,
        index: int,
    ) -> StoreResult: ...

    @property
    def sop_instance_uid(self) -> str: ...
    @property
    def sop_class_uid(self) -> str: ...
    @property
    def status(self) -> int | None: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def path(self) -> str | None: ...
    @property
    def transfer_syntax(self) -> str: ...
    @property
    def sent_transfer_syntax(self) -> str | None: ...
    @property
    def bytes(self) -> int: ...
    @property
    def index(self) -> int: ...
    @property
    def is_success(self) -> bool: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class StoreSummary:
    """What a store did: counts, bytes, associations, elapsed seconds, the failures kept."""

    def __new__(
        cls,
        total: int,
        completed: int,
        warning: int,
        failed: int,
        bytes: int,
        associations: int,
        cancelled: bool,
        elapsed: float,
        failures: Iterable[StoreResult],
    ) -> StoreSummary: ...

    @property
    def total(self) -> int: ...
    @property
    def completed(self) -> int: ...
    @property
    def warning(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def associations(self) -> int: ...
    @property
    def cancelled(self) -> bool: ...
    @property
    def elapsed(self) -> float: ...
    @property
    def failures(self) -> tuple[StoreResult, ...]: ...
    @property
    def is_success(self) -> bool: ...
    @property
    def failures_not_kept(self) -> int: ...
    def __iter__(self) -> Iterator[StoreResult]: ...
    def __eq__(self, value: object, /) -> bool: ...
    __hash__: None  # type: ignore[assignment]

@final
class StoredInstance:
    """An instance the storage SCP wrote (``on_stored``, the index); ``attributes``: raw
    values by tag of what the index asked for."""

    def __new__(
        cls,
        path: str,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        patient_id: str,
        study_instance_uid: str,
        series_instance_uid: str,
        calling_ae_title: str,
        called_ae_title: str,
        dataset_bytes: int,
        attributes: dict[int, bytes] = ...,
    ) -> StoredInstance: ...
    @property
    def path(self) -> str: ...
    @property
    def sop_class_uid(self) -> str: ...
    @property
    def sop_instance_uid(self) -> str: ...
    @property
    def transfer_syntax(self) -> str: ...
    @property
    def patient_id(self) -> str: ...
    @property
    def study_instance_uid(self) -> str: ...
    @property
    def series_instance_uid(self) -> str: ...
    @property
    def calling_ae_title(self) -> str: ...
    @property
    def called_ae_title(self) -> str: ...
    @property
    def dataset_bytes(self) -> int: ...
    @property
    def attributes(self) -> dict[int, bytes]: ...
    def read_dataset(
        self,
        defer_size: int | str | float | None = None,
        stop_before_pixels: bool = False,
        force: bool = False,
        specific_tags: list[Any] | None = None,
    ) -> Any:
        """pydicom.dcmread(path, ...) with these arguments (a pydicom FileDataset)."""
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

def store_instances(
    items: Iterable[str | tuple[str, str, str, str, bytes]],
    *,
    host: str,
    port: int,
    calling_ae_title: str,
    called_ae_title: str,
    max_pdu_length: int = 1048576,
    parallel: int = 1,
    connect_timeout: float | None = ...,
    acse_timeout: float | None = ...,
    dimse_timeout: float | None = ...,
    network_timeout: float | None = ...,
    on_progress: Callable[[StoreResult], None] | None = None,
    move_originator: tuple[str, int] | None = None,
    window: int = ...,
    keep_results: bool = True,
    max_failures: int = 1000,
    lookahead: int = ...,
    cancel: StoreCancel | None = None,
    coerce: list[tuple[int, str | None]] | None = None,
    tls: TlsContext | None = None,
) -> tuple[StoreSummary, list[StoreResult] | None]:
    """C-STORE whatever `items` (any iterable, pulled lazily) yields: paths (folders
    walked) or (label, SOP class UID, SOP instance UID, transfer syntax UID, data set
    bytes). Returns the summary and, when keep_results, the results in input order.
    `coerce`: (tag, value or None to delete) set in every instance's header part as it
    is streamed (ValueError for a tag or value that cannot be coerced)."""

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

def codec_split_items(
    data: bytes, implicit: bool, little: bool
) -> list[tuple[int, bool, list[tuple[int, str | None, int, int, int]]]] | None:
    """Split a sequence value into items: [(item offset, undefined length, [(tag, VR,
    length, value_start, value_end)])]; None when the value is irregular or malformed."""

def codec_encode_text(elements: Iterable[tuple[int, str, Any]], implicit: bool, little: bool) -> bytes | None:
    """Encode a flat data set of ASCII text elements [(tag, VR, value)], sorted by tag;
    None when an element is anything else or too long for its length field."""

def codec_write(entries: Iterable[tuple[Any, ...]], implicit: bool, little: bool, group_length: int | None = None) -> list[bytes]:
    """Write a data set from codec.py's entries (kinds in rust/src/py/codec.rs `mod kind`:
    value, undefined-length value, text, encoded, sequence, byte swap, transcode): Rust
    writes the headers, padding and sequence/item framing. Returns the bytes as parts
    (large values are their own objects); with `group_length`, preceded by that UL
    group length element."""

# ---- end dataset codec -------------------------------------------------------------------
