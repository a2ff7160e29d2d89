"""Port mapper client: resolve ``alive@host`` to a TCP port with the EPMD wire protocol.

A node registers its listening port with the port mapper on its host (ALIVE2_REQ) over a TCP
connection that stays open for the node's life; closing that connection unregisters the name.
Peers ask the port mapper for a name's port (PORT_PLEASE2_REQ) before connecting. The protocol is
Erlang's (``erts/doc/src/erl_dist_protocol.xml``, "EPMD Protocol"), so our client works against a
real ``epmd`` and Erlang's tools see names registered in our embedded server
(:mod:`pynode.portmapper_server`).

Wire format: every request is a 2-byte big-endian length followed by that many bytes, whose first
byte is the request code. Replies have no length prefix; except for ALIVE2 the server closes the
connection after replying.

``python -m pynode.portmapper serve --host H --port P`` runs the server in the foreground;
:func:`ensure_running` starts it as a detached daemon, as ``epmd -daemon`` does.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pynode.errors import PortMapperError

log = logging.getLogger(__name__)

# --- protocol constants (erl_dist_protocol.xml, "EPMD Protocol") -------------------------------
DEFAULT_PORT = 4369  # IANA-registered epmd port
EPMD_PORT_ENV = "PYNODE_EPMD_PORT"

ALIVE2_REQ = 120
ALIVE2_X_RESP = 118  # reply with a 4-byte creation (OTP 23+; sent when HighestVersion >= 6)
ALIVE2_RESP = 121  # older reply with a 2-byte creation (a real epmd may still send it)
PORT_PLEASE2_REQ = 122
PORT2_RESP = 119
NAMES_REQ = 110
KILL_REQ = 107
KILL_OK = b"OK"

NODE_TYPE_NORMAL = 77  # 'M': a normal (visible) node
NODE_TYPE_HIDDEN = 72  # 'H': a hidden node (C nodes and hidden Erlang nodes use it)
PROTOCOL_TCP_IPV4 = 0
# Distribution protocol versions we announce: 6 (OTP 23+) down to 5, as a current `erl` does.
HIGHEST_VERSION = 6
LOWEST_VERSION = 5

MAX_NAME_BYTES = 255  # epmd's MAXSYMLEN: longer alive names are refused
# ALIVE2's Extra field of a pynode node: how a peer tells, from the port mapper's answer, that the
# node speaks pynode's protocol (besides Erlang's). A real epmd keeps and returns it too; BEAM
# nodes register an empty Extra.
PYNODE_EXTRA = b"pynode/1"
RESULT_OK = 0

# --- client tuning -----------------------------------------------------------------------------
DEFAULT_TIMEOUT = 5.0  # seconds for one request; epmd answers on loopback in well under 1 ms
START_TIMEOUT = 15.0  # seconds to wait for a freshly spawned daemon: a cold Python start on a
# loaded 2-core box can take a few seconds
START_POLL = 0.02  # seconds between probes while waiting for the daemon


def epmd_port() -> int:
    """The port mapper port: ``PYNODE_EPMD_PORT`` if set, else :data:`DEFAULT_PORT`.

    Raises :class:`PortMapperError` when the variable is not an integer in 1..65535.
    """
    raw = os.environ.get(EPMD_PORT_ENV)
    if raw is None or raw == "":
        return DEFAULT_PORT
    try:
        port = int(raw)
    except ValueError:
        raise PortMapperError(f"{EPMD_PORT_ENV}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise PortMapperError(f"{EPMD_PORT_ENV}={raw!r} is outside 1..65535")
    return port


@dataclass(frozen=True)
class NodeInfo:
    """What a port mapper knows about one registered name (the body of PORT2_RESP)."""

    alive: str
    port: int
    node_type: int
    protocol: int
    highest_version: int
    lowest_version: int
    extra: bytes = b""

    @property
    def hidden(self) -> bool:
        return self.node_type == NODE_TYPE_HIDDEN

    @property
    def speaks_pynode(self) -> bool:
        """True for a node that registered with :data:`PYNODE_EXTRA` (a pynode node); False for
        a BEAM node, which speaks only Erlang's distribution protocol."""
        return self.extra.split(b" ", 1)[0] == PYNODE_EXTRA


