"""Our SCP against a hostile or broken peer, played with raw sockets and hand-built PDUs.

For each misbehaviour the SCP must end that connection (A-ABORT, A-ASSOCIATE-RJ or
close; after ARTIM for a silent peer), say why in the "fastdimse" log, allocate
nothing large (peak RSS of this process, which hosts the SCP, grows < 64 MB), and
still answer the next echo from our SCU and from dcmtk's echoscu.

The PDUs come from rawpdu.py (PS3.8 9.3 by hand, proven against dcmtk and
pynetdicom in test_peers_sanity.py), never from fastdimse itself.
"""

from __future__ import annotations

import logging
import random
import re
import resource
import socket
import struct
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import rawpdu
from tests.support.peers import DCMTK_ECHO_SUCCESS, run_dcmtk_echoscu

pytestmark = pytest.mark.timeout(90)

RSS_BUDGET_KB = 64 * 1024  # ru_maxrss is in KiB on Linux
ANSWER_WITHIN = 10.0       # seconds the SCP may take to abort/close after a misbehaviour
HOSTILE_ACSE_TIMEOUT = 25.0  # > ANSWER_WITHIN: an answer within it is not a timeout's doing

# What the log must say, per kind of misbehaviour (case-insensitive regexes), in a
# record at INFO or above: DEBUG dumps of PDUs would name PDU types and lengths
# without saying why the association ended.
WHY_UNKNOWN_PDU = r"unknown|unrecogni[sz]ed|invalid|unexpected|pdu type|malformed|garbage|decode"
WHY_TOO_LONG = r"too (large|long|big)|exceed|4294967295|over ?sized|larger than|limit"
WHY_WRONG_STATE = r"unexpected|state|sta ?2\b|not associated|before|not allowed|invalid"
WHY_TRUNCATED = r"closed|eof|end of (file|stream)|truncated|incomplete|short|reset|disconnect"
WHY_TIMEOUT = r"time ?out|timed out|artim|idle|expired"
WHY_VERSION = r"protocol[ -]version|version 0x|unsupported version"
WHY_BAD_PDV = r"pdv|presentation data value|item length|malformed|invalid|exceed|decode"


# --- helpers ------------------------------------------------------------------------------

def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class LogWatch:
    """The "fastdimse" log records (INFO and above) written after this object was made."""

    def __init__(self, caplog, min_level: int = logging.INFO):
        self.caplog = caplog
        self.start = len(caplog.records)
        self.min_level = min_level

    def text(self) -> str:
        return "\n".join(
            f"{r.levelname} {r.name}: {r.getMessage()}"
            for r in self.caplog.records[self.start:]
            if (r.name == "fastdimse" or r.name.startswith("fastdimse."))
            and r.levelno >= self.min_level
        )

    def expect(self, why: str, timeout: float = 5.0) -> str:
        """Wait until a new fastdimse record matches ``why``; fail with what was logged."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if re.search(why, text, re.IGNORECASE):
                return text
            if time.monotonic() >= deadline:
                pytest.fail(f"the fastdimse log did not say why ({why!r}); it said:\n{text}")
            time.sleep(0.05)


def send(sock: socket.socket, data: bytes) -> None:
    """sendall, tolerating a peer that already hung up on us (that is its right)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def assert_still_serves(srv, scu) -> None:
    """The SCP answers a C-ECHO from our SCU and from dcmtk echoscu."""
    assert scu.echo(srv.remote()).status == 0x0000
    rc, out = run_dcmtk_echoscu(srv.port, called_ae=srv.ae_title)
    assert rc == 0, out
    assert DCMTK_ECHO_SUCCESS in out, out


