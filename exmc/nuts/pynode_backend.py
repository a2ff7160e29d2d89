"""The pynode transport of a run over nodes (:class:`exmc.nuts.multinode.ClusterBackend`).

Imported only when ``sample_chains(..., nodes=...)`` runs (exmc itself never needs pynode); the
calling process must be a pynode node. Built on today's pynode API: ``erpc.send_request`` for
each share, the caller's mailbox for what a share streams back, ``Node.monitor`` for node loss.

Wire format — what a share on a compute node sends to the coordinator's mailbox (``pid`` is the
coordinating thread's :func:`pynode.self_pid`), each a tuple tagged with the share's token:

==================================================  ===========================================
``(SHARE_TAG, token, "progress", event_dict)``      exmc ``ProgressEvent`` as a dict (≤ ~10/s
                                                    per chain)
``(SHARE_TAG, token, "draws", batch)``              with streaming: an ``exmc.nuts.stream.DrawBatch``
                                                    of one chain's draws (≤ 1 per 0.2 s per chain)
``(SHARE_TAG, token, "done", trace)``               one finished chain's ``Trace`` (pickled by
                                                    pynode: numpy arrays out of band)
==================================================  ===========================================

The share's erpc response is the list of its chain numbers, sent after every ``"done"``
message: the coordinator checks that each arrived (messages and the response travel on the
same connection, in order). A share's failure is its erpc failure: ``NoConnection`` (the node or
the link is gone: the node is lost), or the chain's own exception re-raised by erpc. The
coordinator also gets ``("nodedown", node)`` from ``Node.monitor``. The coordinator receives
these selectively: other messages stay in the mailbox, in their order, for the thread's own
use while the run goes on (a detached job answers its requests from the sampler's
``should_stop``).
"""
from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

import pynode
from pynode import Node, erpc
from pynode.errors import NoConnection

from exmc.nuts.multinode import NodeDown, ShareChainDone, ShareDraws, ShareEnded, ShareFailed, ShareProgress
from exmc.nuts.progress import ProgressEvent
from exmc.nuts.sampler import SamplerOptions

logger = logging.getLogger(__name__)

SHARE_TAG = "exmc.share"

# Deadline of the short calls made before sampling (worker counts, "which nodes have exmc"): a
# live node answers in milliseconds; this covers a loaded box.
QUERY_TIMEOUT = 10.0

# How long a nodedown waits for the failure of the node's shares, whose message says why (s).
DOWN_REASON_WAIT = 0.5

# How long to wait, after a share's response, for "done" messages still in flight (s). They
# precede the response on the same connection, so this only guards against a broken promise.
LATE_TRACE_SECONDS = 5.0


def node_workers() -> int:
    """On a compute node: how many chains it runs at once — one per core, or more when its warm
    pool was started larger (``start_pool(n)``). Not the pool's current size: a pool shrinks to
    nothing after an aborted run and regrows on demand."""
    from exmc.nuts import pool

    return max(pool.get_pool().size, pool.default_workers())


def node_has_exmc() -> bool:
    """On a node: is exmc loaded there (imported, e.g. by ``--preload exmc``)?"""
    import sys

    return "exmc.nuts" in sys.modules or "exmc" in sys.modules


def nodes_with_exmc() -> list[str]:
    """The peers that have exmc loaded, in ``Node.list`` order; a node that does not answer is
    left out. Peers are the visible ones; for a hidden caller (a notebook, whose every connection
    is hidden) all connected ones. So a compute node coordinating ``nodes="all"`` never counts a
    notebook attached to it (hidden, with exmc imported) as a compute node."""
    from pynode import runtime

    peers = Node.list("connected" if runtime.current().hidden else "visible")
    answers = erpc.multicall(peers, node_has_exmc, timeout=QUERY_TIMEOUT)
    return [peer for peer, (kind, value) in zip(peers, answers) if kind == "ok" and value]


