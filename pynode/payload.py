"""Payloads: any Python object as a pickle plus out-of-band buffers, and back.

:func:`dumps` turns any object (closures and lambdas included, by value, via cloudpickle) into a
pickle plus the out-of-band buffers of pickle protocol 5 (large numpy arrays travel as raw
buffers next to the pickle, not inside it, see :class:`pynode.transport._Channel`). :func:`loads`
is only ever called on data from connections that passed :mod:`pynode.handshake`.

Knows nothing of connections: it imports only the frame types of :mod:`pynode.transport` and the
pickling helpers :mod:`pynode.fnpickle` and :mod:`pynode.codecache`.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import sys
import types
from collections.abc import Callable
from typing import Any

import cloudpickle

from pynode import codecache, fnpickle
from pynode.transport import Buffers, Data

PICKLE_PROTOCOL = 5  # PEP 574: out-of-band buffers
# Buffers smaller than this stay inside the pickle: below ~64 kB the bookkeeping of a separate
# argument costs more than copying the bytes.
OOB_THRESHOLD = 64 * 1024

# Values the C pickler handles exactly as cloudpickle would (nothing to pickle by value), so they
# skip cloudpickle's per-object Python hook: the common results of remote calls, and with
# _CONTAINER_TYPES around them the whole payload of a "module:function" call with plain arguments.
_PLAIN_TYPES = frozenset({type(None), bool, int, float, complex, str, bytes})
_CONTAINER_TYPES = frozenset({tuple, list, dict})
# How deep and how wide _is_plain looks into containers: a call payload (fn, args, kwargs) holding
# a few plain arguments, or a short tuple of plain values, is two levels deep. Longer containers go
# to cloudpickle, whose C pickler handles plain items at C speed; walking them here in Python
# first would cost more than it saves (1M ints: 150 ms).
PLAIN_DEPTH = 2
PLAIN_MAX_ITEMS = 16

Payload = tuple[bytes, Buffers]
"""A pickle and its out-of-band buffers, as :func:`dumps` returns them."""


# Module-level functions that pickled closures refer to (cloudpickle's reconstructors, looked up
# by name so that a cloudpickle release without one only loses the shortcut, and
# pynode.codecache's): cloudpickle's own check for each (a module lookup and an attribute walk)
# ends in "pickle by reference" every time, so it is skipped. Their ids are stable: they live as
# long as their modules.
_REFERENCED_FUNCTIONS = frozenset(
    id(f)
    for f in (
        *(
            getattr(cloudpickle.cloudpickle, name, None)
            for name in ("_make_function", "_function_setstate", "_make_empty_cell", "_make_cell", "subimport")
        ),
        codecache.load_code,
        fnpickle.make_function,
        fnpickle.set_function_state,
    )
    if f is not None
)


# Classes of pynode's own that travel in every call (the group-leader wrapper of erpc, pids):
# saved as globals without cloudpickle's check that they are importable (a module lookup and an
# attribute walk, ~2.5 us a call). Registered by the modules defining them (:func:`by_reference`).
_REFERENCED_CLASSES: set[int] = set()


def by_reference(cls: type) -> type:
    """Class decorator: ``cls`` (importable by its module and name) is always pickled by
    reference, without looking it up first."""
    _REFERENCED_CLASSES.add(id(cls))
    return cls


# cloudpickle's decision to pickle a function by reference (importable by name) or by value.
_by_reference = cloudpickle.cloudpickle._should_pickle_by_reference


def goes_by_value(fn: types.FunctionType) -> bool:
    """cloudpickle's decision for a plain function: True when it pickles ``fn`` by value, False
    when by reference (``not _should_pickle_by_reference(fn)``, which stays the oracle of the
    tests), with the usual cases of a shipped closure decided without its lookup.

    cloudpickle looks ``fn.__qualname__`` up in ``fn``'s module (``pickle._getattribute``) and
    goes by reference only when that finds ``fn`` itself. For a lambda or a nested function the
    lookup fails, and failing costs it two exceptions and the module's ``repr`` in the message
    (about 3 us a call, a fifth of pickling ``lambda: None``). Decided here without a lookup: a
    function of ``__main__``; of a module that is not imported; whose qualified name has a
    ``<locals>`` part (the walk stops there, whatever comes before it); or whose name is one
    made-up part (``<lambda>``: no attribute of the module type has a ``<``) that a plain module
    does not have in its ``__dict__`` and has no module ``__getattr__`` to make up: the lambda of
    a module. Anything else is cloudpickle's own check.
    """
    module_name = fn.__module__
    if type(module_name) is str:
        if module_name == "__main__":
            return True
        module = sys.modules.get(module_name)
        if module is None:
            return True
        qualname = fn.__qualname__
        if "<" in qualname:  # only made-up names have it: <lambda>, <locals>, <genexpr>...
            parts = qualname.split(".")
            if "<locals>" in parts:
                return True
            if len(parts) == 1 and type(module) is types.ModuleType:
                namespace = module.__dict__
                if qualname not in namespace and "__getattr__" not in namespace:
                    return True
    return not _by_reference(fn)

# Reducers by exact type: cloudpickle's own table (a class attribute of its Pickler; its
# ``dispatch_table`` chains it with copyreg's) and pynode.codecache's for code objects.
_TYPE_REDUCERS: dict[type, Callable[[Any], Any]] = {
    **cloudpickle.Pickler._dispatch_table,
    types.CodeType: codecache.reduce_code,
}


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with plain functions that go by value reduced to a compact state
    (:mod:`pynode.fnpickle`), code objects pickled once per code object (:mod:`pynode.codecache`),
    the reconstructors these pickles name saved by reference without looking them up first, and
    type-specific reducers found by a dict lookup in :meth:`reducer_override`.

    cloudpickle's ``dispatch_table`` is a ``ChainMap``: the C pickler looks every object's type up
    in it through Python-level ``__getitem__`` calls, and a miss (most objects) raises and
    catches a KeyError; that was a fifth of the time spent pickling a small closure. Here the C
    pickler gets copyreg's live table (a plain dict) and cloudpickle's reducers are applied first,
    in :meth:`reducer_override`, which the C pickler calls for every object anyway; the same
    reducer wins for every type as with cloudpickle's chain.
    """

    dispatch_table = copyreg.dispatch_table

    def reducer_override(self, obj: Any) -> Any:
        kind = type(obj)
        if kind is types.FunctionType:
            if id(obj) in _REFERENCED_FUNCTIONS:
                return NotImplemented  # the C pickler saves it as a global, as cloudpickle would
            if goes_by_value(obj):
                return fnpickle.reduce_function(self, obj)
            return NotImplemented
        reduce = _TYPE_REDUCERS.get(kind)
        if reduce is not None:
            return reduce(obj)
        if kind is type and id(obj) in _REFERENCED_CLASSES:
            return NotImplemented  # the C pickler saves it as a global
        return super().reducer_override(obj)


