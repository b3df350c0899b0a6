"""Associations between our SCU and our SCP, and our SCU watched by a hand-played SCP.

Concurrency, maximum PDU length negotiated both ways, release and abort, the
context managers, timeouts, stopping the SCP, and the SCP's negotiation options.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from fastdimse import DICOMSCP, Entity
from fastdimse.errors import (
    AssociationRejected,
    DicomError,
    DicomTimeoutError,
    NetworkError,
)

from tests.support import rawpdu
from tests.support.peers import (
    DCMTK_ECHO_SUCCESS,
    HOST,
    free_port,
    make_scu,
    port_answers,
    run_dcmtk_echoscu,
    wait_for_port_closed,
)

pytestmark = pytest.mark.timeout(60)

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def hand_scp_factory():
    """rawpdu.HandSCP instances (a peer played by hand in a thread), closed at teardown."""
    made: list[rawpdu.HandSCP] = []

    def make(**kwargs) -> rawpdu.HandSCP:
        scp = rawpdu.HandSCP(**kwargs)
        made.append(scp)
        return scp

    try:
        yield make
    finally:
        for scp in made:
            scp.close()


def hand_entity(scp: rawpdu.HandSCP) -> Entity:
    return Entity("HANDSCP", HOST, scp.port)


# --- several associations at once ---------------------------------------------------------

@pytest.mark.timeout(90)
def test_eight_concurrent_associations(fastdimse_scp):
    """8 threads each hold an association open at the same moment and echo on it."""
    n = 8
    barrier = threading.Barrier(n, timeout=30)
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            scu = make_scu(f"FDSCU{i}")
            with scu.associate(fastdimse_scp.remote()) as assoc:
                barrier.wait()  # all 8 are established now, simultaneously
                results[i] = [assoc.echo().status for _ in range(10)]
                barrier.wait()  # and still all open while every thread has echoed
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert results == {i: [0x0000] * 10 for i in range(n)}


@pytest.mark.timeout(90)
def test_concurrent_one_shot_echoes(fastdimse_scp):
    """32 one-shot echoes from 8 threads: associations opened and released in parallel."""
    import concurrent.futures

    scu = make_scu()
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: scu.echo(fastdimse_scp.remote()).status, range(32)))
    assert statuses == [0x0000] * 32


# --- maximum PDU length, both ways ---------------------------------------------------------

@pytest.mark.parametrize("scp_max", [0, 4096, 16384, 65536, 1 << 20])
def test_scp_max_pdu_seen_by_our_scu(fastdimse_scp_factory, scu, scp_max):
    srv = fastdimse_scp_factory(max_pdu_length=scp_max)
    with scu.associate(srv.remote()) as assoc:
        assert assoc.peer_max_pdu == scp_max  # 0 = unlimited, reported as sent
        assert assoc.echo().status == 0x0000


@pytest.mark.parametrize("scp_max", [0, 4096, 16384, 1 << 20])
def test_scp_max_pdu_on_the_wire(fastdimse_scp_factory, scp_max):
    """The A-ASSOCIATE-AC carries the configured maximum length (PS3.8 D.1)."""
    srv = fastdimse_scp_factory(max_pdu_length=scp_max)
    with rawpdu.connect(srv.port) as sock:
        ac = rawpdu.associate(sock, srv.ae_title, max_pdu=4096)
        assert ac.max_pdu == scp_max
        assert rawpdu.echo(sock) == 0x0000
        rawpdu.release(sock)


@pytest.mark.parametrize("scu_max", [0, 4096, 16384, 1 << 20])
def test_scu_max_pdu_on_the_wire(hand_scp_factory, scu_max):
    """Our SCU's A-ASSOCIATE-RQ carries its configured maximum length."""
    hand = hand_scp_factory(max_pdu=8192)
    scu = make_scu(max_pdu_length=scu_max)
    with scu.associate(hand_entity(hand)) as assoc:
        assert assoc.peer_max_pdu == 8192
        assert assoc.echo().status == 0x0000
    assert hand.error is None
    assert hand.rq.max_pdu == scu_max


@pytest.mark.parametrize("scu_max, scp_max", [(65536, 4096), (4096, 65536), (0, 4096),
                                              (4096, 0)])
