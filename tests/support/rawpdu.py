"""Upper-layer PDUs built and read by hand, for tests that play a (mis)behaving peer.

Written from PS3.8 section 9.3 (all PDU fields big-endian) and PS3.7 (the command
set: group 0000, implicit VR little endian), independently of fastdimse, so the
tests do not check the library against itself. tests/interop/test_peers_sanity.py proves
these bytes against dcmtk and pynetdicom before they are used against our SCP.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from dataclasses import dataclass, field

# PDU types (PS3.8 9.3.1)
A_ASSOCIATE_RQ = 0x01
A_ASSOCIATE_AC = 0x02
A_ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
A_RELEASE_RQ = 0x05
A_RELEASE_RP = 0x06
A_ABORT = 0x07

PDU_NAMES = {
    A_ASSOCIATE_RQ: "A-ASSOCIATE-RQ", A_ASSOCIATE_AC: "A-ASSOCIATE-AC",
    A_ASSOCIATE_RJ: "A-ASSOCIATE-RJ", P_DATA_TF: "P-DATA-TF",
    A_RELEASE_RQ: "A-RELEASE-RQ", A_RELEASE_RP: "A-RELEASE-RP", A_ABORT: "A-ABORT",
}

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
# A made-up implementation class UID under the UUID-derived root 2.25 (PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = "2.25.160513128409231462893046254812903877553"
IMPLEMENTATION_VERSION = "FDTESTS_RAW"

PDU_HEADER = struct.Struct(">BBI")  # type, reserved, length


def _uid(uid: str) -> bytes:
    return uid.encode("ascii")


def _ae(title: str) -> bytes:
    raw = title.encode("ascii")
    assert len(raw) <= 16
    return raw.ljust(16, b" ")


def _item(item_type: int, value: bytes) -> bytes:
    """A variable item: type, reserved, 2-byte length, value (PS3.8 9.3.2.x)."""
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def pdu(pdu_type: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU: type, reserved, 4-byte length (``length`` overrides the true one), body."""
    return PDU_HEADER.pack(pdu_type, 0, len(body) if length is None else length) + body


def associate_rq(called_ae: str = "ANY-SCP", calling_ae: str = "RAWSCU", *,
                 contexts: list[tuple[int, str, list[str]]] | None = None,
                 max_pdu: int | None = 16384, protocol_version: int = 0x0001,
                 implementation_uid: str | None = IMPLEMENTATION_CLASS_UID,
                 async_window: tuple[int, int] | None = None) -> bytes:
    """A valid A-ASSOCIATE-RQ (PS3.8 9.3.2); by default one context: Verification, implicit LE.

    ``contexts``: list of (odd context id, abstract syntax UID, [transfer syntax UIDs]).
    ``max_pdu`` None leaves out the maximum length sub-item; ``protocol_version``
    lets a test send a version this implementation does not support.
    ``async_window``: (max operations invoked, max operations performed) proposed in an
    asynchronous operations window sub-item (PS3.7 D.3.3.3); None (default) = no item.
    """
    if contexts is None:
        contexts = [(1, VERIFICATION, [IMPLICIT_VR_LE])]
    items = _item(0x10, _uid(APPLICATION_CONTEXT))
    for ctx_id, abstract, transfers in contexts:
        sub = _item(0x30, _uid(abstract))
        for ts in transfers:
            sub += _item(0x40, _uid(ts))
        items += _item(0x20, struct.pack(">BBBB", ctx_id, 0, 0, 0) + sub)
    user = b""
    if max_pdu is not None:
        user += _item(0x51, struct.pack(">I", max_pdu))
    if implementation_uid is not None:
        user += _item(0x52, _uid(implementation_uid))
    if async_window is not None:
        user += async_window_item(*async_window)
    user += _item(0x55, IMPLEMENTATION_VERSION.encode("ascii"))
    items += _item(0x50, user)
    fixed = struct.pack(">HH", protocol_version, 0) + _ae(called_ae) + _ae(calling_ae) + bytes(32)
    return pdu(A_ASSOCIATE_RQ, fixed + items)


def async_window_item(invoked: int, performed: int) -> bytes:
    """Asynchronous operations window sub-item (PS3.7 D.3.3.3.1/2): type 0x53, two 2-byte
    big-endian counts, both from the association-requestor's point of view; 0 = unlimited."""
    return _item(0x53, struct.pack(">HH", invoked, performed))


