"""The wire under pynode: rpyc connections without compression or needless copies.

rpyc frames every message (4-byte length, compression flag, the message, ``\\n``). Its stock
socket stream re-slices ``bytes`` on every 64 kB write (quadratic in the message size) and its
channel compresses every frame above 3 kB with zlib. pynode keeps the frame format but never
compresses (array data does not compress and zlib costs more than loopback bandwidth) and moves
frames with ``sendall``/``recv_into`` on memoryviews; pynode's messages carry the pickle raw after
a few fixed fields (:mod:`pynode.protocol`), so a large in-band pickle is not copied either.
A frame's body and its *attachments* (out-of-band buffers, :class:`_Channel`) are bytes here;
what they mean is :mod:`pynode.protocol`'s business, and pickling is :mod:`pynode.payload`'s.
"""

from __future__ import annotations

import logging
import mmap
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import rpyc
from rpyc.core.channel import Channel
from rpyc.core.stream import ClosedFile, SocketStream
from rpyc.utils.server import ThreadedServer

from pynode import bufferpool, limits
from pynode.errors import MessageTooLarge
from pynode.handshake import Authenticator, PeerInfo, peer_address

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

# TCP keepalive: first probe after 15 s of silence, then every 5 s, give up after 9 missed probes.
# Only a backstop for a peer *host* that vanished: a hung peer process (SIGSTOP, a deadlock) still
# has a kernel that answers probes; ticks (pynode.ticks) detect it within net_ticktime. A vanished
# host is declared gone after about 60 s (15 + 5 * 9).
KEEPALIVE_IDLE = 15
KEEPALIVE_INTERVAL = 5
KEEPALIVE_PROBES = 9
# Frame kind (the header byte rpyc uses for its compression flag) of an out-of-band buffer.
ATTACHMENT = 2
# Most attachments one message may have: pickle's out-of-band buffers are of OOB_THRESHOLD (64 KiB)
# or more, so a message within max_message_size has far fewer; a peer sending endless empty
# attachments would otherwise grow a list without bound.
MAX_ATTACHMENTS = 1 << 16
# Frames up to this size are written with one send call (header and body concatenated); larger
# ones are written in three pieces to avoid copying the body.
SMALL_FRAME = 64 * 1024
# Attachments of at least this size (the x86-64 transparent huge page) are received into pooled
# memory advised to use huge pages (pynode.bufferpool). Loopback, 100 MiB: 210-260 ms into a
# bytearray (zero-filled first, then 25,600 page faults), 90-115 ms into a fresh such mapping.
HUGE_BUFFER = 2 * 1024 * 1024
# Receive buffer of a connection: holds many small frames (a call, a result, a message: a few
# hundred bytes) so that each costs one recv; reads of half of it or more bypass it.
RECV_BUFFER = 64 * 1024
# Seconds a thread about to block for the next message busy-polls the socket first (BEAM's
# schedulers do the same before they sleep). On a virtual machine, a thread that sleeps and is
# woken runs its next Python code 2-4x slower (a call's pickling: 9 -> 37 us); a reply or the next
# request of a busy connection usually arrives within this time.
SPIN = 0.0003
# The longest wait one poll() takes (milliseconds, a C int: about 24.8 days); longer waits poll again.
MAX_POLL_MS = 2**31 - 1
_ANONYMOUS_MAPPINGS = hasattr(mmap, "MAP_ANONYMOUS")  # Linux, macOS

# rpyc configuration for every pynode connection: no attribute of anything is reachable (pynode's
# requests do not use rpyc's attribute protocol, see pynode.protocol), nothing is pickled by rpyc,
# and custom exception classes are never imported.
PROTOCOL_CONFIG: dict[str, Any] = {
    "allow_safe_attrs": False,
    "allow_exposed_attrs": False,
    "allow_public_attrs": False,
    "allow_all_attrs": False,
    "allow_getattr": False,
    "allow_setattr": False,
    "allow_delattr": False,
    "allow_pickle": False,
    "import_custom_exceptions": False,
    "instantiate_custom_exceptions": False,
    "include_local_traceback": False,
    "propagate_KeyboardInterrupt_locally": True,
    "close_catchall": True,
    # Only Connection.close waits synchronously (for the CLOSE reply); calls have their own deadlines.
    "sync_request_timeout": 5,
}


