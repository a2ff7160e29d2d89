"""Link.hand_off_if_overdue, the watchdog's rule for one connection (no socket is read)."""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace

import pytest

from pynode.handshake import PeerInfo
from pynode.link import Link


@pytest.fixture
def link(monkeypatch):
    left, right = socket.socketpair()
    link = Link(SimpleNamespace(name="me@127.0.0.1"), left, PeerInfo("peer@127.0.0.1", False))
    spawned: list[int] = []
    monkeypatch.setattr(link, "_spawn_reader", lambda: spawned.append(1))
    link.spawned = spawned
    yield link
    left.close()
    right.close()


ME = threading.get_ident()


def test_nothing_happens_without_a_call_or_before_the_delay(link) -> None:
    assert link.hand_off_if_overdue(now=100.0, delay=1.0) is False
    assert link._token.try_take()
    link._inline = (ME, 99.5)
    assert link.hand_off_if_overdue(now=100.0, delay=1.0) is True
    assert link._token.holder == ME and link.spawned == []


def test_an_overdue_call_gives_up_the_token_and_a_reader_is_started_when_none_waits(link) -> None:
    assert link._token.try_take()
    link._inline = (ME, 0.0)
    assert link.hand_off_if_overdue(now=100.0, delay=1.0) is False  # done: nothing more to watch
    assert link._token.holder == 0 and link._token.free
    assert link.spawned == [1] and link._idle_readers == 1  # counted at once: no second spawn
    assert link.hand_off_if_overdue(now=100.1, delay=1.0) is False
    assert link.spawned == [1]


def test_a_holder_reading_as_a_caller_keeps_the_token(link) -> None:
    """A call that calls back over its own connection reads it as a caller: taking the token
    from it then would leave two threads reading one socket."""
    assert link._token.try_take()
    link._inline = (ME, 0.0)
    link._caller_reader = ME
    assert link.hand_off_if_overdue(now=100.0, delay=1.0) is True
    assert link._token.holder == ME and link.spawned == []


def test_a_running_call_that_gives_the_token_away_gets_a_reader_started(link) -> None:
    """A call that waited in a nested erpc call on its own connection hands the token on when
    the wait ends; with nobody to take it and the reader busy running that call, a reader is
    started, so the connection keeps being read."""
    from pynode.pending import Pending

    assert link._token.try_take()
    link._inline = (ME, 0.0)
    assert link.await_result(Pending(), timeout=0) is False  # no connection here: nothing to read
    assert link._token.free and link.spawned == [1]
    link._inline = None
    assert link._token.try_take()
    assert link.await_result(Pending(), timeout=0) is False  # no call running: the owner reads
    assert link.spawned == [1]


def test_a_caller_whose_token_was_handed_on_does_not_read(link) -> None:
    """The check that the caller still holds the token and its mark as a reading caller are one
    step under the lock: a token handed on just before is never read with."""
    from pynode.pending import Pending

    pending = Pending()
    assert link._token.try_take()
    link._inline = (ME, 0.0)
    link.hand_off_if_overdue(now=100.0, delay=1.0)  # the watchdog hands it on first
    assert link._read_for(pending, deadline=None) is False
    assert link._caller_reader == 0 and not pending.done
