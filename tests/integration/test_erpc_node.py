"""Node life cycle: start/stop rules, cookie sources through Node.start, name clashes."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pynode import Node, cookie, erpc
from pynode.errors import BadNodeName, CookieError, NodeNotStarted, NoConnection, PortMapperError, PynodeError
from pynode.testing import LocalCluster

ME = "lifecycle@127.0.0.45"


@pytest.fixture(autouse=True)
def stopped() -> Iterator[None]:
    Node.stop()
    yield
    Node.stop()


def test_nothing_works_before_start() -> None:
    assert Node.alive() is False
    with pytest.raises(NodeNotStarted, match="Node.start"):
        Node.self()
    with pytest.raises(NodeNotStarted):
        erpc.call("x@127.0.0.45", "os:getpid")


def test_bad_name_is_refused() -> None:
    with pytest.raises(BadNodeName, match="no-at-sign"):
        Node.start("no-at-sign", cookie="c")
    assert Node.alive() is False


def test_start_twice_is_refused_and_stop_is_idempotent() -> None:
    assert Node.start(ME, cookie="c") == ME
    assert Node.self() == ME and Node.port() > 0
    with pytest.raises(PynodeError, match=f"already the node {ME}"):
        Node.start("other@127.0.0.45", cookie="c")
    Node.stop()
    Node.stop()
    assert Node.alive() is False
    assert Node.start(ME, cookie="c") == ME  # the name is free again


def test_default_cookie_file_is_created_and_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(cookie.COOKIE_ENV, raising=False)
    Node.start(ME)
    path = tmp_path / cookie.COOKIE_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert Node.get_cookie() == path.read_text().strip()


def test_group_readable_cookie_file_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(cookie.COOKIE_ENV, raising=False)
    path = tmp_path / cookie.COOKIE_FILE_NAME
    path.write_text("s3cret\n")
    path.chmod(0o640)
    with pytest.raises(CookieError, match="accessible by its owner only"):
        Node.start(ME)
    assert Node.alive() is False


def test_a_taken_name_is_refused_and_stop_fails_pending_calls(
    local_cluster: Callable[..., LocalCluster],
) -> None:
    peer = "lifecycle_peer@127.0.0.46"
    cluster = local_cluster([peer])
    with pytest.raises(PortMapperError):
        Node.start(peer, cookie=cluster.cookie)
    assert Node.alive() is False
    Node.start(ME, cookie=cluster.cookie)
    request = erpc.send_request(peer, time.sleep, 30)
    Node.stop()
    start = time.monotonic()
    with pytest.raises(NoConnection):
        erpc.receive_response(request, timeout=30)
    assert time.monotonic() - start < 2.0


def test_a_node_can_call_itself_and_ping_itself() -> None:
    import os

    Node.start(ME, cookie="c")
    assert erpc.call(ME, lambda x: (x * 2, os.getpid()), 21, timeout=10) == (42, os.getpid())
    assert Node.ping(ME) == "pong"
    assert ME not in Node.list("connected")
