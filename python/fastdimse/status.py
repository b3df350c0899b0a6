"""DIMSE status codes (PS3.7 Annex C) and their categories."""

from __future__ import annotations

SUCCESS = 0x0000
CANCEL = 0xFE00
PENDING = 0xFF00
PENDING_WARNING = 0xFF01
UNRECOGNIZED_OPERATION = 0x0211
SOP_CLASS_NOT_SUPPORTED = 0x0122
PROCESSING_FAILURE = 0x0110


def category(status: int) -> str:
    """'success', 'pending', 'cancel', 'warning' or 'failure' (PS3.7 C.1-C.4)."""
    if status == SUCCESS:
        return "success"
    if status in (PENDING, PENDING_WARNING):
        return "pending"
    if status == CANCEL:
        return "cancel"
    if status == 0x0001 or (status & 0xF000) == 0xB000 or status == 0x0107 or status == 0x0116:
        return "warning"
    return "failure"
