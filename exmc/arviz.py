"""Export :class:`exmc.nuts.Chains` to ArviZ (``arviz-base``'s ``DataTree``), when installed."""
from __future__ import annotations

from typing import Sequence

import numpy as np

# exmc's per-draw statistics under ArviZ's sample_stats names.
_STAT_NAMES = {
    "lp": "lp",
    "accept_prob": "acceptance_rate",
    "step_size": "step_size",
    "tree_depth": "tree_depth",
    "n_steps": "n_steps",
    "divergent": "diverging",
    "energy": "energy",
}


def to_arviz(chains: Sequence):
    """A ``DataTree`` with ``posterior`` (every variable, dims ``chain, draw, ...``) and
    ``sample_stats``. Raises ``ImportError`` naming the package to install when arviz-base is absent."""
    try:
        from arviz_base import from_dict
    except ImportError as exc:
        raise ImportError("to_arviz needs arviz-base: pip install 'pynode-exmc[arviz]'") from exc
    posterior = {name: np.stack([trace[name] for trace in chains]) for name in chains[0]}
    stats = {
        az_name: np.stack([trace.stats[name] for trace in chains]) for name, az_name in _STAT_NAMES.items()
    }
    return from_dict({"posterior": posterior, "sample_stats": stats})
