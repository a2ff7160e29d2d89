"""exmc._numeric: the stable elementwise helpers agree with their reference formulas in both tails,
for arrays and for numpy scalars (which take a different code path)."""
from __future__ import annotations

import numpy as np
import pytest

from exmc._numeric import log_sigmoid, log_sigmoid_pair, softplus

X = np.array([-800.0, -40.0, -1.5, -1e-12, 0.0, 3e-9, 2.0, 35.0, 750.0])


def test_softplus_and_log_sigmoid_match_logaddexp_in_both_tails():
    np.testing.assert_allclose(softplus(X), np.logaddexp(0.0, X), rtol=1e-15, atol=0)
    np.testing.assert_allclose(log_sigmoid(X), -np.logaddexp(0.0, -X), rtol=1e-15, atol=0)
    np.testing.assert_allclose(log_sigmoid_pair(X), -np.logaddexp(0.0, -X) - np.logaddexp(0.0, X),
                               rtol=1e-15, atol=0)


@pytest.mark.parametrize("x", list(X))
def test_numpy_scalars_give_the_array_results(x):
    index = list(X).index(x)
    assert softplus(np.float64(x)) == pytest.approx(softplus(X)[index], rel=1e-15)
    assert log_sigmoid(np.float64(x)) == pytest.approx(log_sigmoid(X)[index], rel=1e-15)
    assert np.ndim(softplus(np.float64(x))) == 0
