"""``fastdimse echo`` (echoscu) and ``fastdimse store`` (storescu +sd +r).

Both go through the Python API: :meth:`DICOMSCU.associate` and
:meth:`Association.echo` (N C-ECHOs on one association), :meth:`DICOMSCU.store` with
``results="iter"`` (a result per instance as it settles, for the progress bar, then the
summary).
"""

from __future__ import annotations

import os
import statistics
import threading
import time

import click

from .common import (
    EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, association_errors, client_options, emit_json,
    make_scu, no_progress_option, progress_bar, returns_exit_code, split_peer_args, status_text,
)

__all__ = ["echo", "store"]

_CONTEXT = {"help_option_names": ["-h", "--help"]}


# --- echo --------------------------------------------------------------------------------


@click.command(context_settings=_CONTEXT)
@click.argument("peer_args", nargs=-1, metavar="PEER")
@click.option("--repeat", "-r", type=click.IntRange(min=1), default=1, show_default=True,
              help="C-ECHOs to send, one after another on one association.")
@client_options
@returns_exit_code
def echo(peer_args, repeat, aet, called_aet, pdu, timeout, json_out):
    """C-ECHO PEER (echoscu): associate, send N C-ECHOs on the one association, release.

    PEER is AE@host:port, or host and port (dcmtk style, with -aec AE). Prints each
    echo's status and round-trip time; exit 1 if any echo did not answer Success,
    3 if no association could be made.

    \b
    Example:
      fastdimse echo STORESCP@127.0.0.1:11112 --repeat 10
      fastdimse echo -aet ME -aec STORESCP 127.0.0.1 11112
    """
    peer, rest = split_peer_args(peer_args, called_aet)
    if rest:
        raise click.UsageError(f"unexpected argument {rest[0]!r} (echo takes only a peer)")
    scu = make_scu(aet, pdu, timeout)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    with association_errors(peer):
        with scu.associate(peer.entity()) as assoc:
            for _ in range(repeat):
                start = time.perf_counter()
                rsp = assoc.echo()
                ms = (time.perf_counter() - start) * 1000.0
                latencies.append(ms)
                key = f"0x{rsp.status:04X}"
                statuses[key] = statuses.get(key, 0) + 1
                if not json_out:
                    click.echo(f"C-ECHO {peer}: status {status_text(rsp.status)} {ms:.2f} ms")
    succeeded = statuses.get("0x0000", 0)
    failed = repeat - succeeded
    latency = {"min": min(latencies), "p50": statistics.median(latencies), "max": max(latencies)}
    if json_out:
        emit_json({"peer": str(peer), "repeat": repeat, "succeeded": succeeded, "failed": failed,
                   "latency_ms": {k: round(v, 3) for k, v in latency.items()}, "statuses": statuses})
    elif repeat > 1:
        click.echo(f"{repeat} C-ECHO(s): {succeeded} succeeded, {failed} failed; latency min "
                   f"{latency['min']:.2f} / p50 {latency['p50']:.2f} / max {latency['max']:.2f} ms")
    return EXIT_FAILED if failed else EXIT_OK


# --- store -------------------------------------------------------------------------------

_PART10_MAGIC_OFFSET = 128


def _is_part10(path: str) -> bool:
    """A file that starts like a DICOM Part-10 file (preamble, then ``DICM``)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(_PART10_MAGIC_OFFSET)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _walk(folder: str, recursive: bool):
    """The files under ``folder`` (depth first; only its own files without ``recursive``)."""
    if not recursive:
        with os.scandir(folder) as it:
            yield from sorted(e.path for e in it if e.is_file())
        return
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(root, name)


def _check_paths(paths, recursive: bool) -> list[str]:
    """The paths to send. Usage errors (exit 2) before any association: a path that does
    not exist or cannot be read, or nothing to send at all (every path a folder without
    a DICOM file); a folder without one among others is left out with a warning. The
    walk of a folder stops at its first DICOM file, so a large archive costs one look.
    (A file that is not DICOM inside a folder that has DICOM files is the core's: it
    fails alone, with its reason.)"""
    empty = []
    for p in paths:
        if not os.path.exists(p):
            raise CliError(f"{p}: no such file or folder", EXIT_USAGE)
        if os.path.isdir(p):
            try:
                found = any(_is_part10(f) for f in _walk(p, recursive))
            except OSError as exc:
                raise CliError(f"{p}: cannot read the folder: {exc.strerror or exc}", EXIT_USAGE) from None
            if not found:
                empty.append(p)
        elif not os.access(p, os.R_OK):
            raise CliError(f"{p}: cannot read the file", EXIT_USAGE)
    where = "in or below" if recursive else "in"
    if empty and len(empty) == len(paths):
        these = "this folder" if len(empty) == 1 else "these folders"
        raise CliError(f"{', '.join(map(str, empty))}: no DICOM file {where} {these}", EXIT_USAGE)
    for p in empty:
        click.echo(f"fastdimse: warning: {p}: no DICOM file {where} this folder; left out", err=True)
    return [p for p in paths if p not in empty]


def _items(paths, recursive: bool):
    """What store() sends: files as given, folders walked by the core (recursive) or
    here (their own files only)."""
    for p in paths:
        if recursive or not os.path.isdir(p):
            yield p
        else:
            yield from _walk(p, recursive=False)


def _count_in_background(paths, recursive: bool, bar) -> None:
    """Give the bar a total (and so an ETA) for folders: their files are counted on a
    thread while the sending starts. Only for a bar that is shown."""

    def count() -> None:
        try:
            n = sum(sum(1 for _ in _walk(p, recursive)) if os.path.isdir(p) else 1 for p in paths)
        except OSError:
            return  # the store reports what it cannot read; the bar just has no total
        bar.set_total(n)

    if bar.shown:
        threading.Thread(target=count, name="fastdimse-count", daemon=True).start()


def _status_and_reason(r) -> tuple[str | None, str]:
    """A failed instance's status (``0xA700``, None if it was never sent) and reason,
    without the status the core's reason may start with."""
    status = None if r.status is None else f"0x{r.status:04X}"
    reason = r.reason or ""
    if status and reason.upper().startswith(status.upper()):
        reason = reason[len(status):].strip()
    return status, reason


