"""pynode's messages, carried in rpyc's frames next to rpyc's own.

rpyc serves one request at a time per connection and answers it as soon as its handler returns.
A remote call must not hold the connection while it runs, so pynode sends its own messages on an
rpyc connection (:class:`ErpcConnection` is the connection class of our service, the extension
point rpyc offers as ``Service._protocol``). A frame's first byte is the message type: rpyc's
(``consts.MSG_*``, 1-3, followed by brine) or one of pynode's, followed by fixed big-endian fields
and then the pickle, raw (no brine encoding, no boxing, no copy into a tuple):

- ``CALL seq:u64 data``: run by :meth:`ErpcConnection.run_request` in the thread that read it,
  or in a thread started for it (:mod:`pynode.link` decides, and hands the socket on to other
  readers while a call runs). When the call returns, that thread sends
  ``RESULT seq:u64 status:u8 data`` (:mod:`pynode.outcome`). One CALL and one RESULT per call,
  matched by ``seq`` (chosen by the caller), any number in flight on one connection.
- ``CANCEL seq:u64``, ``CAST data``, ``DELIVER mailbox_id:u64 data``: one-way.

``data`` is a pickle; its out-of-band buffers travel as attachment frames just before the frame
that uses them (:class:`pynode.transport._Channel`). Fields are fixed-size integers and the rest
of the frame is bytes, so nothing but a pickle from an authenticated peer ever reaches pickle.
Of rpyc's own messages only the CLOSE request is served; every other rpyc request is refused with
an rpyc exception reply: no attribute access, no netrefs, no rpyc pickling. An unknown message
type or a truncated frame is a protocol violation: the connection is dropped.
"""

from __future__ import annotations

import logging
import struct
from typing import TYPE_CHECKING, Any

import rpyc
from rpyc.core import brine, consts

from pynode.execution import shield, unshield
from pynode.transport import Buffers, Data

if TYPE_CHECKING:
    from pynode.link import Link

log = logging.getLogger(__name__)

# pynode's message types (rpyc's consts.MSG_REQUEST/REPLY/EXCEPTION are 1-3).
MSG_CALL = 0x40
MSG_RESULT = 0x41
MSG_CANCEL = 0x42
MSG_CAST = 0x43
MSG_DELIVER = 0x44

_TYPE = struct.Struct("!B")
_TYPE_ID = struct.Struct("!BQ")  # CALL, CANCEL, DELIVER: a sequence number or a mailbox id
_TYPE_ID_STATUS = struct.Struct("!BQB")  # RESULT


class ProtocolViolation(Exception):
    """A peer sent a message pynode does not serve or a malformed one."""


class ErpcConnection(rpyc.Connection):
    """An rpyc connection that also speaks pynode's messages (see the module docstring)."""

    link: Link | None = None  # set by the service's on_connect, before any message is served

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

    # --- serving: only the thread holding the link's read token calls these --------------------

    def readable(self, timeout: float) -> bool:
        """True when a message can be read without waiting more than ``timeout`` seconds for its
        first byte (it may also be the end of the connection, which the read then raises)."""
        return self._channel.stream.readable(timeout)

    def recv_message(self) -> tuple[int, Data, Buffers]:
        """The next frame: its message type, the frame itself and its attachments. Raises
        EOFError when the connection is gone."""
        frame, buffers = self._channel.recv_frame()
        return frame[0], frame, buffers

    def dispatch_passive(self, kind: int, frame: Data, buffers: Buffers) -> bool:
        """Dispatch a message that runs no code: RESULT wakes a waiting caller, DELIVER queues a
        message (in the order messages were sent, as Erlang keeps the order between two
        processes), CANCEL flags a running call. False for any other message, which
        :meth:`run_request` serves. Raises ProtocolViolation for a truncated frame."""
        link = self.link
        if kind == MSG_RESULT:
            _, seq, status = _unpack(_TYPE_ID_STATUS, frame)
            link.resolve(seq, status, frame[_TYPE_ID_STATUS.size :], buffers)
        elif kind == MSG_DELIVER:
            link.node.deliver_local(_unpack(_TYPE_ID, frame)[1], frame[_TYPE_ID.size :], buffers)
        elif kind == MSG_CANCEL:
            link.cancel_running(_unpack(_TYPE_ID, frame)[1])
        else:
            return False
        return True

    def run_request(self, kind: int, frame: Data, buffers: Buffers) -> None:
        """Serve a message that runs code, in this thread: a CALL runs to completion and sends its
        RESULT, a CAST runs, an rpyc request is served (CLOSE) or refused. Raises
        ProtocolViolation for a truncated frame or an unknown message type."""
        link = self.link
        if kind == MSG_CALL:
            link.start_call(_unpack(_TYPE_ID, frame)[1], frame[_TYPE_ID.size :], buffers)
        elif kind == MSG_CAST:
            link.start_cast(frame[_TYPE.size :], buffers)
        elif kind == consts.MSG_REQUEST:
            seq, args = brine.load(frame[1:])
            self._dispatch_request(seq, args)
        else:
            raise ProtocolViolation(f"unknown message type {kind} from {link.name}")

    def _dispatch_request(self, seq: int, raw_args: Any) -> None:
        """rpyc's requests: CLOSE is served; anything else is refused with an exception reply."""
        handler = raw_args[0] if type(raw_args) is tuple and raw_args else None
        if handler == consts.HANDLE_CLOSE:
            super()._dispatch_request(seq, raw_args)
            return
        peer = self.link.name if self.link is not None else "an unknown peer"
        exc = ProtocolViolation(f"rpyc request code {handler!r} is not served by pynode")
        log.warning("refused a request from %s: %s", peer, exc)
        self._send(consts.MSG_EXCEPTION, seq, self._box_exc(type(exc), exc, None))


def _unpack(fields: struct.Struct, frame: Data) -> tuple[int, ...]:
    """The fixed fields at the start of ``frame``. Raises ProtocolViolation when it is shorter."""
    if len(frame) < fields.size:
        raise ProtocolViolation(f"truncated frame of type {frame[0]}: {len(frame)} < {fields.size} bytes")
    return fields.unpack_from(frame)
