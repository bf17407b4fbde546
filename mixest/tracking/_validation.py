"""Input validation shared by every tracker: detection arrays or MOTChallenge tables."""

from __future__ import annotations

import numpy as np

from mixest.base import check_sequences
from mixest.tracking._boxes import convert_boxes

__all__ = ["check_detections", "detection_tables_to_array", "sequences_without_detections"]


def _is_table_list(X: object) -> bool:
    return isinstance(X, list) and len(X) > 0 and all(hasattr(x, "columns") for x in X)


def detection_tables_to_array(tables: list, box_format: str = "xywh") -> np.ndarray:
    """Stack per-sequence MOTChallenge detection tables into one NaN-padded array.

    Parameters
    ----------
    tables : list of pandas.DataFrame
        One detection table per sequence (e.g. ``read_mot("det/det.txt")``), ``xywh`` pixels.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Format of the returned boxes.

    Returns
    -------
    X : ndarray of shape (n_sequences, T, K, 4)
        ``T`` and ``K`` are the largest over the tables; shorter sequences and frames with fewer
        detections are padded with NaN rows (missing detections).

    Raises
    ------
    TypeError
        If ``tables`` is not a list (or tuple) of pandas DataFrames.
    ValueError
        If ``tables`` is empty: there is no sequence to stack.
    """
    from mixest.tracking._motchallenge import detections_to_array

    if not isinstance(tables, (list, tuple)):
        raise TypeError(
            f"tables must be a list of pandas DataFrames (one per sequence), got "
            f"{type(tables).__name__}."
        )
    if len(tables) == 0:
        raise ValueError("tables is empty; pass one detection table per sequence (at least one).")
    bad = [type(t).__name__ for t in tables if not hasattr(t, "columns")]
    if bad:
        raise TypeError(f"tables must hold pandas DataFrames, got {bad[0]}.")

    arrays = [detections_to_array(table) for table in tables]
    T = max(a.shape[0] for a in arrays)
    K = max(a.shape[1] for a in arrays)
    out = np.full((len(arrays), T, K, 4), np.nan)
    for i, a in enumerate(arrays):  # one table per sequence: not a hot path
        out[i, : a.shape[0], : a.shape[1]] = a
    return convert_boxes(out, "xywh", box_format)


def check_detections(
    X: object, *, box_format: str = "xywh", boxes_only: bool = True, name: str = "X"
) -> np.ndarray:
    """Validate a tracker's input and return it as a float array ``(n_sequences, T, K, D)``.

    Parameters
    ----------
    X : array-like of shape (n_sequences, T, K, D) or list of pandas.DataFrame
        Detections with NaN rows for missing ones, or per-sequence MOTChallenge detection tables
        (converted to ``box_format``).
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Box convention the tracker works in (only used to convert tables).
    boxes_only : bool, default=True
        Require ``D = 4`` box coordinates; trackers that accept any ``D`` pass False.
    name : str, default="X"
        Argument name used in error messages.

    Raises
    ------
    TypeError
        If ``X`` is not numeric, or is boolean (a mask is not a set of boxes).
    ValueError
        If its shape is wrong or it holds infinite values.
    """
    if _is_table_list(X):
        X = detection_tables_to_array(X, box_format)
    elif np.asarray(X).dtype == np.bool_:
        # check_sequences would turn a mask into 0/1 coordinates without a word.
        raise TypeError(f"{name} must hold numeric box coordinates, got a boolean array.")
    last_dim = 4 if boxes_only else None
    shape = f"(n_sequences, T, K, {'4' if boxes_only else 'D'})"
    return check_sequences(
        X, name=name, ndim=4, allow_nan=True, last_dim=last_dim, axis_names=shape
    )


def sequences_without_detections(X: np.ndarray) -> np.ndarray:
    """Which sequences of ``X`` ``(n_sequences, T, K, D)`` hold no detection at all, with one
    warning naming them.

    There is nothing to track in such a sequence: trackers return NaN tracks for it rather than
    inventing boxes (a batch of sequences is still tracked).

    Returns
    -------
    empty : ndarray of bool, shape (n_sequences,)
    """
    import warnings

    empty = np.isnan(X).any(-1).all((1, 2))
    if empty.any():
        listed = ", ".join(str(i) for i in np.flatnonzero(empty)[:10])
        more = " ..." if empty.sum() > 10 else ""
        warnings.warn(f"{empty.sum()} of {len(X)} sequence(s) hold no detection "
                      f"(index {listed}{more}): their tracks are NaN.", UserWarning, stacklevel=3)
    return empty
