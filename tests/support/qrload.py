"""Load ``fastdimse.qr`` for its tests, with or without the built Rust core."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path


def load_qr():
    """``fastdimse.qr`` from the package when ``fastdimse`` imports (built core);
    otherwise the pure-Python ``qr`` package alone, loaded from its folder, so
    these tests also run in a checkout where the Rust extension is not built."""
    try:
        import fastdimse  # noqa: F401
    except ImportError:
        name = "fastdimse_qr_standalone"
        if name not in sys.modules:
            pkg = Path(__file__).resolve().parents[2] / "python" / "fastdimse" / "qr"
            spec = importlib.util.spec_from_file_location(
                name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]
    return importlib.import_module("fastdimse.qr")
