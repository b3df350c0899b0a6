"""``fastdimse scp`` (a storage SCP, as dcmtk's storescp) and ``fastdimse qrscp`` (the
Q/R archive, as dcmqrscp or pynetdicom's qrscp).

Both run :class:`~fastdimse.DICOMSCP` in the foreground: it serves in the Rust core's
threads while the main thread waits for SIGTERM or SIGINT (Ctrl-C). Either signal stops
the listener, closes the live associations and the index, and the command exits 0. A
signal that arrives while the server is still starting (reconciling or importing a
large folder) stops the start the same way.

The one line printed when the server listens goes to stdout, flushed, with the port
actually bound (``--port 0`` picks a free one):
``fastdimse scp: STORE listening on 0.0.0.0:11112, storing into /srv/dicom``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, Peer, ae_title_option_value,
                     logging_options, parse_peer, returns_exit_code, tls_config, tls_options)

__all__ = ["scp", "qrscp"]

log = logging.getLogger("fastdimse")

DEFAULT_PORT = 11112
DEFAULT_HOST = "0.0.0.0"
DEFAULT_SERVER_PDU = 1048576


class _Stop(BaseException):
    """Raised by the signal handler while the server is still starting (a BaseException,
    like KeyboardInterrupt, so that no ``except Exception`` on the way swallows it)."""


def _aet_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else ae_title_option_value(value, "AE title")


def _server_options(default_aet: str) -> Callable[[Callable], Callable]:
    """The options scp and qrscp share: where to listen, how to store, -v/-d."""

    def decorate(func: Callable) -> Callable:
        from ..scp import DEFAULT_LAYOUT

        opts = [
            click.option("--aet", "-aet", "aet", default=default_aet, show_default=True,
                         callback=_aet_value, help="Our AE title."),
            click.option("--port", "-p", "port", type=click.IntRange(0, 65535), default=DEFAULT_PORT,
                         show_default=True, help="TCP port to listen on (0: a free one, printed)."),
            click.option("--host", "host", default=DEFAULT_HOST, show_default=True,
                         help="Address to listen on."),
            click.option("--layout", "layout", default=DEFAULT_LAYOUT, show_default=True,
                         help="Path of each stored file under FOLDER; placeholders {PatientID}, "
                              "{StudyInstanceUID}, {SeriesInstanceUID}, {SOPInstanceUID}, {SOPClassUID}."),
            click.option("--fsync", "fsync", is_flag=True, default=False,
                         help="Sync each file (and the index) to disk before acknowledging it."),
            click.option("--duplicates", "duplicates", type=click.Choice(["overwrite", "keep", "reject"]),
                         default="overwrite", show_default=True,
                         help="An instance whose file exists: replace it, keep the old one, or "
                              "refuse it (0x0111)."),
            click.option("--max-associations", "max_associations", type=click.IntRange(1, 100000),
                         default=64, show_default=True, help="Associations served at once; more are "
                                                             "rejected (transient)."),
            click.option("--pdu", "-pdu", "pdu", type=click.IntRange(0, 0xFFFFFFFF),
                         default=DEFAULT_SERVER_PDU, show_default=True,
                         help="Maximum PDU length we receive (0: no limit)."),
            click.option("--require-called-aet", "require_called_aet", is_flag=True, default=False,
                         help="Reject associations whose called AE title is not ours."),
        ]
        for opt in reversed(opts):
            func = opt(func)
        return logging_options(tls_options(func, server=True))

    return decorate


def _storage_folder(folder: str | os.PathLike) -> Path:
    """FOLDER, created if it does not exist; a usage error if it cannot be used."""
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise CliError(f"{folder}: not a folder", EXIT_USAGE)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"{folder}: cannot create the folder: {exc.strerror or exc}", EXIT_USAGE) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise CliError(f"{folder}: the folder is not writable", EXIT_USAGE)
    return path.resolve()


def _stored_logger() -> Callable | None:
    """An on_stored handler logging each instance at -v (none otherwise: no per-instance
    Python call when nobody reads it)."""
    if not log.isEnabledFor(logging.INFO):
        return None

    def on_stored(stored) -> None:
        log.info("stored %s (%s) from %s: %s", stored.sop_instance_uid, stored.sop_class_uid,
                 stored.calling_ae_title, stored.path)
        return None

    return on_stored


class _Signals:
    """SIGTERM and SIGINT handlers for the foreground server, restored on exit.

    Until :meth:`serving` the handler raises :class:`_Stop` (the start is abandoned);
    afterwards it only sets the event the main thread waits on."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: int | None = None
        self._serving = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum
        self.stop.set()
        if not self._serving:
            raise _Stop()

    def serving(self) -> None:
        self._serving = True

    def __enter__(self) -> "_Signals":
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        # Ignored while the previous handlers come back: a second Ctrl-C during the
        # shutdown must not turn into a traceback.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _run_server(command: str, make_scp: Callable[[], Any], *, folder: Path,
                import_first: bool = False) -> int:
    """Make the SCP, listen, print the listening line, serve until a signal; exit 0."""
    from ..errors import DicomError

    with _Signals() as signals:
        scp: Any = None
        try:
            try:
                scp = make_scp()
                if import_first:
                    result = scp.import_folder(folder)
                    skipped = f", {len(result.skipped)} skipped (not DICOM or not indexable)" if result.skipped else ""
                    click.echo(f"fastdimse {command}: imported {result.added} instance(s) from {folder}{skipped}",
                               err=True)
                scp.listen_for_incoming_associations(keep_listener_running=True)
            except (DicomError, OSError, ValueError, RuntimeError) as exc:
                # the index could not be opened, or the address not listened on
                raise CliError(str(exc) or type(exc).__name__, EXIT_FAILED) from None
            entity = scp.entity
            click.echo(f"fastdimse {command}: {entity.ae_title} listening on "
                       f"{entity.ip_address}:{scp.port}, storing into {folder}")
            sys.stdout.flush()  # the line is read by whoever started us, now
            signals.serving()
            while not signals.stop.wait(0.5):
                if not scp.is_listening:
                    raise CliError(f"the {command} server stopped by itself", EXIT_FAILED)
        except _Stop:
            pass
        finally:
            if scp is not None:
                scp.close()
        if signals.received is not None:
            log.info("%s: stopped by %s", command, signal.Signals(signals.received).name)
    return EXIT_OK


