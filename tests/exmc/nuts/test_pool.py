"""The warm process pool: reproducibility, progress, cancellation, worker death, closures."""
import ctypes
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest

from exmc.nuts import ChainFailed, InitializationError, Sampler, __pynode_preload__
from exmc.nuts import pool as pool_module
from exmc.nuts.tree import transition_kernel

from gaussian_models import Dying, Gaussian, isotropic

FAST = dict(num_samples=100, num_warmup=100)


def _worker_children() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "exmc.nuts.worker" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def _assert_no_workers_left(pids):
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    assert _worker_children() == []


def test_pool_draws_equal_sequential_draws_for_any_worker_count():
    model = isotropic(2)
    sequential = Sampler.sample_chains(model, 3, seed=4, parallel=False, **FAST)
    for workers in (1, 2):
        pooled = Sampler.sample_chains(model, 3, seed=4, max_workers=workers, **FAST)
        for a, b in zip(sequential, pooled):
            np.testing.assert_array_equal(a["x"], b["x"])
            np.testing.assert_array_equal(a.stats["tree_depth"], b.stats["tree_depth"])
        assert [t.info["chain"] for t in pooled] == [0, 1, 2]
        # Workers run the tree kernel the caller's environment selects (EXMC_TREE), as chains here do.
        assert {t.info["tree_kernel"] for t in pooled} == {t.info["tree_kernel"] for t in sequential} == {
            transition_kernel()}


def test_pool_stays_warm_and_preload_hook_starts_it():
    __pynode_preload__()
    pids = pool_module.get_pool().pids()
    assert pids and all(psutil.pid_exists(pid) for pid in pids)
    Sampler.sample_chains(isotropic(1), 2, max_workers=2, **FAST)
    assert set(pids) <= set(pool_module.get_pool().pids())  # same processes serve the next call


