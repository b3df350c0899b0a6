"""The test fixtures themselves work: real peers talk to each other through them.

These tests do not use fastdimse. They prove that the dcmtk and pynetdicom
fixtures start, answer, reject as configured and stop (by pid); that the client
helpers report success and failure; and that the hand-built PDUs in rawpdu.py are
right, by doing a whole association by hand against dcmtk and pynetdicom. If one
of these fails, the interop tests of fastdimse cannot be trusted.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support import peers
from tests.support import rawpdu
from tests.support.peers import (
    DCMTK_CALLED_AE_NOT_RECOGNIZED,
    DCMTK_CALLING_AE_NOT_RECOGNIZED,
    DCMTK_ECHO_SUCCESS,
    DCMTK_REJECT_PERMANENT_USER,
    DCMTK_REJECTED,
    HOST,
    PYNETDICOM_ECHO_SUCCESS,
    run_dcmtk_echoscu,
    run_pynetdicom_echoscu,
)

pytestmark = pytest.mark.timeout(60)


# --- helpers ---------------------------------------------------------------------------

def test_free_port_is_bindable():
    import socket

    port = peers.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind((HOST, port))


def test_wait_for_port_times_out_on_a_closed_port():
    port = peers.free_port()
    t0 = time.monotonic()
    with pytest.raises(peers.PeerError, match="did not answer"):
        peers.wait_for_port(HOST, port, timeout=0.5)
    assert time.monotonic() - t0 < 5


def test_start_process_fails_fast_when_the_program_exits(tmp_path):
    port = peers.free_port()
    t0 = time.monotonic()
    with pytest.raises(peers.PeerError, match="exited with 3"):
        peers.start_process([sys.executable, "-c", "print('bye'); raise SystemExit(3)"],
                            port=port, log_dir=tmp_path, name="quitter", timeout=15)
    assert time.monotonic() - t0 < 10, "should not wait the whole timeout for a dead process"
    assert "bye" in (tmp_path / "quitter.log").read_text()


def test_start_process_stops_a_process_that_never_listens(tmp_path):
    port = peers.free_port()
    script = "import time; print('pid-start', flush=True); time.sleep(60)"
    with pytest.raises(peers.PeerError, match="did not answer"):
        peers.start_process([sys.executable, "-c", script], port=port, log_dir=tmp_path,
                            name="silent", timeout=1.0)
    # The helper stopped it before raising: nothing of ours is left running.
    out = subprocess.run(["pgrep", "-f", "pid-start"], capture_output=True, text=True)
    assert out.stdout.strip() == "", f"process left running: {out.stdout}"


@pytest.mark.parametrize("start", [peers.start_dcmtk_storescp, peers.start_pynetdicom_echoscp],
                         ids=["dcmtk-storescp", "pynetdicom-echoscp"])
def test_peer_stop_ends_the_process_and_frees_the_port(peer_log_dir, start):
    peer = start(peer_log_dir)
    try:
        assert peer.is_running()
        assert peers.port_answers(HOST, peer.port)
    finally:
        peer.stop()
    assert peer.proc.returncode is not None
    assert peers.wait_for_port_closed(HOST, peer.port, timeout=5)


# --- real peers talk to each other through the fixtures --------------------------------

def test_dcmtk_echoscu_to_pynetdicom_echoscp(pynetdicom_echo_scp):
    rc, out = run_dcmtk_echoscu(pynetdicom_echo_scp.port, called_ae="ECHOSCP")
    assert rc == 0, out
    assert DCMTK_ECHO_SUCCESS in out, out


def test_pynetdicom_echoscu_to_dcmtk_storescp(dcmtk_storescp):
    rc, out = run_pynetdicom_echoscu(dcmtk_storescp.port, called_ae="STORESCP")
    assert rc == 0, out
    assert PYNETDICOM_ECHO_SUCCESS in out, out


def test_dcmtk_echoscu_to_dcmtk_storescp_repeated(dcmtk_storescp):
    rc, out = run_dcmtk_echoscu(dcmtk_storescp.port, called_ae="STORESCP", repeat=3)
    assert rc == 0, out
    assert out.count(DCMTK_ECHO_SUCCESS) == 3, out
    assert "Association Received" in dcmtk_storescp.log()


def test_pynetdicom_echoscu_to_pynetdicom_echoscp(pynetdicom_echo_scp):
    rc, out = run_pynetdicom_echoscu(pynetdicom_echo_scp.port, called_ae="ECHOSCP", repeat=2)
    assert rc == 0, out
    assert out.count(PYNETDICOM_ECHO_SUCCESS) == 2, out


def test_echoscu_helpers_report_connection_refused():
    port = peers.free_port()
    rc, out = run_dcmtk_echoscu(port)
    assert rc != 0
    assert DCMTK_ECHO_SUCCESS not in out
    rc, out = run_pynetdicom_echoscu(port)
    assert rc != 0
    assert PYNETDICOM_ECHO_SUCCESS not in out


# --- the rejecting pynetdicom peer, and the exact texts dcmtk prints ------------------

def test_rejecting_peer_called_ae_seen_by_dcmtk(pynetdicom_scp_factory):
    peer = pynetdicom_scp_factory(ae_title="PICKY", require_called_ae=True)
    rc, out = run_dcmtk_echoscu(peer.port, called_ae="NOT-PICKY")
    assert rc != 0, out
    assert DCMTK_REJECTED in out, out
    assert DCMTK_REJECT_PERMANENT_USER in out, out
    assert DCMTK_CALLED_AE_NOT_RECOGNIZED in out, out
    # ...and the same peer accepts the right called AE title.
    rc, out = run_dcmtk_echoscu(peer.port, called_ae="PICKY")
    assert rc == 0, out
    assert DCMTK_ECHO_SUCCESS in out


def test_rejecting_peer_calling_ae_seen_by_dcmtk(pynetdicom_scp_factory):
    peer = pynetdicom_scp_factory(ae_title="PICKY", allowed_calling_aes=["FRIEND"])
    rc, out = run_dcmtk_echoscu(peer.port, calling_ae="STRANGER", called_ae="PICKY")
    assert rc != 0, out
    assert DCMTK_REJECT_PERMANENT_USER in out, out
    assert DCMTK_CALLING_AE_NOT_RECOGNIZED in out, out
    rc, out = run_dcmtk_echoscu(peer.port, calling_ae="FRIEND", called_ae="PICKY")
    assert rc == 0, out


def test_rejecting_peer_is_seen_by_pynetdicom_echoscu(pynetdicom_scp_factory):
    peer = pynetdicom_scp_factory(ae_title="PICKY", require_called_ae=True)
    rc, out = run_pynetdicom_echoscu(peer.port, called_ae="NOT-PICKY")
    assert rc != 0, out
    assert "Association Rejected" in out
    assert PYNETDICOM_ECHO_SUCCESS not in out


# --- the hand-built PDUs of rawpdu.py against real peers ------------------------------

@pytest.fixture(params=["dcmtk-storescp", "pynetdicom-echoscp"])
def any_real_scp(request, peer_log_dir):
    start = {"dcmtk-storescp": peers.start_dcmtk_storescp,
             "pynetdicom-echoscp": peers.start_pynetdicom_echoscp}[request.param]
    peer = start(peer_log_dir)
    try:
        yield peer
    finally:
        peer.stop()


def test_raw_association_echo_release(any_real_scp):
    with rawpdu.connect(any_real_scp.port) as sock:
        ac = rawpdu.associate(sock, any_real_scp.ae_title, max_pdu=16384)
        assert ac.calling_ae == "RAWSCU"
        assert ac.contexts[1] == (0, rawpdu.IMPLICIT_VR_LE)
        assert ac.max_pdu == any_real_scp.max_pdu
        assert rawpdu.echo(sock, message_id=7) == 0x0000
        assert rawpdu.echo(sock, message_id=8) == 0x0000
        rawpdu.release(sock)
        # After A-RELEASE-RP the requestor closes the connection (PS3.8 9.2, AR-3);
        # the acceptor waits for that (dcmtk does), so there is nothing more to read.


def test_raw_rejection_is_parsed(pynetdicom_scp_factory):
    peer = pynetdicom_scp_factory(ae_title="PICKY", require_called_ae=True)
    with rawpdu.connect(peer.port) as sock:
        sock.sendall(rawpdu.associate_rq("NOT-PICKY"))
        got = rawpdu.read_pdu(sock)
        assert got.type == rawpdu.A_ASSOCIATE_RJ
        assert rawpdu.parse_reject(got.body) == (1, 1, 7)


def test_raw_pdv_longer_than_pdu_is_aborted_by_real_peers(any_real_scp):
    """What real peers do with the misbehaviour test_hostile.py sends our SCP."""
    with rawpdu.connect(any_real_scp.port) as sock:
        rawpdu.associate(sock, any_real_scp.ae_title)
        cmd = rawpdu.c_echo_rq_command()
        sock.sendall(rawpdu.p_data(rawpdu.pdv_item(1, 0x03, cmd, length=len(cmd) + 1000)))
        assert rawpdu.read_abort_or_close(sock, timeout=15) in ("abort", "closed")


def test_real_peers_reject_an_unsupported_protocol_version(any_real_scp):
    """dcmtk and pynetdicom both answer A-ASSOCIATE-RJ (1, 2, 2) to protocol version 0x0002;
    test_hostile.py expects the same of our SCP."""
    with rawpdu.connect(any_real_scp.port) as sock:
        sock.sendall(rawpdu.associate_rq(any_real_scp.ae_title, protocol_version=0x0002))
        got = rawpdu.read_pdu(sock)
        assert got.type == rawpdu.A_ASSOCIATE_RJ, got.name
        assert rawpdu.parse_reject(got.body) == (1, 2, 2)


# --- rawpdu.HandSCP, the hand-played SCP test_association.py watches our SCU with -----

@pytest.fixture
def hand_scp():
    scp = rawpdu.HandSCP(mode="accept", max_pdu=12346)
    try:
        yield scp
    finally:
        scp.close()


def test_hand_scp_serves_dcmtk_echoscu(hand_scp):
    rc, out = run_dcmtk_echoscu(hand_scp.port, calling_ae="DCMTKSCU", called_ae="HANDSCP",
                                repeat=2, extra=["-pdu", "8192"])
    assert rc == 0, out
    assert out.count(DCMTK_ECHO_SUCCESS) == 2, out
    # dcmtk read our A-ASSOCIATE-AC's maximum length (12346 less 12 bytes of PDU/PDV header;
    # an odd value would be rounded down by dcmtk).
    assert "Max Send PDV: 12334" in out, out
    assert hand_scp.wait_for(rawpdu.A_RELEASE_RQ)
    assert hand_scp.error is None
    assert hand_scp.types()[:4] == [rawpdu.A_ASSOCIATE_RQ, rawpdu.P_DATA_TF,
                                    rawpdu.P_DATA_TF, rawpdu.A_RELEASE_RQ]
    rq = hand_scp.rq
    assert (rq.called_ae, rq.calling_ae, rq.max_pdu, rq.protocol_version) == (
        "HANDSCP", "DCMTKSCU", 8192, 1)
    assert [a for a, _ in rq.contexts.values()] == [rawpdu.VERIFICATION]


def test_hand_scp_serves_pynetdicom_echoscu(hand_scp):
    rc, out = run_pynetdicom_echoscu(hand_scp.port, extra=["-pdu", "0", "--abort"])
    assert rc == 0, out
    assert PYNETDICOM_ECHO_SUCCESS in out, out
    assert hand_scp.wait_for(rawpdu.A_ABORT)
    assert hand_scp.rq.max_pdu == 0
