"""C-STORE with an asynchronous operations window (PS3.7 D.3.3.3), against hand-played peers.

Sub-item 0x53 holds two 2-byte big-endian counts, max operations invoked and max
operations performed, both from the association-requestor's point of view, in the
A-ASSOCIATE-RQ and in the AC; 0 means unlimited and no item in the AC means 1/1.

- Our SCU proposes (window, 1) and keeps as many C-STORE-RQs outstanding as the peer
  grants (at most 64), matching responses by Message ID Being Responded To in any
  order; an association that dies with instances outstanding leaves each reported as
  not stored, with a reason. Played against rawpdu.HandStoreSCP, which holds requests
  unanswered until a batch is complete and then answers it newest first.
- Our SCP grants min(proposed, 32) invoked (0 -> 32) and 1 performed, but answers no
  window when a Query/Retrieve context is accepted. Played by raw sockets.
- The hand-played bytes are checked against pynetdicom first, so the tests do not
  check the library against itself.

Our SCU with its default window (16) is sent to dcmtk storescp and pynetdicom storescp by
test_store_interop.py (test_our_scu_to_dcmtk_storescp, test_our_scu_to_pynetdicom_storescp);
test_default_window_is_proposed here shows that the default does propose (16, 1).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import rawpdu
from tests.support import storedata as sd
from tests.support.peers import HOST, make_scu

pytestmark = pytest.mark.timeout(60)

HAND_AE = "HANDSCP"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"

# One status per instance, most of them different, so that a response matched to the
# wrong request shows: success, warnings (0xB000 coercion, 0xB007 data set does not
# match, 0xB006 elements discarded) and failures (0xA700 out of resources, 0xA900 data
# set does not match SOP class, 0xC000 cannot understand, 0x0122 SOP class not supported).
STATUSES = [0x0000, 0xB000, 0xA700, 0xB007, 0x0000, 0xC000, 0xB006, 0xA900, 0x0000, 0x0122]

# How long a hand-played SCP watches its socket before answering, to catch an SCU that
# sends more requests than it may (a check for something that must NOT happen).
QUIET = 0.15


@pytest.fixture
def hand_store_scp():
    """Start rawpdu.HandStoreSCPs on loopback; every one is closed at teardown."""
    started: list[rawpdu.HandStoreSCP] = []

    def make(**kwargs) -> rawpdu.HandStoreSCP:
        fake = rawpdu.HandStoreSCP(**kwargs)
        started.append(fake)
        return fake

    try:
        yield make
    finally:
        for fake in started:
            fake.close()


def _remote(fake: rawpdu.HandStoreSCP):
    from fastdimse import Entity

    return Entity(HAND_AE, HOST, fake.port)


def _scu(dimse_timeout: float = 3.0):
    """Our SCU with short DIMSE and ACSE timeouts: an SCU that waits for a response the
    fake will not send until more requests come fails in seconds instead of hanging."""
    return make_scu(dimse_timeout=dimse_timeout, acse_timeout=3.0)


def _instances(tmp_path: Path, n: int, rows: int = 16) -> list[tuple[Path, str]]:
    """``n`` small CT images as explicit VR LE Part-10 files: [(path, SOP Instance UID)]."""
    out = []
    for i in range(n):
        ds = sd.make_image(sd.CT_IMAGE, patient_id="WIN", rows=rows, columns=rows, seed=i,
                           with_sequence=False)
        out.append((sd.write_instance(ds, tmp_path / "src" / f"{i:03d}.dcm", sd.EXPLICIT_VR_LE),
                    str(ds.SOPInstanceUID)))
    return out


def _check_results(results, srcs: list[tuple[Path, str]], statuses: list[int]) -> None:
    assert len(results) == len(srcs)
    for i, (r, (path, uid), st) in enumerate(zip(results, srcs, statuses)):
        assert r.index == i and r.sop_instance_uid == uid and r.path == str(path), r
        assert r.status == st, (
            f"instance {i}: status {r.status!r}, the peer gave it 0x{st:04X}: {r}")
        if st == 0x0000:
            assert r.reason is None, r
        else:
            assert r.reason and f"0x{st:04X}" in r.reason, r


# --- the hand-played peers, checked against pynetdicom ---------------------------------------

def test_hand_store_scp_against_pynetdicom(hand_store_scp, tmp_path):
    """pynetdicom, as requestor, reads the window HandStoreSCP answers in its AC and takes
    its C-STORE-RSP; HandStoreSCP reads the window pynetdicom proposes."""
    from pynetdicom import AE
    from pynetdicom.pdu_primitives import AsynchronousOperationsWindowNegotiation

    (path, uid), = _instances(tmp_path, 1)
    fake = hand_store_scp(async_window=(4, 1), status_of=lambda _uid: 0xB000)
    ae = AE(ae_title="PYNDSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(sd.CT_IMAGE, sd.EXPLICIT_VR_LE)
    item = AsynchronousOperationsWindowNegotiation()
    item.maximum_number_operations_invoked = 5
    item.maximum_number_operations_performed = 3
    assoc = ae.associate(HOST, fake.port, ae_title=HAND_AE, ext_neg=[item])
    try:
        assert assoc.is_established
        assert assoc.acceptor.asynchronous_operations == (4, 1)
        rsp = assoc.send_c_store(path)
        assert rsp.Status == 0xB000
        assoc.release()
    finally:
        if assoc.is_established:
            assoc.abort()
        ae.shutdown()
    assert fake.done.wait(10)
    assert fake.error is None, fake.error
    assert fake.rq.async_window == (5, 3)
    assert [r.sop_instance for r in fake.requests] == [uid]
    assert fake.released


def test_raw_window_proposal_against_pynetdicom():
    """pynetdicom, as acceptor, reads the window rawpdu.associate_rq proposes, and
    rawpdu.parse_associate_ac reads pynetdicom's answer (it never grants more than 1/1)."""
    from pynetdicom import AE, evt

    seen = []

    def on_async_ops(event):
        seen.append((event.nr_invoked, event.nr_performed))
        return 1, 1

    ae = AE(ae_title="PYNDSCP")
    ae.add_supported_context(rawpdu.VERIFICATION, rawpdu.IMPLICIT_VR_LE)
    server = ae.start_server((HOST, 0), block=False,
                             evt_handlers=[(evt.EVT_ASYNC_OPS, on_async_ops)])
    try:
        with rawpdu.connect(server.server_address[1]) as sock:
            ac = rawpdu.associate(sock, "PYNDSCP", async_window=(8, 2))
            assert ac.async_window == (1, 1)
            assert rawpdu.echo(sock, 7) == 0x0000
            rawpdu.release(sock)
    finally:
        server.shutdown()
        ae.shutdown()
    assert seen == [(8, 2)]


