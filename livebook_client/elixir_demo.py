"""``make demo-elixir``: the seed notebook as Elixir (``examples/seed.exs``) against the Python
exmc node.

``python -m livebook_client.elixir_demo [--config configs/cluster.toml] [--seed N]``

1. Starts the cluster file's exmc node (``exmc@127.0.0.14``, exmc preloaded: it exports
   ``Elixir.Exmc.NUTS.Sampler.sample_chains/3``) with :class:`pynode.testing.LocalCluster`.
2. Makes sure a port mapper answers on 127.0.0.1 (where an Erlang node registers its own name:
   ``erl`` always registers with the port mapper on the loopback address).
3. Runs ``elixir --name livebook_ex@127.0.0.1 --cookie ... examples/seed.exs exmc@127.0.0.14``
   with ``ERL_EPMD_PORT`` set to the cluster's port-mapper port.
4. Stops the cluster and the port mappers started for it, whatever happened.

Exit status: the script's (0 only when it worked), 1 when elixir is missing or the cluster cannot
start, 130 on Ctrl-C.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pynode.testing import LocalCluster

from .cluster_demo import run_with_cluster
from .cluster_roles import ClusterRoles
from .demo import DEFAULT_CONFIG

logger = logging.getLogger(__name__)

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "seed.exs"
ELIXIR_NODE = "livebook_ex@127.0.0.1"
ERLANG_HOST = "127.0.0.1"  # where erl/elixir register their own name


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m livebook_client.elixir_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="cluster configuration (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0, as make demo)")
    args = parser.parse_args(argv)
    elixir = shutil.which("elixir")
    if elixir is None:
        print("elixir_demo: elixir is not installed (apt-get install elixir)", file=sys.stderr)
        return 1

    def run(cluster: LocalCluster, roles: ClusterRoles, epmd_port: int) -> int:
        env = dict(os.environ, ERL_EPMD_PORT=str(epmd_port))
        command = [elixir, "--name", ELIXIR_NODE, "--cookie", cluster.cookie, str(SCRIPT), roles.compute, str(args.seed)]
        return subprocess.run(command, env=env, check=False).returncode

    return run_with_cluster("elixir_demo", args.config, lambda roles: ERLANG_HOST, run, what="examples/seed.exs")


if __name__ == "__main__":
    sys.exit(main())