# --- fastdimse scp ------------------------------------------------------------------------


SCP_EXAMPLE = """\b
Example:
  fastdimse scp --aet STORE --port 11112 /srv/incoming
  fastdimse scp --port 0 --host 127.0.0.1 --duplicates reject -v ./in
"""


@click.command("scp", epilog=SCP_EXAMPLE)
@_server_options("STORESCP")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@returns_exit_code
def scp(aet: str, port: int, host: str, layout: str, fsync: bool, duplicates: str,
        max_associations: int, pdu: int, require_called_aet: bool, folder: Path) -> int:
    """A storage SCP writing every storage SOP class into FOLDER (storescp).

    Runs in the foreground until SIGTERM or Ctrl-C, then stops cleanly and exits 0.
    FOLDER is created when it does not exist. C-ECHO is answered too.
    """
    from ..entity import Entity
    from ..scp import DICOMSCP

    path = _storage_folder(folder)

    def make() -> DICOMSCP:
        return DICOMSCP(Entity(aet, host, port), storage_dir=path, query_retrieve=False,
                        layout=layout, duplicates=duplicates, fsync=fsync,
                        max_associations=max_associations, max_pdu_length=pdu,
                        require_called_ae=require_called_aet, on_stored=_stored_logger(), tls=tls)

    tls = tls_config(server=True)
    return _run_server("scp", make, folder=path)


# --- fastdimse qrscp ----------------------------------------------------------------------

# What a --config file may set: key -> (the option it stands for, the type it must have).
_CONFIG_KEYS: dict[str, tuple[str, tuple[type, ...]]] = {
    "aet": ("aet", (str,)), "port": ("port", (int,)), "host": ("host", (str,)),
    "folder": ("folder", (str,)), "index": ("index", (str,)), "layout": ("layout", (str,)),
    "fsync": ("fsync", (bool,)), "duplicates": ("duplicates", (str,)),
    "max_associations": ("max_associations", (int,)), "pdu": ("pdu", (int,)),
    "require_called_aet": ("require_called_aet", (bool,)), "import": ("import_first", (bool,)),
    "known": ("known", (dict,)),
}


def _config_error(path: Path, message: str) -> CliError:
    return CliError(f"config {path}: {message}", EXIT_USAGE)


def _known_from_config(path: Path, table: dict) -> dict[str, Peer]:
    """``[known]``: ``AE = "host:port"`` or ``AE = { host = "...", port = N }``."""
    out: dict[str, Peer] = {}
    for ae, value in table.items():
        if isinstance(value, str):
            text = f"{ae}@{value}"
        elif isinstance(value, dict) and set(value) <= {"host", "port"} and "host" in value and "port" in value:
            host = str(value["host"])
            text = f"{ae}@{'[' + host + ']' if ':' in host else host}:{value['port']}"
        else:
            raise _config_error(path, f"[known] {ae}: write \"host:port\" or {{ host = \"...\", port = N }}")
        try:
            peer = parse_peer(text)
        except click.BadParameter as exc:
            raise _config_error(path, f"[known] {ae}: {exc.format_message()}") from None
        out[peer.ae_title] = peer
    return out