def run_share(caller: pynode.Pid, token: str, payload: Any, chains: list[int],
              seeds: list[np.random.SeedSequence], options: SamplerOptions, max_workers: int,
              stream: bool = False) -> list[int]:
    """On a compute node: run ``chains`` in the warm pool and stream them to ``caller``.

    The IR is validated here again (a malformed model never reaches the workers). A chain's
    exception propagates (erpc carries it to the coordinator) with ``exmc_chain`` set.
    """
    from exmc.nuts import pool, runs
    from exmc.nuts.api import validate_payload

    validate_payload(payload)

    def forward(event: ProgressEvent) -> None:
        try:
            pynode.send(caller, (SHARE_TAG, token, "progress", dataclasses.asdict(event)))
        except Exception:  # noqa: BLE001 - progress must never break the sampling
            logger.warning("progress message to %r failed", caller, exc_info=True)

    with runs.running(f"chains for {caller.node}", chains) as entry:
        def finished(trace: Any) -> None:
            trace.info["node"] = Node.self()
            pynode.send(caller, (SHARE_TAG, token, "done", trace))
            entry["done"].append(trace.info["chain"])

        def draws(batch: Any) -> None:
            pynode.send(caller, (SHARE_TAG, token, "draws", batch))

        pool.get_pool().run(payload, seeds, options, max_workers, forward, pynode.cancelled,
                            chain_ids=chains, on_result=finished, draws=draws if stream else None)
    return list(chains)


class _Run:
    """One share in flight: its node, token, and erpc request (None when it could not start)."""

    __slots__ = ("node", "token", "request", "start_error", "received")

    def __init__(self, node: str, token: str) -> None:
        self.node = node
        self.token = token
        self.received: set[int] = set()  # chains whose trace arrived
        self.request: erpc.Request | None = None
        self.start_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<share {self.token} on {self.node}>"


