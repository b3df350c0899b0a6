"""benches/bench_migrate.py at a tiny scale, so that the benchmark cannot rot: every case
runs and moves every instance, and the table names them all (no timing asserted)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.timeout(120)]


@pytest.mark.skipif(shutil.which("movescu") is None or shutil.which("storescp") is None, reason="needs dcmtk")
def test_bench_migrate_runs_every_case_at_200_instances(tmp_path):
    out = tmp_path / "results.md"
    r = subprocess.run([sys.executable, "-m", "benches.bench_migrate", "--instances", "200", "--per-study", "50",
                        "--latency-instances", "100", "--out", str(out), "--cache-dir", str(tmp_path / "cache")],
                       cwd=ROOT, capture_output=True, text=True, timeout=110,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("\n## Archive migration, 200 instances in 4 studies")
    assert "failed" not in text
    for case in ("movescu loop", "scu.move loop", "--mode move", "--mode relay"):
        for dest in ("dcmtk storescp", "our SCP (Q/R)"):
            rows = [line for line in text.splitlines() if case in line and f"| {dest} |" in line]
            assert rows, (case, dest)
            # a measured rate, and the ratio to the scu.move loop of the same destination
            cells = [c.strip() for c in rows[0].split("|")]
            assert re.fullmatch(r"[\d,]+", cells[4]) and int(cells[4].replace(",", "")) > 0, rows[0]
            assert re.fullmatch(r"\d+\.\d\dx", cells[5]), rows[0]
    assert "100 instances in 2 studies, into dcmtk storescp" in text
    assert "| fastdimse migrate --mode move --parallel 8 |" in text
    # the profiled runs: move into both, as shipped and cheap; relay into our SCP as shipped
    assert text.count("journal on disk |") == 3 and text.count("journal on /dev/shm |") == 2
    assert re.search(r"\| [+-]\d+ % \|", text)  # the cost of journaling and verifying
    # the cache holds the files and the source's index; nothing else is left behind
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["v2-200-50"]
