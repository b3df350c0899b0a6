"""``fastdimse find`` (findscu), ``fastdimse move`` (movescu) and ``fastdimse get`` (getscu).

Keys are given as dcmtk's ``-k``: a keyword (``PatientName=DOE^*``) or a tag
(``0010,0010=DOE^*``); no ``=`` or an empty value asks for a return key. They become a
pydicom Dataset passed to :meth:`DICOMSCU.find` / :meth:`move` / :meth:`get`.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import sys
import warnings
from dataclasses import dataclass

import click

from .common import (
    EXIT_FAILED, EXIT_OK, EXIT_USAGE, CliError, ae_title_option_value, association_errors, client_options,
    emit_json, make_scu, no_progress_option, progress_bar, returns_exit_code, split_peer_args, status_text,
    without_tls_key_alias,
)

__all__ = ["find", "move", "get", "QueryKey", "parse_key", "parse_keys", "DEFAULT_RETURN_KEYS"]

_CONTEXT = {"help_option_names": ["-h", "--help"]}
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
_UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
           "IMAGE": "SOPInstanceUID"}

#: The return keys of a find given no -k at all, by level.
DEFAULT_RETURN_KEYS = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "NumberOfPatientRelatedStudies"),
    "STUDY": ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyDescription",
              "ModalitiesInStudy", "AccessionNumber"),
    "SERIES": ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber"),
}

_TAG_RE = re.compile(r"^\(?([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)?$")
_KEYWORD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


@dataclass(frozen=True)
class QueryKey:
    """One -k: the attribute's keyword, its VR, and the value ('' asks for a return key)."""

    keyword: str
    vr: str
    value: str


def parse_key(text: str) -> QueryKey:
    """``KEY[=VALUE]`` -> :class:`QueryKey`; KEY a keyword or ``gggg,eeee``. A usage error
    naming the key when it is unknown or malformed."""
    from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

    name, _, value = text.partition("=")
    name = name.strip()
    m = _TAG_RE.match(name)
    if m:
        tag = int(m[1] + m[2], 16)
        keyword = keyword_for_tag(tag)
        if not keyword:
            raise click.UsageError(f"-k {text}: ({m[1]},{m[2]}) is not an attribute of the DICOM dictionary")
    elif _KEYWORD_RE.match(name):
        found = tag_for_keyword(name)
        if found is None:
            raise click.UsageError(f"-k {text}: unknown keyword {name!r}")
        tag, keyword = found, name
    else:
        raise click.UsageError(f"-k {text}: malformed key {name!r}: write a keyword (PatientName) "
                               "or a tag gggg,eeee (0010,0010)")
    vr = dictionary_VR(tag)
    if vr == "SQ" and value:
        raise click.UsageError(f"-k {text}: a sequence ({keyword}) can only be asked for, without a value")
    return QueryKey(keyword, vr, value)


def parse_keys(texts, level: str | None) -> tuple[str | None, list[QueryKey]]:
    """All -k options: the level QueryRetrieveLevel=... sets (else ``level``) and the
    keys in order (a key given twice keeps its last value, at its first place)."""
    keys: dict[str, QueryKey] = {}
    for text in texts:
        key = parse_key(text)
        if key.keyword == "QueryRetrieveLevel":
            if key.value:
                level = _level(key.value)
            continue
        keys[key.keyword] = key
    return level, list(keys.values())


def _level(value: str) -> str:
    level = value.strip().upper()
    if level not in LEVELS:
        raise click.UsageError(f"level {value!r}: choose one of {', '.join(LEVELS)}")
    return level


