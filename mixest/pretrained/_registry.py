"""Names of the bundled pretrained weights and where they live."""

from __future__ import annotations

from pathlib import Path

__all__ = ["PRETRAINED", "weight_path"]

_HERE = Path(__file__).resolve().parent

#: name -> (file in this folder, one-line description)
PRETRAINED: dict[str, tuple[str, str]] = {
    "mot": (
        "dvae_mot.pt",
        "SRNN prior (gated first-order residual, told its inputs' noise level) on "
        "image-normalised boxes (x1, y1, x2, y2), y down, trained on the synthetic "
        "single-source trajectories by benchmarks/train_priors.py --prior mot",
    ),
    "mot-ar": (
        "deep_ar_mot.pt",
        "Deep AR (LSTM) next-box predictor for mixest.baselines.DeepARTracker, same data, trained "
        "by benchmarks/train_priors.py --prior mot-ar (benchmarks/train_deep_ar.py)",
    ),
    "speech": (
        "dvae_speech.pt",
        "SRNN prior on 513-bin power spectra of speech (16 kHz, 1024-sample sine window, hop "
        "256), trained on the open speech of ../shared/data/audio (SiSEC dev1 held out) and TTS "
        "speech by benchmarks/train_priors.py --prior speech",
    ),
    "flute": (
        "dvae_flute.pt",
        "SRNN prior on 513-bin power spectra of flute, trained on the Medley-solos-DB training "
        "clips and flute melodies rendered with fluidsynth by benchmarks/train_priors.py "
        "--prior flute",
    ),
    "speech-ar": (
        "deep_ar_speech.pt",
        "Deep AR (LSTM) predictor of the next power spectrum's variance for "
        "mixest.baselines.DeepARSeparator, trained on the speech prior's data by "
        "benchmarks/train_priors.py --prior speech-ar",
    ),
    "flute-ar": (
        "deep_ar_flute.pt",
        "Deep AR (LSTM) predictor of the next power spectrum's variance for "
        "mixest.baselines.DeepARSeparator, trained on the flute prior's data by "
        "benchmarks/train_priors.py --prior flute-ar",
    ),
}


def weight_path(name: str) -> Path:
    """Path of the bundled weight file called ``name``.

    Raises
    ------
    ValueError
        If ``name`` is unknown.
    FileNotFoundError
        If the file is missing from the installation.
    """
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; available: {sorted(PRETRAINED)}.")
    path = _HERE / PRETRAINED[name][0]
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {path.name!r} are missing; recreate them with "
            f"`python benchmarks/train_priors.py --prior {name}`."
        )
    return path
