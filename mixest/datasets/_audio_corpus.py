"""Training corpora for the spectral priors: folders of audio files to power-spectrum sequences.

Three steps, each usable on its own:

* :func:`trim_silence` drops the quiet frames at both ends of a signal;
* :func:`load_audio_folder` reads every audio file under a folder (recursively, in a fixed
  order), resampled, trimmed and peak-normalised;
* :func:`make_spectral_sequences` turns signals into fixed-length sequences of power-spectrum
  frames ``|STFT|^2``, the training data of the speech and flute DVAE priors.

``benchmarks/audio_corpus.py`` synthesises such folders (text-to-speech, rendered flute
melodies); see ``docs/audio_data.md``.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mixest.base import check_int
from mixest.separation._audio_io import _check_sample_rate, _check_signal, read_audio

__all__ = ["load_audio_folder", "make_spectral_sequences", "trim_silence"]

#: File extensions (lower case) that :func:`load_audio_folder` reads.
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")


def _check_positive_db(value: object, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite positive (or non-negative) float of decibels."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of decibels, got {type(value).__name__}.")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(
            f"{name} must be a finite {kind} number of decibels (how far below the reference "
            f"level), got {value!r}."
        )
    return value


def trim_silence(
    signal: object,
    top_db: float = 30.0,
    frame_length: int = 1024,
    hop_length: int = 256,
) -> np.ndarray:
    """Drop the quiet frames at the start and end of a signal.

    The signal is cut into frames ``t = 0, 1, ...`` of ``frame_length`` samples starting at
    sample ``t * hop_length`` (the last frame reaches the end of the signal; samples past the
    end count as zeros). A frame is *loud* when its RMS is at most ``top_db`` below the RMS of
    the loudest frame. The samples from the first sample of the first loud frame to the last
    sample of the last loud frame are kept; quiet frames between loud ones are kept too.

    Because a frame is loud as soon as it overlaps the loud part enough, up to
    ``frame_length - 1`` quiet samples may remain at each end.

    Parameters
    ----------
    signal : array-like of shape (n_samples,)
        Finite real samples, not all zero.
    top_db : float, default=30.0
        Threshold in dB below the loudest frame's RMS (positive).
    frame_length : int, default=1024
        Frame length in samples.
    hop_length : int, default=256
        Samples between the starts of consecutive frames; at most ``frame_length``.

    Returns
    -------
    trimmed : ndarray of float64, shape (n_kept,)
        A copy of ``signal[start:stop]``.

    Raises
    ------
    TypeError, ValueError
        If ``signal`` is not a finite 1-D array or is all zeros (nothing to keep), or an
        argument is out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.datasets import trim_silence
    >>> x = np.zeros(8000)
    >>> x[3000:5000] = np.sin(0.3 * np.arange(2000))
    >>> y = trim_silence(x, frame_length=256, hop_length=64)
    >>> y.shape
    (2496,)
    """
    x = _check_signal(signal, name="signal")
    top_db = _check_positive_db(top_db, "top_db")
    frame_length = check_int(frame_length, "frame_length")
    hop_length = check_int(hop_length, "hop_length")
    if hop_length > frame_length:
        raise ValueError(
            f"hop_length={hop_length} must not exceed frame_length={frame_length} (every "
            "sample must lie in a frame)."
        )
    if not np.any(x):
        raise ValueError("signal is all zeros (silent): there is nothing to keep.")
    n = x.shape[0]
    n_frames = 1 + max(0, -(-(n - frame_length) // hop_length))
    # Frame energies from a cumulative sum of squares (O(n), any frame length).
    cumsum = np.concatenate([[0.0], np.cumsum(x * x)])
    starts = np.arange(n_frames) * hop_length
    stops = np.minimum(starts + frame_length, n)
    energy = np.maximum(cumsum[stops] - cumsum[starts], 0.0)  # rounding can go below 0
    # Zero padding past the end: every frame is divided by frame_length.
    rms = np.sqrt(energy / frame_length)
    loud = np.flatnonzero(rms >= rms.max() * 10.0 ** (-top_db / 20.0))
    start = int(starts[loud[0]])
    stop = int(stops[loud[-1]])
    return x[start:stop].copy()


def _check_exclude(exclude: object) -> tuple[str, ...]:
    if isinstance(exclude, (str, os.PathLike)):
        exclude = (exclude,)
    if not isinstance(exclude, (Sequence, set, frozenset)):
        raise TypeError(
            "exclude must be a sequence of sub-folder or file names (relative paths), got "
            f"{type(exclude).__name__}."
        )
    entries = []
    for i, entry in enumerate(exclude):
        if not isinstance(entry, (str, os.PathLike)):
            raise TypeError(
                f"exclude[{i}] must be a str or path-like (a relative path), got "
                f"{type(entry).__name__}."
            )
        text = Path(entry).as_posix() if isinstance(entry, os.PathLike) else str(entry)
        text = text.replace(os.sep, "/")
        while text.startswith("./"):
            text = text[2:]
        if not text or text == ".":
            raise ValueError(
                f"exclude[{i}] is empty or '.', which would exclude every file; give a "
                "sub-folder or file name."
            )
        if Path(text).is_absolute():
            raise ValueError(
                f"exclude[{i}]={text!r} must be relative to folder (e.g. 'test' or "
                "'test/a.wav'), not absolute."
            )
        entries.append(text)
    return tuple(entries)


def load_audio_folder(
    folder: str | os.PathLike,
    sample_rate: int = 16000,
    *,
    exclude: Sequence[str | os.PathLike] = (),
    trim_db: float | None = 30.0,
    normalize: bool = True,
    return_paths: bool = False,
) -> list[np.ndarray] | tuple[list[np.ndarray], list[Path]]:
    """Read every audio file under a folder, resampled, silence-trimmed and peak-normalised.

    Files ending in ``.wav``, ``.flac`` or ``.ogg`` (any case) are searched recursively and
    read in the order of their relative paths (``"a/x.wav" < "b.wav"``), so that the result
    does not depend on the file system. Each one is read as mono with
    :func:`~mixest.separation.read_audio` and resampled to ``sample_rate``.

    Parameters
    ----------
    folder : str or path-like
        Folder to search.
    sample_rate : int, default=16000
        Sample rate of the returned signals in Hz.
    exclude : sequence of str or path-like, default=()
        Files whose path relative to ``folder`` (with ``/`` separators) starts with one of
        these strings are skipped: a sub-folder (``"test"`` or ``"test/"``), a file
        (``"a/x.wav"``), or a file-name prefix (``"Medley-solos-DB_test"``). The match is on
        the text, so ``"test"`` also skips ``"testing/..."``; write ``"test/"`` to skip the
        sub-folder only. A single string is one entry.
    trim_db : float or None, default=30.0
        ``top_db`` of :func:`trim_silence` (default frames of 1024 samples, hop 256) applied
        to every signal; ``None`` keeps the silent ends.
    normalize : bool, default=True
        Scale every signal to a peak of ``max |x| = 1``.
    return_paths : bool, default=False
        Also return the files read, in the same order.

    Returns
    -------
    signals : list of ndarray of float64, shape (n_samples_i,)
        One signal per file.
    paths : list of pathlib.Path, only when ``return_paths``
        ``folder / relative_path`` of every file read.

    Raises
    ------
    FileNotFoundError
        If ``folder`` does not exist or is not a folder.
    ValueError
        If no audio file is left (none under ``folder``, or all excluded), a file cannot be
        read, or a file is all zeros while ``trim_db`` or ``normalize`` is set (the message
        names the file).
    TypeError
        On arguments of the wrong type.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from pathlib import Path
    >>> from mixest.datasets import load_audio_folder
    >>> from mixest.separation import write_audio
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "test").mkdir()
    >>> tone = 0.5 * np.sin(0.2 * np.arange(8000))
    >>> write_audio(folder / "b.wav", tone, 8000)
    >>> write_audio(folder / "test" / "a.wav", tone, 16000)
    >>> signals, paths = load_audio_folder(folder, exclude=["test/"], return_paths=True)
    >>> [p.name for p in paths], signals[0].shape, float(np.max(np.abs(signals[0])))
    (['b.wav'], (16000,), 1.0)
    """
    if not isinstance(folder, (str, os.PathLike)):
        raise TypeError(f"folder must be a str or path-like, got {type(folder).__name__}.")
    sample_rate = _check_sample_rate(sample_rate)
    entries = _check_exclude(exclude)
    if trim_db is not None:
        trim_db = _check_positive_db(trim_db, "trim_db")
    for name, flag in (("normalize", normalize), ("return_paths", return_paths)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {flag!r}.")
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"folder {str(root)!r} does not exist or is not a folder.")

    relative = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )
    kept = [r for r in relative if not any(r.startswith(e) for e in entries)]
    if not kept:
        what = (
            f"all {len(relative)} audio files are excluded by exclude={list(entries)}"
            if relative
            else f"it holds no {'/'.join(e.lstrip('.') for e in AUDIO_EXTENSIONS)} file"
        )
        raise ValueError(f"no audio file to read in folder {str(root)!r}: {what}.")

    signals, paths = [], []
    for rel in kept:
        path = root / rel
        x, _ = read_audio(path, sample_rate=sample_rate)
        if (trim_db is not None or normalize) and not np.any(x):
            raise ValueError(
                f"file {str(path)!r} in folder is all zeros (silent); it cannot be trimmed or "
                "normalised. Remove or exclude it, or pass trim_db=None, normalize=False."
            )
        if trim_db is not None:
            x = trim_silence(x, top_db=trim_db)
        if normalize:
            x = x / np.max(np.abs(x))
        signals.append(x)
        paths.append(path)
    return (signals, paths) if return_paths else signals


def make_spectral_sequences(
    signals: Sequence[object],
    n_frames: int = 50,
    *,
    step: int | None = None,
    n_fft: int = 1024,
    hop_length: int = 256,
    window: str | np.ndarray = "sine",
    min_level_db: float | None = None,
) -> np.ndarray:
    """Cut signals into sequences of power-spectrum frames, the training data of a spectral prior.

    Every signal is transformed with :func:`~mixest.separation.stft` (frame ``t`` centred on
    sample ``t * hop_length``, ``ceil(n_samples / hop_length)`` frames) and its power spectrum
    ``|STFT|^2`` is cut into segments of ``n_frames`` consecutive frames starting at frames
    ``0, step, 2 step, ...``; a segment that would run past the last frame is dropped.
    Segments never straddle two signals.

    Parameters
    ----------
    signals : sequence of array-like of shape (n_samples_i,), or 2-D array
        Signals, e.g. from :func:`load_audio_folder` (the rows of a 2-D array are signals).
        Signals with fewer than ``n_frames`` frames are skipped.
    n_frames : int, default=50
        Frames per sequence.
    step : int, optional
        Frames between the starts of consecutive sequences of one signal; defaults to
        ``n_frames`` (no overlap). ``step < n_frames`` overlaps them, ``step > n_frames``
        leaves gaps.
    n_fft, hop_length, window
        STFT parameters, as in :func:`~mixest.separation.stft`.
    min_level_db : float, optional
        When given (a positive number of dB, e.g. ``40``), a sequence is dropped when its
        mean power is more than ``min_level_db`` below the median mean power of all the
        sequences (silences); all-zero sequences are always dropped then.

    Returns
    -------
    sequences : ndarray of float32, shape (n_sequences, n_frames, n_fft // 2 + 1)
        ``sequences[i, t, f]`` is the power of bin ``f`` in frame ``t`` of sequence ``i``;
        sequences are in signal order, then time order.

    Raises
    ------
    TypeError, ValueError
        On invalid arguments, or when no sequence is left (all signals too short, or all
        sequences dropped as silent).

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.datasets import make_spectral_sequences
    >>> rng = np.random.default_rng(0)
    >>> signals = [rng.standard_normal(16000), rng.standard_normal(40000)]
    >>> make_spectral_sequences(signals, n_frames=50).shape     # 63 and 157 frames
    (4, 50, 513)
    >>> make_spectral_sequences(signals, n_frames=50, step=25).shape
    (6, 50, 513)
    """
    from mixest.separation._stft import _get_sft, n_frames_for, stft

    if isinstance(signals, np.ndarray) and signals.ndim == 2:
        signals = list(signals)
    if isinstance(signals, (str, bytes, np.ndarray)) or not isinstance(signals, Sequence):
        raise TypeError(
            "signals must be a list of 1-D arrays (or a 2-D array of signals), got "
            f"{type(signals).__name__}"
            + (" of one dimension; wrap a single signal in a list." if _is_1d(signals) else ".")
        )
    if len(signals) == 0:
        raise ValueError("signals is empty: give at least one signal.")
    n_frames = check_int(n_frames, "n_frames")
    step = n_frames if step is None else check_int(step, "step")
    if min_level_db is not None:
        min_level_db = _check_positive_db(min_level_db, "min_level_db", allow_zero=True)
    _get_sft(window, n_fft, hop_length)  # validates n_fft, hop_length and window up front
    checked = [_check_signal(s, name=f"signals[{i}]") for i, s in enumerate(signals)]

    counts = []
    for x in checked:
        total = n_frames_for(x.shape[0], hop_length)
        counts.append(0 if total < n_frames else (total - n_frames) // step + 1)
    n_sequences = sum(counts)
    if n_sequences == 0:
        lengths = [x.shape[0] for x in checked]
        raise ValueError(
            f"no signal is long enough for one sequence of n_frames={n_frames} frames (at least "
            f"{(n_frames - 1) * hop_length + 1} samples with hop_length={hop_length}); signal "
            f"lengths: {lengths[:10]}{' ...' if len(lengths) > 10 else ''}."
        )
    n_freqs = n_fft // 2 + 1
    out = np.empty((n_sequences, n_frames, n_freqs), dtype=np.float32)
    i = 0
    for x, count in zip(checked, counts, strict=True):
        if count == 0:
            continue
        S = stft(x, n_fft=n_fft, hop_length=hop_length, window=window)
        power = (S.real**2 + S.imag**2).T  # (frames, freqs)
        for k in range(count):
            out[i] = power[k * step : k * step + n_frames]
            i += 1
    if min_level_db is not None:
        level = out.mean(axis=(1, 2), dtype=np.float64)
        floor = np.median(level) * 10.0 ** (-min_level_db / 10.0)
        keep = (level > 0) & (level >= floor)
        if not np.any(keep):
            raise ValueError(
                f"every sequence is silent (all-zero power) with min_level_db={min_level_db}."
            )
        out = out[keep]
    return out


def _is_1d(value: object) -> bool:
    try:
        return np.ndim(value) == 1
    except Exception:  # any failure means "not a plain 1-D array"
        return False
