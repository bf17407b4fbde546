"""Short-time Fourier transform with an exact inverse, as functions and as a transformer.

Frame convention (shared by :func:`stft`, :class:`STFTTransformer` and
:func:`~mixest.datasets.make_audio_mixtures`): frame ``t`` is centred on sample ``t * hop_length``
(the window's first sample is ``t * hop_length - n_fft // 2``, samples outside the signal count
as zeros), and a signal of ``n_samples`` samples has the ``n_frames = ceil(n_samples / hop_length)``
frames whose centres fall inside it. A segment of ``n_frames * hop_length`` samples therefore gives
exactly ``n_frames`` frames.

The frames are computed by :class:`scipy.signal.ShortTimeFFT`. Its inverse uses the canonical
dual window, which assumes every frame touching the signal is present; near the two ends, where
the frames whose centres fall outside the signal are left out, the overlap-add is renormalised
by the window energy of the frames that are present. The result is the least-squares inverse
``x[n] = sum_t w[n - t h] y_t[n - t h] / sum_t w[n - t h]^2``, exact for any consistent STFT as
long as that denominator is positive (checked when the transform is set up).
"""

from __future__ import annotations

import numbers
from functools import lru_cache

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixest.base import check_int, check_no_bool_numbers, check_sequences

__all__ = ["STFTTransformer", "istft", "make_window", "stft"]

_WINDOWS = ("sine", "hann", "hamming", "sqrt_hann")


def make_window(window: str | np.ndarray, n_fft: int) -> np.ndarray:
    """Return an analysis window of length ``n_fft``.

    Parameters
    ----------
    window : {"sine", "hann", "hamming", "sqrt_hann"} or array-like of shape (n_fft,)
        ``"sine"`` is ``w[n] = sin(pi (n + 0.5) / n_fft)``, the window of the MixDVAE paper;
        ``"hann"`` and ``"hamming"`` are the periodic (DFT-even) windows; ``"sqrt_hann"`` is the
        square root of the periodic Hann window. An array is used as given; it must not be
        all zeros.
    n_fft : int
        Window (and FFT) length.

    Returns
    -------
    window : ndarray of shape (n_fft,)
    """
    if isinstance(window, str):
        n = np.arange(n_fft)
        if window == "sine":
            return np.sin(np.pi * (n + 0.5) / n_fft)
        if window == "hann":
            return 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
        if window == "hamming":
            return 0.54 - 0.46 * np.cos(2 * np.pi * n / n_fft)
        if window == "sqrt_hann":
            return np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft))
        raise ValueError(f"window must be one of {_WINDOWS} or an array, got {window!r}.")
    w = check_sequences(window, name="window", ndim=1, axis_names="(n_fft,)")
    if w.shape[0] != n_fft:
        raise ValueError(f"window must have n_fft={n_fft} samples, got {w.shape[0]}.")
    if not np.any(w):
        # Every frame would be zero and the dual window 0 / 0: nothing could be inverted.
        raise ValueError("window is all zeros; an analysis window needs a nonzero sample.")
    return w


def _window_key(window: str | np.ndarray) -> str | tuple[float, ...]:
    return window if isinstance(window, str) else tuple(np.asarray(window, dtype=float).tolist())


@lru_cache(maxsize=32)
def _cached_sft(window_key, n_fft: int, hop_length: int, sample_rate: float):
    """Build (and cache: the dual window costs O(n_fft) work) one ShortTimeFFT."""
    from scipy.signal import ShortTimeFFT

    window = make_window(window_key if isinstance(window_key, str) else np.array(window_key), n_fft)
    sft = ShortTimeFFT(window, hop_length, sample_rate, fft_mode="onesided")
    return sft


def _get_sft(window, n_fft, hop_length, sample_rate=16000):
    check_int(n_fft, "n_fft", 2)
    check_int(hop_length, "hop_length", 1)
    if hop_length > n_fft:
        raise ValueError(f"hop_length={hop_length} must not exceed n_fft={n_fft}.")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real):
        raise TypeError(f"sample_rate must be a positive number, got {sample_rate!r}.")
    if not sample_rate > 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate!r}.")
    sft = _cached_sft(_window_key(window), int(n_fft), int(hop_length), float(sample_rate))
    if not sft.invertible:
        raise ValueError(
            f"the STFT with window={window!r}, n_fft={n_fft}, hop_length={hop_length} is not "
            "invertible (the overlapping squared windows do not cover every sample); "
            "use a smaller hop_length."
        )
    return sft


