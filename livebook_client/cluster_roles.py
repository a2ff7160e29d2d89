"""Who is who in a cluster file: the notebook node, the compute node, the cookie.

The file format is pynode's (:mod:`pynode.cluster_config`). The notebook node is the first node
marked ``start = false`` (the process that becomes it is started by someone else: the demo, a
notebook kernel); the compute node is the first started node that preloads exmc, else the first
started node.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pynode import cluster_config

from .errors import ConfigError


@dataclass(frozen=True)
class ClusterRoles:
    """The names and cookie the demo needs; ``cookie`` None means pynode's default sources."""

    notebook: str
    compute: str
    cookie: str | None
    epmd_port: int | None
    source: Path


def roles_of(config: cluster_config.ClusterConfig, source: Path) -> ClusterRoles:
    """Pick the roles out of a parsed cluster file; :class:`ConfigError` names what is missing."""
    notebook = [entry.spec.name for entry in config.nodes if not entry.start]
    started = config.startable
    if not notebook:
        raise ConfigError(f"{source}: no node with 'start = false' to be the notebook node")
    if not started:
        raise ConfigError(f"{source}: no started node to be the compute node")
    compute = next((spec.name for spec in started if "exmc" in spec.preload), started[0].name)
    return ClusterRoles(notebook=notebook[0], compute=compute, cookie=config.resolve_cookie(),
                        epmd_port=config.effective_epmd_port(), source=source)


def load_roles(path: str | os.PathLike[str]) -> ClusterRoles:
    """Read ``path`` and pick the roles. Raises ``pynode.cluster_config.ClusterConfigError`` for an
    unreadable or invalid file, :class:`ConfigError` when a role is missing."""
    path = Path(path)
    return roles_of(cluster_config.load(path), path)
