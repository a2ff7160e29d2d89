"""A multi-node local harness: real ``pynode start`` processes on loopback addresses.

::

    with LocalCluster(["a@127.0.0.21", "b@127.0.0.22"], cookie="s3cret") as cluster:
        with this_node("test@127.0.0.20", cookie=cluster.cookie):
            erpc.call("a@127.0.0.21", "os:getpid") == cluster.pid("a@127.0.0.21")

No orphans: every node process is tied to the process that started it three ways. The kernel
SIGKILLs it when its parent dies (``prctl(PR_SET_PDEATHSIG)``, set in the child before ``exec``:
this covers a test process that is itself SIGKILLed); ``atexit`` stops running clusters at
interpreter exit; and a cluster stops its nodes when it is garbage collected. The pytest fixture
``local_cluster`` (``tests/conftest.py``) also stops them when a test fails.

The death signal fires when the *thread* that started the node exits, so start clusters from a
thread that outlives them (pytest's main thread does).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import socket
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from pynode import cluster_config, names, portmapper, tls
from pynode.launch import NodeProcess, NodeSpec, NodeStartError

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0  # seconds for all nodes to print their ready line; a cold start that imports
# numpy and rpyc takes ~1 s, but a loaded 2-core CI box can be ten times slower
UNREGISTER_TIMEOUT = 5.0  # seconds for the port mapper to notice a killed node's name is free

__all__ = [
    "LocalCluster",
    "NodeStartError",
    "drain_mailbox",
    "free_port",
    "kill_portmappers",
    "this_node",
    "wait_until",
]

_LIVE: weakref.WeakSet[LocalCluster] = weakref.WeakSet()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true (returns True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def drain_mailbox() -> list[object]:
    """Every message waiting in the calling thread's mailbox, oldest first, leaving it empty
    (this process must be a node)."""
    import pynode
    from pynode.errors import ReceiveTimeout

    messages: list[object] = []
    while True:
        try:
            messages.append(pynode.receive(timeout=0))
        except ReceiveTimeout:
            return messages


def kill_portmappers(port: int) -> list[str]:
    """Kill every port mapper daemon started on ``port`` by :func:`portmapper.ensure_running`.

    Finds the hosts from the daemons' lock files in the temp directory; returns the hosts whose
    port mapper acknowledged the kill.
    """
    killed = []
    lock_dir = portmapper.daemon_paths("127.0.0.1", port)[0].parent
    for lock in lock_dir.glob(f"pynode-portmapper-*-{port}.lock"):
        host = lock.name[len("pynode-portmapper-") : -len(f"-{port}.lock")]
        with contextlib.suppress(portmapper.PortMapperError):
            portmapper.kill(host, mapper_port=port, timeout=1.0)
            killed.append(host)
    return killed


class LocalCluster:
    """Start, watch and stop real node processes on this machine.

    ``nodes_or_config``: node names (``"a@127.0.0.21"``), :class:`~pynode.launch.NodeSpec`\\ s, a
    path to a cluster TOML file, or a :class:`~pynode.cluster_config.ClusterConfig` (its nodes with
    ``start = false`` are skipped). ``cookie``: the cluster's cookie; default the config's cookie
    source, else a fresh random one (``.cookie`` gives it to the test). ``preload``: modules every
    node imports before it is ready (added to any per-node preload). ``hidden``: names to start
    as hidden nodes. ``epmd_port``: None uses ``PYNODE_EPMD_PORT`` (or the config's port); an int
    (0 picks a free one) gives the cluster its own port mappers, started before the nodes and
    killed by :meth:`stop`. ``env``: extra environment for the node processes. ``ping``: after
    the ready lines, ``Node.ping`` every node from this process (which must be a node).
    ``ticktime``: every node's ``--ticktime`` (default: theirs, ``$PYNODE_TICKTIME`` or 10 s).
    ``connect_all``: False starts every node with ``--no-connect-all`` (no transitive mesh; for
    one node only, give its NodeSpec ``extra_args=("--no-connect-all",)``). A node's own flags (its
    NodeSpec's ``extra_args``, a cluster file's ``ticktime``/``connect_all``) come after these, so
    they win.
    """

    def __init__(
        self,
        nodes_or_config: Sequence[str | NodeSpec] | str | os.PathLike[str] | cluster_config.ClusterConfig,
        *,
        cookie: str | None = None,
        preload: Iterable[str] = (),
        hidden: Iterable[str] = (),
        epmd_port: int | None = None,
        env: Mapping[str, str] | None = None,
        ready_timeout: float = READY_TIMEOUT,
        ping: bool = False,
        ticktime: float | None = None,
        connect_all: bool = True,
    ) -> None:
        config = _as_config(nodes_or_config)
        extra_preload = tuple(preload)
        hidden_names = set(hidden)
        node_args: tuple[str, ...] = ()
        if ticktime is not None:
            node_args += ("--ticktime", repr(float(ticktime)))
        if not connect_all:
            node_args += ("--no-connect-all",)
        self.specs: dict[str, NodeSpec] = {}
        for spec in config.startable:
            self.specs[spec.name] = NodeSpec(
                name=spec.name,
                hidden=spec.hidden or spec.name in hidden_names,
                preload=spec.preload + extra_preload,
                port=spec.port,
                extra_args=node_args + spec.extra_args,
            )
        unknown_hidden = hidden_names - set(self.specs)
        if unknown_hidden:
            raise ValueError(f"hidden names {sorted(unknown_hidden)} are not nodes of this cluster")
        self.owns_epmd = epmd_port is not None
        if epmd_port == 0:
            epmd_port = free_port()
        self.epmd_port: int = epmd_port or config.effective_epmd_port() or portmapper.epmd_port()
        self.cookie: str = config.resolve_cookie(cookie) or secrets.token_hex(16)
        self.ready_timeout = ready_timeout
        self.ping = ping
        self.env = {**os.environ, **(tls.env_for(config.tls) if config.tls else {}), **(env or {})}
        self.env["PYNODE_COOKIE"] = self.cookie
        self.env[portmapper.EPMD_PORT_ENV] = str(self.epmd_port)
        self._log_dir: Path | None = None
        self._procs: dict[str, NodeProcess] = {}
        self._started_epmd_hosts: list[str] = []

    # --- life cycle -----------------------------------------------------------------------
    def start(self) -> LocalCluster:
        """Start every node and wait for all ready lines (and pings, if asked).

        Raises :class:`NodeStartError` naming the node and quoting its stderr when one exits or
        stays silent for ``ready_timeout`` seconds; the whole cluster is stopped first. Raises
        RuntimeError when the cluster is already started.
        """
        if self._log_dir is not None:
            raise RuntimeError(f"{self!r} is already started; stop() it first")
        self._log_dir = Path(tempfile.mkdtemp(prefix="pynode-cluster-"))
        _LIVE.add(self)
        try:
            for host in dict.fromkeys(names.parse(n).host for n in self.specs):
                if portmapper.ensure_running(host, self.epmd_port) and self.owns_epmd:
                    self._started_epmd_hosts.append(host)
            for name, spec in self.specs.items():
                proc = NodeProcess(spec, env=self.env, log_dir=self._log_dir, detached=False)
                proc.spawn()
                self._procs[name] = proc
            deadline = time.monotonic() + self.ready_timeout
            for proc in self._procs.values():
                proc.wait_ready(deadline)
            if self.ping:
                self._ping_all()
        except BaseException:
            self.stop()
            raise
        log.info("cluster up: %s", ", ".join(f"{n} (pid {p.pid})" for n, p in self._procs.items()))
        return self

    def stop(self) -> None:
        """SIGTERM every node, SIGKILL those still alive after a grace period, reap them all;
        kill the port mappers this cluster started. Idempotent."""
        for proc in self._procs.values():
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    proc.proc.terminate()  # type: ignore[union-attr]
        for proc in self._procs.values():
            proc.terminate()
        for host in self._started_epmd_hosts:
            with contextlib.suppress(portmapper.PortMapperError):
                portmapper.kill(host, mapper_port=self.epmd_port, timeout=1.0)
        self._started_epmd_hosts.clear()
        if self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None
        _LIVE.discard(self)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    # --- fault injection ------------------------------------------------------------------
    def kill(self, name: str) -> None:
        """SIGKILL one node (no clean stop, as a crash) and reap it."""
        self._proc(name).kill()

    def restart(self, name: str) -> int:
        """Stop ``name`` if it runs (SIGTERM), start it again and wait for its ready line.

        Returns its new port. Waits first until the port mapper has dropped the old registration,
        so the new incarnation can register the same name.
        """
        proc = self._proc(name)
        proc.terminate()
        host = names.parse(name).host
        alive = names.parse(name).alive
        if not wait_until(
            lambda: portmapper.port_please(host, alive, mapper_port=self.epmd_port) is None,
            UNREGISTER_TIMEOUT,
        ):
            raise NodeStartError(f"port mapper on {host}:{self.epmd_port} still lists {name}")
        proc.spawn()
        return proc.wait_ready(time.monotonic() + self.ready_timeout)

    # --- inspection -----------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """The node names this cluster starts, in order."""
        return list(self.specs)

    def pid(self, name: str) -> int:
        pid = self._proc(name).pid
        if pid is None:
            raise NodeStartError(f"node {name} has not been started")
        return pid

    def port(self, name: str) -> int:
        port = self._proc(name).port
        if port is None:
            raise NodeStartError(f"node {name} is not ready")
        return port

    def alive(self, name: str) -> bool:
        return self._proc(name).alive()

    def stderr(self, name: str) -> str:
        """Everything the node has written to stderr so far (its log)."""
        return self._proc(name).stderr_path.read_text(errors="replace")

    def stdout(self, name: str) -> str:
        return self._proc(name).stdout_path.read_text(errors="replace")

    def _proc(self, name: str) -> NodeProcess:
        try:
            return self._procs[name]
        except KeyError:
            raise KeyError(f"{name!r} is not a started node of this cluster {self.names}") from None

    def _ping_all(self) -> None:
        from pynode import Node  # the caller must itself be a started node

        for name in self._procs:
            if Node.ping(name) != "pong":
                raise NodeStartError(f"node {name} printed its ready line but does not answer ping")

    def __repr__(self) -> str:
        state = {n: ("up" if p.alive() else "down") for n, p in self._procs.items()}
        return f"<LocalCluster {state or self.names} epmd_port={self.epmd_port}>"


@contextlib.contextmanager
def this_node(name: str, **start_args: object) -> Iterator[str]:
    """This process as node ``name`` for the ``with`` block (``Node.start``'s arguments), stopped
    afterwards whatever happens in the block; yields the name. Raises what ``Node.start`` raises."""
    from pynode import Node

    Node.start(name, **start_args)  # type: ignore[arg-type]
    try:
        yield name
    finally:
        Node.stop()


def _as_config(
    source: Sequence[str | NodeSpec] | str | os.PathLike[str] | cluster_config.ClusterConfig,
) -> cluster_config.ClusterConfig:
    if isinstance(source, cluster_config.ClusterConfig):
        return source
    if isinstance(source, (str, os.PathLike)):
        return cluster_config.load(source)
    specs = [item if isinstance(item, NodeSpec) else NodeSpec(str(names.parse(item))) for item in source]
    if len({s.name for s in specs}) != len(specs):
        raise ValueError(f"duplicate node names in {[s.name for s in specs]}")
    return cluster_config.ClusterConfig(nodes=tuple(cluster_config.NodeEntry(s) for s in specs))


@atexit.register
def _stop_all() -> None:
    for cluster in list(_LIVE):
        cluster.stop()

