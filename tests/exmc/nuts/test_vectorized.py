"""parallel="vectorized": lockstep chains with batched gradient calls."""
import numpy as np

from exmc.nuts import Sampler
from exmc.nuts.vectorized import batched_logp_and_grad

from gaussian_models import Failing, Gaussian, isotropic


class Recording(Gaussian):
    """Records the leading dimension of every batched call."""

    def __init__(self, *args):
        super().__init__(*args)
        self.batch_sizes = []

    def logp_and_grad(self, theta):
        if np.ndim(theta) == 2:
            self.batch_sizes.append(theta.shape[0])
        return super().logp_and_grad(theta)


def test_vectorized_batches_chains_and_masks_finished_ones():
    model = Recording(np.zeros(2), np.eye(2))
    chains = Sampler.sample_chains(model, 4, num_samples=200, num_warmup=200, seed=2, parallel="vectorized")
    sizes = np.array(model.batch_sizes)
    assert sizes.max() == 4 and sizes.min() >= 1
    assert (sizes < 4).any()  # chains whose trajectory ended drop out of the batch
    total_steps = sum(int(t.stats["n_steps"].sum()) for t in chains)
    assert len(sizes) < total_steps  # fewer calls than leapfrog steps: they were batched


def test_vectorized_uses_the_same_streams_as_the_pool():
    model = isotropic(2)  # batched and single evaluations agree exactly for this model
    vectorized = Sampler.sample_chains(model, 3, num_samples=100, num_warmup=100, seed=8, parallel="vectorized")
    sequential = Sampler.sample_chains(model, 3, num_samples=100, num_warmup=100, seed=8, parallel=False)
    for a, b in zip(vectorized, sequential):
        np.testing.assert_allclose(a["x"], b["x"], rtol=1e-9, atol=1e-12)


def test_vectorized_moments():
    chains = Sampler.sample_chains(Gaussian([1.0, -2.0], np.diag([4.0, 0.25])), 4, num_samples=500,
                                   num_warmup=500, seed=3, parallel="vectorized")
    x = chains.stacked("x").reshape(-1, 2)
    np.testing.assert_allclose(x.mean(0), [1.0, -2.0], atol=0.15)
    np.testing.assert_allclose(x.std(0), [2.0, 0.5], rtol=0.1)


def test_batched_failures_are_isolated_to_their_rows():
    model = Failing(threshold=1.0)
    lps, grads = batched_logp_and_grad(model, np.array([[0.5], [2.0], [-1.0]]))
    assert lps[0] == -0.125 and lps[1] == -np.inf and lps[2] == -0.5
    assert grads.shape == (3, 1)
