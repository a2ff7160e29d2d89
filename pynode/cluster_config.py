"""Cluster descriptions in TOML (``configs/cluster.toml``), read by LocalCluster and the CLI.

Format::

    [cluster]
    epmd_port = 4369                    # optional; PYNODE_EPMD_PORT overrides it
    cookie_file = "~/.pynode.cookie"    # optional cookie source; PYNODE_COOKIE overrides it
    ticktime = 10.0                     # optional, every node's --ticktime (pynode.ticks)
    connect_all = true                  # optional; false: every node gets --no-connect-all

    [[node]]
    name = "exmc@127.0.0.14"            # required, alive@host
    hidden = false                      # optional
    preload = ["exmc"]                  # optional modules imported before the node is ready
    port = 0                            # optional listening port (0: any free port)
    start = true                        # optional; false: described but started by someone else
                                        # (e.g. the notebook process that becomes this node)
    ticktime = 5.0                      # optional; overrides [cluster] ticktime for this node
    connect_all = false                 # optional; overrides [cluster] connect_all

    [tls]                               # optional: every node of the cluster speaks TLS
    certfile = "tls/node.pem"           # paths relative to this file (`pynode tls init tls`)
    keyfile = "tls/node.key"
    cafile = "tls/ca.pem"
    verify_peer = true                  # optional
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynode import cookie as cookie_mod
from pynode import names
from pynode import tls as tls_mod
from pynode.errors import BadNodeName, ClusterConfigError
from pynode.launch import NodeSpec
from pynode.portmapper import EPMD_PORT_ENV, epmd_port
from pynode.ticks import resolve_ticktime

_NODE_FLAGS = {"ticktime", "connect_all"}  # settable for the whole cluster and per node
_CLUSTER_KEYS = {"epmd_port", "cookie_file"} | _NODE_FLAGS
_NODE_KEYS = {"name", "hidden", "preload", "port", "start"} | _NODE_FLAGS
_TLS_KEYS = {"certfile", "keyfile", "cafile", "verify_peer"}


@dataclass(frozen=True)
class NodeEntry:
    spec: NodeSpec
    start: bool = True


@dataclass(frozen=True)
class ClusterConfig:
    """A parsed cluster description; see the module docstring for the file format."""

    nodes: tuple[NodeEntry, ...]
    epmd_port: int | None = None
    cookie_file: Path | None = None
    source: Path | None = None
    tls: tls_mod.TLS | None = None  # the [tls] table: every node speaks TLS with these files

    @property
    def startable(self) -> list[NodeSpec]:
        """The nodes to launch (those without ``start = false``), in file order."""
        return [entry.spec for entry in self.nodes if entry.start]

    def effective_epmd_port(self) -> int | None:
        """``PYNODE_EPMD_PORT`` if set (it overrides the file), else the file's value."""
        return epmd_port() if os.environ.get(EPMD_PORT_ENV) else self.epmd_port

    def resolve_cookie(self, override: str | None = None) -> str | None:
        """The cluster's cookie: ``override``, else ``PYNODE_COOKIE``, else the cookie file.

        Returns None when none of these is given (nodes then use their own default,
        ``~/.pynode.cookie``). Raises :class:`pynode.errors.CookieError` when the cookie file is
        unusable (missing, empty, or readable by group or others); the default file
        ``~/.pynode.cookie`` is created when missing, as ``Node.start`` does.
        """
        if override is not None or os.environ.get(cookie_mod.COOKIE_ENV) is not None:
            return cookie_mod.resolve(override)
        if self.cookie_file is None:
            return None
        if self.cookie_file == cookie_mod.default_cookie_path():
            return cookie_mod.resolve(None)
        return cookie_mod.read_cookie_file(self.cookie_file)


