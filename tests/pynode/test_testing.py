"""LocalCluster: real node processes, readiness, fault injection, and no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pynode import cluster_config, portmapper
from pynode import Node
from pynode.testing import LocalCluster, NodeStartError, free_port, this_node, wait_until

A, B = "tta@127.0.0.31", "ttb@127.0.0.32"


def pid_running(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_start_waits_for_ready_and_stop_reaps_and_unregisters():
    cluster = LocalCluster([A, B], cookie="c1").start()
    try:
        assert cluster.names == [A, B]
        for name, host in ((A, "127.0.0.31"), (B, "127.0.0.32")):
            assert cluster.alive(name)
            alive = name.split("@")[0]
            assert portmapper.port_please(host, alive) == cluster.port(name)
            assert cluster.stdout(name) == f"pynode: {name} ready on {host}:{cluster.port(name)}\n"
        pids = [cluster.pid(A), cluster.pid(B)]
    finally:
        cluster.stop()
    assert not any(pid_running(p) for p in pids)
    assert portmapper.port_please("127.0.0.31", "tta") is None
    cluster.stop()  # idempotent


def test_ping_from_a_local_node_and_cookie_is_shared():
    with this_node("ttlocal@127.0.0.30", cookie="c2"):
        with LocalCluster([A], cookie="c2", ping=True) as cluster:
            assert cluster.cookie == "c2"
            assert Node.ping(A) == "pong"


def test_this_node_is_stopped_even_when_its_block_fails():
    with pytest.raises(RuntimeError, match="block failed"):
        with this_node("ttlocal@127.0.0.30", cookie="c3") as name:
            assert Node.self() == name == "ttlocal@127.0.0.30"
            raise RuntimeError("block failed")
    assert not Node.alive()


def test_random_cookie_when_none_given():
    one = LocalCluster([A])
    two = LocalCluster([A])
    assert len(one.cookie) == 32 and one.cookie != two.cookie
    assert one.env["PYNODE_COOKIE"] == one.cookie


def test_failing_node_reports_its_stderr_and_leaves_nothing_running():
    cluster = LocalCluster([A, B], preload=["no_such_module_xyz"], ready_timeout=30)
    with pytest.raises(NodeStartError, match=r"(?s)node tta@127.0.0.31 exited with code 1.*no_such_module_xyz"):
        cluster.start()
    assert not cluster.alive(A) and not cluster.alive(B)


def test_kill_and_restart_one_node():
    with LocalCluster([A, B]) as cluster:
        with pytest.raises(RuntimeError, match="already started"):
            cluster.start()
        old_pid = cluster.pid(A)
        cluster.kill(A)
        assert not cluster.alive(A) and not pid_running(old_pid)
        assert cluster.alive(B)
        new_port = cluster.restart(A)
        assert cluster.alive(A) and cluster.pid(A) != old_pid
        assert portmapper.port_please("127.0.0.31", "tta") == new_port


def test_isolated_port_mapper_is_started_and_killed():
    with LocalCluster([A], epmd_port=0) as cluster:
        assert cluster.epmd_port != portmapper.epmd_port()
        assert cluster.env["PYNODE_EPMD_PORT"] == str(cluster.epmd_port)
        assert portmapper.names("127.0.0.31", mapper_port=cluster.epmd_port) == [("tta", cluster.port(A))]
    assert wait_until(lambda: not portmapper.is_running("127.0.0.31", cluster.epmd_port), timeout=5)


def test_from_config_skips_nodes_not_to_start(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [[node]]
            name = "{A}"
            start = false
            [[node]]
            name = "{B}"
            hidden = true
            """
        )
    )
    cluster = LocalCluster(config)
    assert cluster.names == [B] and cluster.specs[B].hidden


def test_nodes_die_when_the_harness_process_is_sigkilled():
    script = textwrap.dedent(
        f"""
        import sys, time
        from pynode.testing import LocalCluster
        c = LocalCluster([{A!r}, {B!r}]).start()
        print(c.pid({A!r}), c.pid({B!r}), flush=True)
        time.sleep(60)
        """
    )
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in harness.stdout.readline().split()]
        assert len(pids) == 2 and all(pid_running(p) for p in pids)
    finally:
        harness.send_signal(signal.SIGKILL)
        harness.wait()
    assert wait_until(lambda: not any(pid_running(p) for p in pids), timeout=10)


_FIXTURE_PIDS: list[int] = []


def test_fixture_starts_a_cluster(local_cluster):
    cluster = local_cluster([A])
    assert cluster.alive(A)
    _FIXTURE_PIDS.append(cluster.pid(A))


