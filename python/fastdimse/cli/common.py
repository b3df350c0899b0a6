"""What every ``fastdimse`` command shares: peers, exit codes, logging, output, progress.

Exit codes (the same for every command):

    0  everything succeeded
    1  some instances or operations failed (they are listed)
    2  usage error (one line on stderr, never a traceback)
    3  no association could be made (unreachable, refused, rejected)

Peers are written ``AE@host:port`` or dcmtk style (``-aec AE`` then host and port), see
:func:`parse_peer`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import click

__all__ = [
    "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_NO_ASSOCIATION",
    "CliError", "Peer", "parse_peer", "split_peer_args", "ae_title_option_value",
    "client_options", "logging_options", "setup_logging", "association_errors",
    "report_error", "emit_json", "progress_bar", "DEFAULT_AET", "DEFAULT_CALLED_AET",
    "status_text", "no_progress_option",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NO_ASSOCIATION = 3

# Our AE title when none is given, and the called AE title for a peer given as host and
# port only (dcmtk's tools default to ANY-SCP too).
DEFAULT_AET = "FASTDIMSE"
DEFAULT_CALLED_AET = "ANY-SCP"


class CliError(Exception):
    """An error a command reports as one line, with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def report_error(message: str) -> None:
    """One line on stderr: ``fastdimse: error: ...``."""
    click.echo(f"fastdimse: error: {message}", err=True)


@dataclass(frozen=True)
class Peer:
    """A remote node as the command line names it."""

    ae_title: str
    host: str
    port: int

    def entity(self):
        from ..entity import Entity

        return Entity(self.ae_title, self.host, self.port)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


_PEER_RE = re.compile(r"^(?P<ae>[^@]*)@(?P<host>\[[^\]]+\]|[^:@]+):(?P<port>[^:@]+)$")


def ae_title_option_value(value: str, what: str = "AE title") -> str:
    """Validate an AE title (PS3.5: at most 16 characters, no backslash or control
    characters); a usage error saying why if it is not one."""
    from ..entity import validate_ae_title

    try:
        return validate_ae_title(value)
    except (ValueError, TypeError) as exc:
        # The core says 'invalid AE title "X": why'; name which title it was.
        raise click.BadParameter(str(exc).replace("invalid AE title", f"invalid {what}", 1)) from None


