"""Archive migration: ``fastdimse migrate`` and :func:`migrate` (issue 12)."""

from __future__ import annotations

from .model import SeriesRecord, State, StudyRecord, TransferOutcome

__all__ = ["SeriesRecord", "State", "StudyRecord", "TransferOutcome"]
