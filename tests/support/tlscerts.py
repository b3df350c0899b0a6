"""Certificates for the TLS tests, made at test time with trustme (none are committed,
so none expire in the repository).

``make_certs(folder)`` writes a CA and the leaf certificates the tests need, as PEM
files, and returns their paths. RSA keys: every dcmtk BCP 195 profile accepts them.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    ca: Path                 # the CA every good certificate is signed by
    server: Pair             # for 127.0.0.1 and localhost
    client: Pair             # a client certificate signed by ca
    other_ca: Path           # a CA that signed nothing we use as trusted
    foreign_server: Pair     # for 127.0.0.1, signed by other_ca (unknown CA to us)
    foreign_client: Pair     # a client certificate signed by other_ca
    expired_server: Pair     # for 127.0.0.1, signed by ca, expired
    misnamed_server: Pair    # signed by ca, for dicom.example.org only


def make_certs(folder: Path) -> Certs:
    import trustme

    rsa = trustme.KeyType.RSA
    folder.mkdir(parents=True, exist_ok=True)

    def write(leaf, name: str) -> Pair:
        cert, key = folder / f"{name}.pem", folder / f"{name}.key"
        leaf.private_key_pem.write_to_path(str(key))
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        for extra in leaf.cert_chain_pems[1:]:
            with open(cert, "ab") as fh:
                fh.write(extra.bytes())
        return Pair(cert, key)

    ca = trustme.CA(key_type=rsa, organization_name="fastdimse test CA")
    other = trustme.CA(key_type=rsa, organization_name="another CA")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    now = dt.datetime.now(dt.timezone.utc)
    return Certs(
        ca=folder / "ca.pem",
        server=write(ca.issue_cert(HOST, "localhost", common_name="fastdimse-scp", key_type=rsa), "server"),
        client=write(ca.issue_cert("client.fastdimse.test", common_name="fastdimse-scu", key_type=rsa), "client"),
        other_ca=folder / "other-ca.pem",
        foreign_server=write(other.issue_cert(HOST, "localhost", key_type=rsa), "foreign-server"),
        foreign_client=write(other.issue_cert("intruder.test", key_type=rsa), "foreign-client"),
        expired_server=write(ca.issue_cert(HOST, "localhost", key_type=rsa,
                                           not_before=now - dt.timedelta(days=30),
                                           not_after=now - dt.timedelta(days=1)), "expired-server"),
        misnamed_server=write(ca.issue_cert("dicom.example.org", key_type=rsa), "misnamed-server"),
    )


def wait_logged(caplog, text: str, count: int = 1, timeout: float = 10.0) -> None:
    """Wait until ``caplog`` holds ``text`` ``count`` times: the SCP logs a refused
    handshake on the association's thread, possibly after the client saw its error."""
    deadline = time.monotonic() + timeout
    while caplog.text.count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} x{count} not logged within {timeout} s:\n{caplog.text}"
        time.sleep(0.02)
