"""A node against broken and hostile *authenticated* peers, with real node processes: payloads
that do not unpickle, remote failures that cannot be encoded, messages over the size limit.

Whatever such a peer sends or makes a call return, the node keeps serving, the connection that
carried it keeps serving its other calls (no nodedown), and memory is not committed for sizes a
peer merely announced.
"""

from __future__ import annotations

import os
import pickle
import random
import socket
import sys
import time
from collections.abc import Iterator

import cloudpickle
import psutil
import pytest

import pynode
from pynode import Node, erpc, handshake, limits, outcome, protocol, runtime, transport
from pynode import payload as payloads
from pynode.errors import EncodeError, MessageTooLarge, ReceiveTimeout, RemoteError
from pynode.launch import NodeSpec
from pynode.testing import LocalCluster, this_node, wait_until

cloudpickle.register_pickle_by_value(sys.modules[__name__])

ME = "hostile_me@127.0.3.1"
SERVER = "hostile_srv@127.0.3.2"  # max_message_size 8 MiB (pynode start --max-message-size 8M)
BIG = "hostile_big@127.0.3.3"  # the default max_message_size (1 GiB)
RAW_HOST = "127.0.3.4"  # raw peers dial from here
SERVER_LIMIT = 8 << 20
MY_LIMIT = 4 << 20
MIB = 1 << 20


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster([NodeSpec(SERVER, extra_args=("--max-message-size", "8M"))]) as small:
        with LocalCluster([BIG], cookie=small.cookie) as big:
            with this_node(ME, cookie=small.cookie, max_message_size=MY_LIMIT):
                small.big = big  # type: ignore[attr-defined]
                yield small


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


class RawPeer:
    """An authenticated peer that writes pynode frames by hand (what a buggy or hostile node
    holding the cookie can send)."""

    def __init__(self, cluster: LocalCluster, server: str = SERVER, name: str = f"rawpeer@{RAW_HOST}") -> None:
        host = server.split("@")[1]
        port = cluster.port(server) if server in cluster.names else cluster.big.port(server)  # type: ignore[attr-defined]
        sock = socket.create_connection((host, port), timeout=30, source_address=(RAW_HOST, 0))
        self.sock, self.peer = handshake.initiate(sock, name, server, cluster.cookie, hidden=True)
        self.sock.settimeout(60)
        self.channel = transport._Channel(transport._Stream(self.sock), max_send=limits.MAX_MESSAGE_SIZE)

    def call(self, seq: int, data: bytes) -> None:
        self.channel.send(protocol._TYPE_ID.pack(protocol.MSG_CALL, seq), data)

    def result(self) -> tuple[int, int, object]:
        """The next RESULT: (seq, status, value or the exception it carries)."""
        frame, buffers = self.channel.recv_frame()
        assert frame[0] == protocol.MSG_RESULT
        _, seq, status = protocol._TYPE_ID_STATUS.unpack_from(frame)
        try:
            value: object = outcome.unpack(SERVER, status, frame[protocol._TYPE_ID_STATUS.size :], buffers)
        except BaseException as exc:  # a remote SystemExit arrives as itself
            value = exc
        return seq, status, value

    def close(self) -> None:
        self.sock.close()


def call_payload(fn: object, *args: object) -> bytes:
    return payloads.dumps((fn, args, {}))[0]


class RaisesOnLoad:
    def __reduce__(self):
        return (int, ("not a number",))


def fuzz_payloads(seed: int = 11) -> list[bytes]:
    """Random bytes, truncated pickles, pickles of classes no node has, pickles that raise when
    loaded, and pickles of the wrong shape."""
    rng = random.Random(seed)
    good = call_payload("os:getpid")
    payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300))) for _ in range(40)]
    payloads += [good[:k] for k in range(0, len(good) - 1, 3)]
    payloads += [bytes([rng.randrange(256) if rng.random() < 0.1 else b for b in good]) for _ in range(20)]
    payloads += [
        b"\x80\x04cno_such_module_p11\nThing\n)\x81.",  # GLOBAL of an unknown module, NEWOBJ
        b"\x80\x04cbuiltins\nNoSuchClassP11\n)\x81.",  # an unknown attribute of a known module
        pickle.dumps(RaisesOnLoad()),
        pickle.dumps(42),
        pickle.dumps((1, 2)),
        pickle.dumps(("os:getpid", "not a tuple", {})),
        call_payload("sys:exit", 3),  # a remote SystemExit is an error reply, not an exit
        b"\x80\x05" + b"(" * 100_000 + b".",  # MARK bomb
    ]
    return payloads


