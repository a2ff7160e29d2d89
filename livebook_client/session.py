"""Attach this process to a compute node and run work there, like Livebook's attached runtime.

``attach("exmc@127.0.0.14")`` makes this process a (hidden) pynode node if it is not one yet,
connects, and checks that the target can sample: exmc importable there, same major.minor version
as here (the IR and the returned ``Chains`` travel pickled between the two).

``Session.sample`` runs ``exmc.NUTS.Sampler.sample_chains`` on the target with one
``erpc.send_request``. The shipped closure captures this process's pid (``pynode.self_pid()``)
and turns each exmc progress event into a message to it; while the request runs, the session
drains its mailbox into a progress display. Interrupting the wait (Ctrl-C, or interrupting the
Jupyter cell) abandons the request, which makes pynode cancel the remote call: exmc then
terminates the chains' worker processes and rebuilds its pool, and the node keeps serving.

The closures are built inside functions so that cloudpickle ships them by value: the compute
node needs pynode and exmc, not livebook_client.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pynode
from pynode import Node, erpc
from pynode import names as node_names
from pynode import portmapper
from pynode.errors import ErpcTimeout, NoConnection

from .errors import AttachError, IncompatibleNode
from .progress import ChainProgress, ProgressDisplay, make_progress

if TYPE_CHECKING:
    from exmc.ir import IR

    from .jobs import DrawStream, Job, JobList
    from .status import ClusterStatus
    from exmc.nuts.trace import Chains

logger = logging.getLogger(__name__)

# Deadline of the short calls made while attaching (version check): a live node answers in
# milliseconds; a few seconds covers a busy machine without hanging a notebook cell.
ATTACH_TIMEOUT = 10.0

# Default deadline of Session.call, as the seed's erpc.call(..., timeout=60).
DEFAULT_CALL_TIMEOUT = 60.0

# How long the session blocks on its mailbox between checks of the response: bounds both the
# progress latency and the delay before a finished sampling returns.
POLL_SECONDS = 0.02

# First element of every progress message, so that unrelated mailbox traffic is not mistaken
# for progress.
PROGRESS_TAG = "livebook_client.progress"


def _remote_versions_fn() -> Callable[[], dict[str, str]]:
    def remote_versions() -> dict[str, str]:
        import exmc
        import pynode as remote_pynode

        return {"node": remote_pynode.Node.self(), "exmc": exmc.__version__}

    return remote_versions


def _remote_sampler_fn(caller: pynode.Pid | None, token: str) -> Callable[..., Chains]:
    """The function shipped by ``Session.sample``: samples and streams progress to ``caller``.

    A failing ``send`` (the caller has gone) is logged on the compute node and never stops the
    sampling; the caller's own departure cancels the call through pynode. ``pynode.cancelled`` is
    the sampler's ``should_stop`` (unless the caller gives one), so a cancelled call stops its
    chains within ~0.1 s even while the worker thread waits in C, where pynode's asynchronous
    exception cannot land.
    """

    def sample_remotely(ir: IR, num_chains: int, options: dict[str, Any]) -> Chains:
        import dataclasses
        import logging as remote_logging

        import exmc
        import pynode as remote_pynode

        def forward(event: Any) -> None:
            # exmc's ProgressEvent travels as a plain dict: the wire format stays ours.
            try:
                remote_pynode.send(caller, (PROGRESS_TAG, token, dataclasses.asdict(event)))
            except Exception:  # noqa: BLE001 - progress must never break the sampling
                remote_logging.getLogger("livebook_client.remote").warning(
                    "progress message to %r failed", caller, exc_info=True)

        from exmc.nuts import runs

        options.setdefault("should_stop", remote_pynode.cancelled)
        label = f"sample from {caller.node if caller is not None else 'a caller'}"
        with runs.running(label, list(range(num_chains))):
            chains = exmc.NUTS.Sampler.sample_chains(
                ir, num_chains, progress=forward if caller is not None else None, **options)
        here = remote_pynode.Node.self() if remote_pynode.Node.alive() else None
        for trace in chains:
            trace.info.setdefault("node", here)
        return chains

    return sample_remotely


def _nodes_with_exmc() -> list[str]:
    """Connected nodes that have exmc loaded (``nodes="all"``, ``status()``)."""
    from exmc.nuts.pynode_backend import nodes_with_exmc

    return nodes_with_exmc()


def default_node_name(target: str) -> str:
    """A name for this process when it must become a node to reach ``target``.

    On loopback the client listens on the target's own address (the port mapper there already
    runs); otherwise on this machine's fully qualified name. The alive part is unique per
    process: ``livebook_<pid>``.
    """
    host = node_names.parse(target).host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return f"livebook_{os.getpid()}@{host if loopback else socket.getfqdn()}"


def is_loopback(node: str) -> bool:
    """True when ``node``'s host resolves to a loopback address."""
    host = node_names.parse(node).host
    try:
        address = socket.getaddrinfo(host, None)[0][4][0]
    except socket.gaierror:
        return False
    return ipaddress.ip_address(address).is_loopback


