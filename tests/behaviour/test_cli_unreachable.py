"""The client commands against a peer that is not there (a closed port on 127.0.0.1):
no association, so exit 3 and one line on stderr naming the peer, no traceback."""

from __future__ import annotations

import pytest

from tests.support import storedata as sd
from tests.support.cli import assert_one_error_line, fastdimse
from tests.support.peers import HOST, free_port, port_answers

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def closed_peer() -> str:
    port = free_port()
    assert not port_answers(HOST, port)
    return f"NOBODY@{HOST}:{port}"


@pytest.mark.parametrize("command", ["echo", "store", "find", "move", "get"])
def test_unreachable_peer_exit_3(command, closed_peer, tmp_path):
    extra = {
        "echo": [],
        "store": [sd.write_instance(sd.make_image(), tmp_path / "src" / "ct.dcm")],
        "find": ["-k", "PatientID=PAT001"],
        "move": ["--dest", "CATCHER", "-k", "StudyInstanceUID=1.2.3"],
        "get": ["--out", tmp_path / "got", "-k", "StudyInstanceUID=1.2.3"],
    }[command]
    run = fastdimse(command, closed_peer, *extra, "--timeout", "5")
    assert_one_error_line(run, 3, closed_peer, "no association")


@pytest.mark.parametrize("command, output", [("echo", "--json"), ("find", "--json"), ("find", "--format=csv")])
def test_unreachable_peer_prints_nothing_on_stdout(command, output, closed_peer):
    """--json, CSV: the failure is still one line on stderr, and stdout stays empty
    (no JSON, no CSV header). The peer dcmtk style this time."""
    run = fastdimse(command, output, "-aec", "NOBODY", *closed_peer.split("@", 1)[1].split(":"))
    assert_one_error_line(run, 3, closed_peer)