def test_payload_fuzz_from_an_authenticated_peer_never_drops_the_link(cluster: LocalCluster) -> None:
    before = rss(cluster.pid(SERVER))
    raw = RawPeer(cluster)
    try:
        raw.call(1, call_payload("time:sleep", 0.5))  # in flight while the garbage arrives
        payloads = fuzz_payloads()
        for seq, data in enumerate(payloads, start=100):
            raw.call(seq, data)
        # one-way messages with garbage: a CAST, a DELIVER to no mailbox, a RESULT nobody awaits
        raw.channel.send(protocol._TYPE.pack(protocol.MSG_CAST), b"\x80\x05garbage")
        raw.channel.send(protocol._TYPE_ID.pack(protocol.MSG_DELIVER, 987654), b"not a pickle")
        raw.channel.send(protocol._TYPE_ID_STATUS.pack(protocol.MSG_RESULT, 55555, 0), b"junk")
        raw.call(2, call_payload("os:getpid"))
        results = {}
        for _ in range(len(payloads) + 2):
            seq, status, value = raw.result()
            assert seq not in results, f"call {seq} answered twice"
            results[seq] = (status, value)
        assert results[1] == (outcome.OK, None)  # the slow call was not disturbed
        assert results[2] == (outcome.OK, cluster.pid(SERVER))  # the link still serves
        for seq in range(100, 100 + len(payloads)):
            status, value = results[seq]
            assert status == outcome.ERROR and isinstance(value, BaseException), (seq, value)
    finally:
        raw.close()
    assert rss(cluster.pid(SERVER)) - before < 100 * MIB
    assert "dropped the connection" not in cluster.stderr(SERVER)
    assert erpc.call(SERVER, "os:getpid", timeout=30) == cluster.pid(SERVER)


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


