"""One authenticated connection to a peer node: pending calls out, running calls in.

Exactly one thread reads the socket at a time: it holds the link's
:class:`~pynode.readtoken.ReadToken`. Two kinds of threads take turns (leader/follower):

- *callers* waiting for a reply (:meth:`Link.await_result`) read the connection themselves when
  nobody else does, so a call's reply wakes the very thread that waits for it, as a plain rpyc
  call does; a caller whose reply another thread reads is woken by that thread. A caller that got
  its reply hands the token to another waiting caller, if any;
- *reader threads* read while no caller does, so EOF is seen as soon as the peer dies (every call
  still waiting then fails with ``NoConnection`` at once, and the calls the peer was running here
  are cancelled), and incoming calls and messages are served. While callers come and go, reader
  threads stay out of their way: after reading a reply for a waiting caller they hand the token to
  the callers, and take it back once no caller has waited for CALLER_GRACE seconds (so a message
  or a call from the peer that arrives in that gap may wait that long to be read).

An incoming call runs in the reader thread that read it, which keeps the token meanwhile (no
thread is woken for a call that returns quickly); the node's watchdog (:mod:`pynode.handoff`)
hands the token on to a caller or a spare reader (waking an idle one or starting a new thread)
once the call has run for a millisecond or two, so the connection keeps being read and calls run
concurrently. At most MAX_IDLE_READERS idle readers are kept per connection. A call read by a
caller runs in a thread started for it (the caller must stay free for its own reply). The wire
protocol is in :mod:`pynode.protocol`.
"""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import rpyc

from pynode import outcome, protocol, transport
from pynode.errors import NoConnection
from pynode.execution import CallContext, execute, shield, unshield
from pynode.handshake import PeerInfo
from pynode.pending import Pending
from pynode.readtoken import ReadToken

if TYPE_CHECKING:
    from pynode.node import LocalNode

log = logging.getLogger(__name__)

# Idle reader threads kept per connection after a burst of concurrent calls (each idle one is a
# blocked thread; one suffices to keep reading, a second absorbs the next call's start-up).
MAX_IDLE_READERS = 2
# How long reader threads leave the socket to callers after the last caller stopped waiting
# (seconds). Back-to-back calls are far closer than this, so each reads its own reply; a reader
# that stays out wakes up once per CALLER_GRACE to look, which is cheap at this rate.
CALLER_GRACE = 0.005
# Node.ping's round trip: a call of a builtin that exists on every node.
_PING_CALL = transport.dumps(("builtins:int", (), {}))