def _identifier(keys: list[QueryKey]):
    """The keys as a pydicom Dataset (QueryRetrieveLevel is set by the API)."""
    from pydicom import Dataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    with warnings.catch_warnings():
        # Wildcards and ranges are valid in a query but not as stored values.
        warnings.simplefilter("ignore")
        for k in keys:
            try:
                setattr(ds, k.keyword, Sequence() if k.vr == "SQ" else k.value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise click.UsageError(f"-k {k.keyword}={k.value}: {exc}") from None
    return ds


def _peer_only(peer_args, called_aet):
    """The peer of a query command, which takes no other positional argument."""
    peer, rest = split_peer_args(peer_args, called_aet)
    if rest:
        raise click.UsageError(f"unexpected argument {rest[0]!r} (keys are given with -k)")
    return peer


def _check_root_level(root: str, level: str) -> None:
    if root == "study" and level == "PATIENT":
        raise click.UsageError("the PATIENT level needs the Patient Root model: add -P")


def query_options(func):
    """-k (repeatable), --level, -P / -S (the TLS key is --tls-key here)."""
    func = without_tls_key_alias(func)
    opts = [
        click.option("-k", "--key", "keys", multiple=True, metavar="KEY[=VALUE]",
                     help="A keyword or gggg,eeee, with a value to match (no value: a return key). Repeatable."),
        click.option("--level", "-L", "level", default=None, metavar="PATIENT|STUDY|SERIES|IMAGE",
                     help="Query/Retrieve level (also -k QueryRetrieveLevel=...)."),
        click.option("-P", "--patient-root", "root", flag_value="patient",
                     help="Patient Root information model."),
        click.option("-S", "--study-root", "root", flag_value="study", default=True,
                     help="Study Root information model (default)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


# --- find ---------------------------------------------------------------------------------


def _json_value(elem):
    """A response element as JSON: a string, a list of strings (multi-valued), a list of
    objects (a sequence)."""
    if elem.VR == "SQ":
        return [{e.keyword or str(e.tag): _json_value(e) for e in item} for item in elem.value]
    value = elem.value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if elem.VM > 1 or isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def _row(match, columns) -> dict:
    out = {}
    for kw in columns:
        elem = match[kw] if kw in match else None
        out[kw] = None if elem is None else _json_value(elem)
    return out


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        if value and isinstance(value[0], dict):
            return f"({len(value)} item(s))"
        return "\\".join(value)
    return value


def _print_table(rows: list[dict], columns: list[str]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SQUARE, show_lines=False)
    for c in columns:
        table.add_column(c, no_wrap=not sys.stdout.isatty())
    for r in rows:
        table.add_row(*[Text(_cell(r[c])) for c in columns])  # Text: "[...]" in a value is not markup
    # Not a terminal: as wide as the table needs (nothing cut or folded), no colours.
    console = Console(file=sys.stdout) if sys.stdout.isatty() else Console(
        file=sys.stdout, width=100_000, color_system=None, highlight=False)
    console.print(table, highlight=False)


@click.command(context_settings=_CONTEXT)
@click.argument("peer_args", nargs=-1, metavar="PEER")
@query_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"], case_sensitive=False),
              default="table", show_default=True, help="How the matches are printed.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Stop after N matches (C-CANCEL).")
@client_options
@returns_exit_code
def find(peer_args, keys, level, root, fmt, limit, aet, called_aet, pdu, timeout, json_out):
    """C-FIND on PEER (findscu): prints the matches, one row each, columns the keys asked.

    PEER is AE@host:port, or host and port (dcmtk style, with -aec AE). -k KEY=VALUE
    matches, -k KEY asks for a return key; KEY is a keyword or gggg,eeee. Without -k, a
    set of return keys for the level. Default level STUDY, Study Root (-P: Patient Root).

    \b
    Example:
      fastdimse find ARCHIVE@127.0.0.1:11112 -k PatientName=DOE^* -k StudyDate -k StudyInstanceUID
      fastdimse find -aec ARCHIVE 127.0.0.1 11112 --level SERIES -k StudyInstanceUID=1.2.3 --format csv
      fastdimse find -P ARCHIVE@pacs:104 --level PATIENT -k PatientID=PAT* --json
    """
    peer = _peer_only(peer_args, called_aet)
    level, qkeys = parse_keys(keys, _level(level) if level else None)
    level = level or "STUDY"
    _check_root_level(root, level)
    if not qkeys:
        qkeys = [QueryKey(kw, "", "") for kw in DEFAULT_RETURN_KEYS[level]]
    columns = [k.keyword for k in qkeys]
    identifier = _identifier(qkeys)
    fmt = "json" if json_out else fmt.lower()
    scu = make_scu(aet, pdu, timeout)
    rows: list[dict] = []
    # CSV rows go out as they come (any number of matches); the header with the first,
    # so a run that never got an association prints nothing on stdout.
    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    header_out = False
    with association_errors(peer), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom on peers' odd values: the values are shown as they are
        with contextlib.closing(scu.find(peer.entity(), identifier, level, root)) as matches:
            for match in matches:
                row = _row(match, columns)
                if writer is not None:
                    if not header_out:
                        writer.writerow(columns)
                        header_out = True
                    writer.writerow([_cell(row[c]) for c in columns])
                else:
                    rows.append(row)
                if limit is not None:
                    limit -= 1
                    if limit == 0:
                        break
    if writer is not None and not header_out:
        writer.writerow(columns)
    if fmt == "json":
        emit_json(rows)
    elif fmt == "table":
        _print_table(rows, columns)
        click.echo(f"{len(rows)} match(es)", err=True)
    return EXIT_OK


# --- move and get -------------------------------------------------------------------------


def _retrieve_level(level: str | None, qkeys: list[QueryKey], root: str) -> str:
    """The level given, else the deepest level whose unique key has a value (at least
    STUDY in the Study Root model)."""
    if level:
        return level
    given = {k.keyword for k in qkeys if k.value}
    found = [lv for lv in LEVELS if _UNIQUE[lv] in given]
    deepest = found[-1] if found else "STUDY"
    if root == "study" and deepest == "PATIENT":
        deepest = "STUDY"
    return deepest


def _retrieve_keys(keys, level, root) -> tuple[str, list[QueryKey]]:
    level, qkeys = parse_keys(keys, _level(level) if level else None)
    if not any(k.value for k in qkeys):
        raise click.UsageError("no key to retrieve by: give at least one -k KEY=VALUE "
                               "(e.g. -k StudyInstanceUID=1.2.3)")
    level = _retrieve_level(level, qkeys, root)
    _check_root_level(root, level)
    return level, qkeys


class _PendingProgress:
    """Advances a progress bar from the sub-operation counts of pending responses."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self.done = 0

    def __call__(self, rsp) -> None:
        done = rsp.completed + rsp.failed + rsp.warning
        if rsp.remaining or (rsp.status & 0xFF00) != 0xFF00:  # counted, or the final response
            self.bar.set_total(done + rsp.remaining)
        if done > self.done:
            self.bar.update(advance=done - self.done)
            self.done = done


def _report_retrieve(op: str, peer, rsp, json_doc: dict | None) -> int:
    """Print (or emit as JSON) what a C-MOVE / C-GET did; its exit code."""
    from ..status import category

    failed = rsp.failed > 0 or category(rsp.status) == "failure"
    if json_doc is not None:
        json_doc.update({"completed": rsp.completed, "failed": rsp.failed, "warning": rsp.warning,
                         "status": f"0x{rsp.status:04X}", "failed_sop_instance_uids": list(rsp.failed_sop_instance_uids)})
        emit_json(json_doc)
    else:
        click.echo(f"{op}: {rsp.completed} completed, {rsp.failed} failed, {rsp.warning} warning")
    for uid in rsp.failed_sop_instance_uids:
        click.echo(f"FAILED {uid}", err=True)
    if rsp.status != 0x0000:
        comment = f": {rsp.error_comment}" if rsp.error_comment else ""
        click.echo(f"{op} {peer}: final status {status_text(rsp.status)}{comment}", err=True)
    return EXIT_FAILED if failed else EXIT_OK


def _retrieve_command(option):
    """A C-MOVE / C-GET command: PEER, ``option`` (its destination), the query options,
    --no-progress and the client options."""

    def wrap(func):
        for deco in (returns_exit_code, client_options, no_progress_option, query_options, option,
                     click.argument("peer_args", nargs=-1, metavar="PEER")):
            func = deco(func)
        return click.command(context_settings=_CONTEXT)(func)

    return wrap


@_retrieve_command(click.option("--dest", "-aem", "--move-destination", "dest", required=True, metavar="AE",
                                help="The move destination's AE title (PEER must know its address)."))
def move(peer_args, dest, keys, level, root, no_progress, aet, called_aet, pdu, timeout, json_out):
    """C-MOVE from PEER to the AE --dest (movescu), with the sub-operation counts.

    PEER is AE@host:port, or host and port (dcmtk style, with -aec AE). -k KEY=VALUE
    selects what moves (usually the unique keys: StudyInstanceUID, SeriesInstanceUID,
    SOPInstanceUID). Without --level, the level is that of the deepest unique key given.
    Exit 1 if a sub-operation failed or the final status is a failure.

    \b
    Example:
      fastdimse move ARCHIVE@127.0.0.1:11112 --dest CATCHER -k StudyInstanceUID=1.2.3
      fastdimse move -aec ARCHIVE -aem CATCHER 127.0.0.1 11112 -k PatientID=PAT001 -P --level PATIENT
    """
    peer = _peer_only(peer_args, called_aet)
    dest = ae_title_option_value(dest, "move destination AE title")
    level, qkeys = _retrieve_keys(keys, level, root)
    identifier = _identifier(qkeys)
    scu = make_scu(aet, pdu, timeout)
    with association_errors(peer):
        with progress_bar(f"C-MOVE to {dest}", enabled=False if no_progress else None) as bar:
            progress = _PendingProgress(bar)
            rsp = scu.move(peer.entity(), identifier, dest, level, root, on_pending=progress)
            progress(rsp)  # the final counts: the bar ends where the transfer did
    doc = {"peer": str(peer), "destination": dest} if json_out else None
    return _report_retrieve("C-MOVE", peer, rsp, doc)


@_retrieve_command(click.option("--out", "-od", "--output-directory", "out", required=True,
                                type=click.Path(file_okay=False, writable=True), metavar="DIR",
                                help="The folder the instances are written into (created)."))
def get(peer_args, out, keys, level, root, no_progress, aet, called_aet, pdu, timeout, json_out):
    """C-GET from PEER into the folder --out (getscu), with the counts and files written.

    PEER is AE@host:port, or host and port (dcmtk style, with -aec AE). -k KEY=VALUE
    selects what comes (usually the unique keys). Without --level, the level is that of
    the deepest unique key given. Files are laid out PatientID/Study/Series/SOP.dcm.
    Exit 1 if a sub-operation failed or the final status is a failure.

    \b
    Example:
      fastdimse get ARCHIVE@127.0.0.1:11112 --out ./got -k StudyInstanceUID=1.2.3
      fastdimse get -aec ARCHIVE 127.0.0.1 11112 -od ./got -k SeriesInstanceUID=1.2.3.4 --json
    """
    peer = _peer_only(peer_args, called_aet)
    level, qkeys = _retrieve_keys(keys, level, root)
    identifier = _identifier(qkeys)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise CliError(f"{out}: cannot create the folder: {exc.strerror or exc}", EXIT_USAGE) from None
    scu = make_scu(aet, pdu, timeout)
    files = 0
    with association_errors(peer):
        with progress_bar(f"C-GET into {out}", enabled=False if no_progress else None) as bar:
            pending = _PendingProgress(bar)

            def on_pending(rsp) -> None:
                if rsp.remaining:
                    bar.set_total(rsp.completed + rsp.failed + rsp.warning + rsp.remaining)

            def on_stored(instance) -> None:
                nonlocal files
                files += 1
                pending.done += 1
                bar.update(advance=1, nbytes=instance.dataset_bytes)

            rsp = scu.get(peer.entity(), identifier, out, level, root, on_pending=on_pending, on_stored=on_stored)
    doc = {"peer": str(peer), "out": os.path.abspath(out), "files": files} if json_out else None
    if doc is None:
        click.echo(f"{files} file(s) written into {out}")
    return _report_retrieve("C-GET", peer, rsp, doc)
