"""DIMSE status codes (PS3.7 Annex C) and their categories, as the Rust core defines them."""

from __future__ import annotations

from . import _core

SUCCESS: int = _core.STATUS_SUCCESS
CANCEL: int = _core.STATUS_CANCEL
PENDING: int = _core.STATUS_PENDING
PENDING_WARNING: int = _core.STATUS_PENDING_WARNING
UNRECOGNIZED_OPERATION: int = _core.STATUS_UNRECOGNIZED_OPERATION
SOP_CLASS_NOT_SUPPORTED: int = _core.STATUS_SOP_CLASS_NOT_SUPPORTED
PROCESSING_FAILURE: int = _core.STATUS_PROCESSING_FAILURE


def category(status: int) -> str:
    """'success', 'pending', 'cancel', 'warning' or 'failure' (PS3.7 C.1-C.4)."""
    return _core.status_category(status)
