"""C-STORE both ways between fastdimse and real peers (dcmtk, pynetdicom).

Each test sends a folder of generated instances (CT, MR, 8-bit and RGB secondary
capture, RT Plan; each in implicit VR LE, explicit VR LE and explicit VR BE; in nested
folders) and checks on the receiving side that every instance arrived once, as a
Part-10 file naming it, with a data set byte-identical to the source's when the
transfer syntax did not change and equal element by element (read with pydicom)
when it was transcoded. The sending side's own report (exit code, printed statuses,
StoreResult) must agree.

The transcoding tests send the mix, plus encapsulated files from pydicom's test data,
to a peer that accepts only implicit VR little endian.
"""

from __future__ import annotations

import re
from pathlib import Path

import pydicom
import pytest

from tests.support import peers
from tests.support import storedata as sd
from tests.support.peers import (
    DCMTK_STORE_SUCCESS,
    PYNETDICOM_STORE_SUCCESS,
    SCU_AE,
    make_scu,
    peer_entity,
    run_dcmtk_storescu,
    run_pynetdicom_storescu,
)

pytestmark = pytest.mark.timeout(120)

VERIFICATION = "1.2.840.10008.1.1"


@pytest.fixture
def sources(tmp_path: Path) -> list[sd.Source]:
    """15 generated instances: 5 SOP-class kinds x 3 uncompressed syntaxes, in sub-folders."""
    return sd.generate_mixed(tmp_path / "src")


@pytest.fixture
def storage_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _assert_layout(storage_dir: Path, sources: list[sd.Source]) -> None:
    """Our SCP's default layout: {PatientID}/{Study}/{Series}/{SOPInstanceUID}.dcm."""
    for src in sources:
        ds = pydicom.dcmread(src.path, stop_before_pixels=True)
        expected = (storage_dir / str(ds.PatientID) / str(ds.StudyInstanceUID)
                    / str(ds.SeriesInstanceUID) / f"{src.sop_instance_uid}.dcm")
        assert expected.is_file(), f"{src.path.name} not at {expected}"
    assert sd.leftover_temp_files(storage_dir) == []


# --- dcmtk -------------------------------------------------------------------------------

@pytest.mark.parametrize("propose, received", [
    (["-R"], None), (["-R", "-xi"], sd.IMPLICIT_VR_LE), (["-xd"], sd.DEFLATED_EXPLICIT_VR_LE)],
    ids=["own-syntaxes", "implicit-only", "deflated"])
def test_dcmtk_storescu_to_our_scp(fastdimse_scp_factory, sources, storage_dir, propose,
                                   received):
    """storescu -R proposes what the files need (explicit VR LE first, so implicit files
    arrive transcoded by dcmtk); with -xi everything arrives as implicit VR LE; with -xd
    as deflated explicit VR LE (the SCP must inflate it to find the layout's values)."""
    scp = fastdimse_scp_factory(storage_dir=storage_dir)
    src_dir = storage_dir.parent / "src"
    rc, out = run_dcmtk_storescu(scp.port, [src_dir], calling_ae="DCMSCU",
                                 called_ae=scp.ae_title, extra=propose)
    assert rc == 0, out
    assert len(re.findall(DCMTK_STORE_SUCCESS, out)) == len(sources), out
    how = sd.assert_received(sources, storage_dir, source_ae="DCMSCU", received_syntax=received)
    if received == sd.IMPLICIT_VR_LE:
        assert list(how.values()).count("identical") == 5  # the implicit sources
    elif received == sd.DEFLATED_EXPLICIT_VR_LE:
        assert set(how.values()) == {"transcoded"}
    else:
        # explicit LE and BE sources go as they are: their bytes must be kept exactly
        assert list(how.values()).count("identical") >= 10, how
    _assert_layout(storage_dir, sources)


@pytest.mark.parametrize("max_pdu", [131072, 4096])
def test_our_scu_to_dcmtk_storescp(peer_log_dir, sources, tmp_path, max_pdu):
    """storescp +B writes each data set exactly as received; a 4096-byte PDU makes every
    image go in several P-DATA-TF PDUs."""
    out_dir = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(peer_log_dir, out_dir, ae_title="DCMSCP",
                                         max_pdu=max_pdu, extra=["+B"])
    try:
        results = make_scu().store(peer_entity(peer), [tmp_path / "src"])
        peer.wait_for_log(r"Received Store Request", count=len(sources))
    finally:
        peer.stop()
    assert len(results) == len(sources)
    assert [r.index for r in results] == list(range(len(sources)))
    for r in results:
        assert r.status == 0x0000 and r.reason is None and r.is_success, (r, peer.log()[-2000:])
        assert r.sent_transfer_syntax == r.transfer_syntax
        assert r.bytes == len(sd.dataset_bytes(Path(r.path)))
    assert {r.sop_instance_uid for r in results} == {s.sop_instance_uid for s in sources}
    how = sd.assert_received(sources, out_dir)
    assert set(how.values()) == {"identical"}


# --- pynetdicom --------------------------------------------------------------------------

def test_pynetdicom_storescu_to_our_scp(fastdimse_scp_factory, sources, storage_dir):
    """pynetdicom's storescu app with -cx proposes exactly each file's own syntax."""
    scp = fastdimse_scp_factory(storage_dir=storage_dir)
    rc, out = run_pynetdicom_storescu(scp.port, storage_dir.parent / "src", calling_ae="PYNDSCU",
                                      called_ae=scp.ae_title, extra=["-cx"])
    assert rc == 0, out
    assert len(re.findall(PYNETDICOM_STORE_SUCCESS, out)) == len(sources), out
    how = sd.assert_received(sources, storage_dir, source_ae="PYNDSCU")
    assert set(how.values()) == {"identical"}, how
    _assert_layout(storage_dir, sources)


