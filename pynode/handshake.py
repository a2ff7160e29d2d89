"""The connection handshake: mutual proof of the cookie, before anything else is parsed.

It runs before rpyc parses a single byte (on the accepting side it is rpyc's *authenticator* hook),
so a peer that does not know the cookie never gets anything decoded, let alone unpickled.

Wire format (all integers big-endian), modelled on Erlang's distribution handshake
(``erts/doc/src/erl_dist_protocol.xml``): the initiator proves first, so an unauthenticated
stranger never obtains a proof it could attack offline.

1. initiator -> acceptor  ``hello_i``
2. acceptor -> initiator  ``hello_a``, where a hello is
   ``MAGIC | VERSION:u8 | flags:u8 | max_message_size:u64 | len:u16 | node name``
   (flags: FLAG_HIDDEN, FLAG_TLS; ``max_message_size``: the largest message the sender of the
   hello accepts, see :mod:`pynode.limits`). When one side speaks TLS and the other does not,
   both stop here, each with a message saying which side speaks TLS.
3. with TLS on both sides: a TLS 1.3 handshake on the same socket (the initiator is the client;
   both present certificates signed by the cluster's CA, :mod:`pynode.tls`); steps 4-6 and
   everything after them travel inside it
4. acceptor -> initiator  ``challenge_a[32]``
5. initiator -> acceptor  ``challenge_i[32] | proof_i[32]``
6. acceptor -> initiator  ``STATUS_OK | proof_a[32]``  or ``STATUS_REFUSED`` and close

``proof_x = HMAC-SHA256(cookie, DOMAIN | role_x | challenge_a | challenge_i | hello_i | hello_a
| binding)``: both fresh challenges (no replay), both hellos (no relay to a third node; names,
flags and limits are covered, so a man in the middle cannot change what was announced in clear
text), the role (a proof cannot be reflected back) and, with TLS, the TLS channel's binding
(``tls-unique``: the first Finished message of its handshake, the same at both ends; empty
without TLS), so that someone holding a cluster certificate but not the cookie cannot sit between
two nodes, terminate TLS with each and relay their proofs from one TLS session into the other. Proofs are compared with ``hmac.compare_digest``. The
cookie itself never crosses the wire. The whole handshake must finish within HANDSHAKE_TIMEOUT
seconds; every read is bounded (a hello is at most HELLO_MAX bytes), and nothing received is
decoded but the fixed fields and the UTF-8 name.

Each side picks the cookie for the other's name (``Node.set_cookie(peer, cookie)``), else its own.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import NamedTuple

from rpyc.utils.authenticators import AuthenticationError

from pynode import limits, names
from pynode.errors import BadNodeName, HandshakeError

log = logging.getLogger(__name__)

MAGIC = b"PYND"
VERSION = 2  # 2: hellos carry max_message_size and FLAG_TLS; proofs cover both hellos
DOMAIN = b"pynode-handshake-v2"
ROLE_INITIATOR = b"I"
ROLE_ACCEPTOR = b"A"
# 256-bit challenges, as many bits as the HMAC-SHA256 output.
CHALLENGE_BYTES = 32
PROOF_BYTES = hashlib.sha256().digest_size
STATUS_OK = b"\x01"
STATUS_REFUSED = b"\x00"
FLAG_HIDDEN = 0x01
FLAG_TLS = 0x02
# alive (255) + '@' + host (253): the longest name names.parse accepts.
MAX_NAME_BYTES = names.MAX_ALIVE_LEN + 1 + names.MAX_HOST_LEN
# A peer that does not finish the whole handshake within this many seconds is dropped (Erlang's
# net_setuptime defaults to 7 s; we are on loopback or a LAN).
HANDSHAKE_TIMEOUT = 5.0

_HELLO = struct.Struct("!4sBBQH")
HELLO_MAX = _HELLO.size + MAX_NAME_BYTES


class PeerInfo(NamedTuple):
    """What the handshake established about the other side."""

    name: str
    hidden: bool
    max_message_size: int = limits.DEFAULT_MAX_MESSAGE_SIZE  # the largest message it accepts
    tls: bool = False  # the connection runs inside TLS


class Hello(NamedTuple):
    """A decoded hello (the raw bytes go into the proofs)."""

    name: str
    hidden: bool
    tls: bool
    max_message_size: int
    raw: bytes


CookieFor = Callable[[str], str]
"""Maps a peer's node name to the cookie to use with it."""