def _failure_record(r) -> dict:
    status, reason = _status_and_reason(r)
    return {"path": r.path, "sop_instance_uid": r.sop_instance_uid, "status": status, "reason": reason}


@click.command(context_settings=_CONTEXT)
@click.argument("args", nargs=-1, metavar="PEER PATH...")
@click.option("--parallel", "-j", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Associations sending at once.")
@click.option("--window", type=click.IntRange(1, 0xFFFF), default=16, show_default=True,
              help="C-STOREs in flight per association (asynchronous operations window; 1 proposes none).")
@click.option("--no-recursive", "no_recursive", is_flag=True,
              help="Send only the files directly in each folder, not those in subfolders.")
@no_progress_option
@client_options
@returns_exit_code
def store(args, parallel, window, no_recursive, no_progress, aet, called_aet, pdu, timeout, json_out):
    """C-STORE files and folders to PEER (storescu +sd +r).

    PEER is AE@host:port, or host and port (dcmtk style, with -aec AE); then files and
    folders (walked recursively unless --no-recursive). Prints a summary and each
    failure; exit 1 if any instance failed, 2 for a missing path or a folder without
    DICOM files, 3 if no association could be made.

    \b
    Example:
      fastdimse store STORESCP@127.0.0.1:11112 /data/exam1 /data/ct.dcm
      fastdimse store -aec STORESCP 127.0.0.1 11112 /data --parallel 4
    """
    peer, paths = split_peer_args(args, called_aet)
    if not paths:
        raise click.UsageError("no files or folders to send")
    recursive = not no_recursive
    paths = _check_paths(paths, recursive)
    total = None if any(os.path.isdir(p) for p in paths) else len(paths)
    scu = make_scu(aet, pdu, timeout)
    with association_errors(peer):
        with progress_bar(f"C-STORE to {peer}", total, enabled=False if no_progress else None) as bar:
            if total is None:
                _count_in_background(paths, recursive, bar)
            with scu.store(peer.entity(), _items(paths, recursive), parallel=parallel, window=window,
                           results="iter") as stream:
                for r in stream:
                    bar.update(advance=1, nbytes=r.bytes)
            summary = stream.summary
            bar.set_total(summary.total)  # a folder's count is known only now
    failures = list(summary.failures)
    if json_out:
        emit_json({"peer": str(peer), "total": summary.total, "completed": summary.completed,
                   "warning": summary.warning, "failed": summary.failed, "bytes": summary.bytes,
                   "seconds": round(summary.elapsed, 3), "associations": summary.associations,
                   "failures": [_failure_record(r) for r in failures]})
    else:
        rate = summary.total / summary.elapsed if summary.elapsed > 0 else 0.0
        click.echo(f"{summary.total} instance(s): {summary.completed} stored, {summary.warning} with a "
                   f"warning, {summary.failed} failed; {summary.bytes / 1e6:.1f} MB in "
                   f"{summary.elapsed:.1f} s ({rate:.0f}/s)")
    for r in failures:
        status, reason = _status_and_reason(r)
        click.echo(f"FAILED {r.path or r.sop_instance_uid}: {status or 'not sent'} {reason}".rstrip(), err=True)
    if summary.failures_not_kept:
        click.echo(f"... and {summary.failures_not_kept} more failure(s) not listed", err=True)
    return EXIT_FAILED if summary.failed else EXIT_OK
