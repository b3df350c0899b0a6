"""``fastdimse migrate SOURCE DEST``: an archive migration, resumable, parallel and verified.

SOURCE and DEST are ``AE@host:port`` or folders. The journal (``--journal``, SQLite by
default, or ``postgresql://...``) records every study's state, so running the same command
again resumes; the report (``--report``, JSON with Markdown beside it) lists per study the
counts at the source and at the destination, the status, the reasons and the retries.

Exit codes: 0 every study verified; 1 something was not migrated (listed in the report);
2 usage (also a journal that belongs to another migration, or a destination that answers
no C-FIND without --verify-at); 3 no association at all with the source (or with the place
that counts what arrived).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import os
import re
import sys
from pathlib import Path

import click

from .common import (EXIT_NO_ASSOCIATION, EXIT_USAGE, DEFAULT_AET, CliError, ae_title_option_value, emit_json,
                     logging_options, no_progress_option, parse_peer, returns_exit_code)

__all__ = ["migrate", "parse_endpoint"]

_CONTEXT = {"help_option_names": ["-h", "--help"]}
_PEERISH = re.compile(r"^[^/@]*@[^@/]+:\d+$")


def parse_endpoint(text: str, *, what: str, must_exist: bool):
    """``AE@host:port`` -> an Entity; anything else a folder (the source's must exist)."""
    if _PEERISH.match(text.strip()):
        return parse_peer(text).entity()
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise click.BadParameter(f"{text!r} is neither a peer (AE@host:port) nor a folder", param_hint=what)
    if must_exist and not path.is_dir():
        raise click.BadParameter(f"{text!r}: no such folder (a peer is written AE@host:port)", param_hint=what)
    return path


def _date(ctx, param, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        _dt.datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYYMMDD") from None
    return value


def _mapping(map_file: str | None):
    """--map FILE.toml|FILE.csv: fastdimse.coerce's mapping (constants, a PatientID map or
    prefix, applied per patient); None for other files (Keyword=Value lines)."""
    if not map_file or Path(map_file).suffix.lower() not in (".toml", ".csv"):
        return None
    from ..coerce import load_mapping

    try:
        return load_mapping(map_file)
    except OSError as exc:
        raise click.BadParameter(f"{map_file}: {exc.strerror or exc}", param_hint="--map") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--map") from None


def _coercions(sets: tuple[str, ...], map_file: str | None) -> list[tuple[str, str]]:
    from pydicom.datadict import tag_for_keyword

    lines = [(f"--set {s}", s) for s in sets]
    if map_file and Path(map_file).suffix.lower() in (".toml", ".csv"):
        map_file = None  # a mapping file proper: see _mapping
        try:
            text = Path(map_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"{map_file}: {exc.strerror or exc}", param_hint="--map") from None
        lines += [(f"{map_file}:{n}", ln.strip()) for n, ln in enumerate(text.splitlines(), 1)
                  if ln.strip() and not ln.lstrip().startswith("#")]
    out = []
    for where, item in lines:
        kw, eq, value = item.partition("=")
        kw = kw.strip()
        if not eq or tag_for_keyword(kw) is None:
            raise click.UsageError(f"{where}: write Keyword=Value with a DICOM keyword (PatientID=NEW1), not {item!r}")
        out.append((kw, value.strip()))
    return out


def _keys(texts: tuple[str, ...]) -> dict[str, str]:
    from .query import parse_keys

    _, qkeys = parse_keys(texts, None)
    return {k.keyword: k.value for k in qkeys if k.value}


def _interrupted() -> None:
    """Ctrl-C: say so; if a worker is still inside a transfer (in the core, where it
    cannot be interrupted), leave at once: the journal has every step committed, and a
    normal exit would tear the interpreter down under that thread."""
    import threading

    from .common import report_error

    if any(t.name.startswith("fastdimse-migrate") and t.is_alive() for t in threading.enumerate()):
        report_error("interrupted (run the same command again to resume)")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(130)
    raise KeyboardInterrupt


class _Bar:
    """The progress display (rich, on stderr): studies, instances, GB, rate, ETA."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._progress = None

    def __enter__(self) -> "_Bar":
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("studies"),
                TextColumn("{task.fields[instances]} instances"), TextColumn("{task.fields[gb]:.2f} GB"),
                TextColumn("{task.fields[rate]}"), TextColumn("x{task.fields[conc]}"), TimeElapsedColumn(),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False)
            self._progress.__enter__()
            self._task = self._progress.add_task("inventory", total=None, instances=0, gb=0.0, rate="-", conc=0)
        return self

    def __call__(self, p) -> None:
        if self._progress is None:
            return
        speed = None
        elapsed = self._progress.tasks[0].elapsed or 0
        if elapsed > 0 and p.instances_done:
            speed = p.instances_done / elapsed
        self._progress.update(self._task, description=p.phase, total=p.studies_total or None,
                              completed=p.studies_done, instances=p.instances_done, gb=p.bytes_done / 1e9,
                              rate=f"{speed:.0f} inst/s" if speed else "-", conc=p.concurrency)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


@click.command(context_settings=_CONTEXT)
@click.argument("source_text", metavar="SOURCE")
@click.argument("dest_text", metavar="DEST")
@click.option("--mode", type=click.Choice(["move", "relay", "get"]), default="move", show_default=True,
              help="move: C-MOVE to DEST (the source must know it); relay: through our catcher; get: C-GET.")
@click.option("--journal", default="fastdimse-migrate.sqlite", show_default=True, metavar="FILE|postgresql://...",
              help="The journal: running the same command again resumes from it.")
@click.option("--report", default="fastdimse-migrate-report.json", show_default=True, metavar="FILE",
              help="The report (JSON; Markdown beside it, .md).")
@click.option("--aet", "-aet", default=DEFAULT_AET, show_default=True, help="Our (calling) AE title.")
@click.option("--dest-ae", default=None, metavar="AE",
              help="move: the AE title the source sends to (default: DEST's).")
@click.option("--verify-at", "verify_at", default=None, metavar="FOLDER|AE@host:port",
              help="Where what arrived is counted (default DEST; for a DEST without C-FIND, such as "
                   "storescp, its storage folder).")
@click.option("--parallel", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Studies at once, at most (adapts below it to what the peers bear).")
@click.option("--window", type=click.IntRange(1, 0xFFFF), default=16, show_default=True,
              help="C-STOREs in flight per association (relay, folder sources).")
@click.option("--max-results", type=click.IntRange(min=1), default=None,
              help="The source's C-FIND cap (default: the usual caps, 500, 1000, ..., are recognised).")
@click.option("--date-from", callback=_date, default=None, metavar="YYYYMMDD", help="First StudyDate migrated.")
@click.option("--date-to", callback=_date, default=None, metavar="YYYYMMDD", help="Last StudyDate migrated.")
@click.option("--modality", default=None, metavar="MR", help="Only studies with this modality (ModalitiesInStudy).")
@click.option("-k", "--key", "keys", multiple=True, metavar="KEY=VALUE",
              help="Only studies matching this study-level key. Repeatable.")
@click.option("--catcher-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="relay: the port of our catcher (our AE title; the source must know it; 0: a free one).")
@click.option("--staging", default=None, metavar="DIR", help="relay: the staging folder (default: a temporary one).")
@click.option("--set", "sets", multiple=True, metavar="Keyword=Value", help="relay: set this tag. Repeatable.")
@click.option("--map", "map_file", default=None, metavar="FILE", help="relay: tags to set: Keyword=Value lines, or a .toml/.csv mapping (constants, PatientID map or prefix; see fastdimse.coerce).")
@click.option("--rate-limit", default=None, metavar="200/s|50MB/s", help="At most so many instances or bytes a second.")
@click.option("--schedule", default=None, metavar="HH:MM-HH:MM", help="Work only inside this daily window (local time).")
@click.option("--max-attempts", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Attempts per study before it is failed.")
@click.option("--retry-delay", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="Seconds before the first retry (doubling each time, at most 300).")
@click.option("--retry-failed", is_flag=True, help="Give the studies a previous run failed a fresh set of attempts.")
@click.option("--timeout", "-to", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              help="Connect, ACSE and DIMSE timeout in seconds.")
@click.option("--json", "json_out", is_flag=True, help="The summary as JSON on stdout.")
@no_progress_option
@logging_options
@returns_exit_code
def migrate(source_text, dest_text, mode, journal, report, aet, dest_ae, verify_at, parallel, window, max_results,
            date_from, date_to, modality, keys, catcher_port, staging, sets, map_file, rate_limit, schedule, max_attempts, retry_delay,
            retry_failed, timeout, json_out, no_progress):
    """Migrate every study of SOURCE to DEST, verified by counting, resumable.

    SOURCE and DEST are AE@host:port or folders. Studies are found by C-FIND in StudyDate
    windows (split wherever the source caps or refuses the answer), sent one study at a
    time, counted at the source and at the destination, and retried with backoff. Run the
    same command again to resume after a crash or an interruption.

    \b
    Example:
      fastdimse migrate OLDPACS@10.0.0.5:104 NEWPACS@10.0.0.6:104 --journal old.sqlite
      fastdimse migrate OLDPACS@10.0.0.5:104 STORESCP@127.0.0.1:11113 --verify-at /srv/caught
      fastdimse migrate PACS@pacs:104 NEW@new:104 --date-from 20200101 --modality MR --parallel 8
    """
    from ..migrate import migrate as run_migration
    from ..migrate.engine import CannotVerify, RateLimit, Schedule, SourceUnreachable
    from ..migrate.journal import JournalError, JournalMismatch

    aet = ae_title_option_value(aet, "AE title")
    if dest_ae is not None:
        dest_ae = ae_title_option_value(dest_ae, "destination AE title")
    source = parse_endpoint(source_text, what="SOURCE", must_exist=True)
    dest = parse_endpoint(dest_text, what="DEST", must_exist=False)
    verify = parse_endpoint(verify_at, what="--verify-at", must_exist=True) if verify_at else None
    if mode == "move" and isinstance(dest, Path) and not isinstance(source, Path):
        raise click.UsageError("--mode move sends by C-MOVE to a node: for a folder DEST use --mode get")
    coerce, mapping = _coercions(sets, map_file), _mapping(map_file)
    if (coerce or mapping is not None) and mode != "relay":
        raise click.UsageError("--set and --map rewrite tags on the way through us: they need --mode relay")
    if (coerce or mapping is not None) and isinstance(dest, Path):
        raise click.UsageError("--set and --map rewrite tags on the C-STORE to a node: DEST must be "
                               "AE@host:port, not a folder (not implemented)")
    if mode != "move" and not isinstance(source, Path) and importlib.util.find_spec("fastdimse.migrate.relay") is None:
        raise click.UsageError(f"--mode {mode} needs fastdimse.migrate.relay, which this installation lacks")
    for text, cls, opt in ((rate_limit, RateLimit, "--rate-limit"), (schedule, Schedule, "--schedule")):
        if text is not None:
            try:
                cls(text)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=opt) from None
    if date_from and date_to and date_from > date_to:
        raise click.UsageError(f"--date-from {date_from} is after --date-to {date_to}")
    enabled = False if (no_progress or json_out) else sys.stderr.isatty()
    try:
        with _Bar(enabled) as bar:
            result = run_migration(
                source, dest, mode=mode, journal=journal, report=report, aet=aet, dest_ae=dest_ae, verify_at=verify,
                parallel=parallel, window=window, max_results=max_results, date_from=date_from, date_to=date_to,
                modality=modality, keys=_keys(keys), coerce=coerce, mapping=mapping, rate_limit=rate_limit, schedule=schedule,
                max_attempts=max_attempts, retry_delay=retry_delay, retry_failed=retry_failed, timeout=timeout,
                catcher_port=catcher_port, staging=staging, on_progress=bar)
    except KeyboardInterrupt:
        _interrupted()
    except SourceUnreachable as exc:
        raise CliError(str(exc), EXIT_NO_ASSOCIATION) from None
    except CannotVerify as exc:
        raise CliError(str(exc), EXIT_USAGE if exc.usage else EXIT_NO_ASSOCIATION) from None
    except JournalMismatch as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except JournalError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    summary = {"studies": sum(result.counts.values()), "verified": result.verified, "failed": result.failed,
               "not_done": result.not_done, "instances": result.instances, "elapsed_s": round(result.elapsed, 3),
               "report": str(result.report) if result.report else None,
               "markdown": str(result.markdown) if result.markdown else None,
               "capped_windows": result.capped_windows, "refused_windows": result.refused_windows,
               "stopped": result.fatal, "exit_code": result.exit_code}
    if json_out:
        emit_json(summary)
    else:
        click.echo(f"{summary['studies']} studies: {result.verified} verified, {result.failed} failed, "
                   f"{result.not_done} not done; {result.instances} instances verified in {result.elapsed:.1f} s"
                   + (f"; report {result.report}" if result.report else ""))
    for key in result.capped_windows + result.refused_windows:
        click.echo(f"fastdimse migrate: inventory window {key} stayed capped or refused: studies may be missing",
                   err=True)
    if result.fatal:
        click.echo(f"fastdimse migrate: stopped: {result.fatal}", err=True)
    if result.failed:
        click.echo(f"fastdimse migrate: {result.failed} studies failed (reasons in {result.markdown or 'the journal'})",
                   err=True)
    return result.exit_code

