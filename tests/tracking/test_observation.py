"""GaussianDetections, tracking's observation model of the VEM engine: the bound, the options,
the initialisations, the one-to-one matching."""

import numpy as np
import pytest

from mixest.mixture import ConstantVelocityDynamics, Dynamics, run_vem
from mixest.tracking import GaussianDetections, box_noise
from mixest.tracking._observation import _predictive_match, initial_means


def _mixture(rng, B=6, T=30, N=3):
    from mixest.datasets import make_tracking_mixture

    X, y = make_tracking_mixture(B, N, T, jitter=0.04, miss_prob=0.1, random_state=0,
                                 box_format="xyxy", image_size=None)
    return X, y


def test_bound_non_decreasing_with_fixed_predictions():
    """Deterministic steps that each maximise the bound: E-W and E-S are exact coordinate ascent
    when the dynamics' predictions do not depend on the means (here a static prior)."""

    class Static(Dynamics):
        def begin(self, m0):
            return None

        def predict(self, state, t):
            return self._mu[:, t], np.full_like(self._mu[:, t], 1e-3), state

        def infer_latents(self, means, rng, covs=None):
            if not hasattr(self, "_mu"):
                self._mu = means.copy()

    rng = np.random.default_rng(0)
    X, _ = _mixture(rng)
    res = run_vem(X, GaussianDetections(init="first-frame"), Static(), n_sources=3,
                  max_iter=15, tol=0.0)
    diffs = np.diff(res.history, axis=0)
    assert np.all(diffs >= -1e-9 * np.abs(res.history[1:]))


def test_run_vem_options_and_best_iterate():
    rng = np.random.default_rng(0)
    X, y = _mixture(rng)
    for init in ("filter", "first-frame", "chunked"):
        model = GaussianDetections(init=init, clutter=0.05, update_noise=True,
                                   update_weights=True)
        res = run_vem(X, model, ConstantVelocityDynamics(), n_sources=3, max_iter=4, tol=0.0)
        assert res.means.shape == y.shape
        assert set(res.params) == {"phi", "log_prior"}
        assert not np.allclose(res.params["phi"], box_noise(X, 0.04))  # the M-step ran
        assert res.eta.shape == X.shape[:3] + (4,)
        assert np.isfinite(res.lower_bound).all()
        best = res.history[res.best_iter, np.arange(len(res.best_iter))]
        np.testing.assert_allclose(best, res.lower_bound)
    with pytest.raises(ValueError, match="init"):
        GaussianDetections(init="nope")
    with pytest.raises(ValueError, match="clutter"):
        GaussianDetections(clutter=True)
    with pytest.raises(ValueError, match="phi"):
        run_vem((X, np.ones(3)), GaussianDetections(), ConstantVelocityDynamics(), n_sources=3)


def test_full_phi_path_matches_diagonal():
    rng = np.random.default_rng(0)
    X, _ = _mixture(rng, B=3, T=15)
    phi = box_noise(X, 0.04)

    class RandomWalk(Dynamics):
        def begin(self, m0):
            return m0

        def predict(self, state, t):
            v = np.full(state.shape, 1e-3) if state.ndim == 2 else None
            return state, v, state

        def observe(self, state, t, m, sigma):
            return m

    kw = dict(n_sources=3, max_iter=3, tol=0.0)
    model = GaussianDetections(init="first-frame")
    a = run_vem((X, phi), model, RandomWalk(), **kw)
    b = run_vem((X, phi[..., :, None] * np.eye(4)), model, RandomWalk(), **kw)
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


