"""C-ECHO both ways between fastdimse and real peers (dcmtk, pynetdicom), and rejections.

Each test checks the other side too: a peer's log must show the echo request our
SCU sent, and a real client's output must show the success our SCP answered.
"""

from __future__ import annotations

import logging
import re
import time

import pytest

from fastdimse import DICOMSCU, Entity
from fastdimse.errors import AssociationRejected, DicomError, DicomTimeoutError, NetworkError

from tests.support import peers
from tests.support.peers import (
    DCMTK_CALLED_AE_NOT_RECOGNIZED,
    DCMTK_CALLING_AE_NOT_RECOGNIZED,
    DCMTK_ECHO_SUCCESS,
    DCMTK_REJECT_PERMANENT_USER,
    DCMTK_REJECTED,
    HOST,
    PEER_ECHO_RECEIVED,
    PYNETDICOM_ECHO_SUCCESS,
    make_scu,
    peer_entity,
    run_dcmtk_echoscu,
    run_pynetdicom_echoscu,
)

pytestmark = pytest.mark.timeout(60)

VERIFICATION = "1.2.840.10008.1.1"


REAL_SCP_FIXTURES = {"dcmtk-storescp": "dcmtk_storescp",
                     "pynetdicom-echoscp": "pynetdicom_echo_scp"}


@pytest.fixture(params=list(REAL_SCP_FIXTURES))
def real_scp(request):
    """Each real Verification SCP in turn."""
    return request.getfixturevalue(REAL_SCP_FIXTURES[request.param])


# --- our SCU -> real SCPs ---------------------------------------------------------------

def test_our_scu_echoes_real_scp(scu, real_scp):
    resp = scu.echo(peer_entity(real_scp))
    assert resp.status == 0x0000
    # The peer really got our request, and answered the message ID we sent.
    ids = real_scp.wait_for_log(PEER_ECHO_RECEIVED, count=1)
    assert resp.message_id_being_responded_to == int(ids[0])


def test_our_scu_several_echoes_on_one_association(scu, real_scp):
    with scu.associate(peer_entity(real_scp)) as assoc:
        assert assoc.is_established
        responses = [assoc.echo() for _ in range(5)]
        assert [r.status for r in responses] == [0x0000] * 5
        # Each echo is its own DIMSE message with its own message ID.
        ids = [r.message_id_being_responded_to for r in responses]
        assert len(set(ids)) == 5, ids
    assert not assoc.is_established
    # One association on the peer's side carried all five.
    logged = real_scp.wait_for_log(PEER_ECHO_RECEIVED, count=5)
    assert [int(i) for i in logged] == ids
    real_scp.wait_for_log(real_scp.accepted_pattern, count=1)
    assert len(re.findall(real_scp.accepted_pattern, real_scp.log())) == 1


def test_our_scu_negotiates_verification_with_real_scp(scu, real_scp):
    with scu.associate(peer_entity(real_scp)) as assoc:
        contexts = list(assoc.accepted_contexts)
        assert [c.abstract_syntax for c in contexts] == [VERIFICATION]
        ctx = contexts[0]
        assert ctx.id % 2 == 1, "presentation context IDs are odd (PS3.8 9.3.2.2)"
        assert ctx.transfer_syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                                       "1.2.840.10008.1.2.2")
        # What the peer announced in its A-ASSOCIATE-AC (each fixture sets its own).
        assert assoc.peer_max_pdu == real_scp.max_pdu


def test_our_scu_one_shot_echoes_are_independent_associations(scu, dcmtk_storescp):
    remote = peer_entity(dcmtk_storescp)
    for _ in range(3):
        assert scu.echo(remote).status == 0x0000
    dcmtk_storescp.wait_for_log(dcmtk_storescp.accepted_pattern, count=3)


# --- real SCUs -> our SCP -------------------------------------------------------------

