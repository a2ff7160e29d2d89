"""The connection handshake: mutual proof of the cookie on the raw socket.

It runs before rpyc parses a single byte (on the accepting side it is rpyc's *authenticator* hook),
so a peer that does not know the cookie never gets anything decoded, let alone unpickled.

Wire format (all integers big-endian), modelled on Erlang's distribution handshake
(``erts/doc/src/erl_dist_protocol.xml``): the initiator proves first, so an unauthenticated
stranger never obtains a proof it could attack offline.

1. initiator -> acceptor  ``MAGIC | VERSION | flags:u8 | len:u16 | initiator name``
2. acceptor -> initiator  ``MAGIC | VERSION | flags:u8 | len:u16 | acceptor name | challenge_a[32]``
3. initiator -> acceptor  ``challenge_i[32] | proof_i[32]``
4. acceptor -> initiator  ``STATUS_OK | proof_a[32]``  or ``STATUS_REFUSED`` and close

``proof_x = HMAC-SHA256(cookie, DOMAIN | role_x | challenge_a | challenge_i | len:u16 | initiator
name | len:u16 | acceptor name)``: both fresh challenges (no replay), both names (no relay to a
third node) and the role (a proof cannot be reflected back). Proofs are compared with
``hmac.compare_digest``. The cookie itself never crosses the wire.

Each side picks the cookie for the other's name (``Node.set_cookie(peer, cookie)``), else its own.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import socket
import struct
from collections.abc import Callable
from typing import NamedTuple

from rpyc.utils.authenticators import AuthenticationError

from pynode import names
from pynode.errors import BadNodeName, HandshakeError

log = logging.getLogger(__name__)

MAGIC = b"PYND"
VERSION = 1
DOMAIN = b"pynode-handshake-v1"
ROLE_INITIATOR = b"I"
ROLE_ACCEPTOR = b"A"
# 256-bit challenges, as many bits as the HMAC-SHA256 output.
CHALLENGE_BYTES = 32
PROOF_BYTES = hashlib.sha256().digest_size
STATUS_OK = b"\x01"
STATUS_REFUSED = b"\x00"
FLAG_HIDDEN = 0x01
# alive (255) + '@' + host (253): the longest name names.parse accepts.
MAX_NAME_BYTES = names.MAX_ALIVE_LEN + 1 + names.MAX_HOST_LEN
# A peer that does not finish the handshake within this many seconds is dropped (Erlang's
# net_setuptime defaults to 7 s; we are on loopback or a LAN).
HANDSHAKE_TIMEOUT = 5.0

_HELLO = struct.Struct("!4sBBH")


class PeerInfo(NamedTuple):
    """What the handshake established about the other side."""

    name: str
    hidden: bool


CookieFor = Callable[[str], str]
"""Maps a peer's node name to the cookie to use with it."""


def proof(cookie: str, role: bytes, challenge_a: bytes, challenge_i: bytes, initiator: str, acceptor: str) -> bytes:
    """The HMAC-SHA256 proof of ``cookie`` for one role of one handshake."""
    ini, acc = initiator.encode(), acceptor.encode()
    msg = b"".join(
        (DOMAIN, role, challenge_a, challenge_i, struct.pack("!H", len(ini)), ini, struct.pack("!H", len(acc)), acc)
    )
    return hmac.new(cookie.encode("utf-8"), msg, hashlib.sha256).digest()


def initiate(sock: socket.socket, local: str, expected_peer: str, cookie: str, *, hidden: bool) -> PeerInfo:
    """Run the initiator's side on a freshly connected socket.

    Raises :class:`HandshakeError` when the peer is not a pynode node, is not ``expected_peer``,
    refuses our cookie, fails to prove its own, or is too slow.
    """
    with _deadline(sock):
        sock.sendall(_hello(local, hidden))
        peer, peer_hidden = _read_hello(sock, expected_peer)
        if peer != expected_peer:
            raise HandshakeError(f"connected to {expected_peer}'s port but the node there is {peer}")
        challenge_a = _recv_exact(sock, CHALLENGE_BYTES, expected_peer)
        challenge_i = secrets.token_bytes(CHALLENGE_BYTES)
        mine = proof(cookie, ROLE_INITIATOR, challenge_a, challenge_i, local, peer)
        sock.sendall(challenge_i + mine)
        status = _recv_exact(sock, 1, peer, eof_means="it refused our cookie")
        if status != STATUS_OK:
            raise HandshakeError(f"{peer} refused our cookie")
        theirs = _recv_exact(sock, PROOF_BYTES, peer)
        expected = proof(cookie, ROLE_ACCEPTOR, challenge_a, challenge_i, local, peer)
        if not hmac.compare_digest(theirs, expected):
            raise HandshakeError(f"{peer} failed to prove it knows our cookie")
    return PeerInfo(peer, peer_hidden)