def n_frames_for(n_samples: int, hop_length: int) -> int:
    """Number of frames of an ``n_samples`` signal: ``ceil(n_samples / hop_length)``."""
    return -(-int(n_samples) // int(hop_length))


def _overlap_energy(sft, n_frames: int, n_samples: int) -> np.ndarray:
    """``sum_t w[n - t h] * dual[n - t h]`` over the kept frames ``t = 0..n_frames-1``.

    Equal to 1 wherever every frame touching sample ``n`` is kept (the dual-window condition);
    smaller near the ends, where dividing by it completes the least-squares inverse.
    """
    prod = sft.win * sft.dual_win
    # acc[i] holds sample i - m_num_mid, so that frame t (first sample t * hop - m_num_mid)
    # starts at index t * hop.
    acc = np.zeros(n_frames * sft.hop + sft.m_num)
    for t in range(n_frames):
        acc[t * sft.hop : t * sft.hop + sft.m_num] += prod
    offset = sft.m_num_mid
    return acc[offset : offset + n_samples]


def stft(
    x: object,
    *,
    n_fft: int = 1024,
    hop_length: int = 256,
    window: str | np.ndarray = "sine",
    sample_rate: float = 16000,
) -> np.ndarray:
    """Short-time Fourier transform of real signals, batched over leading axes.

    Parameters
    ----------
    x : array-like of shape (..., n_samples)
        Finite real signals.
    n_fft : int, default=1024
        Window and FFT length.
    hop_length : int, default=256
        Samples between frame centres.
    window : str or array-like, default="sine"
        See :func:`make_window`.
    sample_rate : float, default=16000
        Only sets the time and frequency axes of the underlying :class:`~scipy.signal.ShortTimeFFT`.

    Returns
    -------
    S : ndarray of complex128, shape (..., n_fft // 2 + 1, ceil(n_samples / hop_length))
        Frame ``t`` is centred on sample ``t * hop_length``; the phase refers to the frame
        centre (``ShortTimeFFT(phase_shift=0)``).

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.separation import stft, istft
    >>> x = np.random.default_rng(0).standard_normal(16000)
    >>> S = stft(x)
    >>> S.shape
    (513, 63)
    >>> bool(np.allclose(istft(S, n_samples=16000), x))
    True
    """
    x = check_sequences(x, name="x", ndim=tuple(range(1, 33)), axis_names="(..., n_samples)")
    sft = _get_sft(window, n_fft, hop_length, sample_rate)
    n_frames = n_frames_for(x.shape[-1], hop_length)
    n_min = -(-sft.m_num // 2)  # ShortTimeFFT's minimum length; zeros beyond x change nothing
    if x.shape[-1] < n_min:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n_min - x.shape[-1])])
    return sft.stft(x, p0=0, p1=n_frames)


def istft(
    S: object,
    *,
    n_samples: int | None = None,
    n_fft: int = 1024,
    hop_length: int = 256,
    window: str | np.ndarray = "sine",
    sample_rate: float = 16000,
) -> np.ndarray:
    """Inverse of :func:`stft` (least-squares overlap-add), batched over leading axes.

    Parameters
    ----------
    S : array-like of shape (..., n_fft // 2 + 1, n_frames)
        Complex STFT, frame ``t`` centred on sample ``t * hop_length``.
    n_samples : int, optional
        Length of the output; any value with ``ceil(n_samples / hop_length) == n_frames``
        inverts :func:`stft` exactly. Defaults to ``n_frames * hop_length``.
    n_fft, hop_length, window, sample_rate
        As in :func:`stft`.

    Returns
    -------
    x : ndarray of float64, shape (..., n_samples)
        For a consistent ``S = stft(x)`` this is ``x`` up to rounding; for a modified ``S`` it is
        the signal whose STFT is closest to ``S`` in the least-squares sense.
    """
    S = check_sequences(
        S,
        name="S",
        ndim=tuple(range(2, 34)),
        axis_names="(..., n_freqs, n_frames)",
        dtype=np.complex128,
    )
    sft = _get_sft(window, n_fft, hop_length, sample_rate)
    if S.shape[-2] != sft.f_pts:
        raise ValueError(
            f"S must have n_fft // 2 + 1 = {sft.f_pts} frequency bins on axis -2, got "
            f"shape {S.shape}."
        )
    n_frames = S.shape[-1]
    if n_samples is None:
        n_samples = n_frames * hop_length
    check_int(n_samples, "n_samples", 1)
    n_samples = int(n_samples)
    if n_frames_for(n_samples, hop_length) != n_frames:
        raise ValueError(
            f"n_samples={n_samples} gives ceil(n_samples / hop_length) = "
            f"{n_frames_for(n_samples, hop_length)} frames, but S has {n_frames}; use "
            f"n_samples in [{(n_frames - 1) * hop_length + 1}, {n_frames * hop_length}]."
        )
    x = _dual_overlap_add(sft, S, n_samples)
    energy = _overlap_energy(sft, n_frames, n_samples)
    if not np.all(energy > 1e-10):
        raise ValueError(
            f"hop_length={hop_length} is too large for n_fft={n_fft} and window={window!r}: "
            "some samples near the signal's ends lie under no kept frame; use hop_length <= "
            "n_fft // 2."
        )
    return x / energy