def _compatible(local: str, remote: str) -> bool:
    return local.split(".")[:2] == remote.split(".")[:2]


class Session:
    """A connection to one compute node. Build it with :func:`attach`.

    Attributes: ``node`` (the target's name, as the target reports it), ``versions`` (what the
    target reported when attaching).
    """

    def __init__(self, node: str, versions: dict[str, str]) -> None:
        self.node = node
        self.versions = versions

    def __repr__(self) -> str:
        return f"<Session {Node.self()} -> {self.node} (exmc {self.versions.get('exmc')})>"

    def start(self, ir: IR, chains: int = 4, num_samples: int = 1000, num_warmup: int = 500,
              seed: int | None = None, name: str | None = None, nodes: Sequence[str] | str | None = None,
              **sampler_options: Any) -> Job:
        """Start a *detached* run on the attached node and return its :class:`~livebook_client.jobs.Job`.

        The run belongs to the node (:mod:`exmc.nuts.jobs`): it keeps running when this process
        exits or its kernel restarts; ``session.job(name)`` from any attached process follows
        it, ``job.result()`` returns its ``Chains``, ``job.cancel()`` stops it. ``name``: a
        unique name on the node (default ``job-<time>-<random>``); ``nodes``: spread its chains
        over these nodes, coordinated by the attached node. Other arguments as :meth:`sample`.

        Failure modes: ``exmc.ValidationError`` here for a malformed IR (nothing sent);
        ``ValueError`` from the node for a taken name (naming the job holding it) or bad options;
        ``NoConnection`` when the node cannot be reached.
        """
        return self._start(ir, chains, num_samples, num_warmup, seed, name, nodes, sampler_options)

    def _start(self, ir: IR, chains: int, num_samples: int, num_warmup: int, seed: int | None,
               name: str | None, nodes: Sequence[str] | str | None, sampler_options: dict[str, Any],
               follow_output: bool = False) -> Job:
        from exmc.nuts.api import validate_payload

        from .jobs import CALL_TIMEOUT, Job

        validate_payload(ir)
        options: dict[str, Any] = dict(sampler_options, num_samples=num_samples, num_warmup=num_warmup)
        if seed is not None:
            options["seed"] = seed
        if nodes is not None:
            options["nodes"] = ([self.node] + [p for p in _nodes_with_exmc() if p != self.node]
                                if nodes == "all" else list(nodes))
        if name is None:
            name = f"job-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        erpc.call(self.node, "exmc.nuts.jobs:start", name, ir, chains, options, follow_output, timeout=CALL_TIMEOUT)
        return Job(self.node, name)

    def jobs(self) -> JobList:
        """The detached runs on the attached node, running and finished (name, status, started,
        progress, nodes): a table in Jupyter."""
        from .jobs import list_jobs

        return list_jobs(self.node)

    def job(self, name: str) -> Job:
        """The detached run ``name`` on the attached node (any process may reattach). Raises
        KeyError naming the node's jobs when there is none of that name."""
        from .jobs import Job

        job = Job(self.node, name)
        job.state()  # KeyError now rather than at the first use
        return job

    def status(self, timeout: float = ATTACH_TIMEOUT) -> ClusterStatus:
        """The attached node and every other connected node with exmc: exmc workers busy/free, load
        average, memory, sampling runs in progress (a table; HTML in Jupyter). A node that does
        not answer within ``timeout`` seconds is listed as unreachable, with the reason."""
        from .status import collect

        nodes = [self.node] + [peer for peer in _nodes_with_exmc() if peer != self.node]
        return collect(nodes, timeout)

    def call(self, fn: Callable[..., Any] | str, *args: Any,
             timeout: float | None = DEFAULT_CALL_TIMEOUT, **kwargs: Any) -> Any:
        """``erpc.call`` on the attached node: same errors (``ErpcTimeout``, ``NoConnection``,
        the remote exception itself)."""
        return erpc.call(self.node, fn, *args, timeout=timeout, **kwargs)

    def sample(self, ir: IR, chains: int = 4, num_samples: int = 1000, num_warmup: int = 500,
               seed: int | None = None, progress: bool | ProgressDisplay = True,
               timeout: float | None = None, nodes: Sequence[str] | str | None = None,
               stream: bool = False, live_trace: str | None = None, **sampler_options: Any) -> Chains | DrawStream:
        """Run ``exmc.NUTS.Sampler.sample_chains`` on the attached node and return its ``Chains``.

        ``seed=None`` leaves the sampler's default seed; other ``sampler_options``
        (``target_accept``, ``dense_mass``, ...) pass through. With ``progress=True`` a live
        display follows each chain (tqdm bars in a terminal, an in-place table in Jupyter); a
        :class:`~livebook_client.progress.ProgressDisplay` object receives the updates instead.
        ``timeout``: seconds, default ``None`` — wait until the chains finish.

        ``nodes``: spread the chains over these compute nodes instead (a list of names, or
        ``"all"``: the attached node and every other connected node with exmc loaded). This
        process coordinates (:mod:`exmc.nuts.multinode`): as many chains run at once on each
        node as it has workers, the draws equal a one-node run with the same seed, each
        ``Trace.info`` names its ``node`` and ``worker``, the display shows every chain with its
        node, and a node lost mid-run has its unfinished chains rerun on the others (the
        display and ``Chains.warnings()`` say which node and which chains).

        ``stream=True``: return at once a :class:`~livebook_client.jobs.DrawStream` that yields
        the draws as they are made (``exmc.nuts.stream.DrawBatch`` es, at most every 0.2 s per
        chain) and whose ``result()`` gives the ``Chains``; leaving its loop early cancels the
        sampling. ``live_trace="mu"``: draw a running trace of that variable under the progress
        table (redrawn in place, at most once a second). Both run the sampling as a detached
        job (:meth:`start`) that this call follows; interrupting the call cancels it.

        The IR is validated here first: a malformed model raises ``exmc.ValidationError``
        before anything is sent.

        Failure modes: ``ErpcTimeout`` after ``timeout`` seconds (the remote sampling is
        cancelled); ``NoConnection`` at once if the node dies or the link drops (with
        ``nodes``: when every node is lost, describing which chains finished); a sampler error
        raised as itself (with ``nodes``: noting its chain and node); ``KeyboardInterrupt``
        after cancelling the remote sampling.
        """
        from exmc.nuts.api import validate_payload

        validate_payload(ir)  # a typo fails here, before anything is sent (the node checks again)
        if stream or live_trace is not None:
            from .jobs import DrawStream

            job = self._start(ir, chains, num_samples, num_warmup, seed, None, nodes, sampler_options,
                              follow_output=True)  # someone watches it: its prints come here
            if stream:
                return DrawStream(job)
            finished = False
            try:
                result = job.result(timeout, progress=progress, live_trace=live_trace)
                finished = True
                return result
            except TimeoutError as error:
                raise ErpcTimeout(f"sampling on {self.node} did not finish within {timeout} s") from error
            finally:
                if not finished:
                    job.forget()
        if nodes is not None:
            return self._sample_on_nodes(ir, chains, num_samples, num_warmup, seed, progress, timeout,
                                         nodes, sampler_options)
        options: dict[str, Any] = dict(sampler_options, num_samples=num_samples,
                                       num_warmup=num_warmup)
        if seed is not None:
            options["seed"] = seed
        token = secrets.token_hex(8)
        caller = pynode.self_pid() if progress is not False else None
        request = erpc.send_request(self.node, _remote_sampler_fn(caller, token), ir, chains, options)
        if isinstance(progress, bool):
            display = make_progress(chains, num_warmup + num_samples, enabled=progress)
        else:
            display = progress
        completed = False
        try:
            result = self._await(request, token, display, timeout)
            completed = True
            return result
        except BaseException:
            self._abandon(request)
            raise
        finally:
            if display is not None:
                display.close(completed=completed)

    def _sample_on_nodes(self, ir: IR, chains: int, num_samples: int, num_warmup: int, seed: int | None,
                         progress: bool | ProgressDisplay, timeout: float | None,
                         nodes: Sequence[str] | str, sampler_options: dict[str, Any]) -> Chains:
        import exmc
        from exmc.nuts.multinode import ChainPlaced, NodeLost

        if nodes == "all":
            nodes = [self.node] + [peer for peer in _nodes_with_exmc() if peer != self.node]
        if isinstance(progress, bool):
            display = make_progress(chains, num_warmup + num_samples, enabled=progress)
        else:
            display = progress
        total = num_warmup + num_samples
        placed: dict[int, str] = {}

        def feed(event: Any) -> None:
            if display is None:
                return
            if isinstance(event, ChainPlaced):
                placed[event.chain] = event.node
                display.update(ChainProgress.queued(event.chain, total, event.node))
            elif isinstance(event, NodeLost):
                note = getattr(display, "note", None)
                if note is not None:
                    note(event.describe())
                else:
                    logger.warning("%s", event.describe())
            else:
                display.update(ChainProgress.from_event(dataclasses.asdict(event), node=placed.get(event.chain)))

        deadline = None if timeout is None else time.monotonic() + timeout
        options = dict(sampler_options)
        if seed is not None:
            options["seed"] = seed
        completed = False
        try:
            result = exmc.NUTS.Sampler.sample_chains(
                ir, chains, num_samples=num_samples, num_warmup=num_warmup, nodes=list(nodes), progress=feed,
                should_stop=None if deadline is None else (lambda: time.monotonic() >= deadline), **options)
            completed = True
            return result
        except InterruptedError:
            if deadline is not None and time.monotonic() >= deadline:
                raise ErpcTimeout(f"sampling on {list(nodes)} did not finish within {timeout} s") from None
            raise
        finally:
            if display is not None:
                display.close(completed=completed)

    def _await(self, request: erpc.Request, token: str, display: ProgressDisplay | None,
               timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            response = erpc.wait_response(request, timeout=0 if display is not None else POLL_SECONDS)
            if response is not None:
                self._drain(token, display, wait=0)
                return response[1]
            if deadline is not None and time.monotonic() >= deadline:
                raise ErpcTimeout(f"sampling on {self.node} did not finish within {timeout} s")
            if display is not None:
                self._drain(token, display, wait=POLL_SECONDS)

    @staticmethod
    def _drain(token: str, display: ProgressDisplay | None, wait: float) -> None:
        """Feed this request's progress messages to ``display``, waiting at most ``wait`` seconds
        for the first one. Progress of earlier, abandoned requests is dropped; any other message
        stays in the mailbox, in its place (a selective receive)."""
        if display is None:
            return
        while True:
            try:
                message = pynode.receive(timeout=wait, match=_is_progress)
            except TimeoutError:
                return
            wait = 0
            if message[1] == token:
                display.update(ChainProgress.from_event(message[2]))

    @staticmethod
    def _abandon(request: erpc.Request) -> None:
        """Give up on ``request``: pynode then cancels the remote call."""
        try:
            erpc.receive_response(request, timeout=0)
        except (ErpcTimeout, NoConnection):
            pass
        except BaseException:  # noqa: BLE001 - the original exception is what the caller needs
            logger.debug("abandoning request %r raised", request, exc_info=True)


def _is_progress(message: Any) -> bool:
    return isinstance(message, tuple) and len(message) == 3 and message[0] == PROGRESS_TAG


def _check_remote(target: str, timeout: float) -> dict[str, str]:
    """Ask ``target`` for its name and exmc version; raise the errors :func:`attach` documents."""
    import exmc

    try:
        versions = erpc.call(target, _remote_versions_fn(), timeout=timeout)
    except NoConnection as error:
        raise AttachError(f"attach({target!r}) failed: {error}") from error
    except ModuleNotFoundError as error:
        raise IncompatibleNode(f"{target} is a pynode node but cannot import exmc: {error}") from error
    if not _compatible(exmc.__version__, versions["exmc"]):
        raise IncompatibleNode(f"{target} runs exmc {versions['exmc']}, this client has exmc "
                               f"{exmc.__version__}; major and minor versions must match")
    return versions


def _look_up(target: str, timeout: float) -> None:
    """Ask the port mapper on ``target``'s host whether ``target`` is registered, without
    starting anything: a failed lookup starts no daemon (neither there nor here)."""
    parsed = node_names.parse(target)
    try:
        port = portmapper.port_please(parsed.host, parsed.alive, timeout=timeout)
    except portmapper.PortMapperError as error:
        raise AttachError(f"attach({target!r}) failed: no port mapper answers on {parsed.host} "
                          f"(is a node running there?): {error}") from error
    if port is None:
        raise AttachError(f"attach({target!r}) failed: the port mapper on {parsed.host} has no node "
                          f"named {parsed.alive!r}")


def attach(target: str, name: str | None = None, cookie: str | None = None, *,
           timeout: float = ATTACH_TIMEOUT) -> Session:
    """Attach this process to the compute node ``target`` and return a :class:`Session`.

    ``target``: ``alive@host`` of a pynode node with exmc (e.g. ``exmc@127.0.0.14``). ``name``:
    this process's node name when it must become a node (default :func:`default_node_name`:
    ``livebook_<pid>@<host>``). ``cookie``: the cluster's cookie (default: pynode's cookie
    sources, ``$PYNODE_COOKIE`` then ``~/.pynode.cookie``). ``timeout``: seconds for the checks
    made while attaching (default 10).

    If this process is not a node yet it starts as a hidden node named ``name`` with
    ``cookie``, and stops being one again if attaching fails. If it already is a node,
    ``cookie`` is set for ``target`` only. Before anything starts, the port mapper on
    ``target``'s host is asked for ``target`` (a lookup only: a failed attach leaves no
    port-mapper daemon behind).

    Failure modes: ``BadNodeName`` for a malformed ``target``; :class:`AttachError` when no port
    mapper answers on the target's host, the target is not registered there, it cannot be
    reached, or it refuses us (a wrong cookie shows here, with pynode's reason);
    :class:`IncompatibleNode` when exmc is missing there or its version differs. Nothing is
    left running after a failure.
    """
    node_names.parse(target)
    started_here = not Node.alive()
    if started_here:
        _look_up(target, timeout)
        Node.start(name or default_node_name(target), cookie=cookie, hidden=True)
    elif cookie is not None:
        Node.set_cookie(target, cookie)
    try:
        versions = _check_remote(target, timeout)
    except BaseException:
        if started_here:  # leave the process as it was, so that a retry can choose anew
            Node.stop()
        raise
    logger.info("attached %s to %s (exmc %s)", Node.self(), versions["node"], versions["exmc"])
    return Session(versions["node"], versions)
