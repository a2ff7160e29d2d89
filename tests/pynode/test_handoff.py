"""The per-node watchdog that hands a socket on when a call runs long (fake connections)."""

from __future__ import annotations

import threading

from pynode import handoff
from pynode.testing import wait_until


class FakeLink:
    """Records the watchdog's looks; has 'a call that may need its socket handed on' until told
    otherwise."""

    def __init__(self) -> None:
        self.running = False
        self.looks = 0
        self.lock = threading.Lock()

    def hand_off_if_overdue(self, now: float, delay: float) -> bool:
        assert delay == handoff.HANDOFF_DELAY
        with self.lock:
            self.looks += 1
        return self.running


class BrokenLink:
    def hand_off_if_overdue(self, now: float, delay: float) -> bool:
        raise RuntimeError("boom")


def test_watchdog_looks_while_calls_run_then_sleeps_until_the_next_call() -> None:
    link = FakeLink()
    link.running = True
    watchdog = handoff.HandoffWatchdog(lambda: [BrokenLink(), link], "test")
    try:
        watchdog.watch()
        assert wait_until(lambda: link.looks >= 5, timeout=5), "no looks while a call runs"
        assert not watchdog._asleep, "slept while a call was running"
        link.running = False
        assert wait_until(lambda: watchdog._asleep, timeout=5), "never went to sleep once idle"
        looks = link.looks
        threading.Event().wait(10 * handoff.TICK)
        assert link.looks == looks, "looked while asleep"
        watchdog.watch()  # a call starts: the watchdog wakes and looks again
        assert wait_until(lambda: link.looks > looks, timeout=5)
    finally:
        watchdog.stop()
    assert wait_until(lambda: not watchdog._thread.is_alive(), timeout=5)
