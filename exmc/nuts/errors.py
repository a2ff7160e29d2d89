"""Exceptions raised by the NUTS sampler."""
from __future__ import annotations


class SamplerError(RuntimeError):
    """A chain could not be sampled; the message names the chain and the cause."""


class InitializationError(SamplerError):
    """No initial point with a finite log-density and gradient was found."""


class ChainFailed(SamplerError):
    """A chain's worker process died or raised; ``chain`` is the chain index."""

    def __init__(self, chain: int, message: str) -> None:
        super().__init__(f"chain {chain}: {message}")
        self.chain = chain
        self.message = message

    def __reduce__(self):
        # Travels between nodes pickled; rebuilt from both fields (plus notes and attributes).
        return (type(self), (self.chain, self.message), self.__dict__)


class ModelError(SamplerError):
    """The model's log-density raised an exception that is not a domain error (see
    :class:`exmc.errors.DomainError`): a bug in the model, reported instead of being silently
    treated as ``-inf`` (which would truncate the posterior).

    Attributes:
        chain: the chain index.
        iteration: 1-based iteration (warmup iterations first, then sampling) being computed when
            the error happened; 0 during initialization.
        phase: ``"initialization"``, ``"warmup"`` or ``"sampling"``.
        error: ``"TypeError: ..."``, the type and message of the original exception (which is
            also the ``__cause__`` in the process that ran the chain).
    """

    def __init__(self, chain: int, iteration: int, phase: str, error: str) -> None:
        super().__init__(f"chain {chain}, {phase} iteration {iteration}: the log-density raised {error} "
                         "(only floating-point domain errors count as a rejected point; fix the model)")
        self.chain = chain
        self.iteration = iteration
        self.phase = phase
        self.error = error

    def __reduce__(self):
        # Travels from pool workers and other nodes to the caller: all four fields, plus notes and
        # attributes (the chain and node a run over nodes adds), as ChainFailed does.
        return (type(self), (self.chain, self.iteration, self.phase, self.error), self.__dict__)