def test_mismatched_max_pdu_echoes(fastdimse_scp_factory, scu_max, scp_max):
    srv = fastdimse_scp_factory(max_pdu_length=scp_max)
    with make_scu(max_pdu_length=scu_max).associate(srv.remote()) as assoc:
        assert assoc.peer_max_pdu == scp_max
        assert [assoc.echo().status for _ in range(3)] == [0, 0, 0]


# --- release, abort and the association context manager -----------------------------

def test_block_exit_releases(hand_scp_factory):
    hand = hand_scp_factory()
    with make_scu().associate(hand_entity(hand)) as assoc:
        assert assoc.is_established
        assert assoc.echo().status == 0x0000
    assert not assoc.is_established
    assert hand.types() == [rawpdu.A_ASSOCIATE_RQ, rawpdu.P_DATA_TF, rawpdu.A_RELEASE_RQ]
    # After A-RELEASE-RP the requestor closes the connection (PS3.8 9.2, AR-3).
    assert hand.closed_by_peer.wait(10)


def test_abort_sends_a_abort(hand_scp_factory):
    hand = hand_scp_factory()
    with make_scu().associate(hand_entity(hand)) as assoc:
        assert assoc.echo().status == 0x0000
        assoc.abort()
        assert not assoc.is_established
        with pytest.raises(DicomError):
            assoc.echo()
    # Leaving the block after an abort neither raises nor sends a release.
    assert hand.wait_for(rawpdu.A_ABORT)
    assert rawpdu.A_RELEASE_RQ not in hand.types()
    abort_pdu = next(p for p in hand.received if p.type == rawpdu.A_ABORT)
    assert rawpdu.parse_abort(abort_pdu.body)[0] == 0, "source 0: service-user initiated"
    assert hand.closed_by_peer.wait(10)


def test_exception_in_block_propagates_and_ends_the_association(hand_scp_factory):
    hand = hand_scp_factory()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with make_scu().associate(hand_entity(hand)) as assoc:
            raise Boom()
    assert not assoc.is_established
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ({rawpdu.A_RELEASE_RQ, rawpdu.A_ABORT}
                                               & set(hand.types())):
        time.sleep(0.02)
    assert {rawpdu.A_RELEASE_RQ, rawpdu.A_ABORT} & set(hand.types()), hand.types()


def test_release_and_abort_with_our_scp(scu, fastdimse_scp):
    with scu.associate(fastdimse_scp.remote()) as assoc:
        assert assoc.echo().status == 0x0000
    assert not assoc.is_established
    with scu.associate(fastdimse_scp.remote()) as assoc:
        assert assoc.echo().status == 0x0000
        assoc.abort()
        assert not assoc.is_established
    # Neither hurt the SCP.
    assert scu.echo(fastdimse_scp.remote()).status == 0x0000


def test_scu_proposes_verification_by_default(hand_scp_factory):
    hand = hand_scp_factory()
    with make_scu().associate(hand_entity(hand)) as assoc:
        contexts = list(assoc.accepted_contexts)
    rq = hand.rq
    assert rq.protocol_version & 0x0001, "protocol version 1 bit set"
    assert (rq.called_ae, rq.calling_ae) == ("HANDSCP", "FDSCU")
    assert {a for a, _ in rq.contexts.values()} == {VERIFICATION}
    assert all(ctx_id % 2 == 1 for ctx_id in rq.contexts), "context IDs are odd"
    assert [c.abstract_syntax for c in contexts] == [VERIFICATION]
    assert contexts[0].id in rq.contexts


def test_scu_explicit_abstract_syntaxes(fastdimse_scp, scu):
    with scu.associate(fastdimse_scp.remote(), abstract_syntaxes=[VERIFICATION]) as assoc:
        assert [c.abstract_syntax for c in assoc.accepted_contexts] == [VERIFICATION]
        assert assoc.echo().status == 0x0000


