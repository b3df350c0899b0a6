"""`fastdimse dump` as the installed console script: its lines against what pydicom reads
(and the tags against dcmtk's dcmdump), --json against pydicom's DICOM JSON model, and a
truncated or invalid file as one error line naming the file and the offset."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from tests.support import storedata as sd
from tests.support.peers import require_executable

pytestmark = pytest.mark.timeout(120)

FASTDIMSE = Path(sys.executable).with_name("fastdimse")
# (indent)(gggg,eeee) VR value ... # Keyword
LINE = re.compile(r"^(?P<indent> *)\((?P<group>[0-9a-f]{4}),(?P<elem>[0-9a-f]{4})\) (?P<vr>\S+) "
                  r"(?P<value>.*?)(?:\s+# (?P<keyword>\S+).*)?$")
BINARY_NUMBER_VRS = {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"}


def run_dump(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(FASTDIMSE), "dump", *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> list[sd.Source]:
    """CT (with a nested sequence), MR, SC 8-bit and RGB, RT Plan (sequences in
    sequences), each in implicit VR LE, explicit VR LE and explicit VR BE."""
    return sd.generate_mixed(tmp_path_factory.mktemp("dump"))


def per_file(stdout: str) -> dict[str, list[str]]:
    """The dump's lines by file (each file's block starts with '# <path>')."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith("# ") and not line.startswith(("# File meta", "# Data set")):
            current = out.setdefault(line[2:], [])
        elif line and current is not None:
            current.append(line)
    return out


def element_lines(lines: list[str]) -> list[re.Match]:
    matches = [LINE.match(line) for line in lines if not line.startswith("#")]
    assert all(matches), [line for line, m in zip(lines, matches) if not m]
    return matches  # type: ignore[return-value]


def expected_value(elem) -> str:
    """What the value column must read, from pydicom's own reading of the file."""
    if elem.tag == 0x7FE00010:
        return f"({len(elem.value)} bytes)"
    value = elem.value
    if value is None or value == "" or (isinstance(value, (bytes, list)) and not value):
        return "(no value)"
    if isinstance(value, bytes):
        return "\\".join(f"{b:02x}" for b in value)
    values = list(value) if elem.VM > 1 else [value]
    text = "\\".join(str(v) for v in values)
    return text if elem.VR in BINARY_NUMBER_VRS else f"[{text}]"


def expected_lines(ds: Dataset, depth: int = 0) -> list[tuple[int, int, str, str, str]]:
    """(depth, tag, VR, value column, keyword) of each element, sequences walked."""
    out = []
    for elem in ds:
        if elem.VR == "SQ":
            n = len(elem.value)
            out.append((depth, int(elem.tag), "SQ", f"(Sequence with {n} item{'s' if n != 1 else ''})", elem.keyword))
            for i, item in enumerate(elem.value, 1):
                out.append((depth + 1, 0xFFFEE000, "na", f"(Item #{i})", None))
                out += expected_lines(item, depth + 2)
        else:
            out.append((depth, int(elem.tag), elem.VR, expected_value(elem), elem.keyword))
    return out