def proof(cookie: str, role: bytes, challenge_a: bytes, challenge_i: bytes, hello_i: bytes, hello_a: bytes,
          binding: bytes = b"") -> bytes:
    """The HMAC-SHA256 proof of ``cookie`` for one role of one handshake (the hellos are the raw
    bytes each side sent: each is self-delimiting, the name's length being in it; ``binding`` the
    TLS channel binding, last and of fixed length for a given TLS version)."""
    msg = b"".join((DOMAIN, role, challenge_a, challenge_i, hello_i, hello_a, binding))
    return hmac.new(cookie.encode("utf-8"), msg, hashlib.sha256).digest()


def initiate(
    sock: socket.socket,
    local: str,
    expected_peer: str,
    cookie: str,
    *,
    hidden: bool,
    max_message_size: int = limits.DEFAULT_MAX_MESSAGE_SIZE,
    tls: ssl.SSLContext | None = None,
) -> tuple[socket.socket, PeerInfo]:
    """Run the initiator's side on a freshly connected socket; returns the socket to use from now
    on (``sock`` itself, or with ``tls`` (a client context) the TLS socket wrapping it) and the peer.

    Raises :class:`HandshakeError` when the peer is not a pynode node, is not ``expected_peer``,
    speaks TLS when we do not or the other way round, fails the TLS handshake (its certificate
    is not signed by our CA, or ours not by its), refuses our cookie, fails to prove its own, or
    is too slow. The socket is left to the caller to close, except a TLS socket made here.
    """
    deadline = _Deadline(sock)
    mine = _hello(local, hidden, max_message_size, tls is not None)
    sock.sendall(mine)
    peer = _read_hello(sock, expected_peer, deadline)
    if peer.name != expected_peer:
        raise HandshakeError(f"connected to {expected_peer}'s port but the node there is {peer.name}")
    _check_tls(peer, tls is not None, peer.name)
    conn = _start_tls(sock, tls, peer.name, deadline, server_side=False)
    try:
        binding = _binding(conn)
        challenge_a = _recv_exact(conn, CHALLENGE_BYTES, peer.name, deadline)
        challenge_i = secrets.token_bytes(CHALLENGE_BYTES)
        conn.sendall(challenge_i + proof(cookie, ROLE_INITIATOR, challenge_a, challenge_i, mine, peer.raw, binding))
        status = _recv_exact(conn, 1, peer.name, deadline, eof_means="it refused our cookie")
        if status != STATUS_OK:
            raise HandshakeError(f"{peer.name} refused our cookie")
        theirs = _recv_exact(conn, PROOF_BYTES, peer.name, deadline)
        if not hmac.compare_digest(theirs, proof(cookie, ROLE_ACCEPTOR, challenge_a, challenge_i, mine, peer.raw,
                                                 binding)):
            raise HandshakeError(f"{peer.name} failed to prove it knows our cookie")
        deadline.done(conn)
    except BaseException:
        if conn is not sock:
            conn.close()
        raise
    return conn, PeerInfo(peer.name, peer.hidden, peer.max_message_size, tls is not None)


def accept(
    sock: socket.socket,
    local: str,
    cookie_for: CookieFor,
    *,
    hidden: bool,
    max_message_size: int = limits.DEFAULT_MAX_MESSAGE_SIZE,
    tls: ssl.SSLContext | None = None,
) -> tuple[socket.socket, PeerInfo]:
    """Run the acceptor's side on a freshly accepted socket; returns the socket to use from now on
    (``sock``, or with ``tls`` (a server context) the TLS socket wrapping it) and the peer.

    Raises :class:`HandshakeError` when the bytes are not a pynode hello (garbage, a pickle, an
    HTTP request...), the peer's name is malformed, it speaks TLS when we do not or the other way
    round (it gets our hello first, so it can say so too), fails the TLS handshake, its proof is
    wrong, or it is too slow. On a wrong proof the peer is told it was refused before the socket
    is closed by the caller.
    """
    where = peer_address(sock)
    deadline = _Deadline(sock)
    peer = _read_hello(sock, where, deadline)
    cookie = cookie_for(peer.name)
    mine = _hello(local, hidden, max_message_size, tls is not None)
    if tls is None and not peer.tls:  # plain: hello and challenge in one segment
        challenge_a = secrets.token_bytes(CHALLENGE_BYTES)
        sock.sendall(mine + challenge_a)
        conn = sock
    else:
        sock.sendall(mine)
        _check_tls(peer, tls is not None, f"{peer.name} (from {where})")
        conn = _start_tls(sock, tls, f"{peer.name} (from {where})", deadline, server_side=True)
        challenge_a = secrets.token_bytes(CHALLENGE_BYTES)
    try:
        binding = _binding(conn)
        if conn is not sock:
            conn.sendall(challenge_a)
        reply = _recv_exact(conn, CHALLENGE_BYTES + PROOF_BYTES, peer.name, deadline)
        challenge_i, theirs = reply[:CHALLENGE_BYTES], reply[CHALLENGE_BYTES:]
        expected = proof(cookie, ROLE_INITIATOR, challenge_a, challenge_i, peer.raw, mine, binding)
        if not hmac.compare_digest(theirs, expected):
            _send_quietly(conn, STATUS_REFUSED)
            raise HandshakeError(f"{peer.name} (from {where}) failed to prove the cookie")
        conn.sendall(STATUS_OK + proof(cookie, ROLE_ACCEPTOR, challenge_a, challenge_i, peer.raw, mine, binding))
        deadline.done(conn)
    except BaseException:
        if conn is not sock:
            conn.close()
        raise
    return conn, PeerInfo(peer.name, peer.hidden, peer.max_message_size, tls is not None)


