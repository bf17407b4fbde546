"""Table 2 (tracking): every tracker on the same 3-object windows of MOTChallenge sequences."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["METHODS", "PROTOCOLS", "detection_oracle", "table2"]

#: Detection protocols: keyword arguments of :func:`mixest.tracking.make_detection_windows`.
PROTOCOLS: dict[str, dict] = {
    "real": {"detections": "real"},
    "real + clutter": {"detections": "real", "clutter": True, "first_frame": "truth"},
    "mild": {"jitter": 0.04, "miss_prob": 0.1},
    "hard": {"jitter": 0.08, "miss_prob": 0.3, "shuffle": True},
    "occlusion": {"jitter": 0.04, "miss_prob": 0.1, "shuffle": True, "occlusion": 15},
}
METHODS = ("MixDVAE", "VEM + constant velocity", "VKF", "Deep AR", "SORT", "greedy (floor)",
           "detection oracle")
#: IoU with a target's true box above which the oracle takes a detection as the target's own.
ORACLE_MIN_IOU = 0.2
_HALVES = ("second", "first", "all")
_COLUMNS = ("MOTA", "MOTP", "IDF1", "IDs", "%IDs", "MT", "ML", "FP", "%FP", "FN", "%FN",
            "HOTA", "DetA", "AssA")


def sequences(mot_root: Path, protocols: tuple[str, ...]) -> list[Path]:
    """The sequence folders of a MOTChallenge-layout root that every protocol can use."""
    root = Path(mot_root)
    if not root.is_dir():
        raise FileNotFoundError(f"mot_root {str(root)!r} is not a folder")
    need_det = any(PROTOCOLS[p].get("detections") == "real" for p in protocols)
    found = [p for p in sorted(root.iterdir())
             if (p / "gt" / "gt.txt").is_file() and (p / "seqinfo.ini").is_file()
             and (not need_det or (p / "det" / "det.txt").is_file())]
    if not found:
        what = "gt/gt.txt, seqinfo.ini" + (" and det/det.txt" if need_det else "")
        raise FileNotFoundError(f"no sequence folder with {what} under {str(root)!r}")
    return found


def windows(folders: list[Path], T: int, protocol: str, half: str, stride: int, seed: int):
    """Image-normalised ``xyxy`` detections ``X`` and tracks ``y`` of every folder's windows."""
    from mixest.tracking import make_detection_windows, normalize_boxes, read_seqinfo
    from mixest.tracking._windows import _NoWindowError

    Xs, ys = [], []
    for seq in folders:
        length = int(read_seqinfo(seq)["seq_length"])
        frames = {"second": (length // 2 + 1, length), "first": (1, length // 2),
                  "all": (1, length)}[half]
        try:
            X, y, info = make_detection_windows(
                seq, 3, T, stride=stride, groups_per_window=4, frame_range=frames,
                random_state=seed, return_info=True, **PROTOCOLS[protocol])
        except _NoWindowError:  # this sequence has no 3 targets present for T frames
            continue
        size = (info["im_width"].iloc[0], info["im_height"].iloc[0])
        Xs.append(normalize_boxes(X, size))
        ys.append(normalize_boxes(y, size))
    if not Xs:
        return None, None
    K = max(x.shape[2] for x in Xs)
    Xs = [np.concatenate([x, np.full(x.shape[:2] + (K - x.shape[2], 4), np.nan)], 2) for x in Xs]
    return np.concatenate(Xs), np.concatenate(ys)


def make_tracker(method: str, n_jobs: int | None, seed: int, prior: object = "pretrained:mot"):
    """A tracker of ``METHODS`` (all but the detection oracle) with its defaults, on
    image-normalised ``xyxy`` boxes."""
    from mixest import MixDVAETracker
    from mixest.baselines import DeepARTracker, GreedyTracker, SORTTracker, VKFTracker

    common = {"box_format": "xyxy", "image_size": (1, 1)}
    vem = {**common, "n_jobs": n_jobs, "random_state": seed}
    return {
        "MixDVAE": lambda: MixDVAETracker(3, prior=prior, **vem),
        "VEM + constant velocity": lambda: MixDVAETracker(3, prior="constant-velocity", **vem),
        "VKF": lambda: VKFTracker(3, **vem),
        "Deep AR": lambda: DeepARTracker(3, **vem),
        "SORT": lambda: SORTTracker(3, **common),
        "greedy (floor)": lambda: GreedyTracker(3, box_format="xyxy"),
    }[method]()


def detection_oracle(X: np.ndarray, y: np.ndarray, min_iou: float = ORACLE_MIN_IOU) -> np.ndarray:
    """A reference that knows whose detection is whose: each target follows its own detections.

    In every frame each target takes the detection that overlaps its true box most, when that
    IoU exceeds ``min_iou`` (a detection of the target, whole or partial); between two such
    frames its box moves linearly from one detection to the next (an offline tracker sees
    both), and before the first and after the last it holds them. The true box of the first
    frame stands in for a missing first detection. It never follows another person and never
    switches, but it reports the detector's boxes: where a box overlaps the truth at IoU < 0.5
    (a partly hidden person, a loose box) the frame costs a false positive and a miss, as it
    does for any tracker that follows the detector.

    Parameters
    ----------
    X : ndarray of shape (n_windows, T, K, 4)
        Detections (``xyxy``, NaN rows when missing).
    y : ndarray of shape (n_windows, T, N, 4)
        True boxes (``xyxy``); the first frame's must be present.
    min_iou : float
        Smallest IoU with the true box of a detection the oracle takes.

    Returns
    -------
    tracks : ndarray of shape (n_windows, T, N, 4)
    """
    from mixest.tracking._boxes import box_iou

    iou = np.nan_to_num(box_iou(X, y))  # (n, T, K, N)
    best = iou.argmax(2)  # (n, T, N)
    take = np.take_along_axis(iou, best[:, :, None], 2)[:, :, 0] > min_iou
    chosen = np.take_along_axis(X, best[..., None], 2)  # (n, T, N, 4)
    chosen[:, 0] = np.where(take[:, 0, :, None], chosen[:, 0], y[:, 0])
    take[:, 0] = True
    tracks = np.empty_like(y)
    frames = np.arange(X.shape[1])
    for i, n in np.ndindex(take.shape[0], take.shape[2]):
        known = frames[take[i, :, n]]
        for d in range(4):
            tracks[i, :, n, d] = np.interp(frames, known, chosen[i, known, n, d])
    return tracks


def scores(y: np.ndarray, tracks: np.ndarray) -> dict[str, float]:
    """The paper's columns (counts and their share of the true boxes) plus HOTA."""
    from mixest.tracking import hota_metrics, mot_metrics

    m = mot_metrics(y, tracks, box_format="xyxy").loc["OVERALL"]
    h = hota_metrics(y, tracks, box_format="xyxy").loc["OVERALL"]
    n = float(m["num_objects"])
    out = {k: int(m[k]) if k in ("IDs", "MT", "ML", "FP", "FN") else round(float(m[k]), 4)
           for k in ("MOTA", "MOTP", "IDF1", "IDs", "MT", "ML", "FP", "FN")}
    for k in ("IDs", "FP", "FN"):
        out["%" + k] = round(100.0 * out[k] / n, 2)
    out.update({k: round(float(h[k]), 4) for k in ("HOTA", "DetA", "AssA")})
    return {k: out[k] for k in _COLUMNS}


def table2(mot_root: str | Path, *, lengths: tuple[int, ...] = (60, 120, 300),
           protocols: tuple[str, ...] = tuple(PROTOCOLS), methods: tuple[str, ...] = METHODS,
           half: str = "second", stride: int = 20, prior: object = "pretrained:mot",
           n_jobs: int | None = None, seed: int = 0, verbose: bool = True) -> list[dict]:
    """Run every method on the same windows of every protocol and length.

    Parameters
    ----------
    mot_root : path
        A MOTChallenge-layout folder: one folder per sequence with ``gt/gt.txt``,
        ``seqinfo.ini`` and, for the ``real`` protocols, ``det/det.txt``.
    lengths : tuple of int
        Window lengths T.
    protocols : tuple of str
        Keys of :data:`PROTOCOLS`.
    methods : tuple of str
        Entries of :data:`METHODS`.
    half : {"second", "first", "all"}
        Frames windows are cut from: the second half of each sequence (the default: the
        detector of the bundled MOT17 detections was trained on the first halves), the first
        half (where the trackers' settings were chosen), or all.
    stride : int
        Frames between window starts.
    prior : str or DVAE
        MixDVAE's prior.
    n_jobs, seed
        Passed to the VEM trackers; ``seed`` also draws the simulated detections.
    verbose : bool
        Progress bar over the cells.

    Returns
    -------
    records : list of dict
        One per (protocol, T, method): the windows, the columns of :func:`scores` and the
        seconds per window.
    """
    for name, values, allowed in (("protocols", protocols, PROTOCOLS),
                                  ("methods", methods, METHODS), ("half", (half,), _HALVES)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise ValueError(f"{name} must be among {list(allowed)}, got {list(values)!r}")
    folders = sequences(Path(mot_root), tuple(protocols))
    cells = [(p, T) for p in protocols for T in lengths]
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells) * len(methods), desc="table2", unit="cell")
    records = []
    for protocol, T in cells:
        X, y = windows(folders, T, protocol, half, stride, seed)
        for method in methods:
            if bar is not None:
                bar.set_postfix_str(f"{protocol}, T={T}, {method}")
            if X is None:  # no window of T frames with 3 targets
                if bar is not None:
                    bar.update()
                continue
            tic = time.perf_counter()
            if method == "detection oracle":
                tracks = detection_oracle(X, y)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tracks = make_tracker(method, n_jobs, seed, prior).fit(X).predict(X)
            seconds = (time.perf_counter() - tic) / len(X)
            records.append({"protocol": protocol, "T": T, "windows": len(X), "method": method,
                            **scores(y, tracks), "s/window": round(seconds, 4)})
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return records


