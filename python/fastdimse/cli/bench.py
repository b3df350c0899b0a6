"""``fastdimse bench PEER --op echo|store|find|move``: benchmark any DICOM node.

A sweep over concurrency levels (parallel associations), each level a count of
operations or a duration; per level throughput, latency per response (p50/p95/p99/max),
errors by status, and the saturation point; a table, ``--json`` or a chart (``--plot``).
``--grow STEPS`` measures C-FIND latency as the node's archive grows. The work is done by
:mod:`fastdimse.cli.bench_engine` (usable from Python: ``run_sweep``, ``run_grow``); how
latency is measured for each operation is described there.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import click

from .bench_data import parse_concurrency, parse_duration, parse_size
from .common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, association_errors, client_options,
                     emit_json, progress_bar, returns_exit_code, split_peer_args, tls_config,
                     without_tls_key_alias)

__all__ = ["bench"]


def _parsed(parser, what: str):
    def callback(ctx: click.Context, param: click.Parameter, value):
        if value is None:
            return None
        try:
            return parser(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=what) from None

    return callback


class _Throttled:
    """Per-operation progress (from many threads) handed to the bar at most ten times a
    second, so a fast node is not slowed down by drawing it."""

    def __init__(self, bar) -> None:
        self._bar = bar
        self._lock = threading.Lock()
        self._ops = self._bytes = 0
        self._last = 0.0

    def __call__(self, nbytes: int) -> None:
        with self._lock:
            self._ops += 1
            self._bytes += nbytes
            now = time.monotonic()
            if now - self._last < 0.1:
                return
            ops, nb, self._ops, self._bytes, self._last = self._ops, self._bytes, 0, 0, now
        self._bar.update(advance=ops, nbytes=nb)

    def flush(self) -> None:
        with self._lock:
            ops, nb, self._ops, self._bytes = self._ops, self._bytes, 0, 0
        if ops:
            self._bar.update(advance=ops, nbytes=nb)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _latencies(lat: dict[str, float | None]) -> list[str]:
    return [_ms(lat[k]) for k in ("p50", "p95", "p99", "max")]


def _errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in errors.items()) or "0"


def _table(title: str, columns: tuple[str, ...]):
    """A console on stdout (120 columns when it is not a terminal) and an empty table
    whose columns are ``columns`` then the latencies and errors."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    table = Table(title=title, title_justify="left")
    for name in (*columns, "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"):
        table.add_column(name, justify="left" if name == "errors" else "right")
    return console, table


def _print_sweep(doc: dict[str, Any]) -> None:
    console, table = _table(f"C-{doc['op'].upper()} {doc['peer']}",
                            ("concurrency", "operations", "seconds", "ops/s", "MB/s"))
    for lv in doc["levels"]:
        table.add_row(str(lv["concurrency"]), str(lv["operations"]), f"{lv['seconds']:.2f}",
                      f"{lv['ops_per_s']:.1f}", f"{lv['mb_per_s']:.1f}" if doc["op"] == "store" else "-",
                      *_latencies(lv["latency_ms"]), _errors_text(lv["errors"]))
    console.print(table)
    sat = doc["saturation"]
    if sat["reached"]:
        console.print(f"saturation: concurrency {sat['concurrency']} ({sat['ops_per_s']:.1f} operations/s); "
                      f"no higher level gains 5 % or more")
    else:
        console.print(f"no saturation up to concurrency {sat['concurrency']} "
                      f"({sat['ops_per_s']:.1f} operations/s, still growing)")


def _print_grow(doc: dict[str, Any]) -> None:
    console, table = _table(f"C-FIND latency as the archive grows, {doc['peer']}",
                            ("step", "instances", "queries", "C-FIND/s", "matches"))
    for r in doc["grow"]:
        errors = {**{f"store {k}": v for k, v in r["store_errors"].items()}, **r["errors"]}
        table.add_row(str(r["step"]), str(r["archive_instances"]), str(r["queries"]), f"{r['ops_per_s']:.1f}",
                      "-" if r["matches_per_query"] is None else f"{r['matches_per_query']:g}",
                      *_latencies(r["latency_ms"]), _errors_text(errors))
    console.print(table)


def _report_errors(doc: dict[str, Any]) -> int:
    rows = doc.get("levels") or doc.get("grow") or []
    failed = 0
    for row in rows:
        errors = {**row.get("store_errors", {}), **row["errors"]}
        if errors:
            where = f"concurrency {row['concurrency']}" if "concurrency" in row else f"step {row['step']}"
            click.echo(f"fastdimse bench: {where}: errors {_errors_text(errors)}", err=True)
            failed += sum(errors.values())
    return EXIT_FAILED if failed else EXIT_OK


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("peer_args", nargs=-1, metavar="PEER")
@click.option("--op", type=click.Choice(["echo", "store", "find", "move"]), default="echo", show_default=True,
              help="The operation to benchmark.")
@click.option("--concurrency", "-c", default="1,2,4,8", show_default=True,
              callback=_parsed(parse_concurrency, "'--concurrency'"),
              help="Levels of the sweep: parallel associations, comma-separated.")
@click.option("--duration", default=None, callback=_parsed(parse_duration, "'--duration'"),
              help="How long each level runs (30s, 500ms, 2m). Default: 10s, or the data's size for store.")
@click.option("--count", "-n", type=click.IntRange(min=1), default=None,
              help="Operations per level (shared among its associations); with --grow, queries per step (20).")
@click.option("--window", type=click.IntRange(1, 0xFFFF), default=1, show_default=True,
              help="store: C-STOREs in flight per association (proposed as an asynchronous operations window).")
@click.option("--data", "data", type=click.Path(exists=True), default=None,
              help="store: send the DICOM files under this folder (as they are).")
