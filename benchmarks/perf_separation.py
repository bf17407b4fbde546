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
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _priors(specs: list[str]) -> list:
    from mixest.dvae import DVAE

    out = []
    for spec in specs:
        if spec.endswith(".ini"):  # an authors' checkpoint: "model.pt:config.ini"
            pt, ini = spec.rsplit(":", 1)
            out.append(DVAE.from_checkpoint(pt, ini))
        else:
            out.append(DVAE.load(spec) if Path(spec).is_file() else DVAE.from_pretrained(spec))
    return out


def child(args) -> dict:
    """One configuration in this process: returns its figures."""
    import torch

    from mixest.separation import MixDVAESeparator

    torch.set_num_threads(1)
    priors = _priors(args.priors)
    rng = np.random.default_rng(0)
    n_samples = args.length * 256
    X = rng.standard_normal((args.n_mixtures, n_samples)) * 0.1  # the cost does not depend on it
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sep = MixDVAESeparator(priors=priors, max_iter=args.max_iter,
                           batch_size=-(-args.n_mixtures // args.n_jobs), n_jobs=args.n_jobs,
                           random_state=0).fit(X)
    t0 = time.perf_counter()
    sep.transform(X)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.n_jobs > 1:  # the workers' memory: their own peak
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    audio = args.n_mixtures * n_samples / 16000
    steps = {}
    if args.n_jobs == 1:  # per-step seconds of one batch, through the engine directly
        from mixest.mixture import run_vem
        from mixest.separation import stft
        from mixest.separation._vem_models import ComplexGaussianBins, SpectralDVAEDynamics

        S = np.ascontiguousarray(np.moveaxis(stft(X[: min(8, len(X))]), -1, -2))
        dyn = SpectralDVAEDynamics([p.module_ for p in priors])
        res = run_vem(S, ComplexGaussianBins(), dyn, n_sources=len(priors), max_iter=5, tol=0,
                      keep="last")
        steps = {k: v / 5 for k, v in res.timings.items() if k != "init"}
    return {"T": args.length, "n_mixtures": args.n_mixtures, "n_jobs": args.n_jobs,
            "seconds": seconds, "audio_seconds": audio, "rtf": seconds / audio,
            "rss_mb": peak / 1024, "base_rss_mb": base_rss / 1024, "steps": steps}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[300])
    parser.add_argument("--n-mixtures", type=int, default=24)
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--max-iter", type=int, default=70)
    parser.add_argument("--priors", nargs="+", default=["speech", "flute"],
                        help="bundled names, DVAE files, or model.pt:config.ini checkpoints")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.n_jobs = args.n_jobs[0]
        print(json.dumps(child(args)))
        return 0
    print("| T | mixtures | processes | seconds | audio s | RTF | peak RSS MB (after load) | "
          "s per iteration: E-W / E-Z / E-S / bound |\n|---|---|---|---|---|---|---|---|")
    for T in args.lengths:
        for n_jobs in args.n_jobs:
            cmd = [sys.executable, __file__, "--child", "--length", str(T), "--n-mixtures",
                   str(args.n_mixtures), "--n-jobs", str(n_jobs), "--max-iter",
                   str(args.max_iter), "--priors", *args.priors]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            st = r["steps"]
            steps = (" / ".join(f"{st[k]:.3f}" for k in ("e_w", "e_z", "e_s", "bound"))
                     if st else "")
            print(f"| {T} | {r['n_mixtures']} | {n_jobs} | {r['seconds']:.1f} | "
                  f"{r['audio_seconds']:.1f} | {r['rtf']:.3f} | {r['rss_mb']:.0f} "
                  f"({r['base_rss_mb']:.0f}) | {steps} |", flush=True)
    print(f"\n{args.max_iter} VEM iterations; torch {_torch_version()}, one thread per process.")
    return 0


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    raise SystemExit(main())
