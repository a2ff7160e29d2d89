"""``make demo``: start the exmc node, run the seed demo as the notebook node, stop everything.

``python -m livebook_client.cluster_demo [--config configs/cluster.toml] [DEMO OPTIONS...]``

1. Starts the nodes of the cluster file that this side starts (``exmc@127.0.0.14``, a real
   separate process with exmc preloaded and its pool warm) with :class:`pynode.testing.LocalCluster`,
   which owns the port mappers it had to start.
2. Runs ``python -m livebook_client.demo`` as the notebook node (``livebook@127.0.0.13``) with the
   cluster's cookie and port-mapper port; any option this script does not know goes to the demo
   (``--chains``, ``--draws``, ``--no-progress``...).
3. Stops the cluster and the port mappers started for it, whatever happened: on success, on a
   failing demo, on Ctrl-C (the demo first cancels its remote sampling), on SIGTERM.

Exit status: the demo's (0 only when it worked), 1 when the cluster cannot start, 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from pynode import names, portmapper
from pynode.errors import PynodeError
from pynode.testing import LocalCluster

from .cluster_roles import ClusterRoles, load_roles
from .demo import DEFAULT_CONFIG, EXIT_INTERRUPTED

logger = logging.getLogger(__name__)

# Seconds the demo gets to cancel its remote sampling and stop its node after Ctrl-C before it
# is killed: cancelling takes a round trip and a pool rebuild, well under a second.
DEMO_STOP_GRACE = 10.0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run_demo(config: Path, demo_args: Sequence[str], env: dict[str, str]) -> int:
    """Run the demo process; on Ctrl-C let it cancel and exit before giving up on it."""
    child = subprocess.Popen([sys.executable, "-m", "livebook_client.demo", "--config", str(config),
                              *demo_args], env=env)
    try:
        return child.wait()
    except KeyboardInterrupt:
        # A terminal's Ctrl-C reaches the whole process group; a SIGTERM or a `kill -INT` of this
        # process alone does not, so pass it on.
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
        try:
            child.wait(DEMO_STOP_GRACE)
        except subprocess.TimeoutExpired:
            logger.warning("demo did not stop within %.0f s of Ctrl-C; killing it", DEMO_STOP_GRACE)
            child.kill()
            child.wait()
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m livebook_client.cluster_demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="cluster configuration (default: %(default)s)")
    args, demo_args = parser.parse_known_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    return run_with_cluster(
        "cluster_demo", args.config, lambda roles: names.parse(roles.notebook).host,
        lambda cluster, roles, epmd_port: _run_demo(args.config, demo_args, dict(
            os.environ, PYNODE_COOKIE=cluster.cookie, **{portmapper.EPMD_PORT_ENV: str(epmd_port)})),
        what="the demo",
    )


def run_with_cluster(prog: str, config: Path, mapper_host: Callable[[ClusterRoles], str],
                     run: Callable[[LocalCluster, ClusterRoles, int], int], what: str) -> int:
    """Start the cluster of ``config``, make sure a port mapper answers on ``mapper_host(roles)``
    (the host of the client that ``run`` starts), return ``run(cluster, roles, epmd_port)``'s
    exit status; stop the cluster and any port mapper started here whatever happens.

    Failure modes, each an exit status with a line on stderr naming ``prog``: 1 when the config
    cannot be read or the cluster cannot start (PynodeError, OSError, ValueError), 130 on Ctrl-C
    (or SIGTERM turned into it), ``run``'s own non-zero status (``what`` failed)."""
    cluster: LocalCluster | None = None
    started_mapper_on: str | None = None
    epmd_port = portmapper.epmd_port()
    try:
        roles = load_roles(config)
        epmd_port = roles.epmd_port or epmd_port
        cluster = LocalCluster(config, epmd_port=epmd_port)
        print(f"{prog}: starting {', '.join(cluster.names)} from {config}", file=sys.stderr)
        cluster.start()
        host = mapper_host(roles)
        if portmapper.ensure_running(host, epmd_port):
            started_mapper_on = host
        status = run(cluster, roles, epmd_port)
        if status != 0:
            print(f"{prog}: {what} failed (exit status {status})", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; stopping the cluster", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (PynodeError, OSError, ValueError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
        if started_mapper_on is not None:
            try:
                portmapper.kill(started_mapper_on, mapper_port=epmd_port, timeout=1.0)
            except PynodeError:
                logger.warning("could not stop the port mapper on %s", started_mapper_on,
                               exc_info=True)

if __name__ == "__main__":
    sys.exit(main())
