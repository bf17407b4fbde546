"""The Numba min-cost matching against scipy's linear_sum_assignment (the oracle)."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from mixest._kernels._assignment import min_cost_matching


def _scipy_cost(cost, valid):
    """Optimal total cost of each problem, from scipy."""
    totals = []
    for c, v in zip(cost, valid, strict=True):
        rows = np.flatnonzero(v)
        if rows.size == 0:
            totals.append(0.0)
            continue
        r, k = linear_sum_assignment(c[rows])
        totals.append(c[rows][r, k].sum())
    return np.array(totals)


@pytest.mark.parametrize(("K", "C"), [(3, 3), (2, 5), (6, 3), (1, 1), (7, 7)])
def test_matches_scipy_optimum(K, C):
    rng = np.random.default_rng(K * 10 + C)
    cost = rng.normal(size=(200, K, C)) * rng.choice([0.01, 1.0, 100.0], size=(200, 1, 1))
    valid = rng.random((200, K)) > 0.25
    col = min_cost_matching(cost, valid)
    # a valid one-to-one matching of the right size
    assert np.all(col[~valid] == -1)
    for b in range(len(cost)):
        used = col[b][col[b] >= 0]
        assert len(np.unique(used)) == len(used)
        assert len(used) == min(valid[b].sum(), C)
    total = np.where(col >= 0, np.take_along_axis(cost, np.maximum(col, 0)[..., None], 2)[..., 0],
                     0.0).sum(1)
    np.testing.assert_allclose(total, _scipy_cost(cost, valid), rtol=1e-12, atol=1e-9)


def test_ties_and_integer_costs():
    cost = np.zeros((1, 4, 4))
    col = min_cost_matching(cost)
    assert sorted(col[0]) == [0, 1, 2, 3]


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="cost must have shape"):
        min_cost_matching(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="finite"):
        min_cost_matching(np.full((1, 2, 2), np.nan))
    with pytest.raises(ValueError, match="valid must have shape"):
        min_cost_matching(np.zeros((1, 2, 2)), np.ones((1, 3), bool))
