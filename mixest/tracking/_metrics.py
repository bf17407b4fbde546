"""Multi-object tracking metrics (CLEAR MOT and identity measures) through py-motmetrics.

py-motmetrics does the frame-by-frame matching (MOTAccumulator) and the metric computation;
mixest supplies the distances: ``1 - IoU``, computed here because py-motmetrics' own
``iou_matrix`` fails under NumPy 2.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from sklearn.metrics import make_scorer

from mixest.base import check_sequences
from mixest.tracking._boxes import _check_boxes, _check_format, box_iou, convert_boxes

__all__ = [
    "idf1_score",
    "idf1_scorer",
    "iou_matrix",
    "mot_metrics",
    "mota_score",
    "mota_scorer",
    "motp_score",
    "motp_scorer",
]

# py-motmetrics metric name -> column name in mot_metrics' output.
_METRICS = {
    "mota": "MOTA",
    "motp": "MOTP",
    "idf1": "IDF1",
    "idp": "IDP",
    "idr": "IDR",
    "num_switches": "IDs",
    "mostly_tracked": "MT",
    "partially_tracked": "PT",
    "mostly_lost": "ML",
    "num_false_positives": "FP",
    "num_misses": "FN",
    "num_fragmentations": "FM",
    "num_objects": "num_objects",
    "precision": "precision",
    "recall": "recall",
}
_COUNTS = ("IDs", "MT", "PT", "ML", "FP", "FN", "FM", "num_objects")


def iou_matrix(a: object, b: object, box_format: str = "xywh") -> np.ndarray:
    """Intersection over union of every pair of boxes.

    Parameters
    ----------
    a : array-like of shape (..., M, 4)
        First set of boxes.
    b : array-like of shape (..., P, 4)
        Second set of boxes; leading axes broadcast with those of ``a``.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Format of both sets.

    Returns
    -------
    iou : ndarray of shape (..., M, P)
        ``area(a_i & b_j) / area(a_i | b_j)`` in ``[0, 1]``; NaN where either box is NaN, and 0
        for two empty (zero-area) boxes. Areas are continuous (no MOTChallenge "+1 pixel").
    """
    box_format = _check_format(box_format, "box_format")
    a = convert_boxes(_check_boxes(a, "a", box_format), box_format, "xyxy")
    b = convert_boxes(_check_boxes(b, "b", box_format), box_format, "xyxy")
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(
            f"a and b must have shape (..., M, 4) and (..., P, 4), got {a.shape} and {b.shape}."
        )
    return box_iou(a, b)


def _check_threshold(iou_threshold: object) -> float:
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, numbers.Real):
        raise TypeError(f"iou_threshold must be a real number, got {type(iou_threshold).__name__}.")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}.")
    return float(iou_threshold)


def _check_tracks(tracks: object, name: str) -> np.ndarray:
    arr = check_sequences(
        tracks,
        name=name,
        ndim=(3, 4),
        allow_nan=True,
        last_dim=4,
        axis_names="(n_sequences, T, N, 4) or (T, N, 4)",
        min_length=0,
    )
    if arr.ndim == 3:
        arr = arr[None]
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one sequence and one frame, got {arr.shape}.")
    nan = np.isnan(arr)
    if np.any(nan.any(axis=-1) & ~nan.all(axis=-1)):
        raise ValueError(f"{name} has boxes with only some coordinates NaN; a missing box is NaN.")
    return arr


def _accumulators(
    pred: np.ndarray, true: np.ndarray, box_format: str, thr: float, *, pooled: bool = False
) -> list:
    """One py-motmetrics accumulator per sequence, or a single one for all (``pooled``).

    The pooled accumulator gives every sequence its own frame numbers and identities, so that
    nothing is matched across sequences: its metrics are those of the ``OVERALL`` row, at the
    cost of one computation instead of one per sequence.
    """
    import motmetrics as mm

    n, T, n_true, n_pred = true.shape[0], true.shape[1], true.shape[2], pred.shape[2]
    # Distances for all sequences and frames at once: (n, T, N_true, N_pred).
    iou = iou_matrix(true, pred, box_format=box_format)
    with np.errstate(invalid="ignore"):
        dist = np.where(iou >= thr, 1.0 - iou, np.nan)
    true_present = ~np.isnan(true).any(axis=-1)
    pred_present = ~np.isnan(pred).any(axis=-1)
    accs = []
    acc = None
    for i in range(n):
        if acc is None or not pooled:
            acc = mm.MOTAccumulator(auto_id=False)
            accs.append(acc)
        offset = i if pooled else 0
        for t in range(T):
            oids = np.flatnonzero(true_present[i, t])
            hids = np.flatnonzero(pred_present[i, t])
            acc.update(
                oids + offset * n_true,
                hids + offset * n_pred,
                dist[i, t][np.ix_(oids, hids)],
                frameid=offset * T + t,
            )
    return accs


def _check_inputs(
    y_pred: object, y_true: object, box_format: object, iou_threshold: object
) -> tuple[np.ndarray, np.ndarray, str, float]:
    box_format = _check_format(box_format, "box_format")
    thr = _check_threshold(iou_threshold)
    pred = _check_tracks(y_pred, "y_pred")
    true = _check_tracks(y_true, "y_true")
    if pred.shape[:2] != true.shape[:2]:
        raise ValueError(
            "y_pred and y_true must have the same number of sequences and frames, "
            f"got shapes {pred.shape} and {true.shape}."
        )
    _check_boxes(pred, "y_pred", box_format)
    _check_boxes(true, "y_true", box_format)
    return pred, true, box_format, thr


def _check_has_objects(true: np.ndarray, name: str) -> None:
    """Refuse ground truth without a single box: MOTA divides by the number of objects."""
    if true.shape[2] == 0 or np.isnan(true).all():
        raise ValueError(
            f"{name} holds no object (N_true = 0 or every box NaN): MOTA divides by the number "
            "of true boxes and is undefined; score data with at least one true box."
        )


def mot_metrics(
    y_true: object,
    y_pred: object,
    *,
    box_format: str = "xywh",
    iou_threshold: float = 0.5,
) -> pd.DataFrame:
    """CLEAR MOT and identity metrics of predicted tracks, per window and overall.

    Matching follows the CLEAR MOT protocol of py-motmetrics: in every frame, a predicted box
    can match a true box when their IoU is at least ``iou_threshold``; matches of the previous
    frame are kept when still valid, the rest is solved by minimum-cost assignment on
    ``1 - IoU``. Identities are positions along the ``N`` axis of each array.

    Parameters
    ----------
    y_true : array-like of shape (n_sequences, T, N_true, 4) or (T, N_true, 4)
        Ground-truth tracks, NaN rows where an object is absent.
    y_pred : array-like of shape (n_sequences, T, N_pred, 4) or (T, N_pred, 4)
        Predicted tracks (e.g. a tracker's ``predict(X)``); NaN rows where a track is absent.
        The truth comes first, as in scikit-learn's metrics and :func:`mota_score`.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Box format of both arrays (IoU does not depend on the units, so pixel and normalised
        boxes give the same result as long as both arrays use the same ones).
    iou_threshold : float, default=0.5
        Minimum IoU of a match.

    Returns
    -------
    metrics : pandas.DataFrame
        One row per sequence (index ``0 .. n_sequences - 1``) and a last row ``"OVERALL"``
        (all sequences pooled, so counts add up and ratios are over all frames). Columns:

        - ``MOTA``: ``1 - (FN + FP + IDs) / num_objects`` (higher is better, at most 1); NaN
          (undefined) in the row of a sequence without any true box.
        - ``MOTP``: **mean IoU of the matched pairs** (higher is better, in
          ``[iou_threshold, 1]``; NaN without matches). py-motmetrics' own ``motp`` is the mean
          distance ``1 - IoU``; mixest reports ``1 - motp``, the convention of recent papers.
        - ``IDF1``, ``IDP``, ``IDR``: identity F1, precision and recall after the global
          one-to-one matching of true and predicted identities.
        - ``IDs``: identity switches; ``MT``/``PT``/``ML``: objects tracked for at least 80%,
          between 20% and 80%, less than 20% of their presence; ``FP``: false positives;
          ``FN``: misses; ``FM``: fragmentations.
        - ``num_objects``: number of true boxes; ``precision``, ``recall``: of the matching.

    Raises
    ------
    ValueError
        Shapes that do not agree on the number of sequences and frames, infinite values,
        negative box sizes, an invalid ``iou_threshold``, or a ``y_true`` without any box (no
        object to score).
    """
    import motmetrics as mm

    pred, true, box_format, thr = _check_inputs(y_pred, y_true, box_format, iou_threshold)
    _check_has_objects(true, "y_true")
    accs = _accumulators(pred, true, box_format, thr)
    names = list(range(len(accs)))
    summary = mm.metrics.create().compute_many(
        accs, metrics=list(_METRICS), names=names, generate_overall=True
    )
    summary = summary.rename(columns=_METRICS)
    summary["MOTP"] = 1.0 - summary["MOTP"].astype(np.float64)
    # py-motmetrics gives -inf or NaN for a sequence without objects: say "undefined" alike.
    summary.loc[summary["num_objects"] == 0, "MOTA"] = np.nan
    for col in _COUNTS:
        summary[col] = summary[col].astype(np.int64)
    summary.index = [*names, "OVERALL"]
    summary.index.name = "sequence"
    return summary[list(_METRICS.values())]


def _overall(
    y_true: object, y_pred: object, metric: str, box_format: object, iou_threshold: object
) -> float:
    """One pooled metric over all sequences: the OVERALL row of mot_metrics, computed once."""
    import motmetrics as mm

    pred, true, box_format, thr = _check_inputs(y_pred, y_true, box_format, iou_threshold)
    if metric == "mota":
        _check_has_objects(true, "y_true")
    (acc,) = _accumulators(pred, true, box_format, thr, pooled=True)
    value = float(
        mm.metrics.create().compute(acc, metrics=[metric], return_dataframe=False)[metric]
    )
    return 1.0 - value if metric == "motp" else value


def mota_score(
    y_true: object, y_pred: object, *, box_format: str = "xywh", iou_threshold: float = 0.5
) -> float:
    """MOTA of predicted tracks over all sequences (higher is better, at most 1).

    Parameters
    ----------
    y_true : array-like of shape (n_sequences, T, N_true, 4)
        Ground-truth tracks, NaN where absent.
    y_pred : array-like of shape (n_sequences, T, N_pred, 4)
        Predicted tracks, NaN where absent.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
    iou_threshold : float, default=0.5

    Returns
    -------
    mota : float
        ``1 - (FN + FP + IDs) / num_objects`` pooled over all sequences (see
        :func:`mot_metrics`).

    Raises
    ------
    ValueError
        If ``y_true`` holds no box at all (``N_true = 0`` or every box NaN): MOTA is undefined
        without objects, so it is refused rather than returned as ``-inf``.
    """
    return _overall(y_true, y_pred, "mota", box_format, iou_threshold)


def idf1_score(
    y_true: object, y_pred: object, *, box_format: str = "xywh", iou_threshold: float = 0.5
) -> float:
    """IDF1 of predicted tracks over all sequences (higher is better, in [0, 1]).

    Parameters are those of :func:`mota_score`. Identities are matched one-to-one within each
    sequence; the identity true positives, false positives and false negatives are pooled over
    sequences.
    """
    return _overall(y_true, y_pred, "idf1", box_format, iou_threshold)


def motp_score(
    y_true: object, y_pred: object, *, box_format: str = "xywh", iou_threshold: float = 0.5
) -> float:
    """MOTP as the mean IoU of matched boxes over all sequences (higher is better).

    Parameters are those of :func:`mota_score`. NaN when nothing matches.
    """
    return _overall(y_true, y_pred, "motp", box_format, iou_threshold)


#: Scorer ``scorer(estimator, X, y)``: MOTA of ``estimator.predict(X)`` against tracks ``y``;
#: usable as ``GridSearchCV(scoring=mota_scorer)``.
mota_scorer = make_scorer(mota_score)
#: Scorer ``scorer(estimator, X, y)``: IDF1 of ``estimator.predict(X)`` against tracks ``y``.
idf1_scorer = make_scorer(idf1_score)
#: Scorer ``scorer(estimator, X, y)``: MOTP (mean IoU) of ``estimator.predict(X)`` against ``y``.
motp_scorer = make_scorer(motp_score)
