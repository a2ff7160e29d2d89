"""pynode's messages, carried in rpyc's frames next to rpyc's own, decoded into a :class:`Handler`.

rpyc serves one request at a time per connection and answers it as soon as its handler returns.
A remote call must not hold the connection while it runs, so pynode sends its own messages on an
rpyc connection (:class:`ErpcConnection` is the connection class of our service, the extension
point rpyc offers as ``Service._protocol``). A frame's first byte is the message type: rpyc's
(``consts.MSG_*``, 1-3, followed by brine) or one of pynode's, followed by fixed big-endian fields
and then the pickle, raw (no brine encoding, no boxing, no copy into a tuple):

==========  =====  ==================================  ============================  =========
message     type   fields after the type byte          handler method                runs code
==========  =====  ==================================  ============================  =========
CALL        0x40   ``seq:u64 data``                    ``on_call(seq, data, bufs)``  yes
RESULT      0x41   ``seq:u64 status:u8 data``          ``on_result(seq, status,      no (reply)
                                                       data, bufs)``
CANCEL      0x42   ``seq:u64``                         ``on_cancel(seq)``            no
CAST        0x43   ``data``                            ``on_cast(data, bufs)``       yes
DELIVER     0x44   ``mailbox_id:u64 data``             ``on_deliver(mailbox_id,      no
                                                       data, bufs)``
TICK        0x45   nothing (exactly one byte)          ``on_tick()``                 no
PEERS       0x46   ``count:u16 (len:u16 name)*count``  ``on_peers(names)``           no
SIGNAL      0x50   ``data``                            ``on_signal(data, bufs)``     no
==========  =====  ==================================  ============================  =========

One CALL and one RESULT per call, matched by ``seq`` (chosen by the caller), any number in flight
on one connection; ``status`` is :mod:`pynode.outcome`'s. CANCEL, CAST, DELIVER and SIGNAL are
one-way. TICK is sent by a connection that has sent nothing for a while and only proves the
sender alive (:mod:`pynode.ticks`); a TICK with a body is malformed. PEERS carries the sender's
visible peers (UTF-8 node names, ``alive@host``) for the transitive mesh (:mod:`pynode.node`); a
count that does not match the names, a name that is not a node name, bytes left over or
attachments make it malformed. SIGNAL's ``data`` is one signal between processes
(:mod:`pynode.signals`: links, exit and down signals, monitors, sends to registered names, output
for a group leader), handled where it is read like DELIVER, so that signals and messages between
two nodes keep their order.
``data`` is a pickle (:mod:`pynode.payload`); its out-of-band buffers (``bufs``) travel as
attachment frames just before the frame that uses them (:class:`pynode.transport._Channel`).
Fields are fixed-size integers and the rest of the frame is bytes, so nothing but a pickle from
an authenticated peer ever reaches pickle. Of rpyc's own messages only the CLOSE request is
served; every other rpyc request is refused with an rpyc exception reply: no attribute access, no
netrefs, no rpyc pickling. An unknown message type or a truncated frame is a protocol violation
(:class:`ProtocolViolation`): the connection is dropped.

*Runs code* tells the read scheduling (:mod:`pynode.reading`) where a message is handled. A
message that runs no code is handled at once by the thread that read it, which goes on reading
(its handler must not block: wake a thread, queue a message, flag a call). One that runs code
(user code, or anything that may block) is handed to :meth:`ErpcConnection.run_request` in a
thread that may run for a while: a reader thread that hands the socket on meanwhile, or a thread
started for it. A *reply* may end a caller's wait: the reader that read it lets waiting callers
read next.

This module decodes and encodes; what a message does is the handler's business (implemented by
:class:`pynode.connection.Connection`). It imports only :mod:`pynode.transport` (frames),
:mod:`pynode.execution` (the send shield), :mod:`pynode.names` (node names in PEERS) and rpyc,
nothing above it.

Adding a message kind (say ``SIGNAL``):

1. pick the next free type code (``MSG_SIGNAL = 0x50``) and a ``struct.Struct`` for its fixed
   fields; add a row to the table above;
2. add ``send_signal(...)`` to :class:`ErpcConnection` (``self._send_frame(head, data, buffers)``);
3. add ``on_signal(...)`` to :class:`Handler` and write a decoder ``_decode_signal(handler,
   frame, buffers)`` that unpacks the fields with :func:`_unpack` (which turns a short frame into
   a ProtocolViolation), checks anything else a peer could get wrong (raise ProtocolViolation
   naming the problem) and calls ``handler.on_signal(...)``;
4. register it: ``MSG_SIGNAL: Message("SIGNAL", _decode_signal, runs_code=..., reply=False)`` in
   :data:`MESSAGES`;
5. implement ``on_signal`` in :class:`pynode.connection.Connection` (and test the decoding in
   ``tests/pynode/test_protocol.py``, the behaviour where it lives).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import rpyc
from rpyc.core import brine, consts

from pynode import names as node_names
from pynode.errors import BadNodeName
from pynode.execution import shield, unshield
from pynode.transport import Buffers, Data

log = logging.getLogger(__name__)

# pynode's message types (rpyc's consts.MSG_REQUEST/REPLY/EXCEPTION are 1-3).
MSG_CALL = 0x40
MSG_RESULT = 0x41
MSG_CANCEL = 0x42
MSG_CAST = 0x43
MSG_DELIVER = 0x44
MSG_TICK = 0x45
MSG_PEERS = 0x46
# 0x45-0x4f: the connection's own (ticks, peer lists); 0x50-0x5f: processes.
MSG_SIGNAL = 0x50

_TYPE = struct.Struct("!B")
_TYPE_ID = struct.Struct("!BQ")  # CALL, CANCEL, DELIVER: a sequence number or a mailbox id
_TYPE_ID_STATUS = struct.Struct("!BQB")  # RESULT
_TICK = _TYPE.pack(MSG_TICK)
_U16 = struct.Struct("!H")  # PEERS: the count, and each name's length
MAX_PEERS = 2**16 - 1  # names one PEERS can carry (the count is a u16)

# What ErpcConnection.dispatch_passive reports to the read scheduling.
SERVE = 0  # the message runs code: not handled yet; pass it to run_request in a suitable thread
HANDLED = 1  # handled (it ran no code)
REPLIED = 2  # handled, and it was a reply: a waiting caller may have been woken


class ProtocolViolation(Exception):
    """A peer sent a message pynode does not serve or a malformed one."""


class Handler(Protocol):
    """What one connection's messages are decoded into (the table in the module docstring).

    Methods of messages that run no code are called by the thread reading the connection and
    must not block; the others may run for as long as they need. ``data`` is a view into the
    received frame and ``buffers`` its attachments (writable memory the handler may keep).
    Raising ProtocolViolation drops the connection (the reason is logged, naming ``name``)."""

    name: str
    """The peer's node name, for messages and log lines."""

    def on_call(self, seq: int, data: Data, buffers: Buffers) -> None: ...

    def on_result(self, seq: int, status: int, data: Data, buffers: Buffers) -> None: ...

    def on_cancel(self, seq: int) -> None: ...

    def on_cast(self, data: Data, buffers: Buffers) -> None: ...

    def on_deliver(self, mailbox_id: int, data: Data, buffers: Buffers) -> None: ...

    def on_tick(self) -> None: ...

    def on_peers(self, names: list[str]) -> None: ...

    def on_signal(self, data: Data, buffers: Buffers) -> None: ...


