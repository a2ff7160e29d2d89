"""pynode.beam.handshake: Erlang's version 6 handshake between two in-process sockets, the MD5
digest as OTP computes it, statuses, and a --no-beam node refusing Erlang."""

from __future__ import annotations

import hashlib
import socket
import struct
import threading

import pytest

from pynode.beam import handshake as hs
from pynode.errors import HandshakeError
from pynode.testing import this_node, wait_until

A, B = "a@127.0.4.21", "b@127.0.4.22"


def test_the_digest_is_md5_of_cookie_and_decimal_challenge_as_erlang_computes_it():
    # erl: binary_to_list(erlang:md5([atom_to_list(secretcookie) | integer_to_list(3735928559)]))
    expected = bytes([77, 151, 87, 205, 122, 231, 115, 170, 241, 160, 141, 0, 255, 152, 19, 24])
    assert hs.gen_digest(3735928559, "secretcookie") == expected
    assert hs.gen_digest(0, "c") == hashlib.md5(b"c0").digest()


def test_first_bytes_tell_erlang_from_pynode():
    assert hs.looks_like_beam(b"\x00\x1cN\x00")  # what the erl sent
    assert hs.looks_like_beam(b"\x00\x10n\x00")  # the old version 5 name
    assert not hs.looks_like_beam(b"PYND")
    assert not hs.looks_like_beam(b"\x00\x00N")


def run_pair(cookie_a: str, cookie_b: str, status: bytes = hs.STATUS_OK, flags_hidden: bool = False):
    left, right = socket.socketpair()
    result: dict[str, object] = {}

    def acceptor() -> None:
        try:
            result["b"] = hs.accept(right, B, 7, lambda peer: cookie_b, lambda peer: status, hidden=False)
        except HandshakeError as exc:
            result["b"] = exc
        finally:
            right.close()

    thread = threading.Thread(target=acceptor)
    thread.start()
    try:
        result["a"] = hs.initiate(left, A, B, 5, cookie_a, hidden=flags_hidden)
    except HandshakeError as exc:
        result["a"] = exc
    finally:
        left.close()
        thread.join(10)
    return result["a"], result["b"]


def test_a_handshake_establishes_names_flags_and_creations_both_ways():
    a_sees, b_sees = run_pair("c", "c", flags_hidden=True)
    assert a_sees == hs.BeamPeer(B, hs.OFFERED | hs.PUBLISHED, 7)
    assert b_sees.name == A and b_sees.creation == 5 and b_sees.hidden
    assert b_sees.flags & hs.MANDATORY == hs.MANDATORY and b_sees.flags & hs.SPAWN


def test_a_wrong_cookie_fails_both_sides():
    a_sees, b_sees = run_pair("right", "wrong")
    assert isinstance(a_sees, HandshakeError) and "refused our cookie" in str(a_sees)
    assert isinstance(b_sees, HandshakeError) and "failed to prove the cookie" in str(b_sees)


@pytest.mark.parametrize("status", [hs.STATUS_NOK, hs.STATUS_NOT_ALLOWED])
def test_a_refusing_status_is_reported_by_name(status):
    a_sees, b_sees = run_pair("c", "c", status=status)
    if status == hs.STATUS_NOK:  # the peer is dialling us too and wins: its connection will arrive
        assert isinstance(a_sees, hs.SimultaneousConnect)
    else:
        assert isinstance(a_sees, HandshakeError) and status.decode() in str(a_sees)
    assert isinstance(b_sees, HandshakeError)


def test_a_peer_without_the_mandatory_flags_is_refused():
    left, right = socket.socketpair()
    name = A.encode()
    left.sendall(struct.pack(">HcQIH", 1 + 14 + len(name), b"N", hs.HANDSHAKE_23, 1, len(name)) + name)
    with pytest.raises(HandshakeError, match="mandatory distribution flags"):
        hs.accept(right, B, 7, lambda peer: "c", lambda peer: hs.STATUS_OK, hidden=False)
    left.close()
    right.close()


def test_a_node_started_without_beam_answers_erlang_with_not_allowed():
    with this_node("nobeam@127.0.4.23", cookie="c", beam=False) as name:
        from pynode import Node

        sock = socket.create_connection(("127.0.4.23", Node.port()), timeout=10)
        me = b"x@127.0.4.24"
        sock.sendall(struct.pack(">HcQIH", 1 + 14 + len(me), b"N", hs.OFFERED, 1, len(me)) + me)
        assert sock.recv(64) == b"\x00\x0csnot_allowed"
        sock.close()
        assert Node.list() == [] and name == "nobeam@127.0.4.23"


def test_a_reconnecting_erlang_node_replaces_its_stale_connection():
    """Status 'alive': the node says it still has a connection from this name; the initiator
    answers true and the old connection is closed in favour of the new one."""
    with this_node("srv@127.0.4.25", cookie="c") as name:
        from pynode import Node

        def dial() -> socket.socket:
            sock = socket.create_connection(("127.0.4.25", Node.port()), timeout=10)
            peer = hs.initiate(sock, "fake@127.0.4.26", name, 1, "c", hidden=False)
            assert peer.name == name
            return sock

        first = dial()
        assert wait_until(lambda: "fake@127.0.4.26" in Node.list(), 5)
        second = dial()  # the node answered 'alive', we said true
        first.settimeout(10)
        assert first.recv(64) == b""  # the stale connection was closed by the node
        assert "fake@127.0.4.26" in Node.list()
        second.close()
        assert wait_until(lambda: "fake@127.0.4.26" not in Node.list(), 10)
        first.close()
