"""Every tracker takes MOTChallenge detection tables as well as arrays, with the same result."""

import numpy as np
import pandas as pd
import pytest

from mixest import MixDVAETracker
from mixest.baselines import GreedyTracker, SORTTracker, VKFTracker
from mixest.datasets import make_tracking_mixture
from mixest.tracking import denormalize_boxes, detection_tables_to_array
from mixest.tracking._validation import check_detections


def _tables(X: np.ndarray) -> list[pd.DataFrame]:
    """Per-sequence detection tables (MOTChallenge det.txt columns) from an xywh array."""
    tables = []
    for seq in X:
        t, k = np.nonzero(~np.isnan(seq).any(-1))
        boxes = seq[t, k]
        tables.append(pd.DataFrame({
            "frame": t + 1, "id": -1,
            "bb_left": boxes[:, 0], "bb_top": boxes[:, 1],
            "bb_width": boxes[:, 2], "bb_height": boxes[:, 3], "conf": 1.0,
        }))
    return tables


@pytest.fixture(scope="module")
def detections():
    X, _ = make_tracking_mixture(3, n_sources=2, n_frames=20, miss_prob=0.0, random_state=0,
                                 box_format="xyxy", image_size=None)
    return denormalize_boxes(X, (1920, 1080), "xywh")


def test_tables_round_trip_to_the_array(detections):
    np.testing.assert_array_equal(detection_tables_to_array(_tables(detections)), detections)
    xyxy = detection_tables_to_array(_tables(detections), box_format="xyxy")
    np.testing.assert_allclose(xyxy[..., 2:], detections[..., :2] + detections[..., 2:])


@pytest.mark.parametrize(
    "tracker",
    [
        GreedyTracker(n_sources=2),
        SORTTracker(n_sources=2),
        VKFTracker(n_sources=2, max_iter=5, random_state=0),
        MixDVAETracker(2, prior="constant-velocity", max_iter=5, random_state=0),
    ],
    ids=lambda t: type(t).__name__,
)
def test_every_tracker_accepts_tables(tracker, detections):
    tracker.fit(detections)
    np.testing.assert_allclose(
        tracker.predict(_tables(detections)), tracker.predict(detections), rtol=1e-12
    )


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"^tracks must have 4 entries on its last axis"):
        check_detections(np.zeros((2, 3, 4, 5)), name="tracks")
    with pytest.raises(TypeError, match="X must be an array"):
        check_detections("det.txt")


def test_boolean_detections_are_refused():
    mask = np.ones((1, 3, 2, 4), dtype=bool)
    with pytest.raises(TypeError, match="X must hold numeric box coordinates, got a boolean"):
        check_detections(mask)
    with pytest.raises(TypeError, match="dets must hold numeric"):
        check_detections(mask.tolist(), name="dets", boxes_only=False)
    with pytest.raises(TypeError, match="boolean"):
        GreedyTracker(n_sources=2).fit(mask)
    assert check_detections(mask.astype(float)).dtype == np.float64  # numbers are fine


@pytest.mark.parametrize(
    ("tables", "error", "match"),
    [
        ([], ValueError, "tables is empty"),
        ((), ValueError, "tables is empty"),
        ("det.txt", TypeError, "tables must be a list of pandas DataFrames"),
        ([np.zeros((3, 7))], TypeError, "tables must hold pandas DataFrames, got ndarray"),
    ],
)
def test_detection_tables_to_array_bad_input(tables, error, match):
    with pytest.raises(error, match=match):
        detection_tables_to_array(tables)
