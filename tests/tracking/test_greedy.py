"""The greedy nearest-neighbour floor."""

import numpy as np
import pytest

from mixest.baselines import GreedyTracker
from mixest.datasets import make_tracking_mixture


def test_greedy_is_nearly_perfect_on_easy_data():
    X, y = make_tracking_mixture(8, 3, 30, jitter=0.04, miss_prob=0.1, random_state=0,
                                 box_format="xyxy", image_size=None)
    tracker = GreedyTracker(3, box_format="xyxy").fit(X)
    tracks = tracker.predict(X)
    assert tracks.shape == y.shape
    assert tracker.score(X, y) > 0.9


def test_greedy_holds_unmatched_track_still():
    X = np.array([[[0.0, 0.0], [5.0, 5.0]], [[0.1, 0.1], [np.nan, np.nan]],
                  [[0.2, 0.2], [5.2, 5.2]]])[None]
    tracks = GreedyTracker(2).fit(X).predict(X)
    np.testing.assert_allclose(tracks[0, 1, 1], [5.0, 5.0])
    np.testing.assert_allclose(tracks[0, 2], [[0.2, 0.2], [5.2, 5.2]])


def test_greedy_follows_shuffled_detections():
    X = np.array([[[0.0, 0.0], [5.0, 5.0]], [[5.1, 5.1], [0.1, 0.1]]])[None]
    tracks = GreedyTracker(2).fit(X).predict(X)
    np.testing.assert_allclose(tracks[0, 1], [[0.1, 0.1], [5.1, 5.1]])


def test_greedy_rejects_bad_input():
    with pytest.raises(ValueError, match="infinite"):
        GreedyTracker(2).fit(np.full((1, 3, 2, 4), np.inf))
    with pytest.raises(ValueError):
        GreedyTracker(2).fit(np.zeros((3, 2, 4)))


def test_greedy_refuses_another_d_at_predict():
    X = np.random.default_rng(0).uniform(size=(1, 3, 2, 4))
    tracker = GreedyTracker(2).fit(X)
    with pytest.raises(ValueError, match="X has 2 features per detection, but GreedyTracker was "
                                         "fitted with 4"):
        tracker.predict(X[..., :2])


@pytest.mark.parametrize(
    ("box_format", "box", "match"),
    [
        ("xywh", [0.0, 0.0, -1.0, 1.0], "negative width or height"),
        ("xyxy", [2.0, 0.0, 1.0, 1.0], r"x2 < x1 or y2 < y1"),
    ],
)
def test_greedy_refuses_boxes_with_negative_size(box_format, box, match):
    X = np.random.default_rng(1).uniform(size=(1, 3, 2, 4))
    X[..., 2:] += X[..., :2] if box_format == "xyxy" else 0.0
    tracker = GreedyTracker(2, box_format=box_format).fit(X)
    bad = X.copy()
    bad[0, 1, 0] = box
    with pytest.raises(ValueError, match=match):
        GreedyTracker(2, box_format=box_format).fit(bad)
    with pytest.raises(ValueError, match=match):
        tracker.predict(bad)
    bad[0, 1, 0] = np.nan  # a missing box is not a negative one
    assert tracker.predict(bad).shape == (1, 3, 2, 4)
