"""Security against a real node process: wrong cookies, raw sockets sending pickles or garbage.

Every hostile payload here would create a canary file if anything unpickled or ran it; the tests
check the canary is absent and that the node still serves legitimate callers afterwards.
"""

from __future__ import annotations

import pickle
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

from pynode import Node, erpc, handshake
from pynode.errors import NoConnection
from pynode.testing import LocalCluster, this_node

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SERVER = "guarded@127.0.0.44"
ME = "intruder@127.0.0.40"
WRONG_COOKIE = "not-the-cluster-cookie"


class CreatesFile:
    """Unpickling this object creates (opens for writing) the file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([SERVER]) as c:
        with this_node(ME, cookie=WRONG_COOKIE):
            yield c


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    return tmp_path / "canary"


def raw_connect(cluster: LocalCluster) -> socket.socket:
    return socket.create_connection(("127.0.0.44", cluster.port(SERVER)), timeout=10)


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the peer closes the connection (EOF or reset) within the socket's timeout."""
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def still_serves(cluster: LocalCluster) -> bool:
    """A legitimate caller (the right cookie) still gets answers."""
    Node.set_cookie(SERVER, cluster.cookie)
    try:
        return erpc.call(SERVER, "os:getpid", timeout=10) == cluster.pid(SERVER)
    finally:
        Node.disconnect(SERVER)
        Node.set_cookie(SERVER, WRONG_COOKIE)
        time.sleep(0.1)


def test_wrong_cookie_is_refused_and_nothing_runs(cluster: LocalCluster, canary: Path) -> None:
    assert Node.connect(SERVER) is False
    with pytest.raises(NoConnection, match="refused our cookie"):
        erpc.call(SERVER, lambda: canary.write_text("ran"), timeout=10)
    erpc.cast(SERVER, lambda: canary.write_text("ran"))
    time.sleep(0.3)
    assert not canary.exists()
    assert SERVER not in Node.list("connected")
    assert still_serves(cluster)


def test_raw_socket_sending_a_malicious_pickle_is_refused_without_unpickling(
    cluster: LocalCluster, canary: Path
) -> None:
    with raw_connect(cluster) as sock:
        sock.sendall(pickle.dumps(CreatesFile(canary)))
        assert closed_by_peer(sock)
    assert not canary.exists()
    assert still_serves(cluster)


def test_pickle_after_a_forged_proof_is_never_unpickled(cluster: LocalCluster, canary: Path) -> None:
    with raw_connect(cluster) as sock:
        sock.sendall(handshake._hello("forger@127.0.0.40", False))
        sock.recv(4096)  # the server's hello and challenge
        sock.sendall(b"c" * handshake.CHALLENGE_BYTES + b"p" * handshake.PROOF_BYTES)
        try:
            sock.sendall(pickle.dumps(CreatesFile(canary)))
        except OSError:
            pass  # already closed
        assert closed_by_peer(sock)
    assert not canary.exists()
    assert still_serves(cluster)


def test_garbage_after_a_valid_handshake_drops_only_that_connection(cluster: LocalCluster, canary: Path) -> None:
    with raw_connect(cluster) as sock:
        handshake.initiate(sock, "rawpeer@127.0.0.40", SERVER, cluster.cookie, hidden=True)
        # a well-formed rpyc frame header announcing a body that is not brine
        body = pickle.dumps(CreatesFile(canary))
        sock.sendall(struct.pack("!LB", len(body), 0) + body + b"\n")
        assert closed_by_peer(sock)
    assert not canary.exists()
    assert still_serves(cluster)


def test_authenticated_peer_cannot_use_rpyc_attribute_access(cluster: LocalCluster) -> None:
    """Only pynode's requests are served: rpyc's getroot/getattr are refused."""
    import rpyc

    from pynode import transport

    sock = raw_connect(cluster)
    sock, peer = handshake.initiate(sock, "rawpeer@127.0.0.40", SERVER, cluster.cookie, hidden=True)
    conn = rpyc.Service._connect(transport._Channel(transport._Stream(sock)), dict(transport.PROTOCOL_CONFIG))
    try:
        with pytest.raises(Exception, match="not served by pynode"):
            conn.root  # HANDLE_GETROOT
    finally:
        conn.close()
    assert peer.name == SERVER
    assert still_serves(cluster)


def test_set_cookie_for_a_peer_allows_the_connection(cluster: LocalCluster) -> None:
    assert Node.connect(SERVER) is False
    Node.set_cookie(SERVER, cluster.cookie)
    try:
        assert Node.connect(SERVER) is True
        assert SERVER in Node.list()
    finally:
        Node.disconnect(SERVER)
        Node.set_cookie(SERVER, WRONG_COOKIE)