def markdown(records: list[dict]) -> tuple[str, list[str]]:
    """The header and one Markdown row per record."""
    keys = [k for k in records[0] if k != "markdown"]
    header = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys)
    rows = ["| " + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) and "%" not in k
                              else str(r[k]) for k in keys) + " |" for r in records]
    return header, rows


def plot(records: list[dict], path: Path, metrics: tuple[str, ...] = ("MOTA", "HOTA")) -> Path:
    """Metric against T per method, one panel per protocol and metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = list(dict.fromkeys(r["protocol"] for r in records))
    methods = list(dict.fromkeys(r["method"] for r in records))
    fig, axes = plt.subplots(len(metrics), len(protocols), squeeze=False,
                             figsize=(3.2 * len(protocols), 2.8 * len(metrics)))
    for j, protocol in enumerate(protocols):
        for i, metric in enumerate(metrics):
            ax = axes[i, j]
            for k, method in enumerate(methods):
                rows = [r for r in records if r["protocol"] == protocol and r["method"] == method]
                # alternate dashes: methods that score alike (the VKF and the VEM with constant
                # velocity) stay visible; the oracle, a reference, is a dotted black line
                style = ({"color": "black", "linestyle": ":", "marker": "x"}
                         if method == "detection oracle"
                         else {"linestyle": "-" if k % 2 == 0 else "--", "marker": "o"})
                ax.plot([r["T"] for r in rows], [r[metric] for r in rows], label=method, **style)
            ax.set_xticks(sorted({r["T"] for r in records}))
            ax.set_title(protocol if i == 0 else "")
            ax.set_xlabel("T (frames)")
            ax.set_ylabel(metric)
            ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(methods), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
