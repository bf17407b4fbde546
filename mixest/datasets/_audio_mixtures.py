"""Single-channel mixtures of audio sources at a fixed source-to-source energy ratio."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence

import numpy as np
from sklearn.utils import check_random_state

from mixest.base import check_int
from mixest.separation._audio_io import _check_sample_rate, _check_signal, read_audio

__all__ = ["make_audio_mixtures"]


def _load_sources(sources: object, name: str, sample_rate: int) -> list[np.ndarray]:
    """Read a list of file paths and/or 1-D arrays into a list of float64 signals."""
    if isinstance(sources, (str, bytes, os.PathLike, np.ndarray)) or not isinstance(
        sources, Sequence
    ):
        raise TypeError(
            f"{name} must be a list of file paths or 1-D arrays, got {type(sources).__name__}; "
            "wrap a single file or array in a list."
        )
    if len(sources) == 0:
        raise ValueError(f"{name} is empty: give at least one file path or 1-D array.")
    signals = []
    for i, item in enumerate(sources):
        if isinstance(item, (str, os.PathLike)):
            signal, _ = read_audio(item, sample_rate=sample_rate)
        else:
            signal = _check_signal(item, name=f"{name}[{i}]")
        signals.append(signal)
    return signals


def make_audio_mixtures(
    sources_a: Sequence[object],
    sources_b: Sequence[object],
    *more_sources: Sequence[object],
    n_mixtures: int,
    n_frames: int,
    ratio_db: float | Sequence[float] = 0.0,
    sample_rate: int = 16000,
    hop_length: int = 256,
    n_fft: int = 1024,
    silence_threshold_db: float | None = -40.0,
    max_tries: int = 100,
    return_info: bool = False,
    random_state: int | np.random.RandomState | None = None,
):
    """Draw mixtures of aligned segments from two (or more) pools of audio sources.

    For every mixture and every pool, a file is drawn uniformly among those long enough, then a
    segment start uniformly within it; segments whose energy is too low relative to their file
    are redrawn. Source 0 keeps its level; every other source ``k`` is scaled so that the
    energy ratio is exactly ``ratio_db``:

    .. math::

        10 \\log_{10} \\frac{\\lVert s_0 \\rVert^2}{\\lVert s_k \\rVert^2} = \\mathrm{ratio\\_db}_k,
        \\qquad x = \\sum_k s_k.

    Segment length: ``n_samples = n_frames * hop_length``. With the frame convention of
    :class:`~mixest.separation.STFTTransformer` (frame ``t`` centred on sample
    ``t * hop_length``, ``ceil(n_samples / hop_length)`` frames), a mixture's STFT has exactly
    ``n_frames`` frames, for any ``n_fft``.

    Parameters
    ----------
    sources_a, sources_b, *more_sources : list of (path-like or array-like of shape (n,))
        One pool per source type, e.g. speech files and flute files. Files are read with
        :func:`~mixest.separation.read_audio` and resampled to ``sample_rate``; arrays are taken
        to be at ``sample_rate`` already.
    n_mixtures : int
        Number of mixtures.
    n_frames : int
        STFT frames per mixture.
    ratio_db : float or sequence of float, default=0.0
        Energy ratio of source 0 to each other source in dB (one value, or one per other
        source). E.g. speech-to-flute ratio for ``(speech_files, flute_files)``.
    sample_rate : int, default=16000
        Output sample rate in Hz.
    hop_length : int, default=256
        STFT hop; sets ``n_samples = n_frames * hop_length``.
    n_fft : int, default=1024
        STFT window length; validated (``hop_length <= n_fft``) so that the call mirrors
        :class:`~mixest.separation.STFTTransformer`, but it does not change the segment length.
    silence_threshold_db : float or None, default=-40.0
        A segment is rejected when ``10 log10(mean(seg**2) / mean(file**2))`` is below this
        value (near-silent pauses); ``None`` keeps every segment. All-zero files are skipped.
    max_tries : int, default=100
        Draws per (mixture, source) before giving up on finding a non-silent segment.
    return_info : bool, default=False
        Also return where every segment comes from.
    random_state : int, RandomState instance or None, default=None
        Seed of the draws.

    Returns
    -------
    mixtures : ndarray of shape (n_mixtures, n_samples)
        ``mixtures == sources.sum(axis=1)`` exactly (the sum is computed from the returned
        sources).
    sources : ndarray of shape (n_mixtures, n_sources, n_samples)
        The scaled sources, ``n_sources = 2 + len(more_sources)``.
    info : dict, only when ``return_info``
        ``"file_index"``, ``"offset"`` (int arrays of shape (n_mixtures, n_sources)): index into
        each pool and first sample of each segment; ``"gain"`` (float array): the factor
        applied to each segment.

    Raises
    ------
    TypeError, ValueError
        On invalid arguments, when a pool has no file of at least ``n_samples`` samples with
        non-zero energy, or when no non-silent segment is found within ``max_tries`` draws.

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.datasets import make_audio_mixtures
    >>> rng = np.random.default_rng(0)
    >>> a, b = [rng.standard_normal(20000)], [rng.standard_normal(30000)]
    >>> X, S = make_audio_mixtures(a, b, n_mixtures=3, n_frames=50, ratio_db=5.0, random_state=0)
    >>> X.shape, S.shape
    ((3, 12800), (3, 2, 12800))
    """
    pools = (sources_a, sources_b, *more_sources)
    names = ["sources_a", "sources_b"] + [f"more_sources[{i}]" for i in range(len(more_sources))]
    n_mixtures = check_int(n_mixtures, "n_mixtures")
    n_frames = check_int(n_frames, "n_frames")
    hop_length = check_int(hop_length, "hop_length")
    n_fft = check_int(n_fft, "n_fft")
    max_tries = check_int(max_tries, "max_tries")
    if hop_length > n_fft:
        raise ValueError(f"hop_length={hop_length} must not exceed n_fft={n_fft}.")
    sample_rate = _check_sample_rate(sample_rate)
    n_sources = len(pools)
    ratios = np.atleast_1d(np.asarray(ratio_db, dtype=np.float64))
    if ratios.ndim != 1 or ratios.size not in (1, n_sources - 1):
        raise ValueError(
            f"ratio_db must be a number or a sequence of {n_sources - 1} numbers (one per source "
            f"after the first), got {ratio_db!r}."
        )
    if not np.all(np.isfinite(ratios)):
        raise ValueError(f"ratio_db must be finite, got {ratio_db!r}.")
    ratios = np.broadcast_to(ratios, (n_sources - 1,))
    if silence_threshold_db is not None:
        if isinstance(silence_threshold_db, bool) or not isinstance(
            silence_threshold_db, numbers.Real
        ):
            raise TypeError(
                f"silence_threshold_db must be a number or None, got {silence_threshold_db!r}."
            )
        if not math.isfinite(silence_threshold_db):
            raise ValueError(f"silence_threshold_db must be finite, got {silence_threshold_db}.")
    rng = check_random_state(random_state)
    n_samples = n_frames * hop_length

    # Per pool: usable files (long enough, not all zeros) and their mean energy per sample.
    usable, file_power, signals_per_pool = [], [], []
    for pool, name in zip(pools, names, strict=True):
        signals = _load_sources(pool, name, sample_rate)
        lengths = np.array([s.shape[0] for s in signals])
        power = np.array([np.mean(s * s) for s in signals])
        ok = np.flatnonzero((lengths >= n_samples) & (power > 0))
        if ok.size == 0:
            raise ValueError(
                f"no file in {name} has at least n_samples = n_frames * hop_length = {n_samples} "
                f"samples at {sample_rate} Hz and non-zero energy (lengths: "
                f"{lengths.tolist()[:10]}{' ...' if lengths.size > 10 else ''}); use a smaller "
                "n_frames or longer files."
            )
        usable.append(ok)
        file_power.append(power)
        signals_per_pool.append(signals)

    threshold = None if silence_threshold_db is None else 10.0 ** (silence_threshold_db / 10.0)
    sources = np.empty((n_mixtures, n_sources, n_samples))
    file_index = np.empty((n_mixtures, n_sources), dtype=np.int64)
    offsets = np.empty((n_mixtures, n_sources), dtype=np.int64)
    gains = np.ones((n_mixtures, n_sources))
    for m in range(n_mixtures):
        for k in range(n_sources):
            for _ in range(max_tries):
                f = int(usable[k][rng.randint(usable[k].size)])
                signal = signals_per_pool[k][f]
                start = int(rng.randint(signal.shape[0] - n_samples + 1))
                segment = signal[start : start + n_samples]
                power = np.mean(segment * segment)
                if power > 0 and (threshold is None or power >= threshold * file_power[k][f]):
                    break
            else:
                raise ValueError(
                    f"no non-silent segment of {n_samples} samples found in {names[k]} after "
                    f"{max_tries} draws (silence_threshold_db={silence_threshold_db}); the files "
                    "may be (nearly) silent: lower silence_threshold_db or raise max_tries."
                )
            sources[m, k] = segment
            file_index[m, k] = f
            offsets[m, k] = start
        energy = np.einsum("kn,kn->k", sources[m], sources[m])
        for k in range(1, n_sources):
            # E_0 / (g^2 E_k) = 10^(ratio / 10)
            gains[m, k] = math.sqrt(energy[0] / (energy[k] * 10.0 ** (ratios[k - 1] / 10.0)))
            sources[m, k] *= gains[m, k]
    mixtures = sources.sum(axis=1)
    if return_info:
        return mixtures, sources, {"file_index": file_index, "offset": offsets, "gain": gains}
    return mixtures, sources
