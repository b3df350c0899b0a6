"""Our C-FIND / C-MOVE service user (the Rust loop behind `find()` and `move()`)
against pynetdicom's Q/R SCP, run in this process with handlers written here:

- `find()` streams: the first match reaches the caller while the SCP is still
  producing (it has not yielded the rest yet).
- Stopping early sends C-CANCEL-RQ for the right message: pynetdicom's handler sees
  `event.is_cancelled`, answers Cancel, and the same association serves a second
  C-FIND in full (no response of the first one is left to confuse it).
- A final failure status without any pending response raises QueryFailed with the
  status and the comment.
- C-MOVE to a destination the SCP does not know: the final 0xA801 comes without any
  pending response, for our message ID, and the association goes on.
"""

from __future__ import annotations

import threading
import time

import pytest
from pydicom import Dataset

from fastdimse import uids
from fastdimse.association import find, move
from fastdimse.errors import QueryFailed
from fastdimse.sop import STUDY_ROOT_FIND, STUDY_ROOT_MOVE
from tests.support.peers import HOST, make_scu

pytestmark = pytest.mark.timeout(60)

AE_TITLE = "PYNDQR"


def _ident(i: int) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = f"1.2.3.{i}"
    ds.PatientID = f"P{i}"
    return ds


class QRPeer:
    """pynetdicom AE serving C-FIND/C-MOVE with the behaviour set per test."""

    def __init__(self):
        from pynetdicom import AE, evt

        self.find_mode = "many"
        self.first_sent = threading.Event()
        self.release_rest = threading.Event()
        self.cancelled: list[int] = []
        self.finds = 0
        ae = AE(ae_title=AE_TITLE)
        for sop in (STUDY_ROOT_FIND, STUDY_ROOT_MOVE):
            ae.add_supported_context(sop, [uids.IMPLICIT_VR_LITTLE_ENDIAN, uids.EXPLICIT_VR_LITTLE_ENDIAN])
        self.ae = ae
        self.server = ae.start_server((HOST, 0), block=False, evt_handlers=[
            (evt.EVT_C_FIND, self.on_find), (evt.EVT_C_MOVE, self.on_move)])
        self.port = self.server.server_address[1]

    def on_find(self, event):
        self.finds += 1
        if self.find_mode == "fail":
            status = Dataset()
            status.Status = 0xC001
            status.ErrorComment = "unable to match"
            yield status, None
            return
        if self.find_mode == "few":
            for i in range(3):
                yield 0xFF00, _ident(i)
            return
        for i in range(200):
            if event.is_cancelled:
                self.cancelled.append(event.request.MessageID)
                yield 0xFE00, None
                return
            yield 0xFF00, _ident(i)
            if i == 0:
                self.first_sent.set()
                # The rest only once the caller has had its first match.
                self.release_rest.wait(10)
            time.sleep(0.005)  # a slow back end: the C-CANCEL comes long before the end

    def on_move(self, event):
        yield None, None  # the destination is unknown: 0xA801, no pending response

    def stop(self):
        self.release_rest.set()
        self.server.shutdown()
        self.ae.shutdown()


@pytest.fixture
def qr_peer():
    peer = QRPeer()
    try:
        yield peer
    finally:
        peer.stop()


def _remote(peer):
    from fastdimse import Entity

    return Entity(AE_TITLE, HOST, peer.port)


def test_find_streams_and_cancel_drains_on_the_same_association(qr_peer):
    contexts = [(STUDY_ROOT_FIND, list(uids.DEFAULT_TRANSFER_SYNTAXES))]
    with make_scu().associate(_remote(qr_peer), contexts=contexts) as assoc:
        gen = find(assoc, {"StudyInstanceUID": "", "PatientID": ""}, "STUDY", message_id=41)
        first = next(gen)
        # The SCP holds its second match until we have the first: find() is lazy.
        assert first.StudyInstanceUID == "1.2.3.0"
        assert qr_peer.first_sent.is_set()
        qr_peer.release_rest.set()
        gen.close()  # C-CANCEL-RQ, then read up to the final response
        assert qr_peer.cancelled == [41]
        assert assoc.is_established
        qr_peer.find_mode = "few"
        again = list(find(assoc, {"StudyInstanceUID": ""}, "STUDY"))
        assert [d.StudyInstanceUID for d in again] == ["1.2.3.0", "1.2.3.1", "1.2.3.2"]
    assert qr_peer.finds == 2


def test_final_failure_without_pending_raises(qr_peer):
    qr_peer.find_mode = "fail"
    with pytest.raises(QueryFailed) as e:
        list(make_scu().find(_remote(qr_peer), {"PatientID": "X"}))
    assert e.value.status == 0xC001
    assert e.value.comment == "unable to match"
    assert "0xC001" in str(e.value)


def test_move_refused_without_pending(qr_peer):
    pending = []
    contexts = [(STUDY_ROOT_MOVE, list(uids.DEFAULT_TRANSFER_SYNTAXES))]
    with make_scu().associate(_remote(qr_peer), contexts=contexts) as assoc:
        rsp = move(assoc, {"StudyInstanceUID": "1.2.3"}, "NOWHERE", "STUDY", message_id=9, on_pending=pending.append)
        assert assoc.is_established
    assert pending == []
    assert rsp.status == 0xA801
    assert rsp.message_id_being_responded_to == 9
    assert (rsp.completed, rsp.failed, rsp.warning, rsp.failed_sop_instance_uids) == (0, 0, 0, [])
    assert not rsp.is_success
