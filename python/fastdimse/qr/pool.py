"""A bounded pool of SQLite connections shared by the threads of one index."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from typing import Callable, Iterator

from .backend import UnableToProcess

class _ConnectionPool:
    """A bounded pool of SQLite connections shared by every thread of an index.

    ``borrow()`` hands out an idle connection (opening one while fewer than
    ``size`` exist) and waits up to ``timeout`` seconds when all are lent out
    (then :class:`UnableToProcess`). A returned connection ends any read
    transaction still open and goes back to the idle list; after :meth:`close`
    the idle ones are closed at once and lent ones when they come back. So the
    number of open connections (two file descriptors each: the database and its
    WAL) never exceeds ``size`` however many threads come and go.
    """

    def __init__(self, connect: Callable[[], sqlite3.Connection], size: int, timeout: float,
                 name: str = "index"):
        if size < 1:
            raise ValueError("the pool needs at least one connection")
        self._connect = connect
        self.name = name
        self.size = size
        self.timeout = timeout
        self._idle: list[sqlite3.Connection] = []
        self._open = 0
        self._closed = False
        self._cond = threading.Condition()

    @property
    def open_connections(self) -> int:
        return self._open

    def acquire(self) -> sqlite3.Connection:
        deadline = None
        with self._cond:
            while True:
                if self._closed:
                    raise UnableToProcess(f"the index {self.name} is closed")
                if self._idle:
                    return self._idle.pop()
                if self._open < self.size:
                    self._open += 1
                    break
                if deadline is None:
                    deadline = time.monotonic() + self.timeout
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    if not self._idle and self._open >= self.size and not self._closed:
                        raise UnableToProcess(
                            f"all {self.size} index connections are busy (waited "
                            f"{self.timeout:g} s)")
        try:
            return self._connect()
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise

    def release(self, conn: sqlite3.Connection) -> None:
        broken = False
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            broken = True
        with self._cond:
            if self._closed or broken:
                self._open -= 1
                self._cond.notify()
                _close_quietly(conn)
                return
            self._idle.append(conn)
            self._cond.notify()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[sqlite3.Connection]:
        conn = self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            self._cond.notify_all()
        for conn in idle:
            _close_quietly(conn)


def _close_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.close()
    except sqlite3.Error:  # pragma: no cover
        pass
