"""Which Python function an Erlang ``{Module, Function, Args}`` runs, and Erlang's view of a
Python exception.

Resolution of ``M:F(A...)`` (atoms ``M`` and ``F``):

1. a function registered with :func:`export` for ``(M, F)`` (and the arity, when it was given
   one), so Elixir module names work: ``export("Elixir.Exmc.NUTS.Sampler", "sample_chains", fn)``;
2. otherwise ``M`` is a Python module path (``os.path``) and ``F`` an attribute of it: the
   ``pynode call NODE module:function`` rule.

Nothing found is Erlang's ``undef``, as calling a missing function on a BEAM node is.

A Python exception becomes the Erlang ``error`` with reason
``{python, 'ExceptionClass', <<"message">>, <<"formatted traceback">>}`` (atoms and binaries);
:func:`exception_reason` builds it.
"""

from __future__ import annotations

import importlib
import threading
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from pynode.etf import Atom

_lock = threading.Lock()
_exports: dict[tuple[str, str], dict[int | None, Callable[..., Any]]] = {}


class Undefined(LookupError):
    """No Python function for an MFA (Erlang's ``undef``)."""


def export(module: str, function: str, fn: Callable[..., Any], arity: int | None = None) -> None:
    """Make ``fn`` what Erlang's ``module:function(...)`` runs on this node (for every arity, or
    only ``arity``). Takes precedence over the module-path rule. Raises TypeError for a
    non-callable."""
    if not callable(fn):
        raise TypeError(f"export of {module}:{function} needs a callable, got {fn!r}")
    with _lock:
        _exports.setdefault((str(module), str(function)), {})[arity] = fn


def export_table(table: Mapping[tuple[str, str], str | Callable[..., Any]]) -> None:
    """:func:`export` every ``(module, function) -> fn`` of ``table``; ``fn`` may be a
    ``"python.module:function"`` string, imported now. Raises ImportError/AttributeError naming
    a string that does not resolve, TypeError for a non-callable."""
    for (module, function), target in table.items():
        if isinstance(target, str):
            module_name, _, attribute = target.partition(":")
            fn: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                fn = getattr(fn, part)
        else:
            fn = target
        export(module, function, fn)


def unexport(module: str, function: str) -> None:
    with _lock:
        _exports.pop((str(module), str(function)), None)


def resolve(module: str, function: str, arity: int) -> Callable[..., Any]:
    """The Python callable for ``module:function/arity``. Raises Undefined."""
    with _lock:
        by_arity = _exports.get((str(module), str(function)))
        if by_arity is not None:
            fn = by_arity.get(arity, by_arity.get(None))
            if fn is not None:
                return fn
    if str(module).startswith("Elixir."):
        raise Undefined(f"{module}.{function}/{arity} is not exported on this node")
    try:
        target: Any = importlib.import_module(str(module))
    except ImportError as exc:
        raise Undefined(f"no Python module {module!r}: {exc}") from None
    fn = getattr(target, str(function), None)
    if fn is None or not callable(fn):
        raise Undefined(f"Python module {module!r} has no function {function!r}")
    return fn


def exception_reason(exc: BaseException) -> tuple[Atom, Atom, str, str]:
    """``{python, 'Class', <<"message">>, <<"traceback">>}`` for ``exc``."""
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ in ("builtins", "__main__") else f"{kind.__module__}.{kind.__qualname__}"
    return Atom("python"), Atom(name[:255]), str(exc), "".join(traceback.format_exception(exc))