_reader = threading.local()


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
        self._token = ReadToken()
        self._pending: dict[int, Pending] = {}
        self._running: dict[int, CallContext] = {}
        self._seqs = itertools.count(1)
        self._idle_readers = 0  # reader threads waiting for the token (staying out or blocked)
        self._inline: tuple[int, float] | None = None  # (thread id, start) of a reader running a call
        self._caller_reader = 0  # thread id of a caller reading in _read_for
        self._waiting: list[Pending] = []  # callers waiting for a reply without the token, oldest first
        self._awaiting = 0  # threads inside await_result
        self._caller_turns = 0  # await_result calls finished: reader threads watch it change

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

    def await_result(self, pending: Pending, timeout: float | None) -> bool:
        """Wait until ``pending`` is resolved or failed (True) or ``timeout`` seconds pass (False),
        reading the connection in this thread whenever no other thread does (see the module
        docstring). A lost connection fails ``pending``. Inside a remote call, a cancellation of
        that call is raised (CallCancelled) only once the wait is over and the read token is
        passed on (:func:`pynode.execution.shield`)."""
        if pending.done:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        me = threading.get_ident()
        shielded = shield()
        with self._lock:
            self._awaiting += 1
            pending.waiter = me
            self._waiting.append(pending)
        try:
            while not pending.done:
                if self._token.holder == me or self._token.try_take():
                    if pending.promoted:
                        with self._lock:
                            pending.rearm()
                    if not self._read_for(pending, deadline):
                        continue  # the watchdog took the token first: wait like any caller
                    if not pending.done:  # deadline passed, or the connection is gone
                        break
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if (left is not None and left <= 0) or not pending.wait(left):
                    break
            return pending.done
        finally:
            spawn = False
            with self._lock:
                self._awaiting -= 1
                self._caller_turns += 1
                if pending in self._waiting:
                    self._waiting.remove(pending)
                if pending.promoted:  # handed the token just as this wait ended: a later wait must block
                    pending.rearm()
                if self._token.holder == me:
                    self._pass_token_locked()
                    spawn = self._count_reader_needed_locked()
            if spawn:
                self._spawn_reader()
            unshield(shielded)

    def _read_for(self, pending: Pending, deadline: float | None) -> bool:
        """Holding the token, read and dispatch messages until ``pending`` is done, ``deadline``
        passes or the connection ends (True). Calls read here run in threads of their own.

        False, without reading, when this thread no longer holds the token: a reader running a
        call that waits here may just have had it handed on by the watchdog, which leaves it
        alone from the moment it is marked as reading (under the lock, with the check)."""
        conn = self.conn
        with self._lock:
            if self._token.holder != threading.get_ident():
                return False
            self._caller_reader = self._token.holder
        try:
            while not pending.done and conn is not None and not conn.closed:
                if deadline is not None and not conn.readable(deadline - time.monotonic()):
                    break
                kind, frame, buffers = conn.recv_message()
                if not conn.dispatch_passive(kind, frame, buffers):
                    self._run_detached(conn, kind, frame, buffers)
        except EOFError:
            if conn is not None:
                conn.close()  # fails every pending call, this one included
        except Exception as exc:  # brine/struct errors, protocol violations: garbage on the wire
            self._drop(exc)
        finally:
            self._caller_reader = 0
        return True

    def _pass_token(self) -> None:
        with self._lock:
            self._pass_token_locked()

    def _pass_token_locked(self) -> bool:
        """Hand the token to the oldest caller still waiting for its reply, else to a reader
        blocked in ``take`` (True), else free it (False). Under the lock; only the holder (or the
        watchdog on behalf of a holder running a call, :meth:`hand_off_if_overdue`) passes it."""
        while self._waiting:
            waiter = self._waiting.pop(0)
            if not waiter.done:
                self._token.transfer(waiter.waiter)
                waiter.signal()  # a promotion: signalled, not done
                return True
        return self._token.give()

    def _run_detached(self, conn: protocol.ErpcConnection, kind: int, frame: transport.Data,
                      buffers: transport.Buffers) -> None:
        """Serve a request that runs code in a new thread (a caller read it)."""

        def serve() -> None:
            _reader.detached = True
            try:
                conn.run_request(kind, frame, buffers)
            except Exception as exc:
                self._drop(exc)

        threading.Thread(target=serve, name=f"link-{self.name}-call", daemon=True).start()

    def resolve(self, seq: int, status: int, data: transport.Data, buffers: transport.Buffers) -> None:
        """The result of call ``seq`` arrived; a result nobody waits for any more (cancelled
        call) is dropped."""
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
        if not self.await_result(pending, timeout):
            self.cancel(seq)
            return False
        return pending.error is None and pending.status == outcome.OK

    def close(self) -> None:
        """Shut the socket down: the serving threads on both ends see EOF and clean up. The link
        counts as closed from now on (new calls on it fail, the node dials afresh)."""
        self.closed = True
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

    def _drop(self, exc: Exception) -> None:
        log.warning("dropped the connection with %s: undecodable data (%s: %s)", self.name, type(exc).__name__, exc)
        self.close()

    # --- calls in (reader threads) ------------------------------------------------------------

    def attach(self, conn: protocol.ErpcConnection) -> None:
        conn.link = self
        self.conn = conn

    def run_reader(self) -> None:
        """Serve the connection in this thread until it closes (the connection's first reader)."""
        self._read(owner=True)

    def _spawn_reader(self) -> None:
        """Start a spare reader; the caller has already counted it in ``_idle_readers``."""
        threading.Thread(target=self._read, args=(False,), name=f"link-{self.name}-reader", daemon=True).start()

    def _read(self, owner: bool) -> None:
        """Reader loop: wait for the token (while no caller wants it), read, run the calls that
        arrive. The owner (the connection's first reader) stays until the connection closes; a
        spare reader whose token was handed on while it ran a call leaves when enough others
        wait to read. The token is passed on whenever this thread leaves holding it."""
        conn = self.conn
        if conn is None:
            return
        me = threading.get_ident()
        seen = self._caller_turns
        counted = not owner  # a spare reader is counted idle by whoever started it
        try:
            while not conn.closed:
                if self._token.holder != me:
                    if not counted and not owner and self._idle_readers >= MAX_IDLE_READERS:
                        return
                    seen = self._wait_for_token(seen, counted)
                    counted = False
                try:
                    request = self._read_until_request(conn)
                except EOFError:
                    break
                except Exception as exc:  # brine/struct errors, protocol violations: garbage on the wire
                    self._drop(exc)
                    break
                if request is None:  # handed the socket to callers
                    seen = -1
                    continue
                try:
                    conn.run_request(*request)
                except Exception as exc:
                    self._drop(exc)
                    break
        finally:
            if self._token.holder == me:
                self._pass_token()
        conn.close()  # idempotent; runs on_disconnect once

    def _wait_for_token(self, seen: int, counted: bool) -> int:
        """Stay out while callers read, then block until this reader holds the token; returns
        the caller turns last seen (see :meth:`_stay_out_while_callers_read`). This reader counts
        as idle meanwhile (``counted``: it already does)."""
        if not counted:
            with self._lock:
                self._idle_readers += 1
        try:
            seen = self._stay_out_while_callers_read(seen)
            self._token.take()
        finally:
            with self._lock:
                self._idle_readers -= 1
        return seen

    def _stay_out_while_callers_read(self, seen: int) -> int:
        """Sleep while callers wait for replies or have finished waiting within CALLER_GRACE
        (``seen`` is the count of finished waits this reader last saw; -1 forces one look)."""
        while True:
            turns = self._caller_turns
            if self._awaiting == 0 and turns == seen:
                return turns
            seen = turns
            time.sleep(CALLER_GRACE)

    def _read_until_request(self, conn: protocol.ErpcConnection) -> tuple[int, transport.Data, transport.Buffers] | None:
        """Holding the token, dispatch messages that run no code until one that does arrives
        (returned, to run in this thread, which keeps the token: see :meth:`_run_here`) or a
        reply was read while callers wait (None: the token goes to them). On an exception the
        token is passed on first."""
        try:
            while True:
                kind, frame, buffers = conn.recv_message()
                if not conn.dispatch_passive(kind, frame, buffers):
                    return kind, frame, buffers
                if kind == protocol.MSG_RESULT and self._awaiting:
                    self._pass_token()
                    return None
        except BaseException:
            self._pass_token()
            raise

    def _run_here(self, ctx: CallContext, run: Callable[[], Callable[[], None] | None]) -> None:
        """Run a call in this thread. A reader thread runs it still holding the token, watched
        by the node's :class:`~pynode.handoff.HandoffWatchdog`, which hands the token on if the
        call takes a while; a detached thread (:meth:`_run_detached`) just runs it."""
        if getattr(_reader, "detached", False):
            outcome = execute(ctx, run)
        else:
            me = threading.get_ident()
            with self._lock:
                self._inline = (me, time.monotonic())
            self.node.handoff.watch()
            try:
                outcome = execute(ctx, run)
            finally:
                with self._lock:
                    if self._inline is not None and self._inline[0] == me:  # not yet another reader's
                        self._inline = None
        if outcome is not None:
            outcome()

    def hand_off_if_overdue(self, now: float, delay: float) -> bool:
        """The watchdog's look (see :mod:`pynode.handoff`): if a reader has run a call for
        ``delay`` seconds holding the token (and is not reading as a caller, in a nested erpc
        call on this connection), pass the token on for it, starting a reader if nobody takes
        it. True while there may be something to do here later (a call too young, or reading)."""
        with self._lock:
            inline = self._inline
            if inline is None or self._token.holder != inline[0]:
                return False
            thread_id, started = inline
            if now - started < delay or self._caller_reader == thread_id:
                return True
            self._pass_token_locked()
            spawn = self._count_reader_needed_locked()
        if spawn:
            self._spawn_reader()
        return False

    def _count_reader_needed_locked(self) -> bool:
        """After the token was passed on: True (and the new reader counted as idle at once, so
        it is started only once) when it is free, no reader waits for it and a reader is busy
        running a call, so that nobody would read the connection; the caller then starts one
        with :meth:`_spawn_reader` (outside the lock)."""
        needed = self._token.free and self._idle_readers == 0 and self._inline is not None
        if needed:
            self._idle_readers += 1
        return needed

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