def test_our_scu_to_pynetdicom_storescp(peer_log_dir, sources, tmp_path):
    """pynetdicom's storescp app decodes and re-encodes (pydicom) in the context's syntax."""
    out_dir = tmp_path / "received"
    peer = peers.start_pynetdicom_storescp(peer_log_dir, out_dir, ae_title="PYNDSTORE")
    try:
        results = make_scu().store(peer_entity(peer), [tmp_path / "src"])
        peer.wait_for_log(r"Storing DICOM file", count=len(sources))
    finally:
        peer.stop()
    assert [r.status for r in results] == [0x0000] * len(sources), [r.reason for r in results]
    assert all(r.sent_transfer_syntax == r.transfer_syntax for r in results)
    how = sd.assert_received(sources, out_dir)
    assert set(how.values()) == {"identical"}, how


# --- transcoding to a peer that accepts only implicit VR little endian ---------------------

ENCAPSULATED = [("SC_rgb_rle.dcm", sd.RLE_LOSSLESS), ("SC_rgb_jpeg_dcmtk.dcm", sd.JPEG_BASELINE)]
# Real uncompressed files from pydicom's test data: big endian MR, odd-sized big endian RGB.
REAL_UNCOMPRESSED = ["MR_small_bigendian.dcm", "SC_rgb_small_odd_big_endian.dcm"]


def _implicit_only_mix(tmp_path: Path) -> tuple[list[Path], list[sd.Source], dict[str, str]]:
    """(items to send, the uncompressed sources, {encapsulated file path: its syntax})."""
    generated = sd.generate_mixed(tmp_path / "src")
    real = []
    for name in REAL_UNCOMPRESSED:
        p = sd.pydicom_test_file(name)
        m = sd.read_meta(p)
        real.append(sd.Source(p, str(m.MediaStorageSOPClassUID), str(m.MediaStorageSOPInstanceUID),
                              str(m.TransferSyntaxUID)))
    encapsulated = {str(sd.pydicom_test_file(n)): ts for n, ts in ENCAPSULATED}
    for path, ts in encapsulated.items():
        assert str(sd.read_meta(Path(path)).TransferSyntaxUID) == ts
    # The encapsulated files go first, in the middle and last, between the others.
    items: list[Path] = [Path(list(encapsulated)[0]), tmp_path / "src",
                         *(s.path for s in real), Path(list(encapsulated)[1])]
    return items, generated + real, encapsulated


def _check_implicit_only(results, uncompressed: list[sd.Source], encapsulated: dict[str, str],
                         out_dir: Path) -> None:
    assert len(results) == len(uncompressed) + len(encapsulated)
    by_path = {str(r.path): r for r in results}
    for path, ts in encapsulated.items():
        r = by_path[path]
        assert r.status is None and not r.is_success, r
        assert r.sent_transfer_syntax is None and r.bytes == 0, r
        assert r.reason and ts in r.reason, f"the reason should name {ts}: {r.reason!r}"
    for src in uncompressed:
        r = by_path[str(src.path)]
        assert r.status == 0x0000, r
        assert r.sent_transfer_syntax == sd.IMPLICIT_VR_LE, r
        assert r.sop_instance_uid == src.sop_instance_uid
    how = sd.assert_received(uncompressed, out_dir, received_syntax=sd.IMPLICIT_VR_LE)
    n_implicit = sum(s.transfer_syntax == sd.IMPLICIT_VR_LE for s in uncompressed)
    assert list(how.values()).count("transcoded") == len(uncompressed) - n_implicit


def test_transcoding_to_dcmtk_storescp_accepting_only_implicit(peer_log_dir, tmp_path):
    """storescp +xi (accepts implicit VR LE only) +B (writes the data sets as received)."""
    items, uncompressed, encapsulated = _implicit_only_mix(tmp_path)
    out_dir = tmp_path / "received"
    peer = peers.start_dcmtk_storage_scp(peer_log_dir, out_dir, ae_title="DCMSCP",
                                         extra=["+xi", "+B"])
    try:
        results = make_scu().store(peer_entity(peer), items)
        peer.wait_for_log(r"Received Store Request", count=len(uncompressed))
    finally:
        peer.stop()
    _check_implicit_only(results, uncompressed, encapsulated, out_dir)
    # The compressed instances never reached the peer.
    assert len(re.findall(r"Received Store Request", peer.log())) == len(uncompressed)


def test_transcoding_to_our_scp_accepting_only_implicit(fastdimse_scp_factory, tmp_path):
    """Our SCP offering the storage classes with implicit VR LE only."""
    items, uncompressed, encapsulated = _implicit_only_mix(tmp_path)
    classes = sorted({s.sop_class_uid for s in uncompressed} | {sd.SC_IMAGE})
    stored_calls = []
    scp = fastdimse_scp_factory(
        storage_dir=tmp_path / "store", storage_sop_classes=[],
        supported_abstract_syntaxes=[VERIFICATION, *classes],
        transfer_syntaxes=[sd.IMPLICIT_VR_LE],
        on_stored=lambda info: stored_calls.append(info))
    results = make_scu().store(scp.remote(), items)
    _check_implicit_only(results, uncompressed, encapsulated, tmp_path / "store")
    assert len(stored_calls) == len(uncompressed)
    assert {c.transfer_syntax for c in stored_calls} == {sd.IMPLICIT_VR_LE}
    assert all(c.calling_ae_title == SCU_AE for c in stored_calls)
