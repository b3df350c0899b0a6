"""Every example of the user guide (docs/guide/*.md) and of README.md's "Command line"
section runs here, so none goes stale; and the site builds (``mkdocs build --strict``).

How a page is read
------------------
- Fenced ```` ```python ```` blocks run as a script: this interpreter, in a subprocess,
  the block's temporary folder as working directory, a timeout. A block fails on any
  exception, so the examples ``assert`` what they promise where a print would hide it.
- Fenced ```` ```console ```` blocks run their ``$ `` lines, one by one, each through
  ``bash -c`` (so ``>``, ``|`` work): ``fastdimse`` (the console script installed in this
  venv), ``python`` (this interpreter), dcmtk's tools (the system's, not pynetdicom's
  apps of the same names in the venv) and a few harmless ones
  (``ls``, ``cat``, ``python``...; anything else, e.g. ``pip``, must be marked norun).
  A trailing backslash continues a command on the next line.
  - The lines under a command, up to the next ``$``, are its expected output: each one
    must appear in what the command printed (stdout and stderr), compared loosely:
    every run of digits matches any number, runs of spaces any spaces; a line ending
    in ``...`` is compared up to there (``...`` alone stands for lines left out).
  - The exit code must be 0, or N when the command ends with a comment ``# exit N``.
  - A command ending in ``&`` starts in the background (a server, as a user would run
    it in a second terminal): the test waits until the first port written in it
    answers, and ``$ kill %N`` stops the N-th background command of the block with
    SIGTERM and requires it to exit 0 (the servers' documented clean stop). What is
    still running at the end of the block is stopped by pid.
  - A ``fastdimse COMMAND`` whose module (``fastdimse.cli.COMMANDS``) is not installed
    skips the block, saying so: the commands arrive on other branches.
- ```` ```console-norun ```` blocks, and any block right after an HTML comment
  ``<!-- norun -->``, are shown only (installation steps, a server in the foreground).
  Other languages (toml, text, sh) are not run; but a block right after
  ``<!-- file: NAME -->`` (a config file, say) is written, placeholders substituted, as
  NAME into the folder of every later block of its page.

Peers and placeholders
----------------------
A block right after ``<!-- peers: NAME, NAME -->`` gets those peers, started for it
alone on 127.0.0.1 on free ports and stopped by pid (or ``stop()``) after it:

- ``storescp``: dcmtk ``storescp -aet STORESCP`` (any called AE title), written port 11112;
- ``archive``: our DICOMSCP Q/R archive ``ARCHIVE`` holding the sample exams (below),
  written port 11112, with ``CATCHER`` at 11113 as its C-MOVE destination;
- ``catcher``: dcmtk ``storescp -aet CATCHER``, written port 11113.

In the block's text (code and expected output alike):

- the ports 11112-11119 become the port of the peer written there, or else a free port
  (an example that starts its own server on 11112 gets a free one);
- absolute paths under ``/data/`` and ``/srv/`` become paths under the block's
  temporary folder. ``/data/exam1`` holds the sample exam of patient ``PAT001``
  ``DOE^JOHN`` (study 2.25.1001: a CT series 2.25.1001.1 of 3 images and an MR series
  2.25.1001.2 of 2, files IM0001.dcm-IM0005.dcm), ``/data/exam2`` that of ``PAT002``
  ``ROE^JANE`` (study 2.25.2001, 2 CT images). ``/srv`` is empty.

Each inline ``fastdimse ...`` example in README's command table must also be a ``$``
line of an executed console block (so the table cannot go stale either).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.peers import HOST, free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "guide"
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
PYTHON_TIMEOUT = 90.0
COMMAND_TIMEOUT = 60.0
SERVER_START_TIMEOUT = 20.0

# Programs a console block may run besides fastdimse.
DCMTK = {"echoscu", "storescu", "findscu", "movescu", "getscu", "dcmdump", "storescp", "dcmqrscp"}
HARMLESS = {"ls", "cat", "head", "tail", "wc", "python", "mkdir", "test", "grep"}

WRITTEN_PORTS = range(11112, 11120)
PEER_PORTS = {"storescp": 11112, "archive": 11112, "catcher": 11113}

_FENCE = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,})(?P<info>[^`\n]*)$")
_COMMENT = re.compile(r"^\s*<!--\s*(?P<body>.*?)\s*-->\s*$")
_EXIT = re.compile(r"#\s*exit\s+(?:code\s+)?(\d+)")


# --- reading pages ----------------------------------------------------------------------

@dataclass
class Block:
    """One fenced code block of a page."""

    page: str
    line: int            # 1-based line of its opening fence
    lang: str
    code: str
    norun: bool = False
    peers: list[str] = field(default_factory=list)
    file: str | None = None          # <!-- file: NAME -->: written for the blocks after it
    files: dict[str, str] = field(default_factory=dict)   # the page's files before it

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}-{self.lang}"


def read_blocks(text: str, page: str) -> list[Block]:
    """The fenced blocks of a Markdown text, with the directives of the comment before each."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    directive = ""
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            c = _COMMENT.match(lines[i])
            if c is not None:
                directive = c["body"]
            elif lines[i].strip():
                directive = ""
            i += 1
            continue
        fence, info, start = m["fence"], m["info"].strip(), i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(m["indent"]):] if lines[i].startswith(m["indent"]) else lines[i])
            i += 1
        i += 1
        lang = info.split()[0] if info else ""
        block = Block(page, start + 1, lang, "\n".join(body) + "\n")
        if lang.endswith("-norun") or directive == "norun":
            block.norun = True
        elif directive.startswith("file:"):
            block.file = directive[len("file:"):].strip()
        elif directive.startswith("peers:"):
            block.peers = [p.strip() for p in directive[len("peers:"):].split(",") if p.strip()]
            unknown = set(block.peers) - set(PEER_PORTS)
            if unknown:
                raise ValueError(f"{page}:{start + 1}: unknown peers {sorted(unknown)}")
        directive = ""
        blocks.append(block)
    return blocks


