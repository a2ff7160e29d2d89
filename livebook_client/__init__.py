"""livebook_client: attach a REPL, script or notebook to a pynode cluster and sample remotely.

``attach(node)`` returns a :class:`Session` (``call``, ``sample`` with live progress and Ctrl-C
cancellation); :mod:`livebook_client.display` draws trace and posterior plots;
``%load_ext livebook_client`` adds the ``%attach`` and ``%%remote`` magics.

``attach`` and ``Session`` are loaded on first use (PEP 562), so that importing a display or
progress helper does not start the node runtime's imports; so are the submodules ``display``,
``progress``, ``session`` and ``magics``: after a plain ``import livebook_client``,
``livebook_client.display.plot_trace(chains)`` works.

Chains are numbered from 0 everywhere (data, warnings, progress, plots), as exmc and ArviZ do.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import AttachError, IncompatibleNode, LivebookClientError

__all__ = ["AttachError", "IncompatibleNode", "LivebookClientError", "Session", "attach",
           "load_ipython_extension"]

_LAZY = {"attach": "livebook_client.session", "Session": "livebook_client.session"}
_SUBMODULES = ("display", "progress", "session", "magics", "status")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"livebook_client.{name}")
        globals()[name] = value
        return value
    if name not in _LAZY:
        raise AttributeError(f"module 'livebook_client' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext livebook_client``: register ``%attach`` and ``%%remote``."""
    from .magics import load_ipython_extension as register

    register(ipython)
