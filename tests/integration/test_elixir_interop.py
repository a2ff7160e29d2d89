"""Elixir nodes (``elixir --name ... --cookie ...`` scripts) against a Python exmc node started by
LocalCluster, through a real epmd: the seed notebook as Elixir (examples/seed.exs) and the calls a
Livebook user makes. Skipped without elixir."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from beam_nodes import ELIXIR, needs_elixir, real_epmd
from pynode.testing import LocalCluster

pytestmark = needs_elixir

ROOT = Path(__file__).resolve().parents[2]
SEED_SCRIPT = ROOT / "examples" / "seed.exs"
CALLS_SCRIPT = Path(__file__).parent / "elixir" / "calls.exs"
COOKIE = "p12-elixir-cookie"
EXMC = "exmc@127.0.4.11"
HOSTS = ["127.0.4.11", "127.0.4.12"]
SCRIPT_TIMEOUT = 240


@pytest.fixture(scope="module")
def exmc_node() -> Iterator[int]:
    saved = os.environ.get("PYNODE_EPMD_PORT")
    with real_epmd(HOSTS) as port:
        os.environ["PYNODE_EPMD_PORT"] = str(port)
        cluster = LocalCluster([EXMC], cookie=COOKIE, preload=["exmc"], env={"PYNODE_EPMD_PORT": str(port)})
        try:
            cluster.start()
            yield port
        finally:
            cluster.stop()
            if saved is None:
                os.environ.pop("PYNODE_EPMD_PORT", None)
            else:
                os.environ["PYNODE_EPMD_PORT"] = saved


def run_elixir(port: int, name: str, script: Path, *args: str) -> str:
    env = dict(os.environ, ERL_EPMD_PORT=str(port))
    done = subprocess.run(
        [ELIXIR, "--name", name, "--cookie", COOKIE, str(script), *args],  # type: ignore[list-item]
        env=env, capture_output=True, text=True, timeout=SCRIPT_TIMEOUT,
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_seed_notebook_in_elixir_matches_the_python_demo(exmc_node):
    out = run_elixir(exmc_node, "seed@127.0.4.12", SEED_SCRIPT, EXMC, "3")
    assert "exmc connected: true" in out and "Chains returned: 4" in out
    printed = [tuple(map(float, m)) for m in re.findall(r"Chain \d: mu=([\d.]+), sigma=([\d.]+)", out)]
    assert len(printed) == 4
    pooled = re.search(r"mu: ([\d.]+) ± ([\d.]+)", out)
    assert pooled is not None

    # The Python demo's call, here in this process, one chain after another (the pool and the
    # sequential mode give identical draws for a seed): the same numbers, not just close ones.
    from exmc.nuts import Sampler
    from livebook_client.demo import seed_model

    chains = Sampler.sample_chains(seed_model(), 4, num_samples=1000, num_warmup=500, seed=3, parallel=False)
    expected = [(round(float(np.mean(c["mu"])), 3), round(float(np.mean(c["sigma"])), 3)) for c in chains]
    assert printed == expected
    all_mu = np.concatenate([c["mu"] for c in chains])
    assert float(pooled.group(1)) == round(float(all_mu.mean()), 3)
    assert float(pooled.group(2)) == round(float(all_mu.std(ddof=1)), 3)
    # and within the posterior's Monte Carlo error of the analytic neighbourhood of the data mean
    mcse = all_mu.std(ddof=1) / np.sqrt(400)  # ESS of 4000 NUTS draws of this model is >= 400
    assert abs(all_mu.mean() - 2.25) < 5 * mcse + 0.05


def test_elixir_calls_a_python_node(exmc_node):
    out = run_elixir(exmc_node, "calls@127.0.4.12", CALLS_SCRIPT, EXMC)
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert lines["ping"] == ":pong"
    assert lines["call"] == "42"
    assert lines["multicall"] == "[ok: 4.0, ok: 4.0]"
    assert lines["rpc"] == "42"
    assert lines["cast"] == ":ok"
    assert lines["exception"] == '{:ValueError, "math domain error"}'
    assert lines["validation"].startswith('{:"exmc.errors.ValidationError", "rv \'mu\' dist: unknown distribution \'Nromal\'')
    assert lines["timeout"] == "{:erpc, :timeout}"
    assert lines["spawn_down"] == f'{{:"{EXMC}", :normal}}'
    assert lines["binary_draws"] == "{160, true}"  # 20 little-endian f64 for Nx.from_binary
    assert lines["monitoring"] == f'[:"{EXMC}"]'
