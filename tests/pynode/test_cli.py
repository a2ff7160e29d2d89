"""The ``pynode`` command, run as real processes (``python -m pynode``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from pynode import portmapper
from pynode.testing import LocalCluster, free_port, wait_until

TARGET = "clitarget@127.0.0.41"
COOKIE = "cli-cookie"


def pynode(*args: str, cookie: str | None = COOKIE, input: str | None = None, env: dict | None = None):
    full_env = {**os.environ, **(env or {})}
    if cookie is not None:
        full_env["PYNODE_COOKIE"] = cookie
    return subprocess.run(
        [sys.executable, "-m", "pynode", *args],
        capture_output=True, text=True, timeout=60, input=input, env=full_env,
    )


@pytest.fixture(scope="module")
def target():
    with LocalCluster([TARGET], cookie=COOKIE) as cluster:
        yield cluster


# --- start ------------------------------------------------------------------------------------


def spawn_start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pynode", "start", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYNODE_COOKIE": COOKIE, **(env or {})},
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_start_prints_one_ready_line_and_stops_cleanly_on_signal(sig):
    proc = spawn_start("clistart@127.0.0.42")
    line = proc.stdout.readline()
    port = portmapper.port_please("127.0.0.42", "clistart")
    assert line == f"pynode: clistart@127.0.0.42 ready on 127.0.0.42:{port}\n"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == ""  # nothing but the ready line, ever
    assert "stopping clistart@127.0.0.42" in err
    assert portmapper.port_please("127.0.0.42", "clistart") is None


def test_preload_hook_runs_before_ready_and_flags_reach_the_node(tmp_path):
    marker = tmp_path / "hook-ran"
    (tmp_path / "warmme.py").write_text(
        textwrap.dedent(
            f"""
            from pynode import Node
            def __pynode_preload__():
                open({str(marker)!r}, "w").write(Node.self())
            """
        )
    )
    (tmp_path / "plainmod.py").write_text("VALUE = 1\n")
    port = free_port("127.0.0.42")
    proc = spawn_start(
        "clipre@127.0.0.42", "--preload", "warmme", "--preload", "plainmod", "--hidden",
        "--port", str(port), env={"PYTHONPATH": str(tmp_path)},
    )
    try:
        assert proc.stdout.readline() == f"pynode: clipre@127.0.0.42 ready on 127.0.0.42:{port}\n"
        assert marker.read_text() == "clipre@127.0.0.42"  # the hook ran before the ready line
        info = portmapper.node_info("127.0.0.42", "clipre")
        assert info is not None and info.hidden and info.port == port
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_start_failures_exit_1_with_one_clear_line():
    result = pynode("start", "clibad@127.0.0.42", "--preload", "no_such_module_q")
    assert result.returncode == 1 and result.stdout == ""
    assert "pynode: error: preloading module 'no_such_module_q' failed: ModuleNotFoundError" in result.stderr
    assert portmapper.port_please("127.0.0.42", "clibad") is None  # stopped and unregistered

    result = pynode("start", "no-at-sign")
    assert result.returncode == 1
    assert "pynode: error: bad node name 'no-at-sign'" in result.stderr


def test_start_refuses_a_ticktime_below_one_second_before_starting():
    result = pynode("start", "clitick@127.0.0.42", "--ticktime", "0.5")
    assert result.returncode == 1 and result.stdout == ""
    assert "pynode: error: --ticktime must be at least 1 s, got 0.5" in result.stderr
    assert portmapper.port_please("127.0.0.42", "clitick") is None
    result = pynode("start", "clitick@127.0.0.42", env={"PYNODE_TICKTIME": "soon"})
    assert result.returncode == 1
    assert "pynode: error: $PYNODE_TICKTIME must be a number of seconds, got 'soon'" in result.stderr


def test_start_name_taken(target):
    result = pynode("start", TARGET)
    assert result.returncode == 1
    assert "pynode: error:" in result.stderr and "already registered" in result.stderr


def test_cookie_flags(tmp_path):
    assert pynode("start", "x@127.0.0.42", "--cookie", "a", "--cookie-file", "f").returncode == 2
    loose = tmp_path / "cookie"
    loose.write_text("c\n")
    loose.chmod(0o644)
    result = pynode("ping", TARGET, "--cookie-file", str(loose))
    assert result.returncode == 1
    assert f"cookie file '{loose}' has mode 0644" in result.stderr


# --- talking to a node ------------------------------------------------------------------------


def test_ping_pong_and_pang(target, tmp_path):
    good = pynode("ping", TARGET)
    assert (good.returncode, good.stdout) == (0, "pong\n")
    wrong_cookie = pynode("ping", TARGET, cookie="not-the-cookie")
    assert (wrong_cookie.returncode, wrong_cookie.stdout) == (1, "pang\n")
    cookie_file = tmp_path / "c"
    cookie_file.write_text(COOKIE + "\n")
    cookie_file.chmod(0o400)
    via_file = pynode("ping", TARGET, "--cookie-file", str(cookie_file), cookie="not-the-cookie")
    assert via_file.stdout == "pong\n"
    nobody = pynode("ping", "nobody@127.0.0.41")
    assert (nobody.returncode, nobody.stdout) == (1, "pang\n")


def test_names_lists_registered_nodes(target):
    result = pynode("names", "127.0.0.41")
    assert result.returncode == 0
    port = portmapper.epmd_port()
    assert result.stdout == (
        f"pynode: port mapper on 127.0.0.41:{port} with data:\n"
        f"name clitarget at port {target.port(TARGET)}\n"
    )
    flag = pynode("--epmd-port", str(port), "names", "127.0.0.41", env={"PYNODE_EPMD_PORT": "1"})
    assert flag.stdout == result.stdout  # --epmd-port overrides the environment
    nobody = pynode("names", "127.0.0.49")
    assert nobody.returncode == 1
    assert f"no port mapper answers on 127.0.0.49:{port}" in nobody.stderr


def test_call_module_function_with_json_args(target):
    result = pynode("call", TARGET, "os:getpid")
    assert (result.returncode, result.stdout) == (0, f"{target.pid(TARGET)}\n")
    result = pynode("call", TARGET, "operator:add", "[[1, 2], [3]]")
    assert json.loads(result.stdout) == [1, 2, 3]
    result = pynode("call", TARGET, "builtins:complex", "[1, 2]")  # not JSON: printed with repr
    assert result.stdout == "(1+2j)\n"


def test_call_errors(target):
    remote = pynode("call", TARGET, "math:sqrt", "[-1]")
    assert remote.returncode == 1
    assert f"pynode: error: math:sqrt on {TARGET} raised ValueError: math domain error" in remote.stderr
    for bad_args in ("{", '{"x": 1}'):
        result = pynode("call", TARGET, "math:sqrt", bad_args)
        assert result.returncode == 1 and "pynode: error: arguments" in result.stderr
    missing = pynode("call", TARGET, "math:no_such_function")
    assert missing.returncode == 1 and "no_such_function" in missing.stderr


def test_shell_is_a_node(target):
    script = f"print('me=' + Node.self())\nprint('pid=' + str(erpc.call({TARGET!r}, 'os:getpid')))\n"
    result = pynode("shell", "clishell@127.0.0.42", input=script)
    assert result.returncode == 0, result.stderr
    assert "me=clishell@127.0.0.42" in result.stdout
    assert f"pid={target.pid(TARGET)}" in result.stdout
    assert "this REPL is node clishell@127.0.0.42" in result.stderr  # the banner
    assert portmapper.port_please("127.0.0.42", "clishell") is None


# --- cluster up/down --------------------------------------------------------------------------


def test_cluster_up_and_down(tmp_path):
    # Hosts no other test uses: `up` must find them without a port mapper, so `down` kills the ones it started.
    config = tmp_path / "c.toml"
    config.write_text(
        textwrap.dedent(
            """
            [cluster]
            epmd_port = 4369
            [[node]]
            name = "notme@127.0.0.143"
            start = false
            [[node]]
            name = "cup1@127.0.0.143"
            [[node]]
            name = "cup2@127.0.0.144"
            hidden = true
            """
        )
    )
    state_dir = tmp_path / "state"
    up = pynode("cluster", "up", str(config), "--state-dir", str(state_dir))
    assert up.returncode == 0, up.stderr
    state = json.loads((state_dir / "state.json").read_text())
    assert [n["name"] for n in state["nodes"]] == ["cup1@127.0.0.143", "cup2@127.0.0.144"]
    assert state["epmd_port"] == portmapper.epmd_port()  # the environment overrides the file
    for node in state["nodes"]:
        assert f"pynode: {node['name']} up (pid {node['pid']}, port {node['port']}" in up.stdout
        os.kill(node["pid"], 0)  # running, detached from the `up` process that has exited
    assert pynode("ping", "cup2@127.0.0.144").stdout == "pong\n"

    again = pynode("cluster", "up", str(config), "--state-dir", str(state_dir))
    assert again.returncode == 1 and "already up" in again.stderr

    down = pynode("cluster", "down", str(config), "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert down.stdout == "pynode: cup1@127.0.0.143 stopped\npynode: cup2@127.0.0.144 stopped\n"
    assert not state_dir.exists()
    # `up` started the port mappers of both (fresh) hosts, so `down` killed them.
    assert state["started_port_mappers"] == ["127.0.0.143", "127.0.0.144"]
    assert wait_until(lambda: not portmapper.is_running("127.0.0.143"), timeout=5)
    assert wait_until(lambda: not portmapper.is_running("127.0.0.144"), timeout=5)

    nothing = pynode("cluster", "down", str(config), "--state-dir", str(state_dir))
    assert nothing.returncode == 1 and "no cluster state" in nothing.stderr


def test_first_node_on_a_host_leaves_a_port_mapper_that_outlives_it():
    mapper_port = free_port()
    proc = spawn_start("clifirst@127.0.0.45", env={"PYNODE_EPMD_PORT": str(mapper_port)})
    try:
        assert proc.stdout.readline().startswith("pynode: clifirst@127.0.0.45 ready on")
        proc.terminate()
        assert proc.wait(timeout=30) == 0
        # The node that started the port mapper is gone; the port mapper still serves (and
        # drops the node's entry once it has seen the registration connection close).
        assert wait_until(lambda: portmapper.names("127.0.0.45", mapper_port=mapper_port) == [], timeout=10)
    finally:
        proc.kill()
        portmapper.kill("127.0.0.45", mapper_port=mapper_port)


def test_beam_max_calls_flag_reaches_node_start():
    from pynode import cli

    args = cli._parser().parse_args(["start", "x@127.0.0.42", "--beam-max-calls", "3"])
    assert cli._node_options(args)["beam_max_calls"] == 3
    args = cli._parser().parse_args(["start", "x@127.0.0.42"])
    assert "beam_max_calls" not in cli._node_options(args)  # Node.start reads the environment
