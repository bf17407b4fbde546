"""Greedy nearest-neighbour tracker: the floor every tracking table carries.

Each frame's detections are matched to the tracks' last positions by minimum-cost assignment
(:func:`scipy.optimize.linear_sum_assignment` on the Euclidean distance between box coordinates);
an unmatched track stays where it was. There are no dynamics: on easy data it is nearly perfect,
so a tracker earns its place on hard data.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.utils._param_validation import Interval, StrOptions

from mixest.base import SequenceEstimator

__all__ = ["GreedyTracker", "greedy_track"]


def greedy_track(X: np.ndarray, n_sources: int) -> np.ndarray:
    """Track ``n_sources`` objects by frame-to-frame Hungarian matching.

    Parameters
    ----------
    X : ndarray of shape (n_sequences, T, K, D)
        Detections, NaN rows for missing ones (any units).
    n_sources : int

    Returns
    -------
    tracks : ndarray of shape (n_sequences, T, n_sources, D)
        Tracks start at the first frame where a source can be seeded (earlier frames copy it).
    """
    from mixest.tracking._observation import initial_means

    B, T, K, D = X.shape
    valid = ~np.isnan(X).any(-1)
    last, _ = initial_means(X, valid, n_sources)  # (B, N, D)
    tracks = np.empty((B, T, n_sources, D))
    # the assignment itself is a small per-frame LAP; the loop is over frames and sequences
    # because scipy solves one problem per call.
    for t in range(T):
        for b in range(B):
            rows = np.flatnonzero(valid[b, t])
            if rows.size:
                cost = np.linalg.norm(last[b][:, None, :] - X[b, t, rows][None], axis=-1)
                src, det = linear_sum_assignment(cost)
                last[b, src] = X[b, t, rows[det]]
        tracks[:, t] = last
    return tracks


class GreedyTracker(SequenceEstimator):
    """Frame-to-frame Hungarian matching to the last positions, no dynamics.

    Parameters
    ----------
    n_sources : int, default=3
        Number of tracked objects.
    box_format : {"xywh", "xyxy"}, default="xywh"
        Box convention of the input (and output); only used by :meth:`score`.

    Examples
    --------
    >>> from mixest.baselines import GreedyTracker
    >>> from mixest.datasets import make_tracking_mixture
    >>> X, y = make_tracking_mixture(2, n_frames=20, random_state=0)
    >>> GreedyTracker().fit(X).predict(X).shape
    (2, 20, 3, 4)
    """

    _input_kind = "detections"
    _deterministic = True
    _test_params = {"n_sources": 2}
    _parameter_constraints: dict = {
        "n_sources": [Interval(Integral, 1, None, closed="left")],
        "box_format": [StrOptions({"xywh", "xyxy"})],
    }

    def __init__(self, n_sources: int = 3, box_format: str = "xywh"):
        self.n_sources = n_sources
        self.box_format = box_format

    def fit(self, X, y=None):
        """Validate the parameters (nothing to learn); return ``self``.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, D)
            Detections, NaN rows for missing ones; with ``D = 4`` they are boxes in
            ``box_format`` and must not have negative sizes.
        y : None
            Ignored.

        Returns
        -------
        self : GreedyTracker
        """
        self._validate_params()
        X = self._check_X(X)
        self.n_features_in_ = X.shape[-1]
        return self

    def _check_X(self, X):
        from mixest.tracking._boxes import _check_boxes
        from mixest.tracking._validation import check_detections

        X = check_detections(X, box_format=self.box_format, boxes_only=False)
        if X.shape[-1] == 4:  # boxes: a negative width or height is a corrupt detection
            _check_boxes(X, "X", self.box_format)
        return X

    def predict(self, X) -> np.ndarray:
        """Tracks ``(n_sequences, T, n_sources, D)`` in the input's units.

        Raises
        ------
        ValueError
            If ``X`` has another number of features ``D`` than at :meth:`fit`.
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "n_features_in_")
        X = self._check_X(X)
        if X.shape[-1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[-1]} features per detection, but GreedyTracker was fitted "
                f"with {self.n_features_in_}."
            )
        from mixest.tracking._validation import sequences_without_detections

        tracks = greedy_track(X, self.n_sources)
        tracks[sequences_without_detections(X)] = np.nan  # nothing to track: no invented boxes
        return tracks

    def score(self, X, y) -> float:
        """MOTA of :meth:`predict` against ground-truth tracks ``y``."""
        from mixest.tracking._metrics import mota_score

        return mota_score(y, self.predict(X), box_format=self.box_format)

