"""The ``pynode`` command: run a node, talk to nodes, bring a local cluster up and down.

::

    pynode start NAME [--cookie C | --cookie-file F] [--hidden] [--preload MODULE ...] [--port N]
                      [--ticktime S] [--no-connect-all] [--no-beam]
    pynode ping NODE                       # prints pong / pang (exit 0 / 1)
    pynode names [HOST]                    # like `epmd -names`
    pynode call NODE module:function [JSON_ARRAY_OF_ARGS] [--timeout S]
    pynode shell NAME                      # a Python REPL that is a node
    pynode cluster up|down CONFIG          # detached nodes from a cluster TOML file
    pynode tls init DIR [--name N ...] [--host H ...]   # a throwaway CA and node certificates

Every command that is a node (start, ping, call, shell) takes ``--max-message-size BYTES``
(``64M``, ``1GiB``...), ``--handshake-slots N`` and ``--tls-certfile F --tls-keyfile F
--tls-cafile F`` (TLS: all three, see :mod:`pynode.tls`).

Environment: ``PYNODE_COOKIE`` (the cookie when no flag gives one), ``PYNODE_EPMD_PORT`` (the port
mapper port; ``--epmd-port`` overrides it), ``PYNODE_LOG_LEVEL`` (stderr logging level),
``PYNODE_TICKTIME`` (``--ticktime``'s default, see :mod:`pynode.ticks`),
``PYNODE_MAX_MESSAGE_SIZE``, ``PYNODE_HANDSHAKE_SLOTS``, ``PYNODE_TLS_CERTFILE``,
``PYNODE_TLS_KEYFILE``, ``PYNODE_TLS_CAFILE`` (the flags override them).

``start`` prints exactly one line to stdout, ``pynode: NAME ready on HOST:PORT``, once the node is
listening, registered with its port mapper and every preload module is imported (a preloaded
module's ``__pynode_preload__()`` hook, if it has one, has returned: exmc warms its process pool
there). It runs until SIGINT or SIGTERM, then stops the node cleanly and exits 0.

Exit codes: 0 success, 1 failure (a one-line ``pynode: error: ...`` on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import code
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import pynode
from pynode import Node, cluster_cli, erpc, names, portmapper
from pynode import tls as tls_config
from pynode.errors import CliError, PynodeError
from pynode.ticks import resolve_ticktime

log = logging.getLogger(__name__)

PRELOAD_HOOK = "__pynode_preload__"
# A preloaded module's table {(erlang_module, function): "python.module:function"} of functions
# Erlang nodes may call by those names (exmc's Elixir.Exmc.NUTS.Sampler.sample_chains).
ERLANG_EXPORTS = "__erlang_exports__"
LOG_LEVEL_ENV = "PYNODE_LOG_LEVEL"
DEFAULT_CALL_TIMEOUT = 60.0  # seconds; erpc.call's default in the issue


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pynode`` console script and ``python -m pynode``."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.epmd_port is not None:
        os.environ[portmapper.EPMD_PORT_ENV] = str(args.epmd_port)
    level = args.log_level or os.environ.get(LOG_LEVEL_ENV) or args.default_log_level
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    try:
        return int(args.handler(args) or 0)
    except (PynodeError, OSError) as exc:
        print(f"pynode: error: {exc}", file=sys.stderr, flush=True)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pynode", description="Erlang-style nodes over rpyc.")
    parser.add_argument("--epmd-port", type=int, help="port mapper port (default $PYNODE_EPMD_PORT or 4369)")
    parser.add_argument("--log-level", help="stderr log level (default $PYNODE_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Any, help: str, log_level: str = "WARNING") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler, default_log_level=log_level)
        return p

    def cookie_flags(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--cookie", help="the cluster cookie (default $PYNODE_COOKIE, else ~/.pynode.cookie)")
        group.add_argument("--cookie-file", help="read the cookie from this file (owner-only mode)")
        node_flags(p)

    def node_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--max-message-size", metavar="BYTES",
                       help="largest message accepted from a peer, e.g. 64M (default $PYNODE_MAX_MESSAGE_SIZE or 1GiB)")
        p.add_argument("--handshake-slots", type=int, metavar="N",
                       help="connections allowed in their handshake at once (default $PYNODE_HANDSHAKE_SLOTS or 64)")
        p.add_argument("--beam-max-calls", type=int, metavar="N",
                       help="calls one Erlang node may run here at once (default $PYNODE_BEAM_MAX_CALLS or 256)")
        p.add_argument("--tls-certfile", metavar="FILE", help="this node's TLS certificate (PEM; with TLS, all three)")
        p.add_argument("--tls-keyfile", metavar="FILE", help="this node's TLS private key (PEM)")
        p.add_argument("--tls-cafile", metavar="FILE", help="the cluster CA certificate peers must be signed by")

    def ticktime_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--ticktime",
            type=float,
            metavar="S",
            help="declare a silent peer down after S seconds, at least 1 (default $PYNODE_TICKTIME, else 10)",
        )

    def connect_all_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--no-connect-all",
            dest="connect_all",
            action="store_false",
            help="do not connect to the peers other nodes announce, nor announce ours (no transitive mesh)",
        )

    p = command("start", _start, "run a node in the foreground until SIGINT/SIGTERM", "INFO")
    p.add_argument("name", help="alive@host")
    cookie_flags(p)
    p.add_argument("--hidden", action="store_true", help="a hidden node (not in peers' Node.list())")
    p.add_argument("--no-beam", action="store_true", help="refuse Erlang nodes (no Erlang distribution protocol)")
    p.add_argument("--preload", action="append", default=[], metavar="MODULE", help="import before ready")
    p.add_argument("--port", type=int, default=0, help="listening port (default: any free port)")
    ticktime_flag(p)
    connect_all_flag(p)

    p = command("ping", _ping, "ping a node: prints pong or pang")
    p.add_argument("node")
    cookie_flags(p)

    p = command("names", _names, "list the names registered with a host's port mapper")
    p.add_argument("host", nargs="?", default="127.0.0.1")

    p = command("call", _call, "call module:function on a node and print the result")
    p.add_argument("node")
    p.add_argument("function", help="module:function")
    p.add_argument("args", nargs="?", default="[]", help="positional arguments as a JSON array")
    p.add_argument("--timeout", type=float, default=DEFAULT_CALL_TIMEOUT)
    cookie_flags(p)

    p = command("shell", _shell, "a Python REPL that is the node NAME")
    p.add_argument("name")
    cookie_flags(p)
    p.add_argument("--hidden", action="store_true")
    ticktime_flag(p)
    connect_all_flag(p)

    p = command("cluster", cluster_cli.run, "start or stop the detached nodes of a cluster TOML file", "INFO")
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("config", help="cluster file, e.g. configs/cluster.toml")
    p.add_argument("--state-dir", help="where up records pids and logs (default: a temp directory per file)")

    p = command("tls", _tls, "TLS set-up: `tls init DIR` makes a throwaway CA and node certificates")
    p.add_argument("action", choices=["init"])
    p.add_argument("directory", help="where to write ca.pem, ca.key and NAME.pem/NAME.key (must not hold them yet)")
    p.add_argument("--name", action="append", default=[], help="a certificate to make (repeatable; default: node)")
    p.add_argument("--host", action="append", default=[],
                   help="an address or DNS name the certificates are for (repeatable; default 127.0.0.1, localhost)")
    return parser


def _node_options(args: argparse.Namespace) -> dict[str, Any]:
    """Node.start's limit and TLS arguments from the flags (None: Node.start reads the environment)."""
    tls = tls_config.from_files(args.tls_certfile, args.tls_keyfile, args.tls_cafile, "--tls-certfile/keyfile/cafile")
    options = {"max_message_size": args.max_message_size, "handshake_slots": args.handshake_slots, "tls": tls}
    if getattr(args, "beam_max_calls", None) is not None:
        options["beam_max_calls"] = args.beam_max_calls
    return options


