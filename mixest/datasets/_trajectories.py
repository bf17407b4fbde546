"""Synthetic single-source box trajectories (the paper's pre-training data) and their mixtures.

Each coordinate of the box's top-left corner moves piecewise: 0-2 breakpoints cut the sequence
into segments, each continuing from where the previous one ended and drawn as static, a line, a
parabola or a sine. The box width follows its own single segment (static, line or parabola,
drawn over 60 frames and run back and forth in longer sequences) and the height is the width
times a per-sequence aspect ratio. Sequences whose boxes leave the image are rejected and
redrawn.
"""

from __future__ import annotations

import numpy as np
from sklearn.utils import check_random_state

from mixest.base import check_int

__all__ = ["make_trajectories", "make_tracking_mixture"]

# Motion statistics of the paper's generator (docs/dvae.md), per axis (x, y), in
# image-normalised units per frame.
_VELOCITY_STD = np.array([0.00125, 0.0006])
_ACCELERATION_STD = np.array([3.7e-5, 2e-5])
_ANGULAR_FREQUENCY_STD = np.array([0.003, 0.001])
_PHASE_STD = 3.2
_SEGMENT_KINDS = ("static", "line", "parabola", "sine")
_SEGMENT_PROBS = np.array([0.15, 0.3, 0.3, 0.25])
_BREAKPOINTS = np.arange(3, 58, 3)  # {3, 6, ..., 57}
# Box size: width ~ log-normal(-3.8, 0.7), height = width * rho, rho ~ N(5.26, 0.77^2).
_LOG_WIDTH_MEAN, _LOG_WIDTH_STD = -3.8, 0.7
_ASPECT_MEAN, _ASPECT_STD = 5.26, 0.77
# The design does not fix how fast the width changes; these relative rates (per frame) change a
# box's width by about +-25% over 60 frames, like a pedestrian walking towards the camera.
_LOG_WIDTH_RATE_STD, _LOG_WIDTH_CURVATURE_STD = 0.004, 1e-4
# The width path is drawn over the paper's 60 frames; longer sequences run it back and forth
# (reflected in time) so that a box neither vanishes nor explodes at any length.
_WIDTH_HORIZON = 60


def _segment_displacement(
    kind: np.ndarray, tau: np.ndarray, axis: int, rng: np.random.RandomState
) -> np.ndarray:
    """Displacement since a segment's start, ``f(tau)`` with ``f(0) = 0``, for one segment each.

    ``kind`` has shape ``(n,)`` (codes into ``_SEGMENT_KINDS``), ``tau`` shape ``(n, T)``.
    """
    n = kind.shape[0]
    velocity = rng.normal(0.0, _VELOCITY_STD[axis], n)[:, None]
    acceleration = rng.normal(0.0, _ACCELERATION_STD[axis], n)[:, None]
    omega = rng.normal(0.0, _ANGULAR_FREQUENCY_STD[axis], n)[:, None]
    phase = rng.normal(0.0, _PHASE_STD, n)[:, None]
    # A sine whose peak speed is |velocity|: amplitude velocity / omega. For omega -> 0 it
    # tends to a line with speed velocity * cos(phase); the guard avoids dividing by ~0.
    omega = np.where(np.abs(omega) < 1e-9, 1e-9, omega)
    sine = velocity / omega * (np.sin(omega * tau + phase) - np.sin(phase))
    line = velocity * tau
    parabola = line + 0.5 * acceleration * tau**2
    k = kind[:, None]
    return np.select([k == 1, k == 2, k == 3], [line, parabola, sine], default=0.0)


