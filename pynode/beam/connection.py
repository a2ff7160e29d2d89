"""One Erlang distribution connection after the handshake: packets, ticks, control messages.

Wire format (``erl_dist_protocol.md``, "Protocol between Connected Nodes"; no distribution
header, since pynode offers neither the atom cache nor fragments):

=========  ===========================================================================
bytes      meaning
=========  ===========================================================================
4          ``Length`` (big-endian) of what follows; ``0`` is a *tick* (keep-alive)
1          ``112`` (``'p'``, pass-through)
n          ``ControlMessage``: a versioned term (131 ...), a tuple whose first element is the
           operation (the ``OP_*`` constants below)
m          ``Message`` (only for the operations that carry one): a versioned term
=========  ===========================================================================

Ticks: a connection that has sent nothing for :attr:`Ticker.interval` seconds sends a tick; one
that has received nothing (not even a tick) for ``net_ticktime`` seconds is declared dead and
closed, as Erlang's net_kernel does (``kernel_app.md``: ``net_ticktime``, default 60 s, ticks
every quarter of it). The connection decodes every packet and hands it to its
:class:`SignalHandler`; it knows nothing of processes.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
import time
from typing import Any, Protocol

from pynode import etf
from pynode.beam.handshake import BeamPeer
from pynode.errors import DecodeError

log = logging.getLogger(__name__)

PASS_THROUGH = 112
# Control message operations (erl_dist_protocol.md, "Protocol between Connected Nodes").
OP_LINK = 1  # {1, FromPid, ToPid}
OP_SEND = 2  # {2, Unused, ToPid} + Message
OP_EXIT = 3  # {3, FromPid, ToPid, Reason}
OP_REG_SEND = 6  # {6, FromPid, Unused, ToName} + Message
OP_GROUP_LEADER = 7  # {7, FromPid, ToPid}
OP_EXIT2 = 8  # {8, FromPid, ToPid, Reason}
OP_SEND_TT = 12  # {12, Unused, ToPid, TraceToken} + Message
OP_EXIT_TT = 13  # {13, FromPid, ToPid, TraceToken, Reason}
OP_REG_SEND_TT = 16  # {16, FromPid, Unused, ToName, TraceToken} + Message
OP_EXIT2_TT = 18  # {18, FromPid, ToPid, TraceToken, Reason}
OP_MONITOR_P = 19  # {19, FromPid, ToProc, Ref}
OP_DEMONITOR_P = 20  # {20, FromPid, ToProc, Ref}
OP_MONITOR_P_EXIT = 21  # {21, FromProc, ToPid, Ref, Reason}
OP_SEND_SENDER = 22  # {22, FromPid, ToPid} + Message
OP_SEND_SENDER_TT = 23  # {23, FromPid, ToPid, TraceToken} + Message
OP_PAYLOAD_EXIT = 24  # {24, FromPid, ToPid} + Reason
OP_PAYLOAD_EXIT_TT = 25  # {25, FromPid, ToPid, TraceToken} + Reason
OP_PAYLOAD_EXIT2 = 26  # {26, FromPid, ToPid} + Reason
OP_PAYLOAD_EXIT2_TT = 27  # {27, FromPid, ToPid, TraceToken} + Reason
OP_PAYLOAD_MONITOR_P_EXIT = 28  # {28, FromProc, ToPid, Ref} + Reason
OP_SPAWN_REQUEST = 29  # {29, ReqId, From, GroupLeader, {M, F, Arity}, OptList} + ArgList
OP_SPAWN_REQUEST_TT = 30  # {30, ReqId, From, GroupLeader, {M, F, Arity}, OptList, Token} + ArgList
OP_SPAWN_REPLY = 31  # {31, ReqId, To, Flags, Result}
OP_SPAWN_REPLY_TT = 32  # {32, ReqId, To, Flags, Result, Token}
OP_ALIAS_SEND = 33  # {33, FromPid, Alias} + Message
OP_ALIAS_SEND_TT = 34  # {34, FromPid, Alias, Token} + Message
OP_UNLINK_ID = 35  # {35, Id, FromPid, ToPid}
OP_UNLINK_ID_ACK = 36  # {36, Id, FromPid, ToPid}

# Operations whose control message is followed by a second term.
WITH_MESSAGE = frozenset(
    {
        OP_SEND, OP_REG_SEND, OP_SEND_TT, OP_REG_SEND_TT, OP_SEND_SENDER, OP_SEND_SENDER_TT,
        OP_PAYLOAD_EXIT, OP_PAYLOAD_EXIT_TT, OP_PAYLOAD_EXIT2, OP_PAYLOAD_EXIT2_TT,
        OP_PAYLOAD_MONITOR_P_EXIT, OP_SPAWN_REQUEST, OP_SPAWN_REQUEST_TT, OP_ALIAS_SEND, OP_ALIAS_SEND_TT,
    }
)

TICKTIME_ENV = "PYNODE_NET_TICKTIME"
# Erlang's default net_ticktime (kernel_app.md): a peer silent this long is down.
DEFAULT_TICKTIME = 60.0
# Packets are read in pieces of at most this size, so a forged length allocates nothing that the
# bytes have not filled.
READ_CHUNK = 1 << 20
_LEN = struct.Struct(">I")
_TICK = b"\x00\x00\x00\x00"


def net_ticktime() -> float:
    """``$PYNODE_NET_TICKTIME`` seconds (a positive number), else Erlang's default of 60."""
    raw = os.environ.get(TICKTIME_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_TICKTIME
    except ValueError:
        value = DEFAULT_TICKTIME
    return value if value > 0 else DEFAULT_TICKTIME


class SignalHandler(Protocol):
    """What a connection hands its decoded packets to (the node's BEAM side)."""

    def signal(self, conn: BeamConnection, control: tuple[Any, ...], message: Any) -> None:
        """One control message (a tuple, operation first) and its message (None when the
        operation carries none). Runs in the connection's reader thread."""

    def connection_lost(self, conn: BeamConnection, reason: str) -> None:
        """The connection is gone (closed by either side, silent too long, or garbage)."""


class BeamConnection:
    """The connection with one BEAM peer. ``closed`` goes False -> True once (guarded by
    ``_send_lock``); ``last_sent``/``last_received`` are monotonic seconds written by the sending
    threads and the reader thread respectively."""

    def __init__(self, sock: socket.socket, peer: BeamPeer, local: etf.Local, handler: SignalHandler) -> None:
        self.sock = sock
        self.peer = peer
        self.name = peer.name
        self.local = local
        self.handler = handler
        self.flags = peer.flags
        self.closed = False
        self._send_lock = threading.Lock()
        now = time.monotonic()
        self.last_sent = now
        self.last_received = now

    @property
    def hidden(self) -> bool:
        return self.peer.hidden

    def __repr__(self) -> str:
        return f"<BeamConnection {self.name}{' closed' if self.closed else ''}>"

    # --- sending -------------------------------------------------------------------------------

    def send(self, control: tuple[Any, ...], *message: Any) -> bool:
        """Send a control message (and its message, when given). False when the connection is
        closed (the signal is dropped, as Erlang drops signals to a node that is gone). Raises
        EncodeError when a term has no Erlang form; nothing is sent then."""
        body = bytearray([PASS_THROUGH])
        body += etf.encode(control, self.local)
        for term in message:
            body += etf.encode(term, self.local)
        return self._write(_LEN.pack(len(body)) + body)

    def tick(self) -> bool:
        return self._write(_TICK)

    def _write(self, packet: bytes) -> bool:
        with self._send_lock:
            if self.closed:
                return False
            try:
                self.sock.sendall(packet)
            except OSError as exc:
                log.info("sending to %s failed: %s", self.name, exc)
                self._close_locked()
                return False
            self.last_sent = time.monotonic()
            return True

    # --- receiving -----------------------------------------------------------------------------

    def run_reader(self) -> None:
        """Read and dispatch packets until the connection ends, then tell the handler."""
        reason = "closed"
        try:
            while True:
                (length,) = _LEN.unpack(self._read(4))
                self.last_received = time.monotonic()
                if length == 0:
                    continue  # a tick
                packet = self._read(length)
                self.last_received = time.monotonic()
                control, message = self.decode(packet)
                self.handler.signal(self, control, message)
        except EOFError as exc:
            reason = str(exc) or "closed by peer"
        except DecodeError as exc:
            reason = f"undecodable packet: {exc}"
            log.warning("%s sent an undecodable packet, closing: %s", self.name, exc)
        except Exception as exc:  # a handler bug must not leave a half-dead connection
            reason = f"{type(exc).__name__}: {exc}"
            log.exception("handling a packet from %s failed; closing the connection", self.name)
        finally:
            self.close()
            self.handler.connection_lost(self, reason)

    def decode(self, packet: bytes) -> tuple[tuple[Any, ...], Any]:
        """A packet's control message and message. Raises DecodeError."""
        if not packet or packet[0] != PASS_THROUGH:
            raise DecodeError(f"packet starts with {packet[:1]!r}, not the pass-through byte {PASS_THROUGH}")
        control, pos = etf.decode_from(packet, 1, self.local)
        if not isinstance(control, tuple) or not control or type(control[0]) is not int:
            raise DecodeError(f"control message {control!r:.100} is not a tuple with an operation")
        message = None
        if control[0] in WITH_MESSAGE:
            message, pos = etf.decode_from(packet, pos, self.local)
        if pos != len(packet):
            raise DecodeError(f"{len(packet) - pos} bytes after the terms of operation {control[0]}")
        return control, message

    def _read(self, count: int) -> bytes:
        chunks: list[bytes] = []
        left = count
        while left:
            try:
                chunk = self.sock.recv(min(left, READ_CHUNK))
            except OSError as exc:
                raise EOFError(str(exc)) from exc
            if not chunk:
                raise EOFError("closed by peer")
            chunks.append(chunk)
            left -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # --- ending --------------------------------------------------------------------------------

    def close(self) -> None:
        with self._send_lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Ticker:
    """One thread ticking every BEAM connection of a node: a tick after ``interval`` (a quarter
    of net_ticktime) seconds of sending nothing, and the connection closed after ``ticktime``
    seconds of receiving nothing."""

    def __init__(self, connections: Any, ticktime: float | None = None) -> None:
        self.ticktime = ticktime or net_ticktime()
        self.interval = self.ticktime / 4
        self._connections = connections  # a callable returning the live connections
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beam-ticker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        step = min(1.0, self.interval / 2)
        while not self._stop.wait(step):
            now = time.monotonic()
            for conn in self._connections():
                if now - conn.last_received > self.ticktime:
                    log.warning("%s silent for %.0f s (net_ticktime): connection closed", conn.name, self.ticktime)
                    conn.close()
                elif now - conn.last_sent >= self.interval:
                    conn.tick()

    def stop(self) -> None:
        self._stop.set()