@click.option("--generate", type=click.IntRange(min=1), default=None,
              help="store: generated instances per level, fresh Study/Series/SOP Instance UIDs each.")
@click.option("--size", default="4KB", show_default=True, callback=_parsed(parse_size, "'--size'"),
              help="Size of each generated instance (4KB, 0.5MB, 1MiB).")
@click.option("-k", "--key", "keys", multiple=True,
              help="find/move: query key Keyword=value or gggg,eeee=value (repeat). Default: a study-level match-all.")
@click.option("--level", type=click.Choice(["PATIENT", "STUDY", "SERIES", "IMAGE"], case_sensitive=False),
              default=None, help="find/move: query level (default STUDY).")
@click.option("-P", "--patient-root", "root", flag_value="patient", help="Patient Root information model.")
@click.option("-S", "--study-root", "root", flag_value="study", default=True,
              help="Study Root information model (default).")
@click.option("--dest", "-aem", "destination", default=None, help="move: the move destination AE title.")
@click.option("--grow", type=click.IntRange(min=1), default=None, metavar="STEPS",
              help="C-FIND latency as the archive grows: STEPS times, store a batch then time the queries.")
@click.option("--batch", type=click.IntRange(min=1), default=100, show_default=True,
              help="--grow: instances stored per step (of --size).")
@click.option("--plot", "plot", default=None, metavar="FILE",
              help="Also write a chart: FILE.png, or FILE.html (self-contained).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@without_tls_key_alias  # -k is --key here: the TLS key is --tls-key
@client_options
@returns_exit_code
def bench(peer_args, op, concurrency, duration, count, window, data, generate, size, keys, level, root,
          destination, grow, batch, plot, no_progress, aet, called_aet, pdu, timeout, json_out):
    """Benchmark any DICOM node: throughput, latency per response (p50/p95/p99/max),
    errors by status and the saturation point, over a sweep of parallel associations.

    Store sends --data DIR, or --generate N instances of --size with fresh UIDs every
    run (dcmtk's +IR/+IS). --grow STEPS stores --batch instances per step and times
    C-FINDs after each. Exit 1 when any operation failed, 3 when no association could
    be made.

    \b
    Example:
      fastdimse bench ANY-SCP@127.0.0.1:11112 --op echo --concurrency 1,2,4,8 --duration 10s
      fastdimse bench STORE@pacs:104 --op store --generate 500 --size 0.5MB -c 1,2,4 --plot store.html
      fastdimse bench ARCHIVE@pacs:104 --op find -k PatientID=PAT1 --count 200 --json
      fastdimse bench ARCHIVE@pacs:104 --grow 10 --batch 1000 --plot grow.png
    """
    from .bench_engine import run_grow, run_sweep

    peer, rest = split_peer_args(peer_args, called_aet)
    if rest:
        raise click.UsageError(f"unexpected argument(s) after the peer: {' '.join(rest)}")
    if count is not None and duration is not None:
        raise click.UsageError("give --count or --duration, not both")
    if data is not None and generate is not None:
        raise click.UsageError("give --data or --generate, not both")
    if op == "store" and grow is None and data is None and generate is None:
        raise click.UsageError("--op store needs --data DIR or --generate N")
    if op == "move" and not destination:
        raise click.UsageError("--op move needs --dest AE (the move destination)")
    if grow is not None and op not in ("echo", "find"):
        raise click.UsageError("--grow times C-FIND: it takes no --op other than find")
    if destination is not None:
        from .common import ae_title_option_value

        destination = ae_title_option_value(destination, "--dest AE title")
    from .query import parse_keys  # the -k rules of `fastdimse find`

    key_level, parsed = parse_keys(keys, None)
    query = {k.keyword: k.value for k in parsed}
    level = (level or key_level or "STUDY").upper()
    if plot is not None:
        from .bench_plot import check_plot_target

        try:
            check_plot_target(plot)
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    remote = peer.entity()
    workload = dict(aet=aet, max_pdu=pdu, timeout=timeout, window=window, keys=query, level=level, root=root,
                    tls=tls_config(server=False))
    show = not no_progress and sys.stderr.isatty()

    with association_errors(peer):
        if grow is not None:
            with progress_bar(f"bench grow {peer}", grow * ((count or 20) + batch), enabled=show) as bar:
                rows = run_grow(remote, steps=grow, batch=batch, queries=count or 20, concurrency=concurrency[0],
                                size=size, on_step=lambda r: bar.update(advance=(count or 20) + batch),
                                **workload)
            doc: dict[str, Any] = {"op": "find", "peer": str(peer), "batch": batch, "size": size,
                                   "concurrency": concurrency[0], "grow": [r.to_json() for r in rows]}
        else:
            per_level = count if count is not None else (None if duration is not None else generate)
            total = per_level * len(concurrency) if per_level is not None else None
            try:
                with progress_bar(f"bench {op} {peer}", total, enabled=show) as bar:
                    tick = _Throttled(bar) if show else None
                    sweep = run_sweep(op, remote, concurrency=concurrency, count=count, duration=duration,
                                      data=data, generate=generate, size=size, destination=destination,
                                      on_op=tick, on_level=tick and (lambda _level: tick.flush()), **workload)
            except ValueError as exc:
                raise CliError(str(exc), EXIT_USAGE) from None
            doc = sweep.to_json()
            if op == "store":
                doc["data"] = data if data is not None else {"generated": generate, "size": size}
    if json_out:
        emit_json(doc)
    elif "grow" in doc:
        _print_grow(doc)
    else:
        _print_sweep(doc)
    if plot is not None:
        from .bench_plot import write_plot

        write_plot(doc, plot)
        if not json_out:
            click.echo(f"chart written to {plot}")
    return _report_errors(doc)