def test_fixture_stopped_the_previous_tests_cluster():
    if not _FIXTURE_PIDS:
        pytest.skip("checks what test_fixture_starts_a_cluster left behind; run it first")
    assert not any(pid_running(pid) for pid in _FIXTURE_PIDS)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="duplicate node names"):
        LocalCluster([A, A])
    with pytest.raises(ValueError, match=r"hidden names \['zz@127.0.0.1'\]"):
        LocalCluster([A], hidden=["zz@127.0.0.1"])
    with pytest.raises(ValueError, match="bad node name 'nohost'"):
        LocalCluster(["nohost"])
    with pytest.raises(KeyError, match="'x@127.0.0.1' is not a started node"):
        LocalCluster([A]).pid("x@127.0.0.1")


# --- cluster files ------------------------------------------------------------------------------


def test_repository_cluster_file_describes_the_seed():
    config = cluster_config.load(os.path.join(os.path.dirname(__file__), "../../configs/cluster.toml"))
    assert [e.spec.name for e in config.nodes] == ["livebook@127.0.0.13", "exmc@127.0.0.14"]
    assert [s.name for s in config.startable] == ["exmc@127.0.0.14"]
    assert config.startable[0].preload == ("exmc",)
    assert config.epmd_port == 4369
    # The session's PYNODE_EPMD_PORT overrides the file.
    assert config.effective_epmd_port() == portmapper.epmd_port() != 4369


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[node]]\nname = "a@h"\ncolour = 1\n', r"\[\[node\]\] #1: unknown keys \['colour'\]"),
        ('[[node]]\nname = "a b@h"\n', r"#1: bad node name 'a b@h'"),
        ('[[node]]\nname = "a@h"\n[[node]]\nname = "a@h"\n', "node 'a@h' is listed twice"),
        ('[cluster]\nepmd_port = 99999\n[[node]]\nname = "a@h"\n', "epmd_port 99999 is not a port"),
        ('[[node]]\nname = "a@h"\npreload = "exmc"\n', r"\(a@h\): preload must be a list"),
        ("[cluster]\n", "no \\[\\[node\\]\\] entries"),
        ("[[node]\n", "is not valid TOML"),
        ('[[node]]\nname = "a@h"\n[tls]\ncertfile = "c.pem"\nkeyfile = "k.pem"\n', r"\[tls\] needs cafile"),
        ('[[node]]\nname = "a@h"\n[tls]\ncert = "c.pem"\n', r"\[tls\]: unknown keys \['cert'\]"),
    ],
)
def test_cluster_file_errors_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(cluster_config.ClusterConfigError, match=message):
        cluster_config.load(path)


def test_cookie_sources_of_a_cluster_file(tmp_path, monkeypatch):
    secret = tmp_path / "cookie"
    secret.write_text("from-file\n")
    secret.chmod(0o400)
    config = cluster_config.parse({"cluster": {"cookie_file": str(secret)}, "node": [{"name": A}]})
    assert config.resolve_cookie() == "from-file"
    assert config.resolve_cookie("explicit") == "explicit"
    monkeypatch.setenv("PYNODE_COOKIE", "from-env")
    assert config.resolve_cookie() == "from-env"
    monkeypatch.delenv("PYNODE_COOKIE")
    secret.chmod(0o644)
    with pytest.raises(Exception, match="accessible by its owner only"):
        config.resolve_cookie()


def test_free_port_is_bindable():
    import socket

    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        pass


def test_ticktime_and_connect_all_reach_every_node_command_line():
    from pynode.launch import NodeSpec

    cluster = LocalCluster(
        ["t1@127.0.1.31", NodeSpec("t2@127.0.1.32", extra_args=("--preload", "json"))], ticktime=2, connect_all=False
    )
    for spec in cluster.specs.values():
        command = spec.command()
        assert command[command.index("--ticktime") + 1] == "2.0"
        assert "--no-connect-all" in command
    assert LocalCluster(["t3@127.0.1.33"]).specs["t3@127.0.1.33"].command()[-1] == "t3@127.0.1.33"  # defaults: no flags


def test_tls_table_paths_are_relative_to_the_cluster_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[[node]]\nname = "a@h"\n[tls]\ncertfile = "t/n.pem"\nkeyfile = "t/n.key"\ncafile = "/etc/ca.pem"\n')
    config = cluster_config.load(path)
    assert config.tls is not None and config.tls.certfile == str(tmp_path / "t/n.pem")
    assert config.tls.cafile == "/etc/ca.pem" and config.tls.verify_peer is True
