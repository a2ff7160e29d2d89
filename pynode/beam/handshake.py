"""Erlang's distribution handshake, version 6 (OTP 23+), both sides, on a raw socket.

From ``erts/doc/guides/erl_dist_protocol.md`` ("Distribution Handshake"). Every handshake message
is a 2-byte big-endian length and that many bytes; the first byte names the message:

======================  ========================  ================================================
step                    direction                 body
======================  ========================  ================================================
send_name               initiator -> acceptor     ``'N' | flags:u64 | creation:u32 | len:u16 | name``
send_status             acceptor -> initiator     ``'s' | ok | ok_simultaneous | nok | not_allowed | alive``
(after ``alive``)       initiator -> acceptor     ``'s' | true | false``
send_challenge          acceptor -> initiator     ``'N' | flags:u64 | challenge:u32 | creation:u32 | len:u16 | name``
send_challenge_reply    initiator -> acceptor     ``'r' | challenge:u32 | digest[16]``
send_challenge_ack      acceptor -> initiator     ``'a' | digest[16]``
======================  ========================  ================================================

``digest = MD5(cookie ++ decimal text of the other side's challenge)`` (:func:`gen_digest`, as
OTP's ``dist_util`` computes it). The initiator proves the cookie first. After the ack, every
packet has a 4-byte length (:mod:`pynode.beam.connection`).

This is weaker than pynode's own handshake (:mod:`pynode.handshake`: HMAC-SHA256 over both
256-bit challenges and both names): a 32-bit challenge and MD5, as OTP's documentation says
"not by itself secure". Use it on trusted networks; nothing from a BEAM peer is ever unpickled.
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

from pynode import names
from pynode.errors import BadNodeName, HandshakeError
from pynode.handshake import peer_address

log = logging.getLogger(__name__)

# --- capability flags (erl_dist_protocol.md, "Distribution Flags") ------------------------------
PUBLISHED = 0x1
EXTENDED_REFERENCES = 0x4
DIST_MONITOR = 0x8
FUN_TAGS = 0x10
DIST_MONITOR_NAME = 0x20
NEW_FUN_TAGS = 0x80
EXTENDED_PIDS_PORTS = 0x100
EXPORT_PTR_TAG = 0x200
BIT_BINARIES = 0x400
NEW_FLOATS = 0x800
UNICODE_IO = 0x1000
DIST_HDR_ATOM_CACHE = 0x2000
SMALL_ATOM_TAGS = 0x4000
UTF8_ATOMS = 0x10000
MAP_TAG = 0x20000
BIG_CREATION = 0x40000
SEND_SENDER = 0x80000
BIG_SEQTRACE_LABELS = 0x100000
EXIT_PAYLOAD = 0x400000
FRAGMENTS = 0x800000
HANDSHAKE_23 = 0x1000000
UNLINK_ID = 0x2000000
SPAWN = 1 << 32
NAME_ME = 1 << 33
V4_NC = 1 << 34
ALIAS = 1 << 35

# What OTP 25+ refuses to connect without (UNLINK_ID and V4_NC became mandatory in OTP 26).
MANDATORY = (
    EXTENDED_REFERENCES
    | FUN_TAGS
    | NEW_FUN_TAGS
    | EXTENDED_PIDS_PORTS
    | EXPORT_PTR_TAG
    | BIT_BINARIES
    | NEW_FLOATS
    | UTF8_ATOMS
    | MAP_TAG
    | BIG_CREATION
    | HANDSHAKE_23
)
# What pynode offers: the mandatory set, the OTP 26 ones, and what its message handling uses
# (monitors by pid and by name, remote spawn, PAYLOAD_* exit signals, SEND_SENDER). No atom
# cache and no fragments: every message goes whole, in the pass-through format.
OFFERED = (
    MANDATORY
    | UNLINK_ID
    | V4_NC
    | DIST_MONITOR
    | DIST_MONITOR_NAME
    | SMALL_ATOM_TAGS
    | BIG_SEQTRACE_LABELS
    | EXIT_PAYLOAD
    | SEND_SENDER
    | SPAWN
)

STATUS_OK = b"ok"
STATUS_OK_SIMULTANEOUS = b"ok_simultaneous"
STATUS_NOK = b"nok"
STATUS_NOT_ALLOWED = b"not_allowed"
STATUS_ALIVE = b"alive"

# OTP's net_setuptime is 7 s; pynode's own handshake allows 5 s per step.
HANDSHAKE_TIMEOUT = 7.0
MAX_MESSAGE = 2 + 8 + 4 + 4 + 2 + names.MAX_ALIVE_LEN + 1 + names.MAX_HOST_LEN + 64  # name + slack


class NotErlang(HandshakeError):
    """The peer closed the connection at our send_name or answered it with something that is
    not a status: it does not speak Erlang's protocol (a pynode node the port mapper did not
    mark as one, say)."""


class SimultaneousConnect(HandshakeError):
    """The peer answered ``nok``: it is dialling us too and its connection wins the tie (the
    connection it dials arrives at our listener)."""


class BeamPeer(NamedTuple):
    """What the handshake established about a BEAM peer."""

    name: str
    flags: int  # the peer's flags; the connection uses ``flags & OFFERED``
    creation: int

    @property
    def hidden(self) -> bool:
        return not self.flags & PUBLISHED


Status = Callable[[str], bytes]
"""The acceptor's decision for a peer name: one of the STATUS_* values."""


