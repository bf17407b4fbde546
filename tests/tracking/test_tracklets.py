"""Tracklet initialisation: overlap links against scipy, chains, and the "auto" rule."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from mixest.tracking import GaussianDetections
from mixest.tracking._boxes import box_iou
from mixest.tracking._observation import initial_means
from mixest.tracking._tracklets import link_tracklets, tracklet_means


def _links_scipy(boxes, valid, min_iou):
    """Oracle: per frame, scipy's assignment maximising the summed IoU over the links of IoU
    >= min_iou (a weaker link loses to starting a tracklet), labels numbered by first box."""
    T, K, _ = boxes.shape
    label = np.full((T, K), -1)
    count = 0
    for t in range(T):
        if t > 0:
            a, b = np.flatnonzero(valid[t]), np.flatnonzero(valid[t - 1])
            if len(a) and len(b):
                gain = box_iou(boxes[t, a], boxes[t - 1, b]) - min_iou
                rows, cols = linear_sum_assignment(-np.maximum(gain, 0.0))
                for r, c in zip(rows, cols, strict=True):
                    if gain[r, c] > 0:
                        label[t, a[r]] = label[t - 1, b[c]]
        for k in np.flatnonzero(valid[t] & (label[t] < 0)):
            label[t, k] = count
            count += 1
    return label


def _walkers(rng, T=40, K=6):
    """Boxes of a few slow walkers, some crossing, with misses and shuffled rows."""
    n = 4
    start = rng.uniform(0.2, 0.8, (n, 2))
    vel = rng.normal(0, 0.004, (n, 2))
    size = rng.uniform(0.03, 0.08, (n, 1)) * np.array([1.0, 2.5])
    centre = start[None] + vel[None] * np.arange(T)[:, None, None]
    boxes = np.concatenate([centre - size / 2, centre + size / 2], -1)
    boxes += rng.normal(0, 0.002, boxes.shape)
    obs = np.full((T, K, 4), np.nan)
    for t in range(T):
        rows = rng.permutation(K)[:n]
        keep = rng.random(n) > 0.15
        obs[t, rows[keep]] = boxes[t, keep]
    return obs


@pytest.mark.parametrize("seed", range(4))
def test_links_equal_scipy_assignment(seed):
    obs = _walkers(np.random.default_rng(seed))
    valid = ~np.isnan(obs[..., 0])
    label = link_tracklets(obs[None], valid[None], 0.5)[0]
    np.testing.assert_array_equal(label, _links_scipy(obs, valid, 0.5))


def _init(obs, n_sources, **kwargs):
    model = GaussianDetections(**kwargs)
    data, params = model.prepare(obs, n_sources)
    return model.initialize(data, params, n_sources, None, None)


def test_chains_take_the_nearest_continuation_after_a_gap():
    """Two walkers with gaps; a far box's tracklet never joins a chain (over the gate)."""
    T = 30
    a0, b0 = np.array([0.2, 0.3, 0.25, 0.45]), np.array([0.6, 0.3, 0.65, 0.45])
    step = np.array([0.003, 0.0, 0.003, 0.0])
    obs = np.full((1, T, 4, 4), np.nan)
    for t in range(T):
        if not 8 <= t < 14:  # a hidden for 6 frames
            obs[0, t, 1] = a0 + t * step
        if not 15 <= t < 18:
            obs[0, t, 0] = b0 - t * step
        if t >= 10:
            obs[0, t, 3] = [0.9, 0.8, 0.95, 0.95]  # clutter far from both
    valid = ~np.isnan(obs[..., 0])
    m0 = obs[:, 0, :2]  # frame 0's boxes in row order: b then a
    means = tracklet_means(obs, valid, m0, np.zeros(1, dtype=int))
    truth_b = b0 - np.arange(T)[:, None] * step
    truth_a = a0 + np.arange(T)[:, None] * step
    np.testing.assert_allclose(means[0, :, 0], truth_b, atol=1e-12)  # linear through the gap
    np.testing.assert_allclose(means[0, :, 1], truth_a, atol=1e-12)


def test_auto_is_the_filter_without_clutter_and_tracklets_with_it():
    """In one batch, a sequence whose frames hold at most N boxes gets exactly the filter's
    initialisation, one with an extra box in a frame the tracklets' (also with init=...)."""
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(2, 3, 30, jitter=0.04, miss_prob=0.1, random_state=0,
                                 box_format="xyxy", image_size=None)
    X = np.concatenate([X, np.full(X.shape[:2] + (1, 4), np.nan)], 2)
    X[1, 12, -1] = [0.1, 0.1, 0.15, 0.2]  # sequence 1: one frame with clutter
    auto = _init(X, 3)
    filt = _init(X, 3, init="filter")
    links = _init(X, 3, init="tracklets")
    for a, f, tr in zip(auto, filt, links, strict=True):
        np.testing.assert_array_equal(a[0], f[0])
        np.testing.assert_array_equal(a[1], tr[1])
    # a box entirely outside the image is certain clutter: it changes nothing
    X[0, 5, -1] = [2.0, 2.0, 2.5, 2.5]
    np.testing.assert_array_equal(_init(X, 3)[0][0], auto[0][0])


