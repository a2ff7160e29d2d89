"""Embedded port mapper server speaking the EPMD wire protocol (see :mod:`pynode.portmapper`).

It answers ALIVE2_REQ (keeping the name registered while that connection stays open),
PORT_PLEASE2_REQ, NAMES_REQ and KILL_REQ, like ``epmd``. Anything else, or a malformed request,
closes that one connection and is logged; the server keeps serving. Unlike a real epmd it obeys
KILL_REQ even while names are registered (it binds to a loopback host in this project, and
``pynode cluster down`` and the tests rely on it).

Run it with ``python -m pynode.portmapper serve --host H --port P`` (foreground; the node's
:func:`pynode.portmapper.ensure_running` starts it detached), or in-process with
:class:`PortMapperServer` (``start()``/``stop()`` run it on a background thread).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import secrets
import signal
import struct
import sys
import threading

from pynode import portmapper as pm

log = logging.getLogger(__name__)

READ_TIMEOUT = 10.0  # seconds a client may take to send its request before we drop it
SHUTDOWN_GRACE = 1.0  # seconds for open connections to wind down when the server stops
EXIT_ADDRESS_IN_USE = 3  # exit code of `serve` when the port is taken (ensure_running's race)


class PortMapperServer:
    """A port mapper bound to ``host:port`` (``port=0`` picks a free one; see ``.port``).

    ``registry`` maps alive names to their :class:`~pynode.portmapper.NodeInfo`. Each successful
    registration gets a fresh non-zero 32-bit creation number.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = port if port is not None else pm.epmd_port()
        self.registry: dict[str, pm.NodeInfo] = {}
        self._creation = secrets.randbits(32)
        self._server: asyncio.base_events.Server | None = None
        self._stopped: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- life cycle -----------------------------------------------------------------------
    async def bind(self) -> None:
        """Bind and start accepting; raises OSError (e.g. EADDRINUSE) when the port is taken."""
        self._stopped = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("port mapper listening on %s:%d", self.host, self.port)

    async def serve(self) -> None:
        """Bind, then serve until KILL_REQ or :meth:`request_stop`."""
        await self.bind()
        assert self._stopped is not None and self._server is not None
        await self._stopped.wait()
        await self._shutdown()

    async def _shutdown(self) -> None:
        # Close the registrations' connections too: their names die with the server, and
        # Server.wait_closed() would otherwise wait for them (Python >= 3.12).
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=SHUTDOWN_GRACE)
        log.info("port mapper on %s:%d stopped", self.host, self.port)

    def request_stop(self) -> None:
        """Ask a serving server to stop (thread-safe)."""
        if self._loop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already finished
                self._loop.call_soon_threadsafe(self._stopped.set)

    def start(self) -> PortMapperServer:
        """Serve on a background daemon thread; returns once bound (raises OSError if not)."""
        bound = threading.Event()
        failure: list[BaseException] = []

        async def run() -> None:
            try:
                await self.bind()
            except BaseException as exc:
                failure.append(exc)
                bound.set()
                return
            bound.set()
            assert self._stopped is not None and self._server is not None
            await self._stopped.wait()
            await self._shutdown()

        self._thread = threading.Thread(
            target=asyncio.run, args=(run(),), name=f"portmapper-{self.port}", daemon=True
        )
        self._thread.start()
        bound.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start` and wait for its thread."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> PortMapperServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- requests -------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            header = await asyncio.wait_for(reader.readexactly(2), READ_TIMEOUT)
            (length,) = struct.unpack(">H", header)
            body = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT)
            if not body:
                raise ValueError("empty request")
            code, payload = body[0], body[1:]
            if code == pm.ALIVE2_REQ:
                await self._alive2(payload, reader, writer)
            elif code == pm.PORT_PLEASE2_REQ:
                writer.write(self._port_please2(payload))
            elif code == pm.NAMES_REQ:
                writer.write(self._names())
            elif code == pm.KILL_REQ:
                writer.write(pm.KILL_OK)
                log.info("KILL_REQ from %s: stopping", peer)
                self.request_stop()
            else:
                log.warning("port mapper: unknown request code %d from %s; closing", code, peer)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, pm.PortMapperError) as exc:
            log.warning("port mapper: bad request from %s: %s", peer, exc)
        except ConnectionError as exc:
            log.debug("port mapper: connection from %s lost: %s", peer, exc)
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _alive2(
        self, payload: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        info = pm.decode_node_info(payload)
        # Reply in the form the client asked for: OTP 23+ clients (version >= 6) get a 4-byte
        # creation, older ones the 2-byte ALIVE2_RESP, as epmd does.
        extended = info.highest_version >= 6
        code = pm.ALIVE2_X_RESP if extended else pm.ALIVE2_RESP
        size = 4 if extended else 2
        try:
            pm.validate_alive(info.alive)
        except pm.PortMapperError as exc:
            log.warning("port mapper: refusing registration: %s", exc)
            writer.write(bytes([code, 1]) + bytes(size))
            return
        if info.alive in self.registry:
            log.info("port mapper: name %r already registered; refused", info.alive)
            writer.write(bytes([code, 1]) + bytes(size))
            return
        creation = self._next_creation(size)
        self.registry[info.alive] = info
        log.info("registered %s port %d creation %d", info.alive, info.port, creation)
        try:
            writer.write(bytes([code, pm.RESULT_OK]) + creation.to_bytes(size, "big"))
            await writer.drain()
            # The registration lives as long as this connection: wait for EOF, ignoring data.
            while await reader.read(4096):
                pass
        finally:
            del self.registry[info.alive]
            log.info("unregistered %s", info.alive)

    def _next_creation(self, size: int) -> int:
        mask = (1 << (8 * size)) - 1
        self._creation = (self._creation + 1) & mask or 1
        return self._creation

    def _port_please2(self, payload: bytes) -> bytes:
        info = self.registry.get(payload.decode(errors="replace"))
        if info is None:
            return bytes([pm.PORT2_RESP, 1])
        return bytes([pm.PORT2_RESP, pm.RESULT_OK]) + pm.encode_node_info(info)

    def _names(self) -> bytes:
        lines = "".join(f"name {alive} at port {info.port}\n" for alive, info in self.registry.items())
        return struct.pack(">I", self.port) + lines.encode()


def main(argv: list[str] | None = None) -> int:
    """``python -m pynode.portmapper serve [--host H] [--port P]``: serve in the foreground.

    Exits 0 after KILL_REQ, SIGTERM or SIGINT; exits 3 when the port is already taken (another
    daemon won the start-up race) and 1 on other bind errors, with the reason on stderr.
    """
    parser = argparse.ArgumentParser(prog="python -m pynode.portmapper")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a port mapper in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: $PYNODE_EPMD_PORT or 4369")
    serve.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(process)d %(name)s: %(message)s"
    )
    server = PortMapperServer(args.host, args.port)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, server.request_stop)
        await server.serve()

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"port mapper: cannot listen on {args.host}:{server.port}: {exc}", file=sys.stderr)
        return EXIT_ADDRESS_IN_USE if exc.errno == errno.EADDRINUSE else 1
    return 0