OtherProtocol = Callable[[socket.socket, bytes], object]
"""Given an accepted socket and its first bytes (already read, and served again by the socket's
``recv_into``) that are not pynode's ``MAGIC``: run that protocol's handshake and return its
credentials, or None when the bytes are no protocol it knows. Raises HandshakeError or OSError
when its handshake fails."""


class Authenticator:
    """rpyc authenticator running :func:`accept`; credentials are the :class:`PeerInfo`.

    With ``other`` (the Erlang distribution, :mod:`pynode.beam`), a connection whose first four
    bytes are not ``MAGIC`` is handed to it instead; its credentials are whatever it returns."""

    def __init__(
        self,
        local: str,
        cookie_for: CookieFor,
        *,
        hidden: bool,
        max_message_size: int = limits.DEFAULT_MAX_MESSAGE_SIZE,
        tls: ssl.SSLContext | None = None,
        other: OtherProtocol | None = None,
    ) -> None:
        self.local = local
        self.cookie_for = cookie_for
        self.hidden = hidden
        self.max_message_size = max_message_size
        self.tls = tls
        self.other = other

    def __call__(self, sock: socket.socket) -> tuple[socket.socket, object]:
        try:
            if self.other is None:
                return accept(
                    sock, self.local, self.cookie_for, hidden=self.hidden, max_message_size=self.max_message_size,
                    tls=self.tls,
                )
            first = _read_first(sock, len(MAGIC))
            replay: socket.socket = _Replay(sock, first)  # type: ignore[assignment]
            if first != MAGIC:
                credentials = self.other(replay, first)
                if credentials is not None:
                    return sock, credentials
            conn, info = accept(
                replay, self.local, self.cookie_for, hidden=self.hidden, max_message_size=self.max_message_size,
                tls=self.tls,
            )
            return (sock if conn is replay else conn), info
        except (HandshakeError, OSError) as exc:
            log.warning("%s: refused a connection: %s", self.local, exc)
            raise AuthenticationError(str(exc)) from exc


def _read_first(sock: socket.socket, n: int) -> bytes:
    """The first ``n`` bytes the peer sends (fewer if it closes first)."""
    got = b""
    deadline = _Deadline(sock)
    while len(got) < n:
        try:
            deadline.arm(sock)
            chunk = sock.recv(n - len(got))
        except (TimeoutError, socket.timeout) as exc:
            raise HandshakeError(f"{peer_address(sock)} sent nothing within {HANDSHAKE_TIMEOUT} s") from exc
        if not chunk:
            break
        got += chunk
    return got


