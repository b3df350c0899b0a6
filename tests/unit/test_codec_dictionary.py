"""The Rust VR dictionary (rust/src/dataset/dictionary.txt) is generated from
pydicom's data dictionary by rust/src/dataset/gen_dictionary.py, not typed by
hand. This checks that it still is: byte for byte when the installed pydicom is
the version it was generated from, entry by entry otherwise."""

from __future__ import annotations

import importlib.util
import pathlib
import re

import pydicom
from pydicom._dicom_dict import DicomDictionary

ROOT = pathlib.Path(__file__).resolve().parents[2]
GEN = ROOT / "rust" / "src" / "dataset" / "gen_dictionary.py"
TABLE = ROOT / "rust" / "src" / "dataset" / "dictionary.txt"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_dictionary", GEN)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_dictionary_is_generated_from_pydicom():
    text = TABLE.read_text()
    version = re.search(r"from pydicom (\S+)'s data dictionary", text)
    assert version, "dictionary.txt lost its @generated header"
    if version.group(1) == pydicom.__version__:
        assert _generator().render() == text, "regenerate: python rust/src/dataset/gen_dictionary.py"
        return
    # another pydicom: every entry we carry must still agree with it
    entries = re.findall(r"^([0-9A-F]{8}) (\S\S)$", text, re.M)
    assert len(entries) > 4000
    ambiguous = {code: vr for vr, code in _generator().CODES.items()}
    for tag_hex, code in entries:
        tag = int(tag_hex, 16)
        if tag not in DicomDictionary:
            continue
        vr = ambiguous.get(code, code)
        assert DicomDictionary[tag][0] == vr, f"{tag_hex}: {vr} != {DicomDictionary[tag][0]}"
