"""DICOM over TLS between fastdimse and dcmtk (Debian's dcmtk is built with OpenSSL).

dcmtk's storescu and echoscu with ``+tls`` into our TLS SCP, our TLS SCU into dcmtk's
``storescp +tls``, with and without client certificates (mutual TLS), and pynetdicom
with ``ssl`` contexts both ways. Every instance is checked on the receiving side
(byte-identical data sets). Certificates are made by the tests (tests/support/tlscerts.py).
"""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.support import peers
from tests.support import storedata as sd
from tests.support.peers import DCMTK_STORE_SUCCESS, HOST, make_scu, peer_entity, run_dcmtk_storescu
from tests.support.tlscerts import Certs, make_certs, wait_logged

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def sources(tmp_path: Path) -> list[sd.Source]:
    return sd.generate_mixed(tmp_path / "src")


def _tls_server(certs: Certs, **kw):
    from fastdimse import TLSConfig

    return TLSConfig(cert=certs.server.cert, key=certs.server.key, ca=certs.ca, **kw)


def _dcmtk_tls(pair, certs: Certs) -> list[str]:
    """dcmtk's +tls KEY CERT with our CA trusted."""
    return ["+tls", str(pair.key), str(pair.cert), "+cf", str(certs.ca)]


def _run(argv: list[str]) -> tuple[int, str]:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


# --- dcmtk SCUs into our TLS SCP ---------------------------------------------------------

@pytest.mark.parametrize("require_client_cert", [False, True], ids=["server-auth", "mutual"])
def test_dcmtk_storescu_tls_to_our_scp(fastdimse_scp_factory, certs, sources, tmp_path, require_client_cert):
    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, tls=_tls_server(certs, require_client_cert=require_client_cert))
    rc, out = run_dcmtk_storescu(scp.port, [tmp_path / "src"], calling_ae="DCMSCU", called_ae=scp.ae_title,
                                 extra=["-R", *_dcmtk_tls(certs.client, certs)])
    assert rc == 0, out
    assert len(re.findall(DCMTK_STORE_SUCCESS, out)) == len(sources), out
    how = sd.assert_received(sources, storage, source_ae="DCMSCU")
    assert list(how.values()).count("identical") >= 10, how


def test_dcmtk_echoscu_tls_to_our_scp(fastdimse_scp_factory, certs):
    scp = fastdimse_scp_factory(tls=_tls_server(certs, require_client_cert=True))
    exe = peers.require_executable("echoscu")
    rc, out = _run([exe, "-v", "-aet", "ECHOSCU", "-aec", scp.ae_title, "-to", "10", "-ta", "10",
                    *_dcmtk_tls(certs.client, certs), HOST, str(scp.port)])
    assert rc == 0, out
    assert re.search(r"Received Echo Response \(Success\)", out), out


def test_dcmtk_client_with_a_foreign_certificate_is_refused(fastdimse_scp_factory, fastdimse_log, certs):
    """Mutual TLS refused: echoscu's certificate is signed by a CA we do not trust. It
    fails; we log why; and the next (good) client is served."""
    scp = fastdimse_scp_factory(tls=_tls_server(certs, require_client_cert=True))
    exe = peers.require_executable("echoscu")
    base = [exe, "-v", "-aet", "ECHOSCU", "-aec", scp.ae_title, "-to", "10", "-ta", "10"]
    rc, out = _run([*base, "+tls", str(certs.foreign_client.key), str(certs.foreign_client.cert),
                    "+cf", str(certs.ca), HOST, str(scp.port)])
    assert rc != 0, out
    wait_logged(fastdimse_log, "the client's certificate is not signed by a trusted CA")
    rc, out = _run([*base, *_dcmtk_tls(certs.client, certs), HOST, str(scp.port)])
    assert rc == 0, out


# --- our TLS SCU into dcmtk's TLS storescp -----------------------------------------------