def test_tracklets_need_boxes():
    obs = np.random.default_rng(0).random((1, 5, 2, 2))
    with pytest.raises(ValueError, match="init='tracklets'.*D = 2"):
        _init(obs, 1, init="tracklets")
    _init(obs, 1)  # "auto" runs the filter on points
    with pytest.raises(ValueError, match="init must be one of"):
        GaussianDetections(init="tracklet")


def test_a_hidden_walker_is_found_where_its_velocity_takes_it():
    """A walker (0.2 widths a frame) hidden for 10 frames and a standing person's box that
    appears where the walker was last seen: the chain follows the walker's velocity past the
    standing person."""
    T = 30
    walker = np.array([0.20, 0.30, 0.25, 0.45])
    step = np.array([0.01, 0.0, 0.01, 0.0])
    obs = np.full((1, T, 2, 4), np.nan)
    for t in range(T):
        if not 10 <= t < 20:
            obs[0, t, 0] = walker + t * step
        if t >= 11:
            obs[0, t, 1] = walker + 9 * step  # standing where the walker disappeared
    means = tracklet_means(obs, ~np.isnan(obs[..., 0]), obs[:, 0, :1], np.zeros(1, dtype=int))
    truth = walker + np.arange(T)[:, None] * step
    np.testing.assert_allclose(means[0, :, 0], truth, atol=1e-12)


def test_a_long_gap_does_not_reach_a_neighbour_three_boxes_away():
    """A standing person unseen for 31 frames and a neighbour, three box widths away, whose
    boxes appear 17 frames into the gap: the join's reach grows with the fourth root of the gap
    (3 / 17 ** 0.25 = 1.5 > GATE), so the chain holds the person's box instead of following
    the neighbour (with the square root, 0.73, it would)."""
    from mixest.tracking._tracklets import DEFAULT

    T = 50
    person = np.array([0.20, 0.30, 0.25, 0.45])
    obs = np.full((1, T, 2, 4), np.nan)
    obs[0, :10, 0] = person
    obs[0, 41:, 0] = person  # back after 31 frames unseen
    obs[0, 26:, 1] = person + [0.15, 0.0, 0.15, 0.0]
    assert 3 / 17**DEFAULT.gap_power > DEFAULT.gate > 3 / 17**0.5
    means = tracklet_means(obs, ~np.isnan(obs[..., 0]), obs[:, 0, :1], np.zeros(1, dtype=int))
    np.testing.assert_allclose(means[0, :, 0], np.broadcast_to(person, (T, 4)))


def test_a_chain_bridges_the_longest_join_and_no_longer():
    """A walker (0.1 widths a frame) whose boxes stop at frame 9 and resume ``max_gap`` frames
    later, or one frame later still: the chain joins the walker's boxes across the first gap
    (linearly, the truth) and holds the last box across the second."""
    from mixest.tracking._tracklets import DEFAULT

    gap = DEFAULT.max_gap
    walker = np.array([0.20, 0.30, 0.25, 0.45])
    step = np.array([0.005, 0.0, 0.005, 0.0])
    for extra, joined in ((0, True), (1, False)):
        T = 10 + gap + extra + 5
        obs = np.full((1, T, 1, 4), np.nan)
        seen = np.r_[0:10, 9 + gap + extra:T]  # last seen at 9, back gap (+ extra) frames on
        obs[0, seen, 0] = walker + seen[:, None] * step
        means = tracklet_means(obs, ~np.isnan(obs[..., 0]), obs[:, 0, :1],
                               np.zeros(1, dtype=int))
        truth = walker + np.arange(T)[:, None] * step
        if joined:
            np.testing.assert_allclose(means[0, :, 0], truth, atol=1e-12)
        else:
            np.testing.assert_allclose(means[0, 10:, 0], np.broadcast_to(truth[9], (T - 10, 4)),
                                       atol=1e-12)


def test_a_bad_last_box_does_not_send_the_chain_to_a_neighbour():
    """A standing person whose last box before a gap is a bad one (25% too tall, as when the
    detector boxes two people just before losing one), and a taller neighbour's box that
    appears during the gap: the chain compares the median of the last boxes, not the last box,
    and goes on with the person's own boxes."""
    T = 30
    person = np.array([0.20, 0.30, 0.25, 0.45])
    obs = np.full((1, T, 2, 4), np.nan)
    obs[0, :10, 0] = person
    obs[0, 9, 0, 3] = 0.4875  # the bad box
    obs[0, 15:, 0] = person  # the person again, after 5 frames unseen
    obs[0, 12:, 1] = [0.20, 0.33, 0.25, 0.5175]  # the neighbour, as tall as the bad box
    means = tracklet_means(obs, ~np.isnan(obs[..., 0]), obs[:, 0, :1], np.zeros(1, dtype=int))
    np.testing.assert_allclose(means[0, 15:, 0], np.broadcast_to(person, (T - 15, 4)))


