"""`fastdimse scp` and `fastdimse qrscp` as the installed console script, against real peers.

Each server runs as a subprocess of ``.venv/bin/fastdimse`` (next to sys.executable) on
127.0.0.1 with ``--port 0``; the port is read from the one listening line it prints (and
then polled). Every server is stopped by its pid with SIGTERM or SIGINT in the test, and
its exit code and stderr are checked: exit 0, no traceback. Clients are dcmtk's tools
(storescu, echoscu, findscu, movescu, getscu) and pynetdicom's apps; what they report is
compared with what was stored.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from tests.support import peers
from tests.support import qr_helpers as qh
from tests.support import storedata as sd
from fastdimse.qr.index import DEFAULT_DB_NAME
from tests.support.peers import HOST, PYTHON, stop_process, wait_for_port, wait_for_port_closed

pytestmark = pytest.mark.timeout(120)

FASTDIMSE = Path(sys.executable).with_name("fastdimse")
LISTENING = re.compile(r"^fastdimse (scp|qrscp): (\S+) listening on ([0-9.]+):(\d+), storing into (.+)$",
                       re.MULTILINE)
START_TIMEOUT = 20.0


@dataclass
class Server:
    """A running `fastdimse scp|qrscp` process and where it logs."""

    proc: subprocess.Popen
    out: Path
    err: Path
    ae_title: str = ""
    port: int = 0
    folder: str = ""

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` to the server's pid; its exit code (it must stop on its own)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
            raise AssertionError(f"the server did not stop on {signal.Signals(sig).name}\n{self.stderr()}")


def assert_clean_stop(server: Server, rc: int) -> None:
    err = server.stderr()
    assert rc == 0, f"exit {rc}\n{err}"
    assert "Traceback" not in err, err
    assert wait_for_port_closed(HOST, server.port), "the port still answers after the stop"


@pytest.fixture
def start_server(tmp_path):
    """``start("scp"|"qrscp", *args) -> Server`` listening (its port read from the line it
    prints, then polled); every one still running is stopped by pid at teardown."""
    started: list[Server] = []

    def start(command: str, *args: str) -> Server:
        n = len(started)
        out, err = tmp_path / f"{command}-{n}.out", tmp_path / f"{command}-{n}.err"
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen([str(FASTDIMSE), command, *args], stdout=fo, stderr=fe,
                                    stdin=subprocess.DEVNULL)
        server = Server(proc, out, err)
        started.append(server)
        deadline = time.monotonic() + START_TIMEOUT
        while (m := LISTENING.search(server.stdout())) is None:
            if proc.poll() is not None:
                raise AssertionError(f"{command} exited with {proc.returncode}\n{server.stderr()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{command} printed no listening line\n{server.stderr()}")
            time.sleep(0.05)
        assert m.group(1) == command and m.group(3) == HOST
        server.ae_title, server.port, server.folder = m.group(2), int(m.group(4)), m.group(5)
        assert server.port > 0
        wait_for_port(HOST, server.port, timeout=START_TIMEOUT, proc=proc, log_path=err)
        return server

    try:
        yield start
    finally:
        for server in started:
            stop_process(server.proc)


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([str(FASTDIMSE), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.fixture
def archive(tmp_path) -> list[qh.Instance]:
    """The standard Q/R test archive (4 patients, 5 studies, 14 instances) as files."""
    return qh.write_archive(tmp_path / "source", qh.archive_truth(tag=11))


def store_archive(server: Server, archive: list[qh.Instance]) -> None:
    rc, out = peers.run_dcmtk_storescu(server.port, [Path(archive[0].path).parent],
                                       called_ae=server.ae_title)
    assert rc == 0, out
    assert len(re.findall(peers.DCMTK_STORE_SUCCESS, out)) == len(archive), out


def find_study_uids(server: Server, out_dir: Path, **keys: str) -> set[str]:
    rc, out, answers = qh.run_findscu(server.port, server.ae_title, "study", "STUDY",
                                      {"StudyInstanceUID": "", **keys}, out_dir)
    assert rc == 0, out
    return {str(a.StudyInstanceUID) for a in answers}


def studies_of(archive: list[qh.Instance], **match: str) -> set[str]:
    return {i.StudyInstanceUID for i in archive if all(i.value(k) == v for k, v in match.items())}


# --- fastdimse scp -------------------------------------------------------------------------


def test_scp_stores_dcmtk_storescu_folder_and_answers_echoscu(tmp_path, start_server):
    sources = sd.generate_mixed(tmp_path / "src")
    folder = tmp_path / "incoming" / "new"  # does not exist yet: created
    server = start_server("scp", "--aet", "STORE", "--port", "0", "--host", HOST, "-v", str(folder))
    assert server.ae_title == "STORE" and Path(server.folder) == folder.resolve()

    rc, out = peers.run_dcmtk_echoscu(server.port, called_ae="STORE")
    assert rc == 0 and peers.DCMTK_ECHO_SUCCESS in out, out
    rc, out = peers.run_dcmtk_storescu(server.port, [tmp_path / "src"], called_ae="STORE")
    assert rc == 0, out
    assert len(re.findall(peers.DCMTK_STORE_SUCCESS, out)) == len(sources), out

    sd.assert_received(sources, folder, source_ae="STORESCU")
    assert not sd.leftover_temp_files(folder)
    assert not list(folder.glob("*.sqlite*")) and not list(folder.glob("*.db*")), "scp keeps no index"
    err = server.stderr()
    for s in sources:  # -v logs each stored instance
        assert f"stored {s.sop_instance_uid}" in err
    assert_clean_stop(server, server.stop(signal.SIGTERM))


def test_scp_stores_pynetdicom_storescu(tmp_path, start_server):
    sources = sd.generate_mixed(tmp_path / "src")
    folder = tmp_path / "in"
    server = start_server("scp", "--port", "0", "--host", HOST, "--layout",
                          "{SOPClassUID}/{SOPInstanceUID}.dcm", str(folder))
    rc, out = peers.run_pynetdicom_storescu(server.port, tmp_path / "src", called_ae=server.ae_title,
                                          extra=["-cx"])  # each file's own syntax
    assert rc == 0, out
    assert len(re.findall(peers.PYNETDICOM_STORE_SUCCESS, out)) == len(sources), out
    sd.assert_received(sources, folder, source_ae="STORESCU")
    for s in sources:  # --layout is applied
        assert (folder / s.sop_class_uid / f"{s.sop_instance_uid}.dcm").is_file()
    assert_clean_stop(server, server.stop(signal.SIGINT))


def test_scp_duplicates_reject_and_require_called_aet(tmp_path, start_server):
    sources = sd.generate_mixed(tmp_path / "src")
    folder = tmp_path / "in"
    server = start_server("scp", "--aet", "STRICT", "--port", "0", "--host", HOST,
                          "--duplicates", "reject", "--require-called-aet", str(folder))
    rc, out = peers.run_dcmtk_echoscu(server.port, called_ae="SOMEONE")
    assert rc != 0 and peers.DCMTK_CALLED_AE_NOT_RECOGNIZED in out, out
    one = [sources[0].path]
    rc, out = peers.run_dcmtk_storescu(server.port, one, called_ae="STRICT")
    assert rc == 0 and re.search(peers.DCMTK_STORE_SUCCESS, out), out
    rc, out = peers.run_dcmtk_storescu(server.port, one, called_ae="STRICT")
    assert "Status: 0x111)" in out, out  # dcmtk: "Received Store Response (Unknown Status: 0x111)"
    assert not re.search(peers.DCMTK_STORE_SUCCESS, out), out
    assert_clean_stop(server, server.stop())


def test_scp_stop_with_an_association_open(tmp_path, start_server):
    """SIGTERM while a peer holds an association: the server ends it and exits 0."""
    from fastdimse import Entity
    from fastdimse.errors import DicomError

    server = start_server("scp", "--port", "0", "--host", HOST, str(tmp_path / "in"))
    assoc = peers.make_scu().associate(Entity(server.ae_title, HOST, server.port))
    try:
        assert assoc.echo().status == 0
        assert_clean_stop(server, server.stop(signal.SIGTERM))
        with pytest.raises(DicomError):
            assoc.echo()
    finally:
        assoc.abort()


# --- fastdimse qrscp -------------------------------------------------------------------------


def test_qrscp_find_with_dcmtk_and_pynetdicom(tmp_path, start_server, archive):
    server = start_server("qrscp", "--port", "0", "--host", HOST, str(tmp_path / "archive"))
    assert server.ae_title == "ARCHIVE"
    store_archive(server, archive)

    assert find_study_uids(server, tmp_path / "f1") == studies_of(archive)
    assert find_study_uids(server, tmp_path / "f2", PatientID="PAT001") == studies_of(archive, PatientID="PAT001")
    rc, out, answers = qh.run_findscu(server.port, "ARCHIVE", "patient", "IMAGE",
                                      {"PatientID": "PAT003", "StudyInstanceUID": "", "SeriesInstanceUID": "",
                                       "SOPInstanceUID": ""}, tmp_path / "f3")
    assert rc == 0, out
    assert {str(a.SOPInstanceUID) for a in answers} == {i.SOPInstanceUID for i in archive if i.PatientID == "PAT003"}

    # pynetdicom's findscu app (-w writes each response as rsp*.dcm in its working folder)
    wd = tmp_path / "pynd-find"
    wd.mkdir()
    done = subprocess.run([PYTHON, "-m", "pynetdicom", "findscu", "-S", "-aec", "ARCHIVE", "-w",
                           "-k", "QueryRetrieveLevel=SERIES", "-k", "Modality=MR", "-k", "SeriesInstanceUID=",
                           HOST, str(server.port)], cwd=wd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = {str(pydicom.dcmread(p).SeriesInstanceUID) for p in wd.glob("rsp*.dcm")}
    assert got == {i.SeriesInstanceUID for i in archive if i.Modality == "MR"}
    assert_clean_stop(server, server.stop())


def test_qrscp_move_to_known_dcmtk_storescp(tmp_path, start_server, archive, peer_log_dir):
    caught = tmp_path / "caught"
    catcher = qh.start_dcmtk_catcher(peer_log_dir, caught, ae_title="CATCHER")
    try:
        server = start_server("qrscp", "--port", "0", "--host", HOST,
                              "--known", f"CATCHER@{HOST}:{catcher.port}", str(tmp_path / "archive"))
        store_archive(server, archive)
        study = archive[0].StudyInstanceUID
        rc, out = qh.run_movescu(server.port, "ARCHIVE", "study", "STUDY", {"StudyInstanceUID": study}, "CATCHER")
        expected = [i for i in archive if i.StudyInstanceUID == study]
        final = qh.final_response(out, "C-MOVE RSP")
        assert rc == 0 and final["status"] == 0 and final["completed"] == len(expected), out
        qh.assert_holds_exactly(caught, expected)

        # an AE that is not known is refused (0xA801), nothing sent
        rc, out = qh.run_movescu(server.port, "ARCHIVE", "study", "STUDY", {"StudyInstanceUID": study}, "NOBODY")
        assert qh.final_response(out, "C-MOVE RSP")["status"] == 0xA801, out
        assert len(qh.dicom_files(caught)) == len(expected)
        assert_clean_stop(server, server.stop())
    finally:
        catcher.stop()


def test_qrscp_config_file_known_and_flags_override(tmp_path, start_server, archive, peer_log_dir):
    caught = tmp_path / "caught"
    catcher = qh.start_dcmtk_catcher(peer_log_dir, caught, ae_title="CATCHER")
    try:
        config = tmp_path / "archive.toml"
        config.write_text(f'''
aet = "CFGARCHIVE"
port = 0
host = "{HOST}"
folder = "archive"
duplicates = "keep"

[known]
CATCHER = {{ host = "{HOST}", port = {catcher.port} }}
OTHER = "{HOST}:1"
''')
        # --aet on the command line overrides the file's; the rest comes from the file
        # (its folder relative to the file)
        server = start_server("qrscp", "--config", str(config), "--aet", "FLAGARCHIVE")
        assert server.ae_title == "FLAGARCHIVE"
        assert Path(server.folder) == (tmp_path / "archive").resolve()
        store_archive(server, archive)
        patient = "PAT002"
        expected = [i for i in archive if i.PatientID == patient]
        rc, out = qh.run_movescu(server.port, "FLAGARCHIVE", "patient", "PATIENT", {"PatientID": patient},
                                 "CATCHER")
        final = qh.final_response(out, "C-MOVE RSP")
        assert rc == 0 and final["status"] == 0 and final["completed"] == len(expected), out
        qh.assert_holds_exactly(caught, expected)
        assert_clean_stop(server, server.stop())
    finally:
        catcher.stop()


def test_qrscp_get_with_dcmtk_and_pynetdicom(tmp_path, start_server, archive):
    server = start_server("qrscp", "--aet", "GETARCH", "--port", "0", "--host", HOST, str(tmp_path / "archive"))
    store_archive(server, archive)
    study = [i for i in archive if i.PatientID == "PAT003"][0].StudyInstanceUID
    expected = [i for i in archive if i.StudyInstanceUID == study]

    rc, out = qh.run_getscu(server.port, "GETARCH", "study", "STUDY", {"StudyInstanceUID": study},
                            tmp_path / "got-dcmtk")
    final = qh.final_response(out, "C-GET RSP")
    assert rc == 0 and final["status"] == 0 and final["completed"] == len(expected), out
    qh.assert_holds_exactly(tmp_path / "got-dcmtk", expected)

    series = archive[0].SeriesInstanceUID
    out_dir = tmp_path / "got-pynd"
    done = subprocess.run([PYTHON, "-m", "pynetdicom", "getscu", "-S", "-aec", "GETARCH", "-od", str(out_dir),
                           "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={archive[0].StudyInstanceUID}",
                           "-k", f"SeriesInstanceUID={series}", HOST, str(server.port)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = {str(pydicom.dcmread(p).SOPInstanceUID) for p in out_dir.rglob("*") if p.is_file()}
    assert got == {i.SOPInstanceUID for i in archive if i.SeriesInstanceUID == series}
    assert_clean_stop(server, server.stop())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_qrscp_stops_cleanly_and_a_restart_finds_what_was_stored(tmp_path, start_server, archive, sig):
    folder = tmp_path / "archive"
    server = start_server("qrscp", "--port", "0", "--host", HOST, str(folder))
    store_archive(server, archive)
    assert (folder / (DEFAULT_DB_NAME + "-wal")).exists()  # the index is open, in WAL mode
    assert_clean_stop(server, server.stop(sig))
    assert server.stdout().count("listening on") == 1
    # the index was closed: SQLite folds its write-ahead log back when the last connection closes
    assert not (folder / (DEFAULT_DB_NAME + "-wal")).exists()

    again = start_server("qrscp", "--port", "0", "--host", HOST, str(folder))
    assert find_study_uids(again, tmp_path / "after") == studies_of(archive)
    assert_clean_stop(again, again.stop(sig))


def test_qrscp_import_reads_the_folder_again(tmp_path, start_server, archive):
    """Files put in FOLDER are found at start; a file changed in place (which leaves its
    folder untouched, so the start-up reconciliation does not see it) is read again with
    --import."""
    folder = tmp_path / "archive"
    placed = qh.write_archive(folder / "copied", archive)
    server = start_server("qrscp", "--port", "0", "--host", HOST, str(folder))
    assert find_study_uids(server, tmp_path / "f1") == studies_of(archive)
    assert_clean_stop(server, server.stop())

    # rewrite the one instance of PAT004's study in place, with a new description
    target = next(i for i in placed if i.PatientID == "PAT004")
    ds = pydicom.dcmread(target.path)
    ds.StudyDescription = "REWRITTEN"
    with open(target.path, "r+b") as f:  # same file, same folder entry
        f.truncate(0)
        ds.save_as(f, enforce_file_format=True)

    server = start_server("qrscp", "--port", "0", "--host", HOST, str(folder))
    assert find_study_uids(server, tmp_path / "f2", StudyDescription="REWRITTEN") == set()
    assert_clean_stop(server, server.stop())

    server = start_server("qrscp", "--port", "0", "--host", HOST, "--import", str(folder))
    assert f"imported {len(archive)} instance(s)" in server.stderr()
    assert find_study_uids(server, tmp_path / "f3", StudyDescription="REWRITTEN") == {target.StudyInstanceUID}
    assert_clean_stop(server, server.stop())


def test_qrscp_index_in_postgresql(tmp_path, start_server, archive, pg_url):
    folder = tmp_path / "archive"
    server = start_server("qrscp", "--port", "0", "--host", HOST, "--index", pg_url, str(folder))
    store_archive(server, archive)
    assert_clean_stop(server, server.stop())
    assert not (folder / DEFAULT_DB_NAME).exists(), "the index is in PostgreSQL, not in the folder"

    again = start_server("qrscp", "--port", "0", "--host", HOST, "--index", pg_url, str(folder))
    assert find_study_uids(again, tmp_path / "f", PatientID="PAT002") == studies_of(archive, PatientID="PAT002")
    assert_clean_stop(again, again.stop(signal.SIGINT))


# --- usage errors ----------------------------------------------------------------------------


def _assert_usage_error(done: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code, (done.returncode, done.stderr)
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert done.stdout == "", done.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("known, fragment", [
    ("CATCHER@127.0.0.1", "is not a peer"),
    ("CATCHER@127.0.0.1:99999", "outside 1..65535"),
    ("AN-AE-TITLE-TOO-LONG@127.0.0.1:104", "longer than 16"),
])
def test_qrscp_bad_known(tmp_path, known, fragment):
    _assert_usage_error(run_cli("qrscp", "--port", "0", "--known", known, str(tmp_path / "a")), fragment)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("text, fragment", [
    ("aet = ", "not valid TOML"),
    ("colour = 'blue'", "unknown key 'colour'"),
    ("port = '11112'", "port must be int"),
    ("port = 70000", "port"),
    ("aet = 'AN-AE-TITLE-TOO-LONG'", "longer than 16"),
    ("[known]\nCATCHER = 'nohostport'", "[known] CATCHER"),
    ("[known]\nCATCHER = { host = '127.0.0.1' }", "[known] CATCHER"),
    ("index = 'mysql://x'", "postgresql://"),
])
def test_qrscp_bad_config(tmp_path, text, fragment):
    config = tmp_path / "bad.toml"
    config.write_text(text + "\n")
    _assert_usage_error(run_cli("qrscp", "--config", str(config), str(tmp_path / "a")), str(config), fragment)


def test_qrscp_missing_config_and_missing_folder(tmp_path):
    _assert_usage_error(run_cli("qrscp", "--config", str(tmp_path / "none.toml"), str(tmp_path / "a")),
                        "none.toml", "cannot read")
    _assert_usage_error(run_cli("qrscp", "--port", "0"), "no FOLDER")


@pytest.mark.parametrize("command", ["scp", "qrscp"])
@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_port_out_of_range(tmp_path, command, port):
    _assert_usage_error(run_cli(command, "--port", port, str(tmp_path / "a")), "--port")


@pytest.mark.parametrize("command", ["scp", "qrscp"])
def test_folder_that_is_a_file(tmp_path, command):
    f = tmp_path / "file"
    f.write_text("x")
    _assert_usage_error(run_cli(command, "--port", "0", str(f)), "file")


def test_port_in_use_and_unreachable_index_are_one_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        port = s.getsockname()[1]
        _assert_usage_error(run_cli("scp", "--host", HOST, "--port", str(port), str(tmp_path / "a")),
                            f"{port}", code=1)
    url = f"postgresql://nobody@{HOST}:{peers.free_port()}/nothing"
    _assert_usage_error(run_cli("qrscp", "--host", HOST, "--port", "0", "--index", url, str(tmp_path / "b")),
                        "cannot connect", code=1)
    _assert_usage_error(run_cli("qrscp", "--index", "sqlite:///x", str(tmp_path / "c")), "postgresql://")


@pytest.mark.parametrize("command", ["scp", "qrscp"])
def test_help_ends_with_an_example(command):
    done = run_cli(command, "--help")
    assert done.returncode == 0
    tail = done.stdout.rsplit("Example:", 1)
    assert len(tail) == 2 and f"fastdimse {command}" in tail[1]