def as_tuples(matches: list[re.Match]) -> list[tuple]:
    return [(len(m["indent"]) // 2, int(m["group"] + m["elem"], 16), m["vr"], m["value"], m["keyword"])
            for m in matches]


def test_dump_matches_pydicom(sources):
    done = run_dump(*[s.path for s in sources])
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    blocks = per_file(done.stdout)
    assert set(blocks) == {str(s.path) for s in sources}
    for s in sources:
        ds = pydicom.dcmread(s.path)
        want = expected_lines(ds.file_meta) + expected_lines(ds)
        got = as_tuples(element_lines(blocks[str(s.path)]))
        assert got == want, s.path
        # the meta group comes first, then the data set in the file's transfer syntax
        lines = blocks[str(s.path)]
        assert lines[0].startswith("# File meta") and lines[1].startswith("(0002,")
        data_set_header = next(line for line in lines if line.startswith("# Data set"))
        assert s.transfer_syntax in data_set_header


@pytest.mark.parametrize("name", ["ExplVR_BigEndNoMeta.dcm", "ExplVR_LitEndNoMeta.dcm", "rtstruct.dcm"])
def test_bare_data_set_without_meta(name):
    """Files that are only a data set (no preamble, no meta group): the syntax is guessed
    from the first element, as pydicom's force=True does."""
    path = sd.pydicom_test_file(name)
    done = run_dump("--max-length", "0", path)
    assert done.returncode == 0, done.stderr
    lines = per_file(done.stdout)[str(path)]
    assert lines[0].startswith("# Data set (no file meta information")
    assert as_tuples(element_lines(lines)) == expected_lines(pydicom.dcmread(path, force=True))


def dcmdump_tags(path: Path) -> list[tuple[int, int, str]]:
    """(depth, tag, VR) of each element line dcmdump prints (items and delimiters left out)."""
    exe = require_executable("dcmdump")
    done = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    out = []
    for line in done.stdout.splitlines():
        m = re.match(r"^( *)\(([0-9a-f]{4}),([0-9a-f]{4})\) (\S+)", line)
        if m and m.group(2) != "fffe":
            out.append((len(m.group(1)) // 2, int(m.group(2) + m.group(3), 16), m.group(4)))
    return out


def test_dump_tags_match_dcmdump(sources):
    picked = [s for s in sources if s.sop_class_uid in (sd.CT_IMAGE, sd.RT_PLAN)]
    done = run_dump(*[s.path for s in picked])
    assert done.returncode == 0, done.stderr
    blocks = per_file(done.stdout)
    for s in picked:
        ours = [(len(m["indent"]) // 2, int(m["group"] + m["elem"], 16), m["vr"])
                for m in element_lines(blocks[str(s.path)]) if m["group"] != "fffe"]
        assert ours == dcmdump_tags(s.path), s.path


def test_long_values_are_truncated(tmp_path):
    ds = sd.make_image(sd.CT_IMAGE, rows=4, columns=4, seed=3, with_sequence=False)
    ds.ImageComments = "x" * 200
    path = sd.write_instance(ds, tmp_path / "long.dcm")

    def comment_line(*args: str) -> str:
        done = run_dump(*args, path)
        assert done.returncode == 0, done.stderr
        return next(line for line in done.stdout.splitlines() if line.startswith("(0020,4000)"))

    assert f"[{'x' * 64}...]" in comment_line()
    assert f"[{'x' * 10}...]" in comment_line("--max-length", "10")
    assert f"[{'x' * 200}]" in comment_line("--max-length", "0")


def test_json_matches_pydicom(sources):
    picked = sources[:5] + [s for s in sources if s.transfer_syntax == sd.EXPLICIT_VR_BE][:2]
    done = run_dump("--json", *[s.path for s in picked])
    assert done.returncode == 0, done.stderr
    docs = json.loads(done.stdout)
    assert docs == [pydicom.dcmread(s.path).to_json_dict() for s in picked]
    # and it is the DICOM JSON model: pydicom reads it back to the same elements
    back = Dataset.from_json(docs[0])
    src = pydicom.dcmread(picked[0].path)
    assert [(e.tag, e.value) for e in back] == [(e.tag, e.value) for e in src]


def truncated_copy(src: Path, dst: Path) -> int:
    """A copy of ``src`` cut in the middle of its pixel data; returns the offset of the
    pixel data element (where the file stops making sense)."""
    data = src.read_bytes()
    at = data.rfind(b"\xe0\x7f\x10\x00")
    assert at > 0
    dst.write_bytes(data[:at + 12 + 20])
    return at


def test_truncated_file_is_one_line_and_the_other_file_is_dumped(sources, tmp_path):
    good = next(s for s in sources if s.sop_class_uid == sd.MR_IMAGE)
    src = next(s for s in sources if s.sop_class_uid == sd.CT_IMAGE and s.transfer_syntax == sd.EXPLICIT_VR_LE)
    bad = tmp_path / "cut.dcm"
    offset = truncated_copy(src.path, bad)

    done = run_dump(bad, good.path)
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert str(bad) in errors[0] and f"offset {offset}" in errors[0], errors[0]
    blocks = per_file(done.stdout)
    assert list(blocks) == [str(good.path)]
    assert good.sop_instance_uid in done.stdout and src.sop_instance_uid not in done.stdout

    done = run_dump("--json", good.path, bad)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and f"offset {offset}" in done.stderr
    assert json.loads(done.stdout) == [pydicom.dcmread(good.path).to_json_dict()]


def test_malformed_sequence_item_names_its_sequence_and_offset(sources, tmp_path):
    src = next(s for s in sources if s.sop_class_uid == sd.CT_IMAGE and s.transfer_syntax == sd.EXPLICIT_VR_LE)
    data = bytearray(src.path.read_bytes())
    seq = data.find(b"\x08\x00\x40\x11SQ")  # (0008,1140) ReferencedImageSequence
    item = data.find(b"\xfe\xff\x00\xe0", seq)
    assert 0 < seq < item
    data[item + 4:item + 8] = (0x7FFFFF00).to_bytes(4, "little")  # an item length past the end
    bad = tmp_path / "badseq.dcm"
    bad.write_bytes(bytes(data))

    for args in ((bad, src.path), ("--json", bad, src.path)):
        done = run_dump(*args)
        assert done.returncode == 1
        errors = done.stderr.strip().splitlines()
        assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
        # the sequence's value starts after its 12-byte explicit VR header
        assert str(bad) in errors[0] and "(0008,1140)" in errors[0] and f"offset {seq + 12}" in errors[0], errors[0]
        assert src.sop_instance_uid in done.stdout


def test_not_a_dicom_file(tmp_path):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"hello, not DICOM at all\n" * 20)
    done = run_dump(junk)
    assert done.returncode == 1 and done.stdout == ""
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and str(junk) in errors[0] and "offset 128" in errors[0], done.stderr


def test_missing_file_is_a_usage_error(tmp_path):
    done = run_dump(tmp_path / "nope.dcm")
    assert done.returncode == 2 and done.stdout == ""
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "nope.dcm" in errors[0] and "Traceback" not in done.stderr


def test_help_ends_with_an_example():
    done = subprocess.run([str(FASTDIMSE), "dump", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    tail = done.stdout.rsplit("Example:", 1)
    assert len(tail) == 2 and "fastdimse dump" in tail[1] and "--json" in tail[1]
