"""Every exception pynode raises, in one place.

The hierarchy mirrors the failure classes of Erlang's ``erpc`` (see ``lib/kernel/src/erpc.erl``):
a call either times out (:class:`ErpcTimeout`), cannot reach or loses its peer
(:class:`NoConnection`), or raises remotely. A remote exception that can be rebuilt locally is
re-raised as itself (a ``ValueError`` stays a ``ValueError``) with the remote node and traceback
attached as an exception note; one that cannot be rebuilt becomes :class:`RemoteError`.
"""

from __future__ import annotations


class PynodeError(Exception):
    """Base of everything pynode raises."""


class BadNodeName(PynodeError, ValueError):
    """A node name is not of the form ``alive@host`` (the message names the input)."""


class CookieError(PynodeError):
    """No usable cookie: the cookie file is missing, empty, unreadable or too permissive."""


class HandshakeError(PynodeError):
    """The connection handshake failed: bad magic, wrong cookie, wrong peer name, or a timeout."""


class TLSError(PynodeError):
    """The TLS configuration is unusable: a missing or unreadable certificate, key or CA file, a
    key that does not match its certificate, or only some of the three files given."""


class PortMapperError(PynodeError):
    """The port mapper is unreachable, answered garbage, or refused a registration."""


class NodeNotStarted(PynodeError):
    """An operation needs a local node (``Node.start``) and none is running."""


class ErpcError(PynodeError):
    """Base of the failures of a remote call."""


class ErpcTimeout(ErpcError, TimeoutError):
    """The call did not complete within its timeout; the remote call was told to cancel.

    The remote function may or may not have run, partly or completely.
    """


class NoConnection(ErpcError, ConnectionError):
    """The peer cannot be reached, refused us, or the connection dropped while the call was in
    flight. The remote function may or may not have run."""


class RemoteError(ErpcError):
    """A remote exception that cannot be rebuilt locally (its class or state does not unpickle).

    Attributes: ``node`` (the remote node name), ``type_name`` (qualified name of the remote
    exception class), ``remote_traceback`` (the formatted remote traceback).
    """

    def __init__(self, node: str, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(f"{type_name}: {message} (raised on {node})")
        self.node = node
        self.type_name = type_name
        self.remote_traceback = remote_traceback


class CallCancelled(BaseException):
    """Raised asynchronously inside a worker thread whose call was cancelled by its caller.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that ``except Exception`` blocks in user code
    do not swallow it. It never crosses the wire: the caller has already given up on the call.
    """


class EncodeError(ErpcError, TypeError):
    """A function, argument, result or message cannot be pickled (the message names which)."""


class UnencodableResult(RemoteError, EncodeError):
    """A remote call ran, but its result could not be sent back: it does not pickle (its
    ``__reduce__`` raised, a recursion...) or pickles to more than the caller's
    ``max_message_size``. A RemoteError (``type_name`` names the error met while encoding,
    ``remote_traceback`` is the remote node's text) and an EncodeError (what could not be pickled
    is named in the message); the connection and other calls on it are untouched."""

    def __init__(self, node: str, type_name: str, message: str, remote_traceback: str) -> None:
        super().__init__(node, type_name, message, remote_traceback)
        self.detail = message

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (self.node, self.type_name, self.detail, self.remote_traceback)


class MessageTooLarge(EncodeError):
    """A message (a call, its result, a cast or a mailbox message) is larger than the receiving
    node's ``max_message_size`` (learned in the handshake): refused before anything was sent."""


class ReceiveTimeout(PynodeError, TimeoutError):
    """``pynode.receive`` found no message within its timeout."""


class NodeStartError(PynodeError):
    """A node process exited or stayed silent instead of printing its ready line."""


class ClusterConfigError(PynodeError, ValueError):
    """A cluster file is missing, is not TOML, or has an unknown key or a bad value."""


class ClusterStateError(PynodeError):
    """``pynode cluster up`` on a cluster that is already up, or ``down`` with no record of one."""


class CliError(PynodeError):
    """A command failed in a way the user can fix; printed as one ``pynode: error:`` line."""


class DecodeError(PynodeError, ValueError):
    """Bytes that are not a well-formed Erlang external term (truncated, an unknown tag, a count
    the data cannot hold, nested too deep...); the message names the offset."""


class ErlangError(ErpcError):
    """An Erlang exception raised by a call on a BEAM node.

    Attributes: ``node``, ``kind`` (``"error"``, ``"exit"`` or ``"throw"``, Erlang's class),
    ``reason`` (the reason term, decoded) and ``stacktrace`` (Erlang's stack trace term, a list;
    empty for ``exit`` and ``throw``).
    """

    def __init__(self, node: str, kind: str, reason: object, stacktrace: object = ()) -> None:
        super().__init__(f"{kind}: {reason!r} (raised on {node})")
        self.node = node
        self.kind = kind
        self.reason = reason
        self.stacktrace = stacktrace
