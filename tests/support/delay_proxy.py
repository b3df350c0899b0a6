"""A TCP relay on loopback that delays each direction by a fixed number of milliseconds:
a stand-in for a real network's latency between two DICOM nodes.

    proxy = DelayProxy(target_port, delay_ms=5).start()   # listens on 127.0.0.1:proxy.port
    ...                                                   # connect to proxy.port instead
    proxy.stop()                                          # or: with DelayProxy(...) as proxy:

    python -m tests.support.delay_proxy TARGET_PORT [--port N] [--delay-ms 5]

Every accepted connection gets its own connection to ``target_host:target_port`` and two
pump threads, one per direction. A pump reads what arrives, stamps it with the time it
arrived and queues it; a sender thread per direction writes each chunk once its
``delay_ms`` have passed since it arrived. So the delay is a latency (each byte arrives
``delay_ms`` later), not a throttle: data keeps flowing while earlier chunks wait. When one
side closes, the other side's write half is shut down after the queued bytes went out.
``stop()`` closes the listener and every connection and joins the threads.
"""

from __future__ import annotations

import argparse
import collections
import signal
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
_CHUNK = 1 << 16


class _Direction:
    """One direction of one connection: read from ``src``, write to ``dst`` ``delay`` s later."""

    def __init__(self, src: socket.socket, dst: socket.socket, delay: float, on_done):
        self.src, self.dst, self.delay = src, dst, delay
        self.queue: collections.deque = collections.deque()
        self.cond = threading.Condition()
        self.eof = False
        self.on_done = on_done
        self.bytes = 0
        self.reader = threading.Thread(target=self._read, daemon=True, name="delay-proxy-read")
        self.writer = threading.Thread(target=self._write, daemon=True, name="delay-proxy-write")

    def start(self) -> None:
        self.reader.start()
        self.writer.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.src.recv(_CHUNK)
                if not data:
                    break
                with self.cond:
                    self.queue.append((time.monotonic() + self.delay, data))
                    self.cond.notify()
        except OSError:
            pass
        with self.cond:
            self.eof = True
            self.cond.notify()

    def _write(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.eof:
                        self.cond.wait()
                    if not self.queue:
                        break
                    due, data = self.queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.dst.sendall(data)
                self.bytes += len(data)
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self.on_done()

    def join(self, timeout: float) -> None:
        self.reader.join(timeout)
        self.writer.join(timeout)


class DelayProxy:
    """Listen on ``HOST:port`` (0: any free port) and relay to ``target_host:target_port``,
    each direction delayed by ``delay_ms`` (``delay_ms_back`` for target -> client, default
    the same)."""

    def __init__(self, target_port: int, *, delay_ms: float = 5.0, delay_ms_back: float | None = None,
                 port: int = 0, target_host: str = HOST):
        self.target = (target_host, target_port)
        self.delay = delay_ms / 1000.0
        self.delay_back = (delay_ms if delay_ms_back is None else delay_ms_back) / 1000.0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, port))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, socket.socket, _Direction, _Direction]] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True, name="delay-proxy-accept")
        self.connections = 0

    def start(self) -> "DelayProxy":
        self._acceptor.start()
        return self

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                break
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending = [2]

            def done(c=client, u=upstream, p=pending) -> None:
                with self._lock:
                    p[0] -= 1
                    last = p[0] == 0
                if last:
                    c.close()
                    u.close()

            fwd = _Direction(client, upstream, self.delay, done)
            back = _Direction(upstream, client, self.delay_back, done)
            with self._lock:
                if self._stopping.is_set():
                    client.close()
                    upstream.close()
                    break
                self._conns.append((client, upstream, fwd, back))
                self.connections += 1
            fwd.start()
            back.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every relayed connection; join the threads. Idempotent."""
        self._stopping.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout)
        with self._lock:
            conns, self._conns = self._conns, []
        for client, upstream, fwd, back in conns:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            for d in (fwd, back):
                with d.cond:
                    d.queue.clear()
                    d.eof = True
                    d.cond.notify()
        for client, upstream, fwd, back in conns:
            fwd.join(timeout)
            back.join(timeout)
            client.close()
            upstream.close()

    @property
    def alive_threads(self) -> int:
        """Threads of this proxy still running (0 after ``stop()``)."""
        n = int(self._acceptor.is_alive())
        with self._lock:
            conns = list(self._conns)
        for *_s, fwd, back in conns:
            n += sum(t.is_alive() for t in (fwd.reader, fwd.writer, back.reader, back.writer))
        return n

    def __enter__(self) -> "DelayProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Relay 127.0.0.1:PORT to TARGET_PORT with a delay each way.")
    ap.add_argument("target_port", type=int)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    args = ap.parse_args(argv)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # inherited by the relay's threads
    proxy = DelayProxy(args.target_port, delay_ms=args.delay_ms, port=args.port).start()
    print(f"delay proxy listening on {HOST}:{proxy.port} -> {HOST}:{args.target_port}, "
          f"{args.delay_ms} ms each way", flush=True)
    signal.sigwait(stop_signals)
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
