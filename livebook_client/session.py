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

import ipaddress
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pynode
from pynode import Node, erpc
from pynode import names as node_names
from pynode.errors import ErpcTimeout, NoConnection

from .errors import AttachError, IncompatibleNode
from .progress import ChainProgress, ProgressDisplay, make_progress

if TYPE_CHECKING:
    from exmc.ir import IR
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

        options.setdefault("should_stop", remote_pynode.cancelled)
        return exmc.NUTS.Sampler.sample_chains(
            ir, num_chains, progress=forward if caller is not None else None, **options)

    return sample_remotely


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

    def call(self, fn: Callable[..., Any] | str, *args: Any,
             timeout: float | None = DEFAULT_CALL_TIMEOUT, **kwargs: Any) -> Any:
        """``erpc.call`` on the attached node: same errors (``ErpcTimeout``, ``NoConnection``,
        the remote exception itself)."""
        return erpc.call(self.node, fn, *args, timeout=timeout, **kwargs)

    def sample(self, ir: IR, chains: int = 4, num_samples: int = 1000, num_warmup: int = 500,
               seed: int | None = None, progress: bool | ProgressDisplay = True,
               timeout: float | None = None, **sampler_options: Any) -> Chains:
        """Run ``exmc.NUTS.Sampler.sample_chains`` on the attached node and return its ``Chains``.

        ``seed=None`` leaves the sampler's default seed; other ``sampler_options``
        (``target_accept``, ``dense_mass``, ...) pass through. With ``progress=True`` a live
        display follows each chain (tqdm bars in a terminal, an in-place table in Jupyter); a
        :class:`~livebook_client.progress.ProgressDisplay` object receives the updates instead.

        Failure modes: ``ErpcTimeout`` after ``timeout`` seconds (the remote sampling is
        cancelled); ``NoConnection`` at once if the node dies or the link drops; a sampler error
        raised as itself; ``KeyboardInterrupt`` after cancelling the remote sampling.
        """
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


def attach(target: str, name: str | None = None, cookie: str | None = None, *,
           timeout: float = ATTACH_TIMEOUT) -> Session:
    """Attach this process to the compute node ``target`` and return a :class:`Session`.

    If this process is not a node yet it starts as a hidden node named ``name`` (default
    :func:`default_node_name`) with ``cookie`` (default: pynode's cookie sources), and stops
    being one again if attaching fails. If it already is a node, ``cookie`` is set for
    ``target`` only.

    Raises ``BadNodeName`` for a malformed ``target``; :class:`AttachError` when the target cannot
    be reached or refuses us (a wrong cookie shows here, with pynode's reason);
    :class:`IncompatibleNode` when exmc is missing there or its version differs.
    """
    node_names.parse(target)
    started_here = not Node.alive()
    if started_here:
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
