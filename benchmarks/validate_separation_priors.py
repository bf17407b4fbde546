"""Score candidate spectral priors on validation mixtures that the separation table never uses.

Usage::

    python benchmarks/validate_separation_priors.py [--priors SPEECH FLUTE]

How the bundled priors' training recipe was chosen (``docs/separation.md``): 16 mixtures of
T = 50 frames at 0 dB made from the CMU ARCTIC and LibriSpeech speech of
``../shared/data/audio/speech`` (a small part of the speech prior's own training audio) and the
flute melodies that ``benchmarks/audio_corpus.py`` rendered with the held-out soundfont
(``flute_eval/``), each file scaled to max |x| = 1, seed 7. SiSEC dev1 and the Medley
test/validation clips, the held-out sets of ``benchmarks/table_separation.py``, are not read.
Prints the mean SI-SDR per source of DVAE-init (0 iterations) and of MixDVAE after 1, 3, 10 and
70 VEM iterations. ``--priors`` takes what the separator takes: ``pretrained:NAME`` or saved
DVAE files (default: the bundled speech and flute priors); ``--authors-dir`` takes the MixDVAE
authors' released priors instead. ``--epsilon`` runs the separator at each of several
observation noise ratios (``MixDVAESeparator(epsilon=...)``; default: the separator's own), and
``--separator vkf`` or ``deep-ar`` scores that baseline instead, at its defaults but for
``--epsilon`` (the VKF starts from the priors' DVAE-init and fits its AR(1) on the priors' own
training audio, ``table_separation.py --train-minutes 10``); ``--feed sample`` and ``--seed``
set the MixDVAE separator's ``feed`` and ``random_state``, ``--observation`` its observation
model::

    python benchmarks/validate_separation_priors.py --epsilon 0.03 0.01 0.003 0.001
    python benchmarks/validate_separation_priors.py --separator vkf --epsilon 0.03 0.003
    python benchmarks/validate_separation_priors.py --observation additive --epsilon 0.03 \
        --authors-dir ../shared/data/pretrained/mixdvae_authors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from eval_audio_priors import CORPUS  # noqa: E402  (the synthetic audio's folder)

SPEECH = REPO.parent / "shared" / "data" / "audio" / "speech"
ITERATIONS = (0, 1, 3, 10, 70)


def validation_mixtures(n_mixtures: int = 16, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """The validation mixtures ``(n_mixtures, n_samples)`` and their sources."""
    from mixest.datasets import load_audio_folder, make_audio_mixtures

    try:
        speech = [x for name in ("cmu_arctic", "librispeech")
                  for x in load_audio_folder(SPEECH / name, 16000, trim_db=None)]
        flute = load_audio_folder(CORPUS / "flute_eval", 16000, trim_db=None)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"validation audio not found ({exc}); ../shared/data and "
                         "benchmarks/audio_corpus.py provide it") from exc
    return make_audio_mixtures(speech, flute, n_mixtures=n_mixtures, n_frames=50, ratio_db=0.0,
                               random_state=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--priors", nargs=2, default=["pretrained:speech", "pretrained:flute"],
                        metavar=("SPEECH", "FLUTE"),
                        help="pretrained:NAME or saved DVAE files")
    parser.add_argument("--authors-dir", type=Path, default=None,
                        help="the MixDVAE authors' released priors (model_scass_*.pt and their "
                        ".ini files) instead of --priors")
    parser.add_argument("--epsilon", type=float, nargs="+", default=[None],
                        help="observation noise ratios to score (default: the separator's)")
    parser.add_argument("--separator", choices=("mixdvae", "vkf", "deep-ar"), default="mixdvae")
    parser.add_argument("--feed", choices=("expected", "sample"), default="expected",
                        help="MixDVAESeparator(feed=...)")
    parser.add_argument("--seed", type=int, default=0, help="the separator's random_state")
    parser.add_argument("--observation", choices=("assignment", "additive"),
                        default="assignment", help="MixDVAESeparator(observation=...)")
    args = parser.parse_args(argv)
    if args.separator == "deep-ar" and (args.authors_dir is not None
                                        or args.priors != parser.get_default("priors")):
        parser.error("--separator deep-ar runs its own bundled networks: --priors and "
                     "--authors-dir do not apply")
    if args.separator != "mixdvae" and (args.feed != "expected"
                                        or args.observation != "assignment"):
        parser.error("--feed and --observation apply to --separator mixdvae only")

    from mixest.baselines import DeepARSeparator, VKFSeparator
    from mixest.separation import MixDVAESeparator, si_sdr

    priors = tuple(args.priors)
    if args.authors_dir is not None:
        from mixest.benchmark._table3 import authors_priors

        priors = tuple(authors_priors(args.authors_dir))
    X, Y = validation_mixtures()
    fit_X, fit_y = X[:1], None  # the priors only load in fit
    if args.separator == "vkf":
        from table_separation import training_sources

        fit_y = training_sources(10.0, 0)
        fit_X = fit_y.sum(1)
    name = "the authors' priors" if args.authors_dir else f"priors {priors[0]} / {priors[1]}"
    print(f"{args.separator}, {name}: mean SI-SDR speech / flute (dB) on {len(X)} validation "
          "mixtures")
    for epsilon in args.epsilon:
        eps = {} if epsilon is None else {"epsilon": epsilon}
        if args.separator == "mixdvae":
            est = MixDVAESeparator(priors=priors, feed=args.feed, random_state=args.seed,
                                   observation=args.observation, **eps).fit(fit_X)
            iterations = ITERATIONS  # the number of iterations is read at transform
        elif args.separator == "vkf":
            est = VKFSeparator(priors=priors, random_state=args.seed, **eps).fit(fit_X, fit_y)
            iterations = (70,)
        else:
            est = DeepARSeparator(random_state=args.seed, **eps).fit(fit_X)
            iterations = (70,)
        print(f" epsilon {est.epsilon:g}")
        for n_iter in iterations:
            speech_db, flute_db = si_sdr(Y, est.set_params(max_iter=n_iter).transform(X)).mean(0)
            label = "DVAE-init" if n_iter == 0 else f"{n_iter} iterations"
            print(f"  {label:>13}: {speech_db:5.2f} / {flute_db:5.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