def accept(sock: socket.socket, local: str, cookie_for: CookieFor, *, hidden: bool) -> PeerInfo:
    """Run the acceptor's side on a freshly accepted socket.

    Raises :class:`HandshakeError` when the bytes are not a pynode hello (garbage, a pickle, an
    HTTP request...), the peer's name is malformed, its proof is wrong, or it is too slow. On a
    wrong proof the peer is told it was refused before the socket is closed by the caller.
    """
    where = _peer_address(sock)
    with _deadline(sock):
        peer, peer_hidden = _read_hello(sock, where)
        cookie = cookie_for(peer)
        challenge_a = secrets.token_bytes(CHALLENGE_BYTES)
        sock.sendall(_hello(local, hidden) + challenge_a)
        reply = _recv_exact(sock, CHALLENGE_BYTES + PROOF_BYTES, peer)
        challenge_i, theirs = reply[:CHALLENGE_BYTES], reply[CHALLENGE_BYTES:]
        expected = proof(cookie, ROLE_INITIATOR, challenge_a, challenge_i, peer, local)
        if not hmac.compare_digest(theirs, expected):
            _send_quietly(sock, STATUS_REFUSED)
            raise HandshakeError(f"{peer} (from {where}) failed to prove the cookie")
        sock.sendall(STATUS_OK + proof(cookie, ROLE_ACCEPTOR, challenge_a, challenge_i, peer, local))
    return PeerInfo(peer, peer_hidden)


OtherProtocol = Callable[[socket.socket, bytes], object]
"""Given an accepted socket and its first bytes (already read, and served again by the socket's
``recv_into``) that are not pynode's ``MAGIC``: run that protocol's handshake and return its
credentials, or None when the bytes are no protocol it knows. Raises HandshakeError or OSError
when its handshake fails."""


class Authenticator:
    """rpyc authenticator running :func:`accept`; credentials are the :class:`PeerInfo`.

    With ``other`` (the Erlang distribution, :mod:`pynode.beam`), a connection whose first four
    bytes are not ``MAGIC`` is handed to it instead; its credentials are whatever it returns."""

    def __init__(self, local: str, cookie_for: CookieFor, *, hidden: bool, other: OtherProtocol | None = None) -> None:
        self.local = local
        self.cookie_for = cookie_for
        self.hidden = hidden
        self.other = other

    def __call__(self, sock: socket.socket) -> tuple[socket.socket, object]:
        try:
            if self.other is None:
                return sock, accept(sock, self.local, self.cookie_for, hidden=self.hidden)
            first = _read_first(sock, len(MAGIC))
            replay: socket.socket = _Replay(sock, first)  # type: ignore[assignment]
            if first != MAGIC:
                credentials = self.other(replay, first)
                if credentials is not None:
                    return sock, credentials
            return sock, accept(replay, self.local, self.cookie_for, hidden=self.hidden)
        except (HandshakeError, OSError) as exc:
            log.warning("%s: refused a connection: %s", self.local, exc)
            raise AuthenticationError(str(exc)) from exc


def _read_first(sock: socket.socket, n: int) -> bytes:
    """The first ``n`` bytes the peer sends (fewer if it closes first)."""
    got = b""
    with _deadline(sock):
        while len(got) < n:
            try:
                chunk = sock.recv(n - len(got))
            except TimeoutError as exc:
                raise HandshakeError(f"{_peer_address(sock)} sent nothing within {HANDSHAKE_TIMEOUT} s") from exc
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


def _hello(name: str, hidden: bool) -> bytes:
    raw = name.encode()
    return _HELLO.pack(MAGIC, VERSION, FLAG_HIDDEN if hidden else 0, len(raw)) + raw


def _read_hello(sock: socket.socket, where: str) -> tuple[str, bool]:
    magic, version, flags, length = _HELLO.unpack(_recv_exact(sock, _HELLO.size, where))
    if magic != MAGIC:
        raise HandshakeError(f"{where} is not speaking the pynode protocol (first bytes {magic!r})")
    if version != VERSION:
        raise HandshakeError(f"{where} speaks pynode handshake version {version}, we speak {VERSION}")
    if not 0 < length <= MAX_NAME_BYTES:
        raise HandshakeError(f"{where} sent a node name of {length} bytes")
    raw = _recv_exact(sock, length, where)
    try:
        name = str(names.parse(raw.decode()))
    except (UnicodeDecodeError, BadNodeName) as exc:
        raise HandshakeError(f"{where} sent a malformed node name {raw!r}") from exc
    return name, bool(flags & FLAG_HIDDEN)


def _recv_exact(sock: socket.socket, n: int, where: str, eof_means: str = "it closed the connection") -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            k = sock.recv_into(view[got:])
        except TimeoutError as exc:
            raise HandshakeError(f"handshake with {where} timed out after {HANDSHAKE_TIMEOUT} s") from exc
        if k == 0:
            raise HandshakeError(f"handshake with {where} failed: {eof_means}")
        got += k
    return bytes(buf)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass


def _peer_address(sock: socket.socket) -> str:
    try:
        address = sock.getpeername()
    except OSError:
        return "an unknown address"
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return repr(address)


class _deadline:
    """Bound the whole handshake by HANDSHAKE_TIMEOUT per blocking step, then restore blocking."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def __enter__(self) -> None:
        self.sock.settimeout(HANDSHAKE_TIMEOUT)

    def __exit__(self, *exc: object) -> None:
        try:
            self.sock.settimeout(None)
        except OSError:
            pass