# --- timeouts ------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_acse_timeout_when_peer_never_answers(hand_scp_factory):
    hand = hand_scp_factory(mode="silent")
    scu = make_scu(acse_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(DicomTimeoutError):
        scu.echo(hand_entity(hand))
    took = time.monotonic() - t0
    assert 0.5 <= took <= 10, f"gave up after {took:.2f} s with acse_timeout=1"
    # Giving up in Sta5 is the user's A-ABORT request (Evt15 -> AA-1): the RQ, then A-ABORT.
    assert hand.wait_for(rawpdu.A_ABORT, timeout=5)
    assert hand.types() == [rawpdu.A_ASSOCIATE_RQ, rawpdu.A_ABORT]


@pytest.mark.timeout(30)
def test_dimse_timeout_when_peer_never_responds(hand_scp_factory):
    hand = hand_scp_factory(mode="no-echo-reply")
    scu = make_scu(dimse_timeout=1.0)
    with scu.associate(hand_entity(hand)) as assoc:
        t0 = time.monotonic()
        with pytest.raises(DicomTimeoutError):
            assoc.echo()
        took = time.monotonic() - t0
    assert 0.5 <= took <= 10, f"gave up after {took:.2f} s with dimse_timeout=1"


@pytest.mark.timeout(30)
def test_acse_timeout_when_port_accepts_but_nobody_serves():
    """A listening socket nobody accept()s: the kernel completes TCP, no DICOM ever comes."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with pytest.raises(DicomTimeoutError):
            make_scu(acse_timeout=1.0).echo(Entity("NOBODY", HOST, port))


# --- stopping the SCP -----------------------------------------------------------------------

def test_echo_after_stop_is_network_error(fastdimse_scp, scu):
    remote = fastdimse_scp.remote()
    assert scu.echo(remote).status == 0x0000
    fastdimse_scp.scp.stop()
    assert wait_for_port_closed(HOST, fastdimse_scp.port, timeout=5)
    with pytest.raises(NetworkError):
        scu.echo(remote)


def test_stop_is_idempotent(fastdimse_scp):
    fastdimse_scp.scp.stop()
    fastdimse_scp.scp.stop()
    assert not port_answers(HOST, fastdimse_scp.port)


def test_stop_ends_live_associations(fastdimse_scp, scu):
    with scu.associate(fastdimse_scp.remote()) as assoc:
        assert assoc.echo().status == 0x0000
        fastdimse_scp.scp.stop()
        with pytest.raises(DicomError):
            assoc.echo()
        assert not assoc.is_established


def test_stop_then_port_can_be_reused(fastdimse_scp_factory, scu):
    port = free_port()
    first = fastdimse_scp_factory(port=port)
    first.scp.stop()
    second = fastdimse_scp_factory(port=port)
    assert scu.echo(second.remote()).status == 0x0000


def test_scp_context_manager(scu):
    port = free_port()
    entity = Entity("FDCTX", HOST, port)
    with DICOMSCP(entity) as scp:
        assert scp is not None
        assert port_answers(HOST, port), "listening as soon as the block starts"
        assert scu.echo(entity).status == 0x0000
    assert wait_for_port_closed(HOST, port, timeout=5)
    with pytest.raises(NetworkError):
        scu.echo(entity)


def test_scp_context_manager_stops_on_exception():
    port = free_port()

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with DICOMSCP(Entity("FDCTX", HOST, port)):
            raise Boom()
    assert wait_for_port_closed(HOST, port, timeout=5)


def test_listen_returns_at_once_and_port_zero(scu):
    scp = DICOMSCP(Entity("FDZERO", HOST, 0))
    try:
        t0 = time.monotonic()
        scp.listen_for_incoming_associations(keep_listener_running=True)
        assert time.monotonic() - t0 < 5, "non-blocking listen"
        assert 0 < scp.port <= 65535
        assert port_answers(HOST, scp.port)
        assert scu.echo(Entity("FDZERO", HOST, scp.port)).status == 0x0000
    finally:
        scp.stop()
    assert wait_for_port_closed(HOST, scp.port, timeout=5)


def test_port_in_use_is_network_error(fastdimse_scp):
    other = DICOMSCP(Entity("FDDUP", HOST, fastdimse_scp.port))
    try:
        with pytest.raises((NetworkError, OSError)):
            other.listen_for_incoming_associations(keep_listener_running=True)
    finally:
        other.stop()


# --- the SCP's negotiation options ------------------------------------------------------

def test_called_ae_check_off_accepts_any_called_ae(fastdimse_scp_factory, scu):
    srv = fastdimse_scp_factory(ae_title="FDSCP", require_called_ae=False)
    for called in ("ANY-SCP", "WHATEVER", "FDSCP"):
        assert scu.echo(srv.remote(called)).status == 0x0000
    rc, out = run_dcmtk_echoscu(srv.port, called_ae="SOMETHING-ELSE")
    assert rc == 0, out
    assert DCMTK_ECHO_SUCCESS in out


def test_called_ae_check_on_by_default(fastdimse_scp, scu):
    with pytest.raises(AssociationRejected) as info:
        scu.echo(fastdimse_scp.remote("WHATEVER"))
    assert (info.value.result, info.value.source, info.value.reason) == (1, 1, 7)


def test_allowed_calling_aes_none_accepts_anyone(fastdimse_scp_factory):
    srv = fastdimse_scp_factory(allowed_calling_aes=None)
    for calling in ("A", "B-SCU", "X" * 16):
        assert make_scu(calling).echo(srv.remote()).status == 0x0000


def test_multiple_contexts_negotiated_per_context(fastdimse_scp):
    """Each proposed context gets its own answer (PS3.8 9.3.3.2)."""
    with rawpdu.connect(fastdimse_scp.port) as sock:
        sock.sendall(rawpdu.associate_rq(fastdimse_scp.ae_title, contexts=[
            (1, VERIFICATION, [IMPLICIT_LE]),
            (3, VERIFICATION, [EXPLICIT_BE]),
            (5, "1.2.3.4.5.6.7.8.9", [IMPLICIT_LE]),
            (7, VERIFICATION, ["1.2.3.999"]),
            (9, VERIFICATION, ["1.2.3.999", EXPLICIT_LE]),
        ]))
        got = rawpdu.read_pdu(sock)
        assert got.type == rawpdu.A_ASSOCIATE_AC, got.name
        ac = rawpdu.parse_associate_ac(got.body)
        assert ac.contexts[1] == (0, IMPLICIT_LE)
        assert ac.contexts[3] == (0, EXPLICIT_BE)
        assert ac.contexts[5][0] == 3, "abstract syntax not supported"
        assert ac.contexts[7][0] == 4, "transfer syntaxes not supported"
        assert ac.contexts[9] == (0, EXPLICIT_LE)
        assert rawpdu.echo(sock) == 0x0000
        rawpdu.release(sock)


def test_scp_transfer_syntaxes_option(fastdimse_scp_factory):
    srv = fastdimse_scp_factory(transfer_syntaxes=[EXPLICIT_LE])
    with rawpdu.connect(srv.port) as sock:
        sock.sendall(rawpdu.associate_rq(srv.ae_title, contexts=[
            (1, VERIFICATION, [IMPLICIT_LE]),
            (3, VERIFICATION, [IMPLICIT_LE, EXPLICIT_LE]),
        ]))
        got = rawpdu.read_pdu(sock)
        assert got.type == rawpdu.A_ASSOCIATE_AC, got.name
        ac = rawpdu.parse_associate_ac(got.body)
        assert ac.contexts[1][0] == 4
        assert ac.contexts[3] == (0, EXPLICIT_LE)


def test_scp_supported_abstract_syntaxes_option(fastdimse_scp_factory, scu):
    srv = fastdimse_scp_factory(supported_abstract_syntaxes=[CT_IMAGE_STORAGE])
    with rawpdu.connect(srv.port) as sock:
        sock.sendall(rawpdu.associate_rq(srv.ae_title))
        got = rawpdu.read_pdu(sock)
        if got.type == rawpdu.A_ASSOCIATE_AC:
            ac = rawpdu.parse_associate_ac(got.body)
            assert ac.contexts[1][0] == 3, "Verification is not supported by this SCP"
        else:
            assert got.type == rawpdu.A_ASSOCIATE_RJ, got.name
    with pytest.raises(DicomError):
        scu.echo(srv.remote())


def test_scp_supported_abstract_syntaxes_verification(fastdimse_scp_factory, scu):
    srv = fastdimse_scp_factory(supported_abstract_syntaxes=[VERIFICATION])
    assert scu.echo(srv.remote()).status == 0x0000
