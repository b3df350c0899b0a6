"""Bad input to the client commands (``fastdimse echo/store/find/move/get``), run as the
installed console script: ONE line on stderr naming what is wrong, nothing on stdout,
no traceback, exit 2, and no network work at all (the peers named here do not exist;
reaching for one would give exit 3). And every client command's --help shows an example.
"""

from __future__ import annotations

import pytest

from tests.support.cli import assert_one_error_line, fastdimse

pytestmark = pytest.mark.timeout(60)

# Nothing listens here; the commands must fail before they try.
PEER = "NOBODY@127.0.0.1:9"
LONG_AE = "ABCDEFGHIJKLMNOPQ"  # 17 characters


@pytest.mark.parametrize("key, needle", [
    ("NoSuchKeyword=1", "NoSuchKeyword"),
    ("PatientNmae", "PatientNmae"),
    ("0010,00ZZ=DOE", "0010,00ZZ"),
    ("10,10=DOE", "10,10"),
    ("0010;0010", "0010;0010"),
    ("=DOE", "=DOE"),
    ("0009,0010=x", "0009,0010"),  # a private tag: not in the dictionary
])
@pytest.mark.parametrize("command", ["find", "move", "get"])
def test_bad_key(command, key, needle, tmp_path):
    extra = {"find": [], "move": ["--dest", "CATCHER"], "get": ["--out", tmp_path / "got"]}[command]
    run = fastdimse(command, PEER, *extra, "-k", "StudyInstanceUID=1.2.3", "-k", key)
    assert_one_error_line(run, 2, needle)


@pytest.mark.parametrize("peer, needle", [
    ("STORESCP@127.0.0.1", "STORESCP@127.0.0.1"),
    ("STORESCP@127.0.0.1:port", "port"),
    ("STORESCP@127.0.0.1:70000", "70000"),
    ("STORESCP127.0.0.1:104", "STORESCP127.0.0.1:104"),
    ("@:", "@:"),
    ("A@B@127.0.0.1:104", "A@B@127.0.0.1:104"),
])
@pytest.mark.parametrize("command", ["echo", "find"])
def test_malformed_peer(command, peer, needle):
    assert_one_error_line(fastdimse(command, peer), 2, needle)


def test_dcmtk_style_peer_without_port():
    assert_one_error_line(fastdimse("echo", "-aec", "STORESCP", "127.0.0.1"), 2, "127.0.0.1")


@pytest.mark.parametrize("args", [
    ["echo", f"{LONG_AE}@127.0.0.1:104"],
    ["echo", "-aet", LONG_AE, PEER],
    ["echo", "-aec", LONG_AE, "127.0.0.1", "104"],
    ["find", PEER, "--aet", LONG_AE],
    ["move", PEER, "--dest", LONG_AE, "-k", "StudyInstanceUID=1.2.3"],
], ids=["peer", "-aet", "-aec", "--aet", "--dest"])
def test_ae_title_longer_than_16(args):
    assert_one_error_line(fastdimse(*args), 2, LONG_AE, "16")


def test_store_folder_without_dicom_files(tmp_path):
    folder = tmp_path / "notes"
    (folder / "deeper").mkdir(parents=True)
    (folder / "readme.txt").write_text("not DICOM")
    (folder / "deeper" / "fake.dcm").write_bytes(b"\0" * 200)
    assert_one_error_line(fastdimse("store", PEER, folder), 2, str(folder), "no DICOM file")


def test_store_folders_without_dicom_files(tmp_path):
    """Several folders, none with a DICOM file: still one line, naming them all."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "x.txt").write_text("x")
    assert_one_error_line(fastdimse("store", PEER, a, b), 2, f"{a}, {b}", "no DICOM file")


def test_store_missing_path(tmp_path):
    missing = tmp_path / "no" / "such.dcm"
    assert_one_error_line(fastdimse("store", PEER, missing), 2, str(missing))


def test_store_without_paths():
    assert_one_error_line(fastdimse("store", PEER), 2)


@pytest.mark.parametrize("args, needle", [
    (["find", PEER, "--level", "FOO"], "FOO"),
    (["find", PEER, "-k", "QueryRetrieveLevel=WARD"], "WARD"),
    (["find", PEER, "--level", "PATIENT"], "-P"),
    (["move", PEER, "--dest", "CATCHER"], "-k"),
    (["move", PEER, "--dest", "CATCHER", "-k", "StudyInstanceUID"], "-k"),
    (["move", PEER, "-k", "StudyInstanceUID=1.2.3"], "--dest"),
    (["get", PEER, "-k", "StudyInstanceUID=1.2.3"], "--out"),
    (["echo", PEER, "extra"], "extra"),
    (["echo", PEER, "--repeat", "0"], "--repeat"),
])
def test_other_usage_errors(args, needle):
    assert_one_error_line(fastdimse(*args), 2, needle)


def test_get_out_is_a_file(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert_one_error_line(fastdimse("get", PEER, "--out", f, "-k", "StudyInstanceUID=1.2.3"), 2, str(f))


@pytest.mark.parametrize("command", ["echo", "store", "find", "move", "get"])
def test_help_shows_an_example(command):
    run = fastdimse(command, "--help")
    assert run.returncode == 0, run
    text = run.stdout
    assert "Example:" in text, run
    examples = text.split("Example:", 1)[1].split("Options:", 1)[0].strip().splitlines()
    assert examples and all(line.strip().startswith(f"fastdimse {command} ") for line in examples), run