class PynodeBackend:
    """:class:`~exmc.nuts.multinode.ClusterBackend` over pynode (see the module docstring).
    Use from one thread: the one that calls ``sample_chains``, whose mailbox it reads."""

    def __init__(self) -> None:
        Node.self()  # NodeNotStarted here, with pynode's message, when this process is no node
        self.pid = pynode.self_pid()
        self._runs: dict[str, _Run] = {}  # token -> run, for the shares not yet ended
        self._monitored: set[str] = set()

    def resolve(self, nodes: Sequence[str] | str) -> list[str]:
        if isinstance(nodes, str):
            if nodes != "all":
                raise ValueError(f"nodes must be a list of node names or 'all', got {nodes!r}")
            return nodes_with_exmc()
        names = [str(node) for node in nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"nodes lists a node twice: {names}")
        return names

    def workers(self, nodes: Sequence[str]) -> dict[str, int | BaseException]:
        answers = erpc.multicall(nodes, node_workers, timeout=QUERY_TIMEOUT)
        result: dict[str, int | BaseException] = {}
        for node, (kind, value) in zip(nodes, answers):
            result[node] = value
            if kind == "ok" and node not in self._monitored:
                Node.monitor(node)
                self._monitored.add(node)
        return result

    def start(self, node: str, payload: Any, chains: list[int], seeds: list[np.random.SeedSequence],
              options: SamplerOptions, max_workers: int, stream: bool = False) -> _Run:
        run = _Run(node, secrets.token_hex(8))
        try:
            run.request = erpc.send_request(node, run_share, self.pid, run.token, payload, chains, seeds,
                                            options, max_workers, stream)
        except NoConnection as error:
            run.start_error = error
        self._runs[run.token] = run
        return run

    def poll(self, timeout: float) -> list[Any]:
        events = self._drain(timeout)
        for run in list(self._runs.values()):
            if run.start_error is not None:
                del self._runs[run.token]
                events.append(ShareFailed(run, run.start_error, lost=True))
                continue
            try:
                response = erpc.check_response(run.request)
            except NoConnection as error:
                del self._runs[run.token]
                events.append(ShareFailed(run, error, lost=True))
                continue
            except BaseException as error:  # noqa: BLE001 - a chain's own exception
                events += self._drain(0)
                del self._runs[run.token]
                events.append(ShareFailed(run, error, lost=False))
                continue
            if response is not None:
                events += self._late_traces(run, response[1])
                del self._runs[run.token]
                events.append(ShareEnded(run, response[1]))
        return events

    def _late_traces(self, run: _Run, chains: list[int]) -> list[Any]:
        """Drain until the trace of every chain in ``chains`` has arrived (bounded wait)."""
        extra = self._drain(0)
        deadline = time.monotonic() + LATE_TRACE_SECONDS
        while not set(chains) <= run.received and time.monotonic() < deadline:
            extra += self._drain(0.05)
        return extra

    def _drain(self, wait: float) -> list[Any]:
        """Mailbox messages as events, waiting at most ``wait`` s for the first one."""
        events: list[Any] = []
        while True:
            try:
                message = pynode.receive(timeout=wait, match=self._ours)
            except TimeoutError:
                return events
            wait = 0
            event = self._event(message)
            if event is not None:
                events.append(event)

    def _ours(self, message: Any) -> bool:
        return isinstance(message, tuple) and (
            (len(message) == 4 and message[0] == SHARE_TAG)
            or (len(message) == 2 and message[0] == "nodedown" and message[1] in self._monitored))

    def _event(self, message: Any) -> Any:
        if isinstance(message, tuple) and len(message) == 4 and message[0] == SHARE_TAG:
            run = self._find(message[1])
            if run is None:
                return None  # a share already ended or cancelled: dropped
            if message[2] == "progress":
                return ShareProgress(run, ProgressEvent(**message[3]))
            if message[2] == "draws":
                return ShareDraws(run, message[3])
            if message[2] == "done":
                run.received.add(message[3].info["chain"])
                return ShareChainDone(run, message[3])
            logger.warning("unknown share message kind %r from %s", message[2], run.node)
            return None
        if (isinstance(message, tuple) and len(message) == 2 and message[0] == "nodedown"
                and message[1] in self._monitored):
            self._monitored.discard(message[1])
            return NodeDown(message[1], self._down_reason(message[1]))
        return None

    def _down_reason(self, node: str) -> str:
        """Why ``node`` went down, as its shares' failed requests say it ("no tick from ... within
        2 s", "connection reset"); the connection fails them as it fires the node monitors, so
        wait a moment for that. ``"nodedown"`` when no share of it tells more."""
        for run in self._runs.values():
            if run.node != node or run.request is None:
                continue
            try:
                erpc.wait_response(run.request, DOWN_REASON_WAIT)
            except NoConnection as error:
                return f"{type(error).__name__}: {error}"
            except BaseException:  # noqa: BLE001 - another outcome tells nothing of the node
                pass
        return "nodedown"

    def _find(self, token: str) -> _Run | None:
        return self._runs.get(token)

    def cancel(self, run: _Run) -> None:
        self._runs.pop(run.token, None)
        if run.request is None:
            return
        try:
            erpc.receive_response(run.request, timeout=0)  # abandoning makes the node cancel it
        except BaseException:  # noqa: BLE001 - cancel never raises
            pass

    def no_connection(self, message: str) -> BaseException:
        return NoConnection(message)

    def close(self) -> None:
        """Remove the node monitors this backend added, one each (the calling thread's own
        monitors of those nodes stay), and the nodedown of any that fired after the run's last
        look, which a later run from this thread would otherwise take for a loss."""
        for node in self._monitored:
            try:
                Node.monitor(node, False, flush=True)
            except Exception:  # noqa: BLE001
                logger.debug("demonitor of %s failed", node, exc_info=True)
        self._monitored.clear()
