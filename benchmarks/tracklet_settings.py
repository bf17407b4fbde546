"""Choose the settings of the tracklet chains leave-one-sequence-out on unseen frames.

The chains of ``init="tracklets"`` (:mod:`mixest.tracking._tracklets`) have seven settings
(:class:`~mixest.tracking._tracklets.ChainSettings`). Most were first chosen on the first
halves of MOT17-02, -05 and -09, the frames the bundled YOLOX-X detector was trained on. This
script chooses them on the second halves, which it never saw, leave-one-sequence-out: for each
sequence, the candidate whose initialisation alone (no VEM) scores the best MOTA on the other
two sequences' ``real + clutter`` windows (T = 60 and 120 together, weighted by windows), and
the MOTA that candidate scores on the sequence left out. The held-out figures, pooled over the
three sequences, are an honest estimate of what the choice is worth; the best candidate on all
three together is an optimistic one.

The candidates are the defaults with one of the seven settings changed (``GRID`` and
``ALONE``: 19), or with ``--joint`` every combination of ``GRID``'s six (1,620: the choice then
fits the noise of the other two sequences and its held-out figures are mixed). A default is
changed when every fold chooses the same candidate and the change holds on the sequences left
out.

    python benchmarks/tracklet_settings.py --n-jobs 2 --out docs/results   # ~30 s on 2 cores
    python benchmarks/tracklet_settings.py --joint --n-jobs 2              # ~30 min
"""

from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: the grid: each setting's values (the defaults among them)
GRID = {"gate": [0.5, 0.75, 1.0, 1.5], "max_gap": [15, 30, 45, 60, 90], "end_boxes": [3, 5, 7],
        "velocity_shrink": [1.0, 2.0, 4.0], "min_iou": [0.4, 0.5, 0.6],
        "gap_power": [0.125, 0.25, 0.375]}
#: tried one at a time only (with the rest, --joint would take four times as long)
ALONE = {"velocity_frames": [5, 10, 20, 30]}
LENGTHS = (60, 120)


def prepare(X: np.ndarray, y: np.ndarray) -> tuple:
    """What the chains read of a set of windows, whatever the settings: the boxes, which of
    them are inside the image, the sources' first boxes and frames, and the true tracks."""
    from mixest.tracking._observation import _outside_image, initial_means

    valid = ~np.isnan(X).any(-1)
    m0, t0 = initial_means(X, valid, y.shape[2])
    return X, valid & ~_outside_image(X), m0, t0, y


def initialisation_mota(windows: dict, settings) -> dict:
    """MOTA of the chains alone with ``settings`` on each ``(T, sequence)`` of ``windows``
    (:func:`prepare`'s tuples), and the number of windows."""
    from mixest.tracking._metrics import mota_score
    from mixest.tracking._tracklets import tracklet_means

    out = {}
    for key, (X, inside, m0, t0, y) in windows.items():
        tracks = tracklet_means(X, inside, m0, t0, settings=settings)
        out[key] = (mota_score(y, tracks, box_format="xyxy"), len(X))
    return out


def pooled(scores: dict, names, T: int | None = None) -> float:
    """Window-weighted MOTA over the sequences ``names`` (and one length, or all)."""
    keys = [k for k in scores if k[1] in names and (T is None or k[0] == T)]
    return (sum(scores[k][0] * scores[k][1] for k in keys)
            / sum(scores[k][1] for k in keys))


