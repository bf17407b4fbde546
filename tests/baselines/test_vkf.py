"""VKFTracker: its E-S step is a Kalman smoother fed with pseudo-observations."""

from __future__ import annotations

import numpy as np
import pytest

from mixest.baselines import VKFTracker
from mixest.datasets import make_tracking_mixture
from mixest.mixture._kalman import (
    ConstantVelocityDynamics,
    constant_velocity_model,
    kalman_filter,
    kalman_smoother,
    kalman_update,
    kalman_update_information,
)
from mixest.tracking import box_noise


@pytest.mark.parametrize("full", [False, True])
def test_information_update_equals_pseudo_observation_update(full):
    rng = np.random.default_rng(0)
    M, D = 6, 4
    _, H, _ = constant_velocity_model(D, 0.1)
    A = rng.normal(size=(M, 2 * D, 2 * D))
    P = A @ np.swapaxes(A, -1, -2) + np.eye(2 * D)
    m = rng.normal(size=(M, 2 * D))
    if full:
        B = rng.normal(size=(M, D, D))
        lam = B @ np.swapaxes(B, -1, -2) + 0.1 * np.eye(D)
        R = np.linalg.solve(lam, np.broadcast_to(np.eye(D), lam.shape))
    else:
        lam = rng.uniform(0.5, 3.0, size=(M, D))
        R = np.eye(D) / lam[..., None, :]
    o_bar = rng.normal(size=(M, D))
    xi = np.einsum("mij,mj->mi", lam if full else lam[..., None] * np.eye(D), o_bar)
    got_m, got_P = kalman_update_information(m, P, xi, lam, H)
    want_m, want_P, _ = kalman_update(m, P, o_bar, R, H)
    np.testing.assert_allclose(got_m, want_m, atol=1e-10)
    np.testing.assert_allclose(got_P, want_P, atol=1e-10)
    # No evidence at all is a missing observation: the prior passes through unchanged.
    zero_m, zero_P = kalman_update_information(m, P, 0 * xi, 0 * lam, H)
    np.testing.assert_allclose(zero_m, m, atol=1e-14)
    np.testing.assert_allclose(zero_P, P, atol=1e-12)


@pytest.mark.parametrize("smooth", [True, False])
def test_one_source_without_clutter_equals_a_kalman_smoother(smooth):
    X, _ = make_tracking_mixture(3, n_sources=1, n_frames=30, miss_prob=0.2, random_state=0,
                                 box_format="xyxy", image_size=None)
    X[:, 0] = make_tracking_mixture(3, n_sources=1, n_frames=30, random_state=0,
                                    box_format="xyxy", image_size=None)[0][:, 0]
    # One VEM iteration from the first frame's detection: eta = 1 for every detection, so the
    # pseudo-observation is the detection itself and R = Phi.
    vkf = VKFTracker(
        n_sources=1, box_format="xyxy", image_size=(1, 1), max_iter=1, init="first-frame",
        process_noise=0.05, smooth=smooth, random_state=0,
    ).fit(X)
    tracks = vkf.predict(X)[:, :, 0]
    dyn = ConstantVelocityDynamics(process_noise=0.05)
    prior = dyn._as_matrices(dyn.begin(X[:, 0, 0]))  # the 2x2 blocks as (8, 8) matrices
    kw = dict(
        transition_matrix=dyn._F, observation_matrix=dyn._H, transition_covariance=dyn._Q,
        observation_covariance=box_noise(X, vkf.obs_noise)[:, :, 0, :, None] * np.eye(4),
        initial_mean=prior["x"], initial_covariance=prior["P"],
    )
    ref = kalman_smoother(X[:, :, 0], **kw) if smooth else kalman_filter(X[:, :, 0], **kw)
    np.testing.assert_allclose(tracks, ref.means[..., :4], rtol=0, atol=1e-10)
    eta = vkf.predict_assignments(X)
    np.testing.assert_array_equal(eta[..., 0], (~np.isnan(X).any(-1)) * 1.0)