def test_dcmtk_echoscu_echoes_our_scp(fastdimse_scp):
    rc, out = run_dcmtk_echoscu(fastdimse_scp.port, called_ae=fastdimse_scp.ae_title)
    assert rc == 0, out
    assert DCMTK_ECHO_SUCCESS in out, out
    assert "Releasing Association" in out


def test_dcmtk_echoscu_several_echoes_on_one_association(fastdimse_scp):
    rc, out = run_dcmtk_echoscu(fastdimse_scp.port, called_ae=fastdimse_scp.ae_title,
                                repeat=5)
    assert rc == 0, out
    assert out.count(DCMTK_ECHO_SUCCESS) == 5, out
    assert out.count("Requesting Association") == 1


def test_dcmtk_echoscu_abort_instead_of_release(fastdimse_scp, scu):
    rc, out = run_dcmtk_echoscu(fastdimse_scp.port, called_ae=fastdimse_scp.ae_title,
                                extra=["--abort"])
    assert rc == 0, out
    assert DCMTK_ECHO_SUCCESS in out, out
    # An aborted association does not hurt the SCP.
    assert scu.echo(fastdimse_scp.remote()).status == 0x0000


@pytest.mark.parametrize("pdu", ["4096", "131072"])
def test_dcmtk_echoscu_max_pdu_options(fastdimse_scp, pdu):
    rc, out = run_dcmtk_echoscu(fastdimse_scp.port, called_ae=fastdimse_scp.ae_title,
                                extra=["-pdu", pdu])
    assert rc == 0, out
    assert DCMTK_ECHO_SUCCESS in out, out


def test_pynetdicom_echoscu_echoes_our_scp(fastdimse_scp):
    rc, out = run_pynetdicom_echoscu(fastdimse_scp.port, called_ae=fastdimse_scp.ae_title)
    assert rc == 0, out
    assert PYNETDICOM_ECHO_SUCCESS in out, out


def test_pynetdicom_echoscu_several_echoes_on_one_association(fastdimse_scp):
    rc, out = run_pynetdicom_echoscu(fastdimse_scp.port, called_ae=fastdimse_scp.ae_title,
                                     repeat=4)
    assert rc == 0, out
    assert out.count(PYNETDICOM_ECHO_SUCCESS) == 4, out
    assert out.count("Association Accepted") == 1, out


@pytest.mark.parametrize("ts_option", ["-xi", "-xe", "-xb"],
                         ids=["implicit-le", "explicit-le", "explicit-be"])
def test_pynetdicom_echoscu_each_default_transfer_syntax(fastdimse_scp, ts_option):
    """Our SCP accepts implicit LE, explicit LE and explicit BE by default."""
    rc, out = run_pynetdicom_echoscu(fastdimse_scp.port, called_ae=fastdimse_scp.ae_title,
                                     extra=[ts_option])
    assert rc == 0, out
    assert PYNETDICOM_ECHO_SUCCESS in out, out


def test_pynetdicom_echoscu_unlimited_max_pdu(fastdimse_scp):
    rc, out = run_pynetdicom_echoscu(fastdimse_scp.port, called_ae=fastdimse_scp.ae_title,
                                     extra=["-pdu", "0"])
    assert rc == 0, out
    assert PYNETDICOM_ECHO_SUCCESS in out, out


