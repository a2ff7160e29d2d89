"""The local node: listener, peer table, connect/disconnect; and ``Node``, its public face.

``Node`` mirrors Elixir's ``Node`` module: a process becomes a node with :meth:`Node.start`, after
which it accepts connections from peers that know its cookie and can connect to others. Calls to a
node that is not connected connect implicitly (:mod:`pynode.erpc`), as Erlang does.

Connections are hidden when either end is hidden: a hidden node (a notebook client, a shell) sees
its peers only in ``Node.list("hidden")`` and they see it only there, as in Erlang.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from pynode import cookie as cookies
from pynode import handshake, kinds, limits, names, output, portmapper, runtime, transport
from pynode.beam import calls as beam_calls
from pynode.beam import handshake as beam_handshake
from pynode.beam.connection import BeamConnection
from pynode.beam.dist import BeamSide
from pynode.beam.local import LocalProcesses
from pynode.beam.peers import BeamPeers, MeshView
from pynode.connection import Connection, NodeService
from pynode.errors import HandshakeError, NoConnection, PortMapperError, PynodeError, ReceiveTimeout
from pynode.handoff import HandoffWatchdog
from pynode.handshake import PeerInfo
from pynode.kinds import Kind
from pynode.mailbox import Registry
from pynode.mesh import Mesh, surviving
from pynode.monitors import NodeMonitors
from pynode.ticks import Ticker, resolve_ticktime
from pynode.node_processes import NodeProcesses
from pynode.tls import TLS

log = logging.getLogger(__name__)

# Seconds allowed to look a peer up and open a TCP connection to it (Erlang's net_setuptime is 7 s).
CONNECT_TIMEOUT = 7.0
# Seconds a ping waits for the peer's echo before answering "pang" (net_adm:ping waits as long as
# the connection setup takes; a connected but frozen peer must not block us forever).
PING_TIMEOUT = 5.0



class LocalNode(BeamPeers):
    """This process as a node. Create it with :meth:`Node.start`; one per process."""

    def __init__(
        self,
        name: str,
        cookie: str,
        *,
        hidden: bool,
        port: int,
        ticktime: float | None = None,
        connect_all: bool = True,
        max_message_size: int = limits.DEFAULT_MAX_MESSAGE_SIZE,
        handshake_slots: int = limits.DEFAULT_HANDSHAKE_SLOTS,
        tls: TLS | None = None,
        beam: bool = True,
        beam_max_calls: int = limits.DEFAULT_BEAM_MAX_CALLS,
    ) -> None:
        parsed = names.parse(name)
        self.max_message_size = max_message_size
        self.tls = tls
        server_tls = tls.server_context() if tls is not None else None
        self._client_tls = tls.client_context() if tls is not None else None
        self.name = str(parsed)
        self.host = parsed.host
        self.cookie = cookie
        self.hidden = hidden
        self.mailboxes = Registry(self.name)
        self.monitors = NodeMonitors(self.mailboxes.deliver)
        self.processes = NodeProcesses(self.mailboxes, self.connection_to, lambda: self.peers("visible"))
        self.mailboxes.on_remove = self._mailbox_gone  # a thread's monitors and names end with its mailbox
        output.install()  # per-thread routing of sys.stdout/sys.stderr: remote calls' output goes home
        self._up: dict[str, bool] = {}  # peers announced up (nodeup) -> hidden
        self._cookies: dict[str, str] = {}
        self._connections: dict[str, Connection] = {}  # peer -> the connection in use (never a retired one)
        self._all_connections: set[Connection] = set()  # every registered connection not yet detached
        self._dial_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.ticktime = resolve_ticktime(ticktime)
        self.mesh = Mesh(MeshView(self), connect_all)  # BEAM peers take part (pynode.beam.peers)
        self.handoff = HandoffWatchdog(self._connections_snapshot, parsed.alive)
        self.watch_inline = self.handoff.watch  # the method below, one Python call less per call
        self.ticker = Ticker(self._connections_snapshot, self.ticktime, parsed.alive)
        # Erlang's distribution on the same port (pynode.beam); None with beam=False (--no-beam).
        self.beam: BeamSide | None = None
        # Erlang's signals reach pynode's processes, its sends pynode.register'ed names
        self.beam_processes = LocalProcesses(self.mailboxes, self.processes)
        self.processes.foreign = self._beam_signal  # pynode processes' signals to BEAM processes
        self._unmarked_pynode: dict[str, int] = {}  # peer -> port where it refused Erlang's handshake
        authenticator = handshake.Authenticator(
            self.name, self.cookie_for, hidden=hidden, max_message_size=max_message_size, tls=server_tls,
            other=None if tls is not None else self._other_protocol,  # a TLS node speaks no plain Erlang
        )
        try:
            self._listener = transport.Listener(
                self.host, port, authenticator, self._accepted, handshake_slots=handshake_slots
            )
        except OSError as exc:
            self.handoff.stop()
            self.ticker.stop()
            raise PynodeError(f"node {self.name} cannot listen on {self.host}:{port}: {exc}") from exc
        self.port = self._listener.port
        self._listener_thread = threading.Thread(
            target=self._listener.start, name=f"{parsed.alive}-listener", daemon=True
        )
        self._listener_thread.start()
        try:
            portmapper.ensure_running(self.host)
            self._registration = portmapper.register(
                self.host, parsed.alive, self.port, hidden=hidden, extra=portmapper.PYNODE_EXTRA
            )
        except PortMapperError:
            self._listener.close()
            self.handoff.stop()
            self.ticker.stop()
            raise
        if beam and tls is None:  # Erlang's distribution has no TLS here: a TLS node refuses it
            self.beam = BeamSide(self, self.beam_processes, beam_max_calls)
        log.info("node %s listening on %s:%d", self.name, self.host, self.port)

    # --- cookies ------------------------------------------------------------------------------

    def cookie_for(self, peer: str) -> str:
        return self._cookies.get(peer, self.cookie)

    def set_cookie(self, peer: str, cookie: str) -> None:
        peer = str(names.parse(peer))
        if peer == self.name:
            self.cookie = cookie
        else:
            self._cookies[peer] = cookie

    def _mailbox_gone(self, mailbox_id: int) -> None:
        self.monitors.forget(mailbox_id)
        self.processes.mailbox_gone(mailbox_id)

    # --- connections ----------------------------------------------------------------------------

    def open_connection(self, peer: str) -> Connection | None:
        """The live pynode connection to ``peer`` when there is one, else None (never dials,
        never raises: a malformed name simply has none)."""
        conn = self._connections.get(peer)
        return conn if conn is not None and not conn.closed else None

    def connection_to(self, peer: str) -> Connection:
        """The live connection to ``peer``, connecting first if there is none.

        Raises BadNodeName for a malformed name, NoConnection when the peer is not registered,
        unreachable, or refuses the handshake (the reason is in the message).
        """
        conn = self._connections.get(peer)
        if conn is not None and not conn.closed:
            return conn
        parsed = names.parse(peer)
        peer = str(parsed)
        with self._lock:
            dial_lock = self._dial_locks.setdefault(peer, threading.Lock())
        with dial_lock:
            conn = self._connections.get(peer)
            if conn is not None and not conn.closed:
                return conn
            return self._dial(parsed)

    def _dial(self, peer: names.NodeName) -> Connection:
        name = str(peer)
        try:
            port = portmapper.port_please(peer.host, peer.alive, timeout=CONNECT_TIMEOUT)
        except PortMapperError as exc:
            raise NoConnection(f"cannot reach {name}: {exc}") from exc
        if port is None:
            raise NoConnection(f"no node {name}: {peer.alive!r} is not registered with the port mapper on {peer.host}")
        try:
            sock = transport.dial(peer.host, port, CONNECT_TIMEOUT, source=self.host)
        except OSError as exc:
            raise NoConnection(f"cannot connect to {name} at {peer.host}:{port} from {self.host}: {exc}") from exc
        try:
            sock, info = handshake.initiate(
                sock, self.name, name, self.cookie_for(name), hidden=self.hidden,
                max_message_size=self.max_message_size, tls=self._client_tls,
            )
        except (HandshakeError, OSError) as exc:
            sock.close()
            raise NoConnection(f"cannot connect to {name}: {exc}") from exc
        conn = Connection(self, sock, info, outgoing=True)
        transport.wrap(sock, NodeService(conn), info, self.max_message_size)
        use = self._register(conn)
        threading.Thread(target=conn.run_reader, name=f"conn-{name}", daemon=True).start()
        log.info("%s connected to %s", self.name, name)
        self.mesh.connected(conn)
        return use

    def _accepted(self, sock: socket.socket, peer: PeerInfo | beam_handshake.BeamPeer) -> None:
        """Serve an accepted, authenticated connection in this (the listener's) thread."""
        if isinstance(peer, beam_handshake.BeamPeer):
            if self.beam is not None:
                self.beam.serve(sock, peer)
            return
        conn = Connection(self, sock, peer)
        transport.wrap(sock, NodeService(conn), peer, self.max_message_size)
        self._register(conn)
        log.info("%s accepted a connection from %s", self.name, peer.name)
        self.mesh.connected(conn)
        conn.run_reader()

    def _register(self, conn: Connection) -> Connection:
        """Add a new connection; returns the one to use with its peer. With another connection
        to that peer open (two nodes dialled each other at once), both ends keep the same one
        (:func:`pynode.mesh.surviving`) and retire the other."""
        hidden = conn.hidden or self.hidden
        with self._lock:
            self._all_connections.add(conn)
            current = self._connections.get(conn.name)
            use = conn if current is None or current.closed else surviving(self.name, current, conn)
            self._connections[conn.name] = use  # type: ignore[assignment]
            loser = current if use is conn else conn
            if loser is not None and not loser.closed:
                log.info("%s: two connections with %s; %s one kept", self.name, conn.name,
                         "the new" if use is conn else "the older")
                loser.retire(time.monotonic())
            if conn.name not in self._up and conn.name != self.name:
                self._up[conn.name] = hidden
                self.monitors.node_up(conn.name, hidden)  # under the lock: in order with nodedown
                self.processes.node_up(conn.name, hidden)
        return use  # type: ignore[return-value]

    def detach(self, conn: Connection) -> None:
        """Called when a connection is gone (from its serving thread). The peer's other
        open connection, if any, takes its place; without one the peer is down (monitors fire)."""
        conn.disconnected()
        with self._lock:
            self._all_connections.discard(conn)
            others = [
                other
                for other in self._all_connections
                if other.name == conn.name and not other.closed and other.retired is None
            ]
            if self._connections.get(conn.name) is conn:
                del self._connections[conn.name]
                if others:
                    self._connections[conn.name] = others[0]
            hidden = None if others else self._up.pop(conn.name, None)
            if hidden is not None:  # under the lock: a reconnection's nodeup comes after this
                self.monitors.node_down(conn.name, hidden)
                self.processes.node_down(conn.name)
        log.info("%s lost its connection to %s", self.name, conn.name)

    def connected(self, peer: str) -> bool:
        """An open connection with ``peer`` exists, or this node is dialling it."""
        conn = self._connections.get(peer)
        if conn is not None and not conn.closed:
            return True
        dial_lock = self._dial_locks.get(peer)
        return dial_lock is not None and dial_lock.locked()

    def connections(self, peer: str) -> list[Connection]:
        """The open connections with ``peer``: the one in use first, then any retired ones still
        winding down (normally none or one connection; for tests and diagnostics)."""
        peer = str(names.parse(peer))
        with self._lock:
            found = [c for c in self._all_connections if c.name == peer and not c.closed]
            use = self._connections.get(peer)
        return sorted(found, key=lambda c: c is not use)

    def peers(self, kind: Kind) -> list[str]:
        kinds.check(kind, "Node.list")
        with self._lock:
            conns: list[Connection | BeamConnection] = [
                conn for conn in self._connections.values() if not conn.closed and conn.name != self.name
            ]
        conns += self.beam.connections() if self.beam is not None else []
        return sorted({conn.name for conn in conns if kinds.includes(kind, conn.hidden or self.hidden)})

    def disconnect(self, peer: str) -> bool:
        """Close every connection with ``peer``: it is down at once (monitors fire, as Erlang's
        ``disconnect_node`` does), and the next call dials afresh while the old connections wind down."""
        peer = str(names.parse(peer))
        with self._lock:
            found = [conn for conn in self._all_connections if conn.name == peer]
            for conn in found:
                conn.close()
            if self._connections.get(peer) in found:
                del self._connections[peer]
            hidden = self._up.pop(peer, None)
            if hidden is not None:
                self.monitors.node_down(peer, hidden)
                self.processes.node_down(peer)
        beam_found = self.beam is not None and self.beam.disconnect(peer)
        return bool(found) or beam_found

    def ping(self, peer: str) -> bool:
        try:
            conn = self.beam_peer(peer)
            if conn is not None and self.beam is not None:
                if beam_calls.ping(self.beam, conn, PING_TIMEOUT):
                    return True
                log.info("ping %s: pang (no answer within %s s)", peer, PING_TIMEOUT)
                return False
            if self.connection_to(peer).ping(PING_TIMEOUT):
                return True
            log.info("ping %s: pang (no answer within %s s)", peer, PING_TIMEOUT)
        except NoConnection as exc:
            log.info("ping %s: pang (%s)", peer, exc)
        return False

    # --- what connections need of their node (pynode.connection.Owner) ------------------------

    def deliver_local(self, mailbox_id: int, data: transport.Data, buffers: transport.Buffers) -> None:
        self.mailboxes.deliver_encoded(mailbox_id, data, buffers)

    def on_signal(self, peer: str, data: transport.Data, buffers: transport.Buffers) -> None:
        self.processes.on_signal(peer, data, buffers)

    def watch_inline(self) -> None:
        self.handoff.watch()

    def peers_announced(self, connection: Connection, peers: list[str]) -> None:
        self.mesh.announced(connection, peers)

    def leaders(self, peer: str) -> output.Home:
        return output.Home(peer, self.processes.send_signal)

    def _connections_snapshot(self) -> list[Connection]:
        with self._lock:
            return list(self._all_connections)

    def stop(self) -> None:
        self._registration.close()
        self._listener.close()
        self.handoff.stop()
        self.ticker.stop()
        self.processes.stop()  # spawned processes end with the node (best effort)
        if self.beam is not None:
            self.beam.stop()
        with self._lock:
            conns = list(self._all_connections)
        for conn in conns:
            conn.close()
        log.info("node %s stopped", self.name)


_start_lock = threading.Lock()


class Node:
    """Elixir's ``Node`` for this process (all methods are class methods)."""

    @staticmethod
    def start(
        name: str,
        cookie: str | None = None,
        hidden: bool = False,
        port: int = 0,
        ticktime: float | None = None,
        connect_all: bool = True,
        *,
        max_message_size: int | str | None = None,
        handshake_slots: int | None = None,
        tls: TLS | None = None,
        beam: bool = True,
        beam_max_calls: int | None = None,
    ) -> str:
        """Make this process the node ``name`` (``alive@host``) and return the name.

        Listens on ``host`` (``port`` 0: any free port) and dials peers from it, starts a port
        mapper on ``host`` when none answers, and registers ``alive`` with it. The cookie comes from
        ``cookie``, else ``$PYNODE_COOKIE``, else ``~/.pynode.cookie`` (see :mod:`pynode.cookie`).
        ``sys.stdout`` and ``sys.stderr`` are wrapped so that output of remote calls running here
        goes to their callers, per thread (:mod:`pynode.output`; other threads write as before).

        ``max_message_size`` (bytes, or ``"64M"``/``"1GiB"``; else ``$PYNODE_MAX_MESSAGE_SIZE``,
        default 1 GiB): the largest message (a frame, each out-of-band buffer and their sum)
        accepted from a peer; peers learn it in the handshake and refuse to send more
        (MessageTooLarge). ``handshake_slots`` (else ``$PYNODE_HANDSHAKE_SLOTS``, default 64):
        connections allowed in their handshake at once (see :mod:`pynode.limits`). ``tls``
        (else ``$PYNODE_TLS_CERTFILE/KEYFILE/CAFILE``): run every connection inside mutually
        authenticated TLS 1.3 (see :mod:`pynode.tls`); TLS nodes and plain nodes refuse each other.

        ``ticktime`` (Erlang's ``net_ticktime``, seconds; default ``$PYNODE_TICKTIME``, else 10):
        a peer from which nothing arrives for that long is declared down (its connection closed,
        calls waiting on it fail with NoConnection, monitors fire); this node sends a tick on a
        connection that has carried nothing for a quarter of it (:mod:`pynode.ticks`). Peers
        should use the same value: each side judges the other by its own.

        ``connect_all`` (Erlang's ``-connect_all``): a visible node that connects to another
        visible node tells it its visible peers and connects to the peers it is told of, so a
        cluster is a full mesh of its visible nodes (:mod:`pynode.mesh`). ``False`` turns that
        off for this node (it neither announces nor follows announcements). Hidden nodes never
        take part.

        With ``beam`` (the default) the node also speaks Erlang's distribution protocol on the
        same port (:mod:`pynode.beam`; its MD5 handshake is weaker than pynode's own, so use it on
        trusted networks); ``beam=False`` refuses Erlang nodes, and so does a node with ``tls``.
        ``beam_max_calls`` (else ``$PYNODE_BEAM_MAX_CALLS``, default 256): Python functions one
        BEAM peer may run here at once; more are refused with Erlang's ``system_limit`` (see
        :mod:`pynode.limits`). Erlang's handshakes take ``handshake_slots`` like pynode's.

        Raises BadNodeName, CookieError, ValueError for a ticktime below 1 s or not a number,
        TLSError, PortMapperError (e.g. the name is taken), PynodeError for a bad limit, when the
        address cannot be bound or a node is already running in this process.
        """
        from pynode import tls as tls_config

        with _start_lock:
            existing = runtime.running()
            if existing is not None:
                raise PynodeError(f"this process is already the node {existing.name}; Node.stop() it first")
            names.parse(name)
            resolve_ticktime(ticktime)  # a bad value fails before anything starts
            node = LocalNode(
                name, cookies.resolve(cookie), hidden=hidden, port=port, ticktime=ticktime, connect_all=connect_all,
                max_message_size=limits.max_message_size(max_message_size),
                handshake_slots=limits.handshake_slots(handshake_slots),
                tls=tls if tls is not None else tls_config.from_env(), beam=beam,
                beam_max_calls=limits.beam_max_calls(beam_max_calls),
            )
            runtime.install(node)
            return node.name

    @staticmethod
    def stop() -> None:
        """Stop being a node: unregister, close every connection (their pending calls fail with
        NoConnection). Running calls from peers finish, their results are dropped; processes
        spawned here are stopped with the reason ``"shutdown"`` (best effort). No-op when no
        node runs."""
        with _start_lock:
            node = runtime.running()
            runtime.install(None)
        if node is not None:
            node.stop()

    @staticmethod
    def self() -> str:
        """This node's name. Raises NodeNotStarted."""
        return runtime.current().name

    @staticmethod
    def alive() -> bool:
        """True when this process is a node."""
        return runtime.running() is not None

    @staticmethod
    def port() -> int:
        """The TCP port this node listens on. Raises NodeNotStarted."""
        return runtime.current().port

    @staticmethod
    def connect(peer: str) -> bool:
        """Connect to ``peer``; True on success (or when already connected), False when it cannot
        be reached or refuses us (the reason is logged). Raises BadNodeName, NodeNotStarted."""
        try:
            runtime.current().reach(peer)
            return True
        except NoConnection as exc:
            log.warning("Node.connect(%r) failed: %s", peer, exc)
            return False

    @staticmethod
    def disconnect(peer: str) -> bool:
        """Close every connection with ``peer``; False when there was none."""
        return runtime.current().disconnect(peer)

    @staticmethod
    def list(kind: Kind = "visible") -> list[str]:
        """Connected peers: ``"visible"`` (default), ``"hidden"`` or ``"connected"`` (both)."""
        return runtime.current().peers(kind)

    @staticmethod
    def monitor(peer: str, flag: bool = True, *, flush: bool = False) -> None:
        """Erlang's ``monitor_node``: with ``flag``, the calling thread's mailbox gets
        ``("nodedown", peer)`` when the connection with ``peer`` is gone (connecting first if
        needed; at once when it cannot be connected). Each call adds a monitor and a message; a
        monitor fires once. ``flag=False`` removes one of this thread's monitors of ``peer``
        (they are independent instances, as Erlang's: code that removes the monitor it added
        leaves the others in place). With ``flush`` (and ``flag=False``), when none is left
        because they fired, one ``("nodedown", peer)`` is removed from the mailbox, so that the
        message of a monitor that fired unread is not taken for a later loss (Erlang's
        ``demonitor(Ref, [flush])``; the messages of this thread's monitors of one peer, and of
        :meth:`monitor_nodes`, are alike: one of them goes). Read the messages with
        :func:`pynode.receive`. Raises BadNodeName, NodeNotStarted."""
        node = runtime.current()
        peer = str(names.parse(peer))
        box = node.mailboxes.own()
        mailbox_id = box.pid.id
        if not flag:
            if not node.monitors.demonitor(peer, mailbox_id, flush) and flush:
                try:
                    box.get(0, lambda m: type(m) is tuple and m == ("nodedown", peer))
                except ReceiveTimeout:
                    pass  # it was read already
            return
        node.monitors.monitor(peer, mailbox_id)
        try:
            node.reach(peer)
        except NoConnection as exc:
            log.info("monitor of %s: nodedown at once (%s)", peer, exc)
            node.monitors.unreachable(peer, mailbox_id)

    @staticmethod
    def monitor_nodes(flag: bool = True, kind: Kind = "visible") -> None:
        """Erlang's ``net_kernel:monitor_nodes``: with ``flag``, the calling thread's mailbox gets
        ``("nodeup", name)`` and ``("nodedown", name)`` whenever a peer of ``kind`` (``"visible"``,
        ``"hidden"`` or ``"connected"``: both) connects for the first time or loses its last
        connection, until ``monitor_nodes(False)``. Raises ValueError for an unknown kind,
        NodeNotStarted."""
        node = runtime.current()
        mailbox_id = node.mailboxes.own().pid.id
        if flag:
            node.monitors.subscribe(mailbox_id, kind)
        else:
            node.monitors.unsubscribe(mailbox_id)

    @staticmethod
    def ping(peer: str) -> str:
        """``"pong"`` when ``peer`` answers (connecting if needed), else ``"pang"``."""
        return "pong" if runtime.current().ping(peer) else "pang"

    @staticmethod
    def set_cookie(peer: str, cookie: str) -> None:
        """Use ``cookie`` with ``peer`` (both directions); with ``peer == Node.self()``, change this
        node's own cookie."""
        runtime.current().set_cookie(peer, cookies.resolve(cookie))

    @staticmethod
    def get_cookie() -> str:
        """This node's own cookie."""
        return runtime.current().cookie