def load_config(path: Path) -> dict[str, Any]:
    """A qrscp TOML config as option name -> value (``known`` as AE -> Peer); a usage
    error naming the file and what is wrong otherwise."""
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser as the tomli package
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise _config_error(path, f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise _config_error(path, f"not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key not in _CONFIG_KEYS:
            raise _config_error(path, f"unknown key {key!r} (known: {', '.join(_CONFIG_KEYS)})")
        name, types = _CONFIG_KEYS[key]
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            raise _config_error(path, f"{key} must be {' or '.join(t.__name__ for t in types)}, "
                                      f"not {type(value).__name__}")
        out[name] = value
    if "known" in out:
        out["known"] = _known_from_config(path, out["known"])
    checks: list[tuple[str, Callable[[Any], Any]]] = [
        ("aet", lambda v: ae_title_option_value(v, "AE title")),
        ("port", lambda v: click.IntRange(0, 65535).convert(v, None, None)),
        ("pdu", lambda v: click.IntRange(0, 0xFFFFFFFF).convert(v, None, None)),
        ("max_associations", lambda v: click.IntRange(1, 100000).convert(v, None, None)),
        ("duplicates", lambda v: click.Choice(["overwrite", "keep", "reject"]).convert(v, None, None)),
        ("index", _index_url),
    ]
    for name, check in checks:
        if name in out:
            try:
                out[name] = check(out[name])
            except click.BadParameter as exc:
                raise _config_error(path, f"{name}: {exc.format_message()}") from None
    return out


def _index_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter(f"{value!r} is not a postgresql:// URL")
    return value


def _known_option(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Peer]:
    out: dict[str, Peer] = {}
    for text in values:
        peer = parse_peer(text)
        out[peer.ae_title] = peer
    return out


QRSCP_EXAMPLE = """\b
Example:
  fastdimse qrscp --aet ARCHIVE --port 11112 /srv/dicom
  fastdimse qrscp --known CATCHER@10.0.0.7:104 --known VIEWER@10.0.0.9:11112 /srv/dicom
  fastdimse qrscp --config /etc/fastdimse/archive.toml --port 11113
"""


@click.command("qrscp", epilog=QRSCP_EXAMPLE)
@_server_options("ARCHIVE")
@click.option("--known", "known", multiple=True, callback=_known_option, metavar="AE@HOST:PORT",
              help="A C-MOVE destination (repeatable); C-MOVE to any other AE is refused (0xA801).")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A TOML file with these settings (aet, port, host, folder, index, [known], ...); "
                   "flags given on the command line override it. A relative folder is relative "
                   "to the file.")
@click.option("--index", "index", default=None, callback=lambda ctx, param, value: _index_url(value),
              metavar="postgresql://...", help="Keep the index in PostgreSQL (default: SQLite in FOLDER).")
@click.option("--import", "import_first", is_flag=True, default=False,
              help="Index the files already in FOLDER (all of them, read again) before listening.")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
@returns_exit_code
def qrscp(ctx: click.Context, aet: str, port: int, host: str, layout: str, fsync: bool,
          duplicates: str, max_associations: int, pdu: int, require_called_aet: bool,
          known: dict[str, Peer], config: Path | None, index: str | None, import_first: bool,
          folder: Path | None) -> int:
    """The Q/R archive: storage into FOLDER, its index, C-FIND, C-MOVE, C-GET and C-ECHO
    (dcmqrscp).

    Nothing to set up beyond FOLDER (created when missing): the index is an SQLite file
    in it, or PostgreSQL with --index. C-MOVE destinations come from --known and the
    config file's [known] table. Files in FOLDER that are not yet indexed are indexed at
    start. Runs in the foreground until SIGTERM or Ctrl-C, then stops cleanly, exit 0.
    """
    from ..entity import Entity
    from ..scp import DICOMSCP

    settings: dict[str, Any] = dict(aet=aet, port=port, host=host, layout=layout, fsync=fsync,
                                    duplicates=duplicates, max_associations=max_associations, pdu=pdu,
                                    require_called_aet=require_called_aet, index=index,
                                    import_first=import_first, folder=folder)
    peers = dict(known)
    if config is not None:
        from_file = load_config(config)
        peers = {**from_file.pop("known", {}), **peers}
        for name, value in from_file.items():
            source = ctx.get_parameter_source(name)
            if source in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
                # a relative folder in the file is relative to the file, not to the cwd
                settings[name] = config.parent / Path(value).expanduser() if name == "folder" else value
    if settings["folder"] is None:
        raise click.UsageError("no FOLDER given (as an argument or folder = \"...\" in --config)")
    path = _storage_folder(settings["folder"])
    entities = [Entity(p.ae_title, p.host, p.port) for p in peers.values()]
    for p in peers.values():
        log.info("qrscp: C-MOVE destination %s", p)

    def make() -> DICOMSCP:
        return DICOMSCP(Entity(settings["aet"], settings["host"], settings["port"]), storage_dir=path,
                        index=settings["index"], known_entities=entities, query_retrieve=True,
                        layout=settings["layout"], duplicates=settings["duplicates"],
                        fsync=settings["fsync"], max_associations=settings["max_associations"],
                        max_pdu_length=settings["pdu"], require_called_ae=settings["require_called_aet"],
                        on_stored=_stored_logger(), tls=tls)

    tls = tls_config(server=True)
    return _run_server("qrscp", make, folder=path, import_first=settings["import_first"])