Decoder = Callable[[Handler, Data, Buffers], None]
"""Unpacks one frame of a message type and calls its handler method."""


class Message(NamedTuple):
    """One row of the message table: how a message type is decoded and where it is handled."""

    name: str  # for log lines
    decode: Decoder
    runs_code: bool  # True: handled by run_request (see the module docstring)
    reply: bool = False  # True: may end a caller's wait (RESULT)


# CALL and RESULT, one of each per call, check their length in place rather than in _unpack.
_CALL_HEAD = _TYPE_ID.size
_RESULT_HEAD = _TYPE_ID_STATUS.size


def _decode_call(handler: Handler, frame: Data, buffers: Buffers) -> None:
    if len(frame) < _CALL_HEAD:
        raise _truncated(_TYPE_ID, frame)
    handler.on_call(_TYPE_ID.unpack_from(frame)[1], frame[_CALL_HEAD:], buffers)


def _decode_result(handler: Handler, frame: Data, buffers: Buffers) -> None:
    if len(frame) < _RESULT_HEAD:
        raise _truncated(_TYPE_ID_STATUS, frame)
    _, seq, status = _TYPE_ID_STATUS.unpack_from(frame)
    handler.on_result(seq, status, frame[_RESULT_HEAD:], buffers)


def _decode_cancel(handler: Handler, frame: Data, buffers: Buffers) -> None:
    handler.on_cancel(_unpack(_TYPE_ID, frame)[1])


