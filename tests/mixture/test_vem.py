"""The VEM engine: E-S against an independent Kalman filter, the bound, the options."""

import numpy as np
import pytest

from mixest.mixture._dynamics import (
    ConstantVelocityDynamics,
    SourceDynamics,
    gaussian_product,
)
from mixest.mixture._vem import e_step_s, evidence, initial_means, run_vem
from mixest.tracking._tracker import box_noise


def _linear_tracks(rng, B, T, N, D=2):
    start = rng.uniform(0.2, 0.8, (B, 1, N, D))
    vel = rng.normal(0, 0.01, (B, 1, N, D))
    return start + vel * np.arange(T)[None, :, None, None]


def test_gaussian_product_full_matches_diagonal():
    rng = np.random.default_rng(0)
    mean, var = rng.normal(size=(5, 3)), rng.uniform(0.1, 1, (5, 3))
    iv, ip = rng.normal(size=(5, 3)), rng.uniform(0, 2, (5, 3))
    m1, s1 = gaussian_product(mean, var, iv, ip)
    m2, s2 = gaussian_product(mean, var[:, :, None] * np.eye(3), iv, ip[:, :, None] * np.eye(3))
    np.testing.assert_allclose(m1, m2, atol=1e-12)
    np.testing.assert_allclose(s1, np.diagonal(s2, axis1=1, axis2=2), atol=1e-12)


