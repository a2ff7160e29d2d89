"""Running a shipped call and encoding its outcome; rebuilding the outcome at the caller.

A call payload is the pickle of one tuple, ``(fn, args, kwargs)`` or ``(fn, args, kwargs,
leader_id)``:

==============  ===========================================================================
``fn``          any picklable callable (closures and lambdas travel by value) or a
                ``"module:function"`` string resolved on the remote node
``args``        a tuple
``kwargs``      a dict of str keys
``leader_id``   present when the caller's output is to come home (``capture_output``): the id
                of the group leader on the *calling* node (:mod:`pynode.output`), a plain int,
                so that capturing costs the call nothing but an int on the wire and a dict
                entry while it runs; the node is the connection's peer, so it is not sent
==============  ===========================================================================

A reply is ``(status, payload)``. ``OK``: the pickled value. ``ERROR``: a pickled tuple of plain
strings and bytes ``(type name, message, formatted traceback, pickled exception or None)``, so the
caller can always report the error even when the exception itself cannot be rebuilt there.

Nothing a remote function does can break the encoding of its outcome (and with it the connection,
which every other call on it shares): an exception whose ``__str__``, ``__repr__`` or
``__reduce__`` raises, a result that recurses too deeply to pickle or pickles to more than the
caller's ``max_message_size`` all become an ``ERROR`` reply carrying what could be said (the type
name, the traceback as text when it can be formatted). An exception whose message cannot be
formatted is sent without its pickle, so the caller gets a RemoteError rather than an exception
object it could not print either.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import sys
import traceback
from typing import Any, Protocol

import cloudpickle

from pynode import payload as payloads
from pynode import transport
from pynode.errors import CallCancelled, RemoteError, UnencodableResult

log = logging.getLogger(__name__)

OK = 0
ERROR = 1
# Longest message and traceback text (characters) an ERROR reply carries: an exception whose
# message is a megabyte-long repr is still reported, cut, and cannot exceed the caller's limit.
MAX_ERROR_TEXT = 64 * 1024
# An ERROR reply's pickled exception is dropped (the caller gets a RemoteError) when it is larger
# than this many bytes, or than the caller's max_message_size less the text around it.
MAX_PICKLED_EXCEPTION = 1024 * 1024
# Bytes the rest of an ERROR reply may take: two texts of MAX_ERROR_TEXT characters of up to 4
# UTF-8 bytes each, the type name and the pickle's framing (limits.MIN_MESSAGE_SIZE is larger).
_TEXT_ROOM = 8 * MAX_ERROR_TEXT + 4096

Reply = tuple[int, payloads.Payload]


class Leaders(Protocol):
    """Where the output of the calls one peer sends goes (:mod:`pynode.output`; implemented by
    the node, above this layer): a call that carries a ``leader_id`` runs between
    ``lead(leader_id)`` and ``unlead(state)``, in the thread that runs it."""

    def lead(self, leader_id: int | None) -> Any:
        """From now on this thread's output goes to ``leader_id`` on the peer (None: stays as it
        is, for a call without one); returns the state :meth:`unlead` needs."""

    def unlead(self, state: Any) -> None:
        """Flush what this thread wrote to its leader and restore the leader it had before the
        call (whatever the call set meanwhile)."""


def run_call(
    node: str, data: transport.Data, buffers: transport.Buffers, limit: int | None = None,
    leaders: Leaders | None = None,
) -> Reply:
    """Unpickle and run a call payload on this node (``node`` is its name, for messages).

    ``limit``: the largest message the caller accepts (its ``max_message_size``, learned in the
    handshake); a larger result becomes an ``ERROR`` reply (UnencodableResult) instead.
    ``leaders``: where a call's output goes when it carries a ``leader_id`` (without it, or
    without ``leaders``, the output stays on this node).

    Never raises, except CallCancelled (which the worker pool absorbs): every failure, including
    an undecodable payload, an unknown ``module:function``, an unpicklable or too large result and
    an exception that cannot be formatted or pickled, becomes an ``ERROR`` reply.
    """
    fn: Any = None
    try:
        call = payloads.loads(data, buffers)
        if len(call) == 3:
            fn, args, kwargs = call
            leader_id = None
        else:
            fn, args, kwargs, leader_id = call
            if type(leader_id) is not int:
                leader_id = None
        if leaders is None:
            value = resolve(fn, node)(*args, **kwargs)
        else:  # also uncaptured: a leader the call sets (set_group_leader) ends with it
            state = leaders.lead(leader_id)
            try:
                value = resolve(fn, node)(*args, **kwargs)
            finally:
                leaders.unlead(state)
    except CallCancelled:
        raise
    except BaseException as exc:  # the caller decides what a remote SystemExit means
        return ERROR, encode_error(exc, limit)
    try:
        payload = payloads.dumps(value)
    except CallCancelled:
        raise
    except BaseException as exc:  # __reduce__ may raise anything, RecursionError included
        error = UnencodableResult(
            node, _type_name(exc),
            f"the result of {describe_fn(fn)} on {node} cannot be pickled: {_type_name(exc)}: {_text(exc)}",
            _traceback_text(exc),
        )
        return ERROR, encode_error(error, limit)
    if limit is not None and (payload[1] or len(payload[0]) > limit - transport.FRAME_HEAD_ROOM):
        size = transport.payload_size(payload)  # the whole size: buffers, or a pickle near the limit
        if size > limit:
            error = UnencodableResult(
                node, "MessageTooLarge",
                f"the result of {describe_fn(fn)} on {node} pickles to {size} bytes, more than the "
                f"caller's max_message_size of {limit} bytes", "",
            )
            return ERROR, encode_error(error, limit)
    return OK, payload


def resolve(fn: Any, node: str) -> Any:
    """``fn`` itself when callable; a ``"module:function"`` string imported here.

    Raises ModuleNotFoundError / AttributeError / TypeError naming the function and the node.
    """
    if not isinstance(fn, str):
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable (called on {node})")
        return fn
    module_name, sep, attr_path = fn.partition(":")
    if not sep or not module_name or not attr_path:
        raise TypeError(f"function {fn!r} must be a callable or a 'module:function' string")
    target: Any = sys.modules.get(module_name)
    if target is None or getattr(getattr(target, "__spec__", None), "_initializing", False):
        target = _import(module_name, fn, node)  # not imported yet, or still being imported
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise AttributeError(f"no function {fn!r} on node {node}: {attr!r} not found") from None
    if not callable(target):
        raise TypeError(f"{fn!r} on node {node} is not callable")
    return target


def _import(module_name: str, fn: str, node: str) -> Any:
    """``importlib.import_module(module_name)``; ModuleNotFoundError naming the function and the node."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"no module {module_name!r} on node {node} (calling {fn!r})", name=exc.name) from None