def _tls(args: argparse.Namespace) -> int:
    names_ = args.name or ["node"]
    paths = tls_config.init(args.directory, names_, args.host or ["127.0.0.1", "localhost"])
    for path in paths.values():
        print(path)
    d, first = paths["ca.pem"].parent, names_[0]
    print(f"pynode: start TLS nodes with --tls-certfile {d / (first + '.pem')} --tls-keyfile {d / (first + '.key')} "
          f"--tls-cafile {d / 'ca.pem'}", flush=True)
    return 0


def _cookie(args: argparse.Namespace) -> str | None:
    """``--cookie``, else the ``--cookie-file`` contents, else None (Node.start's own default)."""
    if args.cookie is not None:
        return str(args.cookie)
    if args.cookie_file is not None:
        from pynode import cookie

        return cookie.read_cookie_file(args.cookie_file)
    return None


def preload(modules: Sequence[str]) -> None:
    """Import each module; call its ``__pynode_preload__()`` hook if it defines one.

    Raises :class:`CliError` naming the module when the import or the hook fails.
    """
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
            hook = getattr(module, PRELOAD_HOOK, None)
            if callable(hook):
                hook()
            erlang_exports = getattr(module, ERLANG_EXPORTS, None)
            if erlang_exports:  # what Erlang/Elixir callers may call (pynode.beam.exports)
                from pynode.beam.exports import export_table

                export_table(erlang_exports)
        except Exception as exc:
            log.exception("preloading %s failed", module_name)
            raise CliError(f"preloading module {module_name!r} failed: {type(exc).__name__}: {exc}") from exc
        log.info("preloaded %s%s", module_name, " (hook run)" if callable(hook) else "")


