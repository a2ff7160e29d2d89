"""Message size limits: parsing, and frames refused from their header (socket pairs)."""

from __future__ import annotations

import socket
import threading

import pytest

from pynode import limits, transport
from pynode.errors import MessageTooLarge, PynodeError


@pytest.mark.parametrize("text, size", [("1048576", 1 << 20), ("64M", 64 << 20), ("1GiB", 1 << 30), ("2g", 2 << 30)])
def test_sizes_parse(text: str, size: int) -> None:
    assert limits.max_message_size(text) == size


@pytest.mark.parametrize("bad", ["12 apples", "-5", "1KB", "10"])
def test_bad_sizes_name_themselves(bad: str) -> None:
    with pytest.raises(PynodeError, match="max_message_size"):
        limits.max_message_size(bad)


def test_environment_gives_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(limits.MAX_MESSAGE_SIZE_ENV, "3M")
    assert limits.max_message_size(None) == 3 << 20
    monkeypatch.setenv(limits.MAX_MESSAGE_SIZE_ENV, "lots")
    with pytest.raises(PynodeError, match=limits.MAX_MESSAGE_SIZE_ENV):
        limits.max_message_size(None)
    monkeypatch.delenv(limits.MAX_MESSAGE_SIZE_ENV)
    assert limits.max_message_size(None) == limits.DEFAULT_MAX_MESSAGE_SIZE
    monkeypatch.setenv(limits.HANDSHAKE_SLOTS_ENV, "0")
    with pytest.raises(PynodeError, match=limits.HANDSHAKE_SLOTS_ENV):
        limits.handshake_slots(None)


def test_beam_max_calls_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(limits.BEAM_MAX_CALLS_ENV, raising=False)
    assert limits.beam_max_calls(None) == limits.DEFAULT_BEAM_MAX_CALLS
    assert limits.beam_max_calls(5) == 5
    monkeypatch.setenv(limits.BEAM_MAX_CALLS_ENV, "7")
    assert limits.beam_max_calls(None) == 7
    monkeypatch.setenv(limits.BEAM_MAX_CALLS_ENV, "many")
    with pytest.raises(PynodeError, match=limits.BEAM_MAX_CALLS_ENV):
        limits.beam_max_calls(None)
    with pytest.raises(PynodeError, match="beam_max_calls 0 must be a positive integer"):
        limits.beam_max_calls(0)


def channels(limit: int) -> tuple[transport._Channel, transport._Channel, socket.socket]:
    left, right = socket.socketpair()
    sender = transport._Channel(transport._Stream(left), max_send=limits.MAX_MESSAGE_SIZE)
    receiver = transport._Channel(transport._Stream(right), max_recv=limit)
    return sender, receiver, left


def test_frames_within_the_limit_arrive_with_their_attachments() -> None:
    sender, receiver, _ = channels(2 << 20)
    data, attachment = b"p" * 1000, bytearray(b"a" * (1 << 20))
    thread = threading.Thread(target=sender.send, args=(b"H", data, (attachment,)))
    thread.start()
    frame, buffers = receiver.recv_frame()
    thread.join()
    assert bytes(frame) == b"H" + data and bytes(buffers[0]) == bytes(attachment)


@pytest.mark.parametrize("kind", [0, transport.ATTACHMENT])
def test_header_over_the_limit_is_refused_before_any_body_arrives(kind: int) -> None:
    _, receiver, left = channels(2 << 20)
    left.sendall(transport._Channel.FRAME_HEADER.pack((2 << 20) + 1, kind))  # and no body at all
    with pytest.raises(transport.FrameTooLarge, match="2097153 bytes"):
        receiver.recv_frame()


def test_attachments_are_summed() -> None:
    _, receiver, left = channels((2 << 20) - 1)
    header = transport._Channel.FRAME_HEADER.pack(1 << 20, transport.ATTACHMENT)
    thread = threading.Thread(target=left.sendall, args=(header + b"x" * (1 << 20) + header,), daemon=True)
    thread.start()
    with pytest.raises(transport.FrameTooLarge, match="message total 2097152"):
        receiver.recv_frame()
    thread.join(10)


def test_sender_refuses_before_writing_anything() -> None:
    left, right = socket.socketpair()
    sender = transport._Channel(transport._Stream(left), max_send=2 << 20)
    with pytest.raises(MessageTooLarge, match="peer's max_message_size of 2097152"):
        sender.send(b"H", b"", (bytearray(2 << 20),))
    right.setblocking(False)
    with pytest.raises(BlockingIOError):
        right.recv(1)  # nothing was written


def test_endless_empty_attachments_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "MAX_ATTACHMENTS", 100)
    _, receiver, left = channels(2 << 20)
    left.sendall(transport._Channel.FRAME_HEADER.pack(0, transport.ATTACHMENT) * 101)
    with pytest.raises(transport.FrameTooLarge, match="more than 100 attachments"):
        receiver.recv_frame()