def test_e_step_s_equals_filterpy_kalman_filter(filterpy_cv):
    """Linear-Gaussian dynamics, fixed assignments: E-S is a Kalman filter."""
    rng = np.random.default_rng(0)
    B, T, K, N, D = 2, 12, 3, 2, 2
    obs = _linear_tracks(rng, B, T, K, D) + rng.normal(0, 0.01, (B, T, K, D))
    obs[rng.random((B, T, K)) < 0.3] = np.nan
    valid = ~np.isnan(obs).any(-1)
    phi = rng.uniform(1e-4, 4e-4, (B, T, K, D))
    eta = rng.dirichlet(np.ones(N), size=(B, T, K)) * valid[..., None]
    iv, ip = evidence(obs, valid, phi, eta)
    dyn = ConstantVelocityDynamics(position_noise=1e-4, velocity_noise=1e-5,
                                   initial_position_var=0.05, initial_velocity_var=1e-3)
    m_first = rng.uniform(0, 1, (B, N, D))
    means, covs, _, _ = e_step_s(dyn, iv, ip, m_first)

    for b in range(B):
        for n in range(N):
            kf = filterpy_cv(m_first[b, n], 1e-4, 1e-5, 0.05, 1e-3)
            for t in range(T):
                if t > 0:
                    kf.predict()
                lam = ip[b, t, n]
                if np.all(lam > 1e-12):
                    kf.update(iv[b, t, n] / lam, R=np.diag(1.0 / lam))
                np.testing.assert_allclose(means[b, t, n], kf.x[:D], rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(covs[b, t, n], np.diag(kf.P[:D, :D]), rtol=1e-9)


def _mixture(rng, B=6, T=30, N=3):
    from mixest.datasets import make_tracking_mixture

    X, y = make_tracking_mixture(B, N, T, jitter=0.04, miss_prob=0.1, random_state=0)
    return X, y


def test_bound_non_decreasing_with_fixed_predictions():
    """Deterministic steps that each maximise the bound: E-W and E-S are exact coordinate ascent
    when the dynamics' predictions do not depend on the means (here a static prior)."""

    class Static(SourceDynamics):
        def begin(self, m0):
            return None

        def predict(self, state, t):
            return self._mu[:, t], np.full_like(self._mu[:, t], 1e-3), state

        def infer_latents(self, means, rng):
            if not hasattr(self, "_mu"):
                self._mu = means.copy()

    rng = np.random.default_rng(0)
    X, _ = _mixture(rng)
    res = run_vem(X, Static(), n_sources=3, phi=box_noise(X, 0.04), max_iter=15, tol=0.0,
                  init="first-frame")
    diffs = np.diff(res.history, axis=0)
    assert np.all(diffs >= -1e-9 * np.abs(res.history[1:]))


def test_run_vem_options_and_best_iterate():
    rng = np.random.default_rng(0)
    X, y = _mixture(rng)
    phi = box_noise(X, 0.04)
    for init in ("filter", "first-frame", "chunked"):
        res = run_vem(X, ConstantVelocityDynamics(), n_sources=3, phi=phi, max_iter=4,
                      init=init, chunk_size=10, n_init_iter=2, clutter=True,
                      update_phi=True, update_pi=True)
        assert res.means.shape == y.shape
        assert res.eta.shape == X.shape[:3] + (4,)
        assert np.isfinite(res.lower_bound).all()
        best = res.history[res.best_iter, np.arange(len(res.best_iter))]
        np.testing.assert_allclose(best, res.lower_bound)
    with pytest.raises(ValueError, match="init"):
        run_vem(X, ConstantVelocityDynamics(), n_sources=3, phi=phi, init="nope")


def test_full_phi_path_matches_diagonal():
    rng = np.random.default_rng(0)
    X, _ = _mixture(rng, B=3, T=15)
    phi = box_noise(X, 0.04)

    class RandomWalk(SourceDynamics):
        def begin(self, m0):
            return m0

        def predict(self, state, t):
            v = np.full(state.shape, 1e-3) if state.ndim == 2 else None
            return state, v, state

        def observe(self, state, t, m, sigma):
            return m

    kw = dict(n_sources=3, max_iter=3, tol=0.0, init="first-frame")
    a = run_vem(X, RandomWalk(), phi=phi, **kw)
    b = run_vem(X, RandomWalk(), phi=phi[..., :, None] * np.eye(4), **kw)
    np.testing.assert_allclose(a.means, b.means, atol=1e-9)
    np.testing.assert_allclose(a.lower_bound, b.lower_bound, rtol=1e-9)


def test_initial_means_uses_first_full_frame():
    obs = np.full((1, 3, 3, 2), np.nan)
    obs[0, 0, 0] = [0.1, 0.1]
    obs[0, 1] = [[0.2, 0.2], [np.nan, np.nan], [0.4, 0.4]]
    obs[0, 2, :2] = [[0.5, 0.5], [0.6, 0.6]]
    m0, t0 = initial_means(obs, ~np.isnan(obs).any(-1), 2)
    assert t0[0] == 1
    np.testing.assert_allclose(m0[0], [[0.2, 0.2], [0.4, 0.4]])


def test_exclusive_assignments_balance_frames():
    from mixest.mixture import exclusive_assignments

    rng = np.random.default_rng(0)
    eta = rng.dirichlet(np.ones(4), size=(3, 5, 6))  # (B, T, K, N + clutter)
    eta[:, :, -1] = 0.0  # a missing detection
    out = exclusive_assignments(eta, 3, n_iter=50)
    np.testing.assert_allclose(out[:, :, :-1].sum(-1), 1.0, atol=1e-12)
    assert np.all(out[:, :, -1] == 0)
    assert np.all(out[..., :3].sum(2) <= 1.0 + 0.05)  # each source ~ at most one detection
    # two detections near one source: balancing hands one of them to the other source
    two = np.array([[[[0.9, 0.1], [0.9, 0.1]]]])
    bal = exclusive_assignments(two, 2, n_iter=100)
    np.testing.assert_allclose(bal[0, 0].sum(0), [1.0, 1.0], atol=0.05)


def test_run_vem_exclusive_option():
    rng = np.random.default_rng(0)
    X, y = _mixture(rng)
    res = run_vem(X, ConstantVelocityDynamics(), n_sources=3, phi=box_noise(X, 0.04),
                  max_iter=3, exclusive=True)
    assert res.means.shape == y.shape
    np.testing.assert_allclose(res.eta.sum(-1), (~np.isnan(X).any(-1)).astype(float),
                               atol=1e-9)


def test_filter_init_matches_one_to_one_and_keeps_close_objects_apart():
    """Two objects side by side, a third far away, detections shuffled with misses: the
    initialisation gives every object its own source (soft assignments merged the close
    pair in some sequences)."""
    from mixest.mixture._vem import _filter_init, _predictive_match

    rng = np.random.default_rng(3)
    B, T, N, D = 8, 40, 3, 2
    truth = np.empty((B, T, N, D))
    truth[:, :, 0] = [0.30, 0.5]
    truth[:, :, 1] = [0.32, 0.5]  # 2.5 noise std from object 0
    truth[:, :, 2] = [0.80, 0.2]
    obs = truth + rng.normal(0, 0.008, truth.shape)
    obs[rng.random((B, T, N)) < 0.3] = np.nan
    perm = np.argsort(rng.random((B, T, N)), axis=-1)
    obs = np.take_along_axis(obs, perm[..., None], 2)
    valid = ~np.isnan(obs).any(-1)
    phi = np.full(obs.shape, 0.008**2)
    log_prior = np.full((B, N), -np.log(N))
    m0, _ = initial_means(obs, valid, N)
    means, _ = _filter_init(obs, valid, phi, m0, log_prior, 0.0, 1.0, None)
    # every object is nearest to a different source over the second half
    dist = np.linalg.norm(means[:, T // 2:, :, None] - truth[:, T // 2:, None], axis=-1)
    owner = dist.mean(1).argmin(1)  # (B, N objects) -> source
    assert all(len(set(o)) == N for o in owner)
    # one frame: a source never takes two detections, and clutter takes the outlier
    o = np.array([[[0.30, 0.5], [0.32, 0.5], [5.0, 5.0]]])
    eta = _predictive_match(o, np.ones((1, 3), bool), np.full((1, 3, 2), 1e-4),
                            np.array([[[0.30, 0.5], [0.32, 0.5]]]), np.full((1, 2, 2), 1e-4),
                            np.log([[0.45, 0.45, 0.1]]), 0.0, 1.0)
    np.testing.assert_array_equal(eta[0], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])


def test_tol_zero_runs_exactly_max_iter_iterations():
    """Benchmarks force the iteration count with tol=0, even when every bound dips."""
    from mixest import MixDVAETracker
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(4, 3, 150, jitter=0.08, miss_prob=0.3, shuffle=True,
                                 random_state=0)
    est = MixDVAETracker(3, box_format="xyxy", image_size=(1, 1)).fit(X)
    r = run_vem(X, est._dynamics(), n_sources=3, phi=box_noise(X, 0.08), max_iter=6, tol=0.0)
    assert r.n_iter == 6 and len(r.history) == 6
    assert np.all(r.history[r.best_iter, np.arange(4)] == r.lower_bound)
