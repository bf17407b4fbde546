"""A picture of a separation: the spectrograms of the mixture and of each source, and the masks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mixest.base import check_sequences
from mixest.separation._audio_io import _check_sample_rate
from mixest.separation._stft import stft

__all__ = ["plot_separation"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency of mixest
        raise ImportError("plot_separation needs matplotlib; install it with "
                          "`pip install matplotlib`.") from exc
    return plt


def _default_n_fft(sample_rate: int) -> int:
    """The power of two nearest to 64 ms (1024 samples at 16 kHz, the priors' window)."""
    return 2 ** max(4, round(math.log2(0.064 * sample_rate)))


def plot_separation(
    mixture: Any,
    sources: Any,
    sample_rate: int = 16000,
    *,
    labels: Any = None,
    n_fft: int | None = None,
    hop_length: int | None = None,
    dynamic_range: float = 80.0,
    axes: Any = None,
) -> Any:
    """Plot the spectrograms of a mixture and its separated sources, and each source's mask.

    One row per signal: the mixture, then each source. The left column holds log-power
    spectrograms :math:`10 \\log_{10} |S|^2` (dB, one colour scale for all rows, spanning
    ``dynamic_range`` dB below the loudest bin), the right column each source's estimated mask
    :math:`|S_n|^2 / \\sum_m |S_m|^2` in [0, 1], computed from the STFTs of the separated
    waveforms (a bin where every source is silent gets ``1 / n_sources``). Frame ``t`` is drawn
    at time ``t * hop_length / sample_rate`` seconds, frequencies in kHz.

    Parameters
    ----------
    mixture : array-like of shape (n_samples,)
        The mixture waveform.
    sources : array-like of shape (n_sources, n_samples)
        The separated waveforms (e.g. one row of :meth:`MixDVAESeparator.transform`).
    sample_rate : int, default=16000
        Sample rate of the waveforms in Hz.
    labels : sequence of str, optional
        One title per source; ``"source 1"``, ``"source 2"``, ... by default.
    n_fft : int, optional
        STFT window; by default the power of two nearest to 64 ms (1024 at 16 kHz).
    hop_length : int, optional
        STFT hop; ``n_fft // 4`` by default.
    dynamic_range : float, default=80.0
        dB below the loudest bin of all rows where the colour scale ends.
    axes : array-like of matplotlib Axes of shape (1 + n_sources, 2), optional
        Where to draw; a new figure when None. ``axes[0, 1]`` (next to the mixture) is hidden.

    Returns
    -------
    fig : matplotlib.figure.Figure
    """
    x = check_sequences(mixture, name="mixture", ndim=1, axis_names="(n_samples,)")
    s = check_sequences(sources, name="sources", ndim=2, axis_names="(n_sources, n_samples)")
    if s.shape[1] != x.shape[0]:
        raise ValueError(f"sources must have the mixture's {x.shape[0]} samples, got shape "
                         f"{s.shape}.")
    n_sources = s.shape[0]
    sample_rate = _check_sample_rate(sample_rate)
    if labels is None:
        labels = [f"source {n + 1}" for n in range(n_sources)]
    labels = [str(label) for label in labels]
    if len(labels) != n_sources:
        raise ValueError(f"labels must give one name per source ({n_sources}), got "
                         f"{len(labels)}.")
    if not (isinstance(dynamic_range, (int, float)) and not isinstance(dynamic_range, bool)
            and math.isfinite(dynamic_range) and dynamic_range > 0):
        raise ValueError(f"dynamic_range must be a positive number of dB, got {dynamic_range!r}.")
    n_fft = _default_n_fft(sample_rate) if n_fft is None else n_fft
    hop_length = max(1, n_fft // 4) if hop_length is None else hop_length
    plt = _pyplot()

    spec = stft(np.concatenate([x[None], s]), n_fft=n_fft, hop_length=hop_length,
                sample_rate=sample_rate)  # (1 + N, F, T)
    power = np.abs(spec) ** 2
    total = power[1:].sum(axis=0)
    masks = np.full(power[1:].shape, 1.0 / n_sources)
    np.divide(power[1:], total, out=masks, where=total > 0)
    masks = np.clip(masks, 0.0, 1.0)
    tiny = np.finfo(float).tiny
    db = 10 * np.log10(np.maximum(power, tiny))
    vmax = float(db.max()) if np.any(power > 0) else 0.0
    vmin = vmax - float(dynamic_range)

    n_frames = power.shape[-1]
    dt, df = hop_length / sample_rate, sample_rate / n_fft / 1000
    extent = (-dt / 2, (n_frames - 0.5) * dt, -df / 2, (power.shape[1] - 0.5) * df)
    if axes is None:
        fig, axes = plt.subplots(1 + n_sources, 2, sharex=True, sharey=True, squeeze=False,
                                 figsize=(11, 2.2 * (1 + n_sources)), layout="constrained")
    else:
        axes = np.asarray(axes, dtype=object)
        if axes.shape != (1 + n_sources, 2):
            raise ValueError(f"axes must have shape ({1 + n_sources}, 2), got {axes.shape}.")
        fig = axes[0, 0].figure
    image = {"origin": "lower", "aspect": "auto", "extent": extent, "interpolation": "nearest"}
    titles = ["mixture", *labels]
    for row, (ax, title) in enumerate(zip(axes[:, 0], titles, strict=True)):
        spec_im = ax.imshow(db[row], cmap="magma", vmin=vmin, vmax=vmax, **image)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("frequency (kHz)")
    for n, ax in enumerate(axes[1:, 1]):
        mask_im = ax.imshow(masks[n], cmap="viridis", vmin=0.0, vmax=1.0, **image)
        ax.set_title(f"mask of {labels[n]}", fontsize=9)
    axes[0, 1].set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.colorbar(spec_im, ax=list(axes[:, 0]), label="power (dB)")
    fig.colorbar(mask_im, ax=list(axes[1:, 1]), label="mask")
    return fig
