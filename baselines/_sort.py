"""SORT-style tracker: constant-velocity Kalman filter per track + Hungarian matching on IoU.

A non-probabilistic reference (Bewley et al., ICIP 2016) adapted to the fixed-``N`` protocol of
the tracking tables: the ``N`` tracks are started from the first frame's detections (a track
without a detection there is born from the first unmatched detection later on), every frame's
detections are matched to the tracks' predicted boxes by minimum-cost assignment on ``1 - IoU``
(:func:`scipy.optimize.linear_sum_assignment`), matches below ``iou_threshold`` are rejected,
and an unmatched track is held (it coasts on its Kalman prediction) instead of being deleted.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixest.base import SequenceEstimator
from mixest.mixture._kalman import constant_velocity_model, kalman_predict, kalman_update
from mixest.tracking._boxes import box_iou
from mixest.tracking._validation import check_detections

__all__ = ["SORTTracker", "sort_track"]


def _to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    return np.concatenate([(xyxy[..., :2] + xyxy[..., 2:]) / 2, xyxy[..., 2:] - xyxy[..., :2]], -1)


def _to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = np.maximum(cxcywh[..., 2:], 0.0) / 2  # a coasting size cannot go negative
    return np.concatenate([cxcywh[..., :2] - half, cxcywh[..., :2] + half], -1)


def _size_scale(cxcywh: np.ndarray) -> np.ndarray:
    """``(w, h, w, h)`` of ``cxcywh`` boxes, floored so that degenerate boxes keep some noise."""
    wh = np.maximum(cxcywh[..., 2:], 1e-3)
    return np.concatenate([wh, wh], axis=-1)


def sort_track(
    X: np.ndarray,
    n_sources: int,
    *,
    iou_threshold: float = 0.3,
    process_noise: float = 0.01,
    observation_noise: float = 0.04,
    initial_velocity_std: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Track ``n_sources`` objects with SORT on normalised ``xyxy`` detections.

    Parameters
    ----------
    X : ndarray of shape (n_sequences, T, K, 4)
        Detections as ``(x1, y1, x2, y2)``; NaN rows are missing.
    n_sources : int
        Number of tracks.
    iou_threshold : float, default=0.3
        Minimum IoU between a detection and a track's predicted box for a match.
    process_noise : float, default=0.01
        Acceleration standard deviation per frame, in units of the track's box size.
    observation_noise : float, default=0.04
        Detection noise standard deviation, in units of the detection's box size.
    initial_velocity_std : float, default=0.1
        Prior standard deviation of a new track's velocity, in box sizes per frame.

    Returns
    -------
    tracks : ndarray of shape (n_sequences, T, n_sources, 4)
        Filtered boxes; NaN before a track is born.
    assignment : ndarray of int of shape (n_sequences, T, K)
        Track index of every detection, ``-1`` for an unmatched detection, ``-2`` for a missing
        row.
    """
    B, T, K, D = X.shape
    N = n_sources
    valid = ~np.isnan(X).any(-1)
    # The filter runs on (centre, size) as in SORT: coasting on corner velocities lets a box
    # shrink or flip, while the size of a person changes slowly.
    C = _to_cxcywh(X)
    F, H, Q0 = constant_velocity_model(D, 1.0)
    mean = np.zeros((B, N, 2 * D))
    cov = np.broadcast_to(np.eye(2 * D), (B, N, 2 * D, 2 * D)).copy()
    scale = np.ones((B, N, D))  # box size of each track at birth: the unit of its noises
    born = np.zeros((B, N), dtype=bool)
    tracks = np.full((B, T, N, D), np.nan)
    assignment = np.where(valid, -1, -2)
    init_std = np.concatenate([np.full(D, observation_noise), np.full(D, initial_velocity_std)])
    for t in range(T):
        # Predict every born track of every sequence at once.
        s2 = np.tile(scale, 2)
        Q = process_noise**2 * Q0 * s2[..., :, None] * s2[..., None, :]
        pm, pc = kalman_predict(mean, cov, F, Q)
        mean = np.where(born[..., None], pm, mean)
        cov = np.where(born[..., None, None], pc, cov)
        pred_boxes = _to_xyxy(mean[..., :D])
        iou = box_iou(pred_boxes, np.where(valid[:, t, :, None], X[:, t], 0.0))  # (B, N, K)
        z = np.full((B, N, D), np.nan)  # (cx, cy, w, h) of the matched detection
        births = []
        # One small assignment problem per sequence and frame: scipy solves one per call.
        for b in np.flatnonzero(valid[:, t].any(-1)):
            dets = np.flatnonzero(valid[b, t])
            alive = np.flatnonzero(born[b])
            free = np.ones(dets.size, dtype=bool)
            if alive.size:
                rows, cols = linear_sum_assignment(-iou[b][np.ix_(alive, dets)])
                ok = iou[b, alive[rows], dets[cols]] >= iou_threshold
                z[b, alive[rows[ok]]] = C[b, t, dets[cols[ok]]]
                assignment[b, t, dets[cols[ok]]] = alive[rows[ok]]
                free[cols[ok]] = False
            unborn = np.flatnonzero(~born[b])
            for n, k in zip(unborn, dets[free], strict=False):
                births.append((b, n, k))
        # Update the matched tracks (NaN rows of z skip the update).
        # Corner jitter of std r w gives a centre std r w / sqrt(2) and a width std r w sqrt(2).
        R = (observation_noise * _size_scale(np.where(np.isnan(z), mean[..., :D], z))) ** 2
        R = R * np.array([0.5, 0.5, 2.0, 2.0])
        mean, cov, _ = kalman_update(mean, cov, z, R[..., :, None] * np.eye(D), H)
        for b, n, k in births:
            box = C[b, t, k]
            scale[b, n] = _size_scale(box)
            mean[b, n] = np.concatenate([box, np.zeros(D)])
            cov[b, n] = np.diag((init_std * np.tile(scale[b, n], 2)) ** 2)
            born[b, n] = True
            assignment[b, t, k] = n
        tracks[:, t] = np.where(born[..., None], _to_xyxy(mean[..., :D]), np.nan)
    return tracks, assignment


