"""One authenticated connection to a peer node, and the rpyc service both ends expose on it.

Protocol (every argument is an int or ``bytes``; payloads are :func:`pynode.transport.dumps`
output, unpickled only here, on connections that passed the handshake):

- ``call(req_id, data, *buffers)``: run ``data`` = ``(fn, args, kwargs)`` in a worker thread; the
  rpyc request returns at once, and the result comes back later as a ``result`` request from the
  callee, matched by ``req_id``. So a connection serves any number of calls concurrently, while
  rpyc itself handles one request at a time per connection.
- ``result(req_id, status, data, *buffers)``: the outcome of a call (see :mod:`pynode.outcome`).
- ``cancel(req_id)``: the caller gave up (see :mod:`pynode.execution` for what that guarantees).
- ``cast(data, *buffers)``: run and discard the result.
- ``deliver(mailbox_id, data, *buffers)``: put a message into a local mailbox.

Both ends of a connection serve it from a background thread, which sees EOF as soon as the peer
dies; every call still waiting on that connection then fails with ``NoConnection`` at once.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import rpyc
from rpyc.core import consts

from pynode import outcome, transport
from pynode.errors import NoConnection
from pynode.execution import CallContext
from pynode.handshake import PeerInfo

if TYPE_CHECKING:
    from pynode.node import LocalNode

log = logging.getLogger(__name__)


class Pending:
    """A call waiting for its result: set once by the serving thread, awaited by the caller."""

    __slots__ = ("_event", "status", "data", "buffers", "error")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.status = 0
        self.data = b""
        self.buffers: tuple[bytes, ...] = ()
        self.error: BaseException | None = None

    def resolve(self, status: int, data: bytes, buffers: tuple[bytes, ...]) -> None:
        self.status, self.data, self.buffers = status, data, buffers
        self._event.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self._event.set()

    def wait(self, timeout: float | None) -> bool:
        return self._event.wait(timeout)

    @property
    def done(self) -> bool:
        return self._event.is_set()


class Link:
    """The local end of one connection with ``peer``: sends requests, tracks pending calls and
    the calls the peer is running here."""

    def __init__(self, node: LocalNode, sock: socket.socket, peer: PeerInfo) -> None:
        self.node = node
        self.name = peer.name
        self.hidden = peer.hidden
        self.sock = sock
        self.conn: rpyc.Connection | None = None
        self.closed = False
        self._root: Any = None
        self._lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._running: dict[int, CallContext] = {}

    def __repr__(self) -> str:
        return f"<Link {self.node.name} -> {self.name}{' closed' if self.closed else ''}>"

    # --- sending ------------------------------------------------------------------------------

    def call(self, req_id: int, data: bytes, buffers: tuple[bytes, ...]) -> Pending:
        """Send a call; the returned Pending is resolved by the peer's ``result`` request.

        Raises NoConnection when the connection is already down or the send fails.
        """
        pending = Pending()
        with self._lock:
            if self.closed:
                raise self._lost()
            self._pending[req_id] = pending
        try:
            request = self._post("call", req_id, data, *buffers)
        except NoConnection:
            self.forget(req_id)
            raise
        request.add_callback(lambda res: res.error and self._refused(req_id, res))
        return pending

    def forget(self, req_id: int) -> None:
        """Stop waiting for ``req_id`` (a late result is then ignored)."""
        with self._lock:
            self._pending.pop(req_id, None)

    def cancel(self, req_id: int) -> None:
        """Forget ``req_id`` and tell the peer to cancel it; never raises."""
        self.forget(req_id)
        try:
            self._post("cancel", req_id)
        except NoConnection:
            pass

    def cast(self, data: bytes, buffers: tuple[bytes, ...]) -> None:
        self._post("cast", data, *buffers)

    def deliver(self, mailbox_id: int, data: bytes, buffers: tuple[bytes, ...]) -> None:
        self._post("deliver", mailbox_id, data, *buffers)

    def close(self) -> None:
        """Shut the socket down: the serving threads on both ends see EOF and clean up."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _post(self, method: str, *args: object) -> rpyc.AsyncResult:
        """One asynchronous rpyc request to the peer's service (one frame, no netrefs)."""
        conn = self.conn
        if self.closed or conn is None:
            raise self._lost()
        try:
            if self._root is None:
                self._root = conn.root
            return conn.async_request(consts.HANDLE_CALLATTR, self._root, "exposed_" + method, args, ())
        except (EOFError, OSError, AttributeError, TimeoutError) as exc:
            # AttributeError: rpyc tears a closed connection's state down underneath us.
            raise self._lost() from exc

    def _refused(self, req_id: int, res: rpyc.AsyncResult) -> None:
        with self._lock:
            pending = self._pending.pop(req_id, None)
        if pending is not None:
            try:
                res.value
            except Exception as exc:  # rpyc rebuilt the peer's refusal
                pending.fail(NoConnection(f"{self.name} refused the call: {exc}"))

    def _lost(self) -> NoConnection:
        return NoConnection(f"connection to {self.name} lost")

    # --- receiving (called by the service on the serving thread) ------------------------------

    def attach(self, conn: rpyc.Connection) -> None:
        self.conn = conn

    def resolve(self, req_id: int, status: int, data: bytes, buffers: tuple[bytes, ...]) -> None:
        with self._lock:
            pending = self._pending.pop(req_id, None)
        if pending is None:
            log.debug("late result for request %d from %s ignored", req_id, self.name)
        else:
            pending.resolve(status, data, buffers)

    def start_call(self, req_id: int, data: bytes, buffers: tuple[bytes, ...]) -> None:
        ctx = CallContext(f"call {req_id} from {self.name}")
        with self._lock:
            self._running[req_id] = ctx

        def run() -> Callable[[], None]:
            try:
                status, payload = outcome.run_call(self.node.name, data, buffers)
            finally:
                with self._lock:
                    self._running.pop(req_id, None)
            return lambda: self._reply(req_id, status, payload)

        self.node.workers.submit(ctx, run)

    def _reply(self, req_id: int, status: int, payload: transport.Payload) -> None:
        try:
            self._post("result", req_id, status, payload[0], *payload[1])
        except NoConnection:
            log.info("result of call %d not delivered: %s is gone", req_id, self.name)

    def cancel_running(self, req_id: int) -> None:
        with self._lock:
            ctx = self._running.get(req_id)
        if ctx is not None:
            ctx.cancel()

    def start_cast(self, data: bytes, buffers: tuple[bytes, ...]) -> None:
        ctx = CallContext(f"cast from {self.name}")

        def run() -> None:
            status, payload = outcome.run_call(self.node.name, data, buffers)
            if status != outcome.OK:
                log.warning("cast from %s failed: %s", self.name, outcome.describe(payload))

        self.node.workers.submit(ctx, run)

    def disconnected(self) -> None:
        """The connection is gone: fail waiting calls, cancel the calls the peer was running here."""
        with self._lock:
            self.closed = True
            pending, self._pending = self._pending, {}
            running, self._running = self._running, {}
        for p in pending.values():
            p.fail(self._lost())
        for ctx in running.values():
            ctx.cancel()
        self._root = None


