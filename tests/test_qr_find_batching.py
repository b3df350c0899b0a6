"""The C-FIND answer path in bulk: the SCP pulls matches from the back end in batches
and writes several pending responses at once; the SCU decodes each identifier with
the codec's fast paths. Checked against real peers (dcmtk findscu, pynetdicom) and
against the Python references of the fast paths."""

from __future__ import annotations

import random

import pytest
from pydicom import Dataset

import qr_helpers as qh
from peers import HOST, make_scu

from fastdimse import codec

QR_AE = "QRSCP"
TS = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")


def _reference(elements, ts):
    try:
        return codec._encode_text_elements_py(elements, ts)
    except Exception:  # struct.error: a value too long for a 16-bit length field
        return None


@pytest.mark.timeout(60)
def test_encode_text_elements_matches_the_python_reference():
    rng = random.Random(3)
    vrs = ["AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT",
           "PN", "IS", "DS", "SQ", "US", "OB"]
    values = [None, "", [], (), "A", "AB", "1.2.3", "Ä^Ö", ["A", "BC"], ("x", "yz"), ["A", 1],
              1, 12, True, 1.5, b"AB", "x" * 70001, ["x"] * 3]
    checked = 0
    for _ in range(3000):
        elements = [(rng.choice([0x00080052, 0x00100010, 0x00100020, 0x0020000D, 0x00200013,
                                 0x00081030, 0x00080018]),
                     rng.choice(vrs), rng.choice(values)) for _ in range(rng.randint(0, 6))]
        for ts in TS:
            got = codec.encode_text_elements(elements, ts)
            assert got == _reference(elements, ts), (elements, ts)
            checked += got is not None
    assert checked > 500  # the fast path did answer, not only fall back


@pytest.mark.timeout(30)
def test_decoded_identifiers_are_plain_pydicom_datasets():
    data = codec.encode_text_elements(
        [(0x00080005, "CS", "ISO_IR 100"), (0x00100010, "PN", "Doe^J"), (0x00200013, "IS", 4),
         (0x00080052, "CS", "IMAGE")], TS[1])
    a, b = codec.decode(data, TS[1]), codec.decode(data, TS[1])
    ref = Dataset()
    assert a.__dict__.keys() == ref.__dict__.keys()
    for k, v in ref.__dict__.items():
        if k != "_dict":
            assert a.__dict__[k] is v or isinstance(v, str) or v is None or type(v) is bool \
                or (a.__dict__[k] == v and a.__dict__[k] is not v), k
    # nothing mutable shared between two decoded data sets
    for k, v in a.__dict__.items():
        if isinstance(v, (dict, list, set)):
            assert v is not b.__dict__[k], k
    assert a.PatientName == "Doe^J" and a.InstanceNumber == 4 and a.QueryRetrieveLevel == "IMAGE"
    assert a._character_set == ["latin_1"] and not a._read_implicit and a._read_little
    a.PatientID = "P1"
    assert "PatientID" in a and "PatientID" not in b
    assert codec.encode(a, TS[0]) == codec.encode(codec.decode(codec.encode(a, TS[0]), TS[0]), TS[0])


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
