"""The ``mixest`` command line: ``mixest track`` and ``mixest demo``.

``mixest track det.txt --n-sources 3 --frames 1:60 --output result.txt [--plot tracks.png]``
reads a MOTChallenge detection file (and the ``seqinfo.ini`` next to it or its parent folder for
the image size), tracks ``N`` objects over the frame range and writes a MOTChallenge result file.

``mixest demo`` tracks a few synthetic 3-object sequences with the bundled prior and prints MOTA,
IDF1 and ID switches next to the greedy floor.

Tracking methods are looked up in :data:`METHODS` (name -> ``"module:factory"``); a factory takes
the parsed arguments and returns an unfitted tracker, so new methods are one line each.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "METHODS"]

#: ``--method`` name -> ``"module:callable"``; the callable maps parsed arguments to a tracker.
METHODS: dict[str, str] = {
    "mixdvae": "mixest.cli:_make_mixdvae",
    "greedy": "mixest.cli:_make_greedy",
    "vkf": "mixest.baselines:VKFTracker",
    "deep-ar": "mixest.baselines:DeepARTracker",
    "sort": "mixest.baselines:SORTTracker",
}


def _make_mixdvae(args: argparse.Namespace, image_size: tuple[float, float]):
    from mixest.tracking._tracker import MixDVAETracker

    return MixDVAETracker(n_sources=args.n_sources, prior=args.prior, max_iter=args.max_iter,
                          box_format="xywh", image_size=image_size, random_state=args.seed)


def _make_greedy(args: argparse.Namespace, image_size: tuple[float, float]):
    from mixest.baselines import GreedyTracker

    return GreedyTracker(n_sources=args.n_sources, box_format="xywh")


def make_tracker(method: str, args: argparse.Namespace, image_size: tuple[float, float]):
    """Build the tracker registered under ``method`` in :data:`METHODS`."""
    if method not in METHODS:
        raise SystemExit(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    module, name = METHODS[method].split(":")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        msg = f"method {method!r} is not available in this installation ({exc})."
        raise SystemExit(msg) from exc
    if isinstance(factory, type):  # an estimator class: common keyword arguments
        return factory(n_sources=args.n_sources, box_format="xywh", image_size=image_size)
    return factory(args, image_size)


def _parse_frames(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError:
        msg = f"--frames must look like FIRST:LAST (1-based, inclusive), got {text!r}"
        raise SystemExit(msg) from None
    if last < first:
        raise SystemExit(f"--frames: LAST must be >= FIRST, got {text!r}")
    return first, last


def _find_seqinfo(det: Path, given: str | None) -> Path | None:
    if given is not None:
        return Path(given)
    for folder in (det.parent, det.parent.parent):
        if (folder / "seqinfo.ini").is_file():
            return folder / "seqinfo.ini"
    return None


def _track(args: argparse.Namespace) -> int:
    from mixest.tracking._motchallenge import (
        detections_to_array,
        read_mot,
        read_seqinfo,
        tracks_to_table,
        write_mot,
    )

    det = Path(args.detections)
    if not det.is_file():
        raise SystemExit(f"detection file not found: {det}")
    table = read_mot(det)
    seqinfo = _find_seqinfo(det, args.seqinfo)
    if seqinfo is not None:
        info = read_seqinfo(seqinfo)
        image_size = (float(info["im_width"]), float(info["im_height"]))
    else:
        image_size = tuple(float(v) for v in args.image_size)
    frames = _parse_frames(args.frames)
    if frames is None:
        frames = (int(table["frame"].min()), int(table["frame"].max()))
    frame_ids = np.arange(frames[0], frames[1] + 1)
    X = detections_to_array(table, frames=frame_ids)[None]
    tracker = make_tracker(args.method, args, image_size)
    tic = time.perf_counter()
    tracks = tracker.fit(X).predict(X)[0]
    seconds = time.perf_counter() - tic
    out = Path(args.output)
    write_mot(out, tracks_to_table(tracks, frame_offset=frames[0]))
    print(f"tracked {args.n_sources} objects over frames {frames[0]}-{frames[1]} with "
          f"{args.method} in {seconds:.2f} s -> {out}")
    if args.plot:
        _plot(X[0], tracks, image_size, Path(args.plot))
        print(f"plot -> {args.plot}")
    return 0


def _plot(X: np.ndarray, tracks: np.ndarray, image_size, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    cx = X[..., 0] + X[..., 2] / 2
    cy = X[..., 1] + X[..., 3] / 2
    ax.scatter(cx.ravel(), cy.ravel(), s=4, c="0.6", label="detections")
    for n in range(tracks.shape[1]):
        ax.plot(tracks[:, n, 0] + tracks[:, n, 2] / 2, tracks[:, n, 1] + tracks[:, n, 3] / 2,
                lw=2, label=f"track {n + 1}")
    ax.set_xlim(0, image_size[0])
    ax.set_ylim(image_size[1], 0)  # image coordinates: y down
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _demo(args: argparse.Namespace) -> int:
    from mixest.baselines import GreedyTracker
    from mixest.datasets import make_tracking_mixture
    from mixest.tracking._metrics import mot_metrics
    from mixest.tracking._tracker import MixDVAETracker

    X, y = make_tracking_mixture(args.n_sequences, 3, args.n_frames, jitter=args.jitter,
                                 miss_prob=args.miss_prob, shuffle=args.shuffle,
                                 random_state=args.seed)
    common = {"max_iter": args.max_iter, "box_format": "xyxy", "image_size": (1.0, 1.0),
              "obs_noise": args.jitter, "random_state": args.seed}
    rows = []
    for name, est in (
        ("greedy", GreedyTracker(3, box_format="xyxy")),
        ("mixdvae", MixDVAETracker(3, prior=args.prior, **common)),
        ("vem+cv", MixDVAETracker(3, prior="constant-velocity", **common)),
    ):
        tic = time.perf_counter()
        tracks = est.fit(X).predict(X)
        seconds = time.perf_counter() - tic
        m = mot_metrics(tracks, y, box_format="xyxy").loc["OVERALL"]
        rows.append((name, m["MOTA"], m["IDF1"], int(m["IDs"]), m["MOTP"], seconds))
    order = "shuffled" if args.shuffle else "ordered"
    print(f"{args.n_sequences} synthetic 3-object sequences, T={args.n_frames}, jitter "
          f"{args.jitter} of the box size, {args.miss_prob:.0%} misses, {order} detections")
    print("greedy: Hungarian matching to the last positions (the floor); mixdvae: the "
          f"{args.prior} prior; vem+cv: the same VEM with constant-velocity dynamics")
    print(f"{'method':<10}{'MOTA':>8}{'IDF1':>8}{'IDs':>6}{'MOTP':>8}{'seconds':>9}")
    for name, mota, idf1, ids, motp, sec in rows:
        print(f"{name:<10}{mota:>8.3f}{idf1:>8.3f}{ids:>6d}{motp:>8.3f}{sec:>9.2f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``mixest`` argument parser."""
    parser = argparse.ArgumentParser(prog="mixest", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    track = sub.add_parser("track", help="track N objects in a MOTChallenge det.txt")
    track.add_argument("detections", help="MOTChallenge detection file (det.txt)")
    track.add_argument("-n", "--n-sources", type=int, default=3, help="objects to track")
    track.add_argument("--frames", help="FIRST:LAST frame range, 1-based inclusive")
    track.add_argument("-o", "--output", required=True, help="MOTChallenge result file")
    track.add_argument("--seqinfo", help="seqinfo.ini (default: next to det.txt or one up)")
    track.add_argument("--image-size", nargs=2, type=float, default=(1920, 1080),
                       metavar=("WIDTH", "HEIGHT"), help="used without a seqinfo.ini")
    track.add_argument("--method", default="mixdvae", help=f"one of {sorted(METHODS)}")
    track.add_argument("--prior", default="pretrained:mot", help="MixDVAE prior")
    track.add_argument("--max-iter", type=int, default=70)
    track.add_argument("--plot", help="write a PNG of the tracks here")
    track.add_argument("--seed", type=int, default=0)
    track.set_defaults(func=_track)

    demo = sub.add_parser("demo", help="synthetic 3-object demo against the greedy floor")
    demo.add_argument("--n-sequences", type=int, default=32)
    demo.add_argument("--n-frames", type=int, default=60)
    demo.add_argument("--jitter", type=float, default=0.04, help="noise, fraction of box size")
    demo.add_argument("--miss-prob", type=float, default=0.1)
    demo.add_argument("--shuffle", action="store_true", help="shuffle detections per frame")
    demo.add_argument("--prior", default="pretrained:mot")
    demo.add_argument("--max-iter", type=int, default=30)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mixest`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "n_sources", 1) < 1:
        raise SystemExit("--n-sources must be at least 1")
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
