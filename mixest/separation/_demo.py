"""The separation half of ``mixest demo``: two synthetic source types, every separator on them.

The sources are built in, so the demo needs no data and no download: a *tone* (eight harmonics
whose pitch steps through a scale, with a slow level swell) and a *hiss* (tilted noise between
0.5 and 6 kHz, in bursts, at the tone's power): their spectra overlap, so a separator has to use
their shapes and their dynamics. Small models of each type are trained on other draws in a few
seconds, then MixDVAE and the baselines separate the same test mixtures.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

__all__ = ["demo_sources", "separation_demo"]

RATE = 16000
#: samples per test mixture: 50 STFT frames (0.8 s)
MIXTURE_SAMPLES = 50 * 256


def _tone(rng: np.random.Generator, n: int) -> np.ndarray:
    f0 = 220 * 2 ** (rng.integers(0, 8, size=n // 4000 + 1) / 12)
    phase = 2 * np.pi * np.cumsum(np.repeat(f0, 4000)[:n]) / RATE
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * np.arange(n) / RATE + rng.uniform(0, 6))
    return swell * sum(np.sin(k * phase) / k for k in range(1, 9))


def _hiss(rng: np.random.Generator, n: int) -> np.ndarray:
    from mixest.separation._stft import istft, stft

    S = stft(rng.standard_normal(n))
    freqs = np.arange(S.shape[0]) * RATE / 1024
    S[(freqs < 500) | (freqs > 6000)] = 0
    S *= (freqs / 1000.0 + 0.5)[:, None] ** -1  # a pink-ish tilt
    bursts = 0.2 + (np.sin(2 * np.pi * 1.3 * np.arange(n) / RATE + rng.uniform(0, 6)) > 0)
    return 0.5 * bursts * istft(S, n_samples=n)


def demo_sources(n_signals: int, n_samples: int, random_state: int = 0) -> np.ndarray:
    """``n_signals`` draws of both source types, shape ``(n_signals, 2, n_samples)`` (tone,
    hiss) at 16 kHz, the hiss scaled to the tone's power (0 dB)."""
    rng = np.random.default_rng(random_state)
    out = []
    for _ in range(n_signals):
        tone, hiss = _tone(rng, n_samples), _hiss(rng, n_samples)
        out.append([tone, hiss * np.sqrt(np.mean(tone**2) / np.mean(hiss**2))])
    return np.array(out)


def _separators(seed: int, max_iter: int) -> list[tuple[str, object]]:
    from mixest.baselines import DeepARSeparator, NMFSeparator, TemporalNMFSeparator
    from mixest.dvae import DVAE, Network
    from mixest.separation._separator import MixDVAESeparator

    small = DVAE(likelihood="itakura_saito", network=Network(z_dim=2, rnn_dim=8,
                 dense_dims=(32,)), n_epochs=30, batch_size=16, learning_rate=1e-2,
                 validation_fraction=0.0, device="cpu")
    mixdvae = MixDVAESeparator(priors=(small, small), max_iter=max_iter, random_state=seed)
    return [
        ("mixdvae", mixdvae),
        ("dvae-init", None),  # the fitted priors' initialisation, filled in below
        ("vkf", None),
        ("deep-ar", DeepARSeparator(priors=("train", "train"), hidden_size=16, max_epochs=15,
                                    max_iter=max_iter, random_state=seed)),
        ("nmf", NMFSeparator(16, random_state=seed)),
        ("tnmf", TemporalNMFSeparator(16, random_state=seed)),
    ]


def separation_demo(out_dir: Path, seed: int = 0, max_iter: int = 30) -> list[tuple]:
    """Train every separator on built-in sources, separate 3 test mixtures, write the first
    mixture, MixDVAE's sources and its picture into ``out_dir``.

    Returns
    -------
    rows : list of (name, SI-SDR tone, SI-SDR hiss, seconds)
        ``seconds``: training and separation. The first row is the mixture itself, the second
        the oracle ratio mask (a reference).
    """
    from mixest.baselines import VKFSeparator
    from mixest.separation._audio_io import write_audio
    from mixest.separation._base import oracle_ratio_mask
    from mixest.separation._metrics import si_sdr
    from mixest.separation._separator import MixDVAESeparator

    train = demo_sources(1, 40 * MIXTURE_SAMPLES, seed)
    y = demo_sources(3, MIXTURE_SAMPLES, seed + 1)
    y *= 0.9 / np.abs(y.sum(1)).max()  # mixtures that fit a 16-bit WAV
    X = y.sum(1)
    oracle = oracle_ratio_mask(X, y)
    rows = [("mixture", *si_sdr(y, np.repeat(X[:, None], 2, 1)).mean(0), 0.0),
            ("oracle mask", *si_sdr(y, oracle).mean(0), 0.0)]
    estimates = {}
    fitted: MixDVAESeparator | None = None
    for name, sep in _separators(seed, max_iter):
        tic = time.perf_counter()
        if name == "dvae-init":
            sep = MixDVAESeparator(priors=fitted.priors_, max_iter=0)
        elif name == "vkf":
            sep = VKFSeparator(priors=fitted.priors_, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():  # NMF's iteration caps: the table shows what they give
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = sep.fit(train.sum(1), train).transform(X)
        if name == "mixdvae":
            fitted = sep
        estimates[name] = est
        rows.append((name, *si_sdr(y, est).mean(0), time.perf_counter() - tic))
    out_dir.mkdir(parents=True, exist_ok=True)
    write_audio(out_dir / "mixture.wav", X[0], RATE)
    for n, label in enumerate(("tone", "hiss")):
        write_audio(out_dir / f"mixdvae_{label}.wav", estimates["mixdvae"][0, n], RATE,
                    subtype="FLOAT")  # (a source may exceed the mixture's peak)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mixest.separation._plot import plot_separation

    fig = plot_separation(X[0], estimates["mixdvae"][0], RATE, labels=["tone", "hiss"])
    fig.savefig(out_dir / "separation.png", dpi=100)
    plt.close(fig)
    return rows
