"""livebook_client against a real exmc node process: progress, cancel, crash, cookies, magics.

One exmc node (a ``pynode start`` process with exmc preloaded) serves the whole module; this test
process is the client node. Sampling runs are sized to take about a second on a loaded 2-core box.
"""
from __future__ import annotations

import _thread
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from process_watch import busy_descendants, gone, wait_for_busy

import exmc
import pynode
from livebook_client import AttachError, IncompatibleNode, attach
from livebook_client.demo import seed_model
from pynode import Node
from pynode.errors import ErpcTimeout, NoConnection
from pynode.testing import LocalCluster, wait_until

COMPUTE = "exmc@127.0.0.54"
CLIENT = "livebook_test@127.0.0.53"

# A sampling run that cannot finish during a test: the test interrupts or kills it.
ENDLESS = dict(chains=2, num_samples=1_000_000, num_warmup=500)


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster([COMPUTE], preload=["exmc"]) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def session(cluster):
    Node.start(CLIENT, cookie=cluster.cookie, hidden=True)
    try:
        session = attach(COMPUTE)
        # Warm the node's chain pool, so that timings below are of sampling, not of pool start.
        session.sample(seed_model(), chains=2, num_samples=10, num_warmup=10, progress=False)
        yield session
    finally:
        Node.stop()


class Recorder:
    """A progress display that remembers when each update arrived."""

    def __init__(self):
        self.updates = []
        self.completed = None

    def update(self, progress):
        self.updates.append((time.monotonic(), progress))

    def close(self, *, completed):
        self.completed = completed


def test_attach_reports_the_node_and_its_exmc(session, cluster):
    assert session.node == COMPUTE
    assert session.versions["exmc"] == exmc.__version__
    assert session.call(lambda: __import__("os").getpid()) == cluster.pid(COMPUTE)


def test_progress_arrives_during_sampling_not_after(session):
    recorder = Recorder()
    pynode.send(pynode.self_pid(), "not progress")
    started = time.monotonic()
    chains = session.sample(seed_model(), chains=2, num_samples=1500, num_warmup=1000,
                            progress=recorder)
    finished = time.monotonic()
    assert pynode.receive(timeout=1) == "not progress"  # other mail survives the sampling
    assert len(chains) == 2 and recorder.completed is True
    assert chains[0]["mu"].shape == (1500,) and chains[1]["sigma"].min() > 0
    assert {t.info["node"] for t in chains} == {COMPUTE} and all(t.info["worker"] > 0 for t in chains)
    times = [at for at, _ in recorder.updates]
    assert {progress.chain for _, progress in recorder.updates} == {0, 1}
    # The first update comes early and the updates spread over the run (throttled to ~10/s).
    assert times[0] - started < 0.5 * (finished - started)
    assert times[-1] - times[0] > 0.3 * (finished - started)
    for chain in (0, 1):
        done = [progress.done for _, progress in recorder.updates if progress.chain == chain]
        assert done == sorted(done) and done[-1] == 2500
        assert len(done) >= 3


def test_ctrl_c_cancels_remote_sampling_and_the_node_keeps_serving(session, cluster):
    node_pid = cluster.pid(COMPUTE)
    workers: list[psutil.Process] = []

    def interrupt_once_sampling():
        workers.extend(wait_for_busy(node_pid))
        _thread.interrupt_main()  # what Ctrl-C does to the waiting main thread

    threading.Thread(target=interrupt_once_sampling, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        session.sample(seed_model(), progress=False, **ENDLESS)
    assert time.monotonic() - started < 30, "the interrupt was not delivered while sampling"
    assert workers, "no busy chain worker was seen under the exmc node"
    assert wait_until(lambda: gone(workers), timeout=5), f"workers still running: {workers}"
    assert busy_descendants(node_pid) == []
    chains = session.sample(seed_model(), chains=2, num_samples=200, num_warmup=200, progress=False)
    assert len(chains) == 2


def test_sampling_timeout_raises_promptly_and_stops_the_chains(session, cluster):
    started = time.monotonic()
    with pytest.raises(ErpcTimeout, match=f"sampling on {COMPUTE} did not finish within 1.5 s"):
        session.sample(seed_model(), progress=Recorder(), timeout=1.5, **ENDLESS)
    assert time.monotonic() - started < 3.0
    assert wait_until(lambda: busy_descendants(cluster.pid(COMPUTE)) == [], timeout=5)


def test_remote_cell_magic_runs_on_the_node(session, cluster, ipython_shell):
    shell = ipython_shell
    shell.extension_manager.load_extension("livebook_client")
    shell.user_ns["data"] = np.arange(4)
    attached = shell.run_line_magic("attach", COMPUTE)
    assert attached.node == COMPUTE
    result = shell.run_cell_magic("remote", "", "import os\nscaled = data * 2\n(os.getpid(), int(scaled.sum()))")
    assert result == (cluster.pid(COMPUTE), 12)


def test_wrong_cookie_is_a_clear_attach_error(cluster):
    code = f"import livebook_client; livebook_client.attach({COMPUTE!r}, cookie='not-the-cookie')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("livebook_client.errors.AttachError:")
    assert f"attach('{COMPUTE}') failed" in last_line and "refused our cookie" in last_line


def test_attach_to_a_node_that_does_not_run_names_it(session):
    with pytest.raises(AttachError, match="nobody@127.0.0.54"):
        attach("nobody@127.0.0.54")


def test_attach_refuses_another_exmc_version(session, monkeypatch):
    monkeypatch.setattr(exmc, "__version__", "9.9.0")
    with pytest.raises(IncompatibleNode, match=r"runs exmc 0\.1\.\d+, this client has exmc 9\.9\.0"):
        attach(COMPUTE)


def test_killed_node_fails_the_sampling_at_once_and_a_restart_serves_again(session, cluster):
    node_pid = cluster.pid(COMPUTE)
    workers: list[psutil.Process] = []
    killed_at: list[float] = []

    def kill_once_sampling():
        workers.extend(wait_for_busy(node_pid))
        killed_at.append(time.monotonic())
        cluster.kill(COMPUTE)

    killer = threading.Thread(target=kill_once_sampling, daemon=True)
    killer.start()
    with pytest.raises(NoConnection):
        session.sample(seed_model(), progress=Recorder(), **ENDLESS)
    failed_at = time.monotonic()
    killer.join()
    assert failed_at - killed_at[0] < 1.0, "NoConnection came late: the call waited for a timeout"
    assert workers and wait_until(lambda: gone(workers), timeout=5), \
        f"chain workers of the killed node still run: {workers}"
    cluster.restart(COMPUTE)
    chains = session.sample(seed_model(), chains=2, num_samples=200, num_warmup=200, progress=False)
    assert len(chains) == 2
