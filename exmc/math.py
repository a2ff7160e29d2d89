"""``exmc.math``: functions on symbolic values for densities written with exmc ops (PyMC's
``pm.math``). Every op of :data:`exmc.ops.OPS` is a function here (``exmc.math.log(x)``,
``exmc.math.logsumexp(x, axis=-1)``, ``exmc.math.where(c, a, b)``); see :mod:`exmc.ops_expr`
for how tracing works and what cannot be traced."""
from exmc.ops_expr import Expr, __getattr__, op, trace  # noqa: F401 - the public surface

__all__ = ["Expr", "op", "trace"]