def _decode_cast(handler: Handler, frame: Data, buffers: Buffers) -> None:
    handler.on_cast(frame[_TYPE.size :], buffers)


def _decode_deliver(handler: Handler, frame: Data, buffers: Buffers) -> None:
    handler.on_deliver(_unpack(_TYPE_ID, frame)[1], frame[_TYPE_ID.size :], buffers)


def _decode_tick(handler: Handler, frame: Data, buffers: Buffers) -> None:
    if len(frame) != _TYPE.size or buffers:
        raise ProtocolViolation(
            f"malformed TICK from {handler.name}: {len(frame) - _TYPE.size} bytes and {len(buffers)} "
            "attachments after the type, expected none"
        )
    handler.on_tick()


def encode_peers(names: list[str]) -> bytes:
    """The body of a PEERS frame after its type byte. Raises ValueError for more than MAX_PEERS
    names or a name longer than 65535 bytes in UTF-8 (no node name is)."""
    if len(names) > MAX_PEERS:
        raise ValueError(f"a PEERS message carries at most {MAX_PEERS} names, not {len(names)}")
    parts = [_U16.pack(len(names))]
    for name in names:
        raw = name.encode("utf-8")
        parts += (_U16.pack(len(raw)), raw)
    return b"".join(parts)


def _decode_peers(handler: Handler, frame: Data, buffers: Buffers) -> None:
    def malformed(why: str) -> ProtocolViolation:
        return ProtocolViolation(f"malformed PEERS from {handler.name}: {why}")

    if buffers:
        raise malformed(f"{len(buffers)} attachments")
    view = memoryview(frame)
    pos = _TYPE.size
    if len(view) < pos + _U16.size:
        raise malformed("no count")
    (count,) = _U16.unpack_from(view, pos)
    pos += _U16.size
    found: list[str] = []
    for index in range(count):
        if len(view) < pos + _U16.size:
            raise malformed(f"{count} names announced, the frame ends after {index}")
        (size,) = _U16.unpack_from(view, pos)
        pos += _U16.size
        if len(view) < pos + size:
            raise malformed(f"name {index} is cut short ({len(view) - pos} of {size} bytes)")
        try:
            name = str(view[pos : pos + size], "utf-8")
            node_names.parse(name)
        except (UnicodeDecodeError, BadNodeName) as exc:
            raise malformed(f"name {index}: {exc}") from None
        pos += size
        found.append(name)
    if pos != len(view):
        raise malformed(f"{len(view) - pos} bytes after the {count} names")
    handler.on_peers(found)


def _decode_signal(handler: Handler, frame: Data, buffers: Buffers) -> None:
    handler.on_signal(frame[_TYPE.size :], buffers)


MESSAGES: dict[int, Message] = {
    MSG_CALL: Message("CALL", _decode_call, runs_code=True),
    MSG_RESULT: Message("RESULT", _decode_result, runs_code=False, reply=True),
    MSG_CANCEL: Message("CANCEL", _decode_cancel, runs_code=False),
    MSG_CAST: Message("CAST", _decode_cast, runs_code=True),
    MSG_DELIVER: Message("DELIVER", _decode_deliver, runs_code=False),
    MSG_TICK: Message("TICK", _decode_tick, runs_code=False),
    MSG_PEERS: Message("PEERS", _decode_peers, runs_code=False),
    MSG_SIGNAL: Message("SIGNAL", _decode_signal, runs_code=False),
}
"""pynode's message types (see the module docstring for adding one)."""