def release_rq() -> bytes:
    return pdu(A_RELEASE_RQ, bytes(4))


def release_rp() -> bytes:
    return pdu(A_RELEASE_RP, bytes(4))


def abort(source: int = 0, reason: int = 0) -> bytes:
    return pdu(A_ABORT, struct.pack(">BBBB", 0, 0, source, reason))


def pdv_item(context_id: int, control: int, fragment: bytes, length: int | None = None) -> bytes:
    """A presentation data value item (PS3.8 9.3.5.1): 4-byte length covers id + header + data.

    ``control``: bit 0 set = command (else data set), bit 1 set = last fragment.
    """
    n = len(fragment) + 2 if length is None else length
    return struct.pack(">IBB", n, context_id, control) + fragment


def p_data(*pdvs: bytes, length: int | None = None) -> bytes:
    return pdu(P_DATA_TF, b"".join(pdvs), length)


# --- the DIMSE command set (PS3.7 6.3.1, 9.3.5; implicit VR little endian) --------------

def _element(group: int, elem: int, value: bytes) -> bytes:
    return struct.pack("<HHI", group, elem, len(value)) + value


def _ui(uid: str) -> bytes:
    raw = uid.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def c_echo_rq_command(message_id: int = 1) -> bytes:
    """The command set of a C-ECHO-RQ, with its (0000,0000) group length."""
    body = (
        _element(0x0000, 0x0002, _ui(VERIFICATION))         # Affected SOP Class UID
        + _element(0x0000, 0x0100, struct.pack("<H", 0x0030))   # Command Field: C-ECHO-RQ
        + _element(0x0000, 0x0110, struct.pack("<H", message_id))  # Message ID
        + _element(0x0000, 0x0800, struct.pack("<H", 0x0101))   # no data set
    )
    return _element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def c_echo_rq(context_id: int = 1, message_id: int = 1) -> bytes:
    """A whole P-DATA-TF carrying a C-ECHO-RQ in one last command fragment."""
    return p_data(pdv_item(context_id, 0x03, c_echo_rq_command(message_id)))