def readme_cli_section() -> str:
    """README.md from its "## Command line" heading to the next level-2 heading."""
    text = README.read_text()
    m = re.search(r"^## Command line\b.*?(?=^## |\Z)", text, re.S | re.M)
    if m is None:
        raise AssertionError("README.md has no '## Command line' section")
    return m.group(0)


def doc_pages() -> list[tuple[str, str]]:
    pages = [(f"docs/guide/{p.name}", p.read_text()) for p in sorted(GUIDE.glob("*.md"))]
    pages.append(("README.md#command-line", readme_cli_section()))
    return pages


def runnable_blocks() -> list[Block]:
    out = []
    for name, text in doc_pages():
        files: dict[str, str] = {}
        for b in read_blocks(text, name):
            if b.file:
                files[b.file] = b.code
            elif b.lang in ("python", "console") and not b.norun:
                b.files = dict(files)
                out.append(b)
    return out


# --- console blocks --------------------------------------------------------------------

@dataclass
class Command:
    line: int                    # offset of the command's first line in the block
    text: str
    expected: list[str] = field(default_factory=list)

    @property
    def background(self) -> bool:
        return _BACKGROUND.search(self.text) is not None

    @property
    def exit_code(self) -> int:
        m = _EXIT.search(self.text)
        return int(m.group(1)) if m else 0


# A trailing "&" (then maybe a comment): the command runs in the background.
_BACKGROUND = re.compile(r"\s&\s*(#[^'\"]*)?$")


def parse_console(code: str) -> list[Command]:
    """The ``$`` commands of a console block, each with the output lines under it."""
    commands: list[Command] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            text, start = line[2:], i
            while text.endswith("\\") and i + 1 < len(lines):
                i += 1
                text = text[:-1] + " " + lines[i].strip()
            commands.append(Command(start, text))
        elif commands and line.strip():
            commands[-1].expected.append(line)
        elif line.strip():
            raise ValueError(f"output line before any command: {line!r}")
        i += 1
    return commands