def test_dcmtk_and_pynetdicom_echo_our_scp_at_the_same_time(fastdimse_scp):
    """Two real clients, each holding its association for several echoes, concurrently."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(run_dcmtk_echoscu, fastdimse_scp.port,
                        called_ae=fastdimse_scp.ae_title, repeat=20)
        b = pool.submit(run_pynetdicom_echoscu, fastdimse_scp.port,
                        called_ae=fastdimse_scp.ae_title, repeat=20)
        (rc_a, out_a), (rc_b, out_b) = a.result(), b.result()
    assert rc_a == 0 and out_a.count(DCMTK_ECHO_SUCCESS) == 20, out_a
    assert rc_b == 0 and out_b.count(PYNETDICOM_ECHO_SUCCESS) == 20, out_b


# --- our SCU -> our SCP ------------------------------------------------------------------

def test_our_scu_echoes_our_scp(scu, fastdimse_scp):
    resp = scu.echo(fastdimse_scp.remote())
    assert resp.status == 0x0000
    assert isinstance(resp.message_id_being_responded_to, int)


def test_our_scu_several_echoes_on_one_association_with_our_scp(scu, fastdimse_scp):
    with scu.associate(fastdimse_scp.remote()) as assoc:
        statuses = [assoc.echo().status for _ in range(10)]
    assert statuses == [0x0000] * 10


# --- rejections seen from dcmtk's (and pynetdicom's) side ----------------------------

def test_dcmtk_sees_called_ae_not_recognized(fastdimse_scp_factory):
    srv = fastdimse_scp_factory(ae_title="FDSCP", require_called_ae=True)
    rc, out = run_dcmtk_echoscu(srv.port, called_ae="SOMEONE-ELSE")
    assert rc != 0, out
    assert DCMTK_REJECTED in out, out
    assert DCMTK_REJECT_PERMANENT_USER in out, out
    assert DCMTK_CALLED_AE_NOT_RECOGNIZED in out, out
    assert DCMTK_ECHO_SUCCESS not in out
    # The right called AE title is accepted by the same SCP.
    rc, out = run_dcmtk_echoscu(srv.port, called_ae="FDSCP")
    assert rc == 0, out


def test_dcmtk_sees_calling_ae_not_recognized(fastdimse_scp_factory):
    srv = fastdimse_scp_factory(ae_title="FDSCP", allowed_calling_aes=["FRIEND", "ALLY"])
    rc, out = run_dcmtk_echoscu(srv.port, calling_ae="STRANGER", called_ae="FDSCP")
    assert rc != 0, out
    assert DCMTK_REJECT_PERMANENT_USER in out, out
    assert DCMTK_CALLING_AE_NOT_RECOGNIZED in out, out
    for friend in ("FRIEND", "ALLY"):
        rc, out = run_dcmtk_echoscu(srv.port, calling_ae=friend, called_ae="FDSCP")
        assert rc == 0, out
        assert DCMTK_ECHO_SUCCESS in out


def test_pynetdicom_sees_called_ae_not_recognised(fastdimse_scp_factory):
    srv = fastdimse_scp_factory(ae_title="FDSCP", require_called_ae=True)
    rc, out = run_pynetdicom_echoscu(srv.port, called_ae="SOMEONE-ELSE")
    assert rc != 0, out
    assert "Result: Rejected Permanent, Source: Service User" in out, out
    assert "Reason: Called AE title not recognised" in out, out


def test_pynetdicom_sees_calling_ae_not_recognised(fastdimse_scp_factory):
    srv = fastdimse_scp_factory(ae_title="FDSCP", allowed_calling_aes=["FRIEND"])
    rc, out = run_pynetdicom_echoscu(srv.port, calling_ae="STRANGER", called_ae="FDSCP")
    assert rc != 0, out
    assert "Reason: Calling AE title not recognised" in out, out


def test_scp_logs_why_it_rejected(fastdimse_scp_factory, fastdimse_log):
    srv = fastdimse_scp_factory(ae_title="FDSCP", require_called_ae=True)
    rc, out = run_dcmtk_echoscu(srv.port, called_ae="SOMEONE-ELSE")
    assert rc != 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        # INFO and above: a DEBUG dump of the A-ASSOCIATE-RQ would name the AE titles
        # without saying that it was rejected.
        text = " ".join(r.getMessage() for r in fastdimse_log.records
                        if r.name.startswith("fastdimse") and r.levelno >= logging.INFO)
        if "SOMEONE-ELSE" in text or "called" in text.lower():
            break
        time.sleep(0.05)
    assert "SOMEONE-ELSE" in text or "called" in text.lower(), (
        f"the SCP's log should say it rejected the called AE title: {text!r}")


# --- rejections seen by our SCU ---------------------------------------------------------

def test_our_scu_rejected_called_ae(scu, pynetdicom_scp_factory):
    peer = pynetdicom_scp_factory(ae_title="PICKY", require_called_ae=True)
    with pytest.raises(AssociationRejected) as info:
        scu.echo(Entity("NOT-PICKY", HOST, peer.port))
    exc = info.value
    assert (exc.result, exc.source, exc.reason) == (1, 1, 7)
    assert isinstance(exc, DicomError)
    assert "called" in str(exc).lower(), f"message should say why in words: {exc}"
    # The same peer accepts its own AE title: the rejection was about the title.
    assert scu.echo(Entity("PICKY", HOST, peer.port)).status == 0x0000


def test_our_scu_rejected_calling_ae(pynetdicom_scp_factory):
    peer = pynetdicom_scp_factory(ae_title="PICKY", allowed_calling_aes=["FRIEND"])
    with pytest.raises(AssociationRejected) as info:
        make_scu("STRANGER").echo(Entity("PICKY", HOST, peer.port))
    exc = info.value
    assert (exc.result, exc.source, exc.reason) == (1, 1, 3)
    assert "calling" in str(exc).lower(), f"message should say why in words: {exc}"
    assert make_scu("FRIEND").echo(Entity("PICKY", HOST, peer.port)).status == 0x0000


def test_our_scu_rejected_when_opening_an_association(scu, pynetdicom_scp_factory):
    peer = pynetdicom_scp_factory(ae_title="PICKY", require_called_ae=True)
    with pytest.raises(AssociationRejected) as info:
        with scu.associate(Entity("NOT-PICKY", HOST, peer.port)):
            pytest.fail("the block must not run when the association is rejected")
    assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 7)


def test_our_scu_rejected_by_our_scp(scu, fastdimse_scp_factory):
    srv = fastdimse_scp_factory(ae_title="FDSCP", require_called_ae=True)
    with pytest.raises(AssociationRejected) as info:
        scu.echo(srv.remote("WRONG"))
    assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 7)


def test_our_scu_rejected_calling_ae_by_our_scp(fastdimse_scp_factory):
    srv = fastdimse_scp_factory(ae_title="FDSCP", allowed_calling_aes=["FRIEND"])
    with pytest.raises(AssociationRejected) as info:
        make_scu("STRANGER").echo(srv.remote())
    assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 3)
    assert make_scu("FRIEND").echo(srv.remote()).status == 0x0000


# --- connection failures ----------------------------------------------------------------

def test_connection_refused_is_network_error(scu):
    port = peers.free_port()  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(NetworkError) as info:
        scu.echo(Entity("NOBODY", HOST, port))
    assert not isinstance(info.value, DicomTimeoutError), "refused is not a timeout"
    assert not isinstance(info.value, AssociationRejected)
    assert time.monotonic() - t0 < 5, "a refused connection fails at once"
    assert str(port) in str(info.value) or "refused" in str(info.value).lower()


def test_connection_refused_when_opening_an_association(scu):
    port = peers.free_port()
    with pytest.raises(NetworkError):
        with scu.associate(Entity("NOBODY", HOST, port)):
            pytest.fail("the block must not run without a connection")


def test_scu_is_reusable_after_a_failure(scu, dcmtk_storescp):
    with pytest.raises(NetworkError):
        scu.echo(Entity("NOBODY", HOST, peers.free_port()))
    assert scu.echo(peer_entity(dcmtk_storescp)).status == 0x0000


def test_scu_calls_with_its_entitys_ae_title(pynetdicom_scp_factory):
    """DICOMSCU(Entity) with default options; the peer sees the calling AE title we set."""
    peer = pynetdicom_scp_factory(ae_title="PICKY", allowed_calling_aes=["FDCALLER"])
    scu = DICOMSCU(Entity("FDCALLER", HOST, 0))
    assert scu.echo(Entity("PICKY", HOST, peer.port)).status == 0x0000
