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
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _workers_peak_mib():
    """Sum of the peak RSS of this process's live children (Linux ``/proc``), else 0."""
    total = 0.0
    for tasks in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in tasks.read_text().split():
            status = Path(f"/proc/{pid}/status")
            if status.is_file():
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
    return total


def one_run(T, n, max_iter, prior, finetune_steps=0, n_jobs=1, seed=0):
    """Track ``n`` synthetic sequences of length ``T``; return timings (run in a subprocess)."""
    import torch

    torch.set_num_threads(2)
    from mixest import MixDVAETracker
    from mixest.datasets import make_tracking_mixture

    X, _ = make_tracking_mixture(n, 3, T, jitter=0.08, miss_prob=0.3, shuffle=True,
                                 random_state=seed, box_format="xyxy", image_size=None)
    if prior.endswith(".pt"):  # a saved DVAE (a candidate prior)
        from mixest.dvae import DVAE

        prior = DVAE.load(prior)
    est = MixDVAETracker(3, prior=prior, max_iter=max_iter, tol=0.0, batch_size=n,
                         finetune_steps=finetune_steps, box_format="xyxy",
                         image_size=(1, 1), n_jobs=n_jobs, random_state=seed).fit(X)
    est.predict(X[:2 * n_jobs])  # warm-up: Numba cache, torch kernels, worker processes
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tic = time.perf_counter()
    est.predict(X)
    total = time.perf_counter() - tic
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + 1024 * _workers_peak_mib()
    steps = est.timings_
    # the default stopping rule (tol=1e-4, converged sequences frozen)
    est.set_params(tol=1e-4)
    tic = time.perf_counter()
    est.predict(X)
    default = time.perf_counter() - tic
    return {"T": T, "n": n, "iterations": int(est.n_iter_[0]), "seconds": total,
            "ms_per_sequence": 1e3 * total / n, "steps": steps,
            "default_ms_per_sequence": 1e3 * default / n, "default_iterations": int(est.n_iter_[0]),
            "peak_rss_mib": rss / 1024, "rss_before_mib": rss0 / 1024}


def ew_ratio(n=128, T=60, K=3, N=3, D=4, repeat=20):
    from mixest._kernels._estep_w import e_w_numba, e_w_numpy

    rng = np.random.default_rng(0)
    obs = rng.random((n, T, K, D))
    valid = rng.random((n, T, K)) > 0.3
    phi = rng.uniform(1e-5, 1e-3, (n, T, K, D))
    means, covs = rng.random((n, T, N, D)), rng.uniform(1e-6, 1e-4, (n, T, N, D))
    lp = np.full((n, N + 1), -np.log(N + 1))
    args = (obs, valid, phi, means, covs, lp, 0.0, 1.0)
    e_w_numba(*args)
    times = {}
    for name, fn in (("numba", e_w_numba), ("numpy", e_w_numpy)):
        tic = time.perf_counter()
        for _ in range(repeat):
            fn(*args)
        times[name] = (time.perf_counter() - tic) / repeat
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[60, 120, 300])
    p.add_argument("--n-sequences", type=int, default=128)
    p.add_argument("--max-iter", type=int, default=70)
    p.add_argument("--prior", default="pretrained:mot", help="pretrained:NAME or a saved .pt")
    p.add_argument("--finetune-steps", type=int, default=0)
    p.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2],
                   help="worker processes sharing the batch (2: both cores of the target)")
    p.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.single:
        print(json.dumps(one_run(args.single, args.n_sequences, args.max_iter, args.prior,
                                 args.finetune_steps, args.n_jobs[0])))
        return
    env = dict(os.environ, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2", NUMBA_NUM_THREADS="2",
               PYTHONPATH=str(REPO))
    print(f"{args.n_sequences} sequences per batch, {args.max_iter} iterations, 2 threads, "
          f"finetune_steps={args.finetune_steps}")
    print("| T | n_jobs | ms / sequence | init | E-W | E-Z | E-S | M | bound | peak RSS (MiB) "
          "| ms / sequence, tol=1e-4 (iterations) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for T in args.lengths:
        for n_jobs in args.n_jobs:
            out = subprocess.run(
                [sys.executable, __file__, "--single", str(T), "--n-sequences",
                 str(args.n_sequences), "--max-iter", str(args.max_iter), "--prior", args.prior,
                 "--finetune-steps", str(args.finetune_steps), "--n-jobs", str(n_jobs)],
                env=env, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
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
