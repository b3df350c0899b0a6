"""The C-FIND answer path in bulk: the SCP pulls matches from the back end in batches
and writes several pending responses at once; the SCU decodes each identifier with
the codec's fast paths. Checked against real peers (dcmtk findscu, pynetdicom); the fast
paths against their Python references are in tests/unit/test_qr_find_codec.py."""

from __future__ import annotations

import pytest
from pydicom import Dataset

from tests.support import qr_helpers as qh
from tests.support.peers import HOST, make_scu

QR_AE = "QRSCP"


def _one_series(n: int, tag: int):
    truth = qh.bulk_truth(n, tag=tag)
    keys = {"StudyInstanceUID": truth[0].StudyInstanceUID,
            "SeriesInstanceUID": truth[0].SeriesInstanceUID, "SOPInstanceUID": "", "InstanceNumber": ""}
    return truth, keys


@pytest.mark.timeout(60)
def test_findscu_gets_every_match_of_a_large_find(tmp_path):
    """dcmtk findscu: 700 matches (many batches of pending responses per write), in the
    back end's order, then the final success."""
    truth, keys = _one_series(700, tag=21)
    backend = qh.MemoryBackend(truth)
    scp, remote = qh.start_our_qr(QR_AE, backend=backend)
    try:
        rc, out, answers = qh.run_findscu(remote.port, QR_AE, "study", "IMAGE", keys, tmp_path / "rsp")
        assert rc == 0, out
        assert "Received Final Find Response (Success)" in out, out[-2000:]
        assert [a.SOPInstanceUID for a in answers] == [t.SOPInstanceUID for t in truth]
        assert backend.finished
    finally:
        scp.stop()


@pytest.mark.timeout(60)
def test_pynetdicom_gets_every_match_of_a_large_find():
    from pynetdicom import AE
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    truth, keys = _one_series(500, tag=22)
    scp, remote = qh.start_our_qr(QR_AE, backend=qh.MemoryBackend(truth))
    try:
        ae = AE(ae_title="PYNDSCU")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate(HOST, remote.port, ae_title=QR_AE)
        assert assoc.is_established
        ident = Dataset()
        ident.QueryRetrieveLevel = "IMAGE"
        for k, v in keys.items():
            setattr(ident, k, v)
        got, statuses = [], []
        for status, identifier in assoc.send_c_find(ident, StudyRootQueryRetrieveInformationModelFind):
            statuses.append(status.Status)
            if status.Status in (0xFF00, 0xFF01):
                got.append(identifier.SOPInstanceUID)
        assoc.release()
        assert got == [t.SOPInstanceUID for t in truth]
        assert statuses[-1] == 0x0000 and statuses[:-1] == [0xFF00] * len(truth)
    finally:
        scp.stop()


class _FailingBackend(qh.MemoryBackend):
    """Answers ``good`` matches, then its generator raises (the index failed)."""

    def __init__(self, instances, good: int):
        super().__init__(instances)
        self.good = good

    def find(self, identifier, level, root):
        from fastdimse.qr import UnableToProcess

        inner = super().find(identifier, level, root)

        def gen():
            for i, ds in enumerate(inner):
                if i == self.good:
                    raise UnableToProcess("the index failed here")
                yield ds

        return gen()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("good", [0, 5, 70])
def test_failure_after_some_matches_follows_them(good):
    """A back end failing after some matches: those matches arrive first, then the
    failure status (not lost in a batch, not answered as success)."""
    from fastdimse.query import QueryFailed

    truth, keys = _one_series(100, tag=23)
    scp, remote = qh.start_our_qr(QR_AE, backend=_FailingBackend(truth, good))
    try:
        got = []
        with pytest.raises(QueryFailed) as exc:
            for ds in make_scu().find(remote, keys, "IMAGE", "study"):
                got.append(ds.SOPInstanceUID)
        assert exc.value.status == 0xC000 and "the index failed here" in (exc.value.comment or "")
        assert got == [t.SOPInstanceUID for t in truth[:good]]
        # the SCP goes on: a C-FIND of one match after it (which fails too when good == 0)
        one = {**keys, "SOPInstanceUID": truth[0].SOPInstanceUID}
        if good:
            assert len(list(make_scu().find(remote, one, "IMAGE", "study"))) == 1
        else:
            with pytest.raises(QueryFailed):
                list(make_scu().find(remote, one, "IMAGE", "study"))
    finally:
        scp.stop()
