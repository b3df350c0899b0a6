"""The chart of ``fastdimse bench --plot FILE``: throughput and p99 latency against
concurrency (or, for ``--grow``, latency against archive size), as a PNG or as one
self-contained HTML page (the chart inlined as SVG, the figures as a table; nothing
loaded from anywhere).

matplotlib is optional (``pip install "fastdimse[plot]"``); :func:`check_plot_target`
says so in one line before any work is done.
"""

from __future__ import annotations

import html
import io
import os
import re
from typing import Any

__all__ = ["check_plot_target", "write_plot", "PLOT_SUFFIXES"]

PLOT_SUFFIXES = (".png", ".html", ".htm")


def check_plot_target(path: str) -> str:
    """The kind of plot ``path`` asks for ("png" or "html"); ValueError if the suffix is
    neither or matplotlib is missing."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in PLOT_SUFFIXES:
        raise ValueError(f"--plot {path}: write a .png or an .html file")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError('--plot needs matplotlib: pip install "fastdimse[plot]"') from None
    return "png" if suffix == ".png" else "html"


def _figure(doc: dict[str, Any]):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    if "grow" in doc:
        rows = doc["grow"]
        x = [r["archive_instances"] for r in rows]
        for key, style in (("p50", "o-"), ("p95", "s--"), ("p99", "^-")):
            left.plot(x, [r["latency_ms"][key] for r in rows], style, label=key)
        left.set_xlabel("instances stored by this run")
        left.set_ylabel("C-FIND latency (ms)")
        left.set_title("Query latency as the archive grows")
        left.legend()
        right.plot(x, [r["ops_per_s"] for r in rows], "o-")
        right.set_xlabel("instances stored by this run")
        right.set_ylabel("C-FIND/s")
        right.set_title("Query throughput")
    else:
        levels = sorted(doc["levels"], key=lambda lv: lv["concurrency"])
        x = [lv["concurrency"] for lv in levels]
        left.plot(x, [lv["ops_per_s"] for lv in levels], "o-", label="operations/s")
        left.set_xlabel("concurrent associations")
        left.set_ylabel("operations/s")
        left.set_title(f"C-{doc['op'].upper()} throughput")
        sat = doc.get("saturation")
        if sat and sat.get("reached"):
            left.axvline(sat["concurrency"], color="grey", linestyle=":",
                         label=f"saturation ({sat['concurrency']})")
        left.legend()
        right.plot(x, [lv["latency_ms"]["p99"] for lv in levels], "^-", color="tab:red", label="p99")
        right.plot(x, [lv["latency_ms"]["p50"] for lv in levels], "o--", color="tab:blue", label="p50")
        right.set_xlabel("concurrent associations")
        right.set_ylabel("latency (ms)")
        right.set_title("Latency per response")
        right.legend()
        for ax in (left, right):
            ax.set_xscale("log", base=2)
            ax.set_xticks(x, [str(v) for v in x])
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    fig.suptitle(f"fastdimse bench {doc['peer']}")
    return fig


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    # Inline: no XML declaration, no DOCTYPE (it names a DTD by URL), no RDF metadata.
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    return svg


def _table(doc: dict[str, Any]) -> str:
    if "grow" in doc:
        head = ["step", "instances", "queries", "C-FIND/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors"]
        rows = [[r["step"], r["archive_instances"], r["queries"], r["ops_per_s"], *r["latency_ms"].values(),
                 sum(r["errors"].values())] for r in doc["grow"]]
    else:
        head = ["concurrency", "operations", "seconds", "ops/s", "MB/s", "p50 ms", "p95 ms", "p99 ms",
                "max ms", "errors"]
        rows = [[lv["concurrency"], lv["operations"], lv["seconds"], lv["ops_per_s"], lv["mb_per_s"],
                 *lv["latency_ms"].values(), ", ".join(f"{k}: {v}" for k, v in lv["errors"].items()) or "0"]
                for lv in doc["levels"]]
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('-' if v is None else str(v))}</td>" for v in row)
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def write_plot(doc: dict[str, Any], path: str) -> None:
    """Write the chart of a bench JSON document (``Sweep.to_json()`` or the grow
    document) to ``path`` (.png, or .html with everything inline)."""
    kind = check_plot_target(path)
    fig = _figure(doc)
    if kind == "png":
        fig.savefig(path, format="png", dpi=110)
        return
    title = html.escape(f"fastdimse bench {doc.get('op', 'find')} {doc['peer']}")
    sat = doc.get("saturation")
    note = ""
    if sat:
        note = (f"<p>Saturation: {sat['ops_per_s']} operations/s at concurrency {sat['concurrency']}"
                + ("" if sat.get("reached") else " (still growing at the last level)") + ".</p>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:.25em .6em;text-align:right}}svg{{max-width:100%;height:auto}}</style>
</head><body>
<h1>{title}</h1>
{_svg(fig)}
{note}
{_table(doc)}
</body></html>
"""
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