def test_a_chain_goes_on_along_a_tracklet_already_running():
    """The person's boxes split into two tracklets that overlap in time (a second, shifted box
    from frame 5 that outlives the first): the chain takes the second from the frame after the
    first ends instead of holding the last box."""
    T = 30
    box = np.array([0.20, 0.30, 0.25, 0.45])
    shifted = box + [0.005, 0.0, 0.005, 0.0]
    obs = np.full((1, T, 2, 4), np.nan)
    obs[0, :10, 0] = box
    obs[0, 5:, 1] = shifted
    means = tracklet_means(obs, ~np.isnan(obs[..., 0]), obs[:, 0, :1], np.zeros(1, dtype=int))
    np.testing.assert_allclose(means[0, :10, 0], np.broadcast_to(box, (10, 4)))
    np.testing.assert_allclose(means[0, 10:, 0], np.broadcast_to(shifted, (T - 10, 4)))


def test_end_velocity_is_the_shrunk_least_squares_slope_of_the_last_frames():
    """The slope of np.polyfit over the last frames, times max(0, 1 - c se^2 / slope^2) with
    se^2 the slope's variance from the fit's residuals: jitter alone gives 0, a clear walk
    keeps its slope."""
    from mixest.tracking._tracklets import DEFAULT, _end_velocity

    rng = np.random.default_rng(3)
    lengths = [2, 3, 7, 25, 12, 12]
    t = np.concatenate([np.sort(rng.choice(40, n, replace=False)) for n in lengths])
    label = np.repeat(np.arange(len(lengths)), lengths)
    boxes = rng.random((len(t), 4))
    walk = label == 4  # a walker: 0.01 a frame, little jitter
    boxes[walk] = 0.3 + 0.01 * t[walk, None] + 1e-4 * rng.standard_normal((walk.sum(), 4))
    still = label == 5  # a standing person: jitter only
    boxes[still] = 0.5 + 1e-3 * rng.standard_normal((still.sum(), 4))
    last = np.array([t[label == i].max() for i in range(len(lengths))])
    out = _end_velocity(boxes, t, label, last, len(lengths))
    for i in range(len(lengths)):
        sel = (label == i) & (t >= last[i] - DEFAULT.velocity_frames)
        centre = 0.5 * (boxes[sel, :2] + boxes[sel, 2:])
        if sel.sum() < 3:
            np.testing.assert_array_equal(out[i], 0.0)
            continue
        slope, intercept = np.polyfit(t[sel], centre, 1)
        residual = centre - (np.outer(t[sel], slope) + intercept)
        se2 = (residual**2).sum(0) / (sel.sum() - 2) / ((t[sel] - t[sel].mean()) ** 2).sum()
        want = slope * np.clip(1 - DEFAULT.velocity_shrink * se2 / slope**2, 0, 1)
        np.testing.assert_allclose(out[i], want, atol=1e-12)
    np.testing.assert_allclose(out[4], 0.01, rtol=1e-2)
    assert np.all(np.abs(out[5]) < 1e-4)


def test_tracklets_start_with_the_given_observation_noise():
    """With explicit ``phi`` the sources' initial variances are their boxes' ``phi`` (carried
    along the chains, interpolated through a gap), not ``obs_noise``'s."""
    T = 8
    box = np.array([0.2, 0.3, 0.25, 0.45])
    obs = np.full((1, T, 2, 4), np.nan)
    obs[0, :, 0] = box
    obs[0, 3:5, 0] = np.nan  # a gap
    obs[0, :, 1] = [0.7, 0.7, 0.75, 0.85]  # clutter in every frame: "auto" takes tracklets
    phi = np.ones_like(obs)
    phi[0, :, 0] = np.linspace(1, 8, T)[:, None] * 1e-5
    means, covs = _init((obs, phi), 1)
    np.testing.assert_allclose(means[0, :, 0], np.broadcast_to(box, (T, 4)), atol=1e-12)
    np.testing.assert_allclose(covs[0, :, 0, 0], np.linspace(1, 8, T) * 1e-5, rtol=1e-12)


def test_degenerate_and_sparse_boxes_give_finite_tracks_without_warnings():
    """Zero-size boxes, single-frame tracklets and frames without boxes: finite means, no
    RuntimeWarning (a division by a zero width is no link, not a NaN)."""
    import warnings

    rng = np.random.default_rng(0)
    for trial in range(60):
        B, T, K, N = rng.integers(1, 4), rng.integers(1, 40), rng.integers(1, 8), rng.integers(1, 5)
        corner = rng.random((B, T, K, 2)) * 0.9
        size = rng.random((B, T, K, 2)) * 0.1 * (trial % 3 != 0)  # every third: zero-size boxes
        obs = np.concatenate([corner, corner + size], -1)
        obs[rng.random((B, T, K)) < 0.4] = np.nan
        valid = ~np.isnan(obs).any(-1)
        m0, t0 = initial_means(obs, valid, N)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            means = tracklet_means(obs, valid, m0, t0)
        assert means.shape == (B, T, N, 4) and np.isfinite(means).all()