def output_pattern(expected: str) -> re.Pattern:
    """A shown output line as a loose pattern: numbers match any number, spaces any spaces."""
    parts = []
    for token in re.findall(r"\d+(?:[.,]\d+)*|\s+|[^\d\s]+", expected.strip()):
        if token[0].isdigit():
            parts.append(r"\d+(?:[.,]\d+)*")
        elif token.isspace():
            parts.append(r"\s+")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


def check_output(cmd: Command, output: str, where: str) -> None:
    for want in cmd.expected:
        want = want.strip()
        if want.endswith("..."):   # a line shown only up to "..."
            want = want[:-3]
        if not want:
            continue
        if not output_pattern(want).search(output):
            raise AssertionError(f"{where}: `{cmd.text}` did not print a line like\n  {want}\n"
                                 f"it printed:\n{output}")


def command_words(text: str) -> list[str]:
    """The words of a command as the shell sees them, without a comment or a final "&"."""
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        words = text.split()
    return words[:-1] if words[-1:] == ["&"] else words


def check_cli_command(text: str) -> None:
    """``$ fastdimse SUB ...`` names a command fastdimse has (AssertionError otherwise)."""
    from fastdimse.cli import COMMANDS

    words = command_words(text)
    sub = next((w for w in words[1:] if not w.startswith("-")), None)
    if sub is not None and sub not in COMMANDS:
        raise AssertionError(f"`{text}`: fastdimse has no command {sub!r}")


def first_port(text: str) -> int | None:
    m = re.search(r"(?:--port[ =]|[:\s])(\d{2,5})(?![\w.])", text)
    return int(m.group(1)) if m else None


# --- the block's world: peers, placeholders -------------------------------------------

SAMPLE = {
    # folder: (PatientID, PatientName, study UID, StudyDate, description, accession,
    #          [(series UID suffix, modality, images)])
    "exam1": ("PAT001", "DOE^JOHN", "2.25.1001", "20260115", "HEAD", "A1001",
              [("1", "CT", 3), ("2", "MR", 2)]),
    "exam2": ("PAT002", "ROE^JANE", "2.25.2001", "20260220", "CHEST", "A2001",
              [("1", "CT", 2)]),
}


def write_sample(data: Path) -> None:
    """/data/exam1 and /data/exam2 (see the module docstring), built with pydicom."""
    from tests.support import storedata

    for folder, (pid, name, study, date, desc, acc, series) in SAMPLE.items():
        n = 0
        for suffix, modality, images in series:
            sop_class = storedata.CT_IMAGE if modality == "CT" else storedata.MR_IMAGE
            for k in range(1, images + 1):
                n += 1
                series_uid = f"{study}.{suffix}"
                ds = storedata.make_image(sop_class, patient_id=pid, study_uid=study,
                                          series_uid=series_uid, sop_uid=f"{series_uid}.{k}",
                                          rows=32, columns=32, seed=n, with_sequence=False)
                ds.PatientName, ds.StudyDate, ds.StudyDescription = name, date, desc
                ds.AccessionNumber, ds.SeriesNumber, ds.InstanceNumber = acc, int(suffix), k
                ds.StudyTime = "101500"
                storedata.write_instance(ds, data / folder / f"IM{n:04d}.dcm")