# --- our SCU --------------------------------------------------------------------------------

@pytest.mark.parametrize("window, granted, n, hold", [
    (8, 4, 10, 4),       # the peer grants less than proposed: 4 in flight
    (200, 100, 70, 64),  # the peer grants more than we ever keep in flight: 64
    (3, 20, 7, 3),       # a peer granting more than asked gets what we asked
    (3, 0, 7, 3),        # ... also when it grants "unlimited"
], ids=["granted-4", "capped-at-64", "granted-more-than-asked", "granted-unlimited"])
def test_scu_pipelines_and_matches_responses_out_of_order(hand_store_scp, tmp_path, window,
                                                          granted, n, hold):
    """The fake answers nothing until ``hold`` requests are outstanding, then answers them
    newest first, each with its own status. Without pipelining the first request would
    wait for its response until the (short) DIMSE timeout; with responses matched by
    arrival instead of by Message ID, statuses would land on the wrong instances."""
    srcs = _instances(tmp_path, n, rows=8)
    statuses = [STATUSES[i % len(STATUSES)] for i in range(n)]
    status_by_uid = {uid: st for (_p, uid), st in zip(srcs, statuses)}
    fake = hand_store_scp(async_window=(granted, 1), hold=hold, total=n, reverse=True,
                          status_of=status_by_uid.__getitem__, quiet=QUIET)
    t0 = time.monotonic()
    results = _scu().store(_remote(fake), [p for p, _ in srcs], window=window)
    elapsed = time.monotonic() - t0
    assert fake.done.wait(10)
    assert fake.error is None, repr(fake.error)
    assert fake.rq.async_window == (window, 1)

    # Pipelined: `hold` outstanding before each answer (the rest in the last batch) ...
    full, rest = divmod(n, hold)
    assert fake.batches == [hold] * full + ([rest] if rest else []), fake.batches
    # ... and never more than granted (nothing arrived while a full batch waited).
    assert fake.early == 0, f"the SCU sent more than {hold} requests before any answer"
    # Every request got its own Message ID; each batch was answered newest first.
    ids = [q.message_id for q in fake.requests]
    assert len(set(ids)) == n
    expected = []
    for start in range(0, n, hold):
        expected += reversed(ids[start:start + hold])
    assert fake.answered == expected
    assert fake.released and fake.rejected == 0 and not fake.aborted_by_scu

    # Each instance has the status the fake gave that instance.
    _check_results(results, srcs, statuses)
    # And the data sets arrived byte for byte.
    by_uid = {q.sop_instance: q for q in fake.requests}
    assert set(by_uid) == set(status_by_uid)
    for path, uid in srcs:
        assert by_uid[uid].data == sd.dataset_bytes(path), uid
    # No DIMSE timeout was waited out on the way.
    assert elapsed < 3.0 + (full + 1) * QUIET, f"store took {elapsed:.1f} s"


