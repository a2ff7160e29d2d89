"""Whole-model gradient checks for new ops, transforms and families: the compiled log-density's
gradient against central finite differences (single), and batched against single evaluations."""
from __future__ import annotations

import numpy as np

import exmc
from dist_checks import assert_close_grad, numerical_gradient


def check_model_gradients(ir, seed: int = 0, chains: int = 3, scale: float = 0.5, theta=None):
    """Compile ``ir``; at a random point (or ``theta``) the gradient equals central differences of the
    log-density, and a batch of ``chains`` points gives each row's single result. Returns the model."""
    model = exmc.compile(ir)
    rng = np.random.default_rng(seed)
    point = rng.normal(size=model.dim) * scale if theta is None else np.asarray(theta, dtype=float)
    lp, grad = model.logp_and_grad(point)
    assert np.isfinite(lp)
    numeric = numerical_gradient(lambda t: model.logp_and_grad(t)[0], point)
    assert_close_grad(grad, numeric, "gradient vs central differences")
    batch = np.vstack([point, rng.normal(size=(chains - 1, model.dim)) * scale])
    lps, grads = model.logp_and_grad(batch)
    for row in range(chains):
        single_lp, single_grad = model.logp_and_grad(batch[row])
        np.testing.assert_allclose(lps[row], single_lp, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(grads[row], single_grad, rtol=1e-8, atol=1e-10)
    return model