class World:
    """The peers, ports and folders of one block."""

    def __init__(self, tmp: Path, names: list[str]):
        self.tmp = tmp
        self.ports = {p: free_port() for p in WRITTEN_PORTS}
        self.stops: list = []
        (tmp / "srv").mkdir()
        write_sample(tmp / "data")
        self.log_dir = tmp / "peer-logs"
        self.log_dir.mkdir()
        try:
            for name in names:
                getattr(self, f"_start_{name}")()
        except BaseException:
            self.stop()
            raise

    def _start_storescp(self) -> None:
        from tests.support.peers import start_dcmtk_storage_scp

        peer = start_dcmtk_storage_scp(self.log_dir, self.tmp / "storescp-out", ae_title="STORESCP",
                                       port=self.ports[11112])
        self.stops.append(peer.stop)

    def _start_catcher(self) -> None:
        from tests.support.qr_helpers import start_dcmtk_catcher

        peer = start_dcmtk_catcher(self.log_dir, self.tmp / "catcher-out", port=self.ports[11113])
        self.stops.append(peer.stop)

    def _start_archive(self) -> None:
        from fastdimse import DICOMSCP, Entity

        from tests.support.peers import make_scu

        scp = DICOMSCP(Entity("ARCHIVE", HOST, self.ports[11112]), storage_dir=self.tmp / "archive-store",
                       known_entities=[Entity("CATCHER", HOST, self.ports[11113])])
        scp.listen_for_incoming_associations(keep_listener_running=True)
        self.stops.append(scp.close)
        wait_for_port(HOST, self.ports[11112], timeout=10.0)
        results = make_scu().store(scp.entity, [self.tmp / "data" / f for f in SAMPLE])
        assert results and all(r.is_success for r in results), [str(r) for r in results]

    def substitute(self, text: str) -> str:
        text = re.sub(r"(?<![\w./-])/(data|srv)(?=/|\b)", lambda m: str(self.tmp / m.group(1)), text)
        return re.sub(r"\b(1111[2-9])\b", lambda m: str(self.ports[int(m.group(1))]), text)

    def env(self) -> dict[str, str]:
        # fastdimse and python from this venv, every other program from the system: the
        # venv's bin also holds pynetdicom's echoscu/storescu/findscu..., not dcmtk's.
        bin_dir = self.tmp / "bin"
        if not bin_dir.exists():
            bin_dir.mkdir()
            (bin_dir / "fastdimse").symlink_to(BIN / "fastdimse")
            wrapper = bin_dir / "python"      # (a symlink would lose the venv)
            wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
            wrapper.chmod(0o755)
        env = dict(os.environ)
        rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != BIN.resolve()]
        env["PATH"] = os.pathsep.join([str(bin_dir), *rest])
        env.update(COLUMNS="120", NO_COLOR="1", PYTHONUNBUFFERED="1")
        return env

    def stop(self) -> None:
        for stop in reversed(self.stops):
            stop()
        self.stops.clear()


@pytest.fixture
def world_factory(tmp_path):
    worlds: list[World] = []

    def make(names: list[str]) -> World:
        folder = tmp_path / f"w{len(worlds)}"
        folder.mkdir()
        w = World(folder, names)
        worlds.append(w)
        return w

    try:
        yield make
    finally:
        for w in worlds:
            w.stop()


# --- running ---------------------------------------------------------------------------

def run_python(block: Block, world: World) -> None:
    script = world.tmp / f"example_{block.line}.py"
    script.write_text(world.substitute(block.code))
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=world.tmp, env=world.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              timeout=PYTHON_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.id}: the example did not finish within {PYTHON_TIMEOUT} s")
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, f"{block.id}: the example failed (exit {done.returncode}):\n{out}"


@dataclass
class Job:
    cmd: Command
    proc: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _check_program(cmd: Command, where: str) -> None:
    words = command_words(cmd.text)
    prog = words[0] if words else ""
    if prog == "kill":
        return
    if prog != "fastdimse" and prog not in DCMTK | HARMLESS:
        raise AssertionError(f"{where}: `{cmd.text}` runs {prog!r}, which the docs test does not run: "
                             "mark the block <!-- norun --> or use fastdimse / dcmtk")


def run_console(block: Block, world: World) -> None:
    commands = parse_console(block.code)
    assert commands, f"{block.id}: a console block without a `$ ` command (mark it norun?)"
    for cmd in commands:
        _check_program(cmd, block.id)
        if command_words(cmd.text)[:1] == ["fastdimse"]:
            check_cli_command(cmd.text)
    jobs: list[Job] = []
    try:
        for cmd in commands:
            where = f"{block.id} (line {block.line + 1 + cmd.line})"
            text = world.substitute(cmd.text)
            words = command_words(text)
            if words[:1] == ["kill"]:
                stop_job(jobs, words, where)
            elif cmd.background:
                jobs.append(start_job(cmd, text, world, len(jobs), where))
            else:
                run_command(cmd, text, world, where)
    finally:
        for job in jobs:
            stop_process(job.proc, timeout=10.0)


