"""Stan's NUTS for exmc models: ``exmc.NUTS.Sampler.sample`` / ``sample_chains``.

Modules: ``metric`` (mass matrices), ``integrator`` (leapfrog), ``tree`` (one NUTS transition),
``stepsize`` (heuristic + dual averaging), ``adaptation`` (windows, Welford estimators), ``init``,
``sampler`` (one chain), ``pool`` / ``worker`` (warm process pool), ``vectorized`` (all chains in
one process with batched gradients), ``trace`` (results), ``progress``, ``multinode`` (chains over
several nodes, behind a ``ClusterBackend`` Protocol) and ``pynode_backend`` (its pynode transport,
imported only for such a run), ``runs`` (runs in progress, for status views).
"""
from __future__ import annotations

from exmc.nuts.api import Sampler
from exmc.nuts.errors import ChainFailed, InitializationError, ModelError, SamplerError
from exmc.nuts.pool import __pynode_preload__
from exmc.nuts.progress import ProgressEvent
from exmc.nuts.trace import Chains, Trace

__all__ = [
    "Sampler", "Trace", "Chains", "ProgressEvent", "SamplerError", "InitializationError", "ChainFailed", "ModelError",
    "__pynode_preload__",
]
