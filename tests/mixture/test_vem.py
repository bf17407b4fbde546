"""The VEM engine: E-S against an independent Kalman filter, a new observation model against a
Kalman smoother, the convergence warning, the default bound of a dynamics."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from mixest.mixture import ConstantVelocityDynamics, Dynamics, ObservationModel, run_vem
from mixest.mixture._dynamics import gaussian_product
from mixest.mixture._vem import e_step_s
from mixest.tracking import GaussianDetections
from mixest.tracking._observation import evidence


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
    dyn = ConstantVelocityDynamics(process_noise=0.01, initial_position_std=0.2,
                                   initial_velocity_std=0.03, smooth=False)
    m_first = rng.uniform(0, 1, (B, N, D))
    means, covs, _, _ = e_step_s(dyn, iv, ip, m_first)

    for b in range(B):
        for n in range(N):
            kf = filterpy_cv(m_first[b, n], 0.01, 0.2, 0.03)
            for t in range(T):
                if t > 0:
                    kf.predict()
                lam = ip[b, t, n]
                if np.all(lam > 1e-12):
                    kf.update(iv[b, t, n] / lam, R=np.diag(1.0 / lam))
                np.testing.assert_allclose(means[b, t, n], kf.x[:D], rtol=1e-9, atol=1e-12)
                np.testing.assert_allclose(covs[b, t, n], np.diag(kf.P[:D, :D]), rtol=1e-9)


class ScalarObservations(ObservationModel):
    """A toy observation model: every source is seen directly, y_tn = s_tn + noise (variance r),
    the assignments are known and NaN marks a missing observation."""

    def __init__(self, r):
        self.r = r

    def prepare(self, observations, n_sources):
        y = np.asarray(observations, dtype=float)  # (B, T, N, 1)
        return {"y": np.nan_to_num(y), "seen": ~np.isnan(y)}, {}

    def initialize(self, data, params, n_sources, dynamics, rng):
        first = data["y"][:, :1].repeat(data["y"].shape[1], 1)
        return first, np.full(first.shape, self.r)

    def e_w(self, data, params, means, covs):
        return data["seen"][..., 0].astype(float)  # known assignments: (B, T, N)

    def evidence(self, data, params, eta):
        w = eta[..., None] / self.r
        return w * data["y"], w

    def expected_log_likelihood(self, data, params, means, covs, eta):
        r, y = self.r, data["y"]
        terms = -0.5 * (np.log(2 * np.pi * r) + ((y - means) ** 2 + covs) / r)
        return (eta[..., None] * terms).reshape(len(y), -1).sum(1)

    def m_step(self, data, params, means, covs, eta):
        return params


def test_new_observation_model_gives_the_kalman_smoother(filterpy_cv):
    """Linear-Gaussian sources seen directly: one VEM iteration with constant-velocity dynamics
    is the RTS smoother of each source's observations (filterpy as the oracle)."""
    rng = np.random.default_rng(1)
    B, T, N, r = 3, 25, 2, 1e-3
    y = _linear_tracks(rng, B, T, N, D=1) + rng.normal(0, np.sqrt(r), (B, T, N, 1))
    y[rng.random((B, T, N)) < 0.2] = np.nan
    y[:, 0] = rng.uniform(0.2, 0.8, (B, N, 1))  # seen at the first frame (the initial guess)
    noise = dict(process_noise=0.003, initial_position_std=0.1, initial_velocity_std=0.01)
    res = run_vem(y, ScalarObservations(r), ConstantVelocityDynamics(smooth=True, **noise),
                  n_sources=N, max_iter=1, tol=0.0)
    for b in range(B):
        for n in range(N):
            kf = filterpy_cv(y[b, 0, n], *noise.values())
            zs = [None if np.isnan(v[0]) else v for v in y[b, :, n]]
            kf.R = np.array([[r]])
            kf.predict = _first_step_without_predict(kf)
            xs, ps, _, _ = kf.batch_filter(zs)
            xs, ps, _, _ = kf.rts_smoother(xs, ps)
            np.testing.assert_allclose(res.means[b, :, n, 0], xs[:, 0], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(res.covs[b, :, n, 0], ps[:, 0, 0], rtol=1e-9)
    assert res.eta.shape == (B, T, N) and res.converged.all()


def _first_step_without_predict(kf):
    """filterpy predicts before every update; the engine's first frame uses the initial prior."""
    predict, calls = kf.predict, []

    def wrapped(*args, **kwargs):
        calls.append(None)
        if len(calls) > 1:
            predict(*args, **kwargs)

    return wrapped


def test_convergence_warning_once_and_never_with_tol_zero():
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(4, 3, 40, jitter=0.08, miss_prob=0.3, random_state=0,
                                 box_format="xyxy", image_size=None)
    run = dict(observation_model=GaussianDetections(), dynamics=ConstantVelocityDynamics(),
               n_sources=3, max_iter=2)
    with pytest.warns(ConvergenceWarning, match="did not converge") as record:
        res = run_vem(X, tol=1e-12, **run)
    assert len(record) == 1 and not res.converged.all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert run_vem(X, tol=0.0, **run).converged.all()  # exactly max_iter was asked for


def test_tracker_warns_once_per_call():
    from mixest import MixDVAETracker
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(6, 3, 40, jitter=0.08, miss_prob=0.3, random_state=0,
                                 box_format="xyxy", image_size=None)
    est = MixDVAETracker(prior="constant-velocity", max_iter=2, tol=1e-12, batch_size=2,
                         box_format="xyxy", image_size=(1, 1)).fit(X)
    with pytest.warns(ConvergenceWarning) as record:
        est.predict(X)
    assert len([w for w in record if w.category is ConvergenceWarning]) == 1


def test_run_vem_refuses_bad_arguments():
    model, dyn = GaussianDetections(), ConstantVelocityDynamics()
    X = np.zeros((1, 3, 2, 4))
    with pytest.raises(ValueError, match="n_sources"):
        run_vem(X, model, dyn, n_sources=0)
    with pytest.raises(TypeError, match="random_state"):
        run_vem(X, model, dyn, n_sources=2, random_state="seed")
    with pytest.raises(ValueError, match="keep"):
        run_vem(X, model, dyn, n_sources=2, keep="first")


def test_keep_last_returns_the_last_iterate():
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(5, 3, 30, jitter=0.08, miss_prob=0.3, random_state=1,
                                 box_format="xyxy", image_size=None)
    run = dict(observation_model=GaussianDetections(), dynamics=ConstantVelocityDynamics(),
               n_sources=3, tol=0.0)
    last = run_vem(X, max_iter=6, keep="last", **run)
    assert (last.best_iter == 5).all()
    np.testing.assert_allclose(last.lower_bound, last.history[-1])
    # the sixth iterate: rerun 6 iterations and compare with the last one of 5 + 1
    again = run_vem(X, max_iter=6, keep="last", **run)
    np.testing.assert_array_equal(last.means, again.means)
    best = run_vem(X, max_iter=6, **run)
    for b in range(len(X)):  # where the sixth iterate was also the best, both agree
        if best.best_iter[b] == 5:
            np.testing.assert_array_equal(best.means[b], last.means[b])
        else:
            assert best.lower_bound[b] > last.lower_bound[b]


def test_keep_last_with_frozen_sequences_keeps_each_ones_last_iterate():
    """``keep="last"`` rebinds the state to the newest iterate while every sequence iterates and
    copies into it once some are frozen: each sequence still ends as it does alone."""
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(5, 3, 30, jitter=0.08, miss_prob=0.3, random_state=1,
                                 box_format="xyxy", image_size=None)
    run = dict(observation_model=GaussianDetections(), dynamics=ConstantVelocityDynamics(),
               n_sources=3, tol=1e-3, max_iter=30, keep="last")
    batch = run_vem(X, **run)
    assert len(set(batch.best_iter)) > 1  # frozen at different iterations
    for b in range(len(X)):
        alone = run_vem(X[b:b + 1], **run)
        assert alone.best_iter[0] == batch.best_iter[b]
        np.testing.assert_array_equal(batch.means[b], alone.means[0])
        np.testing.assert_array_equal(batch.covs[b], alone.covs[0])
        np.testing.assert_array_equal(batch.eta[b], alone.eta[0])


def test_bound_false_skips_the_bound_and_nothing_else():
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(4, 3, 20, jitter=0.08, miss_prob=0.3, random_state=2,
                                 box_format="xyxy", image_size=None)
    run = dict(observation_model=GaussianDetections(), dynamics=ConstantVelocityDynamics(),
               n_sources=3, max_iter=5, tol=0.0, keep="last")
    full, lean = run_vem(X, **run), run_vem(X, bound=False, **run)
    for name in ("means", "covs", "eta", "best_iter"):
        np.testing.assert_array_equal(getattr(lean, name), getattr(full, name))
    assert lean.n_iter == full.n_iter == 5
    assert lean.lower_bound is None and lean.history.size == 0
    assert full.history.shape == (5, 4)
    for bad in ({"tol": 1e-4}, {"keep": "best"}, {"verbose": True}):
        with pytest.raises(ValueError, match="bound=False"):
            run_vem(X, **{**run, **bad, "bound": False})


def test_default_bound_of_dynamics_full_matches_diagonal():
    rng = np.random.default_rng(0)
    m, pm = rng.normal(size=(2, 5, 3, 4)), rng.normal(size=(2, 5, 3, 4))
    c, pv = rng.uniform(0.1, 1, (2, 5, 3, 4)), rng.uniform(0.1, 1, (2, 5, 3, 4))
    diag = Dynamics().expected_log_prior(m, c, pm, pv)
    eye = np.eye(4)
    full = Dynamics().expected_log_prior(m, c[..., None] * eye, pm, pv[..., None] * eye)
    np.testing.assert_allclose(diag, full, rtol=1e-12)
