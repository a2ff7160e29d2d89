"""Running a shipped call and encoding its outcome; rebuilding the outcome at the caller.

A call payload is ``(fn, args, kwargs)`` where ``fn`` is any picklable callable (closures and
lambdas travel by value) or a ``"module:function"`` string resolved on the remote node.

A reply is ``(status, payload)``. ``OK``: the pickled value. ``ERROR``: a pickled tuple of plain
strings and bytes ``(type name, message, formatted traceback, pickled exception or None)``, so the
caller can always report the error even when the exception itself cannot be rebuilt there.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import traceback
from typing import Any

import cloudpickle

from pynode import payload as payloads
from pynode import transport
from pynode.errors import CallCancelled, EncodeError, RemoteError

log = logging.getLogger(__name__)

OK = 0
ERROR = 1

Reply = tuple[int, payloads.Payload]


def run_call(node: str, data: transport.Data, buffers: transport.Buffers) -> Reply:
    """Unpickle and run a call payload on this node (``node`` is its name, for messages).

    Never raises, except CallCancelled (which the worker pool absorbs): every failure, including
    an undecodable payload, an unknown ``module:function`` or an unpicklable result, becomes an
    ``ERROR`` reply.
    """
    try:
        fn, args, kwargs = payloads.loads(data, buffers)
        value = resolve(fn, node)(*args, **kwargs)
    except CallCancelled:
        raise
    except BaseException as exc:  # the caller decides what a remote SystemExit means
        return ERROR, encode_error(exc)
    try:
        return OK, payloads.dumps(value)
    except Exception as exc:
        error = EncodeError(f"the result of {describe_fn(fn)} on {node} cannot be pickled: {type(exc).__name__}: {exc}")
        return ERROR, encode_error(error)


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
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"no module {module_name!r} on node {node} (calling {fn!r})", name=exc.name) from None
    for attr in attr_path.split("."):
        try:
            target = getattr(target, attr)
        except AttributeError:
            raise AttributeError(f"no function {fn!r} on node {node}: {attr!r} not found") from None
    if not callable(target):
        raise TypeError(f"{fn!r} on node {node} is not callable")
    return target


def describe_fn(fn: Any) -> str:
    if isinstance(fn, str):
        return repr(fn)
    return getattr(fn, "__qualname__", None) or repr(fn)


def encode_error(exc: BaseException) -> payloads.Payload:
    tb = "".join(traceback.format_exception(exc))
    try:
        pickled: bytes | None = cloudpickle.dumps(exc, protocol=payloads.PICKLE_PROTOCOL)
    except Exception:
        pickled = None
    return payloads.dumps((_type_name(exc), str(exc), tb, pickled))


def unpack(node: str, status: int, data: transport.Data, buffers: transport.Buffers) -> Any:
    """The value of a reply from ``node``, or raise the remote exception.

    A rebuildable exception is raised as itself with a note naming ``node`` and carrying the remote
    traceback; otherwise RemoteError. A value that cannot be unpickled here raises RemoteError.
    """
    if status == OK:
        try:
            return payloads.loads(data, buffers)
        except Exception as exc:
            raise RemoteError(node, _type_name(exc), f"the result cannot be unpickled here: {exc}", "") from exc
    type_name, message, tb, pickled = payloads.loads(data, buffers)
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
    if pickled is None:
        return None
    try:
        exc = pickle.loads(pickled)
    except Exception as err:
        log.debug("remote exception not rebuildable: %s", err)
        return None
    return exc if isinstance(exc, BaseException) else None


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
