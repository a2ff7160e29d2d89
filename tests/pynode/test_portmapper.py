"""The port mapper: EPMD bytes on the wire, registration lifetime, the detached daemon, and
interoperation with a real ``epmd`` (when Debian's erlang-base is installed)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading

import pytest

from pynode import portmapper as pm
from pynode.errors import PortMapperError
from pynode.portmapper_server import PortMapperServer
from pynode.testing import free_port, wait_until

HOST = "127.0.0.1"
EPMD = shutil.which("epmd")
needs_epmd = pytest.mark.skipif(EPMD is None, reason="epmd not installed (apt-get install erlang-base)")


@pytest.fixture
def server():
    with PortMapperServer(HOST, 0) as srv:
        yield srv


def raw_request(port: int, body: bytes) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.sendall(struct.pack(">H", len(body)) + body)
    return sock


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def alive2_body(name: bytes, port: int, *, node_type: int = 77, highest: int = 6) -> bytes:
    return (
        bytes([120])
        + struct.pack(">HBBHHH", port, node_type, 0, highest, 5, len(name))
        + name
        + struct.pack(">H", 3)
        + b"xyz"
    )


# --- byte-level protocol ------------------------------------------------------------------------


def test_alive2_reply_bytes_then_port_please_and_names(server):
    reg = raw_request(server.port, alive2_body(b"alpha", 5151, node_type=72))
    reply = reg.recv(6)
    assert reply[:2] == bytes([118, 0])
    assert int.from_bytes(reply[2:], "big") != 0

    with raw_request(server.port, bytes([122]) + b"alpha") as sock:
        assert read_to_eof(sock) == (
            bytes([119, 0]) + struct.pack(">HBBHHH", 5151, 72, 0, 6, 5, 5) + b"alpha"
            + struct.pack(">H", 3) + b"xyz"
        )
    with raw_request(server.port, bytes([110])) as sock:
        assert read_to_eof(sock) == struct.pack(">I", server.port) + b"name alpha at port 5151\n"
    reg.close()


def test_old_client_gets_two_byte_creation(server):
    with raw_request(server.port, alive2_body(b"old", 1, highest=5)) as sock:
        reply = sock.recv(16)
    assert reply[:2] == bytes([121, 0]) and len(reply) == 4


def test_port_please_of_unknown_name_is_error_code(server):
    with raw_request(server.port, bytes([122]) + b"nobody") as sock:
        assert read_to_eof(sock) == bytes([119, 1])
    assert pm.port_please(HOST, "nobody", mapper_port=server.port) is None


def test_garbage_and_unknown_codes_close_the_connection_but_server_keeps_serving(server):
    with raw_request(server.port, bytes([99, 1, 2])) as sock:
        assert read_to_eof(sock) == b""
    with socket.create_connection((HOST, server.port), timeout=5) as sock:
        sock.sendall(b"\x00\x10\x78")  # announces 16 bytes, sends 1, then hangs up
    with raw_request(server.port, bytes([120, 0])) as sock:  # truncated ALIVE2_REQ
        assert read_to_eof(sock) == b""
    assert pm.names(HOST, mapper_port=server.port) == []


def test_kill_replies_ok_and_stops_the_server(server):
    with raw_request(server.port, bytes([107])) as sock:
        assert read_to_eof(sock) == b"OK"
    assert wait_until(lambda: not pm.is_running(HOST, server.port), timeout=5)


def test_node_info_round_trip():
    info = pm.NodeInfo("n1", 4242, pm.NODE_TYPE_HIDDEN, 0, 6, 5, b"e")
    assert pm.decode_node_info(pm.encode_node_info(info)) == info
    assert info.hidden
    with pytest.raises(PortMapperError, match="malformed"):
        pm.decode_node_info(pm.encode_node_info(info)[:-1])


def test_parse_names_rejects_foreign_text():
    assert pm.parse_names(b"name a at port 1\nname b at port 22\n", "h:1") == [("a", 1), ("b", 22)]
    with pytest.raises(PortMapperError, match="h:1.*malformed names line 'HTTP/1.1 400'"):
        pm.parse_names(b"HTTP/1.1 400\n", "h:1")


# --- client API ---------------------------------------------------------------------------------


def test_register_lookup_and_unregister_on_close(server):
    reg = pm.register(HOST, "beta", 6000, hidden=True, mapper_port=server.port)
    info = pm.node_info(HOST, "beta", mapper_port=server.port)
    assert info is not None and info.port == 6000 and info.hidden
    assert pm.port_please(HOST, "beta", mapper_port=server.port) == 6000
    assert pm.names(HOST, mapper_port=server.port) == [("beta", 6000)]
    reg.close()
    assert reg.closed
    assert wait_until(lambda: pm.names(HOST, mapper_port=server.port) == [], timeout=5)


def test_name_taken_is_refused_and_creations_differ(server):
    with pm.register(HOST, "gamma", 1, mapper_port=server.port) as first:
        with pytest.raises(PortMapperError, match=rf"'gamma'.*already registered on {HOST}"):
            pm.register(HOST, "gamma", 2, mapper_port=server.port)
        assert pm.port_please(HOST, "gamma", mapper_port=server.port) == 1
    assert wait_until(lambda: pm.port_please(HOST, "gamma", mapper_port=server.port) is None, 5)
    with pm.register(HOST, "gamma", 3, mapper_port=server.port) as second:
        assert second.creation != first.creation


def test_registration_dies_with_the_registering_process(server):
    code = (
        "import sys, time; from pynode import portmapper as pm; "
        f"reg = pm.register('{HOST}', 'child', 7, mapper_port={server.port}); print('up', flush=True); "
        "time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        assert pm.names(HOST, mapper_port=server.port) == [("child", 7)]
    finally:
        proc.kill()
        proc.wait()
    assert wait_until(lambda: pm.names(HOST, mapper_port=server.port) == [], timeout=5)


def test_unreachable_port_mapper_error_names_host_and_port():
    port = free_port()
    with pytest.raises(PortMapperError, match=rf"no port mapper answers on {HOST}:{port}"):
        pm.port_please(HOST, "x", mapper_port=port)
    assert not pm.is_running(HOST, port)


def test_something_else_on_the_port_is_not_a_port_mapper():
    with socket.create_server((HOST, 0)) as listener:
        port = listener.getsockname()[1]

        def http_like() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(100)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        server_thread = threading.Thread(target=http_like)
        server_thread.start()
        with pytest.raises(PortMapperError, match=rf"{HOST}:{port}.*malformed names line"):
            pm.names(HOST, mapper_port=port)
        server_thread.join()


def test_epmd_port_from_environment(monkeypatch):
    monkeypatch.setenv("PYNODE_EPMD_PORT", "4370")
    assert pm.epmd_port() == 4370
    monkeypatch.delenv("PYNODE_EPMD_PORT")
    assert pm.epmd_port() == pm.DEFAULT_PORT == 4369
    for bad in ("x", "0", "70000"):
        monkeypatch.setenv("PYNODE_EPMD_PORT", bad)
        with pytest.raises(PortMapperError, match=f"PYNODE_EPMD_PORT='{bad}'"):
            pm.epmd_port()


def test_bad_alive_names_are_refused_before_sending(server):
    with pytest.raises(PortMapperError, match="1..255 bytes"):
        pm.register(HOST, "", 1, mapper_port=server.port)
    with pytest.raises(PortMapperError, match="1..255 bytes"):
        pm.register(HOST, "a" * 256, 1, mapper_port=server.port)


# --- the detached daemon ------------------------------------------------------------------------


def test_daemon_survives_its_starter_and_concurrent_starts_spawn_one():
    port = free_port()
    code = f"from pynode import portmapper as pm; print(pm.ensure_running('{HOST}', {port}))"
    starters = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        outputs = sorted(p.communicate(timeout=30)[0].strip() for p in starters)
        assert outputs == ["False", "False", "True"]  # exactly one started it
        assert all(p.returncode == 0 for p in starters)
        # Every starter has exited; the daemon still answers and registers names.
        with pm.register(HOST, "late", 9, mapper_port=port):
            assert pm.names(HOST, mapper_port=port) == [("late", 9)]
        # It leads a session of its own (like `epmd -daemon`): no terminal hang-up reaches it.
        log_text = pm.daemon_paths(HOST, port)[1].read_text()
        daemon_pid = int(re.search(rf" (\d+) \S+: port mapper listening on {HOST}:{port}", log_text)[1])
        assert os.getsid(daemon_pid) == daemon_pid != os.getsid(0)
        assert pm.ensure_running(HOST, port) is False
    finally:
        pm.kill(HOST, mapper_port=port)
    assert wait_until(lambda: not pm.is_running(HOST, port), timeout=5)


def test_daemon_that_cannot_bind_reports_its_log():
    with socket.create_server((HOST, 0)) as squatter:  # holds the port, hangs up on everyone
        port = squatter.getsockname()[1]
        done = threading.Event()

        def hang_up() -> None:
            squatter.settimeout(0.05)
            while not done.is_set():
                with contextlib.suppress(TimeoutError):
                    squatter.accept()[0].close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        try:
            with pytest.raises(PortMapperError, match=rf"{HOST}:{port}.*(?s:.*)cannot listen"):
                pm.ensure_running(HOST, port, timeout=10)
        finally:
            done.set()
            thread.join()


def test_serve_exits_3_when_the_port_is_taken():
    with socket.create_server((HOST, 0)) as squatter:
        port = squatter.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "pynode.portmapper", "serve", "--host", HOST, "--port", str(port)],
            capture_output=True, text=True, timeout=30,
        )
    assert proc.returncode == 3
    assert f"cannot listen on {HOST}:{port}" in proc.stderr


# --- a real epmd --------------------------------------------------------------------------------


@pytest.fixture
def real_epmd():
    port = free_port()
    subprocess.run(
        [EPMD, "-port", str(port), "-address", HOST, "-daemon", "-relaxed_command_check"],
        check=True, timeout=10,
    )
    try:
        assert wait_until(lambda: pm.is_running(HOST, port), timeout=10)
        yield port
    finally:
        subprocess.run([EPMD, "-port", str(port), "-kill"], capture_output=True, timeout=10)


@needs_epmd
def test_our_client_against_real_epmd(real_epmd):
    with pm.register(HOST, "pyside", 5555, hidden=True, mapper_port=real_epmd) as reg:
        assert reg.creation != 0
        info = pm.node_info(HOST, "pyside", mapper_port=real_epmd)
        assert info is not None and (info.port, info.hidden) == (5555, True)
        assert pm.names(HOST, mapper_port=real_epmd) == [("pyside", 5555)]
        with pytest.raises(PortMapperError, match="already registered"):
            pm.register(HOST, "pyside", 1, mapper_port=real_epmd)
        listing = subprocess.run(
            [EPMD, "-port", str(real_epmd), "-names"], capture_output=True, text=True, timeout=10
        ).stdout
        assert "name pyside at port 5555" in listing
    assert wait_until(lambda: pm.port_please(HOST, "pyside", mapper_port=real_epmd) is None, 5)


@needs_epmd
def test_erlang_tools_see_our_server(server):
    with pm.register(HOST, "visible", 4444, mapper_port=server.port):
        out = subprocess.run(
            [EPMD, "-port", str(server.port), "-names"], capture_output=True, text=True, timeout=10
        )
    assert out.stdout == f"epmd: up and running on port {server.port} with data:\nname visible at port 4444\n"
    out = subprocess.run(
        [EPMD, "-port", str(server.port), "-kill"], capture_output=True, text=True, timeout=10
    )
    assert out.stdout.strip() == "Killed"
    assert wait_until(lambda: not pm.is_running(HOST, server.port), timeout=5)


def test_environment_port_is_isolated_for_the_session():
    # conftest points PYNODE_EPMD_PORT at a free port so tests never touch a system epmd.
    assert os.environ["PYNODE_EPMD_PORT"] != str(pm.DEFAULT_PORT)