def _port(text: str, peer_text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise click.BadParameter(f"{peer_text!r}: port {text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise click.BadParameter(f"{peer_text!r}: port {port} is outside 1..65535")
    return port


def parse_peer(text: str) -> Peer:
    """``AE@host:port`` -> :class:`Peer` (IPv6 hosts in brackets); a usage error naming
    what is wrong otherwise."""
    m = _PEER_RE.match(text.strip())
    if m is None:
        raise click.BadParameter(f"{text!r} is not a peer: write AE@host:port, e.g. STORESCP@127.0.0.1:11112")
    ae = ae_title_option_value(m["ae"], "called AE title")
    host = m["host"].strip("[]")
    return Peer(ae, host, _port(m["port"], text))


def split_peer_args(args: Sequence[str], called_aet: str | None) -> tuple[Peer, list[str]]:
    """The peer at the front of a command's positional arguments, and the rest.

    Either one ``AE@host:port`` (then ``-aec`` must not contradict it), or dcmtk style:
    host and port, with the AE title from ``-aec`` (default ANY-SCP).
    """
    args = list(args)
    if not args:
        raise click.UsageError("no peer given: write AE@host:port, or -aec AE host port")
    first = args[0]
    if "@" in first:
        peer = parse_peer(first)
        if called_aet is not None and ae_title_option_value(called_aet, "called AE title") != peer.ae_title:
            raise click.UsageError(f"-aec {called_aet} contradicts the peer {first}")
        return peer, args[1:]
    if len(args) < 2:
        raise click.UsageError(f"{first!r} is not a peer: write AE@host:port, or -aec AE host port")
    ae = ae_title_option_value(called_aet if called_aet is not None else DEFAULT_CALLED_AET, "called AE title")
    return Peer(ae, first, _port(args[1], f"{first} {args[1]}")), args[2:]


# --- logging ---------------------------------------------------------------------------


def setup_logging(verbose: bool, debug: bool) -> None:
    """-v: INFO, -d: DEBUG on the ``fastdimse`` logger (to stderr); else warnings only."""
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logger = logging.getLogger("fastdimse")
    if not any(getattr(h, "_fastdimse_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._fastdimse_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    from .. import refresh_logging

    refresh_logging()


def logging_options(func: Callable) -> Callable:
    """-v/--verbose and -d/--debug, applied before the command runs."""

    def apply(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
        if value:
            params = ctx.meta.setdefault("fastdimse.log", set())
            params.add(param.name)
            setup_logging("verbose" in params, "debug" in params)
        return value

    func = click.option("-d", "--debug", is_flag=True, expose_value=False, callback=apply,
                        is_eager=True, help="Debug logging (the fastdimse logger, on stderr).")(func)
    func = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=apply,
                        is_eager=True, help="Informational logging.")(func)
    return func


# --- TLS options (client commands and servers) ---------------------------------------------

_TLS_META = "fastdimse.tls"


def tls_options(func: Callable, *, server: bool) -> Callable:
    """--tls, --cert, --key, --ca and --no-verify-hostname (clients) or
    --require-client-cert (servers). They reach :func:`tls_config` through the click
    context, so the commands' signatures do not change."""

    def keep(ctx: click.Context, param: click.Parameter, value):
        ctx.meta.setdefault(_TLS_META, {})[param.name] = value
        return value

    path = click.Path(dir_okay=False)
    opts = [
        click.option("--tls", "tls", is_flag=True, expose_value=False, callback=keep,
                     help="Use TLS (TLS 1.2/1.3, the BCP 195 profile)."),
        click.option("--cert", "cert", type=path, expose_value=False, callback=keep,
                     help="Our certificate chain (PEM)" + (" (required with --tls)." if server else ", for mutual TLS.")),
        click.option("--key", "--tls-key", "key", type=path, expose_value=False, callback=keep,
                     help="The private key of --cert (PEM)."),
        click.option("--ca", "ca", type=path, expose_value=False, callback=keep,
                     help=("CA bundle (PEM) client certificates are verified against." if server
                           else "CA bundle (PEM) the server's certificate is verified against (required with --tls).")),
    ]
    if server:
        opts.append(click.option("--require-client-cert", "require_client_cert", is_flag=True, expose_value=False,
                                 callback=keep, help="Refuse TLS clients without a certificate signed by --ca."))
    else:
        opts.append(click.option("--no-verify-hostname", "no_verify_hostname", is_flag=True, expose_value=False,
                                 callback=keep, help="Accept a server certificate issued for another name "
                                                     "(its chain is still verified)."))
    for opt in reversed(opts):
        func = opt(func)
    return func


def without_tls_key_alias(func: Callable) -> Callable:
    """Leave the TLS key option only its --tls-key name, on a command whose own -k is
    --key (find, move, get)."""
    for param in getattr(func, "__click_params__", []):
        if param.name == "key" and "--tls-key" in param.opts:
            param.opts = [o for o in param.opts if o != "--key"]
    return func


def tls_config(*, server: bool):
    """The TLSConfig the command's TLS options ask for (None: plaintext); a usage error
    for options that do not fit together."""
    ctx = click.get_current_context(silent=True)
    got = dict(ctx.meta.get(_TLS_META, {})) if ctx is not None else {}
    files = [f"--{n}" for n in ("cert", "key", "ca") if got.get(n)]
    if not got.get("tls"):
        extra = files + [f"--{n.replace('_', '-')}" for n in ("require_client_cert", "no_verify_hostname") if got.get(n)]
        if extra:
            raise click.UsageError(f"{', '.join(extra)} need(s) --tls")
        return None
    if bool(got.get("cert")) != bool(got.get("key")):
        raise click.UsageError("--cert and --key go together")
    if server and not got.get("cert"):
        raise click.UsageError("--tls needs --cert and --key (the server's certificate and key)")
    if not server and not got.get("ca"):
        raise click.UsageError("--tls needs --ca (the CA bundle the server's certificate is verified against)")
    if got.get("require_client_cert") and not got.get("ca"):
        raise click.UsageError("--require-client-cert needs --ca (the CA client certificates are verified against)")
    from ..tls import TLSConfig

    return TLSConfig(cert=got.get("cert"), key=got.get("key"), ca=got.get("ca"),
                     require_client_cert=bool(got.get("require_client_cert")),
                     verify_hostname=not got.get("no_verify_hostname"))


# --- options of the client commands ------------------------------------------------------


def _aet_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else ae_title_option_value(value, "AE title")


def client_options(func: Callable) -> Callable:
    """Our AE title (--aet, dcmtk's -aet), the called AE title (-aec, --called-aet), the
    maximum PDU we receive (--pdu, dcmtk's -pdu), timeouts, --json, -v/-d.

    The command receives ``aet``, ``called_aet``, ``pdu``, ``timeout`` and ``json_out``;
    the TLS options (:func:`tls_options`) reach :func:`make_scu` through the context.
    """
    opts = [
        click.option("--aet", "-aet", "aet", default=DEFAULT_AET, show_default=True,
                     callback=_aet_callback, help="Our (calling) AE title."),
        click.option("--called-aet", "-aec", "called_aet", default=None,
                     help=f"The peer's AE title, when the peer is given as host and port (default {DEFAULT_CALLED_AET})."),
        click.option("--pdu", "-pdu", "pdu", type=click.IntRange(0, 0xFFFFFFFF), default=16384,
                     show_default=True, help="Maximum PDU length we receive (0: no limit)."),
        click.option("--timeout", "-to", "timeout", type=click.FloatRange(min=0, min_open=True),
                     default=30.0, show_default=True, help="Connect, ACSE and DIMSE timeout in seconds."),
        click.option("--json", "json_out", is_flag=True, help="Machine-readable results on stdout."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return logging_options(tls_options(func, server=False))


_FROM_OPTIONS = object()


def make_scu(aet: str, pdu: int, timeout: float, tls=_FROM_OPTIONS):
    """A DICOMSCU for our AE title with the command's PDU size, timeouts and TLS options
    (``tls``: a TLSConfig or None given outright, for threads outside the command's click
    context; default: the command's --tls options)."""
    from ..entity import Entity
    from ..errors import TLSError
    from ..scu import DICOMSCU

    try:
        return DICOMSCU(Entity(aet, "0.0.0.0", 0), max_pdu_length=pdu, connect_timeout=timeout,
                        acse_timeout=timeout, dimse_timeout=timeout, network_timeout=max(timeout, 60.0),
                        tls=tls_config(server=False) if tls is _FROM_OPTIONS else tls)
    except TLSError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


@contextlib.contextmanager
def association_errors(peer: Peer) -> Iterator[None]:
    """Turn a failure to reach or associate with ``peer`` into exit 3, and any other
    fastdimse error into one line and exit 1."""
    from ..errors import AssociationAborted, AssociationRejected, DicomError, NetworkError, NoAcceptedContext

    try:
        yield
    except AssociationRejected as exc:
        raise CliError(f"{peer}: association rejected: {exc}", EXIT_NO_ASSOCIATION) from None
    except NoAcceptedContext as exc:
        # The association was made but refuses the service the command needs: as good as refused.
        raise CliError(f"{peer}: {exc}", EXIT_NO_ASSOCIATION) from None
    except NetworkError as exc:
        raise CliError(f"{peer}: no association: {exc}", EXIT_NO_ASSOCIATION) from None
    except AssociationAborted as exc:
        raise CliError(f"{peer}: association aborted: {exc}", EXIT_FAILED) from None
    except DicomError as exc:
        raise CliError(f"{peer}: {exc}", EXIT_FAILED) from None


# --- output -----------------------------------------------------------------------------

# What a user reads for the statuses C-ECHO, C-FIND, C-MOVE and C-GET end with most
# (PS3.7 C.4, PS3.4 C.4); the category comes from the core (fastdimse.status), and the
# C-STORE reasons are the core's own (StoreResult.reason).
_STATUS_NAMES = {
    0x0110: "processing failure", 0x0122: "SOP class not supported", 0x0124: "not authorized",
    0x0211: "unrecognized operation", 0xA701: "out of resources: number of matches",
    0xA702: "out of resources: sub-operations", 0xA801: "move destination unknown",
    0xA900: "identifier does not match SOP class", 0xB000: "sub-operations complete, some failed or warned",
    0xC000: "unable to process", 0xFF01: "optional keys not supported",
}


def status_text(status: int) -> str:
    """``0x0000 (Success)``, ``0xA801 (Failure: move destination unknown)``: a DIMSE
    status with its category and, for the common ones, what it means."""
    from ..status import category

    name = category(status).capitalize()
    detail = _STATUS_NAMES.get(status)
    return f"0x{status:04X} ({name}: {detail})" if detail else f"0x{status:04X} ({name})"


def no_progress_option(func: Callable) -> Callable:
    """``--no-progress``: no progress bar even on a terminal (the command gets ``no_progress``)."""
    return click.option("--no-progress", "no_progress", is_flag=True,
                        help="No progress bar (there is none anyway when stderr is not a terminal).")(func)



def emit_json(doc: Any) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(doc, indent=2, default=str))


class _QuietProgress:
    """What progress_bar gives when output is not a terminal: the same calls, no output."""

    shown = False

    def update(self, *, advance: int = 1, nbytes: int = 0) -> None:
        pass

    def set_total(self, total: int | None) -> None:
        pass


class _RichProgress:
    shown = True

    def __init__(self, progress, task) -> None:
        self._progress = progress
        self._task = task
        self._bytes = 0

    def update(self, *, advance: int = 1, nbytes: int = 0) -> None:
        self._bytes += nbytes
        self._progress.update(self._task, advance=advance, mb=self._bytes / 1e6)

    def set_total(self, total: int | None) -> None:
        self._progress.update(self._task, total=total)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None, *, enabled: bool | None = None):
    """A progress bar on stderr (instances, MB, rate, ETA); quiet when stderr is not a
    terminal (or ``enabled=False``). Yields an object with ``update(advance=, nbytes=)``
    and ``set_total(n)``."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield _QuietProgress()
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    columns = [
        TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TaskProgressColumn(), TextColumn("{task.fields[mb]:.1f} MB"),
        # task.speed is None until two samples exist: the rate field shows "-" until then.
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total, mb=0.0, rate="-")

        class _Bar(_RichProgress):
            def update(self, *, advance: int = 1, nbytes: int = 0) -> None:
                super().update(advance=advance, nbytes=nbytes)
                speed = progress.tasks[0].speed
                progress.update(task, rate=f"{speed:.0f}/s" if speed else "-")

        yield _Bar(progress, task)


def returns_exit_code(func: Callable[..., int | None]) -> Callable[..., int]:
    """A command body that returns its exit code (None = 0); the code reaches main()."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs) -> int:
        rv = func(*args, **kwargs)
        return EXIT_OK if rv is None else int(rv)

    return wrapper