class NodeService(rpyc.Service):
    """What a peer may ask of this node over one authenticated connection: only these five
    ``exposed_`` methods, only with int and ``bytes`` arguments."""

    def __init__(self, link: Link) -> None:
        super().__init__()
        self._link = link

    def on_connect(self, conn: rpyc.Connection) -> None:
        self._link.attach(conn)

    def on_disconnect(self, conn: rpyc.Connection) -> None:
        self._link.node.detach(self._link)

    def exposed_call(self, req_id: int, data: bytes, *buffers: bytes) -> None:
        _check(req_id, data, buffers)
        self._link.start_call(req_id, data, buffers)

    def exposed_result(self, req_id: int, status: int, data: bytes, *buffers: bytes) -> None:
        _check(req_id, data, buffers)
        self._link.resolve(req_id, status, data, buffers)

    def exposed_cancel(self, req_id: int) -> None:
        _check(req_id, b"", ())
        self._link.cancel_running(req_id)

    def exposed_cast(self, data: bytes, *buffers: bytes) -> None:
        _check(0, data, buffers)
        self._link.start_cast(data, buffers)

    def exposed_deliver(self, mailbox_id: int, data: bytes, *buffers: bytes) -> None:
        _check(mailbox_id, data, buffers)
        self._link.node.deliver_local(mailbox_id, data, buffers)


def _check(number: object, data: object, buffers: tuple[object, ...]) -> None:
    """Refuse anything but plain ints and bytes (no rpyc netrefs ever reach pickle)."""
    if type(number) is not int or not transport.is_payload(data, buffers):
        raise TypeError("pynode protocol violation: expected an int and bytes payloads")
