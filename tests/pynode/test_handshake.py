"""The handshake on real socket pairs: both roles in threads, every byte recorded."""

from __future__ import annotations

import hmac
import pickle
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from pynode import handshake
from pynode.errors import HandshakeError

A = "alpha@127.0.0.1"
B = "beta@127.0.0.2"


def initiate(*args: Any, **kwargs: Any) -> handshake.PeerInfo:
    """handshake.initiate's PeerInfo (the socket it returns is the one given: no TLS here)."""
    return handshake.initiate(*args, **kwargs)[1]


def accept(*args: Any, **kwargs: Any) -> handshake.PeerInfo:
    return handshake.accept(*args, **kwargs)[1]


class Recorder:
    """Wraps a socket and records everything sent through it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data
        self.sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def run_pair(
    initiator: Callable[[Any], Any], acceptor: Callable[[Any], Any]
) -> tuple[Any, Any, Recorder, Recorder]:
    """Run both sides concurrently; each result is the return value or the exception raised."""
    left, right = socket.socketpair()
    ini, acc = Recorder(left), Recorder(right)
    results: dict[str, Any] = {}

    def side(key: str, fn: Callable[[Any], Any], sock: Recorder) -> None:
        try:
            results[key] = fn(sock)
        except Exception as exc:
            results[key] = exc
        finally:
            sock.sock.close()

    threads = [
        threading.Thread(target=side, args=("ini", initiator, ini)),
        threading.Thread(target=side, args=("acc", acceptor, acc)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results["ini"], results["acc"], ini, acc


def cookies(mapping: dict[str, str], default: str) -> handshake.CookieFor:
    return lambda peer: mapping.get(peer, default)


def test_matching_cookies_authenticate_both_sides_and_exchange_names() -> None:
    ini, acc, _, _ = run_pair(
        lambda s: initiate(s, A, B, "s3cret", hidden=True),
        lambda s: accept(s, B, cookies({}, "s3cret"), hidden=False),
    )
    assert ini == handshake.PeerInfo(B, False)
    assert acc == handshake.PeerInfo(A, True)


def test_cookie_never_crosses_the_wire() -> None:
    cookie = "the-cookie-value-1234"
    ini, acc, ini_sock, acc_sock = run_pair(
        lambda s: initiate(s, A, B, cookie, hidden=False),
        lambda s: accept(s, B, cookies({}, cookie), hidden=False),
    )
    assert isinstance(ini, handshake.PeerInfo) and isinstance(acc, handshake.PeerInfo)
    transcript = bytes(ini_sock.sent) + bytes(acc_sock.sent)
    assert cookie.encode() not in transcript
    assert hmac.new(cookie.encode(), b"", "sha256").digest() not in transcript


def test_wrong_cookie_is_refused_on_both_sides() -> None:
    ini, acc, _, acc_sock = run_pair(
        lambda s: initiate(s, A, B, "wrong", hidden=False),
        lambda s: accept(s, B, cookies({}, "right"), hidden=False),
    )
    assert isinstance(ini, HandshakeError) and "refused our cookie" in str(ini)
    assert isinstance(acc, HandshakeError) and A in str(acc)
    assert acc_sock.sent.endswith(handshake.STATUS_REFUSED)


def test_acceptor_that_does_not_know_the_cookie_is_detected_by_the_initiator() -> None:
    """An impostor acceptor that says OK without a valid proof is caught by the initiator."""

    def impostor(sock: Any) -> None:
        sock.recv(1024)
        sock.sendall(handshake._hello(B, False) + b"c" * handshake.CHALLENGE_BYTES)
        sock.recv(1024)
        sock.sendall(handshake.STATUS_OK + b"p" * handshake.PROOF_BYTES)

    ini, _, _, _ = run_pair(lambda s: initiate(s, A, B, "s3cret", hidden=False), impostor)
    assert isinstance(ini, HandshakeError) and "failed to prove" in str(ini)


def test_per_peer_cookie_is_used_by_the_acceptor() -> None:
    ini, acc, _, _ = run_pair(
        lambda s: initiate(s, A, B, "for-alpha", hidden=False),
        lambda s: accept(s, B, cookies({A: "for-alpha"}, "default"), hidden=False),
    )
    assert acc == handshake.PeerInfo(A, False)


def test_initiator_refuses_a_node_with_another_name() -> None:
    ini, _, _, _ = run_pair(
        lambda s: initiate(s, A, "gamma@127.0.0.3", "s3cret", hidden=False),
        lambda s: accept(s, B, cookies({}, "s3cret"), hidden=False),
    )
    assert isinstance(ini, HandshakeError) and "gamma@127.0.0.3" in str(ini) and B in str(ini)


def test_proof_binds_names_flags_limits_role_and_both_challenges() -> None:
    ca, ci = b"a" * 32, b"i" * 32
    hello_a, hello_b = handshake._hello(A, False), handshake._hello(B, False)
    base = handshake.proof("k", handshake.ROLE_INITIATOR, ca, ci, hello_a, hello_b)
    variants = [
        handshake.proof("k", handshake.ROLE_ACCEPTOR, ca, ci, hello_a, hello_b),
        handshake.proof("k", handshake.ROLE_INITIATOR, ci, ca, hello_a, hello_b),
        handshake.proof("k", handshake.ROLE_INITIATOR, ca, ci, hello_b, hello_a),
        handshake.proof("k", handshake.ROLE_INITIATOR, ca, ci, hello_a, handshake._hello("beta@127.0.0.3", False)),
        handshake.proof("k", handshake.ROLE_INITIATOR, ca, ci, handshake._hello(A, True), hello_b),
        handshake.proof("k", handshake.ROLE_INITIATOR, ca, ci, hello_a, handshake._hello(B, False, 1 << 21)),
        handshake.proof("k", handshake.ROLE_INITIATOR, ca, ci, hello_a, handshake._hello(B, False, tls=True)),
        handshake.proof("k2", handshake.ROLE_INITIATOR, ca, ci, hello_a, hello_b),
        handshake.proof("k", handshake.ROLE_INITIATOR, ca, ci, hello_a, hello_b, b"t" * 48),  # TLS binding
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_both_sides_learn_each_others_max_message_size() -> None:
    ini, acc, _, _ = run_pair(
        lambda s: initiate(s, A, B, "s3cret", hidden=False, max_message_size=3 << 20),
        lambda s: accept(s, B, cookies({}, "s3cret"), hidden=False, max_message_size=5 << 20),
    )
    assert ini == handshake.PeerInfo(B, False, 5 << 20, False)
    assert acc == handshake.PeerInfo(A, False, 3 << 20, False)


def test_trickling_peer_gets_no_more_than_the_whole_handshake_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer sending its hello one byte at a time, each just within a per-read timeout, is
    still dropped when the whole handshake's deadline passes."""
    import time

    monkeypatch.setattr(handshake, "HANDSHAKE_TIMEOUT", 0.5)

    def trickle(sock: Any) -> None:
        for byte in handshake._hello(A, False):
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return
            time.sleep(0.1)

    start = time.monotonic()
    _, acc, _, _ = run_pair(trickle, lambda s: accept(s, B, cookies({}, "k"), hidden=False))
    assert isinstance(acc, HandshakeError) and "timed out" in str(acc)
    assert time.monotonic() - start < 10


