"""Shared fixtures: the real-data folder (../shared/data), skipped cleanly when absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MIXEST_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; the test is skipped when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data not found at {SHARED_DATA} (set MIXEST_SHARED_DATA to the shared/data "
            "folder to run the real-data checks)"
        )
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_cuda = pytest.mark.skip(reason="no CUDA device available")
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(skip_cuda)


# ---------------------------------------------------------------------- audio: a known answer
RATE = 16000


def _tones(rng, n_samples):
    """Harmonic tones below 1.5 kHz with a slowly changing pitch and level."""
    t = np.arange(n_samples) / RATE
    f0 = 220 * 2 ** (rng.integers(0, 8, size=n_samples // 4000 + 1) / 12)
    f0 = np.repeat(f0, 4000)[:n_samples]
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in (1, 2, 3))
    return x * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))


def _hiss(rng, n_samples):
    """Noise between 4 and 7 kHz."""
    from mixest.separation import istft, stft

    S = stft(rng.standard_normal(n_samples))
    freqs = np.arange(S.shape[0]) * RATE / 1024
    S[(freqs < 4000) | (freqs > 7000)] = 0
    return 0.5 * istft(S, n_samples=n_samples)


@pytest.fixture(scope="session")
def disjoint_audio():
    """Two source types with disjoint frequency support (tones below 1.5 kHz, hiss at 4-7 kHz):
    training signals ``(2, n)`` and 3 test mixtures of 50 frames with their sources."""
    rng = np.random.default_rng(0)
    n_train, n_test = 40 * 12800, 3 * 12800
    train = np.stack([_tones(rng, n_train), _hiss(rng, n_train)])
    test = np.stack([_tones(rng, n_test), _hiss(rng, n_test)])
    y = test.reshape(2, 3, -1).transpose(1, 0, 2)
    return train, y.sum(1), y


@pytest.fixture(scope="session")
def disjoint_priors(disjoint_audio):
    """Tiny spectral DVAE priors trained on each source type of :func:`disjoint_audio`."""
    from mixest.dvae import DVAE, Network
    from mixest.separation._separator import load_spectral_priors

    small = DVAE(likelihood="itakura_saito", network=Network(z_dim=2, rnn_dim=8,
                 dense_dims=(32,)), n_epochs=30, batch_size=16, learning_rate=1e-2,
                 validation_fraction=0.0, device="cpu", random_state=0)
    train = disjoint_audio[0]
    return tuple(load_spectral_priors((small, small), train[None], 0))
