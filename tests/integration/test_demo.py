"""`make demo`'s command end to end: a real exmc node from configs/cluster.toml, the demo as the
notebook node, and nothing left running afterwards (also after Ctrl-C).

Each run gets its own port-mapper port, so its processes can be told apart from everything else
on the machine by the ``PYNODE_EPMD_PORT`` in their environment.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from pynode.testing import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "cluster.toml"

# The seed's story, line by line (issue 5), with the values as patterns.
NUMBER = r"(\d+\.\d{3})"
STORY = [
    r"I am: livebook@127\.0\.0\.13",
    r"My peers: \['exmc@127\.0\.0\.14'\]",
    r"exmc connected: true",
    r"Model defined \(10 observations, estimating mu and sigma\)",
    r"Will sample on: exmc@127\.0\.0\.14",
    r"4 chains completed in \d+ms on exmc@127\.0\.0\.14",
    r"Chains returned: 4",
    rf" Chain 1: mu={NUMBER}, sigma={NUMBER}",
    rf" Chain 2: mu={NUMBER}, sigma={NUMBER}",
    rf" Chain 3: mu={NUMBER}, sigma={NUMBER}",
    rf" Chain 4: mu={NUMBER}, sigma={NUMBER}",
    r"Pooled posterior \(4000 total samples across 4 chains\):",
    rf"mu: {NUMBER} ± {NUMBER}",
    rf"sigma: {NUMBER}",
    r"Computed on: exmc@127\.0\.0\.14",
    r"Displayed on: livebook@127\.0\.0\.13",
    r"Transport: erpc over rpyc \(loopback\)",
]

# How long the whole demo may take on a loaded 2-core box (cold pool, 4 × 1500 iterations).
DEMO_TIMEOUT = 120


def demo_env(tmp_path: Path) -> tuple[dict[str, str], int]:
    port = free_port()
    env = dict(os.environ, PYNODE_EPMD_PORT=str(port), HOME=str(tmp_path))
    env.pop("PYNODE_COOKIE", None)  # the config's cookie file (created under HOME) is the source
    return env, port


def processes_of(port: int) -> list[psutil.Process]:
    """Every process started for a run that used port-mapper port ``port``."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("PYNODE_EPMD_PORT") == str(port) and process.pid != os.getpid():
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def test_make_demo_prints_the_seed_story_and_leaves_nothing_behind(tmp_path):
    env, port = demo_env(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "livebook_client.cluster_demo", "--config", str(CONFIG), "--no-progress"],
        env=env, capture_output=True, text=True, timeout=DEMO_TIMEOUT, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) > len(STORY), result.stdout
    values = []
    for line, pattern in zip(lines, STORY):
        match = re.fullmatch(pattern, line)
        assert match, f"{line!r} does not match {pattern!r}\n{result.stdout}"
        values.append([float(group) for group in match.groups()])
    chain_mu = [chain[0] for chain in values[7:11]]
    (mu, mu_sd), (sigma,) = values[12], values[13]
    # PyMC on the same model: mu 2.253 ± 0.115, sigma 0.357. The MCSE of each posterior mean is
    # ~0.003 with ~2000 effective draws (per chain ~0.005); the bounds are > 5 MCSE wide.
    assert abs(mu - 2.253) < 0.02 and abs(mu_sd - 0.115) < 0.01 and abs(sigma - 0.357) < 0.02
    assert all(abs(m - 2.253) < 0.04 for m in chain_mu)
    rest = "\n".join(lines[len(STORY):])
    assert re.search(r"r_hat", rest) and re.search(r"ess_bulk", rest)
    assert "Sampler warnings: none" in rest or "warning:" in rest
    assert wait_until(lambda: not processes_of(port), timeout=5), processes_of(port)


def test_make_demo_stops_everything_on_ctrl_c(tmp_path):
    env, port = demo_env(tmp_path)
    runner = subprocess.Popen(
        [sys.executable, "-m", "livebook_client.cluster_demo", "--config", str(CONFIG),
         "--no-progress", "--draws", "1000000"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        for line in runner.stdout:
            if line.startswith("Will sample on:"):
                break
        time.sleep(0.5)  # sampling is under way on the exmc node
        running = processes_of(port)
        assert len(running) >= 3, running  # the exmc node, its port mapper, the demo (at least)
        runner.send_signal(signal.SIGINT)
        status = runner.wait(timeout=30)
        stderr = runner.stderr.read()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert status == 130, stderr
    assert "interrupted" in stderr
    assert wait_until(lambda: not processes_of(port), timeout=15), processes_of(port)
