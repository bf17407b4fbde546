"""Detection simulation: jitter scale, miss rate, clutter rate, shuffling, formats."""

import numpy as np
import pytest

from mixest.tracking._boxes import convert_boxes
from mixest.tracking._detections import simulate_detections


def _tracks(n=50, T=40, N=3, seed=0):
    rng = np.random.RandomState(seed)
    left = rng.uniform(0, 1500, (n, 1, N, 1)) + np.arange(T)[None, :, None, None]
    top = rng.uniform(0, 800, (n, 1, N, 1)) * np.ones((1, T, 1, 1))
    w = rng.uniform(20, 100, (n, 1, N, 1)) * np.ones((1, T, 1, 1))
    h = 2.5 * w
    return np.concatenate([left * np.ones((1, T, 1, 1)), top, w, h], axis=-1)


def test_jitter_is_proportional_to_box_size():
    tracks = _tracks()
    obs = simulate_detections(tracks, jitter=0.05, miss_prob=0.0, random_state=0)
    err = convert_boxes(obs, "xywh", "xyxy") - convert_boxes(tracks, "xywh", "xyxy")
    w, h = tracks[..., 2], tracks[..., 3]
    for col, size in [(0, w), (2, w), (1, h), (3, h)]:
        z = err[..., col] / size
        assert abs(z.std() - 0.05) < 0.003
        assert abs(z.mean()) < 0.003


def test_miss_probability_and_labels():
    tracks = _tracks(n=200)
    obs, labels = simulate_detections(
        tracks, jitter=0.0, miss_prob=0.3, return_labels=True, random_state=1
    )
    missing = np.isnan(obs).any(-1)
    assert abs(missing.mean() - 0.3) < 0.01
    assert np.array_equal(missing, labels == -2)
    kept = ~missing
    np.testing.assert_allclose(obs[kept], tracks[kept])


def test_clutter_rate_and_shuffle_keep_the_detections():
    tracks = _tracks(n=100)
    obs, labels = simulate_detections(
        tracks, jitter=0.0, miss_prob=0.0, clutter_rate=2.0, shuffle=True,
        image_size=(1920, 1080), return_labels=True, random_state=2,
    )
    assert obs.shape[2] > 3
    assert abs((labels == -1).sum(-1).mean() - 2.0) < 0.1
    # Every true box is still present exactly once, somewhere in its frame.
    for n_ in range(3):
        idx = np.argmax(labels == n_, axis=-1)
        found = np.take_along_axis(obs, idx[..., None, None], axis=2)[:, :, 0]
        np.testing.assert_allclose(found, tracks[:, :, n_])
    clutter = obs[labels == -1]
    assert np.all(clutter[:, :2] >= 0) and np.all(clutter[:, 0] + clutter[:, 2] <= 1920 + 1e-9)
    # Shuffling moves true detections off their source's row.
    assert np.mean(labels[..., :3] == np.arange(3)) < 0.9


def test_absent_tracks_give_no_detection_and_seed_reproduces():
    tracks = _tracks(n=5)
    tracks[:, 10:20, 1] = np.nan
    a = simulate_detections(tracks, random_state=3)
    assert np.isnan(a[:, 10:20, 1]).all()
    np.testing.assert_array_equal(a, simulate_detections(tracks, random_state=3))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"jitter": -0.1}, ValueError, "jitter"),
        ({"miss_prob": 1.5}, ValueError, "miss_prob"),
        ({"clutter_rate": float("inf")}, ValueError, "clutter_rate"),
        ({"box_format": "ltrb"}, ValueError, "src"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_detections(_tracks(n=2), **kwargs)


def test_bad_tracks():
    with pytest.raises(ValueError, match="tracks"):
        simulate_detections(np.zeros((3, 4)))
    bad = _tracks(n=2)
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        simulate_detections(bad)
