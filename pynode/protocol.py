"""pynode's requests, carried inside rpyc's message protocol.

rpyc serves one request at a time per connection and answers it as soon as its handler returns.
A remote call must not hold the connection while it runs, so pynode adds its own request codes to
rpyc's protocol (:class:`ErpcConnection` is the connection class of our service, the extension
point rpyc offers as ``Service._protocol``):

- ``CALL (data)``: run by the reader thread that read it, once it has handed the socket to another
  reader (:meth:`ErpcConnection.serve_until_request`); rpyc's automatic reply is not sent. When the
  call returns, that thread sends rpyc's ordinary reply for the request's sequence number:
  ``(status, data)`` (:mod:`pynode.outcome`). One request and one reply per call, matched by rpyc's
  own sequence number, and any number in flight on one connection.
- ``CANCEL (seq)``, ``CAST (data)``, ``DELIVER (mailbox_id, data)``: one-way, no reply at all.

``data`` is a pickle; its out-of-band buffers travel as attachment frames just before the frame
that uses them (:class:`pynode.transport._Channel`), never through brine. Arguments are only ints
and ``bytes`` (brine values, never netrefs); anything else is refused before it reaches pickle.
Of rpyc's own requests only CLOSE is served: no attribute access, no netrefs, no rpyc pickling.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import rpyc
from rpyc.core import brine, consts

from pynode.readtoken import ReadToken
from pynode.transport import Buffers

if TYPE_CHECKING:
    from pynode.link import Link

log = logging.getLogger(__name__)

# pynode's request codes, above rpyc's (consts.HANDLE_* stop at 20).
HANDLE_CALL = 64
HANDLE_CANCEL = 65
HANDLE_CAST = 66
HANDLE_DELIVER = 67
_PYNODE_HANDLERS = frozenset({HANDLE_CALL, HANDLE_CANCEL, HANDLE_CAST, HANDLE_DELIVER})
# rpyc's own requests we still serve: Connection.close sends CLOSE.
_RPYC_HANDLERS = frozenset({consts.HANDLE_CLOSE})

ReplyCallback = Callable[[bool, Any], None]
"""rpyc's reply callback: ``(is_exception, value)``."""


class ProtocolViolation(Exception):
    """A peer sent a request pynode does not serve or arguments of the wrong types."""


