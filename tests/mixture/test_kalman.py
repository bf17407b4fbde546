"""The batched Kalman filter / RTS smoother against filterpy (the oracle, per batch element)."""

from __future__ import annotations

import numpy as np
import pytest
from filterpy.kalman import KalmanFilter

from mixest.mixture._kalman import (
    constant_velocity_model,
    kalman_filter,
    kalman_predict,
    kalman_smoother,
    kalman_update,
    rts_smoother,
)


def _spd(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    d = shape[-1]
    A = rng.normal(size=shape)
    return scale * (A @ np.swapaxes(A, -1, -2) / d + 0.5 * np.eye(d))


def _random_problem(rng, batch, T, Dx, Dz, miss=0.2):
    F = np.eye(Dx) + 0.3 * rng.normal(size=(Dx, Dx)) / np.sqrt(Dx)
    H = rng.normal(size=(Dz, Dx))
    Q = _spd(rng, Dx, Dx, scale=0.1)
    R = _spd(rng, *batch, T, Dz, Dz)  # a different R at every step of every batch element
    x0 = rng.normal(size=batch + (Dx,))
    P0 = _spd(rng, *batch, Dx, Dx)
    Z = rng.normal(size=batch + (T, Dz))
    Z[rng.random(batch + (T,)) < miss] = np.nan
    return F, H, Q, R, x0, P0, Z


def _filterpy_run(F, H, Q, R, x0, P0, Z):
    """filterpy on one sequence; its first step predicts from (x0, P0) before updating."""
    Dx, Dz = F.shape[0], H.shape[0]
    kf = KalmanFilter(dim_x=Dx, dim_z=Dz)
    kf.x, kf.P, kf.F, kf.H, kf.Q = x0.copy(), P0.copy(), F, H, Q
    means, covs = [], []
    for t in range(Z.shape[0]):
        kf.predict()
        kf.update(None if np.isnan(Z[t]).any() else Z[t], R=R[t])
        means.append(kf.x.copy())
        covs.append(kf.P.copy())
    means, covs = np.array(means), np.array(covs)
    sm, sP, _, _ = kf.rts_smoother(means, covs, Fs=[F] * len(Z), Qs=[Q] * len(Z))
    return means, covs, sm, sP


@pytest.mark.parametrize("seed", range(4))
def test_filter_and_smoother_equal_filterpy(seed):
    rng = np.random.default_rng(seed)
    batch, T, Dx, Dz = (3, 2), 25, 4 + seed % 2, 2 + seed % 3
    F, H, Q, R, x0, P0, Z = _random_problem(rng, batch, T, Dx, Dz)
    # Our prior is on the first state itself: push filterpy's prior through one prediction.
    m0, C0 = kalman_predict(x0, P0, F, Q)
    kw = dict(
        transition_matrix=F, observation_matrix=H, transition_covariance=Q,
        observation_covariance=R, initial_mean=m0, initial_covariance=C0,
    )
    filt = kalman_filter(Z, **kw)
    smooth = kalman_smoother(Z, **kw)
    for idx in np.ndindex(*batch):
        fm, fP, sm, sP = _filterpy_run(F, H, Q, R[idx], x0[idx], P0[idx], Z[idx])
        np.testing.assert_allclose(filt.means[idx], fm, rtol=0, atol=1e-8)
        np.testing.assert_allclose(filt.covariances[idx], fP, rtol=0, atol=1e-8)
        np.testing.assert_allclose(smooth.means[idx], sm, rtol=0, atol=1e-8)
        np.testing.assert_allclose(smooth.covariances[idx], sP, rtol=0, atol=1e-8)


def test_missing_rows_skip_update_and_likelihood():
    rng = np.random.default_rng(0)
    F, H, Q, R, x0, P0, Z = _random_problem(rng, (2,), 10, 4, 2, miss=0.0)
    kw = dict(
        transition_matrix=F, observation_matrix=H, transition_covariance=Q,
        observation_covariance=R, initial_mean=x0, initial_covariance=P0,
    )
    Z[0, 3, 1] = np.nan  # one NaN coordinate marks the whole row missing
    res = kalman_filter(Z, **kw)
    np.testing.assert_array_equal(res.means[0, 3], res.predicted_means[0, 3])
    np.testing.assert_array_equal(res.covariances[0, 3], res.predicted_covariances[0, 3])
    all_missing = kalman_filter(np.full_like(Z, np.nan), **kw)
    np.testing.assert_array_equal(all_missing.log_likelihood, 0.0)
    assert np.all(np.isfinite(res.log_likelihood))


def test_log_likelihood_matches_joint_gaussian():
    """log p(z_{1:T}) from the filter equals the joint Gaussian density of the stacked z."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(1)
    T, Dx, Dz = 5, 3, 2
    F, H, Q, R, x0, P0, Z = _random_problem(rng, (), T, Dx, Dz, miss=0.0)
    res = kalman_filter(
        Z, transition_matrix=F, observation_matrix=H, transition_covariance=Q,
        observation_covariance=R, initial_mean=x0, initial_covariance=P0,
    )
    # x_t = F^t x_0 + sum_s F^(t-s) w_s: build the joint covariance of z_{1:T} directly.
    Fp = [np.linalg.matrix_power(F, t) for t in range(T)]
    cov_x = np.zeros((T, T, Dx, Dx))
    for t in range(T):
        for s in range(T):
            c = Fp[t] @ P0 @ Fp[s].T
            for u in range(1, min(t, s) + 1):
                c = c + Fp[t - u] @ Q @ Fp[s - u].T
            cov_x[t, s] = c
    cov_z = np.einsum("ij,tsjk,lk->tisl", H, cov_x, H).reshape(T * Dz, T * Dz)
    cov_z += _block_diag(R)
    mean_z = np.concatenate([H @ Fp[t] @ x0 for t in range(T)])
    expected = multivariate_normal(mean_z, cov_z).logpdf(Z.ravel())
    np.testing.assert_allclose(res.log_likelihood, expected, rtol=1e-10)


def _block_diag(blocks):
    from scipy.linalg import block_diag

    return block_diag(*blocks)


def test_update_broadcasts_and_smoother_cross_covariance():
    rng = np.random.default_rng(2)
    F, H, Q = constant_velocity_model(2, process_noise=[0.1, 0.2])
    assert F.shape == (4, 4) and H.shape == (2, 4) and Q.shape == (4, 4)
    np.testing.assert_allclose(Q[0, 2], 0.1**2 / 2)
    mean, cov = rng.normal(size=(5, 4)), _spd(rng, 5, 4, 4)
    m, P, ll = kalman_update(mean, cov, rng.normal(size=2), np.eye(2), H)
    assert m.shape == (5, 4) and P.shape == (5, 4, 4) and ll.shape == (5,)
    # The smoother broadcasts a batch of Q matrices against one F.
    Qb = constant_velocity_model(2, process_noise=[[0.1, 0.2], [0.3, 0.4]])[2]
    filt = kalman_filter(
        rng.normal(size=(3, 2, 6, 2)), transition_matrix=F, observation_matrix=H,
        transition_covariance=Qb, observation_covariance=0.5 * np.eye(2),
        initial_mean=np.zeros(4), initial_covariance=np.eye(4),
    )
    sm, sP, cross = rts_smoother(
        filt.means, filt.covariances, transition_matrix=F, transition_covariance=Qb
    )
    assert sm.shape == (3, 2, 6, 4) and sP.shape == (3, 2, 6, 4, 4)
    assert cross.shape == (3, 2, 5, 4, 4)


def test_cross_covariance_equals_joint_posterior():
    """Cov(x_{t+1}, x_t | z) from the smoother equals the exact joint Gaussian posterior."""
    rng = np.random.default_rng(3)
    T, Dx, Dz = 4, 2, 1
    F, H, Q, R, x0, P0, Z = _random_problem(rng, (), T, Dx, Dz, miss=0.0)
    res = kalman_smoother(
        Z, transition_matrix=F, observation_matrix=H, transition_covariance=Q,
        observation_covariance=R, initial_mean=x0, initial_covariance=P0,
    )
    # Joint prior precision of x_{1:T} (a block-tridiagonal Gauss-Markov chain) plus the
    # observation terms gives the exact posterior covariance.
    n = T * Dx
    Lam = np.zeros((n, n))
    Lam[:Dx, :Dx] += np.linalg.solve(P0, np.eye(Dx))
    Qi = np.linalg.solve(Q, np.eye(Dx))
    for t in range(1, T):
        a, b = slice(t * Dx, (t + 1) * Dx), slice((t - 1) * Dx, t * Dx)
        Lam[a, a] += Qi
        Lam[b, b] += F.T @ Qi @ F
        Lam[a, b] -= Qi @ F
        Lam[b, a] -= F.T @ Qi
    for t in range(T):
        a = slice(t * Dx, (t + 1) * Dx)
        Lam[a, a] += H.T @ np.linalg.solve(R[t], H)
    post = np.linalg.solve(Lam, np.eye(n))
    for t in range(T - 1):
        block = post[(t + 1) * Dx:(t + 2) * Dx, t * Dx:(t + 1) * Dx]
        np.testing.assert_allclose(res.cross_covariances[t], block, atol=1e-10)
        np.testing.assert_allclose(
            res.covariances[t], post[t * Dx:(t + 1) * Dx, t * Dx:(t + 1) * Dx], atol=1e-10
        )


def test_shape_errors():
    F, H, Q = constant_velocity_model(2, 0.1)
    with pytest.raises(ValueError, match="observation_covariance"):
        kalman_filter(
            np.zeros((5, 2)), transition_matrix=F, observation_matrix=H,
            transition_covariance=Q, observation_covariance=np.ones((3, 2, 2)),
            initial_mean=np.zeros(4), initial_covariance=np.eye(4),
        )
    with pytest.raises(ValueError, match="inconsistent"):
        kalman_filter(
            np.zeros((5, 3)), transition_matrix=F, observation_matrix=H,
            transition_covariance=Q, observation_covariance=np.eye(3),
            initial_mean=np.zeros(4), initial_covariance=np.eye(4),
        )


@pytest.mark.parametrize("smooth", [False, True])
def test_constant_velocity_blocks_equal_the_matrix_filter(smooth):
    """ConstantVelocityDynamics runs diagonal evidence on 2x2 blocks per coordinate; the same
    evidence given as full matrices runs the (2D, 2D) matrix filter: same moments."""
    from mixest.mixture import ConstantVelocityDynamics, e_step_s

    rng = np.random.default_rng(5)
    B, T, N, D = 3, 25, 2, 4
    boxes = rng.uniform(0.1, 0.3, (B, 1, N, 2))
    boxes = np.concatenate([boxes, boxes + 0.1], -1) + 0.004 * np.arange(T)[None, :, None, None]
    prec = rng.uniform(1e3, 1e5, (B, T, N, D)) * (rng.random((B, T, N, 1)) > 0.3)
    iv = prec * (boxes + rng.normal(0, 0.005, boxes.shape))
    m_first = boxes[:, 0] + 0.01
    blocks = e_step_s(ConstantVelocityDynamics(smooth=smooth), iv, prec, m_first)
    full = e_step_s(ConstantVelocityDynamics(smooth=smooth), iv, prec[..., None] * np.eye(D),
                    m_first)
    np.testing.assert_allclose(blocks[0], full[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(blocks[1], np.diagonal(full[1], axis1=-2, axis2=-1), rtol=1e-8)
    np.testing.assert_allclose(blocks[2], full[2], rtol=1e-9, atol=1e-12)  # predictions
