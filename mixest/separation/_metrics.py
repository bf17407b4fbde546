"""Separation metrics (SI-SDR, SI-SDRi, scale-optimal RMSE, PESQ, ESTOI) and their scorers.

Every metric takes a ``reference`` and an ``estimate`` of the same shape ``(..., n_samples)``
and returns one value per signal, of shape ``(...)`` (a float for 1-D input): the leading axes
are batch axes (mixtures, sources, ...), the last one is time. PESQ and ESTOI wrap the
``pesq`` and ``pystoi`` packages of the optional ``audio`` extra, imported lazily.

The scorers follow scikit-learn's ``scorer(estimator, X, y)`` protocol for separators: ``X``
holds mixtures ``(n_mixtures, n_samples)``, ``y`` the true sources
``(n_mixtures, n_sources, n_samples)``, and the estimate is ``estimator.transform(X)``. They
return the metric's mean over every mixture and source (higher is better for all of them).
"""

from __future__ import annotations

import warnings

import numpy as np

from mixest.base import check_sequences
from mixest.separation._audio_io import _check_sample_rate, _import_optional

__all__ = [
    "estoi_score",
    "estoi_scorer",
    "pesq_score",
    "pesq_scorer",
    "scale_optimal_rmse",
    "si_sdr",
    "si_sdr_improvement",
    "si_sdr_scorer",
    "si_sdri_scorer",
]

_ANY_NDIM = tuple(range(1, 33))
# pystoi needs 30 STFT frames (256 samples, hop 128) after resampling to 10 kHz: more than
# 4096 samples there, i.e. more than 4096 * sample_rate / 10000 before (it rounds up).
_ESTOI_FRAMES_10K = 4096


def _check_pair(reference: object, estimate: object) -> tuple[np.ndarray, np.ndarray]:
    """Validate two finite real ``(..., n_samples)`` arrays of the same shape."""
    s = check_sequences(reference, name="reference", ndim=_ANY_NDIM, axis_names="(..., n_samples)")
    s_hat = check_sequences(
        estimate, name="estimate", ndim=_ANY_NDIM, axis_names="(..., n_samples)"
    )
    if s.shape != s_hat.shape:
        raise ValueError(
            f"reference and estimate must have the same shape (..., n_samples), got "
            f"{s.shape} and {s_hat.shape}."
        )
    return s, s_hat


