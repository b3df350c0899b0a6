"""python/fastdimse/_core.pyi describes the built extension exactly: mypy's stubtest
compares it with the module (every function, class, method, attribute and signature),
and a stub with a function missing or a signature wrong is shown to fail the check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastdimse._core as core

pytestmark = pytest.mark.timeout(300)

STUB = Path(__file__).resolve().parents[2] / "python" / "fastdimse" / "_core.pyi"


def _stubtest(mypypath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if mypypath is not None:
        env["MYPYPATH"] = str(mypypath)
    return subprocess.run([sys.executable, "-m", "mypy.stubtest", "fastdimse._core"],
                          capture_output=True, text=True, timeout=240, env=env)


def test_stub_matches_the_extension():
    r = _stubtest()
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


def test_stubtest_fails_on_a_missing_function_and_a_wrong_signature(tmp_path):
    """The check is not a formality: the same stub with codec_split_items removed (from
    its definitions and __all__), validate_ae_title given a parameter it does not have,
    and Server.stop removed, found first on MYPYPATH, fails, naming each of the three."""
    text = STUB.read_text()
    broken = re.sub(r"\ndef codec_split_items\(.*?\n(?=\n)", "\n", text, count=1, flags=re.S)
    broken = broken.replace('"codec_split_items", ', "")
    broken = broken.replace("def validate_ae_title(title: str) -> str:",
                            "def validate_ae_title(title: str, strict: bool) -> str:")
    broken = broken.replace("    def stop(self) -> None: ...\n", "", 1)
    assert "codec_split_items" not in broken and "strict: bool" in broken and broken.count("def stop(") == 0
    pkg = tmp_path / "fastdimse"
    pkg.mkdir()
    (pkg / "__init__.pyi").write_text("")
    (pkg / "_core.pyi").write_text(broken)
    r = _stubtest(tmp_path)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-4000:]
    assert re.search(r"fastdimse\._core\.codec_split_items is not present in stub", out), out[-4000:]
    assert re.search(r"fastdimse\._core\.validate_ae_title is inconsistent", out), out[-4000:]
    assert re.search(r"fastdimse\._core\.Server\.stop is not present in stub", out), out[-4000:]


def test_stub_lists_every_export():
    """Without mypy too: each name the module exports is defined in the stub."""
    text = STUB.read_text()
    defined = set(re.findall(r"^(?:def|class) (\w+)|^(\w+)(?::| =)", text, flags=re.M))
    names = {a or b for a, b in defined}
    missing = [n for n in core.__all__ if n not in names]
    assert not missing, missing