def parse_command(data: bytes) -> dict[int, bytes]:
    """Group-0000 implicit VR LE elements -> {(group << 16) | element: raw value}."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 8 <= len(data):
        group, elem, n = struct.unpack_from("<HHI", data, pos)
        pos += 8
        out[(group << 16) | elem] = data[pos:pos + n]
        pos += n
    return out


def command_us(cmd: dict[int, bytes], tag: int) -> int:
    return struct.unpack("<H", cmd[tag])[0]


TAG_COMMAND_FIELD = 0x00000100
TAG_MESSAGE_ID_RESPONDED = 0x00000120
TAG_STATUS = 0x00000900


# --- reading PDUs from a socket --------------------------------------------------------

@dataclass
class Pdu:
    type: int
    body: bytes

    @property
    def name(self) -> str:
        return PDU_NAMES.get(self.type, f"unknown PDU 0x{self.type:02x}")


@dataclass
class AssociateAc:
    called_ae: str
    calling_ae: str
    max_pdu: int | None
    # context id -> (result, transfer syntax UID or None)
    contexts: dict[int, tuple[int, str | None]] = field(default_factory=dict)
    # The asynchronous operations window sub-item (invoked, performed), None if absent.
    async_window: tuple[int, int] | None = None


def parse_associate_ac(body: bytes) -> AssociateAc:
    called = body[4:20].decode("ascii").strip()
    calling = body[20:36].decode("ascii").strip()
    pos = 68
    max_pdu = None
    window = None
    contexts: dict[int, tuple[int, str | None]] = {}
    while pos + 4 <= len(body):
        itype, _, n = struct.unpack_from(">BBH", body, pos)
        value = body[pos + 4:pos + 4 + n]
        pos += 4 + n
        if itype == 0x21:
            ctx_id, result = value[0], value[2]
            ts = None
            sub = 4
            while sub + 4 <= len(value):
                stype, _, sn = struct.unpack_from(">BBH", value, sub)
                if stype == 0x40:
                    ts = value[sub + 4:sub + 4 + sn].decode("ascii").rstrip("\x00 ")
                sub += 4 + sn
            contexts[ctx_id] = (result, ts)
        elif itype == 0x50:
            sub = 0
            while sub + 4 <= len(value):
                stype, _, sn = struct.unpack_from(">BBH", value, sub)
                if stype == 0x51 and sn == 4:
                    max_pdu = struct.unpack_from(">I", value, sub + 4)[0]
                elif stype == 0x53 and sn == 4 and window is None:  # the first well-formed one
                    window = struct.unpack_from(">HH", value, sub + 4)
                sub += 4 + sn
    return AssociateAc(called, calling, max_pdu, contexts, window)


def parse_reject(body: bytes) -> tuple[int, int, int]:
    """A-ASSOCIATE-RJ body -> (result, source, reason)."""
    return body[1], body[2], body[3]


def parse_abort(body: bytes) -> tuple[int, int]:
    """A-ABORT body -> (source, reason)."""
    return body[2], body[3]


def parse_p_data(body: bytes) -> list[tuple[int, int, bytes]]:
    """P-DATA-TF body -> [(context id, control header, fragment)]."""
    out = []
    pos = 0
    while pos + 6 <= len(body):
        n, ctx, ctrl = struct.unpack_from(">IBB", body, pos)
        out.append((ctx, ctrl, body[pos + 6:pos + 4 + n]))
        pos += 4 + n
    return out


class Closed(Exception):
    """The peer closed (or reset) the connection."""


def recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(buf)} of {n} bytes before the deadline")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(n - len(buf))
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise Closed(f"connection reset after {len(buf)} of {n} bytes") from exc
        except socket.timeout:
            raise TimeoutError(f"got {len(buf)} of {n} bytes before the deadline") from None
        if not chunk:
            raise Closed(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


MAX_TEST_PDU = 1 << 20  # what a test is willing to read; our peers never send more


def read_pdu(sock: socket.socket, timeout: float = 10.0) -> Pdu:
    """Read one whole PDU; raise Closed if the peer closes, TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    head = recv_exact(sock, PDU_HEADER.size, deadline)
    ptype, _, length = PDU_HEADER.unpack(head)
    if length > MAX_TEST_PDU:
        raise AssertionError(f"peer sent a {PDU_NAMES.get(ptype, hex(ptype))} "
                             f"claiming {length} bytes")
    return Pdu(ptype, recv_exact(sock, length, deadline))


def read_abort_or_close(sock: socket.socket, timeout: float = 10.0) -> str:
    """What a peer does after we misbehave: ``"abort"`` (an A-ABORT PDU) or ``"closed"``.

    Anything else (another PDU type, or nothing before ``timeout``) fails the test.
    """
    try:
        got = read_pdu(sock, timeout)
    except Closed:
        return "closed"
    except TimeoutError:
        raise AssertionError(
            f"peer neither sent A-ABORT nor closed the connection within {timeout} s"
        ) from None
    assert got.type == A_ABORT, f"expected A-ABORT or close, got {got.name} {got.body[:32]!r}"
    assert len(got.body) == 4, f"A-ABORT body should be 4 bytes, got {got.body!r}"
    return "abort"