@pytest.mark.parametrize("kwargs, proposed, granted", [
    ({"window": 1}, None, None),          # window 1: nothing proposed
    ({}, (16, 1), None),                  # the default, to a peer that answers nothing
    ({"window": 8}, (8, 1), (1, 1)),      # a peer that answers "synchronous" explicitly
    ({"window": 1}, None, (4, 1)),        # a window granted that we never proposed: unused
], ids=["window-1", "default-not-answered", "granted-1", "granted-unasked"])
def test_scu_one_at_a_time_without_a_window(hand_store_scp, tmp_path, kwargs, proposed, granted):
    """Without a window granted, the SCU sends the next request only after the previous
    response: the fake answers each at once, but first watches that nothing else comes."""
    n = 4
    srcs = _instances(tmp_path, n, rows=8)
    statuses = [0x0000, 0xB000, 0x0000, 0xA700]
    status_by_uid = {uid: st for (_p, uid), st in zip(srcs, statuses)}
    fake = hand_store_scp(async_window=granted, hold=1, status_of=status_by_uid.__getitem__,
                          quiet=QUIET)
    results = _scu().store(_remote(fake), [p for p, _ in srcs], **kwargs)
    assert fake.done.wait(10)
    assert fake.error is None, repr(fake.error)
    assert fake.rq.async_window == proposed
    assert fake.batches == [1] * n
    assert fake.early == 0, "the SCU sent a request before the previous one was answered"
    assert fake.answered == [q.message_id for q in fake.requests]
    assert fake.released
    _check_results(results, srcs, statuses)


def test_default_window_is_proposed(hand_store_scp, tmp_path):
    """``store()`` without ``window`` proposes (16, 1) and uses what is granted."""
    srcs = _instances(tmp_path, 3, rows=8)
    fake = hand_store_scp(async_window=(16, 1), hold=3, total=3, reverse=True)
    results = _scu().store(_remote(fake), [p for p, _ in srcs])
    assert fake.done.wait(10)
    assert fake.error is None, repr(fake.error)
    assert fake.rq.async_window == (16, 1)
    assert fake.batches == [3]
    _check_results(results, srcs, [0x0000] * 3)