def describe_fn(fn: Any) -> str:
    """A short name for ``fn`` in messages; never raises (a hostile ``__repr__`` included)."""
    if isinstance(fn, str):
        return repr(fn)
    try:
        name = getattr(fn, "__qualname__", None)
        if isinstance(name, str):
            return name
        return _cut(repr(fn))
    except CallCancelled:
        raise
    except BaseException:
        return f"<a {_type_name(fn)} whose repr() fails>"


def encode_error(exc: BaseException, limit: int | None = None) -> payloads.Payload:
    """The ``ERROR`` payload for ``exc``; never raises (but CallCancelled).

    Each part is encoded on its own, so one that fails only loses that part: the message (an
    exception whose ``__str__`` fails is sent without its pickle), the traceback text, the pickled
    exception (dropped when it fails, is larger than MAX_PICKLED_EXCEPTION or does not fit in
    ``limit`` bytes)."""
    type_name = _type_name(exc)
    try:
        message: str | None = _cut(str(exc))
    except CallCancelled:
        raise
    except BaseException as err:
        message = None
        text = f"<str() of the {type_name} failed: {_type_name(err)}>"
    try:
        tb = _cut("".join(traceback.format_exception(exc)))
    except CallCancelled:
        raise
    except BaseException as err:
        tb = f"<the traceback of the {type_name} cannot be formatted: {_type_name(err)}>"
    pickled: bytes | None = None
    if message is not None:
        text = message
        try:
            pickled = cloudpickle.dumps(exc, protocol=payloads.PICKLE_PROTOCOL)
        except CallCancelled:
            raise
        except BaseException:
            pickled = None
        room = MAX_PICKLED_EXCEPTION if limit is None else min(MAX_PICKLED_EXCEPTION, limit - _TEXT_ROOM)
        if pickled is not None and len(pickled) > room:
            pickled = None
    return payloads.dumps((type_name, text, tb, pickled))


