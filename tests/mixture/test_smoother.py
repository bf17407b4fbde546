"""The DVAE E-S backward pass (linearised RTS) against exact Gaussian conditioning."""

import numpy as np
import pytest

from mixest.mixture._dynamics import gaussian_product, linearised_rts


def _random_walk_problem(rng, M=3, T=12, D=2):
    """A random walk with known drift f_t and variance v_t, seen through diagonal evidence."""
    mu0 = rng.normal(size=(M, D))
    v0 = rng.uniform(0.5, 2.0, size=(M, D))
    drift = rng.normal(scale=0.3, size=(M, T, D))
    v = rng.uniform(0.05, 0.5, size=(M, T, D))
    prec = rng.uniform(0.5, 5.0, size=(M, T, D)) * (rng.uniform(size=(M, T, D)) > 0.3)
    obs = rng.normal(size=(M, T, D))
    return mu0, v0, drift, v, prec, prec * obs


def _forward(mu0, v0, drift, v, prec, vec, propagated):
    """Filter: prior N(m_{t-1} + f_t, Sigma_{t-1} + v_t), element-wise Gaussian product."""
    M, T, D = drift.shape
    means, covs = np.empty((M, T, D)), np.empty((M, T, D))
    pm, pv = np.empty((M, T, D)), np.empty((M, T, D))
    for t in range(T):
        if t == 0:
            pm[:, 0], full = mu0, v0
            pv[:, 0] = v0
        else:
            pm[:, t] = means[:, t - 1] + drift[:, t]
            full = covs[:, t - 1] + v[:, t]
            pv[:, t] = full if propagated else v[:, t]
        means[:, t], covs[:, t] = gaussian_product(pm[:, t], full, vec[:, t], prec[:, t])
    return means, covs, pm, pv


def _dense_posterior(mu0, v0, drift, v, prec, vec):
    """Exact marginals from the joint precision matrix of s_{0:T-1} (one coordinate at a time)."""
    M, T, D = drift.shape
    means, covs = np.empty((M, T, D)), np.empty((M, T, D))
    for m in range(M):
        for d in range(D):
            # prior: s_0 ~ N(mu0, v0), s_t - s_{t-1} ~ N(f_t, v_t)
            A = np.zeros((T, T))
            b = np.zeros(T)
            A[0, 0] += 1.0 / v0[m, d]
            b[0] += mu0[m, d] / v0[m, d]
            for t in range(1, T):
                w = 1.0 / v[m, t, d]
                A[t, t] += w
                A[t - 1, t - 1] += w
                A[t, t - 1] -= w
                A[t - 1, t] -= w
                b[t] += w * drift[m, t, d]
                b[t - 1] -= w * drift[m, t, d]
            A[np.arange(T), np.arange(T)] += prec[m, :, d]
            b += vec[m, :, d]
            cov = np.linalg.inv(A)
            means[m, :, d] = cov @ b
            covs[m, :, d] = np.diag(cov)
    return means, covs


