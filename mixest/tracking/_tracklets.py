"""Tracklet initialisation: link boxes by overlap, then chain each source's tracklets.

Among other people's boxes (clutter), a motion model that matches one frame at a time loses a
target whenever the detector misses it for a few frames: its prediction spreads over a
neighbour's box and follows the neighbour. Overlap is a safer first cue. Boxes of consecutive
frames are linked one-to-one by IoU (a link needs IoU >= ``min_iou``), which yields tracklets
that rarely mix two people; each source then starts on the tracklet of its first detection and
is extended, again and again, by the unclaimed tracklet that goes on past its end, joins within
``max_gap`` frames of it and is closest to where its end would be by then at the velocity of
its last frames (centre distance in box sizes over the fourth root of the gap, plus twice the
log ratio of the heights), if that cost is below ``gate``. The distance a join may span grows
that slowly with the gap because a crowd's other people are many and near: over a long gap
a neighbour's tracklet is more often within reach than the target's own. A tracklet that is
already running at the end joins from the next frame on: a person's boxes often split into
two tracklets that overlap in time (two boxes of one person, or a link lost to jitter). Ends
and joins are the medians of the centres and sizes of ``end_boxes`` boxes, placed at the mean
of their frames: a single box there is often a bad one (a partly hidden person, or two people
in one box, just before the detector loses one). Between two pieces of a chain the box moves
linearly; before the first and after the last it is held.
:class:`~mixest.tracking.GaussianDetections` (``init="auto"``) uses it for the sequences
whose frames hold more boxes than sources.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mixest._kernels._assignment import min_cost_matching
from mixest.tracking._boxes import box_iou

__all__ = ["ChainSettings", "link_tracklets", "source_chains", "tracklet_means"]


class ChainSettings(NamedTuple):
    """How boxes are linked into tracklets and tracklets chained (see the module docstring).

    The defaults are the tracker's. They were first chosen on the first halves of
    MOT17-02/05/09 (``real + clutter`` windows; min_iou 0.3-0.7, gate 0.5-2, max_gap 15-60,
    velocity over 5-30 frames, shrinkage 1-9, medians of 1-10 boxes tried). Those are the
    bundled detector's training frames, whose near-perfect boxes favour long joins, so they
    were chosen again leave-one-sequence-out on the second halves, which it never saw, one at
    a time (``benchmarks/tracklet_settings.py``): there every sequence's choice made on the
    other two is ``gap_power`` 1/4 (of 0-1/2; 1/2 before) and ``max_gap`` 45 (of 15-90; 30
    before), and the others keep their values.
    """

    #: smallest IoU of a link between boxes of consecutive frames
    min_iou: float = 0.5
    #: most frames a join may span
    max_gap: int = 45
    #: largest cost of a join
    gate: float = 1.0
    #: power of the gap that divides a join's centre distance
    gap_power: float = 0.25
    #: frames before a tracklet's end whose boxes give its velocity
    velocity_frames: int = 10
    #: shrinkage of that velocity towards 0 (see _end_velocity)
    velocity_shrink: float = 2.0
    #: boxes whose median is a chain's end or a tracklet's join
    end_boxes: int = 5


#: The tracker's settings.
DEFAULT = ChainSettings()

# the cost of a link that cannot be (a missing box), finite for the matching solver
_NO_LINK = 1e9


def link_tracklets(boxes: np.ndarray, valid: np.ndarray,
                   min_iou: float = DEFAULT.min_iou) -> np.ndarray:
    """Tracklet label of every box: consecutive frames' boxes linked one-to-one by IoU.

    Parameters
    ----------
    boxes : ndarray of shape (B, T, K, 4)
        ``xyxy`` boxes (rows not ``valid`` are ignored).
    valid : ndarray of bool, shape (B, T, K)
    min_iou : float
        Smallest IoU of a link; the matching maximises the summed IoU of the links.

    Returns
    -------
    label : ndarray of int, shape (B, T, K)
        Tracklet number within each sequence (0, 1, ... in order of their first box), -1 for
        missing boxes.
    """
    B, T, K, _ = boxes.shape
    label = np.full((B, T, K), -1, dtype=np.int64)
    count = np.zeros(B, dtype=np.int64)
    for t in range(T):
        if t > 0:
            iou = np.nan_to_num(box_iou(boxes[:, t], boxes[:, t - 1]))  # (B, K now, K before)
            link = np.where(valid[:, t - 1][:, None, :], -iou, _NO_LINK)
            # K columns "new tracklet" at the threshold's cost: a weaker link is not taken
            cost = np.concatenate([link, np.full((B, K, K), -min_iou)], -1)
            col = min_cost_matching(cost, valid[:, t])
            linked = (col >= 0) & (col < K)
            b, k = np.nonzero(linked)
            label[b, t, k] = label[b, t - 1, col[b, k]]
        for b, k in zip(*np.nonzero(valid[:, t] & (label[:, t] < 0)), strict=True):
            label[b, t, k] = count[b]
            count[b] += 1
    return label


def _chains(boxes: np.ndarray, label: np.ndarray, heads: list[int],
            settings: ChainSettings = DEFAULT) -> list[list[tuple[int, int]]]:
    """Each head's chain in one sequence (see the module docstring): its pieces as
    ``(tracklet, first frame taken)``."""
    n = label.max() + 1
    t_idx, k_idx = np.nonzero(label >= 0)
    lab = label[t_idx, k_idx]
    order = np.lexsort((t_idx, lab))  # each tracklet's boxes together, in frame order
    t_idx, lab = t_idx[order], lab[order]
    rows = boxes[t_idx, k_idx[order]]
    offset = np.searchsorted(lab, np.arange(n))
    first = t_idx[offset]
    last = first + np.bincount(lab, minlength=n) - 1  # a tracklet has a box in every frame
    max_gap, gate, n_end = settings.max_gap, settings.gate, settings.end_boxes
    end_box, end_frame = _median_box(rows, last[:, None] - np.arange(n_end), offset, first,
                                     last)
    velocity = _end_velocity(rows, t_idx, lab, last, n, settings.velocity_frames,
                             settings.velocity_shrink)
    claimed = np.zeros(n, dtype=bool)
    claimed[heads] = True
    chains = [[(h, 0)] for h in heads]
    active = list(range(len(heads)))
    while active:
        proposals = []
        for s in active:
            end = chains[s][-1][0]
            box = end_box[end]
            w, h = abs(box[2] - box[0]), abs(box[3] - box[1])
            join = np.maximum(first, last[end] + 1)  # a running tracklet joins after the end
            gap = join - last[end]
            cand = np.flatnonzero(~claimed & (last > last[end]) & (gap <= max_gap))
            if not len(cand):
                continue
            c, frame = _median_box(rows, join[cand, None] + np.arange(n_end), offset[cand],
                                   first[cand], last[cand])
            # where the end's centre would be by then, at its velocity
            ahead = velocity[end][None] * (frame - end_frame[end])[:, None]
            with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes: no link
                dx = ((c[:, 0] + c[:, 2]) - (box[0] + box[2])) / (2 * w) - ahead[:, 0] / w
                dy = ((c[:, 1] + c[:, 3]) - (box[1] + box[3])) / (2 * h) - ahead[:, 1] / h
                cost = (np.hypot(dx, dy) / gap[cand] ** settings.gap_power
                        + 2.0 * np.abs(np.log(np.abs(c[:, 3] - c[:, 1]) / h)))
            cost = np.where(np.isnan(cost), np.inf, cost)
            j = int(np.argmin(cost))
            if cost[j] < gate:
                proposals.append((cost[j], s, int(cand[j]), int(join[cand[j]])))
        taken = set()
        waiting = []
        for _, s, tracklet, start in sorted(proposals):  # the cheapest continuation first
            if tracklet in taken:
                waiting.append(s)  # proposes again once the tracklet it wanted is gone
                continue
            taken.add(tracklet)
            claimed[tracklet] = True
            chains[s].append((tracklet, start))
            waiting.append(s)
        active = waiting if taken else []
    return chains


def _median_box(rows: np.ndarray, frames: np.ndarray, offset: np.ndarray, first: np.ndarray,
                last: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``xyxy`` box of median centre and median size of each tracklet's boxes in its row
    of ``frames`` ``(m, n_frames)``, and the mean of those frames (where that box is), frames
    outside the tracklet skipped (at least one must be inside). ``rows``: every box, each
    tracklet's together in frame order from ``offset``; ``offset``, ``first``, ``last``:
    ``(m,)``, per tracklet."""
    inside = (frames >= first[:, None]) & (frames <= last[:, None])
    b = rows[np.where(inside, offset[:, None] + frames - first[:, None], 0)]
    values = np.concatenate([0.5 * (b[..., :2] + b[..., 2:]), b[..., 2:] - b[..., :2]], -1)
    values = np.sort(np.where(inside[..., None], values, np.inf), axis=1)  # outside: last
    count = inside.sum(1)
    m = np.arange(len(count))
    median = 0.5 * (values[m, (count - 1) // 2] + values[m, count // 2])  # np.nanmedian's
    centre, size = median[:, :2], median[:, 2:]
    frame = (frames * inside).sum(1) / count
    return np.concatenate([centre - 0.5 * size, centre + 0.5 * size], -1), frame


def _end_velocity(boxes: np.ndarray, t: np.ndarray, label: np.ndarray, last: np.ndarray,
                  n: int, frames: int = DEFAULT.velocity_frames,
                  shrink: float = DEFAULT.velocity_shrink) -> np.ndarray:
    """Each tracklet's centre velocity ``(n, 2)`` per frame: the least-squares slope over its
    boxes of the last ``frames`` frames before its end (0 with fewer than 3), shrunk
    towards 0 by :math:`\\max(0, 1 - c\\,\\mathrm{se}^2 / \\mathrm{slope}^2)`, ``c`` =
    ``shrink`` and se the slope's standard error (a positive-part James-Stein rule: a
    standing person's jitter gives no velocity, a walker keeps nearly all of hers)."""
    centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
    recent = t >= last[label] - frames
    lab, t, centre = label[recent], t[recent].astype(float), centre[recent]
    count = np.bincount(lab, minlength=n)
    mean_t = np.bincount(lab, t, n) / np.maximum(count, 1)
    dt = t - mean_t[lab]
    var = np.where(count >= 3, np.bincount(lab, dt * dt, n), 1.0)
    out = np.zeros((n, 2))
    for d in range(2):
        mean_c = np.bincount(lab, centre[:, d], n) / np.maximum(count, 1)
        slope = np.bincount(lab, dt * (centre[:, d] - mean_c[lab]), n) / var
        residual = centre[:, d] - mean_c[lab] - slope[lab] * dt
        se2 = np.bincount(lab, residual**2, n) / np.maximum(count - 2, 1) / var
        with np.errstate(divide="ignore", invalid="ignore"):  # 0 / 0: no slope, no velocity
            keep = np.nan_to_num(np.clip(1.0 - shrink * se2 / slope**2, 0.0, 1.0))
        out[:, d] = np.where(count >= 3, slope * keep, 0.0)
    return out


def source_chains(obs: np.ndarray, valid: np.ndarray, t0: np.ndarray, n_sources: int,
                  settings: ChainSettings = DEFAULT) -> tuple[np.ndarray, list]:
    """The tracklets and each source's chain of them.

    Source ``n`` of sequence ``b`` starts on the tracklet of the ``n``-th valid box of frame
    ``t0[b]`` (fewer boxes there: fewer chains). Returns the tracklet labels of
    :func:`link_tracklets` ``(B, T, K)`` and, per sequence, the sources' chains as lists of
    ``(tracklet, first frame taken)``.
    """
    label = link_tracklets(obs, valid, settings.min_iou)
    chains = []
    for b in range(obs.shape[0]):
        rows = np.flatnonzero(valid[b, t0[b]])[:n_sources]
        heads = [int(label[b, t0[b], k]) for k in rows]
        chains.append(_chains(obs[b], label[b], heads, settings))
    return label, chains


def tracklet_means(obs: np.ndarray, valid: np.ndarray, start: np.ndarray, t0: np.ndarray,
                   values: np.ndarray | None = None,
                   settings: ChainSettings = DEFAULT) -> np.ndarray:
    """Sources' boxes ``(B, T, N, 4)`` (or other ``values``) along the chains of their tracklets.

    Parameters
    ----------
    obs : ndarray of shape (B, T, K, 4)
        ``xyxy`` boxes, NaN rows when missing.
    valid : ndarray of bool, shape (B, T, K)
    start, t0 : ndarray
        :func:`~mixest.tracking.initial_means`: the sources start on the tracklets of frame
        ``t0``'s first ``N`` valid boxes, in that order; a source without one is held at its
        row of ``start`` ``(B, N, F)`` in every frame.
    values : ndarray of shape (B, T, K, F), optional
        What to carry along the chains, per box (default: the boxes): the sources get each
        frame's value of their box, linearly interpolated between two pieces of a chain.
    settings : ChainSettings, default=DEFAULT
        How the tracklets are linked and chained.
    """
    B, T, K, _ = obs.shape
    values = obs if values is None else values
    label, chains = source_chains(obs, valid, t0, start.shape[1], settings)
    out = np.repeat(start[:, None], T, axis=1)
    frames = np.arange(T)
    for b in range(B):
        for s, chain in enumerate(chains[b]):
            taken = np.zeros((T, K), dtype=bool)
            for tracklet, first in chain:
                taken[first:] |= label[b, first:] == tracklet
            t_idx, k_idx = np.nonzero(taken)
            for f in range(values.shape[-1]):
                out[b, :, s, f] = np.interp(frames, t_idx, values[b, t_idx, k_idx, f])
    return out
