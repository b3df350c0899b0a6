"""The records shared by every part of ``fastdimse migrate`` (issue 12).

These dataclasses are the agreed interface between the journal (SQLite or PostgreSQL), the
inventory, the transfer modes, verification, the engine and the report. See
``notes/migrate_spec.md``; change them only by agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..entity import Entity
    from ..scu import DICOMSCU


class State(str, Enum):
    """Where one study (or series) stands in a migration."""

    PENDING = "pending"
    TRANSFERRING = "transferring"
    TRANSFERRED = "transferred"
    VERIFIED = "verified"
    FAILED = "failed"


@dataclass
class StudyRecord:
    """One study of the source, as the journal keeps it."""

    study_uid: str
    patient_id: str = ""
    study_date: str = ""  # "" when the source gives none
    expected: int | None = None  # instances the source says it holds (None: unknown yet)
    state: State = State.PENDING
    attempts: int = 0
    reason: str | None = None
    source_count: int | None = None
    dest_count: int | None = None
    next_attempt_at: float = 0.0  # time.time() before which it is not retried


@dataclass
class SeriesRecord:
    """One series of a study, when the study's count is known per series."""

    series_uid: str
    study_uid: str
    expected: int | None = None
    state: State = State.PENDING
    source_count: int | None = None
    dest_count: int | None = None


@dataclass
class TransferOutcome:
    """What ``transfer_study`` returns for one study."""

    completed: int
    failed: int
    warning: int
    failed_uids: list[str] = field(default_factory=list)  # SOP Instance UIDs refused / not arrived
    reasons: list[str] = field(default_factory=list)  # words, e.g. "0xA700 out of resources"
    status: int | None = None  # the final DIMSE status of the retrieve, None for folders
    transient: bool = False  # True: worth retrying (A7xx, timeouts, transient reject)


@dataclass
class TransferContext:
    """What ``transfer_study`` needs to move one study (the engine builds it once)."""

    scu: "DICOMSCU"
    source: "Entity | Path"
    dest: "Entity | Path"
    mode: str  # "move" | "relay" | "get"
    dest_ae: str | None = None  # move: the AE title the source sends to
    parallel: int = 1
    window: int = 16
    coerce: list[tuple[str, str]] = field(default_factory=list)  # (keyword, value), relay
    # relay: the built-in storage SCP (relay.Catcher), started by the engine. Typed loosely:
    # model.py imports nothing of the migration (relay.py imports it).
    catcher: Any = None
    timeout: float = 60.0