def wait_closed(sock: socket.socket, timeout: float) -> float:
    """Read (and ignore A-ABORT) until the peer closes; return the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the SCP did not close the connection within {timeout} s")
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - t0
        except socket.timeout:
            continue
        if not data:
            return time.monotonic() - t0
        assert data[0] == rawpdu.A_ABORT, f"only an A-ABORT may come before the close: {data!r}"


@pytest.fixture
def hostile_scp(fastdimse_scp_factory):
    """Our SCP with ACSE/DIMSE/network timeouts longer than ANSWER_WITHIN.

    So when a test sees an A-ABORT or a close within ANSWER_WITHIN, the SCP reacted
    to what it received, not to a timer running out.
    """
    return fastdimse_scp_factory(acse_timeout=HOSTILE_ACSE_TIMEOUT,
                                 dimse_timeout=HOSTILE_ACSE_TIMEOUT,
                                 network_timeout=HOSTILE_ACSE_TIMEOUT + 5)


@pytest.fixture
def rss():
    """Fail the test if peak RSS grew by 64 MB or more while it ran."""
    before = peak_rss_kb()
    yield
    grown = peak_rss_kb() - before
    assert grown < RSS_BUDGET_KB, f"peak RSS grew by {grown / 1024:.1f} MB"


# --- (a) garbage bytes ----------------------------------------------------------------

GARBAGE = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: dicom\r\n\r\n", id="http-request"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), id="tls-hello"),
    pytest.param(b"\xff" * 64, id="all-ff"),
    pytest.param(b"\x00" * 64, id="all-zero"),
    pytest.param(bytes([0x4B]) + random.Random(1234).randbytes(511), id="random"),
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("garbage", GARBAGE)
def test_garbage_bytes(hostile_scp, scu, fastdimse_log, rss, garbage):
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(hostile_scp.port) as sock:
        send(sock, garbage)
        assert rawpdu.read_abort_or_close(sock, ANSWER_WITHIN) in ("abort", "closed")
    log.expect(WHY_UNKNOWN_PDU + "|" + WHY_TOO_LONG)
    assert_still_serves(hostile_scp, scu)


# --- (b) a PDU whose length field says 4 GiB ------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("pdu_type", [rawpdu.A_ASSOCIATE_RQ, rawpdu.P_DATA_TF,
                                      rawpdu.A_RELEASE_RQ, rawpdu.A_ABORT],
                         ids=["associate-rq", "p-data", "release-rq", "abort"])
@pytest.mark.parametrize("length", [0xFFFFFFFF, 0x7FFFFFFF, 64 * 1024 * 1024 + 1],
                         ids=["4GiB", "2GiB", "64MiB+1"])
def test_huge_pdu_length(hostile_scp, scu, fastdimse_log, rss, pdu_type, length):
    """The SCP must not wait for (or allocate) the bytes announced; it aborts or closes now.

    The connection stays open from our side, so only the SCP can end it.
    """
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(hostile_scp.port) as sock:
        send(sock, struct.pack(">BBI", pdu_type, 0, length) + bytes(64))
        # Within ANSWER_WITHIN, well before any timeout: refused on the length.
        assert rawpdu.read_abort_or_close(sock, ANSWER_WITHIN) in ("abort", "closed")
    log.expect(WHY_TOO_LONG + "|" + WHY_WRONG_STATE + f"|{length}")
    assert_still_serves(hostile_scp, scu)


@pytest.mark.timeout(60)
def test_huge_p_data_after_association(hostile_scp, scu, fastdimse_log, rss):
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(hostile_scp.port) as sock:
        rawpdu.associate(sock, hostile_scp.ae_title)
        send(sock, rawpdu.p_data(rawpdu.pdv_item(1, 0x03, bytes(64)), length=0xFFFFFFFF))
        assert rawpdu.read_abort_or_close(sock, ANSWER_WITHIN) in ("abort", "closed")
    log.expect(WHY_TOO_LONG)
    assert_still_serves(hostile_scp, scu)


@pytest.mark.timeout(60)
def test_many_huge_pdus_at_once(hostile_scp, scu, fastdimse_log, rss):
    """32 connections announcing 4 GiB each, at the same time: still no large allocation."""
    socks = [rawpdu.connect(hostile_scp.port) for _ in range(32)]
    try:
        for s in socks:
            send(s, struct.pack(">BBI", rawpdu.A_ASSOCIATE_RQ, 0, 0xFFFFFFFF) + bytes(1024))
        for s in socks:
            assert rawpdu.read_abort_or_close(s, ANSWER_WITHIN) in ("abort", "closed")
    finally:
        for s in socks:
            s.close()
    assert_still_serves(hostile_scp, scu)


# --- (c) PDUs that are not allowed before an association ------------------------------

def _associate_ac_bytes() -> bytes:
    rq = bytearray(rawpdu.associate_rq("FDSCP", "RAWSCU"))
    rq[0] = rawpdu.A_ASSOCIATE_AC  # same layout; an SCP must never receive one
    return bytes(rq)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("data", [
    pytest.param(rawpdu.c_echo_rq(), id="p-data-c-echo"),
    pytest.param(rawpdu.release_rq(), id="release-rq"),
    pytest.param(rawpdu.release_rp(), id="release-rp"),
    pytest.param(_associate_ac_bytes(), id="associate-ac"),
])
def test_pdu_before_association(hostile_scp, scu, fastdimse_log, rss, data):
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(hostile_scp.port) as sock:
        send(sock, data)
        assert rawpdu.read_abort_or_close(sock, ANSWER_WITHIN) in ("abort", "closed")
    log.expect(WHY_WRONG_STATE)
    assert_still_serves(hostile_scp, scu)


@pytest.mark.timeout(60)
def test_abort_before_association_just_closes(hostile_scp, scu, rss):
    """A-ABORT in Sta2 means: close the connection (PS3.8 9.2, AA-2); no answer is due."""
    with rawpdu.connect(hostile_scp.port) as sock:
        send(sock, rawpdu.abort())
        wait_closed(sock, ANSWER_WITHIN)
    assert_still_serves(hostile_scp, scu)


# --- (d) truncated PDUs ---------------------------------------------------------------

_RQ = rawpdu.associate_rq("FDSCP", "RAWSCU")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("cut", [3, 6, 40, len(_RQ) // 2, len(_RQ) - 1],
                         ids=["3-bytes", "header-only", "40-bytes", "half", "all-but-one"])
def test_truncated_associate_rq_then_close(hostile_scp, scu, fastdimse_log, rss, cut):
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(hostile_scp.port) as sock:
        send(sock, _RQ[:cut])
        sock.shutdown(socket.SHUT_WR)  # we are done: the SCP sees end of stream mid-PDU
        wait_closed(sock, ANSWER_WITHIN)
    log.expect(WHY_TRUNCATED)
    assert_still_serves(hostile_scp, scu)


@pytest.mark.timeout(60)
def test_truncated_associate_rq_then_silence(fastdimse_scp_factory, scu, fastdimse_log, rss):
    """Half a PDU and then nothing: the ACSE (ARTIM) timeout ends it."""
    srv = fastdimse_scp_factory(acse_timeout=1.0)
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(srv.port) as sock:
        send(sock, _RQ[: len(_RQ) // 2])
        took = wait_closed(sock, ANSWER_WITHIN)
    assert took >= 0.5, f"closed after {took:.2f} s: before the 1 s timeout could expire"
    log.expect(WHY_TIMEOUT + "|" + WHY_TRUNCATED)
    assert_still_serves(srv, scu)


@pytest.mark.timeout(60)
def test_truncated_p_data_then_close(hostile_scp, scu, fastdimse_log, rss):
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(hostile_scp.port) as sock:
        rawpdu.associate(sock, hostile_scp.ae_title)
        echo = rawpdu.c_echo_rq()
        send(sock, echo[: len(echo) - 10])
        sock.shutdown(socket.SHUT_WR)
        wait_closed(sock, ANSWER_WITHIN)
    log.expect(WHY_TRUNCATED)
    assert_still_serves(hostile_scp, scu)


# --- (e) a peer that connects and says nothing ----------------------------------------

@pytest.mark.timeout(30)
def test_silent_peer_is_closed_after_acse_timeout(fastdimse_scp_factory, scu, fastdimse_log,
                                                  rss):
    srv = fastdimse_scp_factory(acse_timeout=1.0)
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(srv.port) as sock:
        t0 = time.monotonic()
        sock.settimeout(ANSWER_WITHIN)
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
        took = time.monotonic() - t0
    assert data == b"", f"expected the SCP to close the connection, got {data!r}"
    assert 0.5 <= took <= 8.0, f"closed after {took:.2f} s with acse_timeout=1"
    log.expect(WHY_TIMEOUT)
    assert_still_serves(srv, scu)


@pytest.mark.timeout(30)
def test_many_silent_peers_do_not_block_service(fastdimse_scp_factory, scu, rss):
    """20 idle connections held open (default 30 s ACSE timeout) while others echo."""
    srv = fastdimse_scp_factory()
    socks = [rawpdu.connect(srv.port) for _ in range(20)]
    try:
        assert_still_serves(srv, scu)
    finally:
        for s in socks:
            s.close()


@pytest.mark.timeout(30)
def test_silent_after_association_is_closed_after_network_timeout(fastdimse_scp_factory, scu,
                                                                   fastdimse_log, rss):
    srv = fastdimse_scp_factory(network_timeout=1.0, dimse_timeout=1.0)
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(srv.port) as sock:
        rawpdu.associate(sock, srv.ae_title)
        took = wait_closed(sock, ANSWER_WITHIN)
    assert took >= 0.5, f"closed after {took:.2f} s: before the 1 s timeout could expire"
    log.expect(WHY_TIMEOUT)
    assert_still_serves(srv, scu)


# --- (f) protocol version -------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("version", [0x0000, 0x0002, 0x8000])
def test_bad_protocol_version_is_rejected(hostile_scp, scu, fastdimse_log, rss, version):
    """Bit 0 (version 1) not set: A-ASSOCIATE-RJ result 1, source 2, reason 2 (PS3.8 9.3.4),
    as dcmtk and pynetdicom answer too (test_peers_sanity.py)."""
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(hostile_scp.port) as sock:
        send(sock, rawpdu.associate_rq(hostile_scp.ae_title, protocol_version=version))
        got = rawpdu.read_pdu(sock, ANSWER_WITHIN)
        assert got.type == rawpdu.A_ASSOCIATE_RJ, f"expected A-ASSOCIATE-RJ, got {got.name}"
        assert rawpdu.parse_reject(got.body) == (1, 2, 2)
    log.expect(WHY_VERSION)
    assert_still_serves(hostile_scp, scu)


# --- a valid association by hand, then misbehaviour -----------------------------------

@pytest.mark.timeout(60)
def test_hand_made_association_works(hostile_scp):
    """Positive control: the hand-built PDUs are good enough for our SCP."""
    with rawpdu.connect(hostile_scp.port) as sock:
        ac = rawpdu.associate(sock, hostile_scp.ae_title, calling_ae="RAWSCU")
        assert ac.called_ae == hostile_scp.ae_title
        assert ac.calling_ae == "RAWSCU"
        assert ac.contexts[1] == (0, rawpdu.IMPLICIT_VR_LE)
        assert rawpdu.echo(sock, message_id=41) == 0x0000
        assert rawpdu.echo(sock, message_id=42) == 0x0000
        rawpdu.release(sock)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pdv_length", [
    pytest.param("longer-than-pdu", id="pdv-longer-than-pdu"),
    pytest.param(0, id="pdv-length-0"),
    pytest.param(1, id="pdv-length-1"),
])
def test_bad_pdv_item_length_aborts(hostile_scp, scu, fastdimse_log, rss, pdv_length):
    log = LogWatch(fastdimse_log)
    cmd = rawpdu.c_echo_rq_command()
    n = len(cmd) + 1000 if pdv_length == "longer-than-pdu" else pdv_length
    with rawpdu.connect(hostile_scp.port) as sock:
        rawpdu.associate(sock, hostile_scp.ae_title)
        send(sock, rawpdu.p_data(rawpdu.pdv_item(1, 0x03, cmd, length=n)))
        assert rawpdu.read_abort_or_close(sock, ANSWER_WITHIN) in ("abort", "closed")
    log.expect(WHY_BAD_PDV)
    assert_still_serves(hostile_scp, scu)


@pytest.mark.timeout(60)
def test_second_associate_rq_on_an_association_aborts(hostile_scp, scu, fastdimse_log, rss):
    """A-ASSOCIATE-RQ in Sta6 is Evt6 -> AA-8: A-ABORT (PS3.8 9.2)."""
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(hostile_scp.port) as sock:
        rawpdu.associate(sock, hostile_scp.ae_title)
        send(sock, rawpdu.associate_rq(hostile_scp.ae_title))
        assert rawpdu.read_abort_or_close(sock, ANSWER_WITHIN) in ("abort", "closed")
    log.expect(WHY_WRONG_STATE)
    assert_still_serves(hostile_scp, scu)


@pytest.mark.timeout(60)
def test_unknown_pdu_type_on_an_association_aborts(hostile_scp, scu, fastdimse_log, rss):
    log = LogWatch(fastdimse_log)
    with rawpdu.connect(hostile_scp.port) as sock:
        rawpdu.associate(sock, hostile_scp.ae_title)
        send(sock, rawpdu.pdu(0x42, bytes(8)))
        assert rawpdu.read_abort_or_close(sock, ANSWER_WITHIN) in ("abort", "closed")
    log.expect(WHY_UNKNOWN_PDU)
    assert_still_serves(hostile_scp, scu)


@pytest.mark.timeout(60)
def test_peer_abort_on_an_association_closes(hostile_scp, scu, rss):
    """A-ABORT received in Sta6: the SCP closes the connection (AA-3) and sends nothing."""
    with rawpdu.connect(hostile_scp.port) as sock:
        rawpdu.associate(sock, hostile_scp.ae_title)
        send(sock, rawpdu.abort(source=0, reason=0))
        sock.settimeout(ANSWER_WITHIN)
        try:
            data = sock.recv(1024)
        except ConnectionResetError:
            data = b""
        assert data == b"", f"nothing is sent in answer to an A-ABORT, got {data!r}"
    assert_still_serves(hostile_scp, scu)


@pytest.mark.timeout(60)
def test_peer_vanishes_mid_association(hostile_scp, scu, rss):
    """Connection dropped without release or abort, right after an echo request."""
    for _ in range(5):
        sock = rawpdu.connect(hostile_scp.port)
        rawpdu.associate(sock, hostile_scp.ae_title)
        send(sock, rawpdu.c_echo_rq())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
    assert_still_serves(hostile_scp, scu)


# --- random bytes, property-style -----------------------------------------------------

@pytest.mark.timeout(120)
def test_random_bytes_never_break_the_scp(hostile_scp, scu, rss):
    """Hypothesis feeds random byte strings (sometimes behind a plausible PDU header).

    Whatever arrives, the SCP may only answer A-ABORT or A-ASSOCIATE-RJ, must close
    once we stop sending, and must go on serving.
    """
    port = hostile_scp.port

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(head=st.sampled_from([b"", b"\x01\x00", b"\x04\x00", b"\x07\x00", b"\x05\x00"]),
           body=st.binary(min_size=0, max_size=2048))
    def one(head, body):
        with rawpdu.connect(port) as sock:
            send(sock, head + body)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            deadline = time.monotonic() + ANSWER_WITHIN
            buf = b""
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                except socket.timeout:
                    pytest.fail(f"SCP kept the connection open after {head + body!r}")
                if not data:
                    break
                buf += data
            pos = 0
            while pos + 6 <= len(buf):
                ptype, _, n = struct.unpack_from(">BBI", buf, pos)
                assert ptype in (rawpdu.A_ABORT, rawpdu.A_ASSOCIATE_RJ), (
                    f"SCP answered {rawpdu.PDU_NAMES.get(ptype, hex(ptype))} to random bytes")
                pos += 6 + n

    one()
    assert_still_serves(hostile_scp, scu)


# --- many hostile connections at once, while honest clients echo ---------------------

@pytest.mark.timeout(90)
def test_hostile_crowd_while_echoing(hostile_scp, scu, rss):
    stop = threading.Event()
    errors: list[BaseException] = []

    def attacker(seed: int) -> None:
        rng = random.Random(seed)
        payloads = [b"\xff" * 32, rawpdu.c_echo_rq(), _RQ[:20],
                    struct.pack(">BBI", 1, 0, 0xFFFFFFFF), rng.randbytes(300)]
        try:
            while not stop.is_set():
                with rawpdu.connect(hostile_scp.port) as sock:
                    send(sock, rng.choice(payloads))
                    try:
                        sock.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass  # the SCP already closed on us: that is an answer too
                    wait_closed(sock, ANSWER_WITHIN)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    try:
        with scu.associate(hostile_scp.remote()) as assoc:
            for _ in range(20):
                assert assoc.echo().status == 0x0000
        for _ in range(5):
            assert scu.echo(hostile_scp.remote()).status == 0x0000
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=ANSWER_WITHIN + 5)
    assert not errors, errors
    assert_still_serves(hostile_scp, scu)
