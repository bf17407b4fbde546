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
``--train-minutes`` of the priors' own training audio per source (the synthetic corpus of
``benchmarks/audio_corpus.py``: a run whose ``--methods`` leave those rows out does not read
it). Prints a Markdown table of SI-SDR, PESQ (wide-band), ESTOI and scale-optimal RMSE per
source and the real-time factor of each row; ``--out DIR`` also writes it as Markdown, CSV and
JSON with the command and the mixest version.

    python benchmarks/table_separation.py --authors-dir ../shared/data/pretrained/mixdvae_authors
    python benchmarks/table_separation.py --lengths 50 --ratios 0 --n-mixtures 8   # quick
    python benchmarks/table_separation.py --methods MixDVAE --feed sample   # sampled feed
    python benchmarks/table_separation.py --methods "MixDVAE (authors" --epsilon 0.03 \
        --authors-dir ../shared/data/pretrained/mixdvae_authors   # the paper's noise ratio
    python benchmarks/table_separation.py --methods "MixDVAE (authors" --epsilon 0.03 \
        --observation additive --authors-dir ../shared/data/pretrained/mixdvae_authors
"""

from __future__ import annotations

import argparse
import sys
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
    parser.add_argument("--n-jobs", type=int, default=2,
                        help="workers per separator (its n_jobs: threads or processes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feed", choices=("expected", "sample"), default=None,
                        help="what the MixDVAE rows' decoders read of the previous frame "
                        "(MixDVAESeparator(feed=...); default: the separator's)")
    parser.add_argument("--epsilon", type=float, default=None,
                        help="the MixDVAE rows' observation noise ratio (MixDVAESeparator("
                        "epsilon=...); default: the separator's, e.g. 0.03 for the paper's)")
    parser.add_argument("--observation", choices=("assignment", "additive"), default=None,
                        help="the MixDVAE rows' observation model (MixDVAESeparator("
                        "observation=...); default: the separator's, the paper's assignments)")
    args = parser.parse_args(argv)

    from mixest.benchmark._table3 import TRAINED, authors_priors, header, selected, table3

    speech, flute = held_out(args.audio_dir, args.speech_dir, args.music_dir)
    prior_sets = {"mixest": list(args.priors)}
    if args.authors_dir is not None:
        prior_sets["authors'"] = authors_priors(args.authors_dir)
    # only the NMF and VKF rows learn from isolated audio (the synthetic corpus of
    # benchmarks/audio_corpus.py): a run without them does not need it
    y_train = None
    methods = tuple(args.methods) if args.methods else None
    if any(selected(label, methods) for label in TRAINED):
        y_train = training_sources(args.train_minutes, args.seed)
        print(f"training audio: {y_train.shape[-1] / 16000 / 60:.1f} min per source", flush=True)
    records = table3(speech, flute, y_train, prior_sets=prior_sets, labels=SOURCES,
                     lengths=tuple(args.lengths), ratios=tuple(args.ratios),
                     n_mixtures=args.n_mixtures, max_iter=args.max_iter,
                     methods=methods, n_jobs=args.n_jobs,
                     seed=args.seed, verbose=False,
                     mixdvae={key: value for key, value in (("feed", args.feed),
                                                            ("epsilon", args.epsilon),
                                                            ("observation", args.observation))
                              if value is not None})
    print(header(SOURCES))
    print("\n".join(r["markdown"] for r in records))
    footer = (f"{args.n_mixtures} mixtures per setting; seed {args.seed}; "
              f"{args.max_iter} VEM iterations, last iterate; RTF: processing seconds per "
              f"second of audio with n_jobs={args.n_jobs}. [oracle] rows use the true sources.")
    print("\n" + footer)
    if args.out is not None:
        from mixest.benchmark._results import write_results

        write_results(args.out, "table3", records, header(SOURCES), footer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