def per_length(scores: dict, names) -> str:
    """:func:`pooled` at each of the ``LENGTHS``, as "0.123 / 0.456"."""
    return " / ".join(f"{pooled(scores, names, T):.3f}" for T in LENGTHS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mot17", default=str(REPO.parent / "shared" / "data" / "mot17"))
    p.add_argument("--n-jobs", type=int, default=1)
    p.add_argument("--joint", action="store_true",
                   help="every combination of the grid, not one setting at a time")
    p.add_argument("--start", nargs="+", default=[], metavar="SETTING=VALUE",
                   help="start from other values than the defaults, e.g. max_gap=30")
    p.add_argument("--out", default=None, help="folder for tracklet_settings.{md,csv,json}")
    args = p.parse_args(argv)
    root = Path(args.mot17)
    if not root.is_dir():
        print(f"MOT17 data not found at {root}", file=sys.stderr)
        return 1
    from joblib import Parallel, delayed

    from mixest.benchmark._table2 import sequences
    from mixest.benchmark._table2 import windows as make_windows
    from mixest.tracking._tracklets import DEFAULT

    start = DEFAULT
    for item in args.start:
        key, _, value = item.partition("=")
        if key not in DEFAULT._fields or not value:
            p.error(f"--start takes SETTING=VALUE with SETTING one of {DEFAULT._fields}, "
                    f"got {item!r}")
        start = start._replace(**{key: type(getattr(DEFAULT, key))(value)})
    base = "defaults" if start == DEFAULT else "start"
    warnings.simplefilter("ignore")
    folders = sequences(root, ("real + clutter",))
    names = [f.name for f in folders]
    windows = {}
    for T in LENGTHS:
        for folder in folders:
            X, y = make_windows([folder], T, "real + clutter", "second", 20, 0)
            if X is not None:
                windows[T, folder.name] = prepare(X, y)
    if args.joint:
        grid = [start._replace(**dict(zip(GRID, values, strict=True)))
                for values in itertools.product(*GRID.values())]
    else:
        grid = [start._replace(**{key: v}) for key, values in {**GRID, **ALONE}.items()
                for v in values]
    grid = list(dict.fromkeys([start, *grid]))  # the start first: it wins ties
    results = Parallel(n_jobs=args.n_jobs)(
        delayed(initialisation_mota)(windows, s) for s in grid)
    by_setting = dict(zip(grid, results, strict=True))
    default = by_setting[start]
    rows = []

    def describe(s) -> str:
        changed = [f"{k} {getattr(s, k):g}" for k in start._fields
                   if getattr(s, k) != getattr(start, k)]
        return ", ".join(changed) or f"the {base}"

    def add(**row):
        row["markdown"] = "| " + " | ".join(
            f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |"
        rows.append(row)
        print(row["markdown"], flush=True)

    held = {}  # each sequence's scores with its fold's choice
    for name in names:
        others = [n for n in names if n != name]
        chosen = max(grid, key=lambda s: pooled(by_setting[s], others))
        held.update({(T, name): by_setting[chosen][T, name] for T in LENGTHS})
        add(held_out=name, settings=describe(chosen),
            other_two_chosen=pooled(by_setting[chosen], others),
            other_two_default=pooled(default, others),
            held_out_chosen=" / ".join(f"{by_setting[chosen][T, name][0]:.3f}" for T in LENGTHS),
            held_out_default=" / ".join(f"{default[T, name][0]:.3f}" for T in LENGTHS))
    add(held_out="all three, each with its fold's choice", settings="",
        other_two_chosen="", other_two_default="",
        held_out_chosen=per_length(held, names), held_out_default=per_length(default, names))
    best = max(grid, key=lambda s: pooled(by_setting[s], names))
    add(held_out="none (the best on all three: optimistic)", settings=describe(best),
        other_two_chosen="", other_two_default="",
        held_out_chosen=per_length(by_setting[best], names),
        held_out_default=per_length(default, names))
    header = ("| sequence left out | settings chosen on the other two | MOTA there, chosen | "
              f"MOTA there, {base} | MOTA left out, chosen (T = 60 / 120) | "
              f"MOTA left out, {base} |\n|---|---|---|---|---|---|")
    footer = (f"The chains alone (no VEM) on the real + clutter windows of the second halves "
              f"(a window every 20 frames, seed 0); {len(grid)} candidates, "
              + ("every combination of " if args.joint else f"the {base} with one of ")
              + "; ".join(f"{k} {', '.join(f'{v:g}' for v in vals)}"
                          for k, vals in (GRID if args.joint else {**GRID, **ALONE}).items())
              + (". Defaults: " if start == DEFAULT else ". Started from: ")
              + ", ".join(f"{k} {getattr(start, k):g}" for k in start._fields) + ".")
    print(footer)
    candidates = []
    if not args.joint:  # every candidate on every sequence
        for setting in grid:
            row = {"candidate": describe(setting)}
            for name in [*names, None]:
                keep = names if name is None else [name]
                row[name or "all three"] = per_length(by_setting[setting], keep)
            row["markdown"] = "| " + " | ".join(row.values()) + " |"
            candidates.append(row)
            print(row["markdown"], flush=True)
    if args.out is not None:
        from mixest.benchmark._results import write_results

        write_results(Path(args.out), "tracklet_settings", rows, header, footer)
        if candidates:
            keys = [k for k in candidates[0] if k != "markdown"]
            write_results(Path(args.out), "tracklet_candidates", candidates,
                          "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys),
                          "MOTA of the chains alone, T = 60 / 120. " + footer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
