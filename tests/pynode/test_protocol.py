"""pynode's messages inside rpyc frames: encoding, dispatch, refusals and the no-netref rule
(two connections on a socket pair, no node; :mod:`pynode.reading` decides which thread reads)."""

from __future__ import annotations

import threading
import time

import pytest
from rpyc.core import consts

from pynode import protocol, transport
from wire_pair import wire_pair


class RecordingHandler:
    """A protocol.Handler that records what the connection decodes for it."""

    name = "peer@127.0.0.1"

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def _record(self, kind: str, *args) -> None:
        self.seen.append((kind, *(bytes(a) if isinstance(a, memoryview) else a for a in args)))

    def on_result(self, *args) -> None:
        self._record("resolve", *args)

    def on_deliver(self, *args) -> None:
        self._record("deliver", *args)

    def on_call(self, *args) -> None:
        self._record("call", *args)

    def on_cancel(self, seq: int) -> None:
        self._record("cancel", seq)

    def on_cast(self, *args) -> None:
        self._record("cast", *args)

    def on_tick(self) -> None:
        self._record("tick")

    def on_peers(self, names: list[str]) -> None:
        self._record("peers", names)

    def on_signal(self, *args) -> None:
        self._record("signal", *args)



@pytest.fixture
def pair():
    with wire_pair(RecordingHandler()) as (sender, receiver):
        yield sender, receiver


def test_no_object_reference_is_ever_boxed_or_unboxed(pair) -> None:
    conn, _ = pair
    with pytest.raises(protocol.ProtocolViolation, match="brine values"):
        conn._box(object())
    with pytest.raises(protocol.ProtocolViolation, match="no object references"):
        conn._unbox((consts.LABEL_REMOTE_REF, ("builtins.object", 1, 0)))
    assert conn._unbox(conn._box((1, b"x"))) == (1, b"x")


def serve_until_request(conn: protocol.ErpcConnection) -> None:
    """What a reader thread does: dispatch messages that run no code until one that does, then
    run that one."""
    while True:
        kind, frame, buffers = conn.recv_message()
        if conn.dispatch_passive(kind, frame, buffers) == protocol.SERVE:
            conn.run_request(kind, frame, buffers)
            return


def test_results_messages_and_cancels_are_dispatched_in_order_until_a_call(pair) -> None:
    sender, receiver = pair
    sender.send_result(7, 1, b"result", (b"attached",))
    sender.send_deliver(12, b"message 1", ())
    sender.send_cancel(9)
    sender.send_deliver(12, b"message 2", ())
    sender.send_result(2**64 - 1, 0, b"", ())
    sender.send_cast(b"pickle", ())
    serve_until_request(receiver)  # returns after the CAST, the first request that runs code
    assert receiver.handler.seen == [
        ("resolve", 7, 1, b"result", (bytearray(b"attached"),)),
        ("deliver", 12, b"message 1", ()),
        ("cancel", 9),
        ("deliver", 12, b"message 2", ()),
        ("resolve", 2**64 - 1, 0, b"", ()),
        ("cast", b"pickle", ()),
    ]