def _dual_overlap_add(sft, S: np.ndarray, n_samples: int) -> np.ndarray:
    """``sum_t dual[n - t h] irfft(S_t)[n - t h]`` for ``n < n_samples``, frame ``t`` of ``S``
    centred on sample ``t h``: :func:`istft` before its division by the window energy."""
    # ShortTimeFFT.istft expects the slices p_min .. p_max(n) (every frame touching the
    # signal): the left-out ones are zero-filled and compensated by `_overlap_energy`.
    n_out = max(n_samples, sft.m_num - sft.m_num_mid)  # istft's minimum length
    p_end = sft.p_max(n_out)
    pad = [(0, 0)] * (S.ndim - 1) + [(-sft.p_min, max(p_end - S.shape[-1], 0))]
    return sft.istft(np.pad(S, pad), k1=n_out)[..., :n_samples]


class SegmentedSTFT:
    """The paper's STFT of long signals, a range of frames at a time, with bounded memory.

    :meth:`frames` gives frames ``first .. stop - 1`` of the signals' :func:`stft` (the same
    values); :meth:`add` overlap-adds a range of (modified) frames into an output buffer, and
    :meth:`finish` divides that buffer by the window energy of all the signal's frames, so that
    adding every frame once, in any ranges, gives :func:`istft` of the whole (to rounding).
    Only the signals, the output and one range of frames are held at a time.

    Parameters
    ----------
    x : ndarray of shape (..., n_samples)
        Real signals (already validated).
    n_fft, hop_length, window
        As in :func:`stft`.
    """

    def __init__(self, x: np.ndarray, *, n_fft: int = 1024, hop_length: int = 256,
                 window: str | np.ndarray = "sine"):
        self.sft = _get_sft(window, n_fft, hop_length)
        if x.shape[-1] < -(-self.sft.m_num // 2):
            raise ValueError(f"SegmentedSTFT needs at least {-(-self.sft.m_num // 2)} "
                             f"samples, got {x.shape[-1]}; use stft.")
        self.x = x
        self.n_samples = x.shape[-1]
        self.n_frames = n_frames_for(self.n_samples, hop_length)

    def frames(self, first: int, stop: int, rows: object = ...) -> np.ndarray:
        """Frames ``first .. stop - 1`` of the STFT of ``x[rows]``, shape ``(..., F, stop -
        first)``."""
        return self.sft.stft(self.x[rows], p0=first, p1=stop)

    def samples(self, first: int, stop: int) -> slice:
        """The signal's samples under the windows of frames ``first .. stop - 1``."""
        sft = self.sft
        return slice(max(0, first * sft.hop - sft.m_num_mid),
                     min(self.n_samples, (stop - 1) * sft.hop + sft.m_num - sft.m_num_mid))

    def add(self, out: np.ndarray, S: np.ndarray, first: int) -> None:
        """Overlap-add frames ``S`` ``(..., F, k)``, the first of them frame ``first`` of the
        signal, into ``out`` ``(..., n_samples)`` (before :meth:`finish`)."""
        sft = self.sft
        hop = sft.hop
        # zero frames before the range, so that its windows' first samples are kept
        lead = min(first, -(-sft.m_num_mid // hop))
        start = (first - lead) * hop
        stop = self.samples(first, first + S.shape[-1]).stop
        S = np.pad(S, [(0, 0)] * (S.ndim - 1) + [(lead, 0)])
        out[..., start:stop] += _dual_overlap_add(sft, S, stop - start)

    def finish(self, out: np.ndarray) -> np.ndarray:
        """``out`` divided by the window energy of the signal's frames, in place."""
        out /= _overlap_energy(self.sft, self.n_frames, self.n_samples)
        return out


class STFTTransformer(TransformerMixin, BaseEstimator):
    """Waveforms to complex STFTs and back, as a scikit-learn transformer.

    A thin wrapper of :func:`stft` / :func:`istft` around :class:`scipy.signal.ShortTimeFFT`,
    with the MixDVAE paper's defaults (16 kHz, 1024-sample sine window, hop 256, 513 bins).
    Frame ``t`` is centred on sample ``t * hop_length`` and a signal of ``n_samples`` samples
    has ``ceil(n_samples / hop_length)`` frames.

    Parameters
    ----------
    n_fft : int, default=1024
        Window and FFT length.
    hop_length : int, default=256
        Samples between frame centres; at most ``n_fft``.
    window : {"sine", "hann", "hamming", "sqrt_hann"} or array-like, default="sine"
        Analysis window, see :func:`make_window`.
    sample_rate : int, default=16000
        Sample rate in Hz; sets :attr:`frequencies_` and is read by the separation scorers.

    Attributes
    ----------
    n_freqs_ : int
        Number of frequency bins, ``n_fft // 2 + 1``.
    window_ : ndarray of shape (n_fft,)
        The analysis window.
    dual_window_ : ndarray of shape (n_fft,)
        The canonical dual (synthesis) window of :class:`~scipy.signal.ShortTimeFFT`,
        ``w[m] / sum_t w[m + t h]^2``; ``window_ / 2`` for the sine window at hop ``n_fft / 4``.
    frequencies_ : ndarray of shape (n_freqs_,)
        Bin centre frequencies in Hz.

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.separation import STFTTransformer
    >>> X = np.random.default_rng(0).standard_normal((2, 12800))
    >>> stft = STFTTransformer().fit(X)
    >>> S = stft.transform(X)
    >>> S.shape
    (2, 513, 50)
    >>> float(np.max(np.abs(stft.inverse_transform(S) - X))) < 1e-10
    True
    """

    # Read by tests/test_common.py: 2-D waveforms in, complex 3-D spectra out.
    _input_kind = "signals"
    _deterministic = True  # no random draws, hence no random_state

    _parameter_constraints: dict = {
        "n_fft": [Interval(numbers.Integral, 2, None, closed="left")],
        "hop_length": [Interval(numbers.Integral, 1, None, closed="left")],
        "window": [StrOptions(set(_WINDOWS)), "array-like"],
        "sample_rate": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, n_fft=1024, hop_length=256, window="sine", sample_rate=16000):
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.window = window
        self.sample_rate = sample_rate

    def fit(self, X=None, y=None):
        """Validate the parameters and set up the transform.

        Parameters
        ----------
        X : array-like of shape (n_signals, n_samples), optional
            Ignored apart from validation: the transform has no learned state.
        y : None
            Ignored.

        Returns
        -------
        self : STFTTransformer
        """
        self._validate_params()
        check_no_bool_numbers(self)  # Interval(Integral) would take n_fft=True as 1
        if X is not None:
            self._check_waveforms(X)
        sft = _get_sft(self.window, self.n_fft, self.hop_length, self.sample_rate)
        self.n_freqs_ = int(sft.f_pts)
        self.window_ = sft.win.copy()
        self.dual_window_ = sft.dual_win.copy()
        self.frequencies_ = sft.f.copy()
        return self

    @staticmethod
    def _check_waveforms(X):
        return check_sequences(
            X,
            name="X",
            ndim=(2, 3),
            axis_names="(n_signals, n_samples) or (n_mixtures, n_sources, n_samples)",
        )

    def transform(self, X):
        """Compute the STFT of every signal.

        Parameters
        ----------
        X : array-like of shape (n_signals, n_samples) or (n_mixtures, n_sources, n_samples)
            Finite real waveforms.

        Returns
        -------
        S : ndarray of complex128, shape (n_signals, n_freqs_, n_frames) \
                or (n_mixtures, n_sources, n_freqs_, n_frames)
            ``n_frames = ceil(n_samples / hop_length)``.
        """
        check_is_fitted(self, "n_freqs_")
        X = self._check_waveforms(X)
        return stft(
            X,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            sample_rate=self.sample_rate,
        )

    def inverse_transform(self, S, n_samples=None):
        """Waveforms from STFTs (exact inverse of :meth:`transform`).

        Parameters
        ----------
        S : array-like of shape (n_signals, n_freqs_, n_frames) \
                or (n_mixtures, n_sources, n_freqs_, n_frames)
            Complex STFTs.
        n_samples : int, optional
            Output length; defaults to ``n_frames * hop_length``. Pass the original length to
            undo :meth:`transform` of a signal whose length is not a multiple of the hop.

        Returns
        -------
        X : ndarray of float64, shape (n_signals, n_samples) or (n_mixtures, n_sources, n_samples)
        """
        check_is_fitted(self, "n_freqs_")
        S = check_sequences(
            S,
            name="S",
            ndim=(3, 4),
            axis_names="(n_signals, n_freqs, n_frames) or (n_mixtures, n_sources, n_freqs, "
            "n_frames)",
            dtype=np.complex128,
        )
        return istft(
            S,
            n_samples=n_samples,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            sample_rate=self.sample_rate,
        )

    def n_frames(self, n_samples: int) -> int:
        """Number of frames of a signal of ``n_samples`` samples (``ceil(n_samples / hop)``)."""
        return n_frames_for(n_samples, self.hop_length)
