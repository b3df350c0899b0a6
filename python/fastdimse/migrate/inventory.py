"""The inventory: every study of the source, by C-FIND in StudyDate windows.

Many archives cap a C-FIND answer (often at 500 or 1,000 matches) and then answer
Success as if that were all. So the source is asked in windows of StudyDate: a window
whose answer reaches the cap (``max_results``, or, not given, a count that is one of the
usual caps) or that the source refuses (a failure status, a timeout) is split in two
halves, down to single days, and a single day then by PatientID prefix (``A*``, ``B*``,
... then ``AB*``, ...). Studies without a StudyDate match no date range, so (when no date
filter is given) one more pass asks without StudyDate and keeps the undated matches.

Progress is in the journal: a window fully enumerated is recorded (``window_done``), a
window that had to be split too, so a resumed inventory asks only what it had not finished.
A window still capped at the finest split is recorded as ``capped|<key>`` and reported.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .model import StudyRecord

__all__ = ["Window", "InventoryResult", "run_inventory", "COMMON_CAPS", "PREFIX_CHARS"]

log = logging.getLogger("fastdimse.migrate")

#: Answers of exactly this many matches are taken for a cap when --max-results is not given.
COMMON_CAPS = frozenset({100, 200, 250, 256, 500, 512, 1000, 1024, 2000, 2048, 2500, 5000, 10000})
#: The first characters a capped single day is split by (PatientID prefixes).
PREFIX_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_."
MAX_PREFIX = 8
FIRST_DATE = "19000101"
LAST_DATE = "99991231"


def _day(text: str) -> _dt.date:
    return _dt.datetime.strptime(text, "%Y%m%d").date()


def _text(day: _dt.date) -> str:
    return day.strftime("%Y%m%d")


@dataclass(frozen=True)
class Window:
    """One C-FIND: a StudyDate range (``lo``..``hi``; None: no date, the undated pass) and
    an optional PatientID prefix (``exact``: the PatientID equal to it, not starting with it)."""

    lo: str | None
    hi: str | None
    prefix: str = ""
    exact: bool = False

    @property
    def key(self) -> str:
        date = f"date:{self.lo}-{self.hi}" if self.lo is not None else "nodate"
        if self.exact:
            return date + f"|PatientID={self.prefix}"
        return date + (f"|PatientID={self.prefix}*" if self.prefix else "")

    @property
    def patient_id(self) -> str:
        return self.prefix if self.exact else (self.prefix + "*" if self.prefix else "")

    def children(self, split_patient: bool) -> list["Window"]:
        if self.lo is not None and self.lo != self.hi:
            a, b = _day(self.lo), _day(self.hi)
            mid = a + (b - a) // 2
            return [Window(self.lo, _text(mid), self.prefix), Window(_text(mid + _dt.timedelta(days=1)), self.hi,
                                                                     self.prefix)]
        if split_patient and not self.exact and len(self.prefix) < MAX_PREFIX:
            # "AB*" is "AB" itself and "AB0*" ... "ABz*" (an ID going on with a character
            # outside PREFIX_CHARS is not found: such windows are reported as capped).
            exact = [Window(self.lo, self.hi, self.prefix, True)] if self.prefix else []
            return exact + [Window(self.lo, self.hi, self.prefix + c) for c in PREFIX_CHARS]
        return []


@dataclass
class InventoryResult:
    windows: int = 0          # C-FINDs sent
    studies: int = 0          # new studies recorded
    capped: list[str] = field(default_factory=list)  # windows still capped at the finest split
    refused: list[str] = field(default_factory=list)  # windows the source refused at the finest split


class _Refused(Exception):
    pass


class StudyFinder:
    """Study-level C-FINDs on one association kept open between windows (an archive that
    forks a process per association answers hundreds of windows much faster so); a
    failed query closes it and the next one opens another."""

    def __init__(self, scu, source):
        self.scu, self.source = scu, source
        self.assoc = None

    def find(self, identifier: dict, level: str = "STUDY"):
        from .. import association as ops
        from .. import uids
        from ..sop import sop_class_for

        if self.assoc is None or not self.assoc.is_established:
            self.assoc = self.scu.associate(
                self.source, contexts=[(sop_class_for("study", "find"), list(uids.DEFAULT_TRANSFER_SYNTAXES))])
        try:
            yield from ops.find(self.assoc, identifier, level, "study")
        except BaseException:
            self.close(abort=True)
            raise

    def close(self, abort: bool = False) -> None:
        assoc, self.assoc = self.assoc, None
        if assoc is not None and assoc.is_established:
            try:
                assoc.abort() if abort else assoc.release()
            except Exception:  # already gone
                pass


def _int(value) -> int | None:
    try:
        text = str(value).strip()
        return int(text) if text else None
    except (TypeError, ValueError):
        return None


def study_identifier(window: Window, modality: str | None, keys: dict[str, str]) -> dict[str, str]:
    ident = {"StudyInstanceUID": "", "PatientID": "", "StudyDate": "", "NumberOfStudyRelatedInstances": "",
             "ModalitiesInStudy": modality or ""}
    ident.update(keys)
    if window.lo is not None:
        ident["StudyDate"] = f"{window.lo}-{window.hi}" if window.lo != window.hi else window.lo
    if window.prefix:
        ident["PatientID"] = window.patient_id
    return ident


def run_inventory(scu, source, journal, *, date_from: str | None = None, date_to: str | None = None,
                  modality: str | None = None, keys: dict[str, str] | None = None,
                  max_results: int | None = None, on_window: Callable[[str, int], None] | None = None,
                  connect_attempts: int = 3, stop: Callable[[], bool] | None = None,
                  finder=None) -> InventoryResult:
    """Enumerate the source's studies into ``journal`` (resuming what a journal recorded).

    Raises the association errors of the first C-FIND that could not be made at all
    after ``connect_attempts`` tries (the source is unreachable). ``finder``: what sends
    the C-FINDs (``find(identifier)`` yielding matches, ``close()``), default a
    :class:`StudyFinder` on ``scu``."""
    from ..errors import AssociationAborted, AssociationRejected, DicomTimeoutError, NetworkError, QueryFailed

    keys = dict(keys or {})
    finder = finder if finder is not None else StudyFinder(scu, source)
    split_patient = "PatientID" not in keys
    result = InventoryResult()
    done = journal.done_windows()

    def capped(n: int) -> bool:
        if max_results is not None:
            return n >= max_results
        return n in COMMON_CAPS

    def ask(window: Window) -> tuple[list[StudyRecord], int]:
        ident = study_identifier(window, modality, keys)
        for attempt in range(connect_attempts):
            found: list[StudyRecord] = []
            n = 0
            try:
                for m in finder.find(ident):
                    n += 1
                    uid = str(m.get("StudyInstanceUID", "") or "")
                    date = str(m.get("StudyDate", "") or "")
                    if not uid or (window.lo is None and date):
                        continue  # the undated pass keeps the undated only
                    found.append(StudyRecord(uid, str(m.get("PatientID", "") or ""), date,
                                             _int(m.get("NumberOfStudyRelatedInstances"))))
                return found, n
            except QueryFailed as exc:
                raise _Refused(f"0x{exc.status:04X} {exc}") from None
            except (DicomTimeoutError, AssociationAborted) as exc:
                raise _Refused(str(exc) or type(exc).__name__) from None
            except (AssociationRejected, NetworkError):
                if attempt + 1 >= connect_attempts:
                    raise
                time.sleep(0.5 * 2 ** attempt)
        raise AssertionError("unreachable")

    def visit(window: Window) -> None:
        if stop is not None and stop():
            return
        key = window.key
        if key in done:
            return
        children = window.children(split_patient)
        if f"split|{key}" not in done:
            try:
                found, n = ask(window)
                reason = None
            except _Refused as exc:
                found, n, reason = [], 0, str(exc)
            result.windows += 1
            result.studies += journal.add_studies(found)
            if on_window is not None:
                on_window(key, n)
            if reason is None and not capped(n):
                journal.window_done(key, n)
                return
            if not children:
                (result.refused if reason else result.capped).append(key)
                log.warning("inventory: %s %s at the finest split; studies may be missing", key,
                            f"refused ({reason})" if reason else f"still capped ({n} matches)")
                journal.window_done(("refused|" if reason else "capped|") + key, n)
                journal.window_done(key, n)
                return
            log.info("inventory: %s %s: split", key, f"refused ({reason})" if reason else f"{n} matches")
            journal.window_done(f"split|{key}", n)
        for child in children:
            visit(child)

    lo = date_from or FIRST_DATE
    hi = date_to or LAST_DATE
    _day(lo), _day(hi)  # validated
    try:
        visit(Window(lo, hi))
        if date_from is None and date_to is None:
            visit(Window(None, None))
    finally:
        finder.close()
    # What an earlier run of this inventory left capped or refused is reported as well.
    for key in journal.done_windows():
        kind, _, rest = key.partition("|")
        if kind == "capped" and rest not in result.capped:
            result.capped.append(rest)
        elif kind == "refused" and rest not in result.refused:
            result.refused.append(rest)
    result.capped.sort()
    result.refused.sort()
    return result

