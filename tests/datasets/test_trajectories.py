"""The synthetic trajectory generator (docs/dvae.md) and the tracking-mixture builder."""

import numpy as np
import pytest

from mixest.datasets import make_tracking_mixture, make_trajectories


def test_shape_bounds_and_box_geometry():
    boxes = make_trajectories(2000, 60, random_state=0)
    assert boxes.shape == (2000, 60, 4)
    assert np.all((boxes >= 0) & (boxes <= 1)), "rejected sequences must not leave the image"
    width = boxes[..., 2] - boxes[..., 0]
    height = boxes[..., 3] - boxes[..., 1]
    assert np.all(width > 0) and np.all(height > 0)
    # Width log-normal(-3.8, 0.7) at the first frame (rejection favours small boxes slightly).
    log_w0 = np.log(width[:, 0])
    assert abs(np.median(log_w0) - (-3.8)) < 0.15
    # The aspect ratio is fixed per sequence and distributed around 5.26.
    aspect = height / width
    assert np.allclose(aspect, aspect[:, :1])
    assert abs(np.mean(aspect[:, 0]) - 5.26) < 0.1


def test_motion_statistics_follow_the_design():
    boxes = make_trajectories(4000, 60, random_state=1)
    vx = np.diff(boxes[..., 0], axis=1)
    vy = np.diff(boxes[..., 1], axis=1)
    # Per-frame speeds are of the order of the velocity std (0.00125 in x, 0.0006 in y).
    assert 0.5 * 0.00125 < vx.std() < 1.5 * 0.00125
    assert 0.5 * 0.0006 < vy.std() < 1.5 * 0.0006
    # Static sequences (both axes static over all segments) exist but are rare.
    static = np.all(np.abs(vx) < 1e-15, axis=1) & np.all(np.abs(vy) < 1e-15, axis=1)
    assert 0 < static.mean() < 0.05


def test_segments_continue_without_jumps():
    boxes = make_trajectories(500, 60, random_state=2)
    steps = np.abs(np.diff(boxes[..., :2], axis=1))
    # Positions are continuous at breakpoints: no step exceeds a few velocity stds.
    assert steps.max() < 0.02


def test_long_sequences_keep_boxes_well_defined():
    # The width path is drawn over 60 frames and run back and forth beyond: frame 59 + k has
    # the width of frame 59 - k, so a 5000-frame box never shrinks to nothing or overflows.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or divide warning
        boxes = make_trajectories(20, 5000, random_state=3)
    assert np.all((boxes >= 0) & (boxes <= 1))
    width = boxes[..., 2] - boxes[..., 0]
    k = np.arange(1, 59)
    assert np.allclose(width[:, 59 + k], width[:, 59 - k])
    assert np.allclose(width[:, 118 + k], width[:, k])  # period 118
    assert np.all(width.min(axis=1) >= 0.99 * width[:, :60].min(axis=1))
    assert np.all(width.max(axis=1) <= 1.01 * width[:, :60].max(axis=1))


def test_seed_reproducibility_and_independence():
    a = make_trajectories(30, random_state=5)
    assert np.array_equal(a, make_trajectories(30, random_state=5))
    assert not np.array_equal(a, make_trajectories(30, random_state=6))
    rng = np.random.RandomState(5)
    assert np.array_equal(a, make_trajectories(30, random_state=rng))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_sequences": 0}, ValueError, "n_sequences"),
        ({"n_sequences": 2.5}, TypeError, "n_sequences"),
        ({"n_sequences": 3, "n_frames": 1}, ValueError, "n_frames"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_trajectories(**kwargs)


def test_tracking_mixture_rows_follow_sources_when_not_shuffled():
    X, y, labels = make_tracking_mixture(
        6, n_sources=3, jitter=0.0, miss_prob=0.0, return_labels=True, random_state=0,
        box_format="xyxy", image_size=None,
    )
    assert X.shape == y.shape == (6, 60, 3, 4)
    np.testing.assert_allclose(X, y)
    assert np.array_equal(labels, np.broadcast_to(np.arange(3), labels.shape))


def test_tracking_mixture_comes_in_the_trackers_convention():
    """The default boxes are xywh pixels of 1920x1080 (the trackers' defaults), the same draws
    as the normalised xyxy ones; the README's example then scores without any option."""
    from mixest import MixDVAETracker
    from mixest.tracking import denormalize_boxes

    X, y = make_tracking_mixture(4, n_frames=60, random_state=0)
    Xn, yn = make_tracking_mixture(4, n_frames=60, random_state=0, box_format="xyxy",
                                   image_size=None)
    np.testing.assert_allclose(X, denormalize_boxes(Xn, (1920, 1080), "xywh"))
    np.testing.assert_allclose(y, denormalize_boxes(yn, (1920, 1080), "xywh"))
    Xc, _ = make_tracking_mixture(4, n_frames=60, random_state=0, box_format="cxcywh",
                                  image_size=(640, 480))
    np.testing.assert_allclose(Xc, denormalize_boxes(Xn, (640, 480), "cxcywh"))
    default = MixDVAETracker(random_state=0).fit(X).score(X, y)
    normalised = MixDVAETracker(box_format="xyxy", image_size=None, random_state=0)
    assert default == normalised.fit(Xn).score(Xn, yn)
    assert default > 0.95
    with pytest.raises(ValueError, match="box_format"):
        make_tracking_mixture(1, box_format="ltrb")
    with pytest.raises(ValueError, match="image_size"):
        make_tracking_mixture(1, image_size=(0, 10))
