"""Simulated detections from ground-truth tracks: jitter, misses, clutter, shuffled order."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import check_random_state

from mixest.base import check_int, check_sequences
from mixest.tracking._boxes import convert_boxes

__all__ = ["simulate_detections"]


def _check_probability(value: object, name: str, upper_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}.")
    value = float(value)
    if not 0.0 <= value <= 1.0 or (upper_open and value == 1.0):
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise ValueError(f"{name} must be in {bound}, got {value}.")
    return value


def _check_non_negative(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}.")
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite non-negative number, got {value}.")
    return float(value)


def simulate_detections(
    tracks: object,
    *,
    jitter: float = 0.04,
    miss_prob: float = 0.1,
    clutter_rate: float = 0.0,
    shuffle: bool = False,
    occlusion: int = 0,
    box_format: str = "xywh",
    image_size: tuple[float, float] | None = None,
    return_labels: bool = False,
    random_state: int | np.random.RandomState | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Simulate noisy, incomplete, unlabeled detections of ground-truth tracks.

    Every present box yields one detection whose corners are jittered by Gaussian noise with a
    standard deviation of ``jitter`` times the box's width (x coordinates) or height (y
    coordinates); each detection is then missed with probability ``miss_prob``. Each frame also
    receives ``Poisson(clutter_rate)`` false detections, placed uniformly in the image with the
    size of a random true box of the same sequence.

    Parameters
    ----------
    tracks : array-like of shape (n_sequences, T, N, 4)
        Ground-truth boxes in ``box_format``; NaN rows are absent objects (no detection).
    jitter : float, default=0.04
        Noise standard deviation as a fraction of the box size.
    miss_prob : float, default=0.1
        Probability that a detection is missed.
    clutter_rate : float, default=0.0
        Mean number of false detections per frame.
    shuffle : bool, default=False
        Put the detections of every frame in random order. Without it, row ``k < N`` is the
        detection of source ``k`` and clutter follows.
    occlusion : int, default=0
        Hide every source for a run of this many consecutive frames (no detection), starting
        at a frame drawn uniformly among those that leave the first frame visible (an
        occlusion protocol: the tracker must carry each object through the gap).
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Box convention of ``tracks`` and of the output.
    image_size : (width, height), optional
        Image extent for clutter. Defaults to the bounding range of the tracks' boxes.
    return_labels : bool, default=False
        Also return the source index of each detection.
    random_state : int, RandomState instance or None, default=None
        Seed of every random draw.

    Returns
    -------
    observations : ndarray of shape (n_sequences, T, K, 4)
        Detections with ``K = N + max clutter per frame``; NaN rows are missing detections.
    labels : ndarray of int of shape (n_sequences, T, K)
        Only with ``return_labels``: source index, ``-1`` for clutter, ``-2`` for a missing row.
    """
    tracks = check_sequences(
        tracks, name="tracks", ndim=4, allow_nan=True, last_dim=4,
        axis_names="(n_sequences, T, N, 4)",
    )
    jitter = _check_non_negative(jitter, "jitter")
    miss_prob = _check_probability(miss_prob, "miss_prob")
    clutter_rate = _check_non_negative(clutter_rate, "clutter_rate")
    rng = check_random_state(random_state)
    n, T, N, _ = tracks.shape
    occlusion = check_occlusion(occlusion, T)

    xyxy = convert_boxes(tracks, box_format, "xyxy")
    size = np.concatenate([xyxy[..., 2:] - xyxy[..., :2]] * 2, axis=-1)  # (w, h, w, h)
    if np.any(size < 0):
        raise ValueError("tracks contain boxes with negative width or height.")
    noisy = xyxy + jitter * size * rng.standard_normal(xyxy.shape)
    # Keep corners ordered: a flipped box is not a box (only possible with very large jitter).
    noisy[..., 2:] = np.maximum(noisy[..., 2:], noisy[..., :2])
    present = ~np.isnan(xyxy).any(axis=-1)
    detected = present & (rng.random_sample((n, T, N)) >= miss_prob)
    noisy[~detected] = np.nan
    labels = np.where(detected, np.arange(N), -2)

    if clutter_rate > 0:
        counts = rng.poisson(clutter_rate, size=(n, T))
        n_clutter = int(counts.max())
    else:
        n_clutter = 0
    if n_clutter:
        if image_size is None:
            lo, hi = np.nanmin(xyxy[..., :2]), np.nanmax(xyxy[..., 2:])
            extent = np.array([hi - lo, hi - lo])
            origin = np.array([lo, lo])
        else:
            extent = np.asarray(image_size, dtype=np.float64)
            if extent.shape != (2,) or not np.all(extent > 0):
                raise ValueError(f"image_size must be (width, height) > 0, got {image_size!r}.")
            origin = np.zeros(2)
        # Clutter sizes are borrowed from random true boxes of the same sequence.
        flat_size = size[..., :2].reshape(n, T * N, 2)
        pick = rng.randint(0, T * N, size=(n, T, n_clutter))
        wh = np.take_along_axis(flat_size, pick.reshape(n, -1, 1), axis=1).reshape(
            n, T, n_clutter, 2
        )
        wh = np.where(np.isnan(wh), np.nanmedian(flat_size, axis=1)[:, None, None, :], wh)
        corner = origin + rng.random_sample((n, T, n_clutter, 2)) * np.maximum(extent - wh, 0.0)
        clutter = np.concatenate([corner, corner + wh], axis=-1)
        active = np.arange(n_clutter)[None, None, :] < counts[..., None]
        clutter[~active] = np.nan
        noisy = np.concatenate([noisy, clutter], axis=2)
        labels = np.concatenate([labels, np.where(active, -1, -2)], axis=2)

    if shuffle:
        order = np.argsort(rng.random_sample(labels.shape), axis=-1)
        noisy = np.take_along_axis(noisy, order[..., None], axis=2)
        labels = np.take_along_axis(labels, order, axis=2)

    if occlusion:  # drawn last, so that occlusion=0 leaves every other draw as it was
        occlude(noisy, labels, N, occlusion, rng)
    observations = convert_boxes(noisy, "xyxy", box_format)
    if return_labels:
        return observations, labels
    return observations


def check_occlusion(occlusion: object, n_frames: int) -> int:
    """Validate an occlusion length: 0 (none) or a run that leaves the first frame visible."""
    occlusion = check_int(occlusion, "occlusion", 0)
    if occlusion >= n_frames:
        raise ValueError(f"occlusion must be shorter than the sequences ({n_frames} frames) so "
                         f"that every object is seen at least once, got {occlusion}.")
    return occlusion


def occlude(observations: np.ndarray, labels: np.ndarray, n_sources: int, length: int,
            rng: np.random.RandomState) -> None:
    """Hide each source's detections (label ``n``) for ``length`` consecutive frames, in place.

    The run of every sequence and source starts at a frame drawn uniformly in
    ``[1, T - length]``; hidden rows become NaN and their label ``-2`` (missing).
    """
    n, T = labels.shape[:2]
    start = rng.randint(1, T - length + 1, size=(n, n_sources))
    t = np.arange(T)[None, :, None]
    hidden_source = (t >= start[:, None]) & (t < start[:, None] + length)  # (n, T, N)
    source = np.clip(labels, 0, None)
    hidden = (labels >= 0) & np.take_along_axis(hidden_source, source, axis=2)
    observations[hidden] = np.nan
    labels[hidden] = -2
