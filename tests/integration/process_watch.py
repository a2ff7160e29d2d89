"""Watching a node's descendant processes: which are busy (sampling chains), and when they are gone.

Shared by the livebook_client integration tests that cancel or kill remote sampling.
"""
from __future__ import annotations

import time

import psutil

# CPU seconds a chain worker burns in half a second of wall time when it is sampling (it would
# burn ~0.5 on a free core, and still > 0.1 on a loaded 2-core box; an idle worker burns ~0).
BUSY_CPU_SECONDS = 0.1
WINDOW_SECONDS = 0.5


def busy_descendants(pid: int) -> list[psutil.Process]:
    """Processes under ``pid`` that are burning CPU (the chains' workers while they sample)."""
    before = {}
    for process in psutil.Process(pid).children(recursive=True):
        try:
            before[process] = sum(process.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    time.sleep(WINDOW_SECONDS)
    busy = []
    for process, cpu in before.items():
        try:
            if sum(process.cpu_times()[:2]) - cpu > BUSY_CPU_SECONDS:
                busy.append(process)
        except psutil.NoSuchProcess:
            pass
    return busy


def wait_for_busy(pid: int, attempts: int = 40) -> list[psutil.Process]:
    """The busy descendants of ``pid`` once there are any (empty after ``attempts`` windows)."""
    for _ in range(attempts):
        busy = busy_descendants(pid)
        if busy:
            return busy
    return []


def gone(processes: list[psutil.Process]) -> bool:
    """True when every process has exited (a zombie awaiting its reaper counts as exited)."""
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            pass
    return True
