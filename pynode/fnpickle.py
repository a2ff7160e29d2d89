"""Functions pickled by value in a compact form: what a shipped closure costs on both ends.

cloudpickle pickles a function by value as two calls: one makes an empty function from its code
object, globals and empty closure cells; the other sets its state from a ten-entry dict (name,
qualname, module, doc, defaults, keyword defaults, annotations, closure cells, referenced globals,
submodules to import) plus the function's ``__dict__``. Pickling and rebuilding that dict was about
half of the time a trivial ``erpc.call(node, lambda: None)`` spent in pickle at both ends.

This module writes the same function in the same two steps (so that a function reachable from
its own globals or closure, a recursive one, pickles as cloudpickle's does: the empty function is
memoized before its state is pickled) but with a compact state: the referenced globals, the
closure's values, and only the attributes that differ from what the rebuilt function gets anyway
from its code object and globals (``__name__`` is ``co_name``, ``__qualname__`` is ``co_qualname``,
``__module__`` is the globals' ``__name__``, no doc, defaults or annotations, an empty
``__dict__``). What is pickled and how the rebuilt function behaves are cloudpickle's:

- which functions go by value, the globals a function's code refers to and the submodules it needs
  imported are decided by cloudpickle's own helpers;
- functions of one pickle that share globals share them once rebuilt (cloudpickle's
  ``globals_ref``, keyed by the pickler), and ``__builtins__`` is this interpreter's;
- a closure cell that was empty when pickled stays empty (its index travels, not a marker value
  a closure could hold itself).

Only plain functions (exactly ``types.FunctionType``) that cloudpickle pickles by value come here;
everything else is cloudpickle's (:mod:`pynode.transport`). A pickle from this module needs pynode
on the receiving side, which every node has.
"""

from __future__ import annotations

import builtins
import itertools
import types
from typing import Any

import cloudpickle

_cp = cloudpickle.cloudpickle


def reduce_function(pickler: cloudpickle.Pickler, fn: types.FunctionType) -> tuple[Any, ...]:
    """The reduction of ``fn`` (by value) for ``pickler``: ``make_function(code, globals,
    ncells)`` then ``set_function_state(fn, state)``."""
    code, base, _, _, _ = pickler._function_getnewargs(fn)  # base: the globals cloudpickle would rebuild
    fn_globals = fn.__globals__
    referenced = {name: fn_globals[name] for name in _cp._extract_code_globals(code) if name in fn_globals}
    closure = fn.__closure__
    values, empty = _cell_values(closure)
    submodules = _cp._find_imported_submodules(code, itertools.chain(referenced.values(), values or ()))
    state = (referenced, values, empty, _attributes(fn, code, base), submodules or None)
    return make_function, (code, base, -1 if closure is None else len(closure)), state, None, None, set_function_state


def _cell_values(closure: tuple[types.CellType, ...] | None) -> tuple[tuple[Any, ...] | None, tuple[int, ...] | None]:
    """The closure's values (None for an empty cell) and the indices of its empty cells (None
    when there are none, the common case)."""
    if closure is None:
        return None, None
    values: list[Any] = []
    empty: list[int] = []
    for index, cell in enumerate(closure):
        try:
            values.append(cell.cell_contents)
        except ValueError:  # a variable of the enclosing scope not assigned (yet, or any more)
            values.append(None)
            empty.append(index)
    return tuple(values), tuple(empty) or None


def _attributes(fn: types.FunctionType, code: types.CodeType, base: dict[str, Any]) -> dict[str, Any] | None:
    """The attributes of ``fn`` that :func:`make_function` would not give it by itself (None
    when there are none, the common case)."""
    differing: dict[str, Any] = {}
    if fn.__name__ != code.co_name:
        differing["__name__"] = fn.__name__
    if fn.__qualname__ != code.co_qualname:
        differing["__qualname__"] = fn.__qualname__
    if fn.__module__ != base.get("__name__"):
        differing["__module__"] = fn.__module__
    if fn.__doc__ is not None:
        differing["__doc__"] = fn.__doc__
    if fn.__defaults__ is not None:
        differing["__defaults__"] = fn.__defaults__
    if fn.__kwdefaults__ is not None:
        differing["__kwdefaults__"] = fn.__kwdefaults__
    if fn.__annotations__:
        differing["__annotations__"] = fn.__annotations__
    if fn.__dict__:
        differing["__dict__"] = fn.__dict__
    return differing or None


def make_function(code: types.CodeType, base_globals: dict[str, Any], ncells: int) -> types.FunctionType:
    """An empty function of ``code`` (``ncells`` empty closure cells, -1 for no closure), its
    state to be set by :func:`set_function_state`. Raises TypeError when ``code`` is not a code
    object or a closure is missing, ValueError when the cell count does not match the code's free
    variables."""
    closure = None if ncells < 0 else tuple(types.CellType() for _ in range(ncells))
    fn = types.FunctionType(code, base_globals, None, None, closure)
    fn.__doc__ = None  # not a string constant the code happens to start with
    return fn


def set_function_state(fn: types.FunctionType, state: tuple[Any, ...]) -> None:
    """Fill ``fn`` from the state of :func:`reduce_function`; the submodules the state names were
    imported while it was unpickled."""
    referenced, values, empty, attributes, _submodules = state
    fn_globals = fn.__globals__
    fn_globals.update(referenced)
    fn_globals["__builtins__"] = builtins.__dict__
    if values is not None:
        for cell, value in zip(fn.__closure__, values):
            cell.cell_contents = value
        for index in empty or ():
            del fn.__closure__[index].cell_contents
    if attributes is not None:
        instance_dict = attributes.pop("__dict__", None)
        if instance_dict:
            fn.__dict__.update(instance_dict)
        for name, value in attributes.items():
            setattr(fn, name, value)
