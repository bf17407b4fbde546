"""Speed and memory of MixDVAESeparator: real-time factor and peak memory.

The real-time factor (RTF) is processing seconds per second of audio: 70 VEM iterations on
mixtures of T STFT frames (T * 256 samples at 16 kHz), batched, one process or ``n_jobs``
processes. Each configuration runs in a fresh process, whose peak resident memory (ru_maxrss)
is reported with and without the separation (the difference is what separating costs). Also the
seconds per VEM step (E-W, E-Z, E-S, bound) of one batch.

    python benchmarks/perf_separation.py                       # 24 mixtures of T = 300
    python benchmarks/perf_separation.py --lengths 50 300 --n-mixtures 24 --n-jobs 1 2
    python benchmarks/perf_separation.py --priors /tmp/speech.pt /tmp/flute.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[300])
    parser.add_argument("--n-mixtures", type=int, default=24)
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-iter", type=int, default=70)
    parser.add_argument("--priors", nargs="+", default=["speech", "flute"],
                        help="bundled names, DVAE files, or model.pt:config.ini checkpoints")
    args = parser.parse_args(argv)
    from mixest.benchmark._perf import run_isolated

    print("| T | mixtures | processes | seconds | audio s | RTF | peak RSS MB (after load) | "
          "s per iteration: E-W / E-Z / E-S / bound |\n|---|---|---|---|---|---|---|---|")
    for T in args.lengths:
        for n_jobs in args.n_jobs:
            r = run_isolated("separation", T=T, n=args.n_mixtures, max_iter=args.max_iter,
                             priors=list(args.priors), n_jobs=n_jobs)
            st = r["steps"]
            steps = (" / ".join(f"{st[k]:.3f}" for k in ("e_w", "e_z", "e_s", "bound"))
                     if st else "")
            print(f"| {T} | {r['n']} | {n_jobs} | {r['seconds']:.1f} | "
                  f"{r['audio_seconds']:.1f} | {r['rtf']:.3f} | {r['peak_rss_mib']:.0f} "
                  f"({r['rss_before_mib']:.0f}) | {steps} |", flush=True)
    print(f"\n{args.max_iter} VEM iterations; torch {_torch_version()}, one thread per process.")
    return 0


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    raise SystemExit(main())
