"""Separation results table: speech + flute (the paper's Table 3 analogue).

Held-out mixtures only: SiSEC 2011 dev1 speech with the Medley-solos-DB test and validation
flute clips (../shared/data/audio; ``--speech-dir`` and ``--music-dir`` take your own folders),
resampled to 16 kHz, each file scaled to max |x| = 1, the flute scaled against the speech to the
speech-to-flute ratio (-10, -5, 0 and 5 dB), 24 mixtures per setting, T = 50, 100 and 300 STFT
frames (waveforms of T * 256 samples; the flute clips last 2.97 s, so for T = 300 they are
joined into one 8.9 s recording), fixed seeds. Rows: the mixture itself, the oracle ideal ratio
mask, DVAE-init, the VKF (from DVAE-init and from the true sources), Deep AR, NMF, temporal NMF
and MixDVAE, with mixest's bundled priors and, with ``--authors-dir``, with the MixDVAE authors'
released priors (read at run time). NMF, temporal NMF and the VKF's AR(1) learn from
``--train-minutes`` of the priors' own training audio per source. Prints a Markdown table of
SI-SDR, PESQ (wide-band), ESTOI and scale-optimal RMSE per source and the real-time factor of
each row; ``--out DIR`` also writes it as Markdown, CSV and JSON with the command and the
mixest version.

    python benchmarks/table_separation.py --authors-dir ../shared/data/pretrained/mixdvae_authors
    python benchmarks/table_separation.py --lengths 50 --ratios 0 --n-mixtures 8   # quick
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
AUDIO = REPO.parent / "shared" / "data" / "audio"
SOURCES = ("speech", "flute")


def held_out(audio: Path, speech_dir: Path | None = None,
             music_dir: Path | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The evaluation audio at 16 kHz, each file scaled to max |x| = 1: by default SiSEC dev1
    speech and the Medley test/validation flute clips of ``audio``; ``speech_dir`` and
    ``music_dir`` take a user's own folders (every audio file in them)."""
    from mixest.datasets import load_audio_folder

    try:
        speech = load_audio_folder(speech_dir or audio / "speech" / "sisec2011_dev1", 16000,
                                   trim_db=None)
        if music_dir is None:
            training = tuple(p.name for p in (audio / "flute").glob("*training*"))
            music = load_audio_folder(audio / "flute", 16000, trim_db=None, exclude=training)
        else:
            music = load_audio_folder(music_dir, 16000, trim_db=None)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"evaluation audio not found: {exc}") from exc
    return speech, music


