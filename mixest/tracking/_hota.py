"""HOTA (Luiten et al., IJCV 2021) of predicted tracks, computed by TrackEval.

The metric itself is TrackEval's (``pip install trackeval``, the reference implementation of
the MOTChallenge benchmark); mixest only turns its track arrays into TrackEval's per-frame
identities and IoU similarities (the package's one IoU, :func:`mixest.tracking.iou_matrix`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mixest.tracking._metrics import _check_has_objects, _check_inputs, iou_matrix

__all__ = ["hota_metrics", "hota_score"]

_COLUMNS = {"HOTA": "HOTA", "DetA": "DetA", "AssA": "AssA", "LocA": "LocA"}


def _trackeval_hota():
    try:
        from trackeval.metrics.hota import HOTA
    except ImportError as exc:  # pragma: no cover - trackeval is in the dev extra
        raise ImportError("HOTA is computed by TrackEval: pip install trackeval "
                          "(or mixest[hota]).") from exc
    return HOTA({"PRINT_CONFIG": False})


def _sequence_data(true: np.ndarray, pred: np.ndarray, iou: np.ndarray) -> dict:
    """TrackEval's input for one sequence: per-frame ids (columns present at least once,
    renumbered from 0) and IoU similarities."""
    true_present = ~np.isnan(true).any(-1)
    pred_present = ~np.isnan(pred).any(-1)
    true_ids = np.cumsum(true_present.any(0)) - 1
    pred_ids = np.cumsum(pred_present.any(0)) - 1
    gt_ids, tracker_ids, similarity = [], [], []
    for t in range(true.shape[0]):
        rows, cols = np.flatnonzero(true_present[t]), np.flatnonzero(pred_present[t])
        gt_ids.append(true_ids[rows])
        tracker_ids.append(pred_ids[cols])
        similarity.append(iou[t][np.ix_(rows, cols)])
    return {
        "num_timesteps": true.shape[0],
        "num_gt_ids": int(true_present.any(0).sum()),
        "num_tracker_ids": int(pred_present.any(0).sum()),
        "num_gt_dets": int(true_present.sum()),
        "num_tracker_dets": int(pred_present.sum()),
        "gt_ids": gt_ids,
        "tracker_ids": tracker_ids,
        "similarity_scores": similarity,
    }


def hota_metrics(y_true: object, y_pred: object, *, box_format: str = "xywh") -> pd.DataFrame:
    """HOTA and its detection and association parts, per window and overall.

    Higher-order tracking accuracy balances detection and association:
    :math:`\\mathrm{HOTA}_\\alpha = \\sqrt{\\mathrm{DetA}_\\alpha \\mathrm{AssA}_\\alpha}` at
    each IoU threshold :math:`\\alpha = 0.05, 0.10, \\dots, 0.95`, averaged over the
    thresholds. Computed by TrackEval's ``HOTA`` metric (the MOTChallenge implementation);
    the windows are combined as TrackEval combines sequences.

    Parameters
    ----------
    y_true : array-like of shape (n_sequences, T, N_true, 4) or (T, N_true, 4)
        Ground-truth tracks, NaN rows where an object is absent.
    y_pred : array-like of shape (n_sequences, T, N_pred, 4) or (T, N_pred, 4)
        Predicted tracks, NaN rows where a track is absent. Identities are positions along
        the ``N`` axis.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"

    Returns
    -------
    metrics : pandas.DataFrame
        One row per sequence and a last row ``"OVERALL"``; columns ``HOTA``, ``DetA``
        (detection accuracy: TP / (TP + FN + FP)), ``AssA`` (association accuracy of the
        matched boxes) and ``LocA`` (mean IoU of the matches), each averaged over the 19
        thresholds.

    Raises
    ------
    ValueError
        As :func:`mot_metrics`: shapes that disagree, invalid boxes, or a ``y_true`` without
        any box.

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.tracking import hota_metrics
    >>> y = np.array([[[[0, 0, 10, 20]], [[1, 0, 10, 20]]]], dtype=float)
    >>> float(hota_metrics(y, y).loc["OVERALL", "HOTA"])
    1.0
    """
    pred, true, box_format, _ = _check_inputs(y_pred, y_true, box_format, 0.5)
    _check_has_objects(true, "y_true")
    metric = _trackeval_hota()
    iou = iou_matrix(true, pred, box_format=box_format)
    with np.errstate(invalid="ignore", divide="ignore"):  # TrackEval's 0/0 for unused ids
        per_sequence = {i: metric.eval_sequence(_sequence_data(true[i], pred[i], iou[i]))
                        for i in range(true.shape[0])}
        overall = metric.combine_sequences(per_sequence)
    rows = [*per_sequence.values(), overall]
    table = pd.DataFrame([{name: float(np.mean(r[key])) for key, name in _COLUMNS.items()}
                          for r in rows], index=[*per_sequence, "OVERALL"])
    table.index.name = "sequence"
    return table


def hota_score(y_true: object, y_pred: object, *, box_format: str = "xywh") -> float:
    """HOTA of predicted tracks over all sequences (the ``OVERALL`` row of
    :func:`hota_metrics`; higher is better, in [0, 1])."""
    return float(hota_metrics(y_true, y_pred, box_format=box_format).loc["OVERALL", "HOTA"])
