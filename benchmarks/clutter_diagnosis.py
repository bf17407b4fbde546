"""Why the ``real + clutter`` protocol is hard: where the tracks go, and what the VEM keeps.

The windows of ``mixest benchmark table2`` (3 targets of the **second halves** of MOT17-02, -05
and -09, the YOLOX-X detections near them kept as clutter, the targets' true boxes in the first
frame). Two measurements per window length:

1. **Where each target-frame goes** with MixDVAE's defaults: the target's best detection (IoU
   with its true box >= 0.5: "good"; 0.2-0.5: "poor", a partly hidden person or a loose box;
   else "none"), what the track took (the detection it is assigned to with probability > 0.5:
   the target's good or poor box, another box, or nothing) and whether the track is right
   (IoU >= 0.5 with the true box). Shares of all target-frames after the first.
2. **What the VEM keeps**: MOTA of MixDVAE (bundled prior) and of the same engine with
   constant velocity, from their default initialisation and from the true boxes (a diagnostic
   that cheats: it shows whether the VEM holds on to a right solution once given one), after
   one iteration and after the default run; next to the detection oracle of ``table2``.
3. **What identity is worth**: the initialisation alone (the chains of tracklets of
   ``init="tracklets"``, no VEM), where its wrong target-frames are (on another person's
   box, on the target's own poor box, interpolated across a gap, held after the chain's
   end), how many of its joins land on another person's tracklet after a short or a long
   gap, and the detection oracle restricted to the target's good boxes (IoU >= 0.5, linearly
   interpolated between them): about what a tracker that never confused two people would
   reach with these detections.

Writes ``--out``/clutter_diagnosis.{md,csv,json}``::

    python benchmarks/clutter_diagnosis.py --out docs/results      # ~1 min
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRIORS = {"MixDVAE": "pretrained:mot", "VEM + constant velocity": "constant-velocity"}


def _long_gap() -> str:
    from mixest.tracking._tracklets import DEFAULT

    return f"gap of 5-{DEFAULT.max_gap} frames"


LONG_GAP = _long_gap()


def frame_categories(X: np.ndarray, y: np.ndarray, tracks: np.ndarray,
                     eta: np.ndarray) -> Counter:
    """Count target-frames (after the first) by (best detection, what the track took, right?)."""
    from mixest.tracking._boxes import box_iou

    iou_det = np.nan_to_num(box_iou(X, y))  # (B, T, K, N)
    right = np.diagonal(np.nan_to_num(box_iou(tracks, y)), axis1=-2, axis2=-1) >= 0.5
    best = iou_det.max(2)  # (B, T, N)
    det = np.where(best >= 0.5, "good", np.where(best >= 0.2, "poor", "none"))
    N = y.shape[2]
    k = eta[..., :N].argmax(2)  # (B, T, N): the detection each track weighs most
    took = np.take_along_axis(eta[..., :N], k[:, :, None], 2)[:, :, 0] > 0.5
    q = np.take_along_axis(iou_det, k[:, :, None], 2)[:, :, 0]
    what = np.where(~took, "nothing", np.where(q >= 0.5, "its good box",
                                                np.where(q >= 0.2, "a poor box", "another box")))
    keys = zip(det[:, 1:].ravel(), what[:, 1:].ravel(), right[:, 1:].ravel(), strict=True)
    return Counter(keys)


def initialisation_categories(X: np.ndarray,
                              y: np.ndarray) -> tuple[np.ndarray, Counter, Counter]:
    """The tracklet initialisation's boxes ``(B, T, N, 4)``, its wrong target-frames (after
    the first) by where the source was: on a piece of its chain (whose box is the target's
    good or poor detection, or another person's), between two pieces, or after the last; and
    the joins onto another person's tracklet (a piece after the first whose boxes overlap the
    target's true box at IoU >= 0.2 in fewer than a fifth of its frames) by the gap they
    span."""
    from mixest.tracking._boxes import box_iou
    from mixest.tracking._observation import _outside_image, initial_means
    from mixest.tracking._tracklets import source_chains, tracklet_means

    valid = ~np.isnan(X).any(-1)
    inside = valid & ~_outside_image(X)
    m0, t0 = initial_means(X, valid, y.shape[2])
    tracks = tracklet_means(X, inside, m0, t0)
    right = np.diagonal(np.nan_to_num(box_iou(tracks, y)), axis1=-2, axis2=-1) >= 0.5
    iou_det = np.nan_to_num(box_iou(X, y))  # (B, T, K, N)
    label, chains = source_chains(X, inside, t0, y.shape[2])  # the ones tracklet_means follows
    counts: Counter = Counter()
    joins: Counter = Counter()
    B, T, N = right.shape
    for b in range(B):
        for n, chain in enumerate(chains[b]):
            piece = np.full(T, -1)
            last = 0
            for j, (tracklet, first) in enumerate(chain):
                t_idx, k_idx = np.nonzero(label[b] == tracklet)
                keep = t_idx >= first
                piece[t_idx[keep]] = tracklet
                own = (iou_det[b, t_idx[keep], k_idx[keep], n] >= 0.2).mean()
                if j > 0 and own < 0.2:
                    joins["gap of 1-4 frames" if first - last <= 4 else LONG_GAP] += 1
                last = t_idx[keep].max()
            for t in np.flatnonzero(~right[b, 1:, n]) + 1:
                if piece[t] >= 0:
                    k = np.flatnonzero(label[b, t] == piece[t])[0]
                    q = iou_det[b, t, k, n]
                    where = ("on its chain, another person's box" if q < 0.2 else
                             "on its chain, the target's " + ("good" if q >= 0.5 else "poor")
                             + " box")
                else:
                    where = ("interpolated across a gap" if (piece[t:] >= 0).any()
                             else "held after the chain's end")
                    if iou_det[b, t, :, n].max() >= 0.5:
                        where += " (a good box was there)"
                counts[where] += 1
    return tracks, counts, joins


def from_truth(est, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The fitted tracker ``est``'s VEM started from the true boxes instead of its
    initialisation (its dynamics, ``max_iter`` and ``tol``)."""
    from mixest.mixture import run_vem
    from mixest.tracking import GaussianDetections
    from mixest.tracking._observation import _init_var

    class FromTruth(GaussianDetections):
        def initialize(self, data, params, n_sources, dynamics, rng):
            return y.copy(), np.broadcast_to(_init_var(params["phi"], data["valid"]),
                                             y.shape).copy()

    result = run_vem(X, FromTruth(), est._dynamics(), n_sources=3, max_iter=est.max_iter,
                     tol=est.tol, random_state=0)
    return est._from_model(result.means)  # as predict returns them: corners ordered


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mot17", default=str(REPO.parent / "shared" / "data" / "mot17"))
    p.add_argument("--lengths", type=int, nargs="+", default=[60, 120])
    p.add_argument("--out", default=None, help="folder for clutter_diagnosis.{md,csv,json}")
    args = p.parse_args(argv)
    root = Path(args.mot17)
    if not root.is_dir():
        print(f"MOT17 data not found at {root}", file=sys.stderr)
        return 1
    from mixest import MixDVAETracker
    from mixest.benchmark._table2 import detection_oracle, scores, sequences, windows

    warnings.simplefilter("ignore")
    folders = sequences(root, ("real + clutter",))
    rows = []

    def add(**row):
        row["markdown"] = "| " + " | ".join(
            f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |"
        rows.append(row)
        print(row["markdown"], flush=True)

    for T in args.lengths:
        X, y = windows(folders, T, "real + clutter", "second", 20, 0)
        est = MixDVAETracker(3, box_format="xyxy", image_size=(1, 1), random_state=0).fit(X)
        result = est._run(X)  # one run for both what predict and predict_assignments return
        counts = frame_categories(X, y, est._from_model(result.means), result.eta)
        total = sum(counts.values())
        for (det, what, ok), n in counts.most_common():
            add(T=T, measure="target-frames (MixDVAE)", detail=f"{det} detection, took {what}, "
                f"track {'right' if ok else 'wrong'}", value=n / total)
        add(T=T, measure="MOTA", detail="detection oracle",
            value=scores(y, detection_oracle(X, y))["MOTA"])
        add(T=T, measure="MOTA", detail="detection oracle, the target's good boxes only "
            "(IoU >= 0.5), interpolated", value=scores(y, detection_oracle(X, y, 0.5))["MOTA"])
        init_tracks, wrong, joins = initialisation_categories(X, y)
        add(T=T, measure="MOTA", detail="tracklet initialisation alone (no VEM)",
            value=scores(y, init_tracks)["MOTA"])
        for where, n in wrong.most_common():
            add(T=T, measure="wrong target-frames (initialisation)", detail=where,
                value=n / total)
        for gap in ("gap of 1-4 frames", LONG_GAP):
            add(T=T, measure="joins onto another person (initialisation)", detail=gap,
                value=joins[gap])
        for name, prior in PRIORS.items():
            for max_iter in (1, 70):
                est = MixDVAETracker(3, prior=prior, box_format="xyxy", image_size=(1, 1),
                                     max_iter=max_iter, random_state=0).fit(X)
                for start, out in (("initialisation", est.predict(X)),
                                   ("true boxes", from_truth(est, X, y))):
                    add(T=T, measure="MOTA", detail=f"{name}, from the {start}, "
                        f"max_iter={max_iter}", value=scores(y, out)["MOTA"])
    keys = [k for k in rows[0] if k != "markdown"]
    header = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys)
    footer = ("real + clutter windows of mixest benchmark table2 (MOT17-02/05/09, second halves, "
              "a window every 20 frames, seed 0). Target-frames: shares of all target-frames "
              "after the first; good / poor detection: IoU with the true box >= 0.5 / 0.2-0.5.")
    if args.out is not None:
        from mixest.benchmark._results import write_results

        write_results(Path(args.out), "clutter_diagnosis", rows, header, footer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
