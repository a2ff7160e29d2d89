"""The seed demo: a notebook node ships the seed model to the exmc node and prints the story.

``python -m livebook_client.demo`` (console script ``livebook-demo``). The exmc node must be
running already (``make demo`` starts it, see :mod:`livebook_client.cluster_demo`). This process
becomes the notebook node named in the cluster configuration, connects, samples remotely with
live progress, and prints the lines of :mod:`livebook_client.demo_story`, then the summary
table (R-hat, ESS) and any sampler warnings.

Exit status: 0 when the story ran to the end; 1 when the exmc node cannot be reached or is
unusable (the reason goes to stderr); 130 on Ctrl-C (after cancelling the remote sampling).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from pynode.errors import PynodeError

from . import demo_story
from .cluster_roles import ClusterRoles, load_roles
from .errors import LivebookClientError

logger = logging.getLogger(__name__)

# The seed's ten observations, verbatim.
SEED_OBSERVATIONS = np.array([2.1, 2.5, 1.8, 2.3, 2.7, 1.9, 2.4, 2.2, 2.6, 2.0])

DEFAULT_CONFIG = Path("configs/cluster.toml")

# The seed's sampling call: sample_chains(ir, 4, num_samples=1000, num_warmup=500).
DEFAULT_CHAINS = 4
DEFAULT_DRAWS = 1000
DEFAULT_WARMUP = 500
DEFAULT_SEED = 0

# The seed's erpc.call(..., timeout=60).
SAMPLE_TIMEOUT = 60.0

EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT


def seed_model(observations: np.ndarray = SEED_OBSERVATIONS) -> Any:
    """The seed's model, written as the seed writes it: mu ~ N(0, 10), sigma ~ HalfN(2), y ~ N."""
    from exmc import Builder, Dist

    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0})
    ir = Builder.rv(ir, "sigma", Dist.HalfNormal, {"sigma": 2.0})
    ir = Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigma"})
    return Builder.obs(ir, "y_obs", "y", observations)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="livebook-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="cluster configuration (default: %(default)s)")
    parser.add_argument("--target", help="compute node (default: the exmc node of the config)")
    parser.add_argument("--chains", type=int, default=DEFAULT_CHAINS,
                        help="number of chains (default: %(default)s)")
    parser.add_argument("--draws", type=int, default=DEFAULT_DRAWS,
                        help="samples per chain (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP,
                        help="warmup iterations per chain (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="sampler seed (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, roles: ClusterRoles, out: TextIO) -> None:
    """Tell the story on ``out``. Raises what attaching and sampling raise."""
    from pynode import Node, portmapper

    from .session import attach, is_loopback

    def say(lines: list[str]) -> None:
        for line in lines:
            print(line, file=out, flush=True)

    target = args.target or roles.compute
    if roles.epmd_port is not None:  # the file's port mapper port, unless PYNODE_EPMD_PORT says otherwise
        os.environ.setdefault(portmapper.EPMD_PORT_ENV, str(roles.epmd_port))
    Node.start(roles.notebook, cookie=roles.cookie)
    try:
        connected = Node.connect(target)
        say(demo_story.node_lines(Node.self(), Node.list(), connected))
        if not connected:
            raise LivebookClientError(f"cannot connect to {target}: is it running (make demo "
                                      f"starts it) and does it share the cookie of {args.config}?")
        session = attach(target)
        ir = seed_model()
        import exmc

        free = [name for name, _shape in exmc.compile(ir).free_names]
        observed = sum(obs.value.size for obs in ir.observations().values())
        say(demo_story.model_lines(observed, free, session.node))
        started = time.perf_counter()
        chains = session.sample(ir, args.chains, num_samples=args.draws, num_warmup=args.warmup,
                                seed=args.seed, progress=not args.no_progress, timeout=SAMPLE_TIMEOUT)
        elapsed_ms = 1000 * (time.perf_counter() - started)
        say(demo_story.result_lines(chains, elapsed_ms=elapsed_ms, computed_on=session.node,
                                    displayed_on=Node.self(), loopback=is_loopback(session.node),
                                    names=free))
        say(demo_story.diagnostics_lines(chains.summary(), chains.warnings()))
    finally:
        Node.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``livebook-demo``; returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        roles = load_roles(args.config)
        run(args, roles, sys.stdout)
    except KeyboardInterrupt:
        print("interrupted: remote sampling cancelled", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (LivebookClientError, PynodeError, ConnectionError, TimeoutError, OSError) as error:
        print(f"livebook-demo: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
