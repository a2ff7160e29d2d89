"""One authenticated connection to a peer node: pending calls out, running calls in.

Reader threads serve each end of a connection. One of them always blocks reading the socket, so
EOF is seen as soon as the peer dies: every call still waiting on that connection then fails with
``NoConnection`` at once, and the calls the peer was running here are cancelled.

An incoming call runs in the reader thread that read it (no hand-off to a worker on the call's
critical path); before it starts, that thread makes sure another reader is available (waking an
idle one or starting a new thread), so the connection keeps being read and calls run
concurrently. At most MAX_IDLE_READERS idle readers are kept per connection. The wire protocol is
in :mod:`pynode.protocol`.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import rpyc

from pynode import outcome, protocol, transport
from pynode.errors import NoConnection
from pynode.execution import CallContext, execute
from pynode.handshake import PeerInfo

if TYPE_CHECKING:
    from pynode.node import LocalNode

log = logging.getLogger(__name__)

# Idle reader threads kept per connection after a burst of concurrent calls (each idle one is a
# blocked thread; one suffices to keep reading, a second absorbs the next call's start-up).
MAX_IDLE_READERS = 2
# Node.ping's round trip: a call of a builtin that exists on every node.
_PING_CALL = transport.dumps(("builtins:int", (), {}))

_reader = threading.local()


class Pending:
    """A call waiting for its result: set once by a reader thread, awaited by the caller.

    Resolved or failed exactly once, by the thread that removed it from its link's table of
    pending calls under the link's lock (a result, a disconnection), so it needs no lock of its
    own for that. A pre-acquired lock rather than an Event signals it: releasing and acquiring one
    lock is the cheapest wake-up Python offers, and this is on every call's critical path.
    """

    __slots__ = ("_ready", "done", "status", "data", "buffers", "error")

    def __init__(self) -> None:
        self._ready = threading.Lock()
        self._ready.acquire()
        self.done = False
        self.status = 0
        self.data: transport.Data = b""
        self.buffers: transport.Buffers = ()
        self.error: BaseException | None = None

    def resolve(self, status: int, data: transport.Data, buffers: transport.Buffers) -> None:
        self.status, self.data, self.buffers = status, data, buffers
        self.done = True
        self._ready.release()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done = True
        self._ready.release()

    def wait(self, timeout: float | None) -> bool:
        """True once resolved or failed; False when ``timeout`` seconds pass first."""
        if self._ready.acquire(timeout=-1 if timeout is None else max(timeout, 0.0)):
            self._ready.release()  # stay readable for later waits
            return True
        return False


class Link:
    """The local end of one connection with a peer."""

    def __init__(self, node: LocalNode, sock: socket.socket, peer: PeerInfo) -> None:
        self.node = node
        self.name = peer.name
        self.hidden = peer.hidden
        self.sock = sock
        self.conn: protocol.ErpcConnection | None = None
        self.closed = False
        self._lock = threading.Lock()
        self._pending: dict[int, Pending] = {}
        self._running: dict[int, CallContext] = {}
        self._seqs = itertools.count(1)
        self._idle_readers = 0

    def __repr__(self) -> str:
        return f"<Link {self.node.name} -> {self.name}{' closed' if self.closed else ''}>"

    # --- calls out ----------------------------------------------------------------------------

    def call(self, data: bytes, buffers: transport.Buffers) -> tuple[int, Pending]:
        """Send a call; returns its sequence number and the Pending its result resolves.

        Raises NoConnection when the connection is down or the send fails.
        """
        pending = Pending()
        seq = next(self._seqs)  # atomic under the GIL
        conn = self._conn()
        with self._lock:
            if self.closed:
                raise self._lost()
            self._pending[seq] = pending
        try:
            conn.send_call(seq, data, buffers)
        except (EOFError, OSError) as exc:
            with self._lock:
                self._pending.pop(seq, None)
            raise self._lost() from exc
        return seq, pending

    def resolve(self, seq: int, status: int, data: transport.Data, buffers: transport.Buffers) -> None:
        """The result of call ``seq`` arrived (from the reader thread); a result nobody waits for
        any more (cancelled call) is dropped."""
        with self._lock:
            pending = self._pending.pop(seq, None)
        if pending is not None:
            pending.resolve(status, data, buffers)

    def cancel(self, seq: int) -> None:
        """Stop waiting for call ``seq`` and tell the peer to cancel it; never raises."""
        with self._lock:
            self._pending.pop(seq, None)
        try:
            self._conn().send_cancel(seq)
        except (NoConnection, EOFError, OSError):
            pass

    def cast(self, data: bytes, buffers: transport.Buffers) -> None:
        """Send a CAST. Raises NoConnection."""
        try:
            self._conn().send_cast(data, buffers)
        except (EOFError, OSError) as exc:
            raise self._lost() from exc

    def deliver(self, mailbox_id: int, data: bytes, buffers: transport.Buffers) -> None:
        """Send a message to mailbox ``mailbox_id`` of the peer. Raises NoConnection."""
        try:
            self._conn().send_deliver(mailbox_id, data, buffers)
        except (EOFError, OSError) as exc:
            raise self._lost() from exc

    def ping(self, timeout: float) -> bool:
        """A trivial call's round trip within ``timeout`` seconds. Raises NoConnection."""
        seq, pending = self.call(*_PING_CALL)
        if not pending.wait(timeout):
            self.cancel(seq)
            return False
        return pending.error is None and pending.status == outcome.OK

    def close(self) -> None:
        """Shut the socket down: the serving threads on both ends see EOF and clean up."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _conn(self) -> protocol.ErpcConnection:
        conn = self.conn
        if self.closed or conn is None:
            raise self._lost()
        return conn

    def _lost(self) -> NoConnection:
        return NoConnection(f"connection to {self.name} lost")

    # --- calls in (from the serving thread) ---------------------------------------------------

    def attach(self, conn: protocol.ErpcConnection) -> None:
        conn.link = self
        self.conn = conn

    def run_reader(self) -> None:
        """Serve the connection in this thread until it closes (the connection's first reader)."""
        with self._lock:
            self._idle_readers += 1
        self._read(owner=True)

    def _spawn_reader(self) -> None:
        threading.Thread(target=self._read, args=(False,), name=f"link-{self.name}-reader", daemon=True).start()

    def _read(self, owner: bool) -> None:
        """Reader loop. The owner (the connection's first reader) stays until the connection
        closes; spare readers also leave when they are surplus after running a call."""
        conn = self.conn
        if conn is None:
            return
        _reader.owner = owner
        _reader.retire = False
        while not conn.closed:
            try:
                conn.serve_until_request()
            except EOFError:
                break
            except Exception as exc:  # brine/struct errors: garbage after the handshake
                log.warning("dropped the connection with %s: undecodable data (%s: %s)", self.name, type(exc).__name__, exc)
                self.close()
                break
            if _reader.retire:
                return
        conn.close()  # idempotent; runs on_disconnect once

    def _run_here(self, ctx: CallContext, run: Callable[[], Callable[[], None] | None]) -> None:
        """Run a call in this reader thread, another reader taking over the socket meanwhile."""
        with self._lock:
            self._idle_readers -= 1
            spawn = self._idle_readers == 0
            if spawn:
                self._idle_readers += 1  # counted now, so concurrent calls do not spawn twice
        if spawn:
            self._spawn_reader()
        try:
            outcome = execute(ctx, run)
        finally:
            # Counted available again *before* the result goes out: the caller's next request may
            # be read the moment it is sent, and a reader that found no other available would
            # start a thread for nothing (one per sequential call, and as many retiring).
            with self._lock:
                retire = not getattr(_reader, "owner", False) and self._idle_readers >= MAX_IDLE_READERS
                if not retire:
                    self._idle_readers += 1
            _reader.retire = retire
        if outcome is not None:
            outcome()

    def start_call(self, seq: int, data: transport.Data, buffers: transport.Buffers) -> None:
        ctx = CallContext(f"call {seq} from {self.name}")
        with self._lock:
            self._running[seq] = ctx

        def run() -> Callable[[], None]:
            try:
                status, payload = outcome.run_call(self.node.name, data, buffers)
            finally:
                with self._lock:
                    self._running.pop(seq, None)
            return lambda: self._reply(seq, status, payload)

        self._run_here(ctx, run)

    def _reply(self, seq: int, status: int, payload: transport.Payload) -> None:
        try:
            self._conn().send_result(seq, status, payload[0], payload[1])
        except (NoConnection, EOFError, OSError):
            log.info("result of call %d not delivered: the connection to %s is gone", seq, self.name)

    def cancel_running(self, seq: int) -> None:
        with self._lock:
            ctx = self._running.get(seq)
        if ctx is not None:
            ctx.cancel()

    def start_cast(self, data: transport.Data, buffers: transport.Buffers) -> None:
        def run() -> None:
            status, payload = outcome.run_call(self.node.name, data, buffers)
            if status != outcome.OK:
                log.warning("cast from %s failed: %s", self.name, outcome.describe(payload))

        self._run_here(CallContext(f"cast from {self.name}"), run)

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


class NodeService(rpyc.Service):
    """The rpyc service of one pynode connection: it exposes nothing through rpyc's attribute
    protocol; its connection class serves pynode's requests (:mod:`pynode.protocol`)."""

    _protocol = protocol.ErpcConnection

    def __init__(self, link: Link) -> None:
        super().__init__()
        self._link = link

    def on_connect(self, conn: protocol.ErpcConnection) -> None:
        self._link.attach(conn)

    def on_disconnect(self, conn: protocol.ErpcConnection) -> None:
        self._link.node.detach(self._link)
