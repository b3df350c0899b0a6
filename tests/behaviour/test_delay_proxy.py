"""tests/support/delay_proxy.py, the latency relay of the migrate benchmark: bytes go
through intact both ways, each direction is delayed (a lower bound only), and stop()
ends it by itself."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from tests.support.delay_proxy import HOST, DelayProxy

pytestmark = pytest.mark.timeout(30)
INVERT = bytes(255 - i for i in range(256))


class EchoServer:
    """Answers every byte with its complement (so the answer differs from the request)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = bytearray()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            while data := conn.recv(65536):
                self.received += data
                conn.sendall(data.translate(INVERT))

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            break
        out += data
    return bytes(out)


def test_bytes_arrive_intact_both_ways(echo):
    payload = os.urandom(3 << 20)
    with DelayProxy(echo.port, delay_ms=1) as proxy:
        with socket.create_connection((HOST, proxy.port), timeout=10) as c:
            back = bytearray()
            for i in range(0, len(payload), 1 << 16):
                chunk = payload[i:i + (1 << 16)]
                c.sendall(chunk)
                back += _recv_exactly(c, len(chunk))
            c.shutdown(socket.SHUT_WR)
            assert c.recv(1) == b""  # the echo server's close came through the proxy
    assert bytes(echo.received) == payload
    assert bytes(back) == payload.translate(INVERT)


def test_each_direction_is_delayed(echo):
    delay_ms = 40
    with DelayProxy(echo.port, delay_ms=delay_ms) as proxy:
        with socket.create_connection((HOST, proxy.port), timeout=10) as c:
            c.sendall(b"warm")
            assert _recv_exactly(c, 4) == b"warm".translate(INVERT)
            rtts = []
            for _ in range(3):
                t0 = time.monotonic()
                c.sendall(b"ping")
                assert _recv_exactly(c, 4) == b"ping".translate(INVERT)
                rtts.append(time.monotonic() - t0)
    # There and back: at least twice the delay (lower bound only).
    assert min(rtts) >= 2 * delay_ms / 1000 * 0.95


def test_asymmetric_delay_applies_to_the_way_back(echo):
    with DelayProxy(echo.port, delay_ms=0, delay_ms_back=60) as proxy:
        with socket.create_connection((HOST, proxy.port), timeout=10) as c:
            t0 = time.monotonic()
            c.sendall(b"ab")
            assert _recv_exactly(c, 2) == b"ab".translate(INVERT)
            assert time.monotonic() - t0 >= 0.057


def test_stop_ends_every_thread_with_a_connection_open(echo):
    proxy = DelayProxy(echo.port, delay_ms=5).start()
    c = socket.create_connection((HOST, proxy.port), timeout=10)
    try:
        c.sendall(b"xy")
        assert _recv_exactly(c, 2) == b"xy".translate(INVERT)
        assert proxy.connections == 1
        proxy.stop()
        assert proxy.alive_threads == 0
        c.settimeout(5)
        assert c.recv(1) == b""  # the client sees the relay close
        with pytest.raises(OSError):
            socket.create_connection((HOST, proxy.port), timeout=2).close()
    finally:
        c.close()
        proxy.stop()  # idempotent