def dumps(obj: object) -> Payload:
    """Pickle ``obj`` (cloudpickle, protocol 5, functions by value as :mod:`pynode.fnpickle`
    writes them, code objects cached by :mod:`pynode.codecache`);
    contiguous buffers of at least OOB_THRESHOLD bytes are returned out of band, as memoryviews of
    the original objects (no copy).

    Raises whatever cloudpickle raises for an unpicklable object (``TypeError``,
    ``pickle.PicklingError``...).
    """
    if _is_plain(obj, PLAIN_DEPTH):  # pickled identically by pickle and cloudpickle
        return pickle.dumps(obj, protocol=PICKLE_PROTOCOL), ()
    buffers: list[memoryview] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        try:
            view = buf.raw()
        except BufferError:  # not contiguous: keep it in band
            return True
        if view.nbytes < OOB_THRESHOLD:
            return True
        buffers.append(view)
        return False

    with io.BytesIO() as file:
        _Pickler(file, protocol=PICKLE_PROTOCOL, buffer_callback=out_of_band).dump(obj)
        data = file.getvalue()
    return data, tuple(buffers)


def _is_plain(obj: object, depth: int) -> bool:
    """True when ``obj`` is a plain value, or a tuple, list or dict (string keys) of at most
    PLAIN_MAX_ITEMS such values, nested at most ``depth`` containers deep."""
    kind = type(obj)
    if kind in _PLAIN_TYPES:
        return True
    if depth == 0 or kind not in _CONTAINER_TYPES or len(obj) > PLAIN_MAX_ITEMS:
        return False
    if not obj:  # () and {}: every call's args and kwargs, no generator to run
        return True
    # A plain item is told by its type here, without a call: this runs on every erpc call.
    if kind is dict:
        return all(type(k) is str for k in obj) and all(
            type(v) in _PLAIN_TYPES or _is_plain(v, depth - 1) for v in obj.values())
    return all(type(item) in _PLAIN_TYPES or _is_plain(item, depth - 1) for item in obj)


def loads(data: Data, buffers: Buffers = ()) -> Any:
    """Unpickle a :func:`dumps` payload; arrays rebuilt from out-of-band buffers use the buffers'
    memory (writable: received buffers are writable memory of their own)."""
    return pickle.loads(data, buffers=buffers)
