"""A replacement interrupted by a crash loses nothing acknowledged.

With ``duplicates="overwrite"`` and an ``on_stored`` handler, a second copy of an
instance is put in place while the first, acknowledged one waits aside, so that a handler
refusing the new copy gets the old one back. Here the SCP process is killed (SIGKILL)
while the handler looks at the replacement, before it answers: the next start must put
the acknowledged copy back where it was, and leave no aside file behind.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest

from fastdimse import DICOMSCP, DICOMSCU, Entity
from tests.support.peers import HOST, PYTHON, free_port, wait_for_port
from tests.support.storedata import make_image

pytestmark = pytest.mark.timeout(120)

SCP_SCRIPT = r"""
import sys, time, pathlib
from fastdimse import DICOMSCP, Entity
storage, port, flag = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3])

def on_stored(inst):
    if flag.exists():                      # the replacement: say so, then hang
        (flag.parent / "in-handler").write_text(inst.path)
        time.sleep(600)
    return None

scp = DICOMSCP(Entity("STORE", "127.0.0.1", port), storage_dir=storage, query_retrieve=False,
               on_stored=on_stored)
scp.listen_for_incoming_associations(keep_listener_running=True)
time.sleep(3600)
"""


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {path}")
        time.sleep(0.02)


def test_kill_during_a_replacement_puts_the_acknowledged_copy_back(tmp_path):
    storage, marks = tmp_path / "store", tmp_path / "marks"
    storage.mkdir()
    marks.mkdir()
    script = tmp_path / "scp.py"
    script.write_text(SCP_SCRIPT)
    port = free_port()
    proc = subprocess.Popen([PYTHON, str(script), str(storage), str(port), str(marks / "block")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(HOST, port, proc=proc)
        old = make_image()
        old.StudyDescription = "OLD COPY"
        new = copy.deepcopy(old)
        new.StudyDescription = "NEW COPY"  # the same path in the layout, another content
        scu = DICOMSCU(Entity("SENDER", HOST, 0))
        remote = Entity("STORE", HOST, port)
        [first] = scu.store(remote, [old])
        assert first.is_success, first
        [stored] = [p for p in storage.rglob("*") if p.is_file() and not p.name.startswith(".")]

        (marks / "block").write_text("")
        t = threading.Thread(target=lambda: _swallow(lambda: scu.store(remote, [new])), daemon=True)
        t.start()
        _wait_for(marks / "in-handler", 30)
        final = Path((marks / "in-handler").read_text())
        assert stored == final
        # The replacement is in place, the acknowledged copy aside: now the crash.
        assert pydicom.dcmread(final).StudyDescription == "NEW COPY"
        assert list(storage.glob(".fastdimse-*.replaced"))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        t.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stderr.close()

    # The next start (this process, no handler) restores the acknowledged copy.
    scp = DICOMSCP(Entity("STORE", HOST, 0), storage_dir=storage, query_retrieve=False)
    scp.listen_for_incoming_associations(keep_listener_running=True)
    try:
        assert pydicom.dcmread(final).StudyDescription == "OLD COPY"
        assert pydicom.dcmread(final).SOPInstanceUID == old.SOPInstanceUID
        assert not list(storage.glob(".fastdimse-*")), list(storage.iterdir())
    finally:
        scp.stop()


def test_a_note_pointing_outside_the_folder_is_left_alone(tmp_path):
    storage = tmp_path / "store"
    storage.mkdir()
    (tmp_path / "victim").write_text("do not touch")
    aside = storage / ".fastdimse-1-0.replaced"
    aside.write_text("an aside copy")
    (storage / ".fastdimse-1-0.replaced.target").write_text("../victim")
    scp = DICOMSCP(Entity("STORE", HOST, 0), storage_dir=storage, query_retrieve=False)
    scp.listen_for_incoming_associations(keep_listener_running=True)
    try:
        assert (tmp_path / "victim").read_text() == "do not touch"
        assert aside.read_text() == "an aside copy"  # kept for a person to look at
    finally:
        scp.stop()


def _swallow(fn):
    try:
        fn()
    except Exception:
        pass  # the SCP is killed under it: the store fails, as it should
