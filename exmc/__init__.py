"""exmc: probabilistic models as data, exact numpy gradients, and Stan's NUTS.

The public names are loaded lazily (PEP 562) so that ``import exmc`` stays cheap in sampler
worker processes and so that each part can be imported on its own.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Builder": ("exmc.builder", "Builder"),
    "Dist": ("exmc.dist", "Dist"),
    "IR": ("exmc.ir", "IR"),
    "ValidationError": ("exmc.errors", "ValidationError"),
    "compile": ("exmc.model", "compile"),
    "Predictive": ("exmc.predictive", "Predictive"),
    "load": ("exmc.arviz", "load"),
    "DomainError": ("exmc.errors", "DomainError"),
    "NUTS": ("exmc.nuts", None),
    "math": ("exmc.math", None),  # densities written with exmc ops (Custom without a gradient)
    # `pynode start --preload exmc` calls this to start the sampler pool ahead of the first call.
    "__pynode_preload__": ("exmc.nuts.pool", "__pynode_preload__"),
    # The Erlang names a node speaking Erlang's protocol registers for exmc (exmc.interop).
    "__erlang_exports__": ("exmc.interop", "ERLANG_EXPORTS"),
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'exmc' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value