@pytest.mark.parametrize("vanish", ["abort", "close", "release"])
def test_scu_reports_every_outstanding_instance_when_the_peer_vanishes(hand_store_scp, tmp_path,
                                                                       vanish):
    """The fake grants 4, takes 3 complete requests and then aborts, closes the socket or
    releases the association without answering any: store() returns, and no instance is
    reported stored; each one says why. Later connections are refused, so the instances
    not yet sent cannot go either."""
    n = 6
    srcs = _instances(tmp_path, n, rows=8)
    fake = hand_store_scp(async_window=(4, 1), hold=1000, abort_after=3, vanish=vanish)
    t0 = time.monotonic()
    results = _scu(dimse_timeout=8.0).store(_remote(fake), [p for p, _ in srcs], window=8)
    elapsed = time.monotonic() - t0
    assert fake.done.wait(10)
    assert fake.error is None, repr(fake.error)
    assert fake.rq.async_window == (8, 1)
    assert fake.vanished and len(fake.requests) == 3 and fake.answered == []
    assert fake.release_answered == (vanish == "release")
    assert len(results) == n
    for i, (r, (_path, uid)) in enumerate(zip(results, srcs)):
        assert r.index == i and r.sop_instance_uid == uid, r
        assert r.status is None and not r.is_success, r
        assert r.reason and r.reason.strip(), r
    # The three the fake took were the first three, in order.
    assert [q.sop_instance for q in fake.requests] == [uid for _p, uid in srcs[:3]]
    # The end of the association is noticed at once, not after the DIMSE timeout.
    assert elapsed < 4.0, f"store took {elapsed:.1f} s"


# --- our SCP --------------------------------------------------------------------------------

def test_scp_serves_pipelined_c_stores_in_order(fastdimse_scp_factory, tmp_path):
    """Granted (8, 1), five complete C-STORE-RQs go back to back before anything is read;
    the five C-STORE-RSPs come in order, all success, and the five files are stored."""
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage)
    srcs = _instances(tmp_path, 5, rows=64)  # 8 KiB of pixels: several PDUs per data set
    data = {uid: sd.dataset_bytes(path) for path, uid in srcs}
    with rawpdu.connect(scp.port) as sock:
        ac = rawpdu.associate(sock, scp.ae_title, contexts=[(1, sd.CT_IMAGE, [sd.EXPLICIT_VR_LE])],
                              async_window=(8, 1))
        assert ac.contexts[1] == (0, sd.EXPLICIT_VR_LE)
        assert ac.async_window == (8, 1)
        sock.sendall(b"".join(rawpdu.c_store_rq(1, sd.CT_IMAGE, uid, data[uid], message_id=100 + i)
                              for i, (_p, uid) in enumerate(srcs)))
        statuses = [rawpdu.read_c_store_rsp(sock, 100 + i) for i in range(len(srcs))]
        rawpdu.release(sock)
    assert statuses == [0x0000] * len(srcs)
    stored = sd.index_by_instance(storage)
    assert set(stored) == set(data)
    for uid, d in data.items():
        assert sd.dataset_bytes(stored[uid]) == d, uid
    assert sd.leftover_temp_files(storage) == []


STORAGE_CONTEXT = (1, sd.CT_IMAGE, [sd.EXPLICIT_VR_LE])