def run_command(cmd: Command, text: str, world: World, where: str) -> None:
    try:
        done = subprocess.run(["bash", "-c", text], cwd=world.tmp, env=world.env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{where}: `{cmd.text}` did not finish within {COMMAND_TIMEOUT} s")
    out = done.stdout.decode(errors="replace")
    assert "Traceback (most recent call last)" not in out, f"{where}: `{cmd.text}` printed a traceback:\n{out}"
    assert done.returncode == cmd.exit_code, (
        f"{where}: `{cmd.text}` exited {done.returncode}, the docs say {cmd.exit_code}:\n{out}")
    check_output(cmd, out, where)


def start_job(cmd: Command, text: str, world: World, n: int, where: str) -> Job:
    port = first_port(text)
    if port is None:
        raise AssertionError(f"{where}: a background command needs a port to wait for: `{cmd.text}`")
    log = world.tmp / f"job{n + 1}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(["bash", "-c", "exec " + _BACKGROUND.sub("", text).strip()],
                                cwd=world.tmp, env=world.env(), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    job = Job(cmd, proc, log)
    try:
        wait_for_port(HOST, port, timeout=SERVER_START_TIMEOUT, proc=proc, log_path=log)
    except BaseException:
        stop_process(proc)
        raise
    return job


def stop_job(jobs: list[Job], words: list[str], where: str) -> None:
    spec = words[-1] if len(words) > 1 else ""
    if not re.fullmatch(r"%\d+", spec) or not 1 <= int(spec[1:]) <= len(jobs):
        raise AssertionError(f"{where}: `kill {spec}` does not name a background command of this block")
    job = jobs[int(spec[1:]) - 1]
    if job.proc.poll() is None:
        job.proc.send_signal(signal.SIGTERM)
    try:
        rc = job.proc.wait(timeout=15.0)
    except subprocess.TimeoutExpired:
        stop_process(job.proc)
        pytest.fail(f"{where}: `{job.cmd.text}` did not stop within 15 s of SIGTERM")
    out = job.output()
    assert rc == 0, f"{where}: `{job.cmd.text}` exited {rc} on SIGTERM, not 0:\n{out}"
    check_output(job.cmd, out, where)


# --- the tests -------------------------------------------------------------------------

BLOCKS = runnable_blocks()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in BLOCKS])
def test_example_runs(block: Block, world_factory) -> None:
    world = world_factory(block.peers)
    for name, content in block.files.items():
        (world.tmp / name).write_text(world.substitute(content))
    if block.lang == "python":
        run_python(block, world)
    else:
        run_console(block, world)


def test_every_task_page_shows_python_and_the_command_line() -> None:
    for name, text in doc_pages():
        if not name.startswith("docs/guide/") or name.endswith(("index.md", "api.md", "command-line.md")):
            continue
        langs = {b.lang for b in read_blocks(text, name)}
        assert {"python", "console"} <= langs, f"{name}: a task page shows both the Python API and the CLI"


def test_readme_table_examples_are_executed() -> None:
    """The inline examples of README's command table are $ lines of executed blocks."""
    section = readme_cli_section()
    table = [line for line in section.splitlines() if line.startswith("|")]
    examples = [m.strip() for row in table for m in re.findall(r"`(fastdimse [^`]+)`", row)]
    assert len(examples) >= 9, f"README's command table shows {len(examples)} examples"
    executed = {tuple(command_words(c.text)) for b in BLOCKS if b.lang == "console"
                for c in parse_console(b.code)}
    for ex in examples:
        assert tuple(command_words(ex)) in executed, f"README's example `{ex}` is not run by any console block"


