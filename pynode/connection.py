"""One authenticated connection to a peer node: its tables of pending calls out and running calls in.

:class:`Connection` is the :class:`pynode.protocol.Handler` of its rpyc connection: it turns the
peer's messages into resolved calls, queued messages and calls run here. Who reads the socket,
and in which thread a message is handled, is :mod:`pynode.reading`'s (one
:class:`~pynode.reading.ReadScheduler` per connection, sharing this connection's lock); the wire
format is :mod:`pynode.protocol`'s. A connection knows its node only as an :class:`Owner`.

When the connection is gone (the peer closed it, died, or sent garbage; this node closed it, or
its ticker heard nothing from the peer for a ticktime, :mod:`pynode.ticks`), every call still
waiting for a reply fails with ``NoConnection`` at once (naming the reason when this node closed
it), and the calls the peer was running here are cancelled (:mod:`pynode.execution`).
"""

from __future__ import annotations

import itertools
import logging
import pickle
import socket
import threading
import time
from typing import Protocol

import rpyc

from pynode import outcome, protocol, transport
from pynode.errors import MessageTooLarge, NoConnection
from pynode.execution import CallContext, execute
from pynode.handshake import PeerInfo
from pynode.payload import Payload, dumps
from pynode.pending import Pending
from pynode.reading import ReadScheduler
from pynode.ticks import Liveness
from pynode.transport import Buffers, Data

log = logging.getLogger(__name__)

# Node.ping's round trip: a call of a builtin that exists on every node.
_PING_CALL = dumps(("builtins:int", (), {}))
# Seconds a connection replaced by another one with the same peer (two nodes that dialled each
# other at once) stays open before it may close once idle: both ends register the surviving
# connection within milliseconds of each other, so a call sent on the loser just before its
# sender learnt of the winner arrives well within this and is served, not failed.
RETIRE_LINGER = 1.0


class Owner(Protocol):
    """What a connection needs of its node (:class:`pynode.node.LocalNode`)."""

    name: str
    """This node's name."""

    def watch_inline(self) -> None:
        """A reader of some connection starts running a call holding its read token (the node's
        :class:`~pynode.handoff.HandoffWatchdog` watches it)."""

    def deliver_local(self, mailbox_id: int, data: Data, buffers: Buffers) -> None:
        """Queue a message that arrived for local mailbox ``mailbox_id`` (never blocks)."""

    def on_signal(self, peer: str, data: Data, buffers: Buffers) -> None:
        """A SIGNAL frame from ``peer`` for local processes (never blocks); raises ValueError
        when it is not a signal (the connection is then dropped)."""

    def detach(self, connection: Connection) -> None:
        """``connection`` is gone (called once, from a thread of the connection, after
        :meth:`Connection.disconnected` or to call it)."""

    def peers_announced(self, connection: Connection, names: list[str]) -> None:
        """The peer of ``connection`` announced its visible peers (the transitive mesh); must not
        block (it runs in the thread reading the connection)."""

    def leaders(self, peer: str) -> outcome.Leaders:
        """Where the output of calls from ``peer`` that carry a group leader goes (asked once,
        when the connection is made)."""


