"""Distribution families, gathered in the :data:`Dist` namespace users write (``Dist.Normal``).

Each family is a stateless :class:`~exmc.dist.base.Distribution` instance; see ``base.py`` for the
contract and ``docs/design.md`` for how the model compiler uses it.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from exmc.dist.base import Distribution, sum_to_shape
from exmc.dist.bounded import Beta, TruncatedNormal, Uniform, Uniform01
from exmc.dist.continuous import Cauchy, Flat, Laplace, Logistic, Normal, StudentT
from exmc.dist.custom import Custom
from exmc.dist.discrete import Bernoulli, Binomial, NegativeBinomial, Poisson
from exmc.dist.discrete_extra import BetaBinomial, Categorical, Multinomial
from exmc.dist.hmm import HMM
from exmc.dist.mixture import Mixture
from exmc.dist.multivariate import Dirichlet, GaussianRandomWalk, MvNormal
from exmc.dist.multivariate_extra import LKJCholesky, ZeroSumNormal
from exmc.dist.positive import Exponential, Gamma, HalfCauchy, HalfFlat, HalfNormal, InverseGamma, Lognormal, Weibull
from exmc.dist.potential import Potential

__all__ = ["Dist", "Distribution", "FAMILIES", "by_name", "sum_to_shape"]

_ALL: tuple[Distribution, ...] = (
    Normal, HalfNormal, HalfCauchy, TruncatedNormal, Lognormal, Exponential, Gamma, InverseGamma, Weibull,
    Beta, Uniform, Uniform01, Cauchy, StudentT, Laplace, Logistic, Flat, HalfFlat,
    Bernoulli, Binomial, Poisson, NegativeBinomial, MvNormal, GaussianRandomWalk, Dirichlet, Mixture, Custom,
    Categorical, Multinomial, BetaBinomial, ZeroSumNormal, LKJCholesky, HMM, Potential,
)

#: Every family by the name users write; ``LogNormal`` is an alias of ``Lognormal`` (eXMC spells both).
FAMILIES: Mapping[str, Distribution] = MappingProxyType({**{d.name: d for d in _ALL}, "LogNormal": Lognormal})


class _Namespace:
    """Attribute access to :data:`FAMILIES` (``Dist.Normal``), read-only, with a helpful error."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Distribution:
        try:
            return FAMILIES[name]
        except KeyError:
            raise AttributeError(f"unknown distribution {name!r}; known: {', '.join(sorted(FAMILIES))}") from None

    def __setattr__(self, name, value):
        raise AttributeError("exmc.Dist is read-only")

    def __dir__(self):
        return sorted(FAMILIES)

    def __reduce__(self):
        return "Dist"


#: The namespace of families: ``Dist.Normal``, ``Dist.Bernoulli``, ...
Dist = _Namespace()


def by_name(name: str) -> Distribution:
    """The family called ``name``; raises ``ValueError`` naming it and listing the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown distribution {name!r}; known: {', '.join(sorted(FAMILIES))}") from None
