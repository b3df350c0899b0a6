"""The reconciliation report: JSON (for programs) and Markdown beside it (for people).

Per study: its UID, patient, date, the count the source gave (``expected``), the counts at
the source and at the destination after the transfer, its status, the reason when it is
not verified, and the retries. The summary on top has the totals and the inventory windows
that stayed capped or refused (studies may be missing there).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path

from .model import State

__all__ = ["write_report", "markdown_path", "study_entry"]


def markdown_path(path: str | os.PathLike) -> Path:
    """``report.json`` -> ``report.md`` (the Markdown beside the JSON)."""
    p = Path(path)
    return p.with_suffix(".md") if p.suffix.lower() == ".json" else p.with_name(p.name + ".md")


def study_entry(s, max_attempts: int) -> dict:
    return {
        "study_uid": s.study_uid, "patient_id": s.patient_id, "study_date": s.study_date,
        "status": s.state.value, "expected": s.expected, "source_count": s.source_count,
        "dest_count": s.dest_count, "attempts": s.attempts, "retries": max(0, s.attempts - 1),
        "final": s.state is State.VERIFIED or (s.state is State.FAILED and s.attempts >= max_attempts),
        "reason": s.reason,
    }


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(path: str | os.PathLike, journal, *, migration: dict, result, max_attempts: int) -> tuple[Path, Path]:
    """Write the JSON report at ``path`` and the Markdown beside it; returns both paths."""
    path = Path(path)
    studies = [study_entry(s, max_attempts) for s in journal.studies()]
    studies.sort(key=lambda e: (e["status"] == State.VERIFIED.value, e["study_date"], e["study_uid"]))
    summary = {
        "studies": len(studies),
        "verified": result.verified,
        "failed": result.failed,
        "not_done": result.not_done,
        "instances_source": sum(e["source_count"] or 0 for e in studies),
        "instances_destination": sum(e["dest_count"] or 0 for e in studies),
        "instances_verified": sum(e["dest_count"] or 0 for e in studies if e["status"] == State.VERIFIED.value),
        "bytes": result.bytes,
        "elapsed_s": round(result.elapsed, 3),
        "exit_code": result.exit_code,
        "capped_windows": result.capped_windows,
        "refused_windows": result.refused_windows,
        "stopped": result.fatal,
    }
    doc = {"generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "migration": migration, "summary": summary, "studies": studies}
    _atomic_write(path, json.dumps(doc, indent=1, default=str) + "\n")
    md = markdown_path(path)
    _atomic_write(md, _markdown(doc))
    return path, md


def _cell(value) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def _markdown(doc: dict) -> str:
    s, m = doc["summary"], doc["migration"]
    lines = [
        "# fastdimse migrate: report", "",
        f"{_cell(m.get('source'))} -> {_cell(m.get('dest'))}, mode {m.get('mode')}, generated {doc['generated_at']}", "",
        "| studies | verified | failed | not done | instances at the source | at the destination | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['studies']} | {s['verified']} | {s['failed']} | {s['not_done']} | {s['instances_source']} "
        f"| {s['instances_destination']} | {s['elapsed_s']} |", "",
    ]
    if s.get("stopped"):
        lines += [f"**Stopped before the end:** {_cell(s['stopped'])}", ""]
    for what, key in (("still capped", "capped_windows"), ("refused", "refused_windows")):
        if s[key]:
            lines += [f"Inventory windows {what} at the finest split (studies may be missing there): "
                      + ", ".join(f"`{k}`" for k in s[key]), ""]
    bad = [e for e in doc["studies"] if e["status"] != State.VERIFIED.value]
    if bad:
        lines += ["## Not migrated", "", "| study | patient | date | status | source | destination | retries | reason |",
                  "|---|---|---|---|---:|---:|---:|---|"]
        lines += [f"| {_cell(e['study_uid'])} | {_cell(e['patient_id'])} | {_cell(e['study_date'])} | {e['status']} "
                  f"| {_cell(e['source_count'])} | {_cell(e['dest_count'])} | {e['retries']} | {_cell(e['reason'])} |"
                  for e in bad]
        lines.append("")
    lines += ["## All studies", "", "| study | patient | date | status | expected | source | destination | retries |",
              "|---|---|---|---|---:|---:|---:|---:|"]
    lines += [f"| {_cell(e['study_uid'])} | {_cell(e['patient_id'])} | {_cell(e['study_date'])} | {e['status']} "
              f"| {_cell(e['expected'])} | {_cell(e['source_count'])} | {_cell(e['dest_count'])} | {e['retries']} |"
              for e in doc["studies"]]
    return "\n".join(lines) + "\n"