class FrameTooLarge(ValueError):
    """A peer announced a frame or attachment (or a message in all) larger than our
    max_message_size: the connection is closed, nothing was allocated for it."""


Buffers = tuple["memoryview | bytearray | bytes | np.ndarray", ...]
"""Out-of-band pickle buffers: memoryviews of the sender's arrays, writable memory at the
receiver (fresh bytearrays, or for large ones ``uint8`` arrays of :mod:`pynode.bufferpool`)."""
Data = bytes | memoryview
"""A frame's body (a pickle, say): ``bytes`` at the sender, a view into the received frame at
the receiver."""

# Bytes a message may take besides its pickle and buffers (message type and fixed fields, see
# pynode.protocol): payload_size counts them so that a payload it accepts always fits.
FRAME_HEAD_ROOM = 16


def payload_size(payload: tuple[Data, Buffers]) -> int:
    """The bytes a message carrying ``payload`` (a pickle and its out-of-band buffers) counts
    against a receiver's max_message_size, FRAME_HEAD_ROOM included."""
    data, buffers = payload
    if not buffers:  # most results: no generator to run on every call
        return FRAME_HEAD_ROOM + len(data)
    return FRAME_HEAD_ROOM + len(data) + sum(memoryview(buf).nbytes for buf in buffers)


# --- streams and channels ----------------------------------------------------------------------