def test_signals_are_dispatched_where_read_in_order_with_messages(pair) -> None:
    sender, receiver = pair
    sender.send_signal(b"link", ())
    sender.send_deliver(3, b"message", ())
    sender.send_signal(b"down", (b"attached",))
    sender.send_cast(b"pickle", ())
    serve_until_request(receiver)
    assert receiver.handler.seen == [
        ("signal", b"link", ()),
        ("deliver", 3, b"message", ()),
        ("signal", b"down", (bytearray(b"attached"),)),
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
    kind, frame, buffers = receiver.recv_message()
    assert receiver.dispatch_passive(kind, frame, buffers) == protocol.SERVE
    assert receiver.handler.seen == []
    receiver.run_request(kind, frame, buffers)
    assert receiver.handler.seen == [expected]


@pytest.mark.parametrize(
    "frame, match",
    [
        (bytes([protocol.MSG_CALL, 0, 0]), "truncated frame"),
        (bytes([protocol.MSG_RESULT]) + bytes(8), "truncated frame"),  # status byte missing
        (b"\x7fdata", "unknown message type 127"),
        (bytes([consts.MSG_REPLY]), "unknown message type 2"),  # pynode never asks rpyc for replies
        (bytes([protocol.MSG_TICK, 0]), "malformed TICK from peer@127.0.0.1: 1 bytes"),  # a TICK has no body
    ],
)
def test_malformed_frames_are_protocol_violations(pair, frame, match) -> None:
    sender, receiver = pair
    sender._send_frame(frame)
    with pytest.raises(protocol.ProtocolViolation, match=match):
        serve_until_request(receiver)


@pytest.mark.parametrize("names", [[], ["b@127.0.1.2"], ["b@127.0.1.2", "c_1@host-x.example", "d@10.0.0.4"]])
def test_a_peer_list_arrives_as_sent(pair, names: list[str]) -> None:
    sender, receiver = pair
    sender.send_peers(names)
    kind, frame, buffers = receiver.recv_message()
    assert kind == protocol.MSG_PEERS
    assert receiver.dispatch_passive(kind, frame, buffers) == protocol.HANDLED
    assert receiver.handler.seen == [("peers", names)]


def peers_frame(*parts: bytes) -> bytes:
    return bytes([protocol.MSG_PEERS]) + b"".join(parts)


def u16(n: int) -> bytes:
    return n.to_bytes(2, "big")


@pytest.mark.parametrize(
    "frame, match",
    [
        (peers_frame(), "no count"),
        (peers_frame(u16(2), u16(3), b"a@b"), "2 names announced, the frame ends after 1"),
        (peers_frame(u16(1), u16(10), b"a@b"), r"name 0 is cut short \(3 of 10 bytes\)"),
        (peers_frame(u16(1), u16(10), b"no-at-sign"), "name 0: bad node name 'no-at-sign'"),
        (peers_frame(u16(1), u16(3), b"\xff@b"), "name 0: 'utf-8' codec"),
        (peers_frame(u16(0), b"x"), "1 bytes after the 0 names"),
    ],
)
def test_a_malformed_peer_list_is_a_protocol_violation_naming_the_peer(pair, frame: bytes, match: str) -> None:
    sender, receiver = pair
    sender._send_frame(frame)
    with pytest.raises(protocol.ProtocolViolation, match="malformed PEERS from peer@127.0.0.1: " + match):
        serve_until_request(receiver)
    assert receiver.handler.seen == []


def test_readable_sees_buffered_frames_without_waiting(pair) -> None:
    sender, receiver = pair
    assert not receiver.readable(0.01)
    sender.send_deliver(1, b"a", ())
    sender.send_deliver(2, b"b", ())
    assert receiver.readable(1.0)
    receiver.recv_message()  # one recv brought both frames into the receive buffer
    assert receiver._channel.stream._rend > receiver._channel.stream._rpos
    assert receiver.readable(0)
    assert receiver.recv_message()[1][:9] == bytes([protocol.MSG_DELIVER]) + (2).to_bytes(8, "big")
    assert not receiver.readable(0)


def test_rpyc_requests_other_than_close_are_refused_with_an_exception_reply(pair) -> None:
    sender, receiver = pair
    sender._send(consts.MSG_REQUEST, 5, (consts.HANDLE_GETROOT, sender._box(())))
    serve_until_request(receiver)
    frame, _ = sender._channel.recv_frame()
    assert frame[0] == consts.MSG_EXCEPTION
    assert b"not served by pynode" in bytes(frame)
    assert receiver.handler.seen == []


class RecordingPoller:
    """Wraps a stream's poll object, recording the timeouts it is called with (milliseconds)."""

    def __init__(self, poller) -> None:
        self._poller = poller
        self.timeouts: list[float] = []

    def poll(self, timeout: float) -> list:
        self.timeouts.append(timeout)
        return self._poller.poll(timeout)


def watch_polls(conn: protocol.ErpcConnection, wrapper: type[RecordingPoller] = RecordingPoller) -> RecordingPoller:
    """Put ``wrapper`` around the poll object of ``conn``'s stream and return it."""
    stream = conn._channel.stream
    stream._poller = wrapper(stream._poller)
    return stream._poller


def test_readable_busy_polls_for_spin_seconds_then_blocks_for_the_rest(pair) -> None:
    _, receiver = pair
    poller = watch_polls(receiver)
    started = time.monotonic()
    assert not receiver.readable(0.05)
    assert time.monotonic() - started >= 0.05
    *spins, block = poller.timeouts
    assert len(spins) >= 2 and set(spins) == {0}  # polled without sleeping, more than once
    assert 0 < block <= (0.05 - transport.SPIN) * 1000.0  # what is left of the timeout


SLOW_POLL = 0.005  # seconds each non-blocking poll of SlowZeroPoller takes


class SlowZeroPoller(RecordingPoller):
    """A poller whose non-blocking polls take SLOW_POLL seconds, as when a thread that released
    the GIL for the poll waits up to the switch interval (5 ms) to get it back."""

    def poll(self, timeout: float) -> list:
        if timeout == 0:
            time.sleep(SLOW_POLL)
        return super().poll(timeout)


def test_readable_waits_no_longer_than_its_timeout_when_the_spin_is_slow(pair) -> None:
    _, receiver = pair
    poller = watch_polls(receiver, SlowZeroPoller)
    started = time.perf_counter()
    assert not receiver.readable(0.05)
    assert time.perf_counter() - started >= 0.05
    spins = [t for t in poller.timeouts if t == 0]
    blocks = [t for t in poller.timeouts if t > 0]
    assert spins and blocks
    # the spin took at least one SLOW_POLL: the first block waits at most what was left after it
    assert blocks[0] <= (0.05 - SLOW_POLL * len(spins)) * 1000.0


class NothingWhileSpinning(RecordingPoller):
    """Sees nothing during the spin (non-blocking polls), the real socket once readable blocks."""

    def poll(self, timeout: float) -> list:
        return [] if timeout == 0 else super().poll(timeout)


@pytest.mark.parametrize("timeout", [30 * 86400.0, float("inf")], ids=["30-days", "inf"])
def test_readable_takes_timeouts_longer_than_one_poll_can_wait(pair, timeout: float) -> None:
    """poll() waits at most 2**31 - 1 ms (24.8 days); a longer timeout is waited in turns."""
    sender, receiver = pair
    poller = watch_polls(receiver, NothingWhileSpinning)
    sender.send_deliver(1, b"x", ())
    assert receiver.readable(timeout)
    assert poller.timeouts[-1] == transport.MAX_POLL_MS


def test_readable_with_a_timeout_below_spin_only_busy_polls(pair) -> None:
    _, receiver = pair
    poller = watch_polls(receiver)
    assert not receiver.readable(transport.SPIN / 3)
    assert set(poller.timeouts) == {0}


@pytest.mark.parametrize("delay", [0.0001, 0.02], ids=["within-the-spin", "after-the-spin"])
def test_a_frame_arriving_while_the_reader_spins_or_blocks_is_read(pair, delay: float) -> None:
    sender, receiver = pair
    timer = threading.Timer(delay, sender.send_deliver, args=(7, b"late", ()))
    timer.start()
    try:
        kind, frame, _ = receiver.recv_message()  # no data yet: spins, then blocks in recv
    finally:
        timer.join()
    assert kind == protocol.MSG_DELIVER and bytes(frame[9:]) == b"late"
