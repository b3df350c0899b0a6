"""Archive migration: ``fastdimse migrate`` and :func:`migrate` (issue 12).

A migration enumerates the source's studies by C-FIND in StudyDate windows (split where
the source caps or refuses an answer), transfers them study by study (``move``: C-MOVE
straight to the destination; ``relay``/``get``: through us), counts each at the source
and at the destination, and keeps every step in a journal, so the same call again resumes
where a killed run stopped. See :mod:`fastdimse.migrate.engine` for how it runs.

>>> from fastdimse import Entity
>>> from fastdimse.migrate import migrate
>>> result = migrate(Entity("OLDPACS", "10.0.0.5", 104), Entity("NEWPACS", "10.0.0.6", 104),
...                  journal="old-to-new.sqlite", report="old-to-new.json")   # doctest: +SKIP
>>> result.verified, result.failed, result.exit_code                          # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .model import SeriesRecord, State, StudyRecord, TransferOutcome

__all__ = ["migrate", "SeriesRecord", "State", "StudyRecord", "TransferOutcome", "DEFAULT_JOURNAL",
           "DEFAULT_REPORT"]

DEFAULT_JOURNAL = "fastdimse-migrate.sqlite"
DEFAULT_REPORT = "fastdimse-migrate-report.json"


def migrate(source, dest, *, mode: str = "move", journal: str | os.PathLike = DEFAULT_JOURNAL,
            report: str | os.PathLike | None = DEFAULT_REPORT, aet: str = "FASTDIMSE", dest_ae: str | None = None,
            verify_at=None, parallel: int = 4, window: int = 16, max_results: int | None = None,
            date_from: str | None = None, date_to: str | None = None, modality: str | None = None,
            keys: dict[str, str] | None = None, coerce: list[tuple[str, str]] | None = None, mapping=None,
            rate_limit: str | None = None, schedule: str | None = None, max_attempts: int = 5,
            retry_delay: float = 5.0, retry_failed: bool = False, timeout: float = 30.0,
            catcher_port: int = 0, staging: str | os.PathLike | None = None, on_progress: Callable | None = None):
    """Migrate every study of ``source`` to ``dest`` and return a
    :class:`~fastdimse.migrate.engine.MigrationResult` (``verified``, ``failed``,
    ``exit_code``, the report's paths).

    ``source`` and ``dest`` are :class:`~fastdimse.Entity` nodes or folders. ``mode``:
    ``"move"`` (C-MOVE to ``dest_ae``, default the destination's AE title, which the
    source must know), ``"relay"`` or ``"get"``. ``verify_at``: where what arrived is
    counted, default ``dest`` (a node is asked by C-FIND; give the destination's storage
    folder for a node that answers no C-FIND, such as dcmtk's storescp). ``parallel``
    is a ceiling (see the engine); ``max_results`` the source's C-FIND cap (not given:
    the usual caps are recognised). ``rate_limit`` ``"200/s"`` or ``"50MB/s"``;
    ``schedule`` ``"19:00-07:00"``. A study is tried ``max_attempts`` times, the n-th
    retry after ``retry_delay * 2**(n-1)`` seconds; ``retry_failed`` gives the studies a
    previous run left failed a fresh set of attempts. ``catcher_port`` and ``staging``:
    relay mode's catcher (our AE title ``aet`` on that port) and its staging folder. Raises
    ``coerce`` (relay): (keyword, value) set on every instance; ``mapping``: a
    :func:`fastdimse.coerce.load_mapping` file (.toml or .csv) or its ``CoercionMap``,
    whose constants and PatientID map (or prefix) apply per patient. Raises
    :class:`~fastdimse.migrate.engine.SourceUnreachable` when no association at all can
    be made with the source, ``JournalMismatch`` when ``journal`` belongs to another migration.
    """
    from .engine import Engine, MigrationConfig
    from .journal import open_journal
    from .report import write_report

    if mapping is not None and not hasattr(mapping, "for_patient"):
        from ..coerce import load_mapping

        mapping = load_mapping(mapping)

    def endpoint(e):
        return Path(e) if isinstance(e, (str, os.PathLike)) else e

    if (coerce or mapping is not None) and isinstance(endpoint(dest), Path):
        raise ValueError("coercion rewrites tags on the C-STORE to a node: into a folder destination "
                         "it is not implemented")

    cfg = MigrationConfig(endpoint(source), endpoint(dest), mode=mode, aet=aet, dest_ae=dest_ae,
                          verify_at=None if verify_at is None else endpoint(verify_at), parallel=parallel,
                          window=window, max_results=max_results, date_from=date_from, date_to=date_to,
                          modality=modality, keys=dict(keys or {}), coerce=list(coerce or []), coerce_map=mapping,
                          rate_limit=rate_limit, schedule=schedule, max_attempts=max_attempts,
                          retry_delay=retry_delay, timeout=timeout, catcher_port=catcher_port,
                          staging=None if staging is None else os.fspath(staging))
    identity = cfg.identity()
    j = open_journal(journal, identity, max_attempts=max_attempts)
    interrupted = False
    try:
        if retry_failed and hasattr(j, "reset_failed"):
            j.reset_failed()
        engine = Engine(cfg, j, on_progress=on_progress)
        try:
            result = engine.run()
        except KeyboardInterrupt:
            # Workers may still be in a transfer: leave the journal open under them (every
            # step is committed already; the next run resumes).
            interrupted = True
            raise
        finally:
            engine.stop.set()
        if report is not None:
            result.report, result.markdown = write_report(report, j, migration=identity, result=result,
                                                          max_attempts=max_attempts)
        return result
    finally:
        if not interrupted:
            j.close()