def _piecewise_axis(n: int, n_frames: int, axis: int, rng: np.random.RandomState) -> np.ndarray:
    """Positions ``(n, T)`` of one corner coordinate, starting at 0, with 0-2 breakpoints."""
    t = np.arange(n_frames, dtype=np.float64)
    # Segment starts: frame 0 plus up to two breakpoints; unused slots are pushed past the end.
    n_breaks = rng.randint(0, 3, size=n)
    usable = _BREAKPOINTS[_BREAKPOINTS < n_frames]
    starts = np.full((n, 3), np.inf)
    starts[:, 0] = 0.0
    if usable.size:
        # Two distinct breakpoints per sequence, sorted; keep the first n_breaks of them.
        keys = rng.random_sample((n, usable.size))
        chosen = np.sort(usable[np.argsort(keys, axis=1)[:, :2]], axis=1).astype(np.float64)
        if usable.size == 1:
            chosen = np.column_stack([chosen[:, 0], np.full(n, np.inf)])
        keep = np.arange(2)[None, :] < n_breaks[:, None]
        starts[:, 1:] = np.where(keep, chosen, np.inf)
    positions = np.zeros((n, n_frames))
    offset = np.zeros(n)
    for s in range(3):
        kind = rng.choice(len(_SEGMENT_KINDS), size=n, p=_SEGMENT_PROBS)
        start = starts[:, s][:, None]
        tau = np.clip(t[None, :] - np.where(np.isfinite(start), start, 0.0), 0.0, None)
        disp = _segment_displacement(kind, tau, axis, rng)
        end = starts[:, s + 1][:, None] if s < 2 else np.full((n, 1), np.inf)
        inside = (t[None, :] >= start) & (t[None, :] < end)
        positions = np.where(inside, offset[:, None] + disp, positions)
        # The next segment continues from this one's value at its own start frame.
        nxt = np.where(np.isfinite(end[:, 0]), end[:, 0], 0.0).astype(np.int64)
        offset = np.where(np.isfinite(end[:, 0]), offset + disp[np.arange(n), nxt], offset)
    return positions


def _draw_boxes(n: int, n_frames: int, rng: np.random.RandomState) -> np.ndarray:
    """Draw ``n`` candidate trajectories ``(n, T, 4)`` xyxy, before rejection."""
    x1 = rng.uniform(0.0, 1.0, n)[:, None] + _piecewise_axis(n, n_frames, 0, rng)
    y1 = rng.uniform(0.0, 1.0, n)[:, None] + _piecewise_axis(n, n_frames, 1, rng)
    # Width: its own static / line / parabola segment in log space (keeps it positive).
    kind = rng.choice(3, size=n, p=_SEGMENT_PROBS[:3] / _SEGMENT_PROBS[:3].sum())
    rate = rng.normal(0.0, _LOG_WIDTH_RATE_STD, n)[:, None] * (kind[:, None] >= 1)
    curvature = rng.normal(0.0, _LOG_WIDTH_CURVATURE_STD, n)[:, None] * (kind[:, None] == 2)
    log_w0 = rng.normal(_LOG_WIDTH_MEAN, _LOG_WIDTH_STD, n)[:, None]
    last = _WIDTH_HORIZON - 1
    tau = last - np.abs(np.arange(n_frames) % (2 * last) - last).astype(np.float64)[None, :]
    width = np.exp(log_w0 + rate * tau + 0.5 * curvature * tau**2)
    aspect = rng.normal(_ASPECT_MEAN, _ASPECT_STD, n)[:, None]
    height = width * aspect
    return np.stack([x1, y1, x1 + width, y1 + height], axis=-1)


def make_trajectories(
    n_sequences: int, n_frames: int = 60, *, random_state: int | np.random.RandomState | None = None
) -> np.ndarray:
    """Generate synthetic single-source box trajectories (the MixDVAE pre-training data).

    Parameters
    ----------
    n_sequences : int
        Number of trajectories.
    n_frames : int, default=60
        Length T of each trajectory.
    random_state : int, RandomState instance or None, default=None
        Seed of every random draw.

    Returns
    -------
    boxes : ndarray of shape (n_sequences, n_frames, 4)
        Boxes ``(x1, y1, x2, y2)`` in image-normalised units (x divided by the image width, y by
        its height, y pointing down), inside ``[0, 1]`` at every frame.

    Notes
    -----
    x1 and y1 each get 0-2 breakpoints from {3, 6, ..., 57}; every segment continues from the last
    and is static (p=0.15), a line (0.3), a parabola (0.3) or a sine (0.25), with velocity std
    0.00125 (x) / 0.0006 (y), acceleration std 3.7e-5 / 2e-5, angular frequency std 0.003 / 0.001
    and phase std 3.2. A sine segment is ``v / omega * (sin(omega tau + phase) - sin(phase))``,
    i.e. its peak speed is the drawn velocity. The width is log-normal(-3.8, 0.7) at the first
    frame and changes along a static, linear or parabolic path in log space over the first 60
    frames; a longer sequence runs that path back and forth (frame t uses the path at
    ``59 - |t mod 118 - 59|``), so the width stays within the range of the first 60 frames at
    any length. The height is the width times ``rho ~ N(5.26, 0.77^2)``. Start positions are
    uniform in ``[0, 1]``; sequences that leave the image are redrawn.

    Examples
    --------
    >>> from mixest.datasets import make_trajectories
    >>> make_trajectories(5, random_state=0).shape
    (5, 60, 4)
    """
    n_sequences = check_int(n_sequences, "n_sequences", 1)
    n_frames = check_int(n_frames, "n_frames", 2)
    rng = check_random_state(random_state)
    kept: list[np.ndarray] = []
    n_kept = 0
    for _ in range(1000):
        # Roughly half the candidates stay inside the image; draw a margin to need few rounds.
        candidates = _draw_boxes(max(2 * (n_sequences - n_kept), 16), n_frames, rng)
        inside = np.all((candidates >= 0.0) & (candidates <= 1.0), axis=(1, 2))
        kept.append(candidates[inside])
        n_kept += int(inside.sum())
        if n_kept >= n_sequences:
            return np.ascontiguousarray(np.concatenate(kept)[:n_sequences])
    raise RuntimeError("could not draw trajectories that stay inside the image")  # pragma: no cover