def test_reader_finds_directives_and_output() -> None:
    """The reader itself: directives, norun, continuation lines, expected output, exit codes."""
    text = ("<!-- norun -->\n```console\n$ pip install fastdimse\n```\n\n"
            "<!-- peers: storescp -->\n```console\n$ fastdimse echo \\\n    STORESCP@127.0.0.1:11112\n"
            "C-ECHO STORESCP@127.0.0.1:11112: status 0x0000 (Success) 0.41 ms\n"
            "$ fastdimse echo X@127.0.0.1:11119  # exit 3\n```\n\n```python\nprint(1)\n```\n")
    norun, console, python = read_blocks(text, "t.md")
    assert norun.norun and not console.norun and console.peers == ["storescp"] and python.peers == []
    echo, unreachable = parse_console(console.code)
    assert echo.text == "fastdimse echo  STORESCP@127.0.0.1:11112" and echo.exit_code == 0
    assert unreachable.exit_code == 3 and not unreachable.background
    pattern = output_pattern(echo.expected[0])
    assert pattern.search("C-ECHO STORESCP@127.0.0.1:40123: status 0x0000 (Success)  12.5 ms")
    assert not pattern.search("C-ECHO STORESCP@127.0.0.1:40123: status 0xA700 (Failure) 12.5 ms")
    with pytest.raises(ValueError):
        read_blocks("<!-- peers: nobody -->\n```python\npass\n```\n", "t.md")


SERVER = ("python -c \"import signal, socket, sys; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); "
          "s = socket.create_server(('127.0.0.1', 11112)); print('serving on', 11112, flush=True); "
          "signal.pause()\" &   # listens on 11112")
CLIENT = "python -c \"import socket; socket.create_connection(('127.0.0.1', 11112)).close(); print('connected')\""


def test_console_runner_background_output_exit_codes(world_factory) -> None:
    """The runner on a block of its own: a background server stopped by kill %1, its output
    checked after it stopped, exit codes, placeholders; and it fails where the docs are wrong."""
    world = world_factory([])
    good = f"$ {SERVER}\n$ {CLIENT}\nconnected\n$ python -c 'import sys; sys.exit(3)'   # exit 3\n" \
           "$ kill %1\nserving on 11112\n$ ls /data/exam1\nIM0001.dcm\n"
    run_console(Block("t.md", 1, "console", good), world)
    assert not any(p.startswith("/data") for p in command_words(world.substitute("ls /data/exam1")))
    for wrong in (f"$ {CLIENT}\nconnected to somewhere else\n",        # output not printed
                  "$ python -c 'import sys; sys.exit(1)'\n",              # exit 1, docs say 0
                  "$ kill %1\n",                                          # no such job
                  "$ pip install fastdimse\n"):                           # not a program the test runs
        world = world_factory([])
        if "connected" in wrong:
            wrong = f"$ {SERVER}\n" + wrong
        with pytest.raises(AssertionError):
            run_console(Block("t.md", 1, "console", wrong), world)


def test_site_builds_strict(tmp_path) -> None:
    """``mkdocs build --strict``: every page, link and API reference entry resolves."""
    # make test installs the docs extra (Makefile: docs-deps): missing is a failure, not a skip.
    missing = [m for m in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python", "material")
               if importlib.util.find_spec(m) is None]
    assert not missing, f"{', '.join(missing)} not installed: run `make docs-deps` (make test does)"
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=150)
    out = done.stdout.decode(errors="replace")
    assert done.returncode == 0, out
    for page in ("index.html", "guide/send-a-folder/index.html", "guide/api/index.html",
                 "guide/command-line/index.html"):
        assert (site / page).is_file(), f"{page} missing from the site:\n{out}"
    api = (site / "guide/api/index.html").read_text()
    for name in ("DICOMSCU", "DICOMSCP", "QueryBuilder", "StoreSummary", "AssociationRejected"):
        assert name in api, f"the API reference does not mention {name}"
    # The core's constants by value (docs/griffe_fastdimse.py), roles as code, not ":class:".
    assert "1.2.840.10008.1.1" in api, "uids.VERIFICATION is not shown by its value"
    assert ":class:" not in api and ":meth:" not in api
