"""Ticks (pynode.ticks): the ticktime setting, one connection's liveness decision, and ticks on a
real stream (a socket pair, no node): bytes of a slow large frame count as life, a tick never
cuts into a frame being written."""

from __future__ import annotations

import math
import threading
import time

import pytest
from pynode import protocol, ticks, transport
from pynode.ticks import Liveness, resolve_ticktime
from wire_pair import wire_pair


def never_unread() -> bool:
    return False


# --- the setting --------------------------------------------------------------------------------


def test_ticktime_comes_from_the_argument_else_the_environment_else_ten_seconds(monkeypatch) -> None:
    monkeypatch.delenv(ticks.TICKTIME_ENV, raising=False)
    assert resolve_ticktime(None) == ticks.DEFAULT_TICKTIME == 10.0
    monkeypatch.setenv(ticks.TICKTIME_ENV, "2.5")
    assert resolve_ticktime(None) == 2.5
    assert resolve_ticktime(3) == 3.0


@pytest.mark.parametrize("bad", [0.5, 0, -1, math.inf, math.nan, "10", True])
def test_a_ticktime_below_one_second_or_not_a_number_is_refused_naming_it(bad) -> None:
    with pytest.raises(ValueError, match="ticktime must be") as info:
        resolve_ticktime(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", ["0.2", "ten"])
def test_a_bad_environment_ticktime_is_refused_naming_the_variable(monkeypatch, bad: str) -> None:
    monkeypatch.setenv(ticks.TICKTIME_ENV, bad)
    with pytest.raises(ValueError, match=r"\$PYNODE_TICKTIME must be .*" + bad):
        resolve_ticktime(None)


def test_node_start_refuses_a_bad_ticktime_before_it_starts() -> None:
    from pynode import Node

    with pytest.raises(ValueError, match="ticktime must be at least 1 s, got 0.25"):
        Node.start("tickbad@127.0.1.6", cookie="c", ticktime=0.25)
    assert not Node.alive()


# --- one connection's decision -------------------------------------------------------------------


def test_silence_means_down_after_ticktime_never_before() -> None:
    live = Liveness(now=0.0)
    assert live.look(0.5, received=10, writes=1, ticktime=2.0, unread=never_unread) == (False, False)
    # nothing more arrives: heard at 0.5, the look at 2.0 is still within ticktime
    assert live.look(2.0, received=10, writes=2, ticktime=2.0, unread=never_unread) == (False, False)
    assert live.look(2.5, received=10, writes=3, ticktime=2.0, unread=never_unread) == (False, True)


def test_bytes_trickling_in_keep_a_peer_alive_however_long_a_frame_takes() -> None:
    live = Liveness(now=0.0)
    for step in range(1, 100):  # one byte per look for 50 s: never a whole frame
        assert live.look(step * 0.5, received=step, writes=0, ticktime=2.0, unread=never_unread)[1] is False


def test_bytes_waiting_unread_count_as_heard() -> None:
    live = Liveness(now=0.0)
    asked: list[int] = []

    def unread() -> bool:
        asked.append(1)
        return True

    assert live.look(1.0, received=5, writes=0, ticktime=2.0, unread=unread) == (False, False)
    assert asked == []  # only asked of a connection about to be declared down
    assert live.look(3.0, received=5, writes=0, ticktime=2.0, unread=unread)[1] is False
    assert asked == [1] and live.heard == 3.0


def test_a_tick_is_due_only_after_a_look_that_saw_nothing_written() -> None:
    live = Liveness(now=0.0)
    assert live.look(0.5, received=0, writes=4, ticktime=2.0, unread=never_unread)[0] is False  # first look
    assert live.look(1.0, received=0, writes=9, ticktime=2.0, unread=never_unread)[0] is False  # wrote meanwhile
    assert live.look(1.5, received=0, writes=9, ticktime=2.0, unread=never_unread)[0] is True
    live.wrote(10)  # the tick itself is not traffic that would skip the next one
    assert live.look(2.0, received=0, writes=10, ticktime=2.0, unread=never_unread)[0] is True


# --- on a real stream ----------------------------------------------------------------------------


class Recorder:
    name = "peer@127.0.1.9"

    def __init__(self) -> None:
        self.ticks = 0

    def on_tick(self) -> None:
        self.ticks += 1


@pytest.fixture
def pair():
    with wire_pair(Recorder()) as (sender, receiver):
        yield sender, receiver


def test_a_tick_is_one_byte_frame_the_peer_decodes(pair) -> None:
    sender, receiver = pair
    assert sender.try_send_tick()
    kind, frame, buffers = receiver.recv_message()
    assert kind == protocol.MSG_TICK and bytes(frame) == bytes([protocol.MSG_TICK])
    assert receiver.dispatch_passive(kind, frame, buffers) == protocol.HANDLED
    assert receiver.handler.ticks == 1


def test_no_tick_is_written_while_another_frame_is_being_written(pair) -> None:
    sender, receiver = pair
    with sender._sendlock:  # a large frame being written
        assert sender.try_send_tick() is False
    assert not receiver.readable(0.05)  # nothing reached the wire
    assert sender.try_send_tick() is True
    assert receiver.readable(1.0)


def test_a_slow_large_frame_is_heard_byte_by_byte(pair) -> None:
    """A 3 MiB attachment trickles in over ~2.5 s, longer than a 1 s ticktime: the receiver's
    counters move at every look, so the sender is never declared down."""
    sender, receiver = pair
    size, chunks = 3 * 1024 * 1024, 25
    frame_header = transport._Channel.FRAME_HEADER.pack(size, transport.ATTACHMENT)
    body = bytes(size)

    def trickle() -> None:
        sock = sender._channel.stream.sock
        sock.sendall(frame_header)
        step = size // chunks
        for i in range(chunks):
            sock.sendall(body[i * step : (i + 1) * step if i < chunks - 1 else size])
            time.sleep(0.1)
        sender._channel.send(bytes([protocol.MSG_DELIVER]) + bytes(8), b"done")

    got: list[tuple] = []
    reader = threading.Thread(target=lambda: got.append(receiver.recv_message()))
    writer = threading.Thread(target=trickle)
    live = Liveness(time.monotonic())
    reader.start()
    writer.start()
    downs = 0
    while reader.is_alive():
        time.sleep(0.25)
        received, writes = receiver.activity()
        downs += live.look(time.monotonic(), received, writes, 1.0, receiver.unread)[1]
    writer.join()
    kind, frame, buffers = got[0]
    assert kind == protocol.MSG_DELIVER and len(buffers) == 1 and memoryview(buffers[0]).nbytes == size
    assert downs == 0
    assert receiver.activity()[0] >= size


def test_the_ticker_looks_at_every_connection_and_survives_a_broken_one() -> None:
    looked: list[tuple[float, float]] = []

    class Good:
        def tick(self, now: float, ticktime: float) -> None:
            looked.append((now, ticktime))

    class Broken:
        def tick(self, now: float, ticktime: float) -> None:
            raise RuntimeError("boom")

    ticker = ticks.Ticker(lambda: [Broken(), Good()], ticktime=1.0, name="test")
    try:
        deadline = time.monotonic() + 5
        while len(looked) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        ticker.stop()
    assert len(looked) >= 3 and {t for _, t in looked} == {1.0}
    gaps = [b[0] - a[0] for a, b in zip(looked, looked[1:])]
    assert min(gaps) >= 0.2  # every ticktime / 4, not faster