def gen_digest(challenge: int, cookie: str) -> bytes:
    """MD5 of the cookie followed by the challenge as decimal text (``dist_util:gen_digest``)."""
    return hashlib.md5(cookie.encode("latin-1", "replace") + str(challenge).encode()).digest()


def looks_like_beam(first: bytes) -> bool:
    """True when the first bytes of a connection are an Erlang send_name (``len:u16 | 'N'`` or the
    old ``'n'``); pynode's own handshake starts with ``PYND``."""
    return len(first) >= 3 and first[2:3] in (b"N", b"n") and 0 < int.from_bytes(first[:2], "big") <= MAX_MESSAGE


def initiate(sock: socket.socket, local: str, expected: str, creation: int, cookie: str, *, hidden: bool) -> BeamPeer:
    """The initiator's side on a connected socket. Raises HandshakeError saying what failed."""
    with _Deadline(sock):
        name = local.encode()
        flags = OFFERED | (0 if hidden else PUBLISHED)
        _send(sock, b"N" + struct.pack(">QIH", flags, creation, len(name)) + name)
        try:
            status = _recv(sock, expected)
        except HandshakeError as exc:
            if "timed out" in str(exc):
                raise
            raise NotErlang(f"{expected} closed the connection at our Erlang name: it does not speak Erlang") from exc
        if status[:1] != b"s":
            raise NotErlang(f"{expected} answered our name with {status[:20]!r}, not a status")
        code = status[1:]
        if code == STATUS_ALIVE:
            _send(sock, b"strue")  # we have no connection to it: the one it has is stale
        elif code == STATUS_NOK:
            raise SimultaneousConnect(f"{expected} is connecting to us at the same time; its connection wins")
        elif code not in (STATUS_OK, STATUS_OK_SIMULTANEOUS):
            raise HandshakeError(f"{expected} refused the connection: status {code.decode(errors='replace')!r}")
        challenge_msg = _recv(sock, expected)
        if challenge_msg[:1] != b"N" or len(challenge_msg) < 21:
            raise HandshakeError(f"{expected} sent {challenge_msg[:20]!r} instead of its challenge")
        peer_flags, challenge, peer_creation, nlen = struct.unpack_from(">QIIH", challenge_msg, 1)
        peer_name = _name(challenge_msg[19 : 19 + nlen], expected)
        if peer_name != expected:
            raise HandshakeError(f"connected to {expected}'s port but the node there is {peer_name}")
        _check_flags(peer_flags, peer_name)
        mine = secrets.randbits(32)
        _send(sock, b"r" + struct.pack(">I", mine) + gen_digest(challenge, cookie))
        ack = _recv(sock, expected, eof_means="it refused our cookie")
        if ack[:1] != b"a" or len(ack) != 17:
            raise HandshakeError(f"{expected} sent {ack[:20]!r} instead of its challenge ack")
        if not hmac.compare_digest(ack[1:], gen_digest(mine, cookie)):
            raise HandshakeError(f"{expected} failed to prove it knows our cookie")
    return BeamPeer(peer_name, peer_flags, peer_creation)


