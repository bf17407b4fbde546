"""The greedy nearest-neighbour floor."""

import numpy as np
import pytest

from mixest.baselines import GreedyTracker
from mixest.datasets import make_tracking_mixture


def test_greedy_is_nearly_perfect_on_easy_data():
    X, y = make_tracking_mixture(8, 3, 30, jitter=0.04, miss_prob=0.1, random_state=0)
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