def connect(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def associate(sock: socket.socket, called_ae: str, calling_ae: str = "RAWSCU",
              timeout: float = 10.0, **kwargs) -> AssociateAc:
    """Send a valid A-ASSOCIATE-RQ and require an A-ASSOCIATE-AC accepting context 1."""
    sock.sendall(associate_rq(called_ae, calling_ae, **kwargs))
    got = read_pdu(sock, timeout)
    assert got.type == A_ASSOCIATE_AC, f"expected A-ASSOCIATE-AC, got {got.name} {got.body!r}"
    ac = parse_associate_ac(got.body)
    assert ac.contexts.get(1, (None,))[0] == 0, f"context 1 not accepted: {ac.contexts}"
    return ac


def echo(sock: socket.socket, message_id: int = 1, timeout: float = 10.0) -> int:
    """Send a C-ECHO-RQ on context 1 and return the status of the C-ECHO-RSP."""
    sock.sendall(c_echo_rq(1, message_id))
    command = b""
    while True:
        got = read_pdu(sock, timeout)
        assert got.type == P_DATA_TF, f"expected P-DATA-TF, got {got.name} {got.body!r}"
        done = False
        for ctx, ctrl, frag in parse_p_data(got.body):
            assert ctx == 1
            assert ctrl & 0x01, "C-ECHO-RSP must be a command with no data set"
            command += frag
            done = done or bool(ctrl & 0x02)
        if done:
            break
    cmd = parse_command(command)
    assert command_us(cmd, TAG_COMMAND_FIELD) == 0x8030, "not a C-ECHO-RSP"
    assert command_us(cmd, TAG_MESSAGE_ID_RESPONDED) == message_id
    return command_us(cmd, TAG_STATUS)


def release(sock: socket.socket, timeout: float = 10.0) -> None:
    """Send A-RELEASE-RQ and require A-RELEASE-RP."""
    sock.sendall(release_rq())
    got = read_pdu(sock, timeout)
    assert got.type == A_RELEASE_RP, f"expected A-RELEASE-RP, got {got.name}"


# --- the acceptor side by hand: read an A-ASSOCIATE-RQ, answer A-ASSOCIATE-AC ---------

@dataclass
class AssociateRq:
    protocol_version: int
    called_ae: str
    calling_ae: str
    max_pdu: int | None
    # context id -> (abstract syntax UID, [transfer syntax UIDs])
    contexts: dict[int, tuple[str, list[str]]] = field(default_factory=dict)
    # The asynchronous operations window sub-item (invoked, performed), None if absent.
    async_window: tuple[int, int] | None = None


def _uid_text(raw: bytes) -> str:
    return raw.decode("ascii").rstrip("\x00 ")


def parse_associate_rq(body: bytes) -> AssociateRq:
    version = struct.unpack_from(">H", body, 0)[0]
    called = body[4:20].decode("ascii").strip()
    calling = body[20:36].decode("ascii").strip()
    pos = 68
    max_pdu = None
    window = None
    contexts: dict[int, tuple[str, list[str]]] = {}
    while pos + 4 <= len(body):
        itype, _, n = struct.unpack_from(">BBH", body, pos)
        value = body[pos + 4:pos + 4 + n]
        pos += 4 + n
        if itype == 0x20:
            ctx_id = value[0]
            abstract, transfers = "", []
            sub = 4
            while sub + 4 <= len(value):
                stype, _, sn = struct.unpack_from(">BBH", value, sub)
                text = _uid_text(value[sub + 4:sub + 4 + sn])
                if stype == 0x30:
                    abstract = text
                elif stype == 0x40:
                    transfers.append(text)
                sub += 4 + sn
            contexts[ctx_id] = (abstract, transfers)
        elif itype == 0x50:
            sub = 0
            while sub + 4 <= len(value):
                stype, _, sn = struct.unpack_from(">BBH", value, sub)
                if stype == 0x51 and sn == 4:
                    max_pdu = struct.unpack_from(">I", value, sub + 4)[0]
                elif stype == 0x53 and sn == 4 and window is None:  # the first well-formed one
                    window = struct.unpack_from(">HH", value, sub + 4)
                sub += 4 + sn
    return AssociateRq(version, called, calling, max_pdu, contexts, window)


def associate_ac(rq: AssociateRq, max_pdu: int = 16384,
                 async_window: tuple[int, int] | None = None) -> bytes:
    """Accept every proposed context with its first transfer syntax.

    ``async_window``: (invoked, performed) answered in an asynchronous operations window
    sub-item, from the requestor's point of view; None (default) = no item (synchronous).
    """
    items = _item(0x10, _uid(APPLICATION_CONTEXT))
    for ctx_id, (_abstract, transfers) in sorted(rq.contexts.items()):
        ts = transfers[0] if transfers else IMPLICIT_VR_LE
        items += _item(0x21, struct.pack(">BBBB", ctx_id, 0, 0, 0) + _item(0x40, _uid(ts)))
    user = _item(0x51, struct.pack(">I", max_pdu)) + _item(0x52, _uid(IMPLEMENTATION_CLASS_UID))
    if async_window is not None:
        user += async_window_item(*async_window)
    items += _item(0x50, user)
    fixed = struct.pack(">HH", 1, 0) + _ae(rq.called_ae) + _ae(rq.calling_ae) + bytes(32)
    return pdu(A_ASSOCIATE_AC, fixed + items)


def c_echo_rsp(context_id: int, message_id: int, status: int = 0x0000) -> bytes:
    body = (
        _element(0x0000, 0x0002, _ui(VERIFICATION))
        + _element(0x0000, 0x0100, struct.pack("<H", 0x8030))
        + _element(0x0000, 0x0120, struct.pack("<H", message_id))
        + _element(0x0000, 0x0800, struct.pack("<H", 0x0101))
        + _element(0x0000, 0x0900, struct.pack("<H", status))
    )
    cmd = _element(0x0000, 0x0000, struct.pack("<I", len(body))) + body
    return p_data(pdv_item(context_id, 0x03, cmd))


def _listen(host: str, backlog: int) -> tuple[socket.socket, int]:
    """A listening socket on ``host``, any free port: (listener, port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    listener.listen(backlog)
    return listener, listener.getsockname()[1]


class HandSCP:
    """An SCP played by hand in a thread, to watch what an SCU sends.

    ``mode``: "accept" answers A-ASSOCIATE-AC (with ``max_pdu``), C-ECHO-RSP and
    A-RELEASE-RP; "silent" accepts the TCP connection and never answers;
    "no-echo-reply" accepts the association but never answers a C-ECHO-RQ.
    ``received`` lists the PDUs it got, in order; ``rq`` the parsed A-ASSOCIATE-RQ.
    Stop it with ``close()`` (the tests' fixtures do).
    """

    def __init__(self, mode: str = "accept", max_pdu: int = 16384, host: str = "127.0.0.1"):
        import threading

        self.mode = mode
        self.max_pdu = max_pdu
        self.received: list[Pdu] = []
        self.rq: AssociateRq | None = None
        self.error: BaseException | None = None
        self.closed_by_peer = threading.Event()
        self._stop = threading.Event()
        self._listener, self.port = _listen(host, 1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        """Serve connections one after another until close(); a connection that sends
        nothing (a port probe) is ignored."""
        self._listener.settimeout(0.1)
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except socket.timeout:
                    continue
                with conn:
                    self._serve(conn)
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc

    def _serve(self, conn: socket.socket) -> None:
        got_any = False
        while not self._stop.is_set():
            ready, _, _ = select.select([conn], [], [], 0.1)
            if not ready:
                continue
            try:
                got = read_pdu(conn, timeout=10.0)
            except Closed:
                if got_any:
                    self.closed_by_peer.set()
                return
            got_any = True
            self.received.append(got)
            self._answer(conn, got)

    def _answer(self, conn: socket.socket, got: Pdu) -> None:
        if self.mode == "silent":
            return
        if got.type == A_ASSOCIATE_RQ:
            self.rq = parse_associate_rq(got.body)
            conn.sendall(associate_ac(self.rq, self.max_pdu))
        elif got.type == P_DATA_TF and self.mode == "accept":
            for ctx, ctrl, frag in parse_p_data(got.body):
                if ctrl & 0x03 == 0x03:
                    cmd = parse_command(frag)
                    mid = struct.unpack("<H", cmd[0x00000110])[0]
                    conn.sendall(c_echo_rsp(ctx, mid))
        elif got.type == A_RELEASE_RQ:
            conn.sendall(release_rp())

    def types(self) -> list[int]:
        return [p.type for p in self.received]

    def wait_for(self, pdu_type: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pdu_type in self.types():
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


# --- C-STORE by hand (PS3.7 9.3.1; data set fragments PS3.8 9.3.5.1) ----------------------

def c_store_rq_command(sop_class: str, sop_instance: str, message_id: int = 1,
                       priority: int = 0x0000) -> bytes:
    """The command set of a C-STORE-RQ (with a data set), with its group length."""
    body = (
        _element(0x0000, 0x0002, _ui(sop_class))                    # Affected SOP Class UID
        + _element(0x0000, 0x0100, struct.pack("<H", 0x0001))        # Command Field: C-STORE-RQ
        + _element(0x0000, 0x0110, struct.pack("<H", message_id))    # Message ID
        + _element(0x0000, 0x0700, struct.pack("<H", priority))      # Priority
        + _element(0x0000, 0x0800, struct.pack("<H", 0x0000))        # a data set follows
        + _element(0x0000, 0x1000, _ui(sop_instance))               # Affected SOP Instance UID
    )
    return _element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def data_set_pdus(context_id: int, data: bytes, fragment: int = 4096) -> list[bytes]:
    """The data set as P-DATA-TF PDUs of one PDV each, ``fragment`` bytes of data per PDV;
    the last one carries the "last fragment" bit."""
    pieces = [data[i:i + fragment] for i in range(0, len(data), fragment)] or [b""]
    return [p_data(pdv_item(context_id, 0x02 if i == len(pieces) - 1 else 0x00, piece))
            for i, piece in enumerate(pieces)]


def read_c_store_rsp(sock: socket.socket, message_id: int, timeout: float = 10.0) -> int:
    """Read a C-STORE-RSP to ``message_id`` (a one- or multi-fragment command) -> its status."""
    command = b""
    while True:
        got = read_pdu(sock, timeout)
        assert got.type == P_DATA_TF, f"expected P-DATA-TF, got {got.name} {got.body[:32]!r}"
        done = False
        for _ctx, ctrl, frag in parse_p_data(got.body):
            assert ctrl & 0x01, "C-STORE-RSP must be a command with no data set"
            command += frag
            done = done or bool(ctrl & 0x02)
        if done:
            break
    cmd = parse_command(command)
    assert command_us(cmd, TAG_COMMAND_FIELD) == 0x8001, "not a C-STORE-RSP"
    assert command_us(cmd, TAG_MESSAGE_ID_RESPONDED) == message_id
    return command_us(cmd, TAG_STATUS)


# --- a storage SCP by hand, for watching an SCU's C-STOREs (asynchronous window) ------------

TAG_AFFECTED_SOP_CLASS = 0x00000002
TAG_MESSAGE_ID = 0x00000110
TAG_COMMAND_DATA_SET_TYPE = 0x00000800
TAG_AFFECTED_SOP_INSTANCE = 0x00001000


def command_uid(cmd: dict[int, bytes], tag: int) -> str:
    return _uid_text(cmd[tag])


def associate_rj(result: int = 1, source: int = 1, reason: int = 1) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4); by default rejected-permanent, service user, no reason."""
    return pdu(A_ASSOCIATE_RJ, struct.pack(">BBBB", 0, result, source, reason))


def c_store_rsp_command(sop_class: str, sop_instance: str, message_id: int,
                        status: int = 0x0000) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2), with its group length."""
    body = (
        _element(0x0000, 0x0002, _ui(sop_class))                    # Affected SOP Class UID
        + _element(0x0000, 0x0100, struct.pack("<H", 0x8001))        # Command Field: C-STORE-RSP
        + _element(0x0000, 0x0120, struct.pack("<H", message_id))    # Message ID Being Responded To
        + _element(0x0000, 0x0800, struct.pack("<H", 0x0101))        # no data set
        + _element(0x0000, 0x0900, struct.pack("<H", status))        # Status
        + _element(0x0000, 0x1000, _ui(sop_instance))               # Affected SOP Instance UID
    )
    return _element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def c_store_rsp(context_id: int, sop_class: str, sop_instance: str, message_id: int,
                status: int = 0x0000) -> bytes:
    """A whole P-DATA-TF carrying a C-STORE-RSP in one last command fragment."""
    return p_data(pdv_item(context_id, 0x03, c_store_rsp_command(sop_class, sop_instance,
                                                                 message_id, status)))


def c_store_rq(context_id: int, sop_class: str, sop_instance: str, data: bytes,
               message_id: int = 1, fragment: int = 4096) -> bytes:
    """A whole C-STORE-RQ: its command PDU, then the data set PDUs (see data_set_pdus)."""
    command = p_data(pdv_item(context_id, 0x03, c_store_rq_command(sop_class, sop_instance,
                                                                   message_id)))
    return command + b"".join(data_set_pdus(context_id, data, fragment))


class DimseAssembler:
    """Puts DIMSE messages back together from P-DATA-TF bodies (PS3.8 9.3.5, PS3.7 6.3).

    ``feed(body)`` returns the messages completed by that PDU, each as (context id,
    command elements as from parse_command, data set bytes or None when the command says
    none follows). A data PDV without a command before it, a command PDV in the middle of
    a data set, or a data set switching context fails with AssertionError.
    """

    def __init__(self) -> None:
        self._command = b""
        self._waiting: tuple[int, dict[int, bytes]] | None = None  # command awaiting its data
        self._data = bytearray()

    def feed(self, body: bytes) -> list[tuple[int, dict[int, bytes], bytes | None]]:
        done = []
        for ctx, ctrl, frag in parse_p_data(body):
            if ctrl & 0x01:
                assert self._waiting is None, "a command PDV in the middle of a data set"
                self._command += frag
                if ctrl & 0x02:
                    cmd = parse_command(self._command)
                    self._command = b""
                    if command_us(cmd, TAG_COMMAND_DATA_SET_TYPE) == 0x0101:
                        done.append((ctx, cmd, None))
                    else:
                        self._waiting = (ctx, cmd)
            else:
                assert self._waiting is not None, "a data set PDV with no command before it"
                assert ctx == self._waiting[0], (
                    f"data set PDV on context {ctx}, its command came on {self._waiting[0]}")
                self._data += frag
                if ctrl & 0x02:
                    done.append((ctx, self._waiting[1], bytes(self._data)))
                    self._waiting = None
                    self._data = bytearray()
        return done


@dataclass
class StoreRequest:
    """A complete C-STORE-RQ as a hand-played SCP received it."""

    context_id: int
    message_id: int
    sop_class: str
    sop_instance: str
    data: bytes


class HandStoreSCP:
    """A storage SCP played by hand in a thread, to watch how an SCU pipelines C-STOREs.

    The first association is served: A-ASSOCIATE-AC accepting every context with its
    first transfer syntax, with ``async_window`` (invoked, performed) in an asynchronous
    operations window sub-item (None: no item, i.e. synchronous). Complete C-STORE-RQs
    are then held, unanswered, until ``hold`` are outstanding (or ``total`` have come
    in all); then all outstanding ones are answered at once (one sendall), newest
    first when ``reverse``, each with status ``status_of(sop_instance_uid)``.
    A-RELEASE-RQ is answered with A-RELEASE-RP.

    ``abort_after``: once that many requests are complete, answer none of them and
    ``vanish`` ("abort": send A-ABORT, then close; "close": just close the socket;
    "release": send A-RELEASE-RQ, wait for A-RELEASE-RP (``release_answered``), close).
    ``quiet``: before each answer, watch the socket that many seconds; bytes arriving
    meanwhile (the SCU sent more than one request at a time) count in ``early``.
    Every later connection is refused with A-ASSOCIATE-RJ and counted in ``rejected``.
    ``drop_window_rq``: like some PACS, close the connection at the first complete
    request of an association whose A-ASSOCIATE-RQ carried an asynchronous operations
    window item (counted in ``dropped``); such an association does not count as served.

    Records: ``rq`` (the parsed A-ASSOCIATE-RQ), ``requests`` (StoreRequests in arrival
    order), ``batches`` (how many were outstanding at each answer), ``answered``
    (message IDs in the order answered), ``released``, ``aborted_by_scu`` (it got an
    A-ABORT); ``done`` is set when the first
    association ends, however it ends; ``error`` holds what went wrong in the thread.
    Stop it with ``close()``.
    """

    def __init__(self, *, async_window: tuple[int, int] | None = None, hold: int = 1,
                 total: int | None = None, reverse: bool = False, status_of=None,
                 abort_after: int | None = None, vanish: str = "abort", quiet: float = 0.0,
                 max_pdu: int = 16384, read_timeout: float = 10.0, host: str = "127.0.0.1",
                 drop_window_rq: bool = False):
        import threading

        assert vanish in ("abort", "close", "release")
        self.drop_window_rq = drop_window_rq
        self.dropped = 0
        self.async_window = async_window
        self.hold = hold
        self.total = total
        self.reverse = reverse
        self.status_of = status_of or (lambda uid: 0x0000)
        self.abort_after = abort_after
        self.vanish = vanish
        self.quiet = quiet
        self.max_pdu = max_pdu
        self.read_timeout = read_timeout
        self.rq: AssociateRq | None = None
        self.requests: list[StoreRequest] = []
        self.batches: list[int] = []
        self.answered: list[int] = []
        self.early = 0
        self.released = False
        self.vanished = False
        self.release_answered = False
        self.aborted_by_scu = False
        self.rejected = 0
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._stop = threading.Event()
        self._listener, self.port = _listen(host, 4)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._listener.settimeout(0.1)
        served = False
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._listener.accept()
                except socket.timeout:
                    continue
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with conn:
                    if served:
                        self._reject(conn)
                        continue
                    try:
                        served = self._serve(conn)
                    except BaseException as exc:  # surfaced by the test through .error
                        self.error = exc
                        served = True
        except BaseException as exc:
            self.error = self.error or exc
        finally:
            self.done.set()

    def _next_pdu(self, conn: socket.socket) -> Pdu | None:
        """The next PDU, or None when stopped; Closed if the peer closes."""
        deadline = time.monotonic() + self.read_timeout
        while not self._stop.is_set():
            ready, _, _ = select.select([conn], [], [], 0.1)
            if ready:
                return read_pdu(conn, timeout=self.read_timeout)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing from the SCU for {self.read_timeout} s")
        return None

    def _serve(self, conn: socket.socket) -> bool:
        """Serve one association; False if the connection sent nothing (a port probe)."""
        try:
            first = self._next_pdu(conn)
        except Closed:
            return False
        if first is None:
            return False
        try:
            assert first.type == A_ASSOCIATE_RQ, f"expected A-ASSOCIATE-RQ, got {first.name}"
            self.rq = parse_associate_rq(first.body)
            conn.sendall(associate_ac(self.rq, self.max_pdu, self.async_window))
            assembler = DimseAssembler()
            outstanding: list[StoreRequest] = []
            while True:
                got = self._next_pdu(conn)
                if got is None:
                    return True
                if got.type == A_ABORT:
                    self.aborted_by_scu = True
                    return True
                if got.type == A_RELEASE_RQ:
                    assert not outstanding, (
                        f"A-RELEASE-RQ with {len(outstanding)} C-STORE-RQ(s) unanswered")
                    self.released = True
                    conn.sendall(release_rp())
                    return True
                assert got.type == P_DATA_TF, f"expected P-DATA-TF, got {got.name}"
                for ctx, cmd, data in assembler.feed(got.body):
                    assert command_us(cmd, TAG_COMMAND_FIELD) == 0x0001, (
                        f"expected a C-STORE-RQ, got command field "
                        f"0x{command_us(cmd, TAG_COMMAND_FIELD):04X}")
                    assert data is not None, "a C-STORE-RQ without a data set"
                    req = StoreRequest(ctx, command_us(cmd, TAG_MESSAGE_ID),
                                       command_uid(cmd, TAG_AFFECTED_SOP_CLASS),
                                       command_uid(cmd, TAG_AFFECTED_SOP_INSTANCE), data)
                    if self.drop_window_rq and self.rq.async_window is not None:
                        self.dropped += 1
                        return False  # closes the connection; the next one is served
                    self.requests.append(req)
                    outstanding.append(req)
                    if self.abort_after is not None and len(self.requests) >= self.abort_after:
                        self.vanished = True
                        if self.vanish == "abort":
                            conn.sendall(abort())  # source: service user
                        elif self.vanish == "release":
                            self._release_by_us(conn)
                        return True
                    if len(outstanding) >= self.hold or len(self.requests) == self.total:
                        self._answer(conn, outstanding)
                        outstanding = []
        except Closed:
            return True
        finally:
            self.done.set()

    def _release_by_us(self, conn: socket.socket) -> None:
        """Send A-RELEASE-RQ and wait for A-RELEASE-RP (the rest of a request the SCU was
        sending may come first, and is dropped); anything else fails."""
        conn.sendall(release_rq())
        while True:
            got = self._next_pdu(conn)
            if got is None:
                return
            if got.type == A_RELEASE_RP:
                self.release_answered = True
                return
            assert got.type == P_DATA_TF, f"expected A-RELEASE-RP, got {got.name}"

    def _answer(self, conn: socket.socket, outstanding: list[StoreRequest]) -> None:
        if self.quiet > 0:
            ready, _, _ = select.select([conn], [], [], self.quiet)
            if ready:
                self.early += 1
        self.batches.append(len(outstanding))
        order = list(reversed(outstanding)) if self.reverse else list(outstanding)
        out = b""
        for req in order:
            out += c_store_rsp(req.context_id, req.sop_class, req.sop_instance, req.message_id,
                               self.status_of(req.sop_instance))
            self.answered.append(req.message_id)
        conn.sendall(out)

    def _reject(self, conn: socket.socket) -> None:
        try:
            got = read_pdu(conn, timeout=self.read_timeout)
        except (Closed, TimeoutError):
            return
        if got.type == A_ASSOCIATE_RQ:
            self.rejected += 1
            conn.sendall(associate_rj())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