def test_workers_run_single_threaded_blas_unless_the_user_chose(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    pool_module.shutdown_pool()
    __pynode_preload__()
    try:
        for pid in pool_module.get_pool().pids():
            environ = psutil.Process(pid).environ()
            assert environ["OPENBLAS_NUM_THREADS"] == "1"
            assert environ["OMP_NUM_THREADS"] == "3"
    finally:
        pool_module.shutdown_pool()


def test_progress_events_arrive_in_the_calling_thread_throttled():
    events, threads = [], set()

    def progress(event):
        threads.add(threading.get_ident())
        events.append((time.monotonic(), event))

    start = time.monotonic()
    Sampler.sample_chains(isotropic(2), 2, num_samples=400, num_warmup=400, progress=progress, max_workers=2)
    elapsed = time.monotonic() - start
    assert threads == {threading.get_ident()}
    for chain in (0, 1):
        mine = [e for _, e in events if e.chain == chain]
        assert mine[-1].done and mine[-1].iteration == 800 and mine[-1].phase == "sampling"
        assert {e.phase for e in mine} <= {"warmup", "sampling"}
        assert len(mine) <= elapsed / 0.1 + 2  # ≤ ~10 events per second per chain
        assert all(e.step_size > 0 for e in mine)


def test_a_worker_killed_while_idle_is_replaced():
    Sampler.start_pool(2)
    victim = pool_module.get_pool().pids()[0]
    psutil.Process(victim).kill()
    psutil.Process(victim).wait(10)
    chains = Sampler.sample_chains(isotropic(1), 2, max_workers=2, **FAST)
    assert len(chains) == 2 and victim not in pool_module.get_pool().pids()


def test_closures_travel_to_workers():
    scale = 3.0

    class Scaled(Gaussian):
        def logp_and_grad(self, theta):
            return -0.5 * float(theta @ theta) / scale**2, -theta / scale**2

    chains = Sampler.sample_chains(Scaled([0.0], [[9.0]]), 2, num_samples=300, num_warmup=200, seed=1)
    assert 2.5 < np.concatenate([t["x"][:, 0] for t in chains]).std() < 3.5


def test_worker_death_names_the_chain():
    with pytest.raises(ChainFailed, match=r"chain \d: worker process \d+ died \(exit code 13\)") as info:
        Sampler.sample_chains(Dying(parent_pid=__import__("os").getpid()), 2, max_workers=2, **FAST)
    assert info.value.chain in (0, 1)
    _assert_no_workers_left([])
    # The pool is rebuilt on the next call.
    assert len(Sampler.sample_chains(isotropic(1), 2, **FAST)) == 2


def test_chain_exceptions_propagate_with_the_chain_noted():
    class Nowhere(Gaussian):
        def logp_and_grad(self, theta):
            return -np.inf, np.zeros_like(theta)

    with pytest.raises(InitializationError) as info:
        Sampler.sample_chains(Nowhere([0.0], [[1.0]]), 2, **FAST)
    assert any("in exmc chain" in note for note in info.value.__notes__)


def test_should_stop_terminates_every_worker():
    Sampler.start_pool(2)
    pids = pool_module.get_pool().pids()
    deadline = time.monotonic() + 1.0
    with pytest.raises(InterruptedError):
        Sampler.sample_chains(isotropic(2), 2, num_samples=10**6, num_warmup=1000, max_workers=2,
                              should_stop=lambda: time.monotonic() > deadline)
    _assert_no_workers_left(pids)


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
def test_asynchronous_exception_in_waiting_thread_terminates_workers(exc_type):
    Sampler.start_pool(2)
    pids = pool_module.get_pool().pids()
    started, outcome = threading.Event(), {}

    def call():
        try:
            Sampler.sample_chains(isotropic(2), 2, num_samples=10**6, num_warmup=100, max_workers=2,
                                  progress=lambda event: started.set())
        except BaseException as exc:  # noqa: BLE001 - the test inspects what arrived
            outcome["exc"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    assert started.wait(60), "no progress from the workers"
    # What pynode does on a cancelled call: raise an exception inside the waiting thread.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(outcome.get("exc"), exc_type)
    _assert_no_workers_left(pids)


def test_workers_exit_when_their_parent_is_killed():
    import subprocess
    import sys

    script = ("from exmc.nuts import Sampler, pool; Sampler.start_pool(2); "
              "print(*pool.get_pool().pids(), flush=True); import time; time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2
    finally:
        parent.kill()  # SIGKILL: no atexit, no cleanup code runs in the parent
        parent.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(psutil.pid_exists(pid) for pid in pids):
        time.sleep(0.1)
    # Orphans are re-parented and reaped by init once they exit on the closed socket.
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


@pytest.mark.parametrize("statement", [
    "import exmc.nuts.worker",  # what a pool worker runs before it waits for its first task
    # a node's preload
    "from exmc.nuts import pool; pool.__pynode_preload__(); pool.shutdown_pool()",
])
def test_start_up_imports_what_the_first_task_needs(statement):
    # Unpickling and compiling an IR needs the families and the compiler; importing them on the
    # first task, not at start-up, cost that task seconds on a busy box.
    code = f"import sys; {statement}; print([m for m in ('exmc.dist', 'exmc.model') if m not in sys.modules])"
    missing = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             check=True)
    assert missing.stdout.strip() == "[]"


def _typo_ir():
    from exmc import Builder, Dist

    ir = Builder.new_ir()
    ir = Builder.rv(ir, "mu", Dist.Normal, {"mu": 0.0, "sigma": 10.0})
    return Builder.rv(ir, "y", Dist.Normal, {"mu": "mu", "sigma": "sigam"})  # 'sigam': a typo


def test_a_malformed_ir_fails_before_any_worker_sees_it():
    from exmc import ValidationError

    pool = pool_module.start_pool(2)
    pids = pool.pids()
    calls = []
    with pytest.raises(ValidationError, match="'sigam'"):
        Sampler.sample_chains(_typo_ir(), 2, progress=calls.append, **FAST)
    assert calls == [] and pool.pids() == pids and pool.busy() == 0


def test_a_validation_error_inside_the_workers_keeps_the_pool():
    """The pool's own guard, below the sampler's up-front check: workers that refuse a malformed
    model are healthy and are not restarted."""
    from exmc import ValidationError
    from exmc.nuts.sampler import SamplerOptions

    pool = pool_module.start_pool(2)
    pids = pool.pids()
    seeds = np.random.SeedSequence(1).spawn(3)
    with pytest.raises(ValidationError, match="'sigam'"):
        pool.run(_typo_ir(), seeds, SamplerOptions(**FAST), 2, None, None)
    assert pool.pids() == pids and all(psutil.pid_exists(pid) for pid in pids)
    chains = Sampler.sample_chains(isotropic(1), 2, max_workers=2, **FAST)
    assert pool.pids() == pids and {t.info["worker"] for t in chains} <= set(pids)


def test_chain_ids_number_a_share_of_a_run_as_the_whole_run_does():
    from exmc.nuts.sampler import SamplerOptions

    model = isotropic(2)
    whole = Sampler.sample_chains(model, 4, seed=9, **FAST)
    seeds = np.random.SeedSequence(9).spawn(4)
    finished = []
    share = pool_module.get_pool().run(model, [seeds[3], seeds[1]], SamplerOptions(**FAST), 2, None, None,
                                       chain_ids=[3, 1], on_result=finished.append)
    assert [t.info["chain"] for t in share] == [3, 1]
    assert sorted(t.info["chain"] for t in finished) == [1, 3]
    np.testing.assert_array_equal(share[0]["x"], whole[3]["x"])
    np.testing.assert_array_equal(share[1]["x"], whole[1]["x"])
    with pytest.raises(ValueError, match="chain_ids"):
        pool_module.get_pool().run(model, seeds[:2], SamplerOptions(**FAST), 2, None, None, chain_ids=[0, 0])


@pytest.mark.parametrize("parallel", [False, True])
def test_streamed_draws_are_the_traces_draws_in_batches(parallel):
    from exmc.nuts.stream import DrawLog

    log, batches = DrawLog(), []

    def keep(batch):
        batches.append(batch)
        log.add(batch)

    chains = Sampler.sample_chains(isotropic(2), 2, seed=3, parallel=parallel, draws=keep, num_samples=200,
                                   num_warmup=50)
    for trace in chains:
        draws, stats = log.arrays(trace.info["chain"])
        np.testing.assert_array_equal(draws["x"], trace["x"])
        np.testing.assert_array_equal(stats["n_steps"], trace.stats["n_steps"])
    assert all(b.of == 200 for b in batches)
    with pytest.raises(ValueError, match="vectorized"):
        Sampler.sample_chains(isotropic(2), 2, parallel="vectorized", draws=keep, **FAST)
