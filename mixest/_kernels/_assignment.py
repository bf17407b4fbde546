"""Batched minimum-cost one-to-one matching (the linear assignment problem) in Numba.

For each problem ``b`` of a batch, rows are the valid detections of one frame and columns the
sources (plus, optionally, clutter columns); the matching assigns each row to at most one column
and each column to at most one row, covering ``min(rows, columns)`` pairs at the least total cost.

The solver is the shortest-augmenting-path Hungarian method with row and column potentials
(O(n^2 m) for n <= m): rows are inserted one at a time, and each insertion runs a Dijkstra-like
search over reduced costs ``c_ij - u_i - v_j >= 0`` for the cheapest alternating path to a free
column, then updates the potentials so reduced costs stay non-negative. Problems of a few rows
take microseconds, which is why a batch of them runs in one compiled call instead of one
:func:`scipy.optimize.linear_sum_assignment` call per sequence and frame (scipy is the test oracle).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["min_cost_matching"]


@numba.njit(cache=True)
def _hungarian(cost, row_to_col):
    """Solve one rectangular problem with ``n <= m``; writes the column of each row."""
    n, m = cost.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=np.int64)  # row (1-based) matched to column j; 0 = free
    way = np.zeros(m + 1, dtype=np.int64)
    min_reduced = np.empty(m + 1)
    used = np.empty(m + 1, dtype=np.bool_)
    for i in range(1, n + 1):
        owner[0] = i  # column 0 is a virtual start holding the new row
        j0 = 0
        min_reduced[:] = np.inf
        used[:] = False
        while True:
            used[j0] = True
            i0 = owner[j0]
            delta = np.inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    reduced = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if reduced < min_reduced[j]:
                        min_reduced[j] = reduced
                        way[j] = j0
                    if min_reduced[j] < delta:
                        delta = min_reduced[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[owner[j]] += delta
                    v[j] -= delta
                else:
                    min_reduced[j] -= delta
            j0 = j1
            if owner[j0] == 0:  # reached a free column: augment along the path
                break
        while j0 != 0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    for j in range(1, m + 1):
        if owner[j] != 0:
            row_to_col[owner[j] - 1] = j - 1


@numba.njit(cache=True)
def _match_batch(cost, valid, out):
    B, K, C = cost.shape
    for b in range(B):
        rows = np.flatnonzero(valid[b])
        n = rows.size
        if n == 0:
            continue
        sub = np.empty((n, C))
        for r in range(n):
            sub[r] = cost[b, rows[r]]
        if n <= C:
            cols = np.full(n, -1, dtype=np.int64)
            _hungarian(sub, cols)
            for r in range(n):
                out[b, rows[r]] = cols[r]
        else:  # more rows than columns: match the columns to rows instead
            row_of_col = np.full(C, -1, dtype=np.int64)
            _hungarian(np.ascontiguousarray(sub.T), row_of_col)
            for c in range(C):
                out[b, rows[row_of_col[c]]] = c


def min_cost_matching(cost: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Minimum-cost one-to-one matching of rows to columns, for a batch of problems.

    Parameters
    ----------
    cost : ndarray of shape (B, K, C)
        Finite costs of matching row ``k`` to column ``j`` in problem ``b``.
    valid : ndarray of bool, shape (B, K), optional
        Rows that take part (the others stay unmatched); all rows by default.

    Returns
    -------
    col : ndarray of int, shape (B, K)
        The column matched to each row, ``-1`` for unmatched rows (invalid ones, or surplus
        rows when a problem has more valid rows than columns).

    Examples
    --------
    >>> import numpy as np
    >>> from mixest._kernels._assignment import min_cost_matching
    >>> min_cost_matching(np.array([[[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]]]))
    array([[1, 0, 2]])
    """
    cost = np.ascontiguousarray(cost, dtype=float)
    if cost.ndim != 3:
        raise ValueError(f"cost must have shape (B, K, C), got {cost.shape}.")
    if valid is None:
        valid = np.ones(cost.shape[:2], dtype=bool)
    valid = np.ascontiguousarray(valid, dtype=bool)
    if valid.shape != cost.shape[:2]:
        raise ValueError(f"valid must have shape {cost.shape[:2]}, got {valid.shape}.")
    if not np.isfinite(cost[valid]).all():
        raise ValueError("cost must be finite on the valid rows.")
    out = np.full(cost.shape[:2], -1, dtype=np.int64)
    if cost.shape[2] > 0:
        _match_batch(cost, valid, out)
    return out
