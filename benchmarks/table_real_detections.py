"""Tracking on real detections and through occlusions: every tracker on the same MOT17 windows.

Windows of 3 pedestrians present throughout, T = 60 and 120 frames, cut from the **second half**
of MOT17-02, -05 and -09 (frames the YOLOX-X detector in ``../shared/data/mot17/*/det`` never
saw in training), overlapping by ``--stride``. Protocols (``make_detection_windows``):

- ``real``: the detector's boxes with a score >= 0.5 matched one-to-one to the targets at
  IoU >= 0.5 (the paper's MOT17-3T construction); an unmatched target is a miss;
- ``real + clutter``: the same, plus every other detection whose centre lies within one box
  size of a target (other people, false positives); the first frame holds the targets' own
  boxes (the user says whom to track);
- ``occlusion``: simulated detections (jitter 0.04 of the box size, 10% misses, shuffled
  rows) with each target hidden for 15 consecutive frames.

Rows: MixDVAE (bundled ``mot`` prior), the same engine with constant velocity, VKF, Deep AR
(bundled ``mot-ar``), SORT and the greedy floor, all with their defaults (obs_noise 0.04).
Boxes are normalised per sequence by its image size. Writes ``--out``/real_detections.{md,csv,
json}`` with the command and the mixest version::

    python benchmarks/table_real_detections.py --out docs/results       # ~5 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

SEQUENCES = ("MOT17-02", "MOT17-05", "MOT17-09")
PROTOCOLS = {
    "real": {"detections": "real"},
    "real + clutter": {"detections": "real", "clutter": True, "first_frame": "truth"},
    "occlusion": {"jitter": 0.04, "miss_prob": 0.1, "shuffle": True, "occlusion": 15},
}
METHODS = ("MixDVAE", "VEM + constant velocity", "VKF", "Deep AR", "SORT", "greedy (floor)")


def windows(root: Path, T: int, protocol: str, stride: int, seed: int):
    """Normalised ``xyxy`` detections and tracks of the second halves' windows."""
    from mixest.tracking import make_detection_windows, normalize_boxes, read_seqinfo

    Xs, ys = [], []
    for name in SEQUENCES:
        seq = root / name
        length = int(read_seqinfo(seq)["seq_length"])
        X, y, info = make_detection_windows(
            seq, 3, T, stride=stride, groups_per_window=4, frame_range=(length // 2 + 1, length),
            random_state=seed, return_info=True, **PROTOCOLS[protocol])
        size = (info["im_width"].iloc[0], info["im_height"].iloc[0])
        Xs.append(normalize_boxes(X, size))
        ys.append(normalize_boxes(y, size))
    K = max(x.shape[2] for x in Xs)
    Xs = [np.concatenate([x, np.full(x.shape[:2] + (K - x.shape[2], 4), np.nan)], 2) for x in Xs]
    return np.concatenate(Xs), np.concatenate(ys)


def prior_argument(spec: str):
    """A ``--prior`` value: a saved DVAE file (candidate priors) or a name the tracker knows."""
    if Path(spec).is_file():
        from mixest.dvae import DVAE

        return DVAE.load(spec)
    return spec


def make_tracker(method: str, n_jobs: int | None, seed: int, prior: str = "pretrained:mot"):
    from mixest import MixDVAETracker
    from mixest.baselines import DeepARTracker, GreedyTracker, SORTTracker, VKFTracker

    common = {"box_format": "xyxy", "image_size": (1, 1)}
    vem = {**common, "n_jobs": n_jobs, "random_state": seed}
    return {
        "MixDVAE": lambda: MixDVAETracker(3, prior=prior_argument(prior), **vem),
        "VEM + constant velocity": lambda: MixDVAETracker(3, prior="constant-velocity", **vem),
        "VKF": lambda: VKFTracker(3, **vem),
        "Deep AR": lambda: DeepARTracker(3, **vem),
        "SORT": lambda: SORTTracker(3, **common),
        "greedy (floor)": lambda: GreedyTracker(3, box_format="xyxy"),
    }[method]()


def main(argv: list[str] | None = None) -> int:
    from mixest.tracking import hota_metrics, mot_metrics

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mot17", type=Path, default=REPO.parent / "shared" / "data" / "mot17")
    p.add_argument("--lengths", type=int, nargs="+", default=[60, 120])
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--stride", type=int, default=20,
                   help="frames between window starts (overlapping windows: more of them)")
    p.add_argument("--prior", default="pretrained:mot",
                   help="MixDVAE's prior: a bundled name or a saved DVAE file")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="also write real_detections.md/.csv/.json there")
    args = p.parse_args(argv)
    if not (args.mot17 / SEQUENCES[0] / "det" / "det.txt").is_file():
        print(f"MOT17 with det/det.txt not found under {args.mot17}; nothing to do.")
        return 1
    warnings.filterwarnings("ignore", category=UserWarning)
    header = ("| protocol | T | windows | method | MOTA | IDF1 | IDs | MOTP | FP | FN "
              "| HOTA | DetA | AssA | s/window |\n|" + "---|" * 14)
    print(header, flush=True)
    records = []
    for protocol in args.protocols:
        for T in args.lengths:
            X, y = windows(args.mot17, T, protocol, args.stride, args.seed)
            for method in args.methods:
                tic = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tracker = make_tracker(method, args.n_jobs, args.seed, args.prior)
                    tracks = tracker.fit(X).predict(X)
                sec = (time.perf_counter() - tic) / len(X)
                m = mot_metrics(y, tracks, box_format="xyxy").loc["OVERALL"]
                h = hota_metrics(y, tracks, box_format="xyxy").loc["OVERALL"]
                record = {"protocol": protocol, "T": T, "windows": len(X), "method": method,
                          "MOTA": round(float(m["MOTA"]), 4), "IDF1": round(float(m["IDF1"]), 4),
                          "IDs": int(m["IDs"]), "MOTP": round(float(m["MOTP"]), 4),
                          "FP": int(m["FP"]), "FN": int(m["FN"]),
                          **{k: round(float(h[k]), 4) for k in ("HOTA", "DetA", "AssA")},
                          "s_per_window": round(sec, 4)}
                record["markdown"] = ("| {protocol} | {T} | {windows} | {method} | {MOTA:.3f} | "
                                      "{IDF1:.3f} | {IDs} | {MOTP:.3f} | {FP} | {FN} | "
                                      "{HOTA:.3f} | {DetA:.3f} | {AssA:.3f} | "
                                      "{s_per_window:.3f} |").format(**record)
                records.append(record)
                print(record["markdown"], flush=True)
    footer = ("MOT17-02/05/09 second halves, 3 targets per window, windows every "
              f"{args.stride} frames (4 groups of targets per window at most), seed {args.seed}; "
              "MOTA from py-motmetrics at IoU 0.5; HOTA, DetA, AssA from TrackEval.")
    if args.out is not None:
        from _results import write_results

        write_results(args.out, "real_detections", records, header, footer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