def make_tracking_mixture(
    n_sequences: int,
    n_sources: int = 3,
    n_frames: int = 60,
    *,
    jitter: float = 0.04,
    miss_prob: float = 0.1,
    clutter_rate: float = 0.0,
    shuffle: bool = False,
    return_labels: bool = False,
    box_format: str = "xywh",
    image_size: tuple[float, float] | None = (1920, 1080),
    random_state: int | np.random.RandomState | None = None,
) -> tuple[np.ndarray, ...]:
    """Mix independent synthetic trajectories into multi-source tracking problems.

    The boxes come in the trackers' default convention (``"xywh"`` pixels of a 1920x1080
    image, as in MOTChallenge files), so ``MixDVAETracker().fit(X).score(X, y)`` needs no
    option; ``box_format="xyxy", image_size=None`` gives the image-normalised ``xyxy`` boxes
    the trajectories are drawn in (what the DVAE priors are trained on).

    Parameters
    ----------
    n_sequences : int
        Number of multi-source sequences.
    n_sources : int, default=3
        Number of sources N per sequence.
    n_frames : int, default=60
        Sequence length T.
    jitter, miss_prob, clutter_rate, shuffle
        Detection simulation, see :func:`mixest.tracking.simulate_detections`.
    return_labels : bool, default=False
        Also return the source index of every detection.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Format of the returned boxes.
    image_size : (width, height) or None, default=(1920, 1080)
        Pixel size of the image the unit square is mapped to; None keeps image-normalised
        units.
    random_state : int, RandomState instance or None, default=None
        Seed of every random draw.

    Returns
    -------
    X : ndarray of shape (n_sequences, n_frames, K, 4)
        Simulated detections in ``box_format`` and ``image_size``; NaN rows are missing
        detections.
    y : ndarray of shape (n_sequences, n_frames, n_sources, 4)
        The true source trajectories.
    labels : ndarray of int of shape (n_sequences, n_frames, K)
        Only with ``return_labels``: source index of each detection, ``-1`` for clutter and
        ``-2`` for a missing row.

    Examples
    --------
    >>> from mixest.datasets import make_tracking_mixture
    >>> X, y = make_tracking_mixture(4, n_sources=3, random_state=0)
    >>> X.shape, y.shape
    ((4, 60, 3, 4), (4, 60, 3, 4))
    """
    from mixest.tracking._boxes import _check_format, _check_image_size, denormalize_boxes
    from mixest.tracking._detections import simulate_detections

    box_format = _check_format(box_format, "box_format")
    size = (1.0, 1.0) if image_size is None else image_size
    _check_image_size(size, np.float64)
    n_sequences = check_int(n_sequences, "n_sequences", 1)
    n_sources = check_int(n_sources, "n_sources", 1)
    rng = check_random_state(random_state)
    tracks = make_trajectories(n_sequences * n_sources, n_frames, random_state=rng)
    y = np.ascontiguousarray(
        tracks.reshape(n_sequences, n_sources, n_frames, 4).transpose(0, 2, 1, 3)
    )
    out = simulate_detections(
        y,
        jitter=jitter,
        miss_prob=miss_prob,
        clutter_rate=clutter_rate,
        shuffle=shuffle,
        box_format="xyxy",
        image_size=(1.0, 1.0),
        return_labels=return_labels,
        random_state=rng,
    )
    X, labels = out if return_labels else (out, None)
    # the same draws in every convention: the detections are simulated in normalised units
    X, y = denormalize_boxes(X, size, box_format), denormalize_boxes(y, size, box_format)
    return (X, y, labels) if return_labels else (X, y)
