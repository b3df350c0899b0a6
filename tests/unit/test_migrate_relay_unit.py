"""relay.py without peers: how failures are classified, and that nothing a peer sends can
name a path outside a destination folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastdimse.errors import AssociationAborted, AssociationRejected, DicomTimeoutError, QueryFailed
from fastdimse.migrate import relay
from fastdimse.migrate.model import StudyRecord, TransferContext
from fastdimse.scu import StoreResult

pytestmark = [pytest.mark.timeout(30)]


@pytest.mark.parametrize("value", ["../../etc", "..", ".", "", "a/b\\c", "/abs", "1.2.840\x00x"])
def test_folder_paths_stay_inside(tmp_path, value):
    p = relay._folder_path(tmp_path, value, value, value, value).resolve()
    assert p.is_relative_to(tmp_path.resolve()) and len(p.relative_to(tmp_path.resolve()).parts) == 4, p


@pytest.mark.parametrize("error, transient", [
    (DicomTimeoutError("timed out"), True),
    (AssociationAborted("aborted"), True),
    (AssociationRejected("busy", result=2, source=1, reason=1), True),
    (AssociationRejected("no", result=1, source=1, reason=3), False),
    (QueryFailed("refused", 0xA900), False),
])
def test_transient_errors(error, transient):
    assert relay._is_transient_error(error) is transient


@pytest.mark.parametrize("status, transient", [(0xA700, True), (0xA702, True), (0xC001, True),
                                               (0xA900, False), (0x0122, False), (None, False)])
def test_transient_statuses(status, transient):
    assert relay._is_transient_status(status) is transient


def _result(uid, status, reason=None):
    return StoreResult(uid, "1.2.840.10008.5.1.4.1.1.2", status, reason, f"/x/{uid}.dcm", "1.2.840.10008.1.2.1",
                       None, 0, 0)


def test_tally_counts_and_reasons():
    t = relay._Tally()
    assert t.settle(_result("1", 0x0000)) and t.settle(_result("2", 0xB000))
    assert not t.settle(_result("3", 0xA700, "out of resources"))
    assert not t.settle(_result("4", None, "no association: connection refused"))
    assert not t.settle(_result("5", 0x0122, "SOP class not supported"))
    o = t.outcome()
    assert (o.completed, o.warning, o.failed, o.failed_uids) == (1, 1, 3, ["3", "4", "5"])
    assert o.reasons == ["0xA700 out of resources", "not sent: no association: connection refused",
                         "0x0122 SOP class not supported"]
    assert o.transient
    only_permanent = relay._Tally()
    only_permanent.settle(_result("5", 0x0122))
    assert not only_permanent.outcome().transient


def test_relay_needs_nodes_and_a_catcher(tmp_path):
    from fastdimse import DICOMSCU, Entity

    scu = DICOMSCU(Entity("ME", "127.0.0.1", 0))
    node = Entity("SRC", "127.0.0.1", 1)
    with pytest.raises(ValueError, match="folder"):
        relay.relay_study(TransferContext(scu, tmp_path, node, "relay"), StudyRecord("1.2.3"))
    with pytest.raises(ValueError, match="catcher"):
        relay.relay_study(TransferContext(scu, node, node, "relay"), StudyRecord("1.2.3"))


def test_folder_studies_skips_what_is_not_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "fake.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 10)  # a broken header
    (tmp_path / "empty").mkdir()
    assert relay.folder_studies(tmp_path) == {}
    assert relay.folder_studies(Path(tmp_path / "empty")) == {}
