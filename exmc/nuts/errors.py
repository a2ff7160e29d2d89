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