class ReduceAndReprRaise(Exception):
    def __reduce__(self):
        raise RuntimeError("no pickle for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class ResultReduceRaises:
    def __reduce__(self):
        raise SystemExit("a reduce that exits")


def raise_str_raises() -> None:
    raise StrRaises()


def raise_reduce_and_repr() -> None:
    raise ReduceAndReprRaise("cannot travel")


def deep_list() -> list:
    head: list = []
    for _ in range(100_000):
        head = [head]
    return head


@pytest.mark.parametrize(
    "fn, error, text",
    [
        (raise_str_raises, RemoteError, "StrRaises"),
        (raise_reduce_and_repr, RemoteError, "cannot travel"),
        (lambda: ResultReduceRaises(), EncodeError, "cannot be pickled: SystemExit"),
        (deep_list, EncodeError, "recursion"),
        (lambda: b"x" * (MY_LIMIT + 1), EncodeError, f"max_message_size of {MY_LIMIT} bytes"),
    ],
    ids=["str-raises", "reduce-and-repr-raise", "result-reduce-exits", "result-recursion", "result-over-limit"],
)
def test_remote_failures_that_cannot_be_encoded_leave_the_link_serving(cluster: LocalCluster, fn, error, text) -> None:
    erpc.call(SERVER, "os:getpid", timeout=30)
    link = runtime.current().connection_to(SERVER)
    Node.monitor(SERVER)
    try:
        other = erpc.send_request(SERVER, "time:sleep", 0.3)  # another call on the same link
        with pytest.raises(error, match=text) as info:
            erpc.call(SERVER, fn, timeout=60)
        assert SERVER in str(info.value)
        assert erpc.receive_response(other, timeout=30) is None
        assert runtime.current().connection_to(SERVER) is link and not link.closed
        with pytest.raises(ReceiveTimeout):
            pynode.receive(timeout=0.2)  # no nodedown
    finally:
        Node.monitor(SERVER, False)
    # what could be said travels: a RemoteError (UnencodableResult for a result) with the remote
    # traceback, except for a result that is only too large (the call returned: no traceback)
    assert isinstance(info.value, RemoteError)
    if info.value.type_name != "MessageTooLarge":
        assert "Traceback" in info.value.remote_traceback


def test_sender_refuses_a_message_over_the_peers_limit_before_sending(cluster: LocalCluster) -> None:
    erpc.call(SERVER, "os:getpid", timeout=30)
    link = runtime.current().connection_to(SERVER)
    assert link.peer_limit == SERVER_LIMIT  # learned in the handshake
    with pytest.raises(MessageTooLarge, match=f"call to {SERVER} not sent: .*max_message_size of {SERVER_LIMIT}"):
        erpc.call(SERVER, len, b"x" * SERVER_LIMIT, timeout=30)
    with pytest.raises(MessageTooLarge):
        erpc.cast(SERVER, len, b"x" * SERVER_LIMIT)
    with pytest.raises(EncodeError):  # MessageTooLarge is an EncodeError
        pynode.send(pynode.Pid(SERVER, 1), b"x" * SERVER_LIMIT)
    assert erpc.call(SERVER, len, b"x" * (SERVER_LIMIT - MIB), timeout=60) == SERVER_LIMIT - MIB
    assert runtime.current().connection_to(SERVER) is link and not link.closed


@pytest.mark.parametrize(
    "header, size",
    [
        (transport._Channel.FRAME_HEADER.pack(1 << 30, 0), 1 << 30),
        (transport._Channel.FRAME_HEADER.pack((1 << 32) - 1, transport.ATTACHMENT), (1 << 32) - 1),
        # two attachments within the limit each, over it together
        (transport._Channel.FRAME_HEADER.pack(5 * MIB, transport.ATTACHMENT), 5 * MIB),
    ],
    ids=["frame-1GiB", "attachment-4GiB", "attachments-summing-over"],
)
def test_oversized_header_is_refused_from_the_header_alone(cluster: LocalCluster, header: bytes, size: int) -> None:
    pid = cluster.pid(SERVER)
    before = rss(pid)
    raw = RawPeer(cluster, name=f"oversized@{RAW_HOST}")
    try:
        raw.sock.sendall(header)
        if size == 5 * MIB:
            raw.sock.sendall(b"\0" * size + transport._Channel.FRAME_HEADER.pack(5 * MIB, transport.ATTACHMENT))
        raw.sock.settimeout(30)
        assert raw.sock.recv(1) == b""  # closed by the node
    finally:
        raw.close()
    assert wait_until(lambda: "more than our max_message_size" in cluster.stderr(SERVER), timeout=10)
    line = [ln for ln in cluster.stderr(SERVER).splitlines() if "more than our max_message_size" in ln][-1]
    assert f"oversized@{RAW_HOST}" in line and str(SERVER_LIMIT) in line
    print(f"\noversized header ({size} bytes announced): node RSS grew {(rss(pid) - before) / MIB:.1f} MiB")
    assert rss(pid) - before < 40 * MIB
    assert erpc.call(SERVER, "os:getpid", timeout=30) == pid


def test_memory_for_a_large_message_is_committed_as_its_bytes_arrive(cluster: LocalCluster) -> None:
    big = cluster.big  # type: ignore[attr-defined]
    pid = big.pid(BIG)
    before = rss(pid)
    raw = RawPeer(cluster, server=BIG, name=f"trickle@{RAW_HOST}")
    try:
        raw.sock.sendall(transport._Channel.FRAME_HEADER.pack(1000 * MIB, transport.ATTACHMENT))
        raw.sock.sendall(b"\1" * (2 * MIB))
        time.sleep(1.0)
        grown = rss(pid) - before
        print(f"\n1000 MiB announced, 2 MiB sent: node RSS grew {grown / MIB:.1f} MiB")
        assert grown < 100 * MIB, f"{grown / MIB:.0f} MiB committed for 2 MiB received of 1000 MiB announced"
    finally:
        raw.close()
    assert erpc.call(BIG, "os:getpid", timeout=30) == pid


def test_a_node_dials_from_its_own_address(cluster: LocalCluster) -> None:
    Node.disconnect(SERVER)
    time.sleep(0.1)

    def peers_seen() -> list[str]:
        import psutil

        return [c.raddr.ip for c in psutil.Process().net_connections("tcp") if c.raddr and c.status == "ESTABLISHED"]

    assert "127.0.3.1" in erpc.call(SERVER, peers_seen, timeout=30)
    assert runtime.current().connection_to(SERVER).sock.getsockname()[0] == "127.0.3.1"


def test_multicall_refuses_only_the_nodes_whose_limit_a_message_exceeds(cluster: LocalCluster) -> None:
    blob = b"x" * (SERVER_LIMIT + MIB)
    small, big = erpc.multicall([SERVER, BIG], len, blob, timeout=60)
    assert small[0] == "error" and isinstance(small[1], MessageTooLarge)
    assert big == ("ok", len(blob))
