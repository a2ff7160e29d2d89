"""``recording()``: this process's sys.stdout and sys.stderr, recorded as (stream, text) in
arrival order, for tests of output that comes home."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class Recorder:
    """Stands in for sys.stdout and sys.stderr at once: keeps (stream, text) in arrival order."""

    def __init__(self, log: list[tuple[str, str]], name: str) -> None:
        self.log = log
        self.name = name

    def write(self, text: str) -> int:
        self.log.append((self.name, text))
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def recording() -> Iterator[list[tuple[str, str]]]:
    """sys.stdout and sys.stderr recorded for the block (set in the test body: pytest's own
    capture sets them afresh at the start of each test phase)."""
    log: list[tuple[str, str]] = []
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Recorder(log, "out"), Recorder(log, "err")
    try:
        yield log
    finally:
        sys.stdout, sys.stderr = saved
