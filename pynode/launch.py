"""Start ``pynode start NAME`` node processes and wait until they are ready.

Shared by :class:`pynode.testing.LocalCluster` (nodes tied to the test process: they die with it)
and ``pynode cluster up`` (detached nodes that outlive the shell). A node is ready when it prints
its one ready line, ``pynode: NAME ready on HOST:PORT`` (see ``docs/design.md``); its stdout and
stderr go to files, never pipes, so a chatty node can never block on a full pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pynode.errors import NodeStartError

log = logging.getLogger(__name__)

READY_RE = re.compile(r"^pynode: (?P<name>\S+) ready on (?P<host>\S+):(?P<port>\d+)$", re.MULTILINE)
READY_POLL = 0.02  # seconds between looks at a starting node's stdout file
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL: a node's clean stop takes milliseconds
STDERR_TAIL_LINES = 30  # lines of a node's stderr quoted when it fails to start

# prctl(2) option: deliver a signal to this process when its parent thread dies (linux/prctl.h).
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class NodeSpec:
    """How to start one node: ``pynode start NAME [--hidden] [--preload M ...] [--port N]``."""

    name: str
    hidden: bool = False
    preload: tuple[str, ...] = ()
    port: int = 0
    extra_args: tuple[str, ...] = field(default=())

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "pynode", "start", self.name]
        if self.hidden:
            cmd.append("--hidden")
        for module in self.preload:
            cmd += ["--preload", module]
        if self.port:
            cmd += ["--port", str(self.port)]
        return cmd + list(self.extra_args)


def _die_with_parent(parent_pid: int) -> None:
    """preexec_fn: ask the kernel to SIGKILL the child when the parent dies (Linux only).

    The signal fires when the thread that forked the child exits, so start clusters from a thread
    that outlives them (the main thread in pytest).
    """
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


class NodeProcess:
    """One ``pynode start`` process; ``port`` is set once :meth:`wait_ready` has seen the line."""

    def __init__(self, spec: NodeSpec, *, env: dict[str, str], log_dir: Path, detached: bool):
        self.spec = spec
        self.env = env
        self.detached = detached
        stem = spec.name.replace("@", "_at_")
        self.stdout_path = log_dir / f"{stem}.out"
        self.stderr_path = log_dir / f"{stem}.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def spawn(self) -> None:
        """Start the process (stdout/stderr truncated into their files)."""
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            kwargs: dict[str, object] = {}
            if self.detached:
                kwargs["start_new_session"] = True
            else:
                kwargs["preexec_fn"] = lambda parent=os.getpid(): _die_with_parent(parent)
            self.proc = subprocess.Popen(
                self.spec.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=self.env,
                close_fds=True,
                **kwargs,  # type: ignore[arg-type]
            )
        self.port = None
        log.info("spawned %s as pid %d", self.spec.name, self.proc.pid)

    def ready_port(self) -> int | None:
        """The port from the ready line if it has been printed, else None."""
        try:
            text = self.stdout_path.read_text(errors="replace")
        except OSError:
            return None
        for match in READY_RE.finditer(text):
            if match["name"] == self.spec.name:
                return int(match["port"])
        return None

    def wait_ready(self, deadline: float) -> int:
        """Wait (until the ``time.monotonic()`` deadline) for the ready line; return the port.

        Raises :class:`NodeStartError` naming the node and quoting its stderr when the process
        exits first or the deadline passes (the process is then killed).
        """
        assert self.proc is not None, "spawn() first"
        while True:
            port = self.ready_port()
            if port is not None:
                self.port = port
                return port
            code = self.proc.poll()
            if code is not None:
                raise NodeStartError(
                    f"node {self.spec.name} exited with code {code} before it was ready; "
                    f"its stderr ends with:\n{self.stderr_tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise NodeStartError(
                    f"node {self.spec.name} (pid {self.proc.pid}) printed no ready line in time; "
                    f"its stderr ends with:\n{self.stderr_tail()}"
                )
            time.sleep(READY_POLL)

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError as exc:
            return f"<cannot read {self.stderr_path}: {exc}>"
        return "\n".join(text.splitlines()[-lines:]) or "<empty>"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, grace: float = STOP_GRACE) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; reap and return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("node %s ignored SIGTERM for %g s; killing it", self.spec.name, grace)
                self.kill()
        return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL and reap (no clean stop: for fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()
