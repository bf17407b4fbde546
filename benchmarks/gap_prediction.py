"""How a tracker's prediction degrades across a gap: the learned prior against constant velocity.

Single pedestrians from the ground truth of the **second halves** of MOT17-02, -05 and -09:
windows of ``--context`` observed frames (detections jittered by 0.04 of the box size, no
misses) followed by a gap of g = 5, 10, 15, 30 frames with no detection. Each tracker runs on
the window with ``n_sources=1`` and its defaults, so the boxes it reports inside the gap are its
one-step-ahead predictions chained through the missing frames (the E-S step feeds each
prediction to the next frame). Reported per gap length, over the last frame of the gap:

- centre error in box heights (median and 90th percentile),
- IoU with the true box (mean) and the share of boxes recovered at IoU >= 0.5.

Rows: MixDVAE with the bundled ``mot`` prior (or ``--prior``), the same engine with constant
velocity, the VKF, and the last detection held still (a reference with no motion model).
Writes ``--out``/gap_prediction.{md,csv,json}``::

    python benchmarks/gap_prediction.py --stride 10 --out docs/results      # ~1 min
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

SEQUENCES = ("MOT17-02", "MOT17-05", "MOT17-09")
GAPS = (5, 10, 15, 30)


def gap_windows(root: Path, context: int, gap: int, stride: int, seed: int):
    """Detections with the last ``gap`` frames missing, and the true tracks (normalised xyxy)."""
    from mixest.tracking import make_windows, normalize_boxes, read_seqinfo, simulate_detections

    Xs, ys = [], []
    for name in SEQUENCES:
        seq = root / name
        info = read_seqinfo(seq)
        length = int(info["seq_length"])
        y = make_windows(seq / "gt" / "gt.txt", 1, context + gap, stride=stride,
                         frame_range=(length // 2 + 1, length))
        y = normalize_boxes(y, (info["im_width"], info["im_height"]))
        X = simulate_detections(y, jitter=0.04, miss_prob=0.0, box_format="xyxy",
                                image_size=(1, 1), random_state=seed)
        X[:, context:] = np.nan
        Xs.append(X)
        ys.append(y)
    return np.concatenate(Xs), np.concatenate(ys)


def trackers(prior: str, seed: int) -> dict:
    from mixest import MixDVAETracker
    from mixest.baselines import VKFTracker
    from mixest.cli import _load_prior

    common = {"box_format": "xyxy", "image_size": (1, 1), "random_state": seed}
    return {
        f"MixDVAE ({prior})": lambda: MixDVAETracker(1, prior=_load_prior(prior), **common),
        "VEM + constant velocity": lambda: MixDVAETracker(1, prior="constant-velocity", **common),
        "VKF": lambda: VKFTracker(1, **common),
        "last detection held": None,
    }


def gap_errors(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Errors of the last frame's boxes ``(n, 4)`` xyxy against the truth."""
    from mixest.tracking._boxes import box_iou

    height = truth[:, 3] - truth[:, 1]
    offset = 0.5 * (pred[:, :2] + pred[:, 2:]) - 0.5 * (truth[:, :2] + truth[:, 2:])
    err = np.linalg.norm(offset, axis=1) / height
    iou = box_iou(pred[:, None], truth[:, None])[:, 0, 0]
    return {
        "centre error (heights), median": float(np.median(err)),
        "centre error (heights), p90": float(np.percentile(err, 90)),
        "mean IoU": float(iou.mean()),
        "recovered (IoU >= 0.5)": float((iou >= 0.5).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mot17", default=str(REPO.parent / "shared" / "data" / "mot17"))
    p.add_argument("--gaps", type=int, nargs="+", default=list(GAPS))
    p.add_argument("--context", type=int, default=30)
    p.add_argument("--stride", type=int, default=30)
    p.add_argument("--prior", default="pretrained:mot")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for gap_prediction.{md,csv,json}")
    args = p.parse_args(argv)
    root = Path(args.mot17)
    if not root.is_dir():
        print(f"MOT17 data not found at {root}", file=sys.stderr)
        return 1

    rows = []
    for gap in args.gaps:
        X, y = gap_windows(root, args.context, gap, args.stride, args.seed)
        for name, make in trackers(args.prior, args.seed).items():
            start = time.perf_counter()
            if make is None:
                tracks = np.repeat(X[:, args.context - 1: args.context], X.shape[1], axis=1)
            else:
                tracks = make().fit(X).predict(X)
            row = {"gap": gap, "method": name, "windows": len(X),
                   **gap_errors(tracks[:, -1, 0], y[:, -1, 0]),
                   "s/window": (time.perf_counter() - start) / len(X)}
            row["markdown"] = "| " + " | ".join(
                f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |"
            rows.append(row)
            print(row["markdown"], flush=True)
    keys = [k for k in rows[0] if k != "markdown"]
    header = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys)
    footer = (f"{args.context} observed frames (detections jittered by 0.04 of the box size), "
              "then g frames without detections; errors at the last frame of the gap. "
              "Single pedestrians of the MOT17-02/05/09 ground truth, second halves, windows "
              f"every {args.stride} frames, seed {args.seed}.")
    if args.out is not None:
        from mixest.benchmark._results import write_results

        write_results(Path(args.out), "gap_prediction", rows, header, footer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