def test_tracks_three_sources_and_contract():
    X, y = make_tracking_mixture(4, n_sources=3, n_frames=30, random_state=1,
                                 box_format="xyxy", image_size=None)
    vkf = VKFTracker(box_format="xyxy", image_size=(1, 1), random_state=0).fit(X)
    assert vkf.score(X, y) > 0.9
    # Pixel xywh input gives the same tracks, in pixels.
    from mixest.tracking import convert_boxes, denormalize_boxes

    size = (1920, 1080)
    px = VKFTracker(random_state=0).fit(denormalize_boxes(X, size, "xywh"))
    np.testing.assert_allclose(
        px.predict(denormalize_boxes(X, size, "xywh")),
        convert_boxes(denormalize_boxes(vkf.predict(X), size, "xyxy"), "xyxy", "xywh"),
        rtol=1e-6, atol=1e-6,
    )
    clutter = VKFTracker(box_format="xyxy", image_size=(1, 1), clutter=0.05).fit(X)
    eta = clutter.predict_assignments(X)
    assert eta.shape == X.shape[:3] + (4,)
    np.testing.assert_allclose(eta.sum(-1), (~np.isnan(X).any(-1)) * 1.0)


def test_learned_process_noise_and_filtering_only():
    X, y = make_tracking_mixture(3, n_sources=2, n_frames=30, random_state=2,
                                 box_format="xyxy", image_size=None)
    for kw in ({"learn_process_noise": True}, {"smooth": False}, {"init": "chunked"}):
        vkf = VKFTracker(n_sources=2, box_format="xyxy", image_size=(1, 1), max_iter=5, **kw)
        tracks = vkf.fit(X).predict(X)
        assert tracks.shape == y.shape and np.isfinite(tracks).all()


def test_process_noise_m_step_recovers_the_true_intensity():
    rng = np.random.default_rng(0)
    M, T, D, q_true = 40, 150, 2, 0.3
    F, H, Q = constant_velocity_model(D, q_true)
    x = np.zeros((M, 2 * D))
    states = []
    chol = np.linalg.cholesky(Q)
    for _ in range(T):  # simulate the model itself
        x = x @ F.T + rng.normal(size=(M, 2 * D)) @ chol.T
        states.append(x)
    Z = np.stack(states, 1)[..., :D] + 0.5 * rng.normal(size=(M, T, D))
    dyn = ConstantVelocityDynamics()
    dyn._F = F
    q2 = np.full((M, D), 0.05**2)  # a wrong start
    for _ in range(40):  # EM: smoother under the current q, then the M-step
        Qm = constant_velocity_model(D, np.sqrt(q2))[2]
        res = kalman_smoother(
            Z, transition_matrix=F, observation_matrix=H, transition_covariance=Qm,
            observation_covariance=0.25 * np.eye(D), initial_mean=np.zeros(2 * D),
            initial_covariance=np.eye(2 * D),
        )
        q2 = dyn._m_step_q2(res.means, res.covariances, res.cross_covariances)
    np.testing.assert_allclose(np.sqrt(q2.mean()), q_true, rtol=0.1)


def test_two_dimensional_points():
    rng = np.random.default_rng(0)
    T = 40
    t = np.arange(T)[:, None]
    y = np.stack([np.hstack([10 + 2.0 * t, 50 + 0 * t]), np.hstack([200 - 3.0 * t, 80 + t])], 1)
    X = y[None] + rng.normal(scale=0.5, size=(1, T, 2, 2))
    X[0, 5:9, 0] = np.nan
    # pixels in an image of 256 x 256: points are normalised by it, noise 0.5 px
    vkf = VKFTracker(n_sources=2, obs_noise=0.5 / 256, image_size=(256, 256),
                     random_state=0).fit(X)
    tracks = vkf.predict(X)
    assert tracks.shape == (1, T, 2, 2)
    # Source order is set by the first frame's detection order: compare up to a permutation.
    err = np.abs(tracks[0][:, :, None] - y[:, None]).max(axis=(0, 3))  # (source, object)
    assert min(err[0, 0] + err[1, 1], err[0, 1] + err[1, 0]) < 4.0
    with pytest.raises(ValueError, match="D = 3"):
        vkf.predict(np.zeros((1, 5, 2, 3)))