def scores(Y: np.ndarray, est: np.ndarray) -> dict[str, np.ndarray]:
    """Per-source means over mixtures of SI-SDR, PESQ, ESTOI and RMSE."""
    from mixest.separation import pesq_score, scale_optimal_rmse, si_sdr

    out = {"SI-SDR": si_sdr(Y, est).mean(0), "RMSE": scale_optimal_rmse(Y, est).mean(0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out["PESQ"] = np.nanmean(pesq_score(Y, est, 16000, mode="wb", on_error="nan"), 0)
        out["ESTOI"] = np.nanmean([[_estoi(y, e) for y, e in zip(ys, es, strict=True)]
                                   for ys, es in zip(Y, est, strict=True)], 0)
    return out


def _estoi(reference: np.ndarray, estimate: np.ndarray) -> float:
    """ESTOI, NaN where the reference is too short once its silences are removed (T = 50)."""
    from mixest.separation import estoi_score

    try:
        return float(estoi_score(reference, estimate, 16000))
    except ValueError:
        return float("nan")


def training_sources(minutes: float, seed: int) -> np.ndarray:
    """Isolated training audio of both types, ``(1, 2, n_samples)``: the DVAE priors' own
    training material (``benchmarks/train_priors.py``), files in a seeded order, joined and cut
    to ``minutes`` each (what the NMF dictionaries and the VKF's AR(1) fits learn from)."""
    from train_priors import _audio_sources

    from mixest.datasets import load_audio_folder

    rng = np.random.default_rng(seed)
    parts = []
    for name in SOURCES:
        signals = [x for folder, exclude in _audio_sources(name)
                   for x in load_audio_folder(folder, 16000, exclude=exclude)]
        order = rng.permutation(len(signals))
        parts.append(np.concatenate([signals[i] for i in order]))
    n = min(int(minutes * 60 * 16000), *(len(p) for p in parts))
    return np.stack([p[:n] for p in parts])[None]


def separators(args: argparse.Namespace, prior_sets: dict) -> list[tuple[str, object]]:
    """Every row's separator, unfitted: (label, estimator)."""
    from mixest.baselines import (
        DeepARSeparator,
        NMFSeparator,
        TemporalNMFSeparator,
        VKFSeparator,
    )
    from mixest.separation import MixDVAESeparator

    common = {"random_state": args.seed, "n_jobs": args.n_jobs}
    rows = []
    for name, priors in prior_sets.items():
        rows.append((f"DVAE-init ({name} priors)",
                     MixDVAESeparator(priors=priors, max_iter=0, **common)))
    rows += [
        ("VKF (DVAE-init)", VKFSeparator(priors=prior_sets["mixest"], max_iter=args.max_iter,
                                         **common)),
        ("VKF (oracle init) [oracle]", VKFSeparator(init="oracle", max_iter=args.max_iter,
                                                    **common)),
        ("Deep AR", DeepARSeparator(max_iter=args.max_iter, **common)),
        ("NMF", NMFSeparator(**common)),
        ("temporal NMF", TemporalNMFSeparator(**common)),
    ]
    for name, priors in prior_sets.items():
        rows.append((f"MixDVAE ({name} priors)",
                     MixDVAESeparator(priors=priors, max_iter=args.max_iter, **common)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[50, 100, 300])
    parser.add_argument("--ratios", type=float, nargs="+", default=[-10.0, -5.0, 0.0, 5.0],
                        help="speech-to-music ratios in dB")
    parser.add_argument("--n-mixtures", type=int, default=24)
    parser.add_argument("--max-iter", type=int, default=70)
    parser.add_argument("--priors", nargs=2, default=["pretrained:speech", "pretrained:flute"],
                        help="mixest's priors (names or saved files)")
    parser.add_argument("--authors-dir", type=Path, default=None,
                        help="folder with model_scass_{wsj,cbf}.pt and their .ini files")
    parser.add_argument("--audio-dir", type=Path, default=AUDIO)
    parser.add_argument("--speech-dir", type=Path, default=None,
                        help="your own evaluation speech (default: SiSEC dev1 of --audio-dir)")
    parser.add_argument("--music-dir", type=Path, default=None,
                        help="your own evaluation music (default: the Medley flute test clips)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write table3.md, table3.csv and table3.json there, with the "
                        "command and the mixest version")
    parser.add_argument("--train-minutes", type=float, default=10.0,
                        help="isolated training audio per source for NMF, temporal NMF, VKF")
    parser.add_argument("--methods", nargs="+", default=None, metavar="LABEL",
                        help="run only the rows whose label starts with one of these")
    parser.add_argument("--n-jobs", type=int, default=2, help="processes per separator")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from mixest.datasets import make_audio_mixtures
    from mixest.dvae import DVAE
    from mixest.separation._base import oracle_ratio_mask

    speech, flute = held_out(args.audio_dir, args.speech_dir, args.music_dir)
    records: list[dict] = []
    prior_sets = {"mixest": list(args.priors)}
    if args.authors_dir is not None:
        d = args.authors_dir
        prior_sets["authors'"] = [
            DVAE.from_checkpoint(d / f"model_scass_{n}.pt", d / f"cfg_dvae_single_scass_{n}.ini")
            for n in ("wsj", "cbf")]
    rows = separators(args, prior_sets)
    if args.methods:
        rows = [(label, sep) for label, sep in rows
                if any(label.startswith(m) for m in args.methods)]
    y_train = training_sources(args.train_minutes, args.seed)
    print(f"training audio: {y_train.shape[-1] / 16000 / 60:.1f} min per source", flush=True)
    fit_seconds = {}
    for label, sep in rows:
        t0 = time.perf_counter()
        sep.fit(y_train.sum(1), y_train)
        fit_seconds[label] = time.perf_counter() - t0
    print("fit seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in fit_seconds.items()))
    header = ("| T | ratio | method | SI-SDR speech / flute | PESQ | ESTOI | RMSE | RTF |\n"
              "|---|---|---|---|---|---|---|---|")
    print(header, flush=True)
    for T in args.lengths:
        for ratio in args.ratios:
            pool = flute
            if max(len(f) for f in flute) < T * 256:  # the clips last 2.97 s: join them
                pool = [np.concatenate(flute)]
            X, Y = make_audio_mixtures(speech, pool, n_mixtures=args.n_mixtures, n_frames=T,
                                       ratio_db=ratio, random_state=args.seed + T)
            runs = [("mixture", lambda X=X: np.repeat(X[:, None], 2, 1)),
                    ("oracle ratio mask [oracle]", lambda X=X, Y=Y: oracle_ratio_mask(X, Y))]
            for label, sep in rows:
                oracle = label.endswith("[oracle]")
                runs.append((label, lambda X=X, Y=Y, sep=sep, oracle=oracle:
                             sep.transform(X, Y) if oracle else sep.transform(X)))
            audio_seconds = X.size / 16000
            for label, run in runs:
                t0 = time.perf_counter()
                est = run()
                rtf = (time.perf_counter() - t0) / audio_seconds
                s = scores(Y, est)
                cells = [" / ".join(f"{v:.2f}" for v in s[k])
                         for k in ("SI-SDR", "PESQ", "ESTOI", "RMSE")]
                line = f"| {T} | {ratio:+.0f} | {label} | " + " | ".join(cells) + f" | {rtf:.3f} |"
                print(line, flush=True)
                records.append({"T": T, "ratio_db": ratio, "method": label, "rtf": rtf,
                                "markdown": line,
                                **{f"{k} {src}": float(v) for k in s
                                   for src, v in zip(SOURCES, s[k], strict=True)}})
    footer = (f"{args.n_mixtures} mixtures per setting; seed {args.seed}; "
              f"{args.max_iter} VEM iterations, last iterate; RTF: processing seconds per "
              f"second of audio with n_jobs={args.n_jobs}. [oracle] rows use the true sources.")
    print("\n" + footer)
    if args.out is not None:
        from mixest.benchmark._results import write_results

        write_results(args.out, "table3", records, header, footer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
