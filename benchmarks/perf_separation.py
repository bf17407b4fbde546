"""Speed and memory of MixDVAESeparator: real-time factor and peak memory.

The real-time factor (RTF) is processing seconds per second of audio: 70 VEM iterations on
mixtures of T STFT frames (T * 256 samples at 16 kHz), batched, one process or ``n_jobs``
workers (processes, or with ``--backends threads`` threads of one process). Each configuration
runs in a fresh process; its peak resident memory is that process's plus its worker
processes', reported with the figure before separating (Python, torch and the priors). Also
the seconds per VEM step (E-W, E-Z, E-S, bound) of one batch.

    python benchmarks/perf_separation.py                       # 24 mixtures of T = 300
    python benchmarks/perf_separation.py --backends processes threads   # force either kind
    python benchmarks/perf_separation.py --lengths 50 300 --n-mixtures 24 --n-jobs 1 2
    python benchmarks/perf_separation.py --priors /tmp/speech.pt /tmp/flute.pt
    python benchmarks/perf_separation.py --n-jobs 2 --observations assignment additive
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
    parser.add_argument("--backends", nargs="+", default=["auto"],
                        choices=["auto", "processes", "threads"],
                        help="what the n_jobs workers are (auto: the separator's choice, "
                        "threads for SRNN priors; threads: one process)")
    parser.add_argument("--observations", nargs="+", default=["assignment"],
                        choices=["assignment", "additive"],
                        help="MixDVAESeparator(observation=...) of each run")
    parser.add_argument("--priors", nargs="+", default=["speech", "flute"],
                        help="bundled names, DVAE files, or model.pt:config.ini checkpoints")
    args = parser.parse_args(argv)
    from mixest.benchmark._perf import run_isolated

    print("| T | observation | mixtures | n_jobs | workers | seconds | audio s | RTF | "
          "peak RSS MB (after load) | s per iteration: E-W / E-Z / E-S / bound |\n"
          "|---|---|---|---|---|---|---|---|---|---|")
    runs = [(T, n_jobs, backend, observation) for T in args.lengths for n_jobs in args.n_jobs
            for backend in args.backends if n_jobs > 1 or backend == args.backends[0]
            for observation in args.observations]
    for T, n_jobs, backend, observation in runs:
        r = run_isolated("separation", T=T, n=args.n_mixtures, max_iter=args.max_iter,
                         priors=list(args.priors), n_jobs=n_jobs,
                         backend=None if backend == "auto" else backend,
                         observation=observation)
        st = r["steps"]
        steps = (" / ".join(f"{st[k]:.3f}" for k in ("e_w", "e_z", "e_s", "bound"))
                 if st else "")
        workers = r["backend"] if n_jobs > 1 else "-"
        print(f"| {T} | {observation} | {r['n']} | {n_jobs} | {workers} | {r['seconds']:.1f} | "
              f"{r['audio_seconds']:.1f} | {r['rtf']:.3f} | {r['peak_rss_mib']:.0f} "
              f"({r['rss_before_mib']:.0f}) | {steps} |", flush=True)
    print(f"\n{args.max_iter} VEM iterations; torch {_torch_version()}, one torch thread per "
          "worker; peak RSS: this process and its live worker processes together.")
    return 0


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    raise SystemExit(main())