def unpack(node: str, status: int, data: transport.Data, buffers: transport.Buffers) -> Any:
    """The value of a reply from ``node``, or raise the remote exception.

    A rebuildable exception is raised as itself with a note naming ``node`` and carrying the remote
    traceback; otherwise RemoteError. A value that cannot be unpickled here raises RemoteError.
    """
    if status == OK:
        try:
            return payloads.loads(data, buffers)
        except (CallCancelled, KeyboardInterrupt):
            raise
        except BaseException as exc:  # a pickle may raise anything while it is loaded, SystemExit too
            raise RemoteError(node, _type_name(exc), f"the result cannot be unpickled here: {exc}", "") from exc
    try:
        type_name, message, tb, pickled = payloads.loads(data, buffers)
        if not (isinstance(type_name, str) and isinstance(message, str) and isinstance(tb, str)):
            raise TypeError(f"an error reply of {type(type_name).__name__}, {type(message).__name__}, ...")
    except Exception as exc:
        raise RemoteError(node, "<unknown>", f"the error reply cannot be decoded here: {_type_name(exc)}: {exc}",
                          "") from exc
    exc = _rebuild(pickled)
    if exc is None:
        raise RemoteError(node, type_name, message, tb)
    exc.add_note(f"raised on node {node}; remote traceback:\n{tb}")
    raise exc


def describe(payload: payloads.Payload) -> str:
    """One line for an ERROR payload (for logs)."""
    type_name, message, _, _ = payloads.loads(*payload)
    return f"{type_name}: {message}"


def _rebuild(pickled: bytes | None) -> BaseException | None:
    if not isinstance(pickled, bytes):
        return None
    try:
        exc = pickle.loads(pickled)
    except Exception as err:
        log.debug("remote exception not rebuildable: %s", err)
        return None
    return exc if isinstance(exc, BaseException) else None


def _traceback_text(exc: BaseException) -> str:
    """The formatted traceback of ``exc``, or a line saying why it cannot be formatted."""
    try:
        return _cut("".join(traceback.format_exception(exc)))
    except CallCancelled:
        raise
    except BaseException as err:
        return f"<the traceback cannot be formatted: {_type_name(err)}>"


def _type_name(obj: object) -> str:
    """The qualified name of ``obj``'s class (``ValueError``, ``mymod.MyError``); never raises."""
    cls = type(obj)
    name, module = getattr(cls, "__qualname__", None), getattr(cls, "__module__", None)
    if not isinstance(name, str):
        name = "<unnamed class>"
    return name if module == "builtins" or not isinstance(module, str) else f"{module}.{name}"


def _text(exc: BaseException) -> str:
    """``str(exc)``, cut to MAX_ERROR_TEXT; a placeholder when it fails."""
    try:
        return _cut(str(exc))
    except CallCancelled:
        raise
    except BaseException:
        return f"<str() of the {_type_name(exc)} failed>"


def _cut(text: str) -> str:
    if len(text) <= MAX_ERROR_TEXT:
        return text
    return f"{text[:MAX_ERROR_TEXT]}... [{len(text) - MAX_ERROR_TEXT} more characters cut]"
