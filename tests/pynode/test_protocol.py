"""pynode's messages inside rpyc frames: encoding, dispatch, refusals and the no-netref rule
(two connections on a socket pair, no node)."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace

import pytest
import rpyc
from rpyc.core import consts

from pynode import protocol, transport


class RecordingLink:
    """Stands for pynode.link.Link: records what the connection dispatches to it."""

    name = "peer@127.0.0.1"

    def __init__(self) -> None:
        self.seen: list[tuple] = []
        self.node = SimpleNamespace(deliver_local=lambda *a: self.seen.append(("deliver", *self._plain(a))))

    @staticmethod
    def _plain(args: tuple) -> tuple:
        return tuple(bytes(a) if isinstance(a, memoryview) else a for a in args)

    def resolve(self, *args) -> None:
        self.seen.append(("resolve", *self._plain(args)))

    def start_call(self, *args) -> None:
        self.seen.append(("call", *self._plain(args)))

    def cancel_running(self, seq: int) -> None:
        self.seen.append(("cancel", seq))

    def start_cast(self, *args) -> None:
        self.seen.append(("cast", *self._plain(args)))


def connection(sock: socket.socket) -> protocol.ErpcConnection:
    return protocol.ErpcConnection(
        rpyc.VoidService(), transport._Channel(transport._Stream(sock)), dict(transport.PROTOCOL_CONFIG)
    )


@pytest.fixture
def pair():
    left, right = socket.socketpair()
    sender, receiver = connection(left), connection(right)
    receiver.link = RecordingLink()
    yield sender, receiver
    sender._channel.close()
    receiver._channel.close()


def test_no_object_reference_is_ever_boxed_or_unboxed(pair) -> None:
    conn, _ = pair
    with pytest.raises(protocol.ProtocolViolation, match="brine values"):
        conn._box(object())
    with pytest.raises(protocol.ProtocolViolation, match="no object references"):
        conn._unbox((consts.LABEL_REMOTE_REF, ("builtins.object", 1, 0)))
    assert conn._unbox(conn._box((1, b"x"))) == (1, b"x")


def test_results_messages_and_cancels_are_dispatched_in_order_until_a_call(pair) -> None:
    sender, receiver = pair
    sender.send_result(7, 1, b"result", (b"attached",))
    sender.send_deliver(12, b"message 1", ())
    sender.send_cancel(9)
    sender.send_deliver(12, b"message 2", ())
    sender.send_result(2**64 - 1, 0, b"", ())
    sender.send_cast(b"pickle", ())
    receiver.serve_until_request()  # returns after the CAST, the first request that runs code
    assert receiver.link.seen == [
        ("resolve", 7, 1, b"result", (bytearray(b"attached"),)),
        ("deliver", 12, b"message 1", ()),
        ("cancel", 9),
        ("deliver", 12, b"message 2", ()),
        ("resolve", 2**64 - 1, 0, b"", ()),
        ("cast", b"pickle", ()),
    ]


@pytest.mark.parametrize(
    "send, expected",
    [
        (lambda c: c.send_call(3, b"pickle", (b"oob",)), ("call", 3, b"pickle", (bytearray(b"oob"),))),
        (lambda c: c.send_cast(b"pickle", ()), ("cast", b"pickle", ())),
    ],
)
def test_each_request_that_runs_code_is_dispatched_with_its_fields(pair, send, expected) -> None:
    sender, receiver = pair
    send(sender)
    receiver.serve_until_request()
    assert receiver.link.seen == [expected]


@pytest.mark.parametrize(
    "frame, match",
    [
        (bytes([protocol.MSG_CALL, 0, 0]), "truncated frame"),
        (bytes([protocol.MSG_RESULT]) + bytes(8), "truncated frame"),  # status byte missing
        (b"\x7fdata", "unknown message type 127"),
        (bytes([consts.MSG_REPLY]), "unknown message type 2"),  # pynode never asks rpyc for replies
    ],
)
def test_malformed_frames_are_protocol_violations_and_hand_the_socket_on(pair, frame, match) -> None:
    sender, receiver = pair
    sender._send_frame(frame)
    with pytest.raises(protocol.ProtocolViolation, match=match):
        receiver.serve_until_request()
    sender.send_cast(b"after", ())
    reader = threading.Thread(target=receiver.serve_until_request, daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "the read token was not handed on after the violation"
    assert receiver.link.seen == [("cast", b"after", ())]


def test_rpyc_requests_other_than_close_are_refused_with_an_exception_reply(pair) -> None:
    sender, receiver = pair
    sender._send(consts.MSG_REQUEST, 5, (consts.HANDLE_GETROOT, sender._box(())))
    receiver.serve_until_request()
    frame, _ = sender._channel.recv_frame()
    assert frame[0] == consts.MSG_EXCEPTION
    assert b"not served by pynode" in bytes(frame)
    assert receiver.link.seen == []
