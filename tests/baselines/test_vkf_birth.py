"""VKFTracker's optional track birth (issue 5): new tracks from chains of unexplained detections."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from mixest.baselines import VKFTracker
from mixest.baselines._vkf import _iou
from mixest.datasets import make_tracking_mixture
from mixest.mixture import ConstantVelocityDynamics
from mixest.tracking._metrics import mota_score

T_ON = 20  # frame where the third object appears


def _appearing(n_sequences: int, seed: int = 0, n_frames: int = 50):
    """Three objects, the third one absent (no detection, no ground truth) before ``T_ON``."""
    X, y, labels = make_tracking_mixture(
        n_sequences, n_sources=3, n_frames=n_frames, clutter_rate=1.0, return_labels=True,
        random_state=seed, box_format="xyxy", image_size=None,
    )
    before = np.arange(n_frames)[None, :, None] < T_ON
    X = np.where(((labels == 2) & before)[..., None], np.nan, X)
    y = y.copy()
    y[:, :T_ON, 2] = np.nan
    return X, y


def _tracker(**kw) -> VKFTracker:
    return VKFTracker(**{"n_sources": 2, "clutter": 0.05, "box_format": "xyxy",
                         "image_size": (1, 1), **kw})


@pytest.fixture(scope="module")
def appearing():
    X, y = _appearing(6)
    plain = _tracker().fit(X)
    born = _tracker(birth=True).fit(X)
    return X, y, plain.predict(X), born, born.predict(X), born.predict_assignments(X)


def test_a_third_object_is_born_when_it_appears(appearing):
    X, y, plain, vkf, tracks, eta = appearing
    B, T, K, _ = X.shape
    assert tracks.shape == (B, T, 4, 4)  # max_sources = 2 * n_sources
    assert eta.shape == (B, T, K, 5)
    first = np.where(np.isnan(tracks[..., 0]).all(1), T, np.isnan(tracks[..., 0]).argmin(1))
    assert (vkf.n_births_ >= 1).all()
    iou = _iou(tracks, y[:, :, 2:3])[..., 0]  # (B, T, 4): overlap with the new object
    for b in range(B):  # one born track starts within birth_min_frames and follows it
        starts = first[b, 2:]
        ok = (starts >= T_ON) & (starts <= T_ON + vkf.birth_min_frames)
        follows = (iou[b, T_ON:, 2:] >= 0.5).mean(0) > 0.8
        assert (ok & follows).any(), (starts, follows)
    mota_plain = mota_score(y, plain, box_format="xyxy")
    mota_born = mota_score(y, tracks, box_format="xyxy")
    assert mota_born > mota_plain + 0.15, (mota_plain, mota_born)


def test_born_tracks_are_absent_before_their_birth(appearing):
    X, _, _, vkf, tracks, eta = appearing
    valid = ~np.isnan(X).any(-1)
    absent = np.isnan(tracks[..., 0])  # (B, T, N_max)
    # No responsibility where a track does not exist; every detection's row still sums to 1.
    assert np.all(np.where(absent[:, :, None, :], eta[..., :4], 0.0) == 0.0)
    np.testing.assert_allclose(eta.sum(-1), valid.astype(float), atol=1e-9)
    # Once born, a track exists to the end; unused columns are NaN throughout.
    assert not (absent[:, 1:] & ~absent[:, :-1]).any()
    n_tracks = 2 + vkf.n_births_
    assert np.all(absent[:, :, 2:].all(1) == (np.arange(2, 4)[None, :] >= n_tracks[:, None]))


def test_birth_works_in_pixels_and_other_box_formats():
    from mixest.tracking._boxes import denormalize_boxes

    X, _ = _appearing(2, seed=1, n_frames=40)
    ref = _tracker(birth=True).fit(X)
    want = ref.predict(X)
    size = (1920, 1080)
    Xp = denormalize_boxes(X, size, "xywh")
    vkf = VKFTracker(2, clutter=0.05, birth=True, box_format="xywh", image_size=size).fit(Xp)
    got = vkf.predict(Xp)
    np.testing.assert_array_equal(vkf.n_births_, ref.n_births_)
    np.testing.assert_allclose(got, denormalize_boxes(want, size, "xywh"), rtol=1e-6, atol=1e-6)


def test_pure_clutter_gives_no_birth():
    rng = np.random.default_rng(0)
    B, T, K = 6, 40, 4
    centre, wh = rng.uniform(0, 1, (B, T, K, 2)), rng.uniform(0.02, 0.2, (B, T, K, 2))
    X = np.concatenate([centre - wh / 2, centre + wh / 2], -1)
    X[rng.uniform(size=(B, T, K)) < 0.3] = np.nan
    vkf = VKFTracker(1, clutter=0.05, birth=True, box_format="xyxy", image_size=(1, 1)).fit(X)
    tracks = vkf.predict(X)
    np.testing.assert_array_equal(vkf.n_births_, 0)
    assert np.isnan(tracks[:, :, 1:]).all()
    plain = VKFTracker(1, clutter=0.05, box_format="xyxy", image_size=(1, 1)).fit(X).predict(X)
    np.testing.assert_array_equal(tracks[:, :, :1], plain)


def test_births_among_clutter_follow_real_objects():
    # Two objects tracked from the start amid clutter: any birth recovers a lost object.
    X, y = make_tracking_mixture(6, n_sources=2, n_frames=40, clutter_rate=2.0, random_state=5,
                                 box_format="xyxy", image_size=None)
    vkf = _tracker(birth=True).fit(X)
    tracks = vkf.predict(X)
    iou = _iou(tracks, y).max(-1)  # (B, T, N_max)
    for b in range(len(X)):
        for n in range(2, 2 + vkf.n_births_[b]):
            alive = ~np.isnan(tracks[b, :, n, 0])
            assert (iou[b, alive, n] >= 0.5).mean() > 0.8


def test_birth_off_is_the_fixed_n_tracker():
    X, _ = _appearing(3, n_frames=30)
    ref = _tracker()
    off = _tracker(birth=False, max_sources=5, birth_min_frames=4, birth_threshold=0.9)
    for est in (ref, off):
        est.fit(X)
    np.testing.assert_array_equal(off.predict(X), ref.predict(X))
    np.testing.assert_array_equal(off.predict_assignments(X), ref.predict_assignments(X))
    assert off.predict(X).shape == (3, 30, 2, 4)
    np.testing.assert_array_equal(off.n_births_, 0)
    # The cap at n_sources allows no birth: the fixed-N output, in the same shape.
    capped = _tracker(birth=True, max_sources=2).fit(X)
    np.testing.assert_array_equal(capped.predict(X), ref.predict(X))


@pytest.mark.parametrize(
    "params",
    [
        {"birth": "yes"},
        {"max_sources": 0},
        {"birth_min_frames": 1},
        {"birth_threshold": 0.0},
        {"birth_threshold": 1.5},
        {"birth_iou": 0.0},
        {"birth_iou": 1.2},
    ],
)
def test_bad_birth_parameters_raise(params):
    X, _ = make_tracking_mixture(1, n_sources=2, n_frames=10, random_state=0,
                                 box_format="xyxy", image_size=None)
    with pytest.raises(InvalidParameterError):
        _tracker(**params).fit(X)


def test_inconsistent_birth_settings_raise():
    X, _ = make_tracking_mixture(1, n_sources=2, n_frames=10, random_state=0,
                                 box_format="xyxy", image_size=None)
    with pytest.raises(ValueError, match="needs a clutter class"):
        VKFTracker(2, birth=True, clutter=0, box_format="xyxy", image_size=(1, 1)).fit(X)
    with pytest.raises(ValueError, match="at least n_sources"):
        _tracker(birth=True, max_sources=1).fit(X)
    with pytest.raises(ValueError, match="D = 4"):
        _tracker(birth=True, image_size=None).fit(X[..., :2])


def test_kalman_dynamics_source_absent_before_its_birth():
    M, D, T = 2, 4, 6
    box = np.array([0.4, 0.4, 0.5, 0.6])
    law_x = np.concatenate([box, np.full(D, 0.01)])
    dyn = ConstantVelocityDynamics(
        birth_frames=np.array([0, 3]),
        birth_means=np.stack([np.full(2 * D, np.nan), law_x]),
        birth_covs=np.broadcast_to(1e-4 * np.eye(2 * D), (M, 2 * D, 2 * D)).copy(),
    )
    state = dyn.begin(np.stack([box, box]))
    info_prec = np.full((M, D), 1e4)
    for t in range(T):
        mean, var, state = dyn.predict(state, t)
        if t < 3:  # flat prior, and the evidence (far from the box) is ignored
            np.testing.assert_allclose(var[1], ConstantVelocityDynamics.ABSENT_VAR)
        if t == 3:
            np.testing.assert_allclose(mean[1], box)
            np.testing.assert_allclose(var[1], 1e-4)
        m, s, state = dyn.update(state, t, mean, var, info_prec * (box + 0.2), info_prec)
        if t < 3:
            np.testing.assert_allclose(m[1], box)
    means, covs = dyn.smooth(np.zeros((M, T, D)), np.ones((M, T, D)), None, None)
    absent = ConstantVelocityDynamics.ABSENT_VAR
    np.testing.assert_allclose(covs[1, :3], absent)  # not smoothed back
    assert np.all(covs[1, 3:] < 1e-3)
    with pytest.raises(ValueError, match="birth_frames"):
        dyn.begin(np.zeros((3, D)))
