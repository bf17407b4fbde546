"""Tracking results table: MixDVAE against the greedy floor (the paper's Table 2 analogue).

Two detection protocols (mild: jitter 0.04 of the box size, 10% misses; hard: jitter 0.08,
30% misses, detections shuffled within each frame), T = 60, 120, 300, on synthetic 3-object
sequences (the paper's generator) and on 3-object windows of MOT17 ground truth. Every method
sees the same detections, and every VEM tracker gets ``obs_noise`` equal to the protocol's jitter
(its sensor model; as in ``table_baselines.py``). Prints a Markdown table of MOTA, IDF1, ID
switches, MOTP, FP, FN.

    python benchmarks/table_tracking.py                       # full table
    python benchmarks/table_tracking.py --n-sequences 16 --lengths 60 --max-iter 30  # quick
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROTOCOLS = {
    "mild": {"jitter": 0.04, "miss_prob": 0.1, "shuffle": False},
    "hard": {"jitter": 0.08, "miss_prob": 0.3, "shuffle": True},
}


def synthetic(n, T, protocol, seed):
    """Normalised xyxy detections and tracks from the paper's generator."""
    from mixest.datasets import make_tracking_mixture

    return make_tracking_mixture(n, 3, T, random_state=seed, **PROTOCOLS[protocol],
                                 box_format="xyxy", image_size=None)


def mot17(root, n, T, protocol, seed, grouping="any"):
    """MOT17 3-object windows, normalised per sequence to xyxy in [0, 1].

    ``grouping="close"`` takes the three tracks of each window that come closest to one
    another (people passing or occluding each other) instead of a random three.
    """
    from mixest.tracking import make_windows, normalize_boxes
    from mixest.tracking._detections import simulate_detections

    folders = sorted(p for p in Path(root).iterdir() if (p / "gt" / "gt.txt").is_file())
    y, info = make_windows(folders, 3, T, max_windows=n, random_state=seed, return_info=True,
                           groups_per_window=4, grouping=grouping)
    if len(y) == 0:
        return None, None
    size = np.stack([info["im_width"], info["im_height"]], -1).astype(float)  # (n, 2)
    xyxy = normalize_boxes(y, size[:, None, None, :])
    X = simulate_detections(xyxy, box_format="xyxy", image_size=(1.0, 1.0),
                            random_state=seed, **PROTOCOLS[protocol])
    return X, xyxy


def _at_level(prior, level):
    """A copy of a DVAE prior with a noise-level input that tells it ``level`` (None: as is)."""
    if level is None:
        return prior
    import copy

    from mixest.dvae import DVAE

    if isinstance(prior, str):
        prior = DVAE.from_pretrained(prior.split(":", 1)[1])
    prior = copy.deepcopy(prior)
    prior.module_.noise_level.fill_(float(level))
    return prior


def methods(args, jitter):
    """name -> factory of every compared tracker (the greedy floor first)."""
    from mixest import MixDVAETracker
    from mixest.baselines import GreedyTracker

    out = {"greedy (floor)": lambda: GreedyTracker(3, box_format="xyxy")}
    for prior in args.priors:
        prior_obj = prior
        if prior.endswith(".pt"):  # a saved DVAE
            from mixest.dvae import DVAE

            prior_obj = DVAE.load(prior)
        cv = prior == "constant-velocity"
        name = ("VEM + constant velocity" if cv
                else f"MixDVAE ({prior})")
        reads_level = getattr(getattr(prior_obj, "module_", None), "noise_level_input", False)
        if prior.startswith("pretrained:"):
            from mixest.dvae import DVAE

            reads_level = DVAE.from_pretrained(prior.split(":", 1)[1]).module_.noise_level_input
        variants = itertools.product(args.temperatures, args.smooth,
                                     args.prior_noise_levels if reads_level else [None])
        for temp, smooth, level in variants:
            label = name
            if level is not None:
                label += f", level {level:g}"
            if temp != 1:
                label += f", temperature {temp:g}"
            if not smooth:
                label += ", filter only"
            told = _at_level(prior_obj, level)
            out[label] = (lambda t=temp, p=told, s=smooth:
                          MixDVAETracker(3, prior=p, max_iter=args.max_iter, box_format="xyxy",
                                         image_size=(1, 1), assignment_temperature=t,
                                         smooth=bool(s), obs_noise=jitter, n_jobs=args.n_jobs,
                                         random_state=0))
    return out


def main(argv=None):
    from mixest.tracking import mot_metrics

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-sequences", type=int, default=64)
    p.add_argument("--lengths", type=int, nargs="+", default=[60, 120, 300])
    p.add_argument("--protocols", nargs="+", default=list(PROTOCOLS))
    p.add_argument("--sources", nargs="+", default=["synthetic", "mot17"])
    p.add_argument("--mot17", default=str(REPO.parent / "shared" / "data" / "mot17"))
    p.add_argument("--mot17-grouping", nargs="+", default=["any", "close"],
                   help="any: random tracks of each window; close: the tracks that come "
                   "closest to one another (rows 'mot17 close')")
    p.add_argument("--priors", nargs="+", default=["pretrained:mot", "constant-velocity"],
                   help="MixDVAE priors: pretrained:<name>, constant-velocity, or a DVAE .pt file")
    p.add_argument("--max-iter", type=int, default=70)
    p.add_argument("--temperatures", type=float, nargs="+", default=[1.0],
                   help="E-W temperatures (125: the released code's hidden factor 0.008)")
    p.add_argument("--smooth", type=int, nargs="+", default=[1],
                   help="1: E-S with the backward (RTS) pass (default); 0: the paper's filter")
    p.add_argument("--prior-noise-levels", type=float, nargs="+", default=[None],
                   help="noise levels told to priors with a noise-level input "
                   "(default: the level stored with the prior)")
    p.add_argument("--n-jobs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    rows = []
    print("| data | protocol | T | n | method | MOTA | IDF1 | IDs | MOTP | FP | FN | s/seq |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    sources = [(s, "any") for s in args.sources if s != "mot17"]
    if "mot17" in args.sources:
        sources += [("mot17", g) for g in args.mot17_grouping]
    for source, grouping in sources:
        label = source if grouping == "any" else f"{source} {grouping}"
        for protocol in args.protocols:
            for T in args.lengths:
                if source == "synthetic":
                    X, y = synthetic(args.n_sequences, T, protocol, args.seed)
                else:
                    if not Path(args.mot17).is_dir():
                        print(f"(MOT17 not found at {args.mot17}; skipped)")
                        continue
                    X, y = mot17(args.mot17, args.n_sequences, T, protocol, args.seed, grouping)
                    if X is None:
                        continue
                jitter = PROTOCOLS[protocol]["jitter"]
                for name, make in methods(args, jitter).items():
                    tic = time.perf_counter()
                    tracks = make().fit(X).predict(X)
                    sec = (time.perf_counter() - tic) / len(X)
                    m = mot_metrics(y, tracks, box_format="xyxy").loc["OVERALL"]
                    row = (label, protocol, T, len(X), name, m["MOTA"], m["IDF1"], int(m["IDs"]),
                           m["MOTP"], int(m["FP"]), int(m["FN"]), sec)
                    rows.append(row)
                    print("| {} | {} | {} | {} | {} | {:.3f} | {:.3f} | {} | {:.3f} | {} | {} | "
                          "{:.3f} |".format(*row), flush=True)
    return rows


if __name__ == "__main__":
    main()