class SORTTracker(SequenceEstimator):
    """SORT-style reference tracker for a fixed number of objects.

    A constant-velocity Kalman filter per track (state: box centre and size, and their
    velocities, as in SORT) and
    per-frame Hungarian matching of detections to the predicted boxes on IoU. Tracks are started
    from the first frame's detections (in row order) and held, coasting on their prediction,
    when no detection matches them. It has no assignment posterior and no smoothing: it is the
    non-probabilistic reference of the tracking tables.

    Parameters
    ----------
    n_sources : int, default=3
        Number of tracked objects ``N``.
    iou_threshold : float, default=0.3
        Minimum IoU of a detection-to-track match (SORT's default).
    process_noise : float, default=0.01
        Acceleration standard deviation per frame, relative to the track's box size.
    obs_noise : float, default=0.04
        Detection noise standard deviation relative to the box size (the simulated jitter).
    initial_velocity_std : float, default=0.1
        Prior velocity standard deviation of a new track, in box sizes per frame.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Box convention of ``X``, of ``y`` in :meth:`score` and of the returned tracks.
    image_size : tuple of (width, height) or None, default=(1920, 1080)
        Image size in the units of ``X`` (pixels); boxes are tracked in image-normalised
        units. ``None`` (or ``(1, 1)``) for data that is already normalised.
    random_state : int, RandomState instance or None, default=None
        Unused (SORT is deterministic); kept for the common estimator contract.

    Attributes
    ----------
    n_features_in_ : int
        Number of coordinates per detection (4).

    Examples
    --------
    >>> from mixest.baselines import SORTTracker
    >>> from mixest.datasets import make_tracking_mixture
    >>> X, y = make_tracking_mixture(2, n_frames=20, random_state=0)
    >>> sort = SORTTracker().fit(X)
    >>> sort.predict(X).shape
    (2, 20, 3, 4)
    """

    _input_kind = "detections"
    _test_params = {"n_sources": 2}
    _parameter_constraints: dict = {
        "n_sources": [Interval(Integral, 1, None, closed="left")],
        "iou_threshold": [Interval(Real, 0, 1, closed="neither")],
        "process_noise": [Interval(Real, 0, None, closed="left")],
        "obs_noise": [Interval(Real, 0, None, closed="neither")],
        "initial_velocity_std": [Interval(Real, 0, None, closed="neither")],
        "box_format": [StrOptions({"xywh", "xyxy", "cxcywh"})],
        "image_size": [tuple, list, np.ndarray, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_sources: int = 3,
        *,
        iou_threshold: float = 0.3,
        process_noise: float = 0.01,
        obs_noise: float = 0.04,
        initial_velocity_std: float = 0.1,
        box_format: str = "xywh",
        image_size: tuple[float, float] | None = (1920, 1080),
        random_state: int | np.random.RandomState | None = None,
    ):
        self.n_sources = n_sources
        self.iou_threshold = iou_threshold
        self.process_noise = process_noise
        self.obs_noise = obs_noise
        self.initial_velocity_std = initial_velocity_std
        self.box_format = box_format
        self.image_size = image_size
        self.random_state = random_state

    def _check_X(self, X: object) -> np.ndarray:
        return check_detections(X, box_format=self.box_format)

    def fit(self, X: object, y: object = None) -> SORTTracker:
        """Validate the parameters and ``X`` (SORT learns nothing); return ``self``.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, 4)
            Detections in ``box_format`` (NaN rows missing).
        y : None
            Ignored.

        Returns
        -------
        self : SORTTracker
        """
        self._validate_params()
        X = self._check_X(X)
        self.n_features_in_ = X.shape[-1]
        return self

    def _track(self, X: object) -> tuple[np.ndarray, np.ndarray]:
        from mixest.tracking._boxes import denormalize_boxes, normalize_boxes

        check_is_fitted(self, "n_features_in_")
        X = self._check_X(X)
        size = (1.0, 1.0) if self.image_size is None else self.image_size
        Xn = normalize_boxes(X, size, self.box_format)
        tracks, assignment = sort_track(
            Xn,
            self.n_sources,
            iou_threshold=self.iou_threshold,
            process_noise=self.process_noise,
            observation_noise=self.obs_noise,
            initial_velocity_std=self.initial_velocity_std,
        )
        return denormalize_boxes(tracks, size, self.box_format), assignment

    def predict(self, X: object) -> np.ndarray:
        """Track the objects in every sequence.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, 4)
            Detections in ``box_format`` (NaN rows missing).

        Returns
        -------
        tracks : ndarray of shape (n_sequences, T, n_sources, 4)
            Boxes in ``box_format``; NaN before a track is started.
        """
        return self._track(X)[0]

    def predict_assignments(self, X: object) -> np.ndarray:
        """Hard assignments of the detections, one-hot ``(n_sequences, T, K, n_sources + 1)``.

        The last column marks detections matched to no track (the counterpart of the clutter
        class of the probabilistic trackers); rows of missing detections are all zero.
        """
        assignment = self._track(X)[1]
        out = np.zeros(assignment.shape + (self.n_sources + 1,))
        rows = assignment >= -1
        idx = np.where(assignment == -1, self.n_sources, assignment)
        np.put_along_axis(out, np.where(rows, idx, 0)[..., None], rows[..., None] * 1.0, -1)
        return out

    def score(self, X: object, y: object) -> float:
        """MOTA of :meth:`predict` against ground-truth tracks ``y`` (in ``box_format``)."""
        from mixest.tracking._metrics import mota_score

        return mota_score(y, self.predict(X), box_format=self.box_format)
