"""dcmtk's echoscu sees the maximum PDU length our SCP advertises (moved from
tests/behaviour/test_association.py, whose other tests play the peer themselves)."""

from __future__ import annotations

import pytest

from tests.support.peers import run_dcmtk_echoscu

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("dcmtk_max", ["4096", "131072"])
def test_dcmtk_sees_our_scp_max_pdu(fastdimse_scp_factory, dcmtk_max):
    srv = fastdimse_scp_factory(max_pdu_length=8192)
    rc, out = run_dcmtk_echoscu(srv.port, called_ae=srv.ae_title, extra=["-pdu", dcmtk_max])
    assert rc == 0, out
    assert "Max Send PDV: 8180" in out, out  # 8192 less the 12 bytes of PDU and PDV headers
