"""Running the installed ``fastdimse`` console script as a subprocess, as a user does.

The script is the one ``make build`` installed next to the interpreter running the
tests (``.venv/bin/fastdimse``); a missing script is an error, never a skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

FASTDIMSE = Path(sys.executable).parent / "fastdimse"
CLI_TIMEOUT = 60.0


@dataclass
class Run:
    """What one run of the command printed and its exit code."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        """stdout as exactly one JSON document (fails if anything else is there)."""
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout ---\n{self.stdout}"
                f"--- stderr ---\n{self.stderr}")


def fastdimse(*args, timeout: float = CLI_TIMEOUT, env: dict[str, str] | None = None) -> Run:
    """Run ``fastdimse ARGS...``; stdout and stderr captured apart (neither a terminal)."""
    if not FASTDIMSE.exists():
        raise RuntimeError(f"{FASTDIMSE} is missing: run make build")
    argv = [str(FASTDIMSE), *map(str, args)]
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          timeout=timeout, env=full_env)
    return Run(argv, done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))


def fastdimse_on_terminal(*args, timeout: float = CLI_TIMEOUT) -> Run:
    """Run ``fastdimse ARGS...`` with stderr on a pseudo-terminal (where progress bars
    show) and stdout on a pipe; ``stderr`` of the result is what the terminal received."""
    import pty
    import threading

    argv = [str(FASTDIMSE), *map(str, args)]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "COLUMNS": "160", "TERM": "xterm"}
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    finally:
        os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        reader.join(timeout=5)
        os.close(master)
    return Run(argv, proc.returncode, out.decode(errors="replace"), b"".join(chunks).decode(errors="replace"))


def assert_one_error_line(run: Run, code: int, *needles: str) -> None:
    """The run failed with ``code``, said so in exactly one stderr line (naming each of
    ``needles``), printed no traceback and nothing on stdout."""
    assert run.returncode == code, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run
    assert lines[0].startswith("fastdimse"), run
    assert "error" in lines[0], run
    assert "Traceback" not in run.stderr, run
    for n in needles:
        assert n in lines[0], f"{n!r} not in the error line\n{run}"
    assert run.stdout == "", run


def table_rows(text: str) -> list[list[str]]:
    """The cells of a rich table (box.SQUARE) printed to a pipe: the header row first."""
    rows = []
    for line in text.splitlines():
        if line.startswith("│"):
            rows.append([c.strip() for c in line.strip("│").split("│")])
    return rows