def accept(
    sock: socket.socket, local: str, creation: int, cookie_for: Callable[[str], str], status_for: Status, *, hidden: bool
) -> BeamPeer:
    """The acceptor's side, from the first byte the peer sent. ``status_for(peer)`` decides
    whether the connection may go on (``alive`` when one is up, ``nok`` when we are dialling it
    and win the tie). Raises HandshakeError."""
    where = peer_address(sock)
    with _Deadline(sock):
        hello = _recv(sock, where)
        if hello[:1] == b"n":
            _send(sock, b"s" + STATUS_NOT_ALLOWED)
            raise HandshakeError(f"{where} sent an old (version 5) name; pynode speaks version 6 only")
        if hello[:1] != b"N" or len(hello) < 15:
            raise HandshakeError(f"{where} sent {hello[:20]!r}, not an Erlang send_name")
        peer_flags, peer_creation, nlen = struct.unpack_from(">QIH", hello, 1)
        peer = _name(hello[15 : 15 + nlen], where)
        _check_flags(peer_flags, peer)
        status = status_for(peer)
        _send(sock, b"s" + status)
        if status == STATUS_ALIVE:
            answer = _recv(sock, peer)
            if answer != b"strue":
                raise HandshakeError(f"{peer} gave up its connection attempt ({answer!r}): it is already connected")
        elif status not in (STATUS_OK, STATUS_OK_SIMULTANEOUS):
            raise HandshakeError(f"refused {peer} ({where}): {status.decode()}")
        cookie = cookie_for(peer)
        mine = secrets.randbits(32)
        name = local.encode()
        flags = OFFERED | (0 if hidden else PUBLISHED)
        _send(sock, b"N" + struct.pack(">QIIH", flags, mine, creation, len(name)) + name)
        reply = _recv(sock, peer)
        if reply[:1] != b"r" or len(reply) != 21:
            raise HandshakeError(f"{peer} sent {reply[:20]!r} instead of its challenge reply")
        (theirs,) = struct.unpack_from(">I", reply, 1)
        if not hmac.compare_digest(reply[5:], gen_digest(mine, cookie)):
            raise HandshakeError(f"{peer} ({where}) failed to prove the cookie")
        _send(sock, b"a" + gen_digest(theirs, cookie))
    return BeamPeer(peer, peer_flags, peer_creation)


def _check_flags(flags: int, peer: str) -> None:
    missing = MANDATORY & ~flags
    if missing:
        raise HandshakeError(f"{peer} lacks the mandatory distribution flags {missing:#x}")


def _name(raw: bytes, where: str) -> str:
    try:
        return str(names.parse(raw.decode()))
    except (UnicodeDecodeError, BadNodeName) as exc:
        raise HandshakeError(f"{where} sent a malformed node name {raw!r}") from exc


def _send(sock: socket.socket, body: bytes) -> None:
    sock.sendall(struct.pack(">H", len(body)) + body)


def _recv(sock: socket.socket, where: str, eof_means: str = "it closed the connection") -> bytes:
    (length,) = struct.unpack(">H", _exact(sock, 2, where, eof_means))
    if length > MAX_MESSAGE:
        raise HandshakeError(f"{where} sent a handshake message of {length} bytes")
    return _exact(sock, length, where, eof_means)


def _exact(sock: socket.socket, n: int, where: str, eof_means: str) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            k = sock.recv_into(view[got:])
        except TimeoutError as exc:
            raise HandshakeError(f"Erlang handshake with {where} timed out after {HANDSHAKE_TIMEOUT} s") from exc
        if k == 0:
            raise HandshakeError(f"Erlang handshake with {where} failed: {eof_means}")
        got += k
    return bytes(buf)


class _Deadline:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def __enter__(self) -> None:
        self.sock.settimeout(HANDSHAKE_TIMEOUT)

    def __exit__(self, *exc: object) -> None:
        try:
            self.sock.settimeout(None)
        except OSError:
            pass
