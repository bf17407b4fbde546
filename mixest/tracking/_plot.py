"""A picture of tracks against the frame number: what a tracking user looks at."""

from __future__ import annotations

from typing import Any

import numpy as np

from mixest.tracking._boxes import box_iou, convert_boxes

__all__ = ["plot_tracks"]


def plot_tracks(
    detections: Any,
    tracks: Any,
    *,
    box_format: str = "xywh",
    first_frame: int = 1,
    iou_threshold: float = 0.5,
    axes: Any = None,
) -> Any:
    """Plot each track's box centre, x and y against the frame number, over the detections.

    One sequence. Every detection is coloured by the track it overlaps best (IoU at least
    ``iou_threshold``), grey when it overlaps none (clutter, or an object not tracked). A track
    is drawn solid where a detection supports it and dotted where it coasts (no detection
    overlaps it), with a circle at its first frame and a square at its last. Any tracker's
    output can be drawn, with or without assignment probabilities.

    Parameters
    ----------
    detections : array-like of shape (T, K, 4)
        Detection boxes, NaN rows for missing ones.
    tracks : array-like of shape (T, N, 4)
        Track boxes (NaN where a track does not exist), same format and units.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
    first_frame : int, default=1
        Number of the first frame (MOTChallenge frames start at 1).
    iou_threshold : float, default=0.5
        Overlap that links a detection to a track (the MOT metrics' match threshold).
    axes : sequence of two matplotlib Axes, optional
        Where to draw x and y; a new figure when None.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    det = np.asarray(detections, dtype=float)
    trk = np.asarray(tracks, dtype=float)
    if det.ndim != 3 or det.shape[-1] != 4:
        raise ValueError(f"detections must have shape (T, K, 4), got {det.shape}.")
    if trk.ndim != 3 or trk.shape[-1] != 4 or trk.shape[0] != det.shape[0]:
        raise ValueError(f"tracks must have shape ({det.shape[0]}, N, 4), got {trk.shape}.")
    det = convert_boxes(det, box_format, "cxcywh") if box_format != "cxcywh" else det
    trk_c = convert_boxes(trk, box_format, "cxcywh") if box_format != "cxcywh" else trk
    iou = np.nan_to_num(box_iou(convert_boxes(det, "cxcywh", "xyxy"),
                                convert_boxes(trk_c, "cxcywh", "xyxy")))  # (T, K, N)
    owner = np.where(iou.max(-1) >= iou_threshold, iou.argmax(-1), -1)  # (T, K)
    supported = np.zeros(trk.shape[:2], dtype=bool)  # (T, N): a detection overlaps the track
    t_idx, k_idx = np.nonzero(owner >= 0)
    supported[t_idx, owner[t_idx, k_idx]] = True
    frames = first_frame + np.arange(det.shape[0])
    if axes is None:
        fig, axes = plt.subplots(2, 1, sharex=True, figsize=(9, 5.5))
    else:
        fig = axes[0].figure
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    size = 4 if det.shape[0] > 200 else 9
    for ax, coord, label in zip(axes, (0, 1), ("x centre", "y centre"), strict=True):
        free = (owner < 0) & np.isfinite(det).all(-1)  # seen, but overlapping no track
        ax.scatter(np.broadcast_to(frames[:, None], free.shape)[free], det[..., coord][free],
                   s=size, c="0.75", lw=0, label="detection, no track")
        for n in range(trk.shape[1]):
            colour = colours[n % len(colours)]
            mine = owner == n
            ax.scatter(np.broadcast_to(frames[:, None], mine.shape)[mine],
                       det[..., coord][mine], s=size, color=colour, alpha=0.5, lw=0)
            value = trk_c[:, n, coord]
            ax.plot(frames, np.where(supported[:, n], value, np.nan), color=colour, lw=1.5,
                    label=f"track {n + 1}")
            ax.plot(frames, value, color=colour, lw=1.0, ls=":")  # coasting frames show here
            alive = np.flatnonzero(np.isfinite(value))
            if alive.size:
                ax.plot(frames[alive[0]], value[alive[0]], "o", color=colour, ms=5)
                ax.plot(frames[alive[-1]], value[alive[-1]], "s", color=colour, ms=5)
        ax.set_ylabel(label)
    axes[1].invert_yaxis()  # image coordinates: y grows downwards
    axes[1].set_xlabel("frame")
    axes[0].legend(loc="upper left", fontsize=7, ncol=min(trk.shape[1] + 1, 6))
    axes[0].set_title("tracks (solid: supported by a detection, dotted: coasting; "
                      "o first, s last frame)", fontsize=9)
    fig.tight_layout()
    return fig
