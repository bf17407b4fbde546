"""Audio file I/O and resampling.

Files are read and written through :mod:`soundfile` (part of the optional ``audio`` extra,
``pip install mixest[audio]``), imported lazily so that ``import mixest.separation`` works
without it. Signals are mono ``float64`` arrays; multi-channel files are downmixed by averaging
their channels.
"""

from __future__ import annotations

import math
import numbers
import os
import struct
from pathlib import Path

import numpy as np

__all__ = ["read_audio", "resample", "write_audio"]

# soundfile's integer PCM subtypes clip values outside [-1, 1] without telling anyone.
_PCM_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32"})


def _import_optional(module: str):
    """Import one of the ``audio`` extra's packages, with an actionable message when absent."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - the extra is installed in the test setup
        raise ImportError(
            f"{module} is required for this function; install the audio extra with "
            "`pip install mixest[audio]` (soundfile, pesq, pystoi)."
        ) from exc


def _check_sample_rate(sample_rate: object, name: str = "sample_rate") -> int:
    """Return ``sample_rate`` as a positive ``int``; reject floats with a fractional part."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise TypeError(
            f"{name} must be a positive integer (in Hz), got {type(sample_rate).__name__}."
        )
    if not math.isfinite(sample_rate) or sample_rate != int(sample_rate):
        raise ValueError(f"{name} must be a positive integer (in Hz), got {sample_rate!r}.")
    if sample_rate <= 0:
        raise ValueError(f"{name} must be a positive integer (in Hz), got {sample_rate!r}.")
    return int(sample_rate)


def _check_signal(signal: object, name: str = "signal") -> np.ndarray:
    """Validate a 1-D finite real signal and return it as a contiguous float64 array."""
    if isinstance(signal, (str, bytes)) or signal is None:
        raise TypeError(f"{name} must be a 1-D numeric array, got {type(signal).__name__}.")
    arr = np.asarray(signal)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(f"{name} must be a 1-D numeric array, got dtype {arr.dtype}.")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real-valued, got a complex array.")
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of samples (mono), got shape {arr.shape}; "
            "downmix or select a channel first."
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (0 samples).")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values.")
    return arr