def _resolve(mapper_port: int | None) -> int:
    return mapper_port if mapper_port is not None else epmd_port()


# --- encoding ----------------------------------------------------------------------------------


def frame(body: bytes) -> bytes:
    """Prefix a request body with its 2-byte big-endian length."""
    if len(body) > 0xFFFF:
        raise PortMapperError(f"port mapper request of {len(body)} bytes exceeds 65535")
    return struct.pack(">H", len(body)) + body


def encode_node_info(info: NodeInfo) -> bytes:
    """The node description shared by ALIVE2_REQ and PORT2_RESP (after the code/result bytes)."""
    name = info.alive.encode()
    return (
        struct.pack(
            ">HBBHHH",
            info.port,
            info.node_type,
            info.protocol,
            info.highest_version,
            info.lowest_version,
            len(name),
        )
        + name
        + struct.pack(">H", len(info.extra))
        + info.extra
    )


def decode_node_info(data: bytes) -> NodeInfo:
    """Inverse of :func:`encode_node_info`; raises :class:`PortMapperError` on short or bad data."""
    try:
        port, node_type, protocol, high, low, nlen = struct.unpack_from(">HBBHHH", data, 0)
        offset = 10
        name = data[offset : offset + nlen]
        offset += nlen
        (elen,) = struct.unpack_from(">H", data, offset)
        offset += 2
        extra = data[offset : offset + elen]
        if len(name) != nlen or len(extra) != elen:
            raise struct.error("truncated")
        return NodeInfo(name.decode(), port, node_type, protocol, high, low, bytes(extra))
    except (struct.error, UnicodeDecodeError) as exc:
        raise PortMapperError(f"malformed node description from port mapper: {exc}") from None


def validate_alive(alive: str) -> bytes:
    """The alive name as bytes; raises :class:`PortMapperError` if epmd would refuse it."""
    raw = alive.encode()
    if not raw or len(raw) > MAX_NAME_BYTES:
        raise PortMapperError(f"alive name {alive!r} must be 1..{MAX_NAME_BYTES} bytes")
    return raw


# --- client ------------------------------------------------------------------------------------


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise PortMapperError(f"no port mapper answers on {host}:{port}: {exc}") from exc