@pytest.mark.parametrize("propagated", [True, False])
def test_first_order_smoother_equals_exact_gaussian_posterior(propagated):
    rng = np.random.default_rng(0)
    problem = _random_walk_problem(rng)
    means, covs, pm, pv = _forward(*problem, propagated=propagated)
    sm, sc = linearised_rts(means, covs, pm, pv, residual_order=1, propagated=propagated)
    exact_m, exact_c = _dense_posterior(*problem)
    np.testing.assert_allclose(sm, exact_m, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(sc, exact_c, rtol=1e-9, atol=1e-12)
    # the last frame is already smoothed by the filter; earlier ones changed
    np.testing.assert_array_equal(sm[:, -1], means[:, -1])
    assert not np.allclose(sm[:, :-1], means[:, :-1])


def test_smoother_leaves_absolute_decoders_and_single_frames_alone():
    rng = np.random.default_rng(1)
    means, covs, pm, pv = _forward(*_random_walk_problem(rng), propagated=True)
    out_m, out_c = linearised_rts(means, covs, pm, pv, residual_order=0, propagated=True)
    assert out_m is means and out_c is covs
    out_m, _ = linearised_rts(means[:, :1], covs[:, :1], pm[:, :1], pv[:, :1], 1, True)
    np.testing.assert_array_equal(out_m, means[:, :1])


def test_second_order_smoother_shrinks_variances():
    """Order 2 drops the s_{t-1} path; it must still only ever reduce the filtered variance."""
    rng = np.random.default_rng(2)
    M, T, D = 4, 15, 2
    means = rng.normal(size=(M, T, D))
    covs = rng.uniform(0.1, 1.0, size=(M, T, D))
    pm = means + rng.normal(scale=0.2, size=(M, T, D))
    pv = np.empty_like(covs)
    pv[:, 0] = 1.0
    pv[:, 1] = covs[:, 0] + 0.3
    pv[:, 2:] = 4.0 * covs[:, 1:-1] + covs[:, :-2] + 0.3
    sm, sc = linearised_rts(means, covs, pm, pv, residual_order=2, propagated=True)
    assert np.all(np.isfinite(sm)) and np.all(sc > 0)
    assert np.all(sc <= covs + 1e-12)


def test_constant_velocity_smoother_equals_filterpy_rts(filterpy_cv):
    """prior='constant-velocity' with smoothing: E-S is a Kalman filter + RTS smoother."""
    from mixest.mixture import ConstantVelocityDynamics, e_step_s

    rng = np.random.default_rng(3)
    B, T, N, D = 2, 10, 2, 2
    prec = rng.uniform(1e2, 1e4, (B, T, N, D)) * (rng.random((B, T, N, 1)) > 0.3)
    target = rng.uniform(0.2, 0.8, (B, 1, N, D)) + 0.01 * np.arange(T)[None, :, None, None]
    iv = prec * (target + rng.normal(0, 0.01, (B, T, N, D)))
    dyn = ConstantVelocityDynamics(process_noise=0.01, initial_position_std=0.2,
                                   initial_velocity_std=0.03, smooth=True)
    m_first = rng.uniform(0, 1, (B, N, D))
    means, covs, _, _ = e_step_s(dyn, iv, prec, m_first)

    for b in range(B):
        for n in range(N):
            kf = filterpy_cv(m_first[b, n], 0.01, 0.2, 0.03)
            xs, ps = [], []
            for t in range(T):
                if t > 0:
                    kf.predict()
                lam = prec[b, t, n]
                if np.all(lam > 0):
                    kf.update(iv[b, t, n] / lam, R=np.diag(1.0 / lam))
                xs.append(kf.x.copy())
                ps.append(kf.P.copy())
            xs_s, ps_s, _, _ = kf.rts_smoother(np.array(xs), np.array(ps))
            np.testing.assert_allclose(means[b, :, n], xs_s[:, :D], rtol=1e-8, atol=1e-11)
            np.testing.assert_allclose(covs[b, :, n], np.diagonal(ps_s[:, :D, :D], axis1=1,
                                                                  axis2=2), rtol=1e-8)


def test_smoother_with_per_frame_coefficients_equals_exact_posterior():
    """``coefficients`` (the gated extrapolation's 1 + g_v + g_a): the chain
    s_t = a_t s_{t-1} + f_t + N(0, v_t) with time-varying a_t, filtered and smoothed, against
    exact conditioning of the joint Gaussian."""
    rng = np.random.default_rng(3)
    mu0, v0, drift, v, prec, vec = _random_walk_problem(rng, M=2, T=9)
    M, T, D = drift.shape
    a = rng.uniform(0.5, 2.5, size=(M, T, D))
    means, covs = np.empty((M, T, D)), np.empty((M, T, D))
    pm, pv = np.empty((M, T, D)), np.empty((M, T, D))
    pm[:, 0], pv[:, 0] = mu0, v0
    for t in range(T):
        if t > 0:
            pm[:, t] = a[:, t] * means[:, t - 1] + drift[:, t]
            pv[:, t] = a[:, t] ** 2 * covs[:, t - 1] + v[:, t]
        means[:, t], covs[:, t] = gaussian_product(pm[:, t], pv[:, t], vec[:, t], prec[:, t])
    sm, sc = linearised_rts(means, covs, pm, pv, 1, True, coefficients=a)
    for m in range(M):
        for d in range(D):
            A = np.zeros((T, T))
            b = np.zeros(T)
            A[0, 0], b[0] = 1.0 / v0[m, d], mu0[m, d] / v0[m, d]
            for t in range(1, T):  # -log p: (s_t - a s_{t-1} - f)^2 / (2 v)
                w, k, f = 1.0 / v[m, t, d], a[m, t, d], drift[m, t, d]
                A[t, t] += w
                A[t - 1, t - 1] += w * k * k
                A[t, t - 1] -= w * k
                A[t - 1, t] -= w * k
                b[t] += w * f
                b[t - 1] -= w * k * f
            A[np.arange(T), np.arange(T)] += prec[m, :, d]
            cov = np.linalg.inv(A)
            np.testing.assert_allclose(sm[m, :, d], cov @ (b + vec[m, :, d]), rtol=1e-9,
                                       atol=1e-12)
            np.testing.assert_allclose(sc[m, :, d], np.diag(cov), rtol=1e-9, atol=1e-12)
    # the first-order constant (a = 1) is the special case residual_order=1
    ones = np.ones_like(a)
    for got, ref in zip(linearised_rts(means, covs, pm, pv, 1, True, coefficients=ones),
                        linearised_rts(means, covs, pm, pv, 1, True), strict=True):
        np.testing.assert_array_equal(got, ref)