# The table split by where a message is handled, for one dict lookup per frame.
_PASSIVE: dict[int, tuple[Decoder, int]] = {
    kind: (m.decode, REPLIED if m.reply else HANDLED) for kind, m in MESSAGES.items() if not m.runs_code
}
_ACTIVE: dict[int, Decoder] = {kind: m.decode for kind, m in MESSAGES.items() if m.runs_code}


class ErpcConnection(rpyc.Connection):
    """An rpyc connection that also speaks pynode's messages (see the module docstring)."""

    handler: Handler | None = None  # set by the service's on_connect, before any message is served

    # --- sending (each raises EOFError when the connection is closed) ------------------------

    def send_call(self, seq: int, data: bytes, buffers: Buffers) -> None:
        self._send_frame(_TYPE_ID.pack(MSG_CALL, seq), data, buffers)

    def send_result(self, seq: int, status: int, data: bytes, buffers: Buffers) -> None:
        self._send_frame(_TYPE_ID_STATUS.pack(MSG_RESULT, seq, status), data, buffers)

    def send_cancel(self, seq: int) -> None:
        self._send_frame(_TYPE_ID.pack(MSG_CANCEL, seq))

    def send_cast(self, data: bytes, buffers: Buffers) -> None:
        self._send_frame(_TYPE.pack(MSG_CAST), data, buffers)

    def send_deliver(self, mailbox_id: int, data: bytes, buffers: Buffers) -> None:
        self._send_frame(_TYPE_ID.pack(MSG_DELIVER, mailbox_id), data, buffers)

    def send_peers(self, names: list[str]) -> None:
        self._send_frame(_TYPE.pack(MSG_PEERS), encode_peers(names))

    def try_send_tick(self) -> bool:
        """Write a TICK unless another frame is being written (its bytes are life enough): True
        when written. Never waits for the send lock, so one connection stuck writing to a peer
        that stopped reading cannot hold up the node's ticker."""
        if not self._sendlock.acquire(False):
            return False
        try:
            self._channel.send(_TICK)
        finally:
            self._sendlock.release()
        return True

    def activity(self) -> tuple[int, int]:
        """``(bytes received, writes begun)`` so far (:class:`pynode.transport._Stream`)."""
        stream = self._channel.stream
        return stream.received, stream.writes

    def unread(self) -> bool:
        """Bytes wait in the kernel, not yet read."""
        return self._channel.stream.unread()

    def send_signal(self, data: bytes, buffers: Buffers) -> None:
        self._send_frame(_TYPE.pack(MSG_SIGNAL), data, buffers)

    def _send_frame(self, head: bytes, data: bytes = b"", attachments: Buffers = ()) -> None:
        """Write ``attachments``, then the frame ``head + data``, synchronously.

        rpyc queues frames so that a netref finalizer running mid-send cannot deadlock on the send
        lock; pynode connections never create netrefs (:meth:`_box`/:meth:`_unbox` refuse them),
        so a plain lock suffices, and the caller's buffers are on the wire (or the send failed)
        when this returns, so they may be reused at once. Inside a remote call, a cancellation
        that arrives while the frame is being written is raised after it (CallCancelled).
        """
        shielded = shield()  # a frame is written whole or not at all: never cut by CallCancelled
        try:
            with self._sendlock:
                self._channel.send(head, data, attachments)
        finally:
            unshield(shielded)

    def _send(self, msg: int, seq: int, args: Any) -> None:
        """rpyc's own messages (CLOSE and refusals), brine-encoded, through :meth:`_send_frame`."""
        self._send_frame(brine.I1.pack(msg), brine.dump((seq, args)))

    def _box(self, obj: Any) -> Any:
        """Only brine values cross a pynode connection: never a reference to a local object."""
        if not brine.dumpable(obj):
            raise ProtocolViolation(f"pynode sends only brine values, not {type(obj).__name__}")
        return consts.LABEL_VALUE, obj

    def _unbox(self, package: Any) -> Any:
        """Refuse object references (netrefs) from the peer: only plain values are accepted."""
        label, value = package
        if label != consts.LABEL_VALUE:
            raise ProtocolViolation("pynode connections carry no object references")
        return value

    def close(self) -> None:
        """Close the connection without waiting for the peer.

        rpyc's ``close`` sends CLOSE and waits for the reply by reading the connection from the
        calling thread, next to pynode's reader threads that own the socket (they pass a
        :class:`~pynode.readtoken.ReadToken`, not rpyc's receive lock). CLOSE is sent one-way
        instead (the peer closes its end on receipt); a send failure only means the connection
        is already gone. Runs ``on_disconnect`` once.
        """
        if self._closed:
            return
        self._closed = True
        try:
            self._send(consts.MSG_REQUEST, self._get_seq_id(), (consts.HANDLE_CLOSE, self._box(())))
        except (EOFError, OSError):
            pass
        finally:
            self._cleanup(_anyway=True)

    # --- serving: only the thread holding the connection's read token calls these ---------------

    def readable(self, timeout: float) -> bool:
        """True when a message can be read without waiting more than ``timeout`` seconds for its
        first byte (it may also be the end of the connection, which the read then raises)."""
        return self._channel.stream.readable(timeout)

    def recv_message(self) -> tuple[int, Data, Buffers]:
        """The next frame: its message type, the frame itself and its attachments. Raises
        EOFError when the connection is gone."""
        frame, buffers = self._channel.recv_frame()
        return frame[0], frame, buffers

    def dispatch_passive(self, kind: int, frame: Data, buffers: Buffers) -> int:
        """Handle a message that runs no code (RESULT wakes a waiting caller, DELIVER queues a
        message in the order messages were sent, as Erlang keeps the order between two
        processes, CANCEL flags a running call): HANDLED, or REPLIED for a reply. SERVE, without
        handling it, for any other message, which :meth:`run_request` serves. Raises
        ProtocolViolation for a malformed frame."""
        entry = _PASSIVE.get(kind)
        if entry is None:
            return SERVE
        entry[0](self.handler, frame, buffers)
        return entry[1]

    def run_request(self, kind: int, frame: Data, buffers: Buffers) -> None:
        """Serve a message that runs code, in this thread: a CALL runs to completion and sends its
        RESULT, a CAST runs, an rpyc request is served (CLOSE) or refused. Raises
        ProtocolViolation for a malformed frame or an unknown message type."""
        decode = _ACTIVE.get(kind)
        if decode is not None:
            decode(self.handler, frame, buffers)
        elif kind == consts.MSG_REQUEST:
            seq, args = brine.load(frame[1:])
            self._dispatch_request(seq, args)
        else:
            raise ProtocolViolation(f"unknown message type {kind} from {self._peer()}")

    def _peer(self) -> str:
        return self.handler.name if self.handler is not None else "an unknown peer"

    def _dispatch_request(self, seq: int, raw_args: Any) -> None:
        """rpyc's requests: CLOSE is served; anything else is refused with an exception reply."""
        handler = raw_args[0] if type(raw_args) is tuple and raw_args else None
        if handler == consts.HANDLE_CLOSE:
            super()._dispatch_request(seq, raw_args)
            return
        exc = ProtocolViolation(f"rpyc request code {handler!r} is not served by pynode")
        log.warning("refused a request from %s: %s", self._peer(), exc)
        self._send(consts.MSG_EXCEPTION, seq, self._box_exc(type(exc), exc, None))


def _unpack(fields: struct.Struct, frame: Data) -> tuple[int, ...]:
    """The fixed fields at the start of ``frame``. Raises ProtocolViolation when it is shorter."""
    if len(frame) < fields.size:
        raise _truncated(fields, frame)
    return fields.unpack_from(frame)


def _truncated(fields: struct.Struct, frame: Data) -> ProtocolViolation:
    return ProtocolViolation(f"truncated frame of type {frame[0]}: {len(frame)} < {fields.size} bytes")