class ErpcConnection(rpyc.Connection):
    """An rpyc connection that also speaks pynode's requests (see the module docstring)."""

    link: Link | None = None  # set by the service's on_connect, before any request is served

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._token = ReadToken()  # before rpyc's constructor, which runs the service's on_connect
        super().__init__(*args, **kwargs)

    # --- sending ------------------------------------------------------------------------------

    def new_seq(self) -> int:
        """A fresh request sequence number (for :meth:`send_call`)."""
        return self._get_seq_id()

    def send_call(self, seq: int, data: bytes, buffers: Buffers, on_reply: ReplyCallback) -> None:
        """Send CALL number ``seq``; ``on_reply`` runs on the serving thread when the result
        arrives (it finds the result's buffers with :meth:`take_attachments`). Raises EOFError
        when the connection is closed."""
        self._request_callbacks[seq] = on_reply
        try:
            self._send(consts.MSG_REQUEST, seq, (HANDLE_CALL, self._box((data,))), buffers)
        except BaseException:
            self._request_callbacks.pop(seq, None)
            raise

    def forget(self, seq: int) -> None:
        """Drop the reply callback of ``seq`` (a reply arriving later is ignored)."""
        self._request_callbacks.pop(seq, None)

    def send_oneway(self, handler: int, args: tuple[int | bytes, ...], buffers: Buffers = ()) -> None:
        """Send CANCEL, CAST or DELIVER. Raises EOFError when the connection is closed."""
        self._send(consts.MSG_REQUEST, self._get_seq_id(), (handler, self._box(args)), buffers)

    def send_result(self, seq: int, status: int, data: bytes, buffers: Buffers) -> None:
        """Answer the CALL ``seq``. Raises EOFError when the connection is closed."""
        self._send(consts.MSG_REPLY, seq, self._box((status, data)), buffers)

    def take_attachments(self) -> tuple[bytearray, ...]:
        """The out-of-band buffers of the frame the calling thread is dispatching."""
        return self._channel.take_attachments()

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

    def _send(self, msg: int, seq: int, args: Any, attachments: Buffers = ()) -> None:
        """rpyc's ``_send``, writing ``attachments`` before the frame, synchronously.

        rpyc queues frames so that a netref finalizer running mid-send cannot deadlock on the send
        lock; pynode connections never create netrefs (:meth:`_box`/:meth:`_unbox` refuse them),
        so a plain lock suffices, and the caller's buffers are on the wire (or the send failed)
        when this returns, so they may be reused at once.
        """
        data = brine.I1.pack(msg) + brine.dump((seq, args))
        with self._sendlock:
            self._channel.send(data, attachments)

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

    # --- serving ------------------------------------------------------------------------------

    def serve_until_request(self) -> None:
        """Read frames in this thread, dispatching replies, until a request arrives; then hand the
        socket to another reader and serve the request here (a CALL runs to completion).

        Replies are dispatched without handing the socket over (their callbacks only wake the
        waiting caller), so a connection that only carries replies back is read by one thread
        that never wakes another. Unlike rpyc's ``serve`` there is no ``select`` before a read:
        the reader blocks in ``recv`` and nothing else reads. Raises EOFError when the connection
        is gone, and whatever rpyc raises for an undecodable frame; in both cases the token is
        handed on first, so every waiting reader sees the end too.
        """
        token = self._token
        token.take()
        try:
            while True:
                data = self._channel.recv()
                if data[0] == consts.MSG_REQUEST:
                    break
                self._dispatch_reply(data)
        except BaseException:
            token.give()
            raise
        token.give()
        seq, args = brine.load(data[1:])
        self._dispatch_request(seq, args)

    def _dispatch_reply(self, data: memoryview) -> None:
        msg = data[0]
        seq, args = brine.load(data[1:])
        if msg == consts.MSG_REPLY:
            self._seq_request_callback(msg, seq, False, self._unbox(args))
        elif msg == consts.MSG_EXCEPTION:
            self._seq_request_callback(msg, seq, True, self._unbox_exc(args))
        else:
            raise ValueError(f"invalid message type: {msg!r}")

    def _dispatch_request(self, seq: int, raw_args: Any) -> None:
        handler, boxed = raw_args
        if handler in _RPYC_HANDLERS:
            super()._dispatch_request(seq, raw_args)
            return
        link = self.link
        buffers = self.take_attachments()
        try:
            if handler not in _PYNODE_HANDLERS or link is None:
                raise ProtocolViolation(f"request code {handler!r} is not served by pynode")
            args = _check_args(handler, boxed)
            if handler == HANDLE_CALL:
                link.start_call(seq, args[0], buffers)
            elif handler == HANDLE_CANCEL:
                link.cancel_running(args[0])
            elif handler == HANDLE_CAST:
                link.start_cast(args[0], buffers)
            else:
                link.node.deliver_local(args[0], args[1], buffers)
        except Exception as exc:
            peer = link.name if link is not None else "an unknown peer"
            log.warning("refused a request from %s: %s", peer, exc)
            if handler == HANDLE_CALL or handler not in _PYNODE_HANDLERS:
                self._send(consts.MSG_EXCEPTION, seq, self._box_exc(*sys.exc_info()))


# Argument types of each request: brine values only.
_SIGNATURES: dict[int, tuple[type, ...]] = {
    HANDLE_CALL: (bytes,),
    HANDLE_CANCEL: (int,),
    HANDLE_CAST: (bytes,),
    HANDLE_DELIVER: (int, bytes),
}


def _check_args(handler: int, boxed: Any) -> tuple[Any, ...]:
    """The arguments of a pynode request, checked *before* rpyc unboxes anything (so no netref is
    ever created from a peer's request). Raises ProtocolViolation."""
    if type(boxed) is not tuple or len(boxed) != 2 or boxed[0] != consts.LABEL_VALUE:
        raise ProtocolViolation("arguments must be plain brine values")
    args = boxed[1]
    signature = _SIGNATURES[handler]
    if type(args) is not tuple or tuple(type(a) for a in args) != signature:
        names = ", ".join(t.__name__ for t in signature)
        raise ProtocolViolation(f"request {handler} takes ({names})")
    return args


def check_reply(value: Any) -> tuple[int, bytes]:
    """Validate a CALL reply ``(status, data)``; raises ProtocolViolation."""
    if type(value) is not tuple or len(value) != 2 or type(value[0]) is not int or type(value[1]) is not bytes:
        raise ProtocolViolation("a call reply must be (int, bytes)")
    return value