class _Replay:
    """An accepted socket whose first bytes were read to tell the protocols apart: ``recv_into``
    serves them again before reading on; everything else is the socket's. (A ``MSG_PEEK`` would
    avoid this, but on Linux a peeked connection's later round trips were measured 30x slower:
    22 -> 660 us per call.)"""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self._sock = sock
        self._prefix = prefix

    def recv_into(self, view: memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            count = min(len(view), len(self._prefix))
            view[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._sock.recv_into(view)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)

    @property
    def raw(self) -> socket.socket:
        """The socket itself (TLS wraps it once the replayed bytes are consumed)."""
        return self._sock


def _hello(name: str, hidden: bool, max_message_size: int = limits.DEFAULT_MAX_MESSAGE_SIZE, tls: bool = False) -> bytes:
    raw = name.encode()
    flags = (FLAG_HIDDEN if hidden else 0) | (FLAG_TLS if tls else 0)
    return _HELLO.pack(MAGIC, VERSION, flags, max_message_size, len(raw)) + raw


def _read_hello(sock: socket.socket, where: str, deadline: _Deadline) -> Hello:
    head = _recv_exact(sock, _HELLO.size, where, deadline)
    magic, version, flags, max_message_size, length = _HELLO.unpack(head)
    if magic != MAGIC:
        raise HandshakeError(f"{where} is not speaking the pynode protocol (first bytes {magic!r})")
    if version != VERSION:
        raise HandshakeError(f"{where} speaks pynode handshake version {version}, we speak {VERSION}")
    if not 0 < length <= MAX_NAME_BYTES:
        raise HandshakeError(f"{where} sent a node name of {length} bytes")
    if not limits.MIN_MESSAGE_SIZE <= max_message_size <= limits.MAX_MESSAGE_SIZE:
        raise HandshakeError(f"{where} announced a max_message_size of {max_message_size} bytes")
    raw = _recv_exact(sock, length, where, deadline)
    try:
        name = str(names.parse(raw.decode()))
    except (UnicodeDecodeError, BadNodeName) as exc:
        raise HandshakeError(f"{where} sent a malformed node name {raw!r}") from exc
    return Hello(name, bool(flags & FLAG_HIDDEN), bool(flags & FLAG_TLS), max_message_size, head + raw)


def _check_tls(peer: Hello, ours: bool, who: str) -> None:
    if peer.tls and not ours:
        raise HandshakeError(f"peer {who} speaks TLS, we do not (start this node with TLS, see `pynode tls init`)")
    if ours and not peer.tls:
        raise HandshakeError(f"peer {who} does not speak TLS, we do (it must be started with TLS too)")


def _start_tls(sock: socket.socket, tls: ssl.SSLContext | None, who: str, deadline: _Deadline,
               server_side: bool) -> socket.socket:
    """``sock`` itself without TLS; else the TLS socket wrapping it, after a TLS handshake within
    the handshake deadline (certificate errors raise HandshakeError)."""
    if tls is None:
        return sock
    sock = getattr(sock, "raw", sock)  # an accepted socket whose first bytes were replayed (_Replay)
    try:
        deadline.arm(sock)
        return tls.wrap_socket(sock, server_side=server_side, do_handshake_on_connect=True)
    except (TimeoutError, socket.timeout) as exc:
        raise HandshakeError(f"TLS handshake with {who} timed out after {HANDSHAKE_TIMEOUT} s") from exc
    except ssl.SSLError as exc:
        raise HandshakeError(f"TLS handshake with {who} failed: {exc.reason or exc}") from exc
    except OSError as exc:
        raise HandshakeError(f"TLS handshake with {who} failed: {exc}") from exc


def _binding(sock: socket.socket) -> bytes:
    """The TLS channel binding of ``sock`` (b"" for a plain socket). Raises HandshakeError when a
    TLS socket has none (an ssl build without tls-unique: the proofs could not be bound)."""
    if not isinstance(sock, ssl.SSLSocket):
        return b""
    binding = sock.get_channel_binding("tls-unique")
    if not binding:
        raise HandshakeError("this ssl module gives no TLS channel binding; refusing to run the handshake unbound")
    return binding


def _recv_exact(sock: socket.socket, n: int, where: str, deadline: _Deadline,
                eof_means: str = "it closed the connection") -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            deadline.arm(sock)
            k = sock.recv_into(view[got:])
        except (TimeoutError, socket.timeout) as exc:
            raise HandshakeError(f"handshake with {where} timed out after {HANDSHAKE_TIMEOUT} s") from exc
        except ssl.SSLError as exc:
            raise HandshakeError(f"handshake with {where} failed inside TLS: {exc.reason or exc}") from exc
        if k == 0:
            raise HandshakeError(f"handshake with {where} failed: {eof_means}")
        got += k
    return bytes(buf)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def peer_address(sock: socket.socket) -> str:
    """``host:port`` of the peer of ``sock``, for messages ("an unknown address" once it is gone)."""
    try:
        address = sock.getpeername()
    except OSError:
        return "an unknown address"
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return repr(address)


class _Deadline:
    """The whole handshake's deadline, HANDSHAKE_TIMEOUT seconds from its start: every blocking
    step waits at most what is left of it (a peer trickling one byte at a time gets no more time
    than a silent one). :meth:`done` restores blocking mode on the final socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.end = time.monotonic() + HANDSHAKE_TIMEOUT
        self.arm(sock)

    def arm(self, sock: socket.socket) -> None:
        """Set ``sock``'s timeout to what is left (raises socket.timeout at once when nothing is)."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise socket.timeout("handshake deadline passed")
        sock.settimeout(left)

    @staticmethod
    def done(sock: socket.socket) -> None:
        try:
            sock.settimeout(None)
        except OSError:
            pass
