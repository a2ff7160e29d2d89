"""TLS distribution with real node processes: calls, large arrays and concurrency inside TLS,
plain and TLS nodes refusing each other with a clear message on both sides, the CLI flags, and
a cluster file's [tls] table."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from pynode import erpc, runtime, tls
from pynode.errors import NoConnection
from pynode.testing import LocalCluster, this_node, wait_until

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SECURE = "tls_a@127.0.3.11"
SECURE_B = "tls_b@127.0.3.12"
PLAIN = "plain@127.0.3.13"
ME = "tls_me@127.0.3.10"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cluster-tls")
    tls.init(directory, ["node", "me"])
    return directory


@pytest.fixture(scope="module")
def cluster(certs: Path) -> Iterator[LocalCluster]:
    node_tls = tls.TLS.in_directory(certs, "node")
    with LocalCluster([SECURE, SECURE_B], env=tls.env_for(node_tls)) as secure:
        with LocalCluster([PLAIN], cookie=secure.cookie) as plain:
            mine = tls.TLS.in_directory(certs, "me")
            with this_node(ME, cookie=secure.cookie, tls=mine):
                secure.plain = plain  # type: ignore[attr-defined]
                yield secure


def test_calls_and_a_large_array_travel_inside_tls(cluster: LocalCluster) -> None:
    weights = np.arange(2_000_000, dtype=np.float64)  # 16 MB: out-of-band attachments
    pid, doubled = erpc.call(SECURE, lambda w: (os.getpid(), w * 2), weights, timeout=60)
    assert pid == cluster.pid(SECURE)
    np.testing.assert_array_equal(doubled, weights * 2)
    conn = runtime.current().connection_to(SECURE)
    assert conn.sock.version() == "TLSv1.3"


def concurrent_calls(per_thread: int) -> None:
    results: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []

    def caller(t: int) -> None:
        try:
            for i in range(per_thread):
                results[(t, i)] = erpc.call(SECURE, lambda a, b: (a, b, bytes(a * 1000)), t, i, timeout=60)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(600)
    assert not errors
    assert all(results[(t, i)] == (t, i, bytes(t * 1000)) for t in range(8) for i in range(per_thread))


def test_concurrent_calls_inside_tls_are_each_answered_once(cluster: LocalCluster) -> None:
    concurrent_calls(100)


@pytest.mark.slow
def test_soak_10000_calls_from_8_threads_inside_tls(cluster: LocalCluster) -> None:
    concurrent_calls(1250)


def test_nodes_reach_each_other_over_tls(cluster: LocalCluster) -> None:
    assert erpc.call(SECURE, erpc.call, SECURE_B, "os:getpid", timeout=30) == cluster.pid(SECURE_B)


def test_a_plain_node_is_refused_with_a_message_on_both_sides(cluster: LocalCluster) -> None:
    plain = cluster.plain  # type: ignore[attr-defined]
    with pytest.raises(NoConnection, match=f"peer {PLAIN} does not speak TLS, we do"):
        erpc.call(PLAIN, "os:getpid", timeout=30)
    assert wait_until(lambda: "speaks TLS, we do not" in plain.stderr(PLAIN), timeout=10)
    assert erpc.call(SECURE, "os:getpid", timeout=30) == cluster.pid(SECURE)  # the TLS side is unharmed
    # the other way round (a plain node calling a TLS one): test_cli_talks_to_a_tls_node_...


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pynode", *args], capture_output=True, text=True, timeout=60, env=env)


def test_cli_talks_to_a_tls_node_with_the_flags_and_is_refused_without(cluster: LocalCluster, certs: Path) -> None:
    env = {**os.environ, "PYNODE_COOKIE": cluster.cookie}
    flags = ["--tls-certfile", str(certs / "me.pem"), "--tls-keyfile", str(certs / "me.key"),
             "--tls-cafile", str(certs / "ca.pem")]
    done = cli("call", SECURE, "os:getpid", *flags, env=env)
    assert done.returncode == 0 and done.stdout.strip() == str(cluster.pid(SECURE)), done.stderr
    refused = cli("call", SECURE, "os:getpid", env=env)
    assert refused.returncode == 1 and f"peer {SECURE} speaks TLS, we do not" in refused.stderr
    assert wait_until(lambda: "does not speak TLS, we do" in cluster.stderr(SECURE), timeout=10)


def test_cluster_file_tls_table(certs: Path, tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    tls.init(tmp_path / "files", ["node"])
    config.write_text(
        '[[node]]\nname = "tls_cfg@127.0.3.14"\n\n'
        '[tls]\ncertfile = "files/node.pem"\nkeyfile = "files/node.key"\ncafile = "files/ca.pem"\n'
    )
    mine = tls.TLS.in_directory(tmp_path / "files", "node")
    with LocalCluster(config) as c:
        env = {**os.environ, "PYNODE_COOKIE": c.cookie, **tls.env_for(mine)}
        done = cli("call", "tls_cfg@127.0.3.14", "os:getpid", env=env)
        assert done.returncode == 0 and done.stdout.strip() == str(c.pid("tls_cfg@127.0.3.14")), done.stderr


def test_hostile_hellos_to_a_tls_node_leak_no_descriptor_or_thread(cluster: LocalCluster, tmp_path: Path) -> None:
    import pickle
    import random
    import socket

    import psutil

    from pynode import handshake

    class CreatesFile:
        def __reduce__(self):
            return (open, (str(tmp_path / "canary"), "w"))

    rng = random.Random(7)
    bomb = pickle.dumps(CreatesFile())
    hello = handshake._hello("fuzzer@127.0.3.15", False, tls=True)
    proc = psutil.Process(cluster.pid(SECURE))
    fds0, threads0 = proc.num_fds(), proc.num_threads()
    for i in range(300):
        data = [
            hello + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))),  # not a ClientHello
            hello + bytes([0x16, 3, 1, 0, 200]) + bytes(rng.randrange(256) for _ in range(200)),  # a broken one
            hello + bomb,
            handshake._hello("fuzzer@127.0.3.15", False) + bomb,  # plain: refused
            hello[: rng.randrange(1, len(hello))],
        ][i % 5]
        with socket.create_connection(("127.0.3.11", cluster.port(SECURE)), timeout=10) as sock:
            try:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
            except OSError:
                pass
    assert wait_until(lambda: proc.num_fds() <= fds0 and proc.num_threads() <= threads0, timeout=15), (
        proc.num_fds(), fds0, proc.num_threads(), threads0)
    assert not (tmp_path / "canary").exists()
    assert erpc.call(SECURE, "os:getpid", timeout=30) == cluster.pid(SECURE)


def test_a_tls_peer_killed_while_it_sends_a_large_result_fails_the_call(cluster: LocalCluster, certs: Path,
                                                                           local_cluster) -> None:
    victim = "tls_victim@127.0.3.16"
    node_tls = tls.TLS.in_directory(certs, "node")
    local_cluster([victim], cookie=cluster.cookie, env=tls.env_for(node_tls))

    def dies_mid_send() -> np.ndarray:
        threading.Timer(0.05, os.kill, (os.getpid(), 9)).start()
        return np.ones(40_000_000)  # 320 MB: still being sent when the timer fires

    with pytest.raises(NoConnection):
        erpc.call(victim, dies_mid_send, timeout=60)
    assert erpc.call(SECURE, "os:getpid", timeout=30) == cluster.pid(SECURE)


@pytest.mark.slow
def test_tls_bidirectional_bulk_soak_keeps_every_byte(cluster: LocalCluster) -> None:
    """Both directions of each TLS connection busy at once (one thread reading while others write
    on the same TLS socket): 8 threads x 60 calls whose 1-4 MiB arguments come back transformed,
    and calls from the node back to this one in between; every result checked byte for byte."""
    errors: list[BaseException] = []

    def echo_back(a: np.ndarray, me: str) -> np.ndarray:
        return erpc.call(me, np.negative, a, timeout=60)  # a nested call back over TLS

    def worker(t: int) -> None:
        rng = np.random.default_rng(t)
        try:
            for i in range(60):
                a = rng.integers(0, 2**31, size=int(rng.integers(1 << 17, 1 << 19)))
                fn = echo_back if i % 3 == 0 else (lambda x, me: x[::-1].copy())
                out = erpc.call(SECURE, fn, a, ME, timeout=120)
                expected = -a if i % 3 == 0 else a[::-1]
                if not np.array_equal(out, expected):
                    raise AssertionError(f"thread {t} call {i}: corrupted result")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(600)
    assert not errors, errors[:3]
