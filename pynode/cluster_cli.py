"""``pynode cluster up|down CONFIG``: the nodes of a cluster file as detached processes.

``up`` starts every node of the file (except ``start = false`` ones) in its own session, so the
nodes outlive the shell, waits for their ready lines, and records their pids, ports and log files
in ``STATE_DIR/state.json``. ``down`` reads that file, stops the nodes (SIGTERM, then SIGKILL after a
grace period; a pid is signalled only while its command line is still that node's, so a reused
pid is never hit) and kills the port mappers ``up`` started. The state directory defaults to one
per cluster file in the temp directory; ``--state-dir`` overrides it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

from pynode import cluster_config, names, portmapper, tls
from pynode.errors import ClusterStateError
from pynode.launch import STOP_GRACE, NodeProcess

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
READY_TIMEOUT = 120.0  # seconds for `up`: preload hooks (exmc's warm pool) may take a while
POLL = 0.05  # seconds between checks that a stopped node has exited


def default_state_dir(config_path: Path) -> Path:
    """``$TMPDIR/pynode-cluster-<file stem>-<hash of its absolute path>``."""
    digest = hashlib.sha256(str(config_path.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"pynode-cluster-{config_path.stem}-{digest}"


def run(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(config_path)
    if args.action == "up":
        up(cluster_config.load(config_path), state_dir)
    else:
        down(state_dir)
    return 0


def up(config: cluster_config.ClusterConfig, state_dir: Path, ready_timeout: float = READY_TIMEOUT) -> dict:
    """Start the cluster's nodes detached; returns the recorded state (see the module docstring).

    Raises :class:`ClusterStateError` when ``state_dir`` records nodes that still run, and
    :class:`pynode.errors.NodeStartError` (after stopping the nodes already started) when a node
    does not come up.
    """
    state_file = state_dir / STATE_FILE
    if state_file.exists():
        running = [n["name"] for n in _read_state(state_file)["nodes"] if _is_our_node(n["pid"], n["name"])]
        if running:
            raise ClusterStateError(
                f"cluster in {state_dir} is already up ({', '.join(running)}); run `pynode cluster down` first"
            )
    state_dir.mkdir(parents=True, exist_ok=True)
    mapper_port = config.effective_epmd_port() or portmapper.epmd_port()
    env = dict(os.environ)
    if config.tls is not None:
        env.update(tls.env_for(config.tls))
    env[portmapper.EPMD_PORT_ENV] = str(mapper_port)
    cookie = config.resolve_cookie()
    if cookie is not None:
        env["PYNODE_COOKIE"] = cookie
    started_mappers = [
        host
        for host in dict.fromkeys(names.parse(spec.name).host for spec in config.startable)
        if portmapper.ensure_running(host, mapper_port)
    ]
    procs = [NodeProcess(spec, env=env, log_dir=state_dir, detached=True) for spec in config.startable]
    for proc in procs:
        proc.spawn()
    try:
        deadline = time.monotonic() + ready_timeout
        for proc in procs:
            proc.wait_ready(deadline)
    except BaseException:
        for proc in procs:
            proc.terminate()
        raise
    state = {
        "config": str(config.source) if config.source else None,
        "epmd_port": mapper_port,
        "started_port_mappers": started_mappers,
        "nodes": [
            {
                "name": p.spec.name,
                "pid": p.pid,
                "port": p.port,
                "stdout": str(p.stdout_path),
                "stderr": str(p.stderr_path),
            }
            for p in procs
        ],
    }
    state_file.write_text(json.dumps(state, indent=2))
    for node in state["nodes"]:
        print(f"pynode: {node['name']} up (pid {node['pid']}, port {node['port']}, log {node['stderr']})")
    print(f"pynode: state in {state_file}; stop with `pynode cluster down`", flush=True)
    return state


def down(state_dir: Path, grace: float = STOP_GRACE) -> list[str]:
    """Stop the nodes recorded in ``state_dir`` and the port mappers ``up`` started.

    Returns the names of the nodes that were still running. Raises :class:`ClusterStateError`
    when there is no state file.
    """
    state_file = state_dir / STATE_FILE
    if not state_file.exists():
        raise ClusterStateError(f"no cluster state in {state_dir}: is the cluster up?")
    state = _read_state(state_file)
    running = [n for n in state["nodes"] if _is_our_node(n["pid"], n["name"])]
    for node in running:
        _signal(node["pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(_is_our_node(n["pid"], n["name"]) for n in running) and time.monotonic() < deadline:
        time.sleep(POLL)
    for node in running:
        if _is_our_node(node["pid"], node["name"]):
            log.warning("%s (pid %d) ignored SIGTERM; killing it", node["name"], node["pid"])
            _signal(node["pid"], signal.SIGKILL)
    for node in running:
        print(f"pynode: {node['name']} stopped", flush=True)
    for host in state["started_port_mappers"]:
        try:
            portmapper.kill(host, mapper_port=state["epmd_port"], timeout=1.0)
        except portmapper.PortMapperError as exc:
            log.info("port mapper on %s already gone: %s", host, exc)
    shutil.rmtree(state_dir, ignore_errors=True)
    return [n["name"] for n in running]


def _read_state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ClusterStateError(f"cannot read cluster state {path}: {exc}") from exc


def _is_our_node(pid: int, name: str) -> bool:
    """True while ``pid`` runs ``pynode start NAME`` (not a zombie, not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if status.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return b"start" in cmdline and name.encode() in cmdline


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
