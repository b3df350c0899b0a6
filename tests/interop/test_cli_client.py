"""``fastdimse echo`` and ``fastdimse store`` as a user runs them (the installed console
script, in a subprocess) against real peers: dcmtk storescp, pynetdicom's echoscp and
storescp apps, and peers that refuse some instances.

Each test checks the peer's side too (its log shows our echoes; the files it wrote are
exactly the instances sent, byte for byte), and the command's own report (exit code,
the --json fields, the failures listed on stderr) against that.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import peers
from tests.support import storedata as sd
from tests.support.cli import fastdimse, fastdimse_on_terminal
from tests.support.peers import HOST, PEER_ECHO_RECEIVED, PYTHON, free_port, start_process

pytestmark = pytest.mark.timeout(90)

REAL_ECHO_PEERS = {"dcmtk-storescp": "dcmtk_storescp", "pynetdicom-echoscp": "pynetdicom_echo_scp"}


@pytest.fixture(params=list(REAL_ECHO_PEERS))
def echo_peer(request) -> peers.Peer:
    return request.getfixturevalue(REAL_ECHO_PEERS[request.param])


# --- echo -----------------------------------------------------------------------------------

def test_echo_repeat_on_one_association(echo_peer):
    run = fastdimse("echo", f"{echo_peer.ae_title}@{HOST}:{echo_peer.port}", "--repeat", "3", "-aet", "CLIECHO")
    assert run.returncode == 0, run
    lines = run.stdout.strip().splitlines()
    per_echo = [ln for ln in lines if ln.startswith("C-ECHO ")]
    assert len(per_echo) == 3, run
    for ln in per_echo:
        assert re.fullmatch(rf"C-ECHO {echo_peer.ae_title}@{HOST}:{echo_peer.port}: status 0x0000 \(Success\) "
                            r"\d+\.\d\d ms", ln), ln
    assert lines[-1].startswith("3 C-ECHO(s): 3 succeeded, 0 failed"), run
    # The peer saw three requests, on one association.
    ids = echo_peer.wait_for_log(PEER_ECHO_RECEIVED, count=3)
    assert len(ids) == 3 and len(set(ids)) == 3, echo_peer.log()
    assert len(re.findall(echo_peer.accepted_pattern, echo_peer.log())) == 1, echo_peer.log()


def test_echo_json_dcmtk_style_peer(echo_peer):
    run = fastdimse("echo", "--json", "-aec", echo_peer.ae_title, HOST, echo_peer.port, "--repeat", "2")
    assert run.returncode == 0, run
    doc = run.json()
    assert doc["peer"] == f"{echo_peer.ae_title}@{HOST}:{echo_peer.port}"
    assert (doc["repeat"], doc["succeeded"], doc["failed"]) == (2, 2, 0)
    assert doc["statuses"] == {"0x0000": 2}
    lat = doc["latency_ms"]
    assert set(lat) == {"min", "p50", "max"} and 0 <= lat["min"] <= lat["p50"] <= lat["max"]
    echo_peer.wait_for_log(PEER_ECHO_RECEIVED, count=2)


def test_echo_rejected_association_exit_3(pynetdicom_scp_factory):
    """A peer that rejects our calling AE title: no association, exit 3, one line."""
    peer = pynetdicom_scp_factory(ae_title="PICKY", allowed_calling_aes=["FRIEND"])
    run = fastdimse("echo", f"PICKY@{HOST}:{peer.port}", "-aet", "STRANGER")
    assert run.returncode == 3, run
    assert run.stdout == "" and len(run.stderr.strip().splitlines()) == 1, run
    assert "rejected" in run.stderr, run
    ok = fastdimse("echo", f"PICKY@{HOST}:{peer.port}", "-aet", "FRIEND")
    assert ok.returncode == 0, ok


# --- store ----------------------------------------------------------------------------------

@pytest.fixture
def sources(tmp_path: Path) -> list[sd.Source]:
    """15 instances (CT, MR, SC 8-bit, SC RGB, RT Plan x 3 uncompressed syntaxes) in nested folders."""
    return sd.generate_mixed(tmp_path / "src")


def _check_summary(doc: dict, peer: str, sources, *, failed: int = 0) -> None:
    assert doc["peer"] == peer
    assert doc["total"] == len(sources)
    assert doc["completed"] + doc["warning"] + doc["failed"] == doc["total"]
    assert doc["failed"] == failed
    assert doc["bytes"] > 0 and doc["seconds"] >= 0 and doc["associations"] >= 1
    assert len(doc["failures"]) == failed


def test_store_folder_to_dcmtk_storescp(tmp_path, sources):
    out = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(tmp_path / "logs", out, ae_title="STORESCP")
    try:
        run = fastdimse("store", f"STORESCP@{HOST}:{peer.port}", tmp_path / "src", "--json", "-aet", "CLISTORE")
        assert run.returncode == 0, run
        _check_summary(run.json(), f"STORESCP@{HOST}:{peer.port}", sources)
        assert run.json()["completed"] + run.json()["warning"] == len(sources)
        sd.assert_received(sources, out, source_ae="CLISTORE")
    finally:
        peer.stop()


def test_store_folder_to_pynetdicom_storescp_dcmtk_style(tmp_path, sources):
    """Human output this time: the summary line, nothing on stderr; two associations at once."""
    out = tmp_path / "received"
    peer = peers.start_pynetdicom_storescp(tmp_path / "logs", out, ae_title="PYNDSTORE")
    try:
        run = fastdimse("store", "-aec", "PYNDSTORE", HOST, peer.port, tmp_path / "src", "--parallel", "2")
        assert run.returncode == 0, run
        assert re.fullmatch(rf"{len(sources)} instance\(s\): {len(sources)} stored, 0 with a warning, 0 failed; "
                            r"[\d.]+ MB in [\d.]+ s \(\d+/s\)", run.stdout.strip()), run
        assert run.stderr == "", run
        sd.assert_received(sources, out)
    finally:
        peer.stop()


def test_store_progress_on_a_terminal(tmp_path, sources):
    """stderr a terminal: a progress bar that ends at every instance; --no-progress: none."""
    out = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(tmp_path / "logs", out, ae_title="STORESCP")
    n = len(sources)
    try:
        run = fastdimse_on_terminal("store", f"STORESCP@{HOST}:{peer.port}", tmp_path / "src")
        assert run.returncode == 0, run
        assert f"C-STORE to STORESCP@{HOST}:{peer.port}" in run.stderr and f"{n}/{n}" in run.stderr, run
        assert run.stdout.startswith(f"{n} instance(s): {n} stored"), run
        quiet = fastdimse_on_terminal("store", f"STORESCP@{HOST}:{peer.port}", tmp_path / "src", "--no-progress")
        assert quiet.returncode == 0 and "C-STORE to" not in quiet.stderr, quiet
        sd.assert_received(sources, out)
    finally:
        peer.stop()


def test_store_warns_about_a_folder_without_dicom_files_among_others(tmp_path, sources):
    """A folder without DICOM files among the paths: left out with a warning naming it,
    the others sent, exit 0."""
    out = tmp_path / "received"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no DICOM here")
    peer = peers.start_dcmtk_storage_scp(tmp_path / "logs", out, ae_title="STORESCP")
    try:
        run = fastdimse("store", f"STORESCP@{HOST}:{peer.port}", empty, tmp_path / "src", "--json")
        assert run.returncode == 0, run
        _check_summary(run.json(), f"STORESCP@{HOST}:{peer.port}", sources)
        assert run.stderr.splitlines() == [f"fastdimse: warning: {empty}: no DICOM file in or below this folder; left out"], run
        sd.assert_received(sources, out)
    finally:
        peer.stop()


def test_store_no_recursive_sends_only_the_folders_own_files(tmp_path, sources):
    out = tmp_path / "received"
    top = tmp_path / "src" / "copy0"
    own = [s for s in sources if s.path.parent == top]
    assert own and len(own) < len(sources)
    peer = peers.start_dcmtk_storage_scp(tmp_path / "logs", out, ae_title="STORESCP")
    try:
        run = fastdimse("store", f"STORESCP@{HOST}:{peer.port}", top, "--no-recursive", "--json")
        assert run.returncode == 0, run
        _check_summary(run.json(), f"STORESCP@{HOST}:{peer.port}", own)
        sd.assert_received(own, out)
    finally:
        peer.stop()


CT_ONLY_CONFIG = """\
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = 1.2.840.10008.1.2.1
TransferSyntax2 = 1.2.840.10008.1.2
TransferSyntax3 = 1.2.840.10008.1.2.2

