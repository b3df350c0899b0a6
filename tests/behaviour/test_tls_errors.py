"""TLS failures each say what is wrong, and the server keeps serving.

A wrong CA, an expired certificate, a hostname mismatch (accepted with
verify_hostname=False, the chain still verified), a missing or untrusted client
certificate, a plaintext peer on a TLS port and a TLS peer on a plaintext port: the
client gets a :class:`~fastdimse.errors.TLSError` naming the cause, never "PDU too
large" or a hang; the SCP logs the reason, and a good association right after works.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from tests.support import peers
from tests.support.cli import assert_one_error_line, fastdimse
from tests.support.peers import HOST, make_scu
from tests.support.tlscerts import Certs, make_certs, wait_logged as _logged

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _server_tls(pair, certs: Certs, **kw):
    from fastdimse import TLSConfig

    return TLSConfig(cert=pair.cert, key=pair.key, ca=certs.ca, **kw)


def _client_tls(certs: Certs, pair=None, **kw):
    from fastdimse import TLSConfig

    return TLSConfig(ca=certs.ca, cert=pair.cert if pair else None, key=pair.key if pair else None, **kw)


def _echo_fails(remote, tls, pattern: str):
    from fastdimse.errors import TLSError

    with pytest.raises(TLSError, match=pattern) as info:
        make_scu(tls=tls).echo(remote)
    return info.value


def _still_serving(scp, certs: Certs, tls=True) -> None:
    """A good association right after the bad one."""
    assert make_scu(tls=_client_tls(certs) if tls else None).echo(scp.remote()).status == 0x0000


# --- the server's certificate ----------------------------------------------------------------

def test_server_certificate_from_an_unknown_ca(fastdimse_scp_factory, fastdimse_log, certs):
    scp = fastdimse_scp_factory(tls=_server_tls(certs.foreign_server, certs))
    _echo_fails(scp.remote(), _client_tls(certs), r"server's certificate is not signed by a trusted CA")
    # the server logs the refused handshake (the client's alert, when it arrives before the close)
    _logged(fastdimse_log, "refused: TLS: the ", 2)  # the port probe and the client
    from fastdimse import TLSConfig

    assert make_scu(tls=TLSConfig(ca=certs.other_ca)).echo(scp.remote()).status == 0x0000


def test_expired_server_certificate(fastdimse_scp_factory, certs):
    scp = fastdimse_scp_factory(tls=_server_tls(certs.expired_server, certs))
    _echo_fails(scp.remote(), _client_tls(certs), r"server's certificate has expired")
    # an expired certificate is not excused by verify_hostname=False
    _echo_fails(scp.remote(), _client_tls(certs, verify_hostname=False), r"has expired")


def test_hostname_mismatch_and_verify_hostname_false(fastdimse_scp_factory, certs):
    scp = fastdimse_scp_factory(tls=_server_tls(certs.misnamed_server, certs))
    _echo_fails(scp.remote(), _client_tls(certs), r"not valid for the name 127\.0\.0\.1 \(hostname mismatch")
    assert make_scu(tls=_client_tls(certs, verify_hostname=False)).echo(scp.remote()).status == 0x0000
    # the name checked can be given: the certificate's own name passes
    assert make_scu(tls=_client_tls(certs, server_name="dicom.example.org")).echo(scp.remote()).status == 0
    # verify_hostname=False still verifies the chain
    other = fastdimse_scp_factory(ae_title="OTHER", tls=_server_tls(certs.foreign_server, certs))
    _echo_fails(other.remote(), _client_tls(certs, verify_hostname=False), r"not signed by a trusted CA")


# --- client certificates (mutual TLS) ---------------------------------------------------------

def test_client_certificate_required_missing_or_untrusted(fastdimse_scp_factory, fastdimse_log, certs):
    scp = fastdimse_scp_factory(tls=_server_tls(certs.server, certs, require_client_cert=True))
    _echo_fails(scp.remote(), _client_tls(certs), r"requires a client certificate")
    _logged(fastdimse_log, "the client sent no certificate and one is required")
    _echo_fails(scp.remote(), _client_tls(certs, certs.foreign_client), r"does not trust the CA of our certificate")
    _logged(fastdimse_log, "the client's certificate is not signed by a trusted CA")
    assert make_scu(tls=_client_tls(certs, certs.client)).echo(scp.remote()).status == 0x0000


# --- plaintext and TLS on the wrong ports -----------------------------------------------------

def test_plaintext_peer_on_a_tls_port(fastdimse_scp_factory, fastdimse_log, certs):
    from fastdimse.errors import TLSError

    scp = fastdimse_scp_factory(tls=_server_tls(certs.server, certs))
    with pytest.raises(TLSError, match=r"the peer answered with TLS \(a TLS port"):
        make_scu().echo(scp.remote())
    _logged(fastdimse_log, "a plaintext DICOM peer on the TLS port")
    # dcmtk's plaintext echoscu too: it fails, we log why
    exe = peers.require_executable("echoscu")
    done = subprocess.run([exe, "-aec", scp.ae_title, "-to", "5", "-ta", "5", HOST, str(scp.port)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    _logged(fastdimse_log, "a plaintext DICOM peer on the TLS port", 2)
    _still_serving(scp, certs)


def test_tls_peer_on_a_plaintext_port(fastdimse_scp_factory, fastdimse_log, certs):
    scp = fastdimse_scp_factory()
    err = _echo_fails(scp.remote(), _client_tls(certs), r"the peer does not speak TLS \(a plaintext port\?\)")
    assert "PDU" not in str(err)
    _logged(fastdimse_log, "a TLS client on a plaintext port")
    # dcmtk's echoscu +tls too
    exe = peers.require_executable("echoscu")
    done = subprocess.run([exe, "-aec", scp.ae_title, "-to", "5", "-ta", "5", "+tls", str(certs.client.key),
                           str(certs.client.cert), "+cf", str(certs.ca), HOST, str(scp.port)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    _logged(fastdimse_log, "a TLS client on a plaintext port", 2)
    _still_serving(scp, certs, tls=False)


def test_our_plaintext_scu_to_a_silent_tls_only_port(peer_log_dir, certs, tmp_path):
    """dcmtk's storescp +tls closes on a plaintext A-ASSOCIATE-RQ without a word: the
    error hints at TLS instead of leaving a bare "closed"."""
    from fastdimse.errors import NetworkError

    peer = peers.start_dcmtk_storage_scp(peer_log_dir, tmp_path / "in", extra=[
        "+tls", str(certs.server.key), str(certs.server.cert), "+cf", str(certs.ca), "-vc"])
    try:
        with pytest.raises(NetworkError, match=r"a TLS-only port\?"):
            make_scu().echo(peers.peer_entity(peer))
    finally:
        peer.stop()


def test_a_silent_peer_on_the_tls_port_costs_one_connection(fastdimse_scp_factory, fastdimse_log, certs):
    """A client that connects and says nothing is dropped when the handshake's (ACSE)
    timeout ends, while others are served meanwhile."""
    scp = fastdimse_scp_factory(tls=_server_tls(certs.server, certs), acse_timeout=1.0)
    with socket.create_connection((HOST, scp.port), timeout=20) as s:
        _still_serving(scp, certs)
        assert s.recv(100) == b""  # closed by the server, nothing sent
    _logged(fastdimse_log, "the TLS handshake timed out")
    _still_serving(scp, certs)


# --- every association of a DICOMSCU ----------------------------------------------------------

def test_find_get_move_and_parallel_store_over_tls(fastdimse_scp_factory, certs, tmp_path):
    """With tls= on the DICOMSCU, store (parallel), find, get and move all run over TLS
    into a TLS-only archive (a plaintext one would refuse each: the other tests)."""
    from fastdimse import Entity
    from tests.support import storedata as sd

    catcher = fastdimse_scp_factory(ae_title="CATCHER", storage_dir=tmp_path / "caught")
    archive = fastdimse_scp_factory(ae_title="ARCHIVE", storage_dir=tmp_path / "archive",
                                    known_entities=[Entity("CATCHER", HOST, catcher.port)],
                                    tls=_server_tls(certs.server, certs, require_client_cert=True))
    scu = make_scu(tls=_client_tls(certs, certs.client))
    sources = sd.generate_mixed(tmp_path / "src")
    summary = scu.store(archive.remote(), [tmp_path / "src"], parallel=2, results="summary")
    assert summary.completed == len(sources) and summary.failed == 0, summary
    studies = {str(m.StudyInstanceUID) for m in scu.find(archive.remote(), {"PatientID": "MIX",
                                                                            "StudyInstanceUID": ""})}
    assert studies == {str(pydicom.dcmread(s.path, stop_before_pixels=True).StudyInstanceUID) for s in sources}
    study = sorted(studies)[0]
    got = scu.get(archive.remote(), {"StudyInstanceUID": study}, tmp_path / "got")
    assert got.completed > 0 and got.failed == 0, got
    moved = scu.move(archive.remote(), {"StudyInstanceUID": study}, "CATCHER")
    assert moved.completed == got.completed and moved.failed == 0, moved
    assert len(sd.index_by_instance(tmp_path / "got")) == got.completed
    assert len(sd.index_by_instance(tmp_path / "caught")) == moved.completed


# --- configuration errors ----------------------------------------------------------------------

def test_configuration_errors(tmp_path, certs):
    from fastdimse import DICOMSCP, DICOMSCU, Entity, TLSConfig
    from fastdimse.errors import TLSError

    me = Entity("ME", HOST, 0)
    with pytest.raises(TLSError, match=r"does not exist"):
        DICOMSCU(me, tls=TLSConfig(ca=tmp_path / "missing.pem"))
    with pytest.raises(TLSError, match=r"CA bundle \(ca=\) is needed"):
        DICOMSCU(me, tls=TLSConfig())
    with pytest.raises(TLSError, match=r"needs its certificate and key"):
        DICOMSCP(me, tls=TLSConfig(ca=certs.ca))
    with pytest.raises(TLSError, match=r"do not fit"):
        DICOMSCP(me, tls=TLSConfig(cert=certs.server.cert, key=certs.client.key))
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    with pytest.raises(TLSError, match=r"holds no PEM certificate"):
        DICOMSCU(me, tls=TLSConfig(ca=tmp_path / "junk.pem"))
    with pytest.raises(TypeError):
        DICOMSCU(me, tls={"ca": str(certs.ca)})


# --- the command line --------------------------------------------------------------------------

def test_cli_echo_and_store_over_tls(fastdimse_scp_factory, certs, tmp_path):
    from tests.support import storedata as sd

    storage = tmp_path / "store"
    scp = fastdimse_scp_factory(storage_dir=storage, tls=_server_tls(certs.server, certs, require_client_cert=True))
    peer = f"{scp.ae_title}@{HOST}:{scp.port}"
    tls = ["--tls", "--ca", certs.ca, "--cert", certs.client.cert, "--key", certs.client.key]
    run = fastdimse("echo", peer, *tls)
    assert run.returncode == 0, run
    sources = sd.generate_mixed(tmp_path / "src")
    run = fastdimse("store", peer, tmp_path / "src", "--no-progress", *tls)
    assert run.returncode == 0, run
    sd.assert_received(sources, storage)
    # find's own -k is --key: its TLS key is --tls-key
    tls_find = [("--tls-key" if a == "--key" else a) for a in tls]
    run = fastdimse("find", peer, "-k", "PatientID=MIX", "-k", "StudyInstanceUID", "--format", "json", *tls_find)
    assert run.returncode == 0, run
    studies = {str(pydicom.dcmread(s.path, stop_before_pixels=True).StudyInstanceUID) for s in sources}
    assert {m["StudyInstanceUID"] for m in run.json()} == studies


def test_cli_tls_errors(fastdimse_scp_factory, certs, tmp_path):
    scp = fastdimse_scp_factory(tls=_server_tls(certs.server, certs))
    peer = f"{scp.ae_title}@{HOST}:{scp.port}"
    assert_one_error_line(fastdimse("echo", peer, "--tls", "--ca", certs.other_ca), 3, "not signed by a trusted CA")
    assert_one_error_line(fastdimse("echo", peer), 3, "the peer answered with TLS")
    assert_one_error_line(fastdimse("echo", peer, "--ca", certs.ca), 2, "--ca", "--tls")
    assert_one_error_line(fastdimse("echo", peer, "--tls"), 2, "--ca")
    assert_one_error_line(fastdimse("echo", peer, "--tls", "--ca", tmp_path / "nope.pem"), 2, "does not exist")
    run = fastdimse("echo", peer, "--tls", "--ca", certs.ca)
    assert run.returncode == 0, run


def test_cli_scp_over_tls(tmp_path, certs):
    """``fastdimse scp --tls --cert --key --ca --require-client-cert``, and dcmtk's
    echoscu +tls into it; its usage errors."""
    from tests.interop.test_cli_servers import LISTENING
    from tests.support.cli import FASTDIMSE

    out, err = tmp_path / "scp.out", tmp_path / "scp.err"
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen([str(FASTDIMSE), "scp", "--host", HOST, "--port", "0", "--tls",
                                 "--cert", str(certs.server.cert), "--key", str(certs.server.key),
                                 "--ca", str(certs.ca), "--require-client-cert", str(tmp_path / "in")],
                                stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
    try:
        port = None
        deadline = time.monotonic() + 20
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            m = LISTENING.search(out.read_text())
            port = int(m.group(4)) if m else None
            time.sleep(0.05)
        assert port, err.read_text()
        exe = peers.require_executable("echoscu")
        base = [exe, "-aec", "STORESCP", "-to", "5", "-ta", "5"]
        ok = subprocess.run([*base, "+tls", str(certs.client.key), str(certs.client.cert), "+cf", str(certs.ca),
                             HOST, str(port)], capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        anon = subprocess.run([*base, "+tla", "+cf", str(certs.ca), HOST, str(port)],
                              capture_output=True, text=True, timeout=30)
        assert anon.returncode != 0
    finally:
        peers.stop_process(proc)
    run = fastdimse("scp", "--tls", "--port", "0", tmp_path / "in")
    assert_one_error_line(run, 2, "--cert")
    run = fastdimse("scp", "--require-client-cert", "--port", "0", tmp_path / "in")
    assert_one_error_line(run, 2, "--tls")


def test_cli_bench_over_mutual_tls(fastdimse_scp_factory, certs, tmp_path):
    """fastdimse bench takes the TLS options too (its worker threads included): against an
    SCP that requires a client certificate, every echo and store succeeds."""
    import json

    scp = fastdimse_scp_factory(storage_dir=tmp_path / "store",
                                tls=_server_tls(certs.server, certs, require_client_cert=True))
    peer = f"{scp.ae_title}@{HOST}:{scp.port}"
    tls = ["--tls", "--ca", certs.ca, "--cert", certs.client.cert, "--tls-key", certs.client.key]
    for op in (["--op", "echo", "--count", "10"], ["--op", "store", "--generate", "6", "--size", "4KB"]):
        run = fastdimse("bench", peer, *op, "--concurrency", "1,2", "--json", "--no-progress", *tls)
        assert run.returncode == 0, run
        doc = json.loads(run.stdout)
        assert all(lv["errors"] == {} and lv["operations"] > 0 for lv in doc["levels"]), doc
    # without a client certificate the SCP refuses: no association at all (exit 3)
    run = fastdimse("bench", peer, "--op", "echo", "--count", "2", "--concurrency", "1", "--tls", "--ca", certs.ca)
    assert run.returncode == 3, run
