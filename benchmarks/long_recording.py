"""Long recordings: overlapping segments against one pass, SI-SDR, time and peak memory.

The VEM separators cut a mixture longer than 300 STFT frames into overlapping segments and
separate them as a batch (``docs/separation.md``, "Long recordings"). This script measures what
that buys on held-out audio: the SiSEC dev1 speech (80 s) joined into one recording and the
Medley-solos-DB test/validation flute clips (8.9 s) joined, each repeated as needed, cut into
``--n-recordings`` recordings of ``--seconds`` and mixed at 0 dB (each file scaled to max
|x| = 1 first).
Each configuration (segments, then one pass, which sets the separators' private segment
setting to None) runs in a fresh process, so that its peak resident memory is its own: the
peak up to the end of ``transform`` (the process's own; worker processes, if any, are not
counted), next to the resident memory before it (the data and the priors).

    python benchmarks/long_recording.py                          # one 60 s recording
    python benchmarks/long_recording.py --seconds 300 --n-jobs 2
    python benchmarks/long_recording.py --seconds 19.2 --n-recordings 8 --authors-dir \
        ../shared/data/pretrained/mixdvae_authors --observation additive --epsilon 0.03
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
sys.path.insert(0, str(REPO / "benchmarks"))


def recordings(seconds: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` held-out 0 dB mixtures of ``seconds`` at 16 kHz and their sources."""
    from table_separation import AUDIO, held_out

    speech, flute = held_out(AUDIO)
    length = int(seconds * 16000)
    s, f = (np.concatenate(x) for x in (speech, flute))
    s, f = (np.tile(x, -(-n * length // x.size)) for x in (s, f))  # repeated as needed
    Y = np.stack([np.stack([s[i * length:(i + 1) * length], f[i * length:(i + 1) * length]])
                  for i in range(n)])
    Y[:, 1] *= np.sqrt((Y[:, 0] ** 2).sum(-1) / (Y[:, 1] ** 2).sum(-1))[:, None]
    return Y.sum(1), Y


def one(args: argparse.Namespace) -> dict:
    """One configuration, in this process."""
    from mixest.separation import MixDVAESeparator, si_sdr
    from mixest.separation._base import VEMSeparator

    VEMSeparator._segments = None if args.one == "one pass" else (
        args.segment_frames, VEMSeparator._segments[1])
    X, Y = recordings(args.seconds, args.n_recordings)
    priors = ("pretrained:speech", "pretrained:flute")
    if args.authors_dir is not None:
        from mixest.benchmark._table3 import authors_priors

        priors = tuple(authors_priors(args.authors_dir))
    options = {} if args.epsilon is None else {"epsilon": args.epsilon}
    sep = MixDVAESeparator(priors=priors, observation=args.observation, n_jobs=args.n_jobs,
                           batch_size=args.batch_size, **options).fit(X[:, :16000])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tic = time.perf_counter()
    est = sep.transform(X)
    seconds = time.perf_counter() - tic
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the scoring's
    speech, flute = si_sdr(Y, est).mean(0)
    return {"run": args.one, "seconds": seconds, "rtf": seconds / X.size * 16000,
            "speech": speech, "flute": flute, "peak_mb": peak, "before_mb": before}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--n-recordings", type=int, default=1)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--authors-dir", type=Path, default=None,
                        help="the MixDVAE authors' released priors instead of the bundled ones")
    parser.add_argument("--observation", choices=("assignment", "additive"),
                        default="assignment")
    parser.add_argument("--epsilon", type=float, default=None)
    parser.add_argument("--segment-frames", type=int, default=None,
                        help="frames per segment (default: the separators')")
    parser.add_argument("--one", choices=("segments", "one pass"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.segment_frames is None:
        from mixest.separation._base import SEGMENT_FRAMES

        args.segment_frames = SEGMENT_FRAMES
    if args.one is not None:
        print(json.dumps(one(args)))
        return 0
    print(f"{args.n_recordings} recording(s) of {args.seconds:g} s, 0 dB, n_jobs={args.n_jobs}, "
          f"batch_size={args.batch_size}, segments of {args.segment_frames} frames, "
          f"observation={args.observation}, "
          f"{'the authors' if args.authors_dir else 'bundled'} priors\n")
    print("| run | seconds | RTF | SI-SDR speech / flute (dB) | peak RSS MB (before "
          "transform) |\n|---|---|---|---|---|")
    for run in ("segments", "one pass"):
        argv_one = [sys.executable, __file__, "--one", run] + (argv or sys.argv[1:])
        out = subprocess.run(argv_one, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {r['run']} | {r['seconds']:.1f} | {r['rtf']:.3f} | {r['speech']:.2f} / "
              f"{r['flute']:.2f} | {r['peak_mb']:.0f} ({r['before_mb']:.0f}) |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
