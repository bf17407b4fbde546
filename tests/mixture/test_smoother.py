"""The DVAE E-S backward pass (the linearised lag-3 RTS smoother) against exact Gaussian
conditioning, and the constant-velocity smoother against filterpy."""

import numpy as np
import pytest

from mixest.mixture._dynamics import gaussian_product, lagged_smoother


def _coefficients(kind, rng, M, T, D):
    """(a1, a2, a3) per frame as the priors make them: zero at t = 0, first order at t = 1."""
    a = np.zeros((M, T, D, 3))
    a[:, 1:, :, 0] = 1.0
    if kind == "second":
        a[:, 2:] = (2.0, -1.0, 0.0)
    elif kind == "gated":  # 1 + g_v + g_a, -(g_v + 2 g_a), g_a; no acceleration at t = 2
        g_v, g_a = rng.uniform(0, 1, (2, M, T, D))
        g_a[:, :3] = 0.0
        a[:, 2:] = np.stack([1 + g_v, -(g_v + 2 * g_a), g_a], -1)[:, 2:]
    return a


def _forward_problem(kind, rng, M=3, T=14, D=2, gap=()):
    """A forward pass of the delta-method filter (what the E-S runs) and its model."""
    a = _coefficients(kind, rng, M, T, D)
    f = rng.normal(scale=0.2, size=(M, T, D))
    q = rng.uniform(0.05, 0.5, size=(M, T, D))
    prec = rng.uniform(0.5, 5.0, size=(M, T, D)) * (rng.uniform(size=(M, T, D)) > 0.3)
    prec[:, list(gap)] = 0.0
    vec = prec * rng.normal(size=(M, T, D))
    means, covs = np.empty((M, T, D)), np.empty((M, T, D))
    pm, pv = np.empty((M, T, D)), np.empty((M, T, D))
    for t in range(T):
        pm[:, t], pv[:, t] = f[:, t], q[:, t]
        for k in range(1, min(t, 3) + 1):
            pm[:, t] += a[:, t, :, k - 1] * means[:, t - k]
            pv[:, t] += a[:, t, :, k - 1] ** 2 * covs[:, t - k]  # correlations ignored
        means[:, t], covs[:, t] = gaussian_product(pm[:, t], pv[:, t], vec[:, t], prec[:, t])
    return (means, covs, pm, pv, a, q / pv), (a, f, q, prec, vec)


def _dense_posterior(a, f, q, prec, vec):
    """Exact marginals of s_t = sum_k a_kt s_{t-k} + f_t + N(0, q_t) given the evidence, from
    the joint precision matrix of s_{0:T-1} (one coordinate at a time)."""
    M, T, D = f.shape
    means, covs = np.empty((M, T, D)), np.empty((M, T, D))
    for m in range(M):
        for d in range(D):
            A = np.diag(prec[m, :, d])
            b = vec[m, :, d].copy()
            for t in range(T):
                r = np.zeros(T)  # s_t - sum_k a_k s_{t-k}
                r[t] = 1.0
                for k in range(1, min(t, 3) + 1):
                    r[t - k] = -a[m, t, d, k - 1]
                A += np.outer(r, r) / q[m, t, d]
                b += r * f[m, t, d] / q[m, t, d]
            cov = np.linalg.inv(A)
            means[m, :, d] = cov @ b
            covs[m, :, d] = np.diag(cov)
    return means, covs


@pytest.mark.parametrize("kind", ["first", "second", "gated"])
def test_smoother_equals_exact_gaussian_posterior(kind):
    """Whatever the forward pass's (approximate) variances, the smoother re-filters the
    linearised model exactly: its output is the dense posterior of that model."""
    rng = np.random.default_rng(0)
    forward, model = _forward_problem(kind, rng, gap=range(5, 11))
    sm, sc = lagged_smoother(*forward)
    exact_m, exact_c = _dense_posterior(*model)
    np.testing.assert_allclose(sm, exact_m, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(sc, exact_c, rtol=1e-8, atol=1e-11)
    assert not np.allclose(sm, forward[0])  # the detections after the gap moved the gap


def test_smoother_of_an_absolute_decoder_is_the_filter():
    """a = 0 (the decoder predicts absolute positions): nothing flows between frames."""
    rng = np.random.default_rng(1)
    forward, _ = _forward_problem("first", rng)
    means, covs, pm, pv, a, share = forward
    a = np.zeros_like(a)
    means, covs = _product(pm, pv, *_evidence(means, covs, pm, pv))
    sm, sc = lagged_smoother(means, covs, pm, pv, a, np.ones_like(share))
    np.testing.assert_allclose(sm, means, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sc, covs, rtol=1e-12)


def _evidence(means, covs, pm, pv):
    prec = 1.0 / covs - 1.0 / pv
    return means / covs - pm / pv, prec


def _product(pm, pv, vec, prec):
    """gaussian_product (diagonal, shape (M, D)) of (M, T, D) arrays."""
    flat = [a.reshape(-1, a.shape[-1]) for a in (pm, pv, vec, prec)]
    return tuple(a.reshape(pm.shape) for a in gaussian_product(*flat))


def test_smoother_passes_nothing_back_through_a_hopeless_gap():
    """A third-order chain without evidence for 400 frames: its predicted variance outgrows
    CUT_RATIO times its noise, the smoother stops there (the frames before the gap do not
    depend on the detections after it), and everything stays finite."""
    M, T, D = 2, 420, 1
    a = np.zeros((M, T, D, 3))
    a[:, 1, :, 0] = 1.0
    a[:, 2] = (2.0, -1.0, 0.0)
    a[:, 3:] = (3.0, -3.0, 1.0)
    pm, pv = np.zeros((M, T, D)), np.full((M, T, D), 1e-4)
    prec = np.zeros((M, T, D))
    prec[:, :10] = prec[:, -10:] = 1e4
    outs = []
    for shift in (0.0, 5.0):
        vec = prec * (np.linspace(0, 1, T)[None, :, None] + shift * (np.arange(T) >= T - 10)[
            None, :, None])
        means, covs = _product(pm, pv, vec, prec)
        outs.append(lagged_smoother(means, covs, pm, pv, a, np.ones((M, T, D))))
    for sm, sc in outs:
        assert np.all(np.isfinite(sm)) and np.all(np.isfinite(sc)) and np.all(sc > 0)
    np.testing.assert_array_equal(outs[0][0][:, :10], outs[1][0][:, :10])
    assert not np.allclose(outs[0][0][:, -10:], outs[1][0][:, -10:])


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


