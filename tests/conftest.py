"""Fixtures shared by the fastdimse tests: real peers and our own SCP/SCU.

Every server a test starts is stopped by that test's teardown, by pid (peers) or
by ``DICOMSCP.stop()`` (ours). fastdimse is imported lazily inside the fixtures
that need it, so the peer fixtures work (and test_peers_sanity.py runs) on their own.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support import peers
from tests.support.peers import HOST, SCP_AE, RunningSCP, free_port, make_scu, wait_for_port
from tests.support.pgserver import pg_server, pg_url  # noqa: F401  (PostgreSQL, started on first use)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: long-running (e.g. 1 GiB transfers); deselect with -m 'not slow' "
        "(make test runs them)")
    config.addinivalue_line(
        "markers", "soak: concurrent load against an SCP process for a minute (tests/support/soak.py; "
        "select with -m soak, make test runs it)")


@pytest.fixture
def peer_log_dir(tmp_path: Path) -> Path:
    d = tmp_path / "peers"
    d.mkdir()
    return d


@pytest.fixture
def dcmtk_storescp(peer_log_dir):
    """dcmtk ``storescp -aet STORESCP`` on a free loopback port; serves Verification."""
    peer = peers.start_dcmtk_storescp(peer_log_dir, ae_title="STORESCP")
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def pynetdicom_echo_scp(peer_log_dir):
    """pynetdicom's ``python -m pynetdicom echoscp -aet ECHOSCP`` in a subprocess."""
    peer = peers.start_pynetdicom_echoscp(peer_log_dir, ae_title="ECHOSCP")
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def pynetdicom_scp_factory(peer_log_dir):
    """Start pynetdicom Verification SCPs (tests/support/pynetdicom_scp.py) with rejection options.

    ``make(ae_title=..., require_called_ae=..., allowed_calling_aes=[...]) -> Peer``;
    all are stopped at teardown.
    """
    started: list[peers.Peer] = []

    def make(**kwargs) -> peers.Peer:
        peer = peers.start_pynetdicom_scp(peer_log_dir, **kwargs)
        started.append(peer)
        return peer

    try:
        yield make
    finally:
        for peer in started:
            peer.stop()


@pytest.fixture
def fastdimse_log(caplog):
    """caplog capturing everything the "fastdimse" logger tree (Python and Rust) says.

    Set to DEBUG before any SCP is created, because pyo3-log caches levels.
    """
    caplog.set_level(logging.DEBUG, logger="fastdimse")
    import fastdimse

    fastdimse.refresh_logging()  # the Rust side caches logger levels
    return caplog


@pytest.fixture
def fastdimse_scp_factory(fastdimse_log):
    """Start our DICOMSCP on 127.0.0.1:<free port>; every one is stopped at teardown.

    ``make(ae_title="FDSCP", port=None, **DICOMSCP keyword arguments) -> RunningSCP``,
    already listening (non-blocking) and answering TCP connections.
    """
    from fastdimse import DICOMSCP, Entity

    started = []

    def make(ae_title: str = SCP_AE, port: int | None = None, **kwargs) -> RunningSCP:
        entity = Entity(ae_title, HOST, free_port() if port is None else port)
        scp = DICOMSCP(entity, **kwargs)
        started.append(scp)
        scp.listen_for_incoming_associations(keep_listener_running=True)
        bound = entity.port or scp.port
        wait_for_port(HOST, bound, timeout=10.0)
        return RunningSCP(scp, entity, bound)

    try:
        yield make
    finally:
        for scp in started:
            scp.stop()


@pytest.fixture
def fastdimse_scp(fastdimse_scp_factory) -> RunningSCP:
    """Our DICOMSCP with AE title FDSCP and default options, listening on a free port."""
    return fastdimse_scp_factory()


@pytest.fixture
def scu():
    """Our DICOMSCU calling as FDSCU."""
    return make_scu()


@pytest.fixture
def fast_tmp(tmp_path):
    """A temporary folder in RAM (/dev/shm) when there is one: creating 10^5 files on this
    machine's disk takes minutes, on tmpfs seconds. Removed at teardown."""
    import os
    import shutil
    import tempfile

    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else str(tmp_path)
    d = Path(tempfile.mkdtemp(prefix="fastdimse-fast-", dir=base))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