class _Stream(SocketStream):
    """SocketStream reading through a receive buffer and moving large buffers with
    ``sendall``/``recv_into`` (no per-chunk slicing).

    One ``recv`` fills the buffer with as much as the kernel has, so a small frame (header and
    body) costs one system call instead of two; reads of RECV_BUFFER // 2 bytes or more go
    straight into their destination. Only the thread holding the connection's read token reads
    (:mod:`pynode.reading`), so the buffer needs no lock.

    ``received`` (bytes received) and ``writes`` (write calls begun) only grow; the node's ticker
    (:mod:`pynode.ticks`) compares them between its looks: bytes arriving count as life from the
    peer even while one large frame is still being received, which is why they are counted per
    ``recv``, not per frame. Written by the reading thread and the writing threads (under the
    send lock) respectively, read by the ticker without a lock (a stale value only delays it).
    """

    __slots__ = ("_rbuf", "_rview", "_rpos", "_rend", "_poller", "_unread_poller", "received", "writes")

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock)
        self._rbuf = bytearray(RECV_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._rpos = 0  # buffered, unread bytes are _rbuf[_rpos:_rend]
        self._rend = 0
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)
        self._unread_poller = select.poll()  # the ticker's own: one poll object serves one thread
        self._unread_poller.register(sock, select.POLLIN)
        self.received = 0
        self.writes = 0

    def unread(self) -> bool:
        """True when bytes wait in the kernel that nobody has read yet (the ticker asks this of a
        silent connection before declaring its peer down: those bytes are life, read late)."""
        try:
            return bool(self._unread_poller.poll(0))
        except (OSError, ValueError):
            return False

    def readable(self, timeout: float) -> bool:
        """True when a read would not block for its first byte: data is buffered, or the socket
        has data (or EOF, or an error) within ``timeout`` seconds (the first SPIN of them
        busy-polled, see :meth:`_spin`; any length, ``inf`` included)."""
        if self._rend > self._rpos:
            return True
        now = time.perf_counter()
        end = now + max(timeout, 0.0)
        if self._spin(min(end, now + SPIN)):
            return True
        while (left := end - time.perf_counter()) > 0:
            if self._poller.poll(min(left * 1000.0, MAX_POLL_MS)):
                return True
        return False

    def _spin(self, until: float) -> bool:
        """Poll the socket without sleeping until ``time.perf_counter()`` reaches ``until`` (at
        least once); True once it is readable."""
        poll = self._poller.poll
        if poll(0):
            return True
        while time.perf_counter() < until:
            if poll(0):
                return True
        return False

    def read(self, count: int) -> bytearray:
        """``count`` bytes into a fresh bytearray. Raises EOFError when the connection ends."""
        buf = bytearray(count)
        self._read_into(memoryview(buf))
        return buf

    def read_attachment(self, count: int) -> bytearray | np.ndarray:
        """``count`` bytes into writable memory the caller may keep: a fresh bytearray, or for
        HUGE_BUFFER bytes and more a buffer of :data:`pynode.bufferpool.receive_pool` (memory
        in transparent huge pages, recycled once the received data is dropped: a bytearray is
        zero-filled before the data is written into it, and faults its memory in 4 KiB pages).
        Such a buffer is an anonymous mapping: a fresh one commits memory page by page as the
        bytes arrive, so a peer that announces a large message and sends little of it costs
        address space, not memory. Raises EOFError when the connection ends."""
        if count < HUGE_BUFFER or not _ANONYMOUS_MAPPINGS:
            return self.read(count)
        buf = bufferpool.receive_pool.take(count)
        self._read_into(memoryview(buf))
        return buf

    def _read_into(self, view: memoryview) -> None:
        """Fill ``view``: buffered bytes first, then, for RECV_BUFFER // 2 bytes or more, the rest
        straight from the socket; smaller reads go through the buffer."""
        count = view.nbytes
        have = self._rend - self._rpos
        if have < count and count >= RECV_BUFFER // 2:
            view[:have] = self._rview[self._rpos : self._rend]
            self._rpos = self._rend = 0
            self._recv_rest(view, have)
            return
        if have < count:
            self._refill(count)
        view[:] = self._rview[self._rpos : self._rpos + count]
        self._rpos += count

    def _recv_rest(self, view: memoryview, got: int) -> None:
        """Receive straight into ``view[got:]`` until it is full."""
        count = view.nbytes
        while got < count:
            got += self._recv(view[got:])

    def unpack(self, fields: struct.Struct) -> tuple[Any, ...]:
        """Read ``fields.size`` bytes and unpack them, straight from the receive buffer. Raises
        EOFError when the connection ends."""
        size = fields.size
        if self._rend - self._rpos < size:
            self._refill(size)
        values = fields.unpack_from(self._rbuf, self._rpos)
        self._rpos += size
        return values

    def _refill(self, need: int) -> None:
        """Move the unread bytes to the front of the buffer and receive until at least ``need``
        (at most RECV_BUFFER) bytes are buffered."""
        have = self._rend - self._rpos
        self._rview[:have] = bytes(self._rview[self._rpos : self._rend])
        self._rpos, self._rend = 0, have
        while self._rend < need:
            self._rend += self._recv(self._rview[self._rend :])

    def _recv(self, view: memoryview) -> int:
        """One ``recv_into`` (busy-polling for up to SPIN seconds first when nothing has arrived);
        raises EOFError (closing the stream) at the end of the connection. The socket is in
        blocking mode (no Python timeout, which would make even the MSG_DONTWAIT try wait)."""
        try:
            try:
                n = self.sock.recv_into(view, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                self._spin(time.perf_counter() + SPIN)
                n = self.sock.recv_into(view)
        except OSError as exc:
            self.close()
            raise EOFError(exc) from exc
        if n:  # _count's common case, without the call: this runs for every message
            self.received += n
            return n
        return self._count(n)

    def _count(self, n: int) -> int:
        """Account for ``n`` bytes just received (the ticker watches ``received``); 0 is the
        peer's end of the connection: closed here, EOFError."""
        if n == 0:
            self.close()
            raise EOFError("connection closed by peer")
        self.received += n
        return n

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.close()
            raise EOFError(exc) from exc


_FLUSH = len(Channel.FLUSHER)  # the newline after each ordinary frame's body
# An ordinary frame shorter than this, with no attachment before it, is read by recv_frame's
# first lines alone (the loop below them handles attachments and huge frames).
_ONE_SMALL_FRAME = HUGE_BUFFER - _FLUSH


class _Channel(Channel):
    """rpyc's frame format, never compressed, plus *attachment* frames.

    The header's compression byte tells frame kinds apart: ``0`` is an ordinary rpyc frame,
    ``ATTACHMENT`` a raw buffer (no brine, no trailing newline) belonging to the next ordinary frame.
    Attachments are written straight from the sender's memory (a numpy array's buffer) and read
    straight into fresh memory on the receiver, which the unpickled array then uses: no
    copy on either side beyond the kernel's. :meth:`recv_frame` returns a frame with its
    attachments.
    """

    __slots__ = ("max_recv", "max_send")

    def __init__(self, stream: _Stream, max_recv: int = limits.DEFAULT_MAX_MESSAGE_SIZE,
                 max_send: int = limits.DEFAULT_MAX_MESSAGE_SIZE) -> None:
        super().__init__(stream, compress=False)
        self.max_recv = max_recv  # our max_message_size
        self.max_send = max_send  # the peer's, from its hello

    def recv_frame(self) -> tuple[memoryview, Buffers]:
        """The next ordinary frame (a view of its body) and the attachments sent before it.

        Used instead of rpyc's ``recv`` (which pynode connections never call). Raises EOFError
        when the connection is gone or the peer sends a compressed frame, FrameTooLarge (from the
        header, before reading or allocating anything for it) when a frame or an attachment, or
        all of one message's, are larger than ``max_recv``.
        """
        length, kind = self.stream.unpack(self.FRAME_HEADER)
        if kind == 0 and length <= self.max_recv and length < _ONE_SMALL_FRAME:  # most messages
            return memoryview(self.stream.read(length + _FLUSH))[:length], ()
        attachments: list[bytearray | np.ndarray] = []
        total = 0
        while True:
            if attachments:  # the first header was read above
                length, kind = self.stream.unpack(self.FRAME_HEADER)
            total += length
            if total > self.max_recv:
                what = "an attachment" if kind == ATTACHMENT else "a frame"
                raise FrameTooLarge(
                    f"it announced {what} of {length} bytes (message total {total} bytes), more than "
                    f"our max_message_size of {self.max_recv} bytes"
                )
            if kind == ATTACHMENT:
                if len(attachments) >= MAX_ATTACHMENTS:
                    raise FrameTooLarge(f"it sent more than {MAX_ATTACHMENTS} attachments for one message")
                attachments.append(self.stream.read_attachment(length))
                continue
            if kind != 0:
                raise EOFError(f"peer sent a frame of kind {kind}; pynode connections never compress")
            size = length + len(self.FLUSHER)
            frame = self.stream.read(size) if size < HUGE_BUFFER else self.stream.read_attachment(size)
            return memoryview(frame)[:length], tuple(attachments)

    def check_size(self, head: bytes, data: bytes, attachments: Buffers) -> None:
        """Raise MessageTooLarge when the frame ``head + data`` and ``attachments`` would be
        refused by the peer (``max_send``) or cannot be framed (a frame over MAX_FRAME bytes)."""
        if not attachments:  # most messages: no lists to build on every send
            frame = len(head) + len(data)
            if frame <= self.max_send and frame <= limits.MAX_FRAME:
                return
        sizes = [memoryview(buf).nbytes for buf in attachments]
        frame = len(head) + len(data)
        total = frame + sum(sizes)
        if total > self.max_send:
            raise MessageTooLarge(
                f"a message of {total} bytes ({frame} of pickle, {len(sizes)} out-of-band buffers of "
                f"{total - frame}) is larger than the peer's max_message_size of {self.max_send} bytes"
            )
        if len(sizes) > MAX_ATTACHMENTS:
            raise MessageTooLarge(f"a message of {len(sizes)} out-of-band buffers has more than {MAX_ATTACHMENTS}")
        if max(sizes, default=frame) > limits.MAX_FRAME or frame > limits.MAX_FRAME:
            raise MessageTooLarge(f"a buffer of {max(sizes + [frame])} bytes is larger than a frame can be "
                                  f"({limits.MAX_FRAME} bytes)")

    def send(self, head: bytes, data: bytes = b"", attachments: Buffers = ()) -> None:
        """Write ``attachments``, then the frame ``head + data`` (``data`` is not copied when
        large). Callers hold the connection's send lock. Raises MessageTooLarge, before writing
        anything, when the peer would refuse the message (:meth:`check_size`)."""
        if attachments or len(data) > SMALL_FRAME:
            self.check_size(head, data, attachments)
        for buf in attachments:
            self.stream.write(self.FRAME_HEADER.pack(memoryview(buf).nbytes, ATTACHMENT))
            self.stream.write(buf)
        header = self.FRAME_HEADER.pack(len(head) + len(data), 0)
        if len(data) <= SMALL_FRAME:
            self.stream.write(b"".join((header, head, data, self.FLUSHER)))
        else:
            self.stream.write(header + head)
            self.stream.write(data)
            self.stream.write(self.FLUSHER)


# --- connections -------------------------------------------------------------------------------


def tune(sock: socket.socket) -> None:
    """Disable Nagle's algorithm (calls are small request/response pairs) and enable TCP
    keepalive, a backstop under the node's ticks (:mod:`pynode.ticks`) for a peer host that
    vanished without closing (power loss, partition)."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the OS defaults apply
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_PROBES)


def dial(host: str, port: int, timeout: float, source: str | None = None) -> socket.socket:
    """Open a TCP connection (blocking once connected), from the address ``source`` when given (a
    node dials from its own address, so that peers see who it is, e.g. ``127.0.1.9`` rather than
    ``127.0.0.1``). Raises ``OSError`` on failure."""
    sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0) if source else None)
    tune(sock)
    return sock


def wrap(sock: socket.socket, service: rpyc.Service, peer: PeerInfo,
         max_message_size: int = limits.DEFAULT_MAX_MESSAGE_SIZE) -> rpyc.Connection:
    """Turn an authenticated socket into an rpyc connection serving ``service``; messages larger
    than ``max_message_size`` (ours) are refused from their header, and none larger than the
    peer's is sent."""
    stream = _TLSStream(sock) if isinstance(sock, ssl.SSLSocket) else _Stream(sock)
    config = dict(PROTOCOL_CONFIG, credentials=peer, logger=log)
    return service._connect(_Channel(stream, max_message_size, peer.max_message_size), config)


def shutdown(sock: socket.socket) -> None:
    """Shut both directions of ``sock`` down (threads blocked reading it see EOF); never raises.

    A TLS socket is shut down underneath its TLS layer: ``SSLSocket.shutdown`` would first drop
    the TLS state, and a thread sending at that moment would write its bytes in clear text."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _TLSStream(_Stream):
    """:class:`_Stream` over a TLS socket: data already decrypted by the TLS layer counts as
    readable (the socket itself may have nothing left), and reads take no flags (``SSLSocket``
    refuses MSG_DONTWAIT; a read that finds the socket readable waits only for the rest of a
    TLS record)."""

    __slots__ = ()

    def close(self) -> None:
        """Like SocketStream's, but shut down underneath the TLS layer (see :func:`shutdown`)."""
        if not self.closed:
            shutdown(self.sock)
        self.sock.close()
        self.sock = ClosedFile

    def readable(self, timeout: float) -> bool:
        if self._rend > self._rpos or self.sock.pending():
            return True
        return super().readable(timeout)

    def _recv_rest(self, view: memoryview, got: int) -> None:
        """The bulk of a large frame or attachment: one TLS record (at most 16 KiB) per read, so
        the loop is kept tight (no busy-polling between records: on a busy machine that takes
        the CPU the sender needs to encrypt the next ones). 100 MiB between two threads on
        loopback, best of 3, load 11 on 2 cores: 224-264 ms, against 239-319 ms through
        :meth:`_recv` (plaintext: 65-116 ms)."""
        count = view.nbytes
        read = self.sock.read
        try:
            while got < count:
                n = read(count - got, view[got:])
                if n == 0:
                    raise EOFError("connection closed by peer")
                got += n
                self.received += n
        except (OSError, ValueError, EOFError) as exc:
            self.close()
            raise EOFError(exc) from exc

    def _recv(self, view: memoryview) -> int:
        try:
            if not self.sock.pending():
                self._spin(time.perf_counter() + SPIN)
            n = self.sock.recv_into(view)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError; ValueError: closed
            self.close()
            raise EOFError(exc) from exc
        return self._count(n)


ConnectionHandler = Callable[[socket.socket, PeerInfo], None]
"""Takes over an authenticated socket and serves it until the connection closes."""


class Listener(ThreadedServer):
    """rpyc's threaded server with the pynode handshake as its authenticator.

    Each accepted socket gets its own thread: the handshake runs there (so a slow or hostile peer
    holds up nobody else), then ``handler`` serves the connection in that thread until it closes;
    rpyc closes the socket afterwards. At most ``handshake_slots`` connections are in their
    handshake at once: one accepted while all slots are taken is closed at once, before a thread
    is started for it (and logged, at most once per LOG_EVERY seconds).
    """

    # Seconds between two log lines about connections refused for want of a handshake slot.
    LOG_EVERY = 5.0

    def __init__(self, host: str, port: int, authenticator: Authenticator, handler: ConnectionHandler,
                 handshake_slots: int = limits.DEFAULT_HANDSHAKE_SLOTS) -> None:
        super().__init__(
            rpyc.VoidService,
            hostname=host,
            port=port,
            authenticator=self._authenticate,
            protocol_config=PROTOCOL_CONFIG,
            logger=log,
        )
        self._authenticator = authenticator
        self._handler = handler
        self.handshake_slots = handshake_slots
        self._slots = threading.BoundedSemaphore(handshake_slots)
        self.refused_for_slots = 0  # connections closed for want of a slot (for tests and logs)
        self._last_slot_log = 0.0
        # Listen now, not when start() runs in its thread: a peer (or a test) may dial as soon as
        # the constructor returns, and would otherwise be refused until that thread gets a turn.
        self._listen()

    def _accept_method(self, sock: socket.socket) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused_for_slots += 1
            now = time.monotonic()
            if now - self._last_slot_log >= self.LOG_EVERY:
                self._last_slot_log = now
                log.warning("%s: all %d handshake slots are taken: closed a connection from %s (%d so far)",
                            self._authenticator.local, self.handshake_slots, peer_address(sock), self.refused_for_slots)
            self.clients.discard(sock)
            sock.close()
            return
        try:
            super()._accept_method(sock)
        except BaseException:  # the thread could not be started
            self._slots.release()
            self.clients.discard(sock)
            sock.close()
            raise

    def _authenticate(self, sock: socket.socket) -> tuple[socket.socket, PeerInfo]:
        """The handshake, holding a slot taken by :meth:`_accept_method` until it ends."""
        try:
            return self._authenticator(sock)
        finally:
            self._slots.release()

    def _serve_client(self, sock: socket.socket, credentials: PeerInfo) -> None:
        tune(sock)
        try:
            self._handler(sock, credentials)
        finally:
            if isinstance(sock, ssl.SSLSocket):  # rpyc closes the plain socket, detached by TLS
                shutdown(sock)
                sock.close()
