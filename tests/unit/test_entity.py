"""Entity: an AE title, an IP address and a port, validated and immutable."""

from __future__ import annotations

import ipaddress

import pytest

from fastdimse import Entity

pytestmark = pytest.mark.timeout(10)


def test_attributes():
    e = Entity("FDSCP", "127.0.0.1", 11112)
    assert e.ae_title == "FDSCP"
    assert e.ip_address == "127.0.0.1"
    assert e.port == 11112


@pytest.mark.parametrize("title", ["A", "X" * 16, "ANY-SCP", "STORE_SCP_01", "my scp", "a.b/c:d"])
def test_valid_ae_titles(title):
    assert Entity(title, "127.0.0.1", 104).ae_title == title


@pytest.mark.parametrize("port", [0, 1, 104, 11112, 65535])
def test_valid_ports(port):
    assert Entity("FD", "127.0.0.1", port).port == port


# Each bad AE title, and a pattern the ValueError's message must match: it has to
# say what is wrong, not only that something is.
BAD_AE_TITLES = [
    pytest.param("", r"(?i)empty", id="empty"),
    pytest.param(" ", r"(?i)(space|blank|empty)", id="one-space"),
    pytest.param(" " * 16, r"(?i)(space|blank|empty)", id="all-spaces"),
    pytest.param("X" * 17, r"(?i)(16|long)", id="17-chars"),
    pytest.param("X" * 64, r"(?i)(16|long)", id="64-chars"),
    pytest.param("AE\\TITLE", r"(?i)backslash", id="backslash"),
    pytest.param("\\", r"(?i)backslash", id="only-backslash"),
    pytest.param("AE\nTITLE", r"(?i)control", id="newline"),
    pytest.param("AE\rTITLE", r"(?i)control", id="carriage-return"),
    pytest.param("AE\tTITLE", r"(?i)control", id="tab"),
    pytest.param("AE\x00", r"(?i)control", id="nul"),
    pytest.param("\x1bAE", r"(?i)control", id="escape"),
    pytest.param("AE\x7f", r"(?i)control", id="delete"),
]


@pytest.mark.parametrize("title, problem", BAD_AE_TITLES)
def test_bad_ae_title_is_a_value_error_naming_the_problem(title, problem):
    with pytest.raises(ValueError, match=problem):
        Entity(title, "127.0.0.1", 104)


@pytest.mark.parametrize("title, problem", BAD_AE_TITLES)
def test_create_local_validates_the_ae_title_too(title, problem):
    with pytest.raises(ValueError, match=problem):
        Entity.create_local(title, 104)


@pytest.mark.parametrize("port", [-1, 65536, 100000, -65535])
def test_bad_port_is_a_value_error_naming_the_port(port):
    with pytest.raises(ValueError, match=r"(?i)port"):
        Entity("FD", "127.0.0.1", port)


@pytest.mark.parametrize("title", [None, 123, b"FD"])
def test_ae_title_must_be_a_string(title):
    with pytest.raises((TypeError, ValueError)):
        Entity(title, "127.0.0.1", 104)


def test_create_local():
    e = Entity.create_local("FDLOCAL", 11113)
    assert isinstance(e, Entity)
    assert e.ae_title == "FDLOCAL"
    assert e.port == 11113
    # This host's address: a real IP address string, not a hostname or "".
    ipaddress.ip_address(e.ip_address)


def test_create_local_bad_port():
    with pytest.raises(ValueError, match=r"(?i)port"):
        Entity.create_local("FDLOCAL", 70000)


def test_equality_and_hash():
    a = Entity("FDSCP", "127.0.0.1", 11112)
    b = Entity("FDSCP", "127.0.0.1", 11112)
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a != Entity("FDSCP", "127.0.0.1", 11113)
    assert a != Entity("OTHER", "127.0.0.1", 11112)
    assert a != Entity("FDSCP", "127.0.0.2", 11112)
    assert a != ("FDSCP", "127.0.0.1", 11112)


@pytest.mark.parametrize("attr, value", [("ae_title", "OTHER"), ("ip_address", "10.0.0.1"),
                                         ("port", 1)])
def test_immutable(attr, value):
    e = Entity("FDSCP", "127.0.0.1", 11112)
    with pytest.raises((AttributeError, TypeError)):
        setattr(e, attr, value)
    assert e == Entity("FDSCP", "127.0.0.1", 11112)