def _recv_exact(sock: socket.socket, n: int, what: str, where: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except OSError as exc:
            raise PortMapperError(f"port mapper {where}: {what} failed: {exc}") from exc
        if not chunk:
            raise PortMapperError(
                f"port mapper {where} closed the connection during {what} "
                f"(got {len(buf)} of {n} bytes)"
            )
        buf += chunk
    return bytes(buf)


def _recv_all(sock: socket.socket, what: str, where: str) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except OSError as exc:
            raise PortMapperError(f"port mapper {where}: {what} failed: {exc}") from exc
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _request(host: str, port: int, body: bytes, timeout: float) -> socket.socket:
    sock = _connect(host, port, timeout)
    try:
        sock.sendall(frame(body))
    except OSError as exc:
        sock.close()
        raise PortMapperError(f"port mapper {host}:{port}: sending request failed: {exc}") from exc
    return sock


class Registration:
    """A name registered with a port mapper; alive for as long as this object's connection.

    ``creation`` is the incarnation number the port mapper handed out (it differs between two
    registrations of the same name, so peers can tell a restarted node from the old one).
    ``close()`` unregisters (idempotent); it is also a context manager.
    """

    def __init__(self, sock: socket.socket, host: str, port: int, alive: str, creation: int):
        self._sock: socket.socket | None = sock
        self.host = host
        self.port = port
        self.alive = alive
        self.creation = creation

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
            log.debug("unregistered %s from port mapper %s:%d", self.alive, self.host, self.port)

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"creation={self.creation}"
        return f"<Registration {self.alive} at {self.host}:{self.port} {state}>"


def register(
    host: str,
    alive: str,
    port: int,
    *,
    hidden: bool = False,
    extra: bytes = b"",
    mapper_port: int | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Registration:
    """Register ``alive`` (listening on ``port``) with the port mapper on ``host`` (ALIVE2_REQ).

    The returned :class:`Registration` keeps the TCP connection open: the name stays registered
    until it is closed or this process dies. Raises :class:`PortMapperError` when no port mapper
    answers, when the name is already registered (a real epmd and ours both refuse), or when the
    reply is malformed.
    """
    mapper_port = _resolve(mapper_port)
    where = f"{host}:{mapper_port}"
    info = NodeInfo(
        alive=alive,
        port=port,
        node_type=NODE_TYPE_HIDDEN if hidden else NODE_TYPE_NORMAL,
        protocol=PROTOCOL_TCP_IPV4,
        highest_version=HIGHEST_VERSION,
        lowest_version=LOWEST_VERSION,
        extra=extra,
    )
    validate_alive(alive)
    sock = _request(host, mapper_port, bytes([ALIVE2_REQ]) + encode_node_info(info), timeout)
    try:
        code, result = _recv_exact(sock, 2, f"registering {alive!r}", where)
        if code not in (ALIVE2_X_RESP, ALIVE2_RESP):
            raise PortMapperError(
                f"port mapper {where} answered ALIVE2_REQ for {alive!r} with code {code}"
            )
        if result != RESULT_OK:
            raise PortMapperError(
                f"port mapper {where} refused to register {alive!r} (result {result}): "
                f"the name is already registered on {host}"
            )
        size = 4 if code == ALIVE2_X_RESP else 2
        creation = int.from_bytes(_recv_exact(sock, size, "reading creation", where), "big")
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    log.debug("registered %s port %d with %s creation %d", alive, port, where, creation)
    return Registration(sock, host, mapper_port, alive, creation)


def node_info(
    host: str, alive: str, *, mapper_port: int | None = None, timeout: float = DEFAULT_TIMEOUT
) -> NodeInfo | None:
    """Everything the port mapper on ``host`` knows about ``alive`` (PORT_PLEASE2_REQ).

    Returns None when the name is not registered. Raises :class:`PortMapperError` when no port
    mapper answers or the reply is malformed.
    """
    mapper_port = _resolve(mapper_port)
    where = f"{host}:{mapper_port}"
    name = validate_alive(alive)
    with _request(host, mapper_port, bytes([PORT_PLEASE2_REQ]) + name, timeout) as sock:
        code, result = _recv_exact(sock, 2, f"looking up {alive!r}", where)
        if code != PORT2_RESP:
            raise PortMapperError(
                f"port mapper {where} answered PORT_PLEASE2_REQ for {alive!r} with code {code}"
            )
        if result != RESULT_OK:
            return None
        return decode_node_info(_recv_all(sock, f"looking up {alive!r}", where))


def port_please(
    host: str, alive: str, *, mapper_port: int | None = None, timeout: float = DEFAULT_TIMEOUT
) -> int | None:
    """The port ``alive`` listens on per the port mapper on ``host``, or None if not registered.

    Raises :class:`PortMapperError` when no port mapper answers on ``host`` or it replies
    with garbage.
    """
    info = node_info(host, alive, mapper_port=mapper_port, timeout=timeout)
    return None if info is None else info.port


def names(
    host: str = "127.0.0.1", *, mapper_port: int | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[tuple[str, int]]:
    """The ``(alive, port)`` pairs registered on ``host`` (NAMES_REQ), as ``epmd -names`` shows.

    Raises :class:`PortMapperError` when no port mapper answers or the reply is not EPMD's.
    """
    mapper_port = _resolve(mapper_port)
    where = f"{host}:{mapper_port}"
    with _request(host, mapper_port, bytes([NAMES_REQ]), timeout) as sock:
        header = _recv_exact(sock, 4, "listing names", where)
        text = _recv_all(sock, "listing names", where)
    (announced,) = struct.unpack(">I", header)
    if announced != mapper_port:
        log.debug("port mapper %s says it listens on %d", where, announced)
    return parse_names(text, where)


def parse_names(text: bytes, where: str) -> list[tuple[str, int]]:
    """Parse NAMES_REQ lines ``name N at port P``; raises :class:`PortMapperError` on others."""
    result = []
    for line in text.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) != 5 or parts[0] != "name" or parts[2:4] != ["at", "port"]:
            raise PortMapperError(f"port mapper {where} sent a malformed names line {line!r}")
        try:
            result.append((parts[1], int(parts[4])))
        except ValueError:
            raise PortMapperError(f"port mapper {where} sent a bad port in {line!r}") from None
    return result


def kill(
    host: str = "127.0.0.1", *, mapper_port: int | None = None, timeout: float = DEFAULT_TIMEOUT
) -> None:
    """Ask the port mapper on ``host`` to exit (KILL_REQ).

    Our server always obeys; a real epmd refuses while names are registered unless it runs with
    ``-relaxed_command_check``. Raises :class:`PortMapperError` when nobody answers or the port
    mapper refuses.
    """
    mapper_port = _resolve(mapper_port)
    where = f"{host}:{mapper_port}"
    with _request(host, mapper_port, bytes([KILL_REQ]), timeout) as sock:
        reply = _recv_all(sock, "killing", where)
    if reply != KILL_OK:
        raise PortMapperError(f"port mapper {where} refused KILL_REQ: replied {reply!r}")
    log.info("port mapper %s killed", where)


def is_running(host: str, port: int | None = None, *, timeout: float = 1.0) -> bool:
    """True if something speaking EPMD answers NAMES_REQ on ``host:port``."""
    try:
        names(host, mapper_port=port, timeout=timeout)
    except PortMapperError:
        return False
    return True


# --- the detached daemon -----------------------------------------------------------------------


def daemon_paths(host: str, port: int) -> tuple[Path, Path]:
    """(lock file, log file) of the daemon for ``host:port``, in the temp directory."""
    stem = f"pynode-portmapper-{host}-{port}"
    base = Path(tempfile.gettempdir())
    return base / f"{stem}.lock", base / f"{stem}.log"


def ensure_running(host: str, port: int | None = None, *, timeout: float = START_TIMEOUT) -> bool:
    """Make sure a port mapper answers on ``host:port``; start a detached one if none does.

    Returns True if this call started the daemon, False if one was already answering. The daemon
    (``python -m pynode.portmapper serve``) runs in its own session with no inherited pipes, so it
    outlives the process that started it, like ``epmd -daemon``; its log goes to the file named by
    :func:`daemon_paths`. Concurrent callers (two nodes starting at once, in any processes) are
    serialised by a lock file, so only one daemon is spawned. Raises :class:`PortMapperError`
    naming ``host:port`` and quoting the daemon's log when it does not answer within ``timeout``.
    """
    port = port if port is not None else epmd_port()
    if is_running(host, port):
        return False
    lock_path, log_path = daemon_paths(host, port)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if is_running(host, port):
                return False
            _spawn_daemon(host, port, log_path, timeout)
            return True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _spawn_daemon(host: str, port: int, log_path: Path, timeout: float) -> None:
    command = [sys.executable, "-m", "pynode.portmapper", "serve", "--host", host, "--port", str(port)]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    log.info("started port mapper daemon pid %d on %s:%d", proc.pid, host, port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_running(host, port, timeout=START_POLL * 10):
            # Reap the daemon if it ever exits while we live, so it leaves no zombie behind.
            threading.Thread(target=proc.wait, name="portmapper-reaper", daemon=True).start()
            return
        if proc.poll() is not None:
            break
        time.sleep(START_POLL)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    raise PortMapperError(
        f"port mapper daemon on {host}:{port} did not answer within {timeout:g} s "
        f"(exit code {proc.returncode}); its log {log_path} ends with:\n{_tail(log_path)}"
    )


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


if __name__ == "__main__":
    from pynode.portmapper_server import main

    sys.exit(main())
