"""Would the trackers gain from ignoring the detector's less confident boxes?

Among the YOLOX-X detections of MOT17-02/05/09 (second halves, score >= 0.5), the boxes that
overlap no pedestrian's true box at IoU >= 0.5 but some at 0.2-0.5 (a person partly hidden, one
box around two people) have lower scores than the good ones: median 0.66 against 0.87 on
MOT17-02. This script asks whether a tracker that drops every box below a score threshold
before tracking does better: the windows of ``mixest benchmark table2`` (``real`` and
``real + clutter``, both halves, T = 60 and 120), the detections' scores recovered from
``det/det.txt``, the true boxes of the first frame of ``real + clutter`` kept whatever the
threshold, MOTA per threshold. The threshold is on the tracker's input only: the windows, and
so the truth they are scored against, stay those of the table.

Prints one line per protocol, half and length::

    python benchmarks/confidence_threshold.py                      # ~3 min, MixDVAE
    python benchmarks/confidence_threshold.py --methods MixDVAE VKF --thresholds 0.5 0.7
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def scored_windows(folders: list[Path], T: int, protocol: str, half: str):
    """The ``table2`` windows of one protocol in ``folders`` with each detection's score.

    Returns image-normalised ``xyxy`` detections ``(n, T, K, 4)``, tracks ``(n, T, 3, 4)`` and
    scores ``(n, T, K)`` (NaN for missing rows, 1 for a first frame's true boxes).
    """
    from mixest.benchmark._table2 import PROTOCOLS
    from mixest.tracking import make_detection_windows, normalize_boxes, read_mot, read_seqinfo
    from mixest.tracking._windows import _NoWindowError

    Xs, ys, Ss = [], [], []
    for seq in folders:
        length = int(read_seqinfo(seq)["seq_length"])
        frames = {"second": (length // 2 + 1, length), "first": (1, length // 2)}[half]
        try:
            X, y, info = make_detection_windows(
                seq, 3, T, stride=20, groups_per_window=4, frame_range=frames,
                random_state=0, return_info=True, **PROTOCOLS[protocol])
        except _NoWindowError:
            continue
        table = read_mot(seq / "det" / "det.txt")
        columns = ["bb_left", "bb_top", "bb_width", "bb_height"]
        # A window's boxes are the file's values: look each one up by frame and box.
        score = {(f, *box): s for f, box, s in zip(
            table["frame"].to_numpy(), map(tuple, table[columns].to_numpy()),
            table["conf"].to_numpy(), strict=True)}
        S = np.full(X.shape[:3], np.nan)
        for w, first in enumerate(info["first_frame"].to_numpy()):
            for t, k in zip(*np.nonzero(~np.isnan(X[w]).any(-1)), strict=True):
                S[w, t, k] = score.get((first + t, *X[w, t, k]), 1.0)
        size = (info["im_width"].iloc[0], info["im_height"].iloc[0])
        Xs.append(normalize_boxes(X, size))
        ys.append(normalize_boxes(y, size))
        Ss.append(S)
    K = max(x.shape[2] for x in Xs)

    def pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.full(a.shape[:2] + (K - a.shape[2],) + a.shape[3:],
                                          np.nan)], 2)

    return (np.concatenate([pad(x) for x in Xs]), np.concatenate(ys),
            np.concatenate([pad(s) for s in Ss]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mot17", default=str(REPO.parent / "shared" / "data" / "mot17"))
    p.add_argument("--methods", nargs="+", default=["MixDVAE"],
                   help="trackers of mixest benchmark table2 (default: MixDVAE)")
    p.add_argument("--thresholds", type=float, nargs="+",
                   default=[0.5, 0.6, 0.65, 0.7, 0.75])
    p.add_argument("--lengths", type=int, nargs="+", default=[60, 120])
    args = p.parse_args(argv)
    from mixest.benchmark._table2 import make_tracker, scores, sequences

    try:  # the sequence folders with ground truth and detections
        folders = sequences(Path(args.mot17), ("real",))
    except FileNotFoundError as exc:
        print(f"MOT17 data not usable: {exc}", file=sys.stderr)
        return 1

    warnings.simplefilter("ignore")
    print("protocol | half | T | windows | method | " + " | ".join(
        f"MOTA, score >= {t}" for t in args.thresholds))
    for protocol in ("real + clutter", "real"):
        for half in ("first", "second"):
            for T in args.lengths:
                X, y, S = scored_windows(folders, T, protocol, half)
                for method in args.methods:
                    cells = []
                    for threshold in args.thresholds:
                        kept = np.where((S < threshold)[..., None], np.nan, X)
                        tracks = make_tracker(method, 1, 0).fit(kept).predict(kept)
                        cells.append(f"{scores(y, tracks)['MOTA']:.3f}")
                    print(f"{protocol} | {half} | {T} | {len(X)} | {method} | "
                          + " | ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