class Connection:
    """The local end of one connection with a peer (see the module docstring)."""

    def __init__(self, owner: Owner, sock: socket.socket, peer: PeerInfo, *, outgoing: bool = False) -> None:
        self.owner = owner
        self.name = peer.name
        self.hidden = peer.hidden
        self.outgoing = outgoing  # True: this node dialled it; False: it accepted it
        self.peer_limit = peer.max_message_size  # the largest message the peer accepts (handshake)
        self.sock = sock
        self.conn: protocol.ErpcConnection | None = None  # set by attach, before any message is read
        self.closed = False  # False -> True once (close or disconnected); never back
        # Guards _pending, _running and every Pending's state; shared with the read scheduling.
        self._lock = threading.Lock()
        self._reads = ReadScheduler(self._lock, f"conn-{self.name}", owner.watch_inline, self._drop)
        self.await_result = self._reads.await_result  # the method below, one Python call less per wait
        self._pending: dict[int, Pending] = {}  # seq -> call sent and not yet answered or failed
        self._running: dict[int, CallContext] = {}  # seq -> call from the peer running here
        self._seqs = itertools.count(1)
        self._liveness = Liveness(time.monotonic())  # the node's ticker's alone
        self._leaders = owner.leaders(peer.name)  # where captured calls' output goes; fixed
        self._reason: str | None = None  # why this node closed the connection, for NoConnection
        # time.monotonic() when another connection with the same peer replaced this one, else None
        # (set once, by the node under its lock; see retire)
        self.retired: float | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.owner.name} -> {self.name}{' closed' if self.closed else ''}>"

    # --- calls out ----------------------------------------------------------------------------

    def call(self, data: bytes, buffers: Buffers) -> tuple[int, Pending]:
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
        except MessageTooLarge as exc:  # nothing was sent
            with self._lock:
                self._pending.pop(seq, None)
            raise MessageTooLarge(f"call to {self.name} not sent: {exc}") from None
        return seq, pending

    def await_result(self, pending: Pending, timeout: float | None) -> bool:
        """Wait until ``pending`` is resolved or failed (True) or ``timeout`` seconds pass (False),
        reading the connection meanwhile when no other thread does (:mod:`pynode.reading`)."""
        return self._reads.await_result(pending, timeout)

    def cancel(self, seq: int) -> None:
        """Stop waiting for call ``seq`` and tell the peer to cancel it; never raises."""
        with self._lock:
            self._pending.pop(seq, None)
        try:
            self._conn().send_cancel(seq)
        except (NoConnection, EOFError, OSError):
            pass

    def cast(self, data: bytes, buffers: Buffers) -> None:
        """Send a CAST. Raises NoConnection."""
        try:
            self._conn().send_cast(data, buffers)
        except (EOFError, OSError) as exc:
            raise self._lost() from exc

    def deliver(self, mailbox_id: int, data: bytes, buffers: Buffers) -> None:
        """Send a message to mailbox ``mailbox_id`` of the peer. Raises NoConnection."""
        try:
            self._conn().send_deliver(mailbox_id, data, buffers)
        except (EOFError, OSError) as exc:
            raise self._lost() from exc

    def signal(self, data: bytes, buffers: Buffers) -> None:
        """Send a SIGNAL frame (a pickled :mod:`pynode.signals` signal). Raises NoConnection."""
        try:
            self._conn().send_signal(data, buffers)
        except (EOFError, OSError) as exc:
            raise self._lost() from exc

    def ping(self, timeout: float) -> bool:
        """A trivial call's round trip within ``timeout`` seconds. Raises NoConnection."""
        seq, pending = self.call(*_PING_CALL)
        if not self.await_result(pending, timeout):
            self.cancel(seq)
            return False
        return pending.error is None and pending.status == outcome.OK

    def close(self, reason: str | None = None) -> None:
        """Shut the socket down: the serving threads on both ends see EOF and clean up. The
        connection counts as closed from now on (new calls on it fail, the node dials afresh);
        ``reason`` goes into the NoConnection of the calls that were waiting."""
        if reason is not None and self._reason is None:
            self._reason = reason
        self.closed = True
        transport.shutdown(self.sock)

    def _conn(self) -> protocol.ErpcConnection:
        conn = self.conn
        if self.closed or conn is None:
            raise self._lost()
        return conn

    def _lost(self) -> NoConnection:
        reason = self._reason
        return NoConnection(f"connection to {self.name} lost" + (f": {reason}" if reason else ""))

    def _drop(self, exc: Exception) -> None:
        if isinstance(exc, transport.FrameTooLarge):
            log.warning("%s dropped the connection with %s: %s", self.owner.name, self.name, exc)
        else:
            log.warning("dropped the connection with %s: undecodable data (%s: %s)", self.name, type(exc).__name__, exc)
        self.close()

    # --- serving ------------------------------------------------------------------------------

    def attach(self, conn: protocol.ErpcConnection) -> None:
        conn.handler = self
        self.conn = conn
        self._reads.attach(conn)

    def run_reader(self) -> None:
        """Serve the connection in this thread until it closes (the connection's first reader)."""
        self._reads.run_reader()

    def hand_off_if_overdue(self, now: float, delay: float) -> bool:
        """The node's watchdog's look at this connection (:meth:`ReadScheduler.hand_off_if_overdue`)."""
        return self._reads.hand_off_if_overdue(now, delay)

    def retire(self, now: float) -> None:
        """Another connection with the same peer replaced this one (both nodes dialled at once;
        :meth:`pynode.node.LocalNode`'s registration decides): no new call is sent on it, and it
        closes once no call of either side is in flight on it, RETIRE_LINGER seconds after this
        at the earliest (the ticker looks)."""
        if self.retired is None:
            self.retired = now

    def _close_if_done(self, now: float) -> bool:
        """Close a retired connection whose linger has passed and that carries no call; True
        when it is (being) closed."""
        if self.retired is None or now - self.retired < RETIRE_LINGER:
            return False
        with self._lock:
            busy = bool(self._pending or self._running)
        if not busy:
            log.info("%s: closing a second connection with %s (another one replaced it)", self.owner.name, self.name)
            self.close("replaced by another connection with the same peer")
        return not busy

    def tick(self, now: float, ticktime: float) -> None:
        """The node's ticker's look (:mod:`pynode.ticks`): send a tick when nothing was written
        since the last look, close the connection when nothing was heard for ``ticktime``, or
        when it was retired and is done."""
        conn = self.conn
        if conn is None or self.closed or self._close_if_done(now):
            return
        received, writes = conn.activity()
        tick_due, down = self._liveness.look(now, received, writes, ticktime, conn.unread)
        if down:
            reason = f"no tick from {self.name} within {ticktime:g} s"
            log.warning("%s: %s; closing the connection", self.owner.name, reason)
            self.close(reason)
        elif tick_due:
            try:
                if conn.try_send_tick():
                    self._liveness.wrote(conn.activity()[1])
            except (EOFError, OSError):
                pass  # the connection is going: its reader sees the end

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

    # --- the protocol's handler (pynode.protocol.Handler) ---------------------------------------

    def on_result(self, seq: int, status: int, data: Data, buffers: Buffers) -> None:
        """The result of call ``seq`` arrived; a result nobody waits for any more (cancelled
        call) is dropped."""
        with self._lock:
            pending = self._pending.pop(seq, None)
            if pending is not None:
                pending.resolve(status, data, buffers)

    def on_deliver(self, mailbox_id: int, data: Data, buffers: Buffers) -> None:
        self.owner.deliver_local(mailbox_id, data, buffers)

    def on_tick(self) -> None:
        """Nothing to do: its bytes were counted as they arrived (:mod:`pynode.ticks`)."""

    def on_peers(self, names: list[str]) -> None:
        self.owner.peers_announced(self, names)

    def announce(self, names: list[str]) -> None:
        """Tell the peer this node's visible peers (PEERS); a lost connection is not an error
        here (its reader sees the end)."""
        try:
            self._conn().send_peers(names)
        except (NoConnection, EOFError, OSError):
            pass

    def on_signal(self, data: Data, buffers: Buffers) -> None:
        try:
            self.owner.on_signal(self.name, data, buffers)
        except (ValueError, pickle.UnpicklingError, AttributeError, ModuleNotFoundError) as exc:
            raise protocol.ProtocolViolation(f"malformed SIGNAL from {self.name}: {type(exc).__name__}: {exc}") from exc

    def on_cancel(self, seq: int) -> None:
        with self._lock:
            ctx = self._running.get(seq)
        if ctx is not None:
            ctx.cancel()

    def on_call(self, seq: int, data: Data, buffers: Buffers) -> None:
        ctx = CallContext(f"call {seq} from {self.name}")
        with self._lock:
            self._running[seq] = ctx

        def run() -> outcome.Reply:
            try:
                return outcome.run_call(self.owner.name, data, buffers, self.peer_limit, self._leaders)
            finally:
                with self._lock:
                    self._running.pop(seq, None)

        reply = self._reads.run_here(execute, ctx, run)
        if reply is not None:  # None: cancelled, the result is dropped
            self._reply(seq, reply[0], reply[1])

    def _reply(self, seq: int, status: int, payload: Payload) -> None:
        try:
            try:
                self._conn().send_result(seq, status, payload[0], payload[1])
            except MessageTooLarge as exc:  # run_call's own check leaves room: not expected
                self._conn().send_result(seq, outcome.ERROR, *outcome.encode_error(exc, self.peer_limit))
        except (NoConnection, EOFError, OSError):
            log.info("result of call %d not delivered: the connection to %s is gone", seq, self.name)

    def on_cast(self, data: Data, buffers: Buffers) -> None:
        def run() -> None:
            status, payload = outcome.run_call(self.owner.name, data, buffers, None, self._leaders)
            if status != outcome.OK:
                log.warning("cast from %s failed: %s", self.name, outcome.describe(payload))

        self._reads.run_here(execute, CallContext(f"cast from {self.name}"), run)


class NodeService(rpyc.Service):
    """The rpyc service of one pynode connection: it exposes nothing through rpyc's attribute
    protocol; its connection class serves pynode's requests (:mod:`pynode.protocol`)."""

    _protocol = protocol.ErpcConnection

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self._connection = connection

    def on_connect(self, conn: protocol.ErpcConnection) -> None:
        self._connection.attach(conn)

    def on_disconnect(self, conn: protocol.ErpcConnection) -> None:
        self._connection.owner.detach(self._connection)
