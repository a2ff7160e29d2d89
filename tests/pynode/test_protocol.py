"""pynode's requests inside rpyc: argument checks and the no-netref rule (no network)."""

from __future__ import annotations

import socket

import pytest
import rpyc
from rpyc.core import consts

from pynode import protocol, transport


@pytest.fixture
def conn():
    left, right = socket.socketpair()
    connection = protocol.ErpcConnection(
        rpyc.VoidService(), transport._Channel(transport._Stream(left)), dict(transport.PROTOCOL_CONFIG)
    )
    yield connection
    right.close()
    connection._channel.close()


def test_no_object_reference_is_ever_boxed_or_unboxed(conn) -> None:
    with pytest.raises(protocol.ProtocolViolation, match="brine values"):
        conn._box(object())
    with pytest.raises(protocol.ProtocolViolation, match="no object references"):
        conn._unbox((consts.LABEL_REMOTE_REF, ("builtins.object", 1, 0)))
    assert conn._unbox(conn._box((1, b"x"))) == (1, b"x")


@pytest.mark.parametrize(
    "handler, boxed",
    [
        (protocol.HANDLE_CALL, (consts.LABEL_VALUE, ("not bytes",))),
        (protocol.HANDLE_CALL, (consts.LABEL_VALUE, (b"a", b"b"))),
        (protocol.HANDLE_CANCEL, (consts.LABEL_VALUE, (b"1",))),
        (protocol.HANDLE_DELIVER, (consts.LABEL_VALUE, (1,))),
        (protocol.HANDLE_CALL, (consts.LABEL_REMOTE_REF, ("builtins.object", 1, 0))),
        (protocol.HANDLE_CALL, (consts.LABEL_TUPLE, ((consts.LABEL_VALUE, b"x"),))),
    ],
)
def test_requests_with_wrong_argument_types_are_refused_before_unboxing(handler: int, boxed: object) -> None:
    with pytest.raises(protocol.ProtocolViolation):
        protocol._check_args(handler, boxed)


def test_well_formed_requests_pass() -> None:
    assert protocol._check_args(protocol.HANDLE_CALL, (consts.LABEL_VALUE, (b"p",))) == (b"p",)
    assert protocol._check_args(protocol.HANDLE_DELIVER, (consts.LABEL_VALUE, (3, b"m"))) == (3, b"m")


@pytest.mark.parametrize("reply", [(0,), (0, "str"), ("0", b""), [0, b""], (0, b"", b"extra")])
def test_malformed_replies_are_refused(reply: object) -> None:
    with pytest.raises(protocol.ProtocolViolation):
        protocol.check_reply(reply)