@pytest.mark.parametrize("extra_context, proposed, granted, scp_options", [
    (None, (8, 1), (8, 1), {}),
    (None, (0, 0), (32, 1), {}),          # unlimited asked: our 32, and we invoke nothing
    (None, (64, 1), (32, 1), {}),
    (None, (8, 4), (8, 1), {}),
    (None, None, None, {}),               # nothing proposed, nothing answered
    ((3, STUDY_ROOT_FIND, [sd.EXPLICIT_VR_LE]), (8, 1), None, {}),
    ((3, STUDY_ROOT_MOVE, [sd.IMPLICIT_VR_LE]), (8, 1), None, {}),
    ((3, STUDY_ROOT_GET, [sd.IMPLICIT_VR_LE]), (0, 0), None, {}),
    ((3, PATIENT_ROOT_FIND, [sd.IMPLICIT_VR_LE]), (8, 1), None, {}),
    # A Q/R context proposed but not accepted (a transfer syntax the SCP does not take
    # for it, or Q/R off) does not make the association synchronous.
    ((3, STUDY_ROOT_FIND, [JPEG_BASELINE]), (8, 1), (8, 1), {}),
    ((3, STUDY_ROOT_FIND, [sd.EXPLICIT_VR_LE]), (8, 1), (8, 1), {"query_retrieve": False}),
], ids=["8-1", "unlimited", "64-capped", "performed-capped", "none", "find", "move", "get",
        "patient-root-find", "find-refused-ts", "find-qr-off"])
def test_scp_window_answer(fastdimse_scp_factory, tmp_path, extra_context, proposed, granted,
                           scp_options):
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, **scp_options)
    contexts = [STORAGE_CONTEXT] + ([extra_context] if extra_context else [])
    qr_accepted = extra_context is not None and granted is None
    (path, uid), = _instances(tmp_path, 1)
    with rawpdu.connect(scp.port) as sock:
        ac = rawpdu.associate(sock, scp.ae_title, contexts=contexts, async_window=proposed)
        assert ac.contexts[1] == (0, sd.EXPLICIT_VR_LE)
        if extra_context is not None:
            result = ac.contexts[3][0]
            assert (result == 0) == qr_accepted, ac.contexts
        assert ac.async_window == granted
        # The association works either way.
        sock.sendall(rawpdu.c_store_rq(1, sd.CT_IMAGE, uid, sd.dataset_bytes(path), message_id=9))
        assert rawpdu.read_c_store_rsp(sock, 9) == 0x0000
        rawpdu.release(sock)
    assert list(sd.index_by_instance(storage)) == [uid]


def test_peer_dropping_window_rq_gets_a_plain_association(hand_store_scp, tmp_path):
    """A peer that drops the connection at the first request when the A-ASSOCIATE-RQ
    carried a window item (as some PACS do): the SCU asks again without the item and
    sends the unanswered instance again; every instance arrives and none is lost."""
    srcs = _instances(tmp_path, 5, rows=8)
    fake = hand_store_scp(async_window=(8, 1), hold=1, drop_window_rq=True)
    results = _scu(dimse_timeout=8.0).store(_remote(fake), [p for p, _ in srcs], window=8)
    assert fake.done.wait(10)
    assert fake.error is None, repr(fake.error)
    assert fake.dropped == 1
    assert fake.rq.async_window is None  # the association that served them proposed none
    assert [q.sop_instance for q in fake.requests] == [uid for _p, uid in srcs]
    _check_results(results, srcs, [0x0000] * 5)
    assert fake.released


def test_window_fallback_only_once(hand_store_scp, tmp_path):
    """An association that ends unanswered WITHOUT a window proposed is not retried: the
    instance fails with the reason (a peer that is just down is not hammered)."""
    srcs = _instances(tmp_path, 3, rows=8)
    fake = hand_store_scp(async_window=None, hold=1000, abort_after=1, vanish="close")
    results = _scu(dimse_timeout=8.0).store(_remote(fake), [p for p, _ in srcs], window=1)
    assert fake.done.wait(10)
    assert fake.rq.async_window is None
    assert len(fake.requests) == 1
    assert all(r.status is None and r.reason for r in results), results
    # the unanswered one reports the lost association, not a second attempt
    assert results[0].reason.startswith("no response"), results[0]
    assert all(r.reason.startswith("no association") for r in results[1:]), results
