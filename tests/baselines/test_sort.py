"""SORTTracker: behaviour on easy constant-velocity scenes and the tracker contract."""

from __future__ import annotations

import numpy as np
import pytest

from mixest.baselines import SORTTracker
from mixest.tracking import mot_metrics
from mixest.tracking._detections import simulate_detections


def _two_objects(T=40, n=2, seed=0):
    """Two well-separated constant-velocity boxes in pixels (xywh), crossing the image."""
    t = np.arange(T)[:, None]
    a = np.hstack([200 + 6.0 * t, 300 + 1.0 * t, np.full((T, 1), 60), np.full((T, 1), 150)])
    b = np.hstack([1500 - 5.0 * t, 500 - 2.0 * t, np.full((T, 1), 80), np.full((T, 1), 200)])
    y = np.repeat(np.stack([a, b], axis=1)[None], n, axis=0)
    return y


def test_tracks_two_separated_constant_velocity_objects_perfectly():
    y = _two_objects()
    X = simulate_detections(y, jitter=0.02, miss_prob=0.2, shuffle=True, random_state=0)
    sort = SORTTracker(n_sources=2, random_state=0).fit(X)
    tracks = sort.predict(X)
    assert tracks.shape == y.shape
    # Identities are fixed by the (shuffled) first frame, so compare up to a permutation.
    m = mot_metrics(y, tracks).loc["OVERALL"]
    assert m["MOTA"] == 1.0 and m["IDs"] == 0 and m["IDF1"] == 1.0
    assert sort.score(X, y) == 1.0
    # Noise-free detections are reproduced to the pixel (the filter follows a CV motion exactly).
    exact = SORTTracker(n_sources=2, obs_noise=1e-4).fit(y).predict(y)
    np.testing.assert_allclose(exact, y, atol=0.5)


def test_holds_unmatched_tracks_and_births_late_tracks():
    y = _two_objects(T=20, n=1)
    X = y.copy()
    X[0, 0, 1] = np.nan  # the second object is missed in the first frame: born at t = 1
    X[0, 5:8, 0] = np.nan  # the first is missed for three frames: it coasts
    sort = SORTTracker(n_sources=2, obs_noise=1e-4).fit(X)
    tracks = sort.predict(X)
    assert np.isnan(tracks[0, 0, 1]).all() and not np.isnan(tracks[0, 1:]).any()
    np.testing.assert_allclose(tracks[0, 5:8, 0], y[0, 5:8, 0], atol=0.5)  # CV prediction
    A = sort.predict_assignments(X)
    assert A.shape == (1, 20, 2, 3)
    np.testing.assert_array_equal(A[0, 5:8, 0], 0.0)  # missing rows: no assignment
    np.testing.assert_array_equal(A[0, 10].argmax(-1), [0, 1])


def test_unmatched_detection_goes_to_last_column_and_formats_agree():
    y = _two_objects(T=10, n=1)
    X = np.concatenate([y, np.full((1, 10, 1, 4), np.nan)], axis=2)
    X[0, 6, 2] = [900, 50, 40, 100]  # far from both tracks: a false detection
    sort = SORTTracker(n_sources=2).fit(X)
    A = sort.predict_assignments(X)
    assert A[0, 6, 2, 2] == 1.0 and A[0, 6, 2, :2].sum() == 0
    from mixest.tracking import convert_boxes

    xyxy = SORTTracker(n_sources=2, box_format="xyxy").fit(X)
    np.testing.assert_allclose(
        xyxy.predict(convert_boxes(X, "xywh", "xyxy")),
        convert_boxes(sort.predict(X), "xywh", "xyxy"),
        atol=1e-8,
    )


def test_invalid_parameters_are_rejected():
    X = _two_objects(T=5, n=1)
    with pytest.raises(ValueError, match="iou_threshold"):
        SORTTracker(iou_threshold=0.0).fit(X)
    with pytest.raises(ValueError, match="4 entries"):
        SORTTracker().fit(X[..., :2])