def _peak_normalised(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` divided by each signal's peak, and the peaks (1 for a silent signal).

    The ratio metrics are scale-invariant, so dividing first keeps their energies away from
    overflow (signals of 1e200) and underflow (signals of 1e-300).
    """
    peak = np.max(np.abs(x), axis=-1, keepdims=True)
    peak = np.where(peak > 0, peak, 1.0)
    return x / peak, peak[..., 0]


def _centred(x: np.ndarray, zero_mean: bool) -> np.ndarray:
    """Peak-normalised signals, without their mean when ``zero_mean`` (renormalised after)."""
    x, _ = _peak_normalised(x)
    if zero_mean:
        # The mean of peak-normalised values cannot overflow. What is left of a constant signal
        # is rounding noise (a few eps), which renormalising would blow up: make it silent.
        x = x - x.mean(axis=-1, keepdims=True)
        rounding = np.max(np.abs(x), axis=-1, keepdims=True) <= 8 * np.finfo(x.dtype).eps
        x, _ = _peak_normalised(np.where(rounding, 0.0, x))
    return x


def _as_output(values: np.ndarray) -> np.ndarray | float:
    """A float for a single signal, an array of shape (...) for a batch."""
    return float(values) if values.ndim == 0 else values


def si_sdr(reference: object, estimate: object, *, zero_mean: bool = True) -> np.ndarray | float:
    """Scale-invariant signal-to-distortion ratio, in dB (Le Roux et al., 2019).

    With ``s`` the reference and ``s_hat`` the estimate (both made zero-mean first when
    ``zero_mean``), the reference is rescaled to the orthogonal projection of the estimate:

    .. math::

        \\alpha = \\frac{\\langle \\hat s, s\\rangle}{\\lVert s\\rVert^2}, \\qquad
        \\mathrm{SI\\text{-}SDR} = 10 \\log_{10}
        \\frac{\\lVert \\alpha s\\rVert^2}{\\lVert \\alpha s - \\hat s\\rVert^2}.

    Parameters
    ----------
    reference : array-like of shape (..., n_samples)
        True signals.
    estimate : array-like of shape (..., n_samples)
        Estimated signals, same shape as ``reference``.
    zero_mean : bool, default=True
        Subtract each signal's mean first, as in the paper.

    Returns
    -------
    si_sdr : float or ndarray of shape (...)
        ``+inf`` for an estimate proportional to the reference, ``-inf`` for an estimate
        orthogonal to it (including an all-zero estimate).

    Raises
    ------
    ValueError
        If the shapes differ, a value is not finite, or a reference has zero energy (after
        removing its mean when ``zero_mean``; a constant reference, up to rounding): SI-SDR is
        undefined there.

    Notes
    -----
    Each signal is divided by its peak before the energies are computed, so the value does not
    depend on the signals' scale even at the ends of the floating-point range (signals of
    ``1e200`` or ``1e-300`` give the value of the unscaled ones).

    References
    ----------
    J. Le Roux, S. Wisdom, H. Erdogan, J. R. Hershey, "SDR - half-baked or well done?",
    ICASSP 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.separation import si_sdr
    >>> s = np.sin(np.linspace(0, 50, 1000))
    >>> round(si_sdr(s, 3 * s + 0.1 * np.cos(np.linspace(0, 50, 1000))), 1) > 20
    True
    """
    s, s_hat = _check_pair(reference, estimate)
    return _as_output(_si_sdr(s, s_hat, zero_mean))


def _si_sdr(s: np.ndarray, s_hat: np.ndarray, zero_mean: bool) -> np.ndarray:
    """SI-SDR of validated arrays, shape ``s.shape[:-1]``."""
    s, s_hat = _centred(s, zero_mean), _centred(s_hat, zero_mean)
    ref_energy = np.einsum("...n,...n->...", s, s)
    if np.any(ref_energy <= 0):
        raise ValueError(
            f"reference has zero energy{' after removing its mean' if zero_mean else ''} in "
            f"{int(np.count_nonzero(ref_energy <= 0))} signal(s); SI-SDR is undefined there."
        )
    alpha = np.einsum("...n,...n->...", s_hat, s) / ref_energy
    target = alpha[..., None] * s
    residual = target - s_hat
    num = np.einsum("...n,...n->...", target, target)
    den = np.einsum("...n,...n->...", residual, residual)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = 10.0 * np.log10(num / den)
    # 0 / 0 only for an all-zero estimate: no target energy at all.
    return np.where(num == 0, -np.inf, values)


def si_sdr_improvement(
    reference: object, estimate: object, mixture: object, *, zero_mean: bool = True
) -> np.ndarray | float:
    """SI-SDR improvement: SI-SDR of the estimate minus SI-SDR of the mixture, in dB.

    Parameters
    ----------
    reference : array-like of shape (..., n_samples)
        True signals.
    estimate : array-like of shape (..., n_samples)
        Estimated signals, same shape as ``reference``.
    mixture : array-like
        The input each estimate was extracted from: either the same shape as ``reference``, or
        one mixture per group of sources, shape ``reference.shape[:-2] + (n_samples,)`` (e.g.
        references ``(n_mixtures, n_sources, n_samples)`` and mixtures
        ``(n_mixtures, n_samples)``), broadcast over the sources axis.
    zero_mean : bool, default=True
        See :func:`si_sdr`.

    Returns
    -------
    si_sdri : float or ndarray of shape (...)
        0 where the two SI-SDRs are equal, even when both are ``+inf`` (an estimate equal to a
        mixture that already equals the reference: nothing was improved). ``+inf`` or ``-inf``
        where exactly one of them is infinite.

    Raises
    ------
    ValueError
        If the shapes do not agree, a value is not finite, a reference has zero energy, or a
        mixture is silent (zero energy after removing its mean when ``zero_mean``): its SI-SDR
        would be ``-inf`` and the improvement ``+inf`` for any estimate.
    """
    s, s_hat = _check_pair(reference, estimate)
    x = check_sequences(mixture, name="mixture", ndim=_ANY_NDIM, axis_names="(..., n_samples)")
    own = x  # before broadcasting, to count each silent mixture once
    if x.shape != s.shape:
        if s.ndim >= 2 and x.shape == s.shape[:-2] + s.shape[-1:]:
            x = np.broadcast_to(x[..., None, :], s.shape)
        else:
            raise ValueError(
                f"mixture must have the shape of reference {s.shape} or, with one mixture per "
                f"group of sources, {s.shape[:-2] + s.shape[-1:]}; got {x.shape}."
            )
    centred = _centred(own, zero_mean)
    mixture_energy = np.einsum("...n,...n->...", centred, centred)
    if np.any(mixture_energy <= 0):
        raise ValueError(
            f"mixture is silent{' after removing its mean' if zero_mean else ''} in "
            f"{int(np.count_nonzero(mixture_energy <= 0))} signal(s); the SI-SDR improvement "
            "over a silent mixture is undefined."
        )
    base = _si_sdr(s, x, zero_mean)
    value = _si_sdr(s, s_hat, zero_mean)
    # inf - inf: the estimate is as perfect as the mixture was, no improvement.
    with np.errstate(invalid="ignore"):
        return _as_output(np.where(value == base, 0.0, value - base))


def scale_optimal_rmse(reference: object, estimate: object) -> np.ndarray | float:
    """Root-mean-square error after rescaling the estimate optimally.

    .. math::

        c = \\frac{\\langle s, \\hat s\\rangle}{\\lVert \\hat s\\rVert^2}, \\qquad
        \\mathrm{RMSE} = \\sqrt{\\tfrac{1}{n} \\lVert s - c \\hat s\\rVert^2},

    i.e. the least-squares gain ``c`` is applied to the estimate (``c = 0`` for an all-zero
    estimate), so the error is in the reference's units and ignores the estimate's scale.
    Lower is better.

    Parameters
    ----------
    reference : array-like of shape (..., n_samples)
    estimate : array-like of shape (..., n_samples)

    Returns
    -------
    rmse : float or ndarray of shape (...)
        Independent of the estimate's scale and proportional to the reference's:
        ``rmse(k * s, c * s_hat) == abs(k) * rmse(s, s_hat)``. Both signals are divided by
        their peaks before squaring and the reference's peak is applied last, so the value
        stays finite and exact for signals of ``1e200`` or ``1e-300``.
    """
    s, s_hat = _check_pair(reference, estimate)
    s, peak = _peak_normalised(s)
    s_hat, _ = _peak_normalised(s_hat)
    est_energy = np.einsum("...n,...n->...", s_hat, s_hat)
    dot = np.einsum("...n,...n->...", s, s_hat)
    gain = np.divide(dot, est_energy, out=np.zeros_like(dot), where=est_energy > 0)
    err = s - gain[..., None] * s_hat
    return _as_output(peak * np.sqrt(np.mean(err * err, axis=-1)))


def _pesq_mode(sample_rate: int, mode: str | None) -> str:
    if mode is None:
        if sample_rate == 16000:
            return "wb"
        if sample_rate == 8000:
            return "nb"
        raise ValueError(
            f"PESQ is defined at sample_rate 16000 (wide-band) or 8000 (narrow-band), got "
            f"{sample_rate}; resample the signals first (mixest.separation.resample)."
        )
    if mode not in ("wb", "nb"):
        raise ValueError(f"mode must be 'wb', 'nb' or None, got {mode!r}.")
    if mode == "wb" and sample_rate != 16000:
        raise ValueError(f"wide-band PESQ needs sample_rate 16000, got {sample_rate}.")
    if sample_rate not in (8000, 16000):
        raise ValueError(f"PESQ needs sample_rate 8000 or 16000, got {sample_rate}.")
    return mode


def pesq_score(
    reference: object,
    estimate: object,
    sample_rate: int,
    *,
    mode: str | None = None,
    on_error: str = "raise",
) -> np.ndarray | float:
    """PESQ (ITU-T P.862) mean opinion score of estimated speech, through the ``pesq`` package.

    Parameters
    ----------
    reference : array-like of shape (..., n_samples)
        Clean speech.
    estimate : array-like of shape (..., n_samples)
        Estimated speech, same shape.
    sample_rate : int
        16000 (wide-band P.862.2 by default) or 8000 (narrow-band).
    mode : {"wb", "nb"}, optional
        Override the band; narrow-band is allowed at 16 kHz, wide-band needs 16 kHz.
    on_error : {"raise", "nan"}, default="raise"
        What to do when PESQ fails on a signal (too short, no utterance detected, a silent
        reference or estimate): raise a ``ValueError`` or return NaN for that signal.

    Returns
    -------
    pesq : float or ndarray of shape (...)
        MOS-LQO, about 1 (bad) to 4.6 (identical).

    Raises
    ------
    ValueError
        For another sample rate, mismatched shapes, non-finite values, or a PESQ failure with
        ``on_error="raise"``.
    ImportError
        If ``pesq`` is not installed (``pip install mixest[audio]``).
    """
    s, s_hat = _check_pair(reference, estimate)
    sample_rate = _check_sample_rate(sample_rate)
    mode = _pesq_mode(sample_rate, mode)
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error must be 'raise' or 'nan', got {on_error!r}.")
    pesq_mod = _import_optional("pesq")
    flat_s = s.reshape(-1, s.shape[-1])
    flat_e = s_hat.reshape(-1, s.shape[-1])
    out = np.empty(flat_s.shape[0])
    for i in range(flat_s.shape[0]):
        try:
            # pesq would divide by a zero peak (reference) or a zero level (estimate, a NaN
            # that it fails to convert to an integer) before reporting anything useful.
            if not np.any(flat_s[i]):
                raise pesq_mod.NoUtterancesError("the reference is all zeros")
            if not np.any(flat_e[i]):
                raise pesq_mod.PesqError("the estimate is all zeros")
            out[i] = pesq_mod.pesq(sample_rate, flat_s[i], flat_e[i], mode)
        except pesq_mod.PesqError as exc:
            if on_error == "raise":
                raise ValueError(
                    f"PESQ failed on signal {i} of {flat_s.shape[0]}: {type(exc).__name__}: "
                    f"{exc}; pass on_error='nan' to skip such signals."
                ) from exc
            out[i] = np.nan
    return _as_output(out.reshape(s.shape[:-1]))


def estoi_score(reference: object, estimate: object, sample_rate: int) -> np.ndarray | float:
    """Extended short-time objective intelligibility (Jensen & Taal, 2016), through ``pystoi``.

    Parameters
    ----------
    reference : array-like of shape (..., n_samples)
        Clean speech.
    estimate : array-like of shape (..., n_samples)
        Estimated speech, same shape.
    sample_rate : int
        Sample rate in Hz (``pystoi`` resamples to 10 kHz internally).

    Returns
    -------
    estoi : float or ndarray of shape (...)
        Between about 0 and 1, higher is better.

    Raises
    ------
    ValueError
        If the shapes differ, a value is not finite, a reference is all zeros (ESTOI is
        undefined there, as SI-SDR is), or a signal is shorter than ESTOI's analysis needs:
        30 frames of 25.6 ms after pystoi's resampling to 10 kHz and its removal of the
        reference's silent frames (more than 40 dB below its loudest), i.e. at least
        ``4096 * sample_rate // 10000 + 1`` samples and more if the reference has silences
        (``pystoi`` itself would crash or return ``1e-5``).
    ImportError
        If ``pystoi`` is not installed (``pip install mixest[audio]``).
    """
    s, s_hat = _check_pair(reference, estimate)
    sample_rate = _check_sample_rate(sample_rate)
    min_samples = _ESTOI_FRAMES_10K * sample_rate // 10000 + 1
    if s.shape[-1] < min_samples:
        raise ValueError(
            f"estoi_score needs signals of at least {min_samples} samples (about 0.41 s at "
            f"sample_rate {sample_rate}), got {s.shape[-1]}."
        )
    pystoi = _import_optional("pystoi")
    flat_s = s.reshape(-1, s.shape[-1])
    flat_e = s_hat.reshape(-1, s.shape[-1])
    silent = ~np.any(flat_s, axis=-1)
    if np.any(silent):
        raise ValueError(
            f"reference is all zeros in {int(np.count_nonzero(silent))} signal(s); ESTOI is "
            "undefined there."
        )
    out = np.empty(flat_s.shape[0])
    for i in range(flat_s.shape[0]):
        with warnings.catch_warnings():
            # pystoi warns and returns 1e-5, a made-up score, when too little speech is left.
            warnings.filterwarnings(
                "error", message="Not enough STFT frames", category=RuntimeWarning
            )
            try:
                out[i] = pystoi.stoi(flat_s[i], flat_e[i], sample_rate, extended=True)
            except RuntimeWarning as exc:
                raise ValueError(
                    f"ESTOI failed on signal {i} of {flat_s.shape[0]}: fewer than 30 frames "
                    "(about 0.41 s) of the reference are left after removing its silent frames "
                    "(more than 40 dB below its loudest); use longer speech."
                ) from exc
    return _as_output(out.reshape(s.shape[:-1]))


class _SeparationScorer:
    """``scorer(estimator, X, y)``: mean of a separation metric over mixtures and sources."""

    def __init__(self, name: str, metric, needs_mixture: bool = False, needs_rate: bool = False):
        self.name = name
        self.metric = metric
        self.needs_mixture = needs_mixture
        self.needs_rate = needs_rate

    def __call__(self, estimator, X, y) -> float:
        X = check_sequences(X, name="X", ndim=2, axis_names="(n_mixtures, n_samples)")
        y = check_sequences(y, name="y", ndim=3, axis_names="(n_mixtures, n_sources, n_samples)")
        if y.shape[0] != X.shape[0] or y.shape[2] != X.shape[1]:
            raise ValueError(
                f"y {y.shape} must have shape (n_mixtures, n_sources, n_samples) matching X "
                f"{X.shape}."
            )
        estimate = np.asarray(estimator.transform(X))
        if estimate.shape != y.shape:
            raise ValueError(
                f"{type(estimator).__name__}.transform(X) returned shape {estimate.shape}, "
                f"expected the shape of y {y.shape}."
            )
        if self.needs_mixture:
            values = self.metric(y, estimate, X)
        elif self.needs_rate:
            values = self.metric(y, estimate, getattr(estimator, "sample_rate", 16000))
        else:
            values = self.metric(y, estimate)
        return float(np.mean(values))

    def __repr__(self) -> str:
        return f"<separation scorer {self.name}>"


si_sdr_scorer = _SeparationScorer("si_sdr", si_sdr)
si_sdri_scorer = _SeparationScorer("si_sdri", si_sdr_improvement, needs_mixture=True)
pesq_scorer = _SeparationScorer("pesq", pesq_score, needs_rate=True)
estoi_scorer = _SeparationScorer("estoi", estoi_score, needs_rate=True)
