"""The ``fastdimse`` command line (also ``python -m fastdimse``).

Each command lives in its own module and is imported only when it is run (or when
``--help`` lists it with its one-line summary), so ``fastdimse echo`` does not pay for
the Q/R archive or the benchmark. The shared pieces (peers, exit codes, output, logging)
are in :mod:`fastdimse.cli.common`.
"""

from __future__ import annotations

import importlib
import sys

import click

from .common import EXIT_USAGE, CliError, report_error

__all__ = ["cli", "main", "main_exit"]

# name -> (module under fastdimse.cli, attribute, one-line summary shown by --help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "echo": ("client", "echo", "C-ECHO a node (echoscu)."),
    "store": ("client", "store", "C-STORE files and folders (storescu +sd +r)."),
    "find": ("query", "find", "C-FIND with -k keys; a table, JSON or CSV (findscu)."),
    "move": ("query", "move", "C-MOVE to an AE, with counts (movescu)."),
    "get": ("query", "get", "C-GET into a folder, with counts (getscu)."),
    "dump": ("dump", "dump", "Print a DICOM file's elements (dcmdump)."),
    "scp": ("servers", "scp", "A storage SCP writing into a folder (storescp)."),
    "qrscp": ("servers", "qrscp", "The Q/R archive: storage, index, C-FIND/MOVE/GET (dcmqrscp)."),
    "bench": ("bench", "bench", "Benchmark any DICOM node: throughput and latency by concurrency."),
    "migrate": ("migrate", "migrate", "Migrate an archive: resumable, parallel, verified by counting."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attr, _ = entry
        try:
            mod = importlib.import_module(f"{__name__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{module}":
                raise
            return None
        return getattr(mod, attr, None)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # The summaries come from COMMANDS, so `fastdimse --help` imports no command module.
        rows = [(name, summary) for name, (_, _, summary) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastdimse", prog_name="fastdimse")
def cli() -> None:
    """fastdimse: DICOM networking from the shell.

    Peers are written AE@host:port (STORESCP@127.0.0.1:11112), or dcmtk style:
    -aec AE, then host and port.

    \b
    Example:
      fastdimse echo ANY-SCP@127.0.0.1:11112
      fastdimse store -aec STORE 127.0.0.1 11112 /data/exam1
    """


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns (and, as a console script, exits with) the exit code.

    Usage errors print one line and give exit 2, never a traceback; the exit codes of
    the commands are in :mod:`fastdimse.cli.common`.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = cli.main(args=args, prog_name="fastdimse", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # pragma: no cover - click >= 8.2
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return EXIT_USAGE
    except click.UsageError as exc:
        cmd = exc.ctx.command_path if exc.ctx is not None else "fastdimse"
        click.echo(f"{cmd}: error: {exc.format_message()}", err=True)
        return EXIT_USAGE
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        report_error("interrupted")
        return 130
    except CliError as exc:
        report_error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        report_error("interrupted")
        return 130
    except BrokenPipeError:
        # `fastdimse find ... | head`: the reader left; nothing to report.
        return 0
    return rv if isinstance(rv, int) else 0


def main_exit() -> None:
    """The console script: exits with :func:`main`'s code."""
    sys.exit(main())
