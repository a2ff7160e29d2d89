"""The exceptions of exmc's model layer: a malformed model, and a point outside a density's domain.

Every check on an IR (at build time in :mod:`exmc.builder`, at compile time in :mod:`exmc.ir` and
:mod:`exmc.model`) raises :class:`ValidationError` before any sampling starts. The message always
names the offending node and the field of that node, e.g.
``rv 'y' param 'sigma': refers to unknown node 'sigam'``.
"""
from __future__ import annotations

__all__ = ["ValidationError", "DomainError"]


class ValidationError(ValueError):
    """A model (IR) is not well formed.

    Attributes:
        node: name of the offending node (``None`` for whole-model problems).
        field: the part of the node at fault (``"param 'sigma'"``, ``"shape"``, ``"value"``...).
        reason: what is wrong, in words.
    """

    def __init__(self, kind: str, node: str | None, field: str, reason: str) -> None:
        self.kind = kind
        self.node = node
        self.field = field
        self.reason = reason
        where = f"{kind} {node!r}" if node is not None else kind
        super().__init__(f"{where} {field}: {reason}")

    def __reduce__(self):
        # Exceptions pickle through their ``args``; ours needs all four fields to travel between
        # sampler workers and the calling process.
        return (type(self), (self.kind, self.node, self.field, self.reason))


class DomainError(ValueError):
    """Raised by a log-density (e.g. a ``Custom`` family's ``logp``) to say "this point is outside
    my domain": the sampler treats it as log-density ``-inf`` (a rejected point, a divergence), as
    Stan treats ``std::domain_error``.

    The sampler treats the same way floating-point errors (``ArithmeticError``: ``FloatingPointError``,
    ``OverflowError``, ``ZeroDivisionError``), ``numpy.linalg.LinAlgError`` (a matrix that is not
    positive definite) and the ``ValueError("math domain error")`` of :mod:`math`. Any other
    exception inside a log-density is a bug and reaches the user (see
    :class:`exmc.nuts.errors.ModelError`).
    """
