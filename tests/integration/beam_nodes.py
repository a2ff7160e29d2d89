"""Real BEAM nodes for the interop tests: a real ``epmd`` and ``erl`` nodes driven over a pipe.

``real_epmd(hosts)`` runs ``epmd`` on a free port, listening on 127.0.0.1 (where ``erl``
registers) and on each host (where peers look a node up): pynode's own port mapper binds one
address, so a BEAM node named ``x@127.0.4.2`` is only found through a real epmd.

``ErlNode`` is ``erl -noshell -name N -setcookie C`` whose stdin/stdout carry Erlang expressions
and their results (``{packet, 4}`` frames, results as external terms decoded by pynode.etf):
``node.eval("net_adm:ping('py@127.0.4.1').")`` returns ``Atom('pong')``. The expression runs in
the node's control process; an exception comes back as ``ErlEvalError``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from pynode import etf
from pynode.testing import free_port, wait_until

ERL = shutil.which("erl")
EPMD = shutil.which("epmd")
ELIXIR = shutil.which("elixir")
needs_erl = pytest.mark.skipif(ERL is None or EPMD is None, reason="erl/epmd not installed (apt-get install erlang-base)")
needs_elixir = pytest.mark.skipif(
    ELIXIR is None or ERL is None or EPMD is None, reason="elixir not installed (apt-get install elixir)"
)
START_TIMEOUT = 30.0  # seconds for erl to come up on a loaded 2-core box (usually ~1 s)

# The control loop: read an expression, evaluate it, answer {ok, Value} or {Class, Reason, Stack}.
_LOOP = r"""
Port = open_port({fd, 0, 1}, [{packet, 4}, binary, eof]),
Eval = fun(Text) ->
    {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Text)),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    {value, Value, _} = erl_eval:exprs(Exprs, erl_eval:new_bindings()),
    Value
end,
Loop = fun Loop() ->
    receive
        {Port, {data, Text}} ->
            Reply = try {ok, Eval(Text)} catch Class:Reason:Stack -> {Class, Reason, Stack} end,
            port_command(Port, term_to_binary(Reply)),
            Loop();
        {Port, eof} -> halt(0)
    end
end,
port_command(Port, term_to_binary(ready)),
Loop().
"""


class ErlEvalError(Exception):
    def __init__(self, kind: Any, reason: Any, stack: Any) -> None:
        super().__init__(f"{kind}: {reason!r}")
        self.kind, self.reason, self.stack = kind, reason, stack


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """``os.environ`` with ``values`` set for the block, as it was afterwards (even on failure)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def real_epmd(hosts: Sequence[str]) -> Iterator[int]:
    """A real epmd on a free port, on 127.0.0.1 and ``hosts``; killed afterwards."""
    port = free_port()
    addresses = ",".join(dict.fromkeys(["127.0.0.1", *hosts]))
    proc = subprocess.Popen(
        [EPMD, "-port", str(port), "-address", addresses], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL  # type: ignore[list-item]
    )
    try:
        from pynode import portmapper

        if not wait_until(lambda: all(portmapper.is_running(h, port) for h in hosts), START_TIMEOUT):
            raise RuntimeError(f"epmd did not come up on port {port}")
        yield port
    finally:
        proc.kill()
        proc.wait(10)


class ErlNode:
    """A running ``erl`` node; :meth:`eval` an expression, :meth:`kill` it (SIGKILL)."""

    def __init__(self, name: str, cookie: str, epmd_port: int, *, ticktime: int = 4, extra: Sequence[str] = ()) -> None:
        self.name = name
        env = dict(os.environ, ERL_EPMD_PORT=str(epmd_port))
        self.proc = subprocess.Popen(
            [ERL, "-noshell", "-noinput", "-name", name, "-setcookie", cookie,  # type: ignore[list-item]
             "-kernel", "net_ticktime", str(ticktime), *extra, "-eval", _LOOP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self._lock = threading.Lock()
        ready = self._read(START_TIMEOUT)
        if ready != "ready":
            raise RuntimeError(f"erl {name} did not start: {ready!r} {self.stderr()}")

    def eval(self, expression: str, timeout: float = 30.0) -> Any:
        with self._lock:
            data = expression.encode()
            assert self.proc.stdin is not None
            self.proc.stdin.write(struct.pack(">I", len(data)) + data)
            self.proc.stdin.flush()
            reply = self._read(timeout)
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        raise ErlEvalError(*reply)

    def _read(self, timeout: float) -> Any:
        assert self.proc.stdout is not None
        result: list[bytes] = []

        def read() -> None:
            header = self.proc.stdout.read(4)  # type: ignore[union-attr]
            if len(header) == 4:
                result.append(self.proc.stdout.read(struct.unpack(">I", header)[0]))  # type: ignore[union-attr]

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(timeout)
        if not result:
            raise RuntimeError(f"erl {self.name} gave no answer within {timeout} s: {self.stderr()}")
        return etf.decode(result[0])

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
