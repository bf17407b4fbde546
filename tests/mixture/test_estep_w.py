"""The Numba E-W kernel against its NumPy twin (the oracle)."""

import numpy as np
import pytest

from mixest._kernels._estep_w import e_w_numba, e_w_numpy


def _problem(rng, B=4, T=6, K=5, N=3, D=4, full=False, clutter=True):
    obs = rng.normal(size=(B, T, K, D))
    valid = rng.random((B, T, K)) > 0.3
    obs[~valid] = np.nan
    means = rng.normal(size=(B, T, N, D))
    if full:
        A = rng.normal(size=(B, T, K, D, D))
        phi = A @ np.swapaxes(A, -1, -2) + 0.3 * np.eye(D)
        C = rng.normal(size=(B, T, N, D, D))
        covs = 0.1 * C @ np.swapaxes(C, -1, -2)
    else:
        phi = rng.uniform(0.05, 1.0, (B, T, K, D))
        covs = rng.uniform(0.01, 0.5, (B, T, N, D))
    log_prior = np.log(rng.dirichlet(np.ones(N + clutter), size=B))
    return obs, valid, phi, means, covs, log_prior


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("clutter", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 125.0])
def test_numba_equals_numpy(full, clutter, temperature):
    rng = np.random.default_rng(0)
    args = _problem(rng, full=full, clutter=clutter)
    a = e_w_numba(*args, log_clutter=-2.0, temperature=temperature)
    b = e_w_numpy(*args, log_clutter=-2.0, temperature=temperature)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    # a clutter density per observation (the "auto" rule folds its weights in there)
    per_obs = rng.normal(-2.0, 3.0, args[1].shape)
    a = e_w_numba(*args, log_clutter=per_obs, temperature=temperature)
    b = e_w_numpy(*args, log_clutter=per_obs, temperature=temperature)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


def test_rows_are_distributions_and_missing_rows_zero():
    rng = np.random.default_rng(1)
    obs, valid, *rest = _problem(rng)
    eta = e_w_numba(obs, valid, *rest)
    assert eta.shape == obs.shape[:3] + (4,)
    np.testing.assert_allclose(eta.sum(-1), valid.astype(float), atol=1e-12)
    assert np.all(eta[~valid] == 0)


def test_far_observation_goes_to_clutter():
    obs = np.array([0.0, 0.0, 100.0]).reshape(1, 1, 3, 1)
    valid = np.ones((1, 1, 3), bool)
    phi = np.full((1, 1, 3, 1), 0.01)
    means = np.array([0.0, 0.05]).reshape(1, 1, 2, 1)
    covs = np.full((1, 1, 2, 1), 1e-4)
    log_prior = np.log([[0.45, 0.45, 0.1]])
    eta = e_w_numba(obs, valid, phi, means, covs, log_prior, log_clutter=0.0)
    assert eta[0, 0, 2, 2] > 0.999
    assert eta[0, 0, 0, 0] > eta[0, 0, 0, 1]


def test_temperature_flattens_assignments():
    rng = np.random.default_rng(2)
    args = _problem(rng, clutter=False)
    args = (*args[:5], np.full_like(args[5], -np.log(3)))  # uniform prior
    sharp = e_w_numba(*args, temperature=1.0)
    flat = e_w_numba(*args, temperature=1e6)
    valid = args[1]
    ent = lambda e: -(e * np.log(np.where(e > 0, e, 1))).sum(-1)[valid].mean()  # noqa: E731
    assert ent(flat) > ent(sharp)
    np.testing.assert_allclose(flat[valid], 1 / 3, atol=1e-3)


def test_evidence_kernel_equals_numpy():
    from mixest._kernels._estep_w import evidence_diag
    from mixest.tracking._observation import evidence

    rng = np.random.default_rng(0)
    obs, valid, phi, means, covs, lp = _problem(rng)
    eta = e_w_numpy(obs, valid, phi, means, covs, lp)[..., :3]
    for a, b in zip(evidence_diag(obs, valid, phi, eta), evidence(obs, valid, phi, eta),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