def test_filter_init_matches_one_to_one_and_keeps_close_objects_apart():
    """Two objects side by side, a third far away, detections shuffled with misses: the
    initialisation gives every object its own source (soft assignments merged the close
    pair in some sequences)."""
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
    means, _ = GaussianDetections()._filter_init(obs, valid, phi, m0, log_prior,
                                                np.zeros(valid.shape))
    # every object is nearest to a different source over the second half
    dist = np.linalg.norm(means[:, T // 2:, :, None] - truth[:, T // 2:, None], axis=-1)
    owner = dist.mean(1).argmin(1)  # (B, N objects) -> source
    assert all(len(set(o)) == N for o in owner)
    # one frame: a source never takes two detections, and clutter takes the outlier
    o = np.array([[[0.30, 0.5], [0.32, 0.5], [5.0, 5.0]]])
    eta, cost = _predictive_match(o, np.ones((1, 3), bool), np.full((1, 3, 2), 1e-4),
                            np.array([[[0.30, 0.5], [0.32, 0.5]]]), np.full((1, 2, 2), 1e-4),
                            np.log([[0.45, 0.45, 0.1]]), 0.0, 1.0)
    np.testing.assert_array_equal(eta[0], [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    # its cost: -log pi - log N(o; mu, phi + V) of both sources' detections, -log pi_c for clutter
    p = 2e-4
    expected = 2 * (-np.log(0.45) + np.log(2 * np.pi * p)) - np.log(0.1)
    np.testing.assert_allclose(cost, [expected])


def _hidden_pedestrian(T):
    """One sequence ``(T, 3, 4)``: a pedestrian's box (given in frame 0, undetected in frames
    1-3, detected again from frame 4) with a neighbour's box a third of its height away and a
    far box in every later frame; and the pedestrian's box."""
    target = np.array([0.50, 0.40, 0.52, 0.50])
    obs = np.full((T, 3, 4), np.nan)
    obs[0, 0] = target
    obs[1:, 1] = [0.501, 0.376, 0.521, 0.458]
    obs[1:, 2] = [0.10, 0.60, 0.12, 0.70]
    obs[4:, 0] = target
    return obs, target


def _filter_means(obs, init_dynamics=None, init="filter"):
    """The one-source initialisation's means ``(B, T, 4)`` (the ``"filter"`` one)."""
    model = GaussianDetections(init=init, init_dynamics=init_dynamics)
    data, params = model.prepare(obs, 1)
    return model.initialize(data, params, 1, None, None)[0][:, :, 0]


def test_filter_init_holds_a_hidden_object_off_its_neighbours_box():
    """A pedestrian (known first box) is undetected for 3 frames while a neighbour's box lies
    a third of its height away: the default, slow initialisation waits and takes the pedestrian
    back; the VKF's looser model (0.02, 0.1) jumps onto the neighbour at once and stays there."""
    obs, target = _hidden_pedestrian(12)
    default = np.abs(_filter_means(obs[None])[0] - target).max(-1)
    loose = np.abs(_filter_means(obs[None], ConstantVelocityDynamics(
        process_noise=0.02, initial_velocity_std=0.1, smooth=False))[0] - target).max(-1)
    assert default.max() < 1e-3
    assert (loose[1:] > 0.03).all()


def test_tracklet_init_holds_the_hidden_pedestrian_too():
    """The same scene under the default ``init="auto"`` (frames 1-3 hold more boxes than
    sources: the tracklets). The neighbour's box (IoU 0.43 with the pedestrian's) starts a
    tracklet of its own right after the pedestrian's ends, but the pedestrian's own, back four
    frames later at the same place, is the closer continuation; the box holds still through
    the gap, as sure as its detection."""
    obs, target = _hidden_pedestrian(12)
    model = GaussianDetections()
    data, params = model.prepare(obs[None], 1)
    means, covs = model.initialize(data, params, 1, None, None)
    np.testing.assert_allclose(means[0, :, 0], np.broadcast_to(target, (12, 4)), atol=1e-12)
    w, h = target[2] - target[0], target[3] - target[1]
    np.testing.assert_allclose(covs[0, 0, 0], (0.04 * np.array([w, h, w, h])) ** 2)


def test_filter_init_keeps_the_likelier_pass_per_sequence():
    """Two sequences in one batch: an object moving its width every frame, detected alone (the
    slow model loses it, the fast one follows it), and a still one next to a
    neighbour's box (as above: the slow model holds it; with clutter in every frame the slow
    pass is kept): each sequence keeps its own pass."""
    T = 12
    box = np.array([0.20, 0.40, 0.23, 0.50])
    obs = np.full((2, T, 3, 4), np.nan)
    obs[0, :, 0] = box + np.array([0.03, 0, 0.03, 0]) * np.arange(T)[:, None]
    obs[1], target = _hidden_pedestrian(T)
    truth = np.stack([obs[0, :, 0], np.broadcast_to(target, (T, 4))])
    errors = np.abs(_filter_means(obs) - truth).max((1, 2))
    assert errors[0] < 0.005 and errors[1] < 1e-3
    for q, v in ((0.002, 0.01), (0.02, 0.1)):  # each model alone fails one of them
        alone = _filter_means(obs, ConstantVelocityDynamics(
            process_noise=q, initial_velocity_std=v, smooth=False))
        assert np.abs(alone - truth).max() > 0.02


def test_tol_zero_runs_exactly_max_iter_iterations():
    """Benchmarks force the iteration count with tol=0, even when every bound dips."""
    from mixest import MixDVAETracker
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(4, 3, 150, jitter=0.08, miss_prob=0.3, shuffle=True,
                                 random_state=0, box_format="xyxy", image_size=None)
    est = MixDVAETracker(3, box_format="xyxy", image_size=(1, 1)).fit(X)
    r = run_vem(X, GaussianDetections(0.08), est._dynamics(), n_sources=3, max_iter=6, tol=0.0)
    assert r.n_iter == 6 and len(r.history) == 6
    assert np.all(r.history[r.best_iter, np.arange(4)] == r.lower_bound)


def test_auto_clutter_prior_counts_the_extra_detections():
    """``clutter="auto"``: in a sequence with some frame of K_t > N detections, a detection is
    clutter with prior max((K_t - N)^+ / K_t, the sequence's share sum (K_t - N)^+ / sum K_t),
    always when the box is outside the image (which K_t does not count); in a sequence without
    such a frame, never. The bound equals the one written with those priors."""
    from mixest.tracking._observation import expected_log_likelihood_numpy

    rng = np.random.default_rng(0)
    N, T, K = 2, 4, 5
    obs = np.tile([0.4, 0.4, 0.45, 0.5], (2, T, K, 1)) + rng.normal(0, 0.01, (2, T, K, 4))
    counts = np.array([[1, 2, 3, 5], [1, 2, 2, 1]])  # detections per frame; the second: clean
    obs[np.arange(K)[None, None, :] >= counts[..., None]] = np.nan
    obs[0, 3, 4] = [1.2, 0.1, 1.3, 0.3]  # entirely right of the image
    model = GaussianDetections()
    data, params = model.prepare(obs, N)
    inside = counts - [[0, 0, 0, 1], [0, 0, 0, 0]]  # K_t leaves the outside box out
    extra = np.maximum(inside - N, 0)
    share = extra.sum(1, keepdims=True) / inside.sum(1, keepdims=True)  # 3/10 and 0
    pi_c = np.maximum(extra / inside, share)[..., None]
    assert pi_c[0, 0, 0] == 3 / 10 and pi_c[0, 2, 0] == 1 / 3 and pi_c[0, 3, 0] == 1 / 2
    # the sources' log prior is log(1/N) and the clutter score holds logit(pi_c)
    lp = params["log_prior"]
    np.testing.assert_allclose(lp[:, :N], -np.log(N))
    assert np.all(lp[:, N] == 0.0)
    score = data["log_clutter"]
    expected = np.log(pi_c[0] / (1 - pi_c[0]))
    np.testing.assert_allclose(score[0, :3, :3], np.broadcast_to(expected[:3], (3, 3)))
    np.testing.assert_allclose(score[0, 3, :4], expected[3, 0])
    assert (score[1] <= -1000).all() and score[0, 3, 4] >= 1000
    # E-W: the prior as written, (1 - pi_c) / N per source and pi_c for clutter
    means = np.array([0.4, 0.4, 0.45, 0.5]) + rng.normal(0, 0.003, (2, T, N, 4))
    covs = np.full((2, T, N, 4), 1e-6)
    eta = model.e_w(data, params, means, covs)
    ref_prior = np.concatenate([np.repeat((1 - pi_c)[..., None] / N, N, -1),
                                pi_c[..., None]], -1)
    ref_prior = np.broadcast_to(ref_prior, (2, T, K, N + 1)).copy()
    ref_prior[0, 3, 4] = [0, 0, 1]
    valid = data["valid"]
    assert eta[0, 3, 4, N] == 1.0 and np.all(eta[1, :, :, N] == 0.0)
    lik = model_likelihoods(obs, valid, params["phi"], means, covs)
    for frame in range(T):  # clutter vs sources at the written prior odds
        k = inside[0, frame]  # the boxes inside the image come first
        written = np.concatenate([lik[0, frame, :k] * (1 - pi_c[0, frame]) / N,
                                  np.full((k, 1), pi_c[0, frame, 0])], -1)
        np.testing.assert_allclose(eta[0, frame, :k], written / written.sum(-1, keepdims=True),
                                   rtol=1e-9)
    # the bound: the observation term written with the true priors (finite)
    bound = model.expected_log_likelihood(data, params, means, covs, eta)
    prior = np.log(np.maximum(ref_prior, 1e-300))
    direct = expected_log_likelihood_numpy(obs, valid, params["phi"], means, covs, eta,
                                           np.zeros((2, N + 1)), 0.0)
    correction = (eta * np.where(eta > 0, prior, 0.0)).sum((1, 2, 3))
    np.testing.assert_allclose(bound, direct + correction, rtol=1e-10)


def model_likelihoods(obs, valid, phi, means, covs):
    """exp(log N(o; m, phi) - tr(phi^-1 Sigma) / 2) per detection and source (diagonal)."""
    o = np.where(valid[..., None], obs, 0.0)
    p = np.where(valid[..., None], phi, 1.0)
    quad = ((o[:, :, :, None] - means[:, :, None]) ** 2 + covs[:, :, None]) / p[:, :, :, None]
    return np.exp(-0.5 * (4 * np.log(2 * np.pi) + np.log(p).sum(-1))[..., None]
                  - 0.5 * quad.sum(-1))


def test_an_outlier_box_moves_no_track():
    """One absurd box (1e12 pixels) added to a frame or in place of a missed detection changes
    no track with the default clutter rule; without a clutter class it drags tracks."""
    from mixest import MixDVAETracker
    from mixest.baselines import VKFTracker
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(3, 3, 60, random_state=0)
    K = X.shape[2]
    Xo = np.concatenate([X, np.full(X.shape[:2] + (1, 4), np.nan)], 2)
    Xo[:, 30, K] = [1e12, 1e12, 50.0, 100.0]  # an extra row
    missed = np.argwhere(np.isnan(X[..., 0]))
    b, t, k = missed[missed[:, 1] > 5][0]
    Xo[b, t, k] = [-1e12, 3e12, 80.0, 200.0]  # in place of a miss
    for make in (lambda **kw: MixDVAETracker(3, prior="constant-velocity", **kw),
                 lambda **kw: VKFTracker(3, **kw)):
        clean = make(random_state=0).fit(X).predict(X)
        with_outlier = make(random_state=0).fit(Xo).predict(Xo)
        np.testing.assert_allclose(with_outlier, clean, rtol=1e-9, atol=1e-6)
        dragged = make(clutter=0, random_state=0).fit(Xo).predict(Xo)
        assert not np.isfinite(dragged).all() or np.abs(dragged - clean).max() > 100