@pytest.mark.parametrize("mutual", [False, True], ids=["server-auth", "mutual"])
def test_our_scu_tls_to_dcmtk_storescp(peer_log_dir, certs, sources, tmp_path, mutual):
    from fastdimse import TLSConfig

    out_dir = tmp_path / "received"
    # -rc: storescp requires (and verifies) our certificate; -vc: verifies it if sent.
    peer = peers.start_dcmtk_storage_scp(peer_log_dir, out_dir, ae_title="DCMSCP", extra=[
        "+B", *_dcmtk_tls(certs.server, certs), "-rc" if mutual else "-vc"])
    tls = (TLSConfig(ca=certs.ca, cert=certs.client.cert, key=certs.client.key) if mutual
           else TLSConfig(ca=certs.ca))
    try:
        results = make_scu(tls=tls).store(peer_entity(peer), [tmp_path / "src"], parallel=2)
        peer.wait_for_log(r"Received Store Request", count=len(sources))
    finally:
        peer.stop()
    assert [r.status for r in results] == [0x0000] * len(sources), [r.reason for r in results]
    how = sd.assert_received(sources, out_dir)
    assert set(how.values()) == {"identical"}


def test_our_scu_without_certificate_refused_by_dcmtk(peer_log_dir, certs, tmp_path):
    """storescp -rc requires a client certificate: our SCU without one gets an error
    saying it was refused (TLS 1.3 tells the client only after its handshake)."""
    from fastdimse import TLSConfig
    from fastdimse.errors import TLSError

    peer = peers.start_dcmtk_storage_scp(peer_log_dir, tmp_path / "received", ae_title="DCMSCP",
                                         extra=[*_dcmtk_tls(certs.server, certs), "-rc"])
    try:
        with pytest.raises(TLSError, match=r"refused|closed the connection during the TLS handshake"):
            make_scu(tls=TLSConfig(ca=certs.ca)).echo(peer_entity(peer))
        # with the certificate: accepted
        scu = make_scu(tls=TLSConfig(ca=certs.ca, cert=certs.client.cert, key=certs.client.key))
        assert scu.echo(peer_entity(peer)).status == 0x0000
    finally:
        peer.stop()


# --- pynetdicom with ssl contexts ----------------------------------------------------------

def test_pynetdicom_tls_both_ways(fastdimse_scp_factory, certs, tmp_path):
    """pynetdicom's AE with an ssl.SSLContext: its SCU echoes and stores into our TLS SCP
    (mutual TLS), and our TLS SCU echoes its TLS SCP."""
    pynetdicom = pytest.importorskip("pynetdicom")
    from pynetdicom.sop_class import CTImageStorage, Verification

    from fastdimse import TLSConfig

    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, tls=_tls_server(certs, require_client_cert=True))
    client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs.ca))
    client_ctx.load_cert_chain(str(certs.client.cert), str(certs.client.key))
    ds = sd.make_image(sd.CT_IMAGE)
    path = sd.write_instance(ds, tmp_path / "ct.dcm")
    ae = pynetdicom.AE(ae_title="PYNDSCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(CTImageStorage, sd.EXPLICIT_VR_LE)
    assoc = ae.associate(HOST, scp.port, ae_title=scp.ae_title, tls_args=(client_ctx, "localhost"))
    assert assoc.is_established
    try:
        assert assoc.send_c_echo().Status == 0x0000
        import pydicom

        assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0x0000
    finally:
        assoc.release()
    stored = sd.index_by_instance(storage)
    assert ds.SOPInstanceUID in stored

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs.ca))
    server_ctx.load_cert_chain(str(certs.server.cert), str(certs.server.key))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    pae = pynetdicom.AE(ae_title="PYNDSCP")
    pae.add_supported_context(Verification)
    port = peers.free_port()
    server = pae.start_server((HOST, port), block=False, ssl_context=server_ctx)
    try:
        tls = TLSConfig(ca=certs.ca, cert=certs.client.cert, key=certs.client.key)
        from fastdimse import Entity

        assert make_scu(tls=tls).echo(Entity("PYNDSCP", HOST, port)).status == 0x0000
    finally:
        server.shutdown()
