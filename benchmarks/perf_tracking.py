"""Speed and memory of MixDVAETracker.

Seconds per sequence for T = 60, 120, 300 with 128 sequences per batch and a fixed number of
VEM iterations (70, tol = 0), the share of time per VEM step, the ratio of the Numba E-W kernel
to its NumPy twin, and the peak resident memory of each run (one subprocess per T, so peaks do
not mix). Each T runs twice: in one process (``n_jobs=1``, one core busy) and with the batch split
over two worker processes (``n_jobs=2``, the two cores of the target machine); the peak memory
of the second adds the workers' peaks to the main process's.

    python benchmarks/perf_tracking.py
    python benchmarks/perf_tracking.py --lengths 60 --max-iter 10   # quick
    python benchmarks/perf_tracking.py --lengths 60 --finetune-steps 3   # cost of fine-tuning
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[60, 120, 300])
    p.add_argument("--n-sequences", type=int, default=128)
    p.add_argument("--max-iter", type=int, default=70)
    p.add_argument("--prior", default="pretrained:mot", help="pretrained:NAME or a saved .pt")
    p.add_argument("--finetune-steps", type=int, default=0)
    p.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2],
                   help="worker processes sharing the batch (2: both cores of the target)")
    args = p.parse_args(argv)
    from mixest.benchmark._perf import ew_ratio, run_isolated

    print(f"{args.n_sequences} sequences per batch, {args.max_iter} iterations, 2 threads, "
          f"finetune_steps={args.finetune_steps}")
    print("| T | n_jobs | ms / sequence | init | E-W | E-Z | E-S | M | bound | peak RSS (MiB) "
          "| ms / sequence, tol=1e-4 (iterations) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for T in args.lengths:
        for n_jobs in args.n_jobs:
            r = run_isolated("tracking", T=T, n=args.n_sequences, max_iter=args.max_iter,
                             prior=args.prior, finetune_steps=args.finetune_steps,
                             n_jobs=n_jobs)
            steps = r["steps"]
            tot = sum(steps.values())
            share = " | ".join(f"{100 * steps[k] / tot:.0f}%" for k in
                               ("init", "e_w", "e_z", "e_s", "m", "bound"))
            print(f"| {T} | {n_jobs} | {r['ms_per_sequence']:.1f} | {share} | "
                  f"{r['peak_rss_mib']:.0f} | {r['default_ms_per_sequence']:.1f} "
                  f"({r['default_iterations']}) |", flush=True)
    t = ew_ratio(n=args.n_sequences)
    print(f"E-W on (128, 60, 3, 3): Numba {1e3 * t['numba']:.2f} ms, NumPy "
          f"{1e3 * t['numpy']:.2f} ms, NumPy/Numba = {t['numpy'] / t['numba']:.1f}x")


if __name__ == "__main__":
    main()
