"""C-STORE with tag coercion (``DICOMSCU.store(..., coerce=...)``) to real peers.

The stored copy (read with pydicom) has the new values and every other element
unchanged, its pixel data bytes hash the same as the source's, and the source files
are byte for byte what they were. CT-sized images (512 x 512 x 16 bits, larger than
the size below which a file is sent from memory) and a small one with sequences before
the coerced tags; implicit and explicit VR little endian and explicit VR big endian;
an encapsulated (JPEG) file, whose header is explicit VR little endian too; coercion
combined with transcoding to a peer that accepts implicit VR only; a deflated input,
which fails with its reason and reaches no peer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest

from tests.support import peers
from tests.support import storedata as sd
from tests.support.peers import make_scu, peer_entity

pytestmark = pytest.mark.timeout(120)

COERCE = [("PatientID", "X123"), ((0x0010, 0x0021), "SITE")]


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _file_sha(p: Path) -> str:
    return _sha(p.read_bytes())


def _sources(folder: Path) -> list[Path]:
    """CT 512x512 in the three uncompressed syntaxes, a small MR with sequences, an RT
    plan (no pixel data), each with PatientID OLD1 and no IssuerOfPatientID."""
    out = []
    for ts in sd.UNCOMPRESSED:
        ds = sd.make_image(sd.CT_IMAGE, patient_id="OLD1", rows=512, columns=512, seed=len(out))
        out.append(sd.write_instance(ds, folder / f"ct_{ts}.dcm", ts))
    mr = sd.make_image(sd.MR_IMAGE, patient_id="OLD1", with_sequence=True)
    out.append(sd.write_instance(mr, folder / "mr.dcm", sd.EXPLICIT_VR_LE))
    out.append(sd.write_instance(sd.make_rt_plan(patient_id="OLD1"), folder / "plan.dcm", sd.IMPLICIT_VR_LE))
    return out


def _expected(src: Path) -> pydicom.Dataset:
    ds = pydicom.dcmread(src)
    ds.PatientID = "X123"
    ds.IssuerOfPatientID = "SITE"
    return ds


def _pixels_le(ds: pydicom.Dataset) -> bytes | None:
    """The pixel data bytes, little endian (as in the generated source)."""
    if "PixelData" not in ds:
        return None
    data = ds.PixelData
    if ds.file_meta.TransferSyntaxUID == sd.EXPLICIT_VR_BE and ds.BitsAllocated > 8:
        data = sd.swap_words(data, ds.BitsAllocated // 8)
    return data


def _check_stored(srcs: list[Path], out_dir: Path, *, received_syntax: str | None = None) -> None:
    received = sd.index_by_instance(out_dir)
    assert len(received) == len(srcs), sorted(received)
    for src in srcs:
        want = _expected(src)
        got_path = received[str(want.SOPInstanceUID)]
        got = pydicom.dcmread(got_path)
        assert got.PatientID == "X123" and got.IssuerOfPatientID == "SITE", got_path
        if received_syntax is not None:
            assert got.file_meta.TransferSyntaxUID == received_syntax
        sd.assert_same_elements(want, got)
        a, b = _pixels_le(want), _pixels_le(got)
        assert (a is None) == (b is None)
        if a is not None:
            assert _sha(a) == _sha(b), f"pixel data of {src.name} differs"


def _store(peer, items, **kw):
    results = make_scu().store(peer_entity(peer), items, coerce=COERCE, **kw)
    return results


@pytest.mark.parametrize("max_pdu", [131072, 4096])
def test_coerce_to_dcmtk_storescp(peer_log_dir, tmp_path, max_pdu, fastdimse_log):
    """storescp +B writes each data set as received: what we sent, byte for byte. A
    coerced instance never goes with sendfile (its bytes differ from the file's)."""
    srcs = _sources(tmp_path / "src")
    before = {p: _file_sha(p) for p in srcs}
    out_dir = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(peer_log_dir, out_dir, ae_title="DCMSCP", max_pdu=max_pdu, extra=["+B"])
    try:
        results = _store(peer, srcs)
        peer.wait_for_log(r"Received Store Request", count=len(srcs))
    finally:
        peer.stop()
    for r in results:
        assert r.status == 0x0000 and r.reason is None, r
        assert r.sent_transfer_syntax == r.transfer_syntax
        # PatientID "OLD1" -> "X123" (same length) plus (0010,0021) "SITE": 12 bytes more.
        assert r.bytes == len(sd.dataset_bytes(Path(r.path))) + 12, r
    _check_stored(srcs, out_dir)
    assert {p: _file_sha(p) for p in srcs} == before, "a source file was changed"
    log = fastdimse_log.text
    assert "(sendfile)" not in log
    assert log.count("(streamed)") == len(srcs), log[-3000:]
    assert log.count("2 element(s) coerced") == len(srcs)


def test_coerce_to_pynetdicom_storescp(peer_log_dir, tmp_path):
    srcs = _sources(tmp_path / "src")
    before = {p: _file_sha(p) for p in srcs}
    out_dir = tmp_path / "received"
    peer = peers.start_pynetdicom_storescp(peer_log_dir, out_dir, ae_title="PYNDSTORE")
    try:
        results = _store(peer, srcs, parallel=2)
        peer.wait_for_log(r"Storing DICOM file", count=len(srcs))
    finally:
        peer.stop()
    assert [r.status for r in results] == [0x0000] * len(srcs), [r.reason for r in results]
    _check_stored(srcs, out_dir)
    assert {p: _file_sha(p) for p in srcs} == before


def test_coerce_encapsulated_and_in_memory(peer_log_dir, tmp_path):
    """A JPEG file (its fragments streamed as they are) and a pydicom Dataset."""
    jpeg = sd.pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm")
    before = _file_sha(jpeg)
    mem = sd.make_image(sd.CT_IMAGE, patient_id="OLD1")
    out_dir = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(peer_log_dir, out_dir, ae_title="DCMSCP", extra=["+xa", "+B"])
    try:
        results = _store(peer, [jpeg, mem])
        peer.wait_for_log(r"Received Store Request", count=2)
    finally:
        peer.stop()
    assert [r.status for r in results] == [0x0000, 0x0000], [r.reason for r in results]
    assert results[0].sent_transfer_syntax == sd.JPEG_BASELINE
    received = sd.index_by_instance(out_dir)
    src = pydicom.dcmread(jpeg)
    got = pydicom.dcmread(received[str(src.SOPInstanceUID)])
    assert got.PatientID == "X123" and got.IssuerOfPatientID == "SITE"
    assert _sha(got.PixelData) == _sha(src.PixelData)
    src.PatientID, src.IssuerOfPatientID = "X123", "SITE"
    sd.assert_same_elements(src, got)
    got_mem = pydicom.dcmread(received[str(mem.SOPInstanceUID)])
    assert got_mem.PatientID == "X123" and _sha(got_mem.PixelData) == _sha(mem.PixelData)
    assert _file_sha(jpeg) == before


def test_coerce_with_transcoding_to_implicit_only(peer_log_dir, tmp_path):
    """storescp +xi accepts implicit VR LE only: explicit LE and BE are coerced, then
    transcoded on the way."""
    srcs = _sources(tmp_path / "src")
    out_dir = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(peer_log_dir, out_dir, ae_title="DCMSCP", extra=["+xi", "+B"])
    try:
        results = _store(peer, srcs)
        peer.wait_for_log(r"Received Store Request", count=len(srcs))
    finally:
        peer.stop()
    assert [r.status for r in results] == [0x0000] * len(srcs), [r.reason for r in results]
    assert {r.sent_transfer_syntax for r in results} == {sd.IMPLICIT_VR_LE}
    assert sum(r.transfer_syntax != sd.IMPLICIT_VR_LE for r in results) == 3
    _check_stored(srcs, out_dir, received_syntax=sd.IMPLICIT_VR_LE)


def test_coerce_deflated_fails_with_its_reason(peer_log_dir, tmp_path):
    ds = sd.make_image(sd.CT_IMAGE, patient_id="OLD1")
    deflated = tmp_path / "src" / "deflated.dcm"
    deflated.parent.mkdir(parents=True)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = sd.DEFLATED_EXPLICIT_VR_LE
    ds.save_as(deflated, enforce_file_format=True)
    plain = sd.write_instance(sd.make_image(sd.CT_IMAGE, patient_id="OLD1"), tmp_path / "src" / "plain.dcm")
    out_dir = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(peer_log_dir, out_dir, ae_title="DCMSCP", extra=["+B"])
    try:
        coerced = _store(peer, [deflated, plain])
        peer.wait_for_log(r"Received Store Request", count=1)
        # Without coercion the same file goes (the refusal is the coercion's).
        uncoerced = make_scu().store(peer_entity(peer), [deflated])
        peer.wait_for_log(r"Received Store Request", count=2)
    finally:
        peer.stop()
    bad, good = coerced
    assert bad.status is None and not bad.is_success and bad.bytes == 0, bad
    assert "deflated" in bad.reason and sd.DEFLATED_EXPLICIT_VR_LE in bad.reason, bad.reason
    assert good.status == 0x0000, good
    assert uncoerced[0].status == 0x0000, uncoerced[0]
    received = sd.index_by_instance(out_dir)
    assert pydicom.dcmread(received[str(ds.SOPInstanceUID)]).PatientID == "OLD1", "sent unchanged only when asked"