[[PresentationContexts]]
[CTOnly]
PresentationContext1 = 1.2.840.10008.5.1.4.1.1.2\\Uncompressed
PresentationContext2 = 1.2.840.10008.1.1\\Uncompressed

[[Profiles]]
[CTOnlyProfile]
PresentationContexts = CTOnly
"""


def _assert_failures_listed(run, failed_paths: set[str]) -> None:
    listed = {ln.split("FAILED ", 1)[1].split(": ", 1)[0] for ln in run.stderr.splitlines()
              if ln.startswith("FAILED ")}
    assert listed == failed_paths, run
    assert "Traceback" not in run.stderr, run


def test_store_to_storescp_accepting_only_ct_exit_1(tmp_path, sources):
    """dcmtk storescp accepting CT Image Storage only: the CT instances arrive, every
    other one fails alone, listed on stderr and in the JSON, and the exit code is 1."""
    cfg = tmp_path / "ct-only.cfg"
    cfg.write_text(CT_ONLY_CONFIG)
    out = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(tmp_path / "logs", out, ae_title="CTONLY",
                                         extra=["-xf", str(cfg), "CTOnlyProfile"])
    ct = [s for s in sources if s.sop_class_uid == sd.CT_IMAGE]
    others = [s for s in sources if s.sop_class_uid != sd.CT_IMAGE]
    try:
        run = fastdimse("store", f"CTONLY@{HOST}:{peer.port}", tmp_path / "src", "--json")
        assert run.returncode == 1, run
        doc = run.json()
        _check_summary(doc, f"CTONLY@{HOST}:{peer.port}", sources, failed=len(others))
        assert {f["sop_instance_uid"] for f in doc["failures"]} == {s.sop_instance_uid for s in others}
        assert all(f["reason"] for f in doc["failures"]), doc["failures"]
        _assert_failures_listed(run, {str(s.path) for s in others})
        sd.assert_received(ct, out)
    finally:
        peer.stop()


def test_store_to_pynetdicom_failing_some_exit_1(tmp_path, sources, peer_log_dir):
    """A pynetdicom SCP answering 0xA700 for the MR instances: exit 1, each MR instance
    listed with its status, the summary line counting them."""
    port = free_port()
    peer = start_process([PYTHON, str(peers.PYNETDICOM_SCP_SCRIPT), "--port", str(port), "--aet", "REJECTMR",
                          "--store-fail-modality", "MR", "--store-fail-status", "0xA700"],
                         port=port, log_dir=peer_log_dir, name="pynetdicom-reject-store", ae_title="REJECTMR")
    mr = [s for s in sources if s.sop_class_uid == sd.MR_IMAGE]
    try:
        run = fastdimse("store", f"REJECTMR@{HOST}:{port}", tmp_path / "src")
        assert run.returncode == 1, run
        assert run.stdout.startswith(f"{len(sources)} instance(s): {len(sources) - len(mr)} stored, "
                                     f"0 with a warning, {len(mr)} failed;"), run
        _assert_failures_listed(run, {str(s.path) for s in mr})
        failed_lines = [ln for ln in run.stderr.splitlines() if ln.startswith("FAILED ")]
        # "FAILED path: 0xA700 reason": the status once, then the core's reason.
        assert all(re.search(r": 0xA700 \S", ln) and ln.count("0xA700") == 1 for ln in failed_lines), run
        answered = re.findall(r"answered (\S+) 0x([0-9A-F]{4})", peer.log())
        assert {u for u, st in answered if st == "A700"} == {s.sop_instance_uid for s in mr}, peer.log()
    finally:
        peer.stop()