def test_proofs_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(handshake.hmac, "compare_digest", spy)
    run_pair(
        lambda s: initiate(s, A, B, "s3cret", hidden=False),
        lambda s: accept(s, B, cookies({}, "s3cret"), hidden=False),
    )
    assert len(calls) == 2  # the acceptor checks the initiator's proof and vice versa


@pytest.mark.parametrize(
    "garbage",
    [
        pickle.dumps(("os", "system")),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        handshake.MAGIC + bytes([99, 0]) + (1 << 30).to_bytes(8, "big") + bytes([0, 5]) + b"a@b.c",
        handshake.MAGIC + bytes([1, 0, 0, 5]) + b"a@b.c" + bytes(7),  # version 1's hello
        handshake.MAGIC + bytes([handshake.VERSION, 0]) + (1 << 30).to_bytes(8, "big") + bytes([0xFF, 0xFF]),
        handshake.MAGIC + bytes([handshake.VERSION, 0]) + (1 << 30).to_bytes(8, "big") + bytes([0, 6]) + b"no-at!",
        handshake.MAGIC + bytes([handshake.VERSION, 0]) + (100).to_bytes(8, "big") + bytes([0, 5]) + b"a@b.c",
    ],
)
def test_acceptor_rejects_anything_but_a_pynode_hello(garbage: bytes) -> None:
    def sender(sock: Any) -> None:
        sock.sendall(garbage)
        sock.recv(1)

    _, acc, _, acc_sock = run_pair(sender, lambda s: accept(s, B, cookies({}, "k"), hidden=False))
    assert isinstance(acc, HandshakeError)
    assert acc_sock.sent == b""  # not even our hello was sent back


def test_silent_peer_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handshake, "HANDSHAKE_TIMEOUT", 0.2)
    _, acc, _, _ = run_pair(lambda s: s.recv(1), lambda s: accept(s, B, cookies({}, "k"), hidden=False))
    assert isinstance(acc, HandshakeError) and "timed out" in str(acc)
