"""The read token: one holder at a time, non-blocking takes, and a give that wakes exactly one
blocked taker."""

from __future__ import annotations

import threading
import time

from pynode.readtoken import ReadToken
from pynode.testing import wait_until


def test_free_token_is_taken_once_until_given_back() -> None:
    token = ReadToken()
    assert token.try_take()
    assert not token.try_take()
    token.give()
    assert token.try_take()


def test_take_of_a_free_token_does_not_block() -> None:
    token = ReadToken()
    token.take()
    assert not token.try_take()


def test_each_give_wakes_exactly_one_blocked_taker() -> None:
    token = ReadToken()
    assert token.try_take()
    holders: list[int] = []

    def taker(i: int) -> None:
        token.take()
        holders.append(i)

    threads = [threading.Thread(target=taker, args=(i,), daemon=True) for i in range(2)]
    for t in threads:
        t.start()
    assert wait_until(lambda: token._sleepers == 2, timeout=5)
    token.give()
    assert wait_until(lambda: len(holders) == 1, timeout=5)
    time.sleep(0.05)
    assert len(holders) == 1, "one give woke two takers"
    assert not token.try_take(), "the woken taker holds the token"
    token.give()
    assert wait_until(lambda: len(holders) == 2, timeout=5)
    token.give()
    assert token.try_take(), "with nobody blocked, give frees the token"


def test_holder_is_recorded_by_every_take_cleared_by_give_and_set_by_transfer() -> None:
    token = ReadToken()
    me = threading.get_ident()
    assert token.try_take() and token.holder == me
    token.transfer(12345)
    assert token.holder == 12345 and not token.try_take(), "a transfer keeps the token taken"
    token.give()
    assert token.holder == 0
    token.take()
    assert token.holder == me
    token.give()

    def blocked_taker(seen: list[int]) -> None:
        token.take()
        seen.append(token.holder)

    assert token.try_take()
    seen: list[int] = []
    thread = threading.Thread(target=blocked_taker, args=(seen,), daemon=True)
    thread.start()
    assert wait_until(lambda: token._sleepers == 1, timeout=5)
    token.give()
    thread.join(5)
    assert seen == [thread.ident]
