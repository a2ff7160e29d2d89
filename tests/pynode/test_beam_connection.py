"""pynode.beam.connection: packets in and out, hostile packets, ticks and silence."""

from __future__ import annotations

import random
import socket
import struct
import threading
import time

import pytest

from pynode import etf
from pynode.beam.connection import OP_REG_SEND, OP_SEND, BeamConnection, Ticker
from pynode.beam.handshake import BeamPeer, OFFERED
from pynode.errors import DecodeError
from pynode.etf import Atom, BeamPid
from pynode.testing import wait_until

LOCAL = etf.Local("py@127.0.4.31", 9)
PEER = BeamPeer("e@127.0.4.32", OFFERED, 3)


class Recorder:
    def __init__(self) -> None:
        self.signals: list[tuple[tuple, object]] = []
        self.lost: list[str] = []
        self.gone = threading.Event()

    def signal(self, conn, control, message) -> None:
        self.signals.append((control, message))

    def connection_lost(self, conn, reason: str) -> None:
        self.lost.append(reason)
        self.gone.set()


def pair() -> tuple[BeamConnection, socket.socket, Recorder]:
    ours, theirs = socket.socketpair()
    recorder = Recorder()
    conn = BeamConnection(ours, PEER, LOCAL, recorder)
    threading.Thread(target=conn.run_reader, daemon=True).start()
    return conn, theirs, recorder


def packet(*terms) -> bytes:
    body = b"p" + b"".join(etf.encode(t) for t in terms)
    return struct.pack(">I", len(body)) + body


def test_packets_are_decoded_into_control_and_message():
    conn, theirs, recorder = pair()
    sender = BeamPid("e@127.0.4.32", 1, 0, 3)
    theirs.sendall(b"\x00\x00\x00\x00")  # a tick: nothing to dispatch
    theirs.sendall(packet((OP_REG_SEND, sender, Atom(""), Atom("box")), [1, 2]))
    assert wait_until(lambda: recorder.signals, 5)
    assert recorder.signals == [((OP_REG_SEND, sender, Atom(""), Atom("box")), [1, 2])]
    conn.send((OP_SEND, Atom(""), sender), "hi")
    length = struct.unpack(">I", theirs.recv(4))[0]
    body = theirs.recv(length)
    control, pos = etf.decode_from(body, 1)
    assert body[0] == 112 and control == (OP_SEND, "", sender) and etf.decode_from(body, pos)[0] == b"hi"
    conn.close()
    theirs.close()


@pytest.mark.parametrize(
    "body",
    [b"q" + etf.encode((2, 1, 2)), b"p" + etf.encode([1]), b"p" + etf.encode((2, 1, 2)), b"p" + etf.encode((1, 2, 3)) + b"x"],
)
def test_a_malformed_packet_closes_the_connection_naming_it(body):
    conn, theirs, recorder = pair()
    theirs.sendall(struct.pack(">I", len(body)) + body)
    assert recorder.gone.wait(5)
    assert "undecodable packet" in recorder.lost[0] and conn.closed
    theirs.close()


def test_random_packets_raise_only_decode_error():
    conn = BeamConnection(socket.socket(), PEER, LOCAL, Recorder())
    rng = random.Random(5)
    valid = packet((OP_SEND, Atom(""), BeamPid("e@h", 1, 2, 3)), {"k": [1.5, b"x"]})[4:]
    for _ in range(3000):
        body = bytearray(valid if rng.random() < 0.7 else rng.randbytes(rng.randint(0, 40)))
        for _ in range(rng.randint(0, 3)):
            if body:
                body[rng.randrange(len(body))] = rng.randrange(256)
        try:
            conn.decode(bytes(body[: rng.randint(0, len(body))]))
        except DecodeError:
            pass
    conn.sock.close()


def test_a_forged_length_allocates_only_what_arrives():
    conn, theirs, recorder = pair()
    theirs.sendall(struct.pack(">I", 2**32 - 1) + b"p")  # announces 4 GiB, sends 1 byte, hangs up
    theirs.close()
    assert recorder.gone.wait(5) and conn.closed


def test_ticks_go_out_and_silence_closes_the_connection():
    conn, theirs, recorder = pair()
    ticker = Ticker(lambda: [conn], ticktime=1.2)
    try:
        theirs.settimeout(5)
        assert theirs.recv(4) == b"\x00\x00\x00\x00"  # we tick within ticktime / 4 (+ a step)
        started = time.monotonic()
        assert recorder.gone.wait(10)  # the peer never ticks back: down after about ticktime
        assert time.monotonic() - started < 5 and conn.closed
    finally:
        ticker.stop()
        theirs.close()