def _start(args: argparse.Namespace) -> int:
    node = names.parse(args.name)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    _check_ticktime(args.ticktime)
    Node.start(
        str(node),
        cookie=_cookie(args),
        hidden=args.hidden,
        port=args.port,
        ticktime=args.ticktime,
        connect_all=args.connect_all,
        **_node_options(args),
        beam=not args.no_beam,
    )
    try:
        preload(args.preload)
        print(f"pynode: {node} ready on {node.host}:{Node.port()}", flush=True)
        while not stop.wait(timeout=1.0):  # wake up now and then so signals are handled promptly
            pass
        log.info("signal received: stopping %s", node)
    finally:
        Node.stop()
    return 0


def _check_ticktime(ticktime: float | None) -> None:
    """A bad ``--ticktime`` (or ``$PYNODE_TICKTIME``) is a usage error, reported before anything starts."""
    try:
        resolve_ticktime(ticktime)
    except ValueError as exc:
        raise CliError(str(exc).replace("ticktime must", "--ticktime must", 1)) from None


def _local_name(target_host: str) -> str:
    """A throwaway hidden node name for one CLI command, on the target's host."""
    return f"pynode-cli-{os.getpid()}@{target_host}"


def _ping(args: argparse.Namespace) -> int:
    target = names.parse(args.node)
    Node.start(_local_name(target.host), cookie=_cookie(args), hidden=True, **_node_options(args))
    try:
        answer = Node.ping(str(target))
    finally:
        Node.stop()
    print(answer, flush=True)
    return 0 if answer == "pong" else 1


def _names(args: argparse.Namespace) -> int:
    port = portmapper.epmd_port()
    entries = portmapper.names(args.host, mapper_port=port)
    print(f"pynode: port mapper on {args.host}:{port} with data:")
    for alive, node_port in entries:
        print(f"name {alive} at port {node_port}")
    return 0


def _call(args: argparse.Namespace) -> int:
    target = names.parse(args.node)
    try:
        call_args = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise CliError(f"arguments {args.args!r} are not JSON: {exc}") from None
    if not isinstance(call_args, list):
        raise CliError(f"arguments must be a JSON array of positional arguments, got {args.args!r}")
    Node.start(_local_name(target.host), cookie=_cookie(args), hidden=True, **_node_options(args))
    try:
        try:
            result = erpc.call(str(target), args.function, *call_args, timeout=args.timeout)
        except PynodeError:
            raise
        except Exception as exc:  # raised remotely and rebuilt here
            for note in getattr(exc, "__notes__", ()):
                print(note, file=sys.stderr)
            raise CliError(f"{args.function} on {target} raised {type(exc).__name__}: {exc}") from exc
    finally:
        Node.stop()
    try:
        print(json.dumps(result), flush=True)
    except (TypeError, ValueError):
        print(repr(result), flush=True)
    return 0


def _shell(args: argparse.Namespace) -> int:
    with contextlib.suppress(ImportError):  # line editing where this build has readline
        import readline  # noqa: F401

    _check_ticktime(args.ticktime)
    Node.start(
        args.name, cookie=_cookie(args), hidden=args.hidden, ticktime=args.ticktime, connect_all=args.connect_all,
        **_node_options(args),
    )
    try:
        banner = (
            f"pynode shell: this REPL is node {Node.self()}\n"
            "Node, erpc and pynode are imported; exit() or Ctrl-D stops the node."
        )
        code.interact(banner=banner, local={"Node": Node, "erpc": erpc, "pynode": pynode}, exitmsg="")
    finally:
        Node.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
