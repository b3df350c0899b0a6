"""Load ``fastdimse.qr`` for its tests, with or without the built Rust core."""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path


def load_qr():
    """``fastdimse.qr`` from the package when ``fastdimse`` imports (built core);
    otherwise the pure-Python ``qr`` package (and the ``errors`` module it imports) alone,
    loaded from their folder, so these tests also run in a checkout where the Rust
    extension is not built."""
    try:
        import fastdimse  # noqa: F401
    except ImportError:
        # A stand-in parent package over the same folder, whose __init__ (which needs the
        # core) is not run: qr's relative imports (..errors) resolve in it.
        parent = "fastdimse_standalone"
        if parent not in sys.modules:
            folder = Path(__file__).resolve().parents[2] / "python" / "fastdimse"
            package = types.ModuleType(parent)
            package.__path__ = [str(folder)]
            sys.modules[parent] = package
        return importlib.import_module(parent + ".qr")
    return importlib.import_module("fastdimse.qr")