def load(path: str | os.PathLike[str]) -> ClusterConfig:
    """Read and validate a cluster file; raises :class:`ClusterConfigError` naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ClusterConfigError(f"cannot read cluster file {str(path)!r}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ClusterConfigError(f"cluster file {str(path)!r} is not valid TOML: {exc}") from exc
    return parse(data, str(path))


def parse(data: dict[str, Any], where: str = "<cluster config>") -> ClusterConfig:
    """Validate an already-parsed TOML document (see :func:`load`)."""
    unknown = set(data) - {"cluster", "node", "tls"}
    if unknown:
        raise ClusterConfigError(f"{where}: unknown top-level keys {sorted(unknown)}")
    cluster = data.get("cluster", {})
    _check_keys(cluster, _CLUSTER_KEYS, f"{where}: [cluster]")
    epmd_port = cluster.get("epmd_port")
    if epmd_port is not None and not (isinstance(epmd_port, int) and 0 < epmd_port < 65536):
        raise ClusterConfigError(f"{where}: [cluster] epmd_port {epmd_port!r} is not a port number")
    cookie_file = cluster.get("cookie_file")
    if cookie_file is not None and not isinstance(cookie_file, str):
        raise ClusterConfigError(f"{where}: [cluster] cookie_file must be a path string")
    defaults = {key: cluster[key] for key in _NODE_FLAGS if key in cluster}
    nodes = tuple(
        _node({**defaults, **entry} if isinstance(entry, dict) else entry, f"{where}: [[node]] #{i + 1}")
        for i, entry in enumerate(data.get("node", []))
    )
    if not nodes:
        raise ClusterConfigError(f"{where}: no [[node]] entries")
    seen: set[str] = set()
    for entry in nodes:
        if entry.spec.name in seen:
            raise ClusterConfigError(f"{where}: node {entry.spec.name!r} is listed twice")
        seen.add(entry.spec.name)
    source = Path(where) if where != "<cluster config>" else None
    return ClusterConfig(
        nodes=nodes,
        epmd_port=epmd_port,
        cookie_file=Path(cookie_file).expanduser() if cookie_file else None,
        source=source,
        tls=_tls(data.get("tls"), f"{where}: [tls]", source.parent if source else Path.cwd()),
    )


def _tls(table: Any, where: str, base: Path) -> tls_mod.TLS | None:
    """The [tls] table: three paths (relative ones to the cluster file's folder), verify_peer."""
    if table is None:
        return None
    _check_keys(table, _TLS_KEYS, where)
    paths = {}
    for key in ("certfile", "keyfile", "cafile"):
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise ClusterConfigError(f"{where} needs {key} as a path string")
        paths[key] = str(base / Path(value).expanduser())
    verify = table.get("verify_peer", True)
    if not isinstance(verify, bool):
        raise ClusterConfigError(f"{where} verify_peer must be true or false")
    return tls_mod.TLS(paths["certfile"], paths["keyfile"], paths["cafile"], verify)


def _node(entry: Any, where: str) -> NodeEntry:
    if not isinstance(entry, dict):
        raise ClusterConfigError(f"{where} must be a table")
    _check_keys(entry, _NODE_KEYS, where)
    if "name" not in entry:
        raise ClusterConfigError(f"{where} has no name")
    try:
        name = str(names.parse(entry["name"]))
    except BadNodeName as exc:
        raise ClusterConfigError(f"{where}: {exc}") from None
    preload = entry.get("preload", [])
    if not (isinstance(preload, list) and all(isinstance(m, str) for m in preload)):
        raise ClusterConfigError(f"{where} ({name}): preload must be a list of module names")
    port = entry.get("port", 0)
    if not (isinstance(port, int) and 0 <= port < 65536):
        raise ClusterConfigError(f"{where} ({name}): port {port!r} is not a port number")
    for flag in ("hidden", "start"):
        if not isinstance(entry.get(flag, False), bool):
            raise ClusterConfigError(f"{where} ({name}): {flag} must be true or false")
    if not isinstance(entry.get("connect_all", True), bool):
        raise ClusterConfigError(f"{where} ({name}): connect_all must be true or false")
    args: tuple[str, ...] = ()
    if "ticktime" in entry:
        try:
            args += ("--ticktime", repr(resolve_ticktime(entry["ticktime"])))
        except ValueError as exc:
            raise ClusterConfigError(f"{where} ({name}): {exc}") from None
    if not entry.get("connect_all", True):
        args += ("--no-connect-all",)
    spec = NodeSpec(name=name, hidden=entry.get("hidden", False), preload=tuple(preload), port=port, extra_args=args)
    return NodeEntry(spec=spec, start=entry.get("start", True))


def _check_keys(table: Any, allowed: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise ClusterConfigError(f"{where} must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise ClusterConfigError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