def resample(signal: object, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample a mono signal with a polyphase filter.

    The conversion factor ``new_rate / orig_rate`` is reduced to lowest terms ``up / down``
    and passed to :func:`scipy.signal.resample_poly` (e.g. 44100 -> 16000 Hz is ``160 / 441``).

    Parameters
    ----------
    signal : array-like of shape (n_samples,)
        Finite real samples.
    orig_rate : int
        Sample rate of ``signal`` in Hz.
    new_rate : int
        Target sample rate in Hz.

    Returns
    -------
    resampled : ndarray of shape (ceil(n_samples * new_rate / orig_rate),)
        The resampled signal (a copy of ``signal`` when the rates are equal).

    Raises
    ------
    TypeError, ValueError
        If ``signal`` is not a finite 1-D array or a rate is not a positive integer.

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.separation import resample
    >>> resample(np.ones(441), 44100, 16000).shape
    (160,)
    """
    from scipy.signal import resample_poly

    x = _check_signal(signal)
    orig_rate = _check_sample_rate(orig_rate, "orig_rate")
    new_rate = _check_sample_rate(new_rate, "new_rate")
    if orig_rate == new_rate:
        return x.copy()
    g = math.gcd(orig_rate, new_rate)
    return resample_poly(x, new_rate // g, orig_rate // g)


def _check_wav_not_truncated(path: Path) -> None:
    """Refuse a RIFF/WAVE file whose ``data`` chunk is shorter than its header declares.

    libsndfile reads such a file (an interrupted download or copy) up to its end without a
    word, so the signal would silently lose its tail.
    """
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            f.seek(offset)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                available = size - offset - 8
                # 0 and 0xFFFFFFFF are the placeholders of streaming writers: size unknown.
                if chunk_size not in (0, 0xFFFFFFFF) and chunk_size > available:
                    raise ValueError(
                        f"path {str(path)!r} is truncated: its header declares {chunk_size} "
                        f"bytes of audio data but the file holds only {available}; the "
                        "signal would lose its end. Re-create or re-download the file."
                    )
                return
            offset += 8 + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read a WAV or FLAC file as a mono float64 signal.

    Parameters
    ----------
    path : str or path-like
        Audio file in any format libsndfile reads (WAV, FLAC, OGG, ...).
    sample_rate : int, optional
        Resample to this rate (Hz) with :func:`resample`. By default the file's rate is kept.

    Returns
    -------
    signal : ndarray of shape (n_samples,)
        Samples in [-1, 1] for integer PCM files; multi-channel files are averaged to mono.
    sample_rate : int
        Sample rate of ``signal``: the requested one, or the file's.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is empty, not a readable audio file, truncated (a WAV file whose header
        declares more samples than the file holds: libsndfile would return the samples that
        are left without a word), holds no samples or non-finite samples, or ``sample_rate``
        is not a positive integer.
    ImportError
        If :mod:`soundfile` is not installed.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from mixest.separation import read_audio, write_audio
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> write_audio(path, 0.5 * np.sin(np.linspace(0, 100, 8000)), 8000)
    >>> signal, rate = read_audio(path, sample_rate=16000)
    >>> signal.shape, rate
    ((16000,), 16000)
    """
    if sample_rate is not None:
        sample_rate = _check_sample_rate(sample_rate)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path {str(path)!r} does not exist or is not a file.")
    if path.stat().st_size == 0:
        raise ValueError(f"path {str(path)!r} is an empty file (0 bytes), not an audio file.")
    _check_wav_not_truncated(path)
    sf = _import_optional("soundfile")
    try:
        data, file_rate = sf.read(str(path), dtype="float64", always_2d=True)
    except (RuntimeError, sf.SoundFileError) as exc:
        raise ValueError(f"path {str(path)!r} is not a readable audio file: {exc}") from exc
    if data.shape[0] == 0:
        raise ValueError(f"path {str(path)!r} contains no audio samples.")
    # Averaging keeps the level of a duplicated-mono stereo file unchanged.
    signal = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0].copy()
    if not np.all(np.isfinite(signal)):
        raise ValueError(f"path {str(path)!r} contains NaN or infinite samples.")
    file_rate = int(file_rate)
    if sample_rate is None or sample_rate == file_rate:
        return signal, file_rate
    return resample(signal, file_rate, sample_rate), sample_rate


def write_audio(
    path: str | os.PathLike,
    signal: object,
    sample_rate: int,
    *,
    subtype: str | None = None,
) -> None:
    """Write a mono signal to an audio file; the format follows the file extension.

    Parameters
    ----------
    path : str or path-like
        Output file, e.g. ``"out.wav"`` or ``"out.flac"``.
    signal : array-like of shape (n_samples,)
        Finite real samples.
    sample_rate : int
        Sample rate in Hz.
    subtype : str, optional
        libsndfile subtype (``"PCM_16"``, ``"FLOAT"``, ...); the format's default when omitted
        (16-bit PCM for WAV and FLAC).

    Raises
    ------
    TypeError, ValueError
        If ``signal`` is not a finite 1-D array, ``sample_rate`` is not a positive integer, or
        an integer PCM subtype would clip samples outside [-1, 1].
    ImportError
        If :mod:`soundfile` is not installed.
    """
    x = _check_signal(signal)
    sample_rate = _check_sample_rate(sample_rate)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}.")
    sf = _import_optional("soundfile")
    path = Path(path)
    try:
        fmt = sf.default_subtype(path.suffix.lstrip(".").upper()) if subtype is None else subtype
    except (TypeError, ValueError):
        fmt = None  # unknown extension: let soundfile report it below
    if fmt is not None and fmt.upper() in _PCM_SUBTYPES and np.max(np.abs(x)) > 1.0:
        raise ValueError(
            f"signal has samples outside [-1, 1] (peak {np.max(np.abs(x)):.3g}), which subtype "
            f"{fmt} would clip; rescale it or pass subtype='FLOAT'."
        )
    try:
        sf.write(str(path), x, sample_rate, subtype=subtype)
    except (TypeError, ValueError, RuntimeError, sf.SoundFileError) as exc:
        raise ValueError(f"cannot write {str(path)!r}: {exc}") from exc
