"""Variational Kalman filter separator: per-bin complex AR(1) sources in the audio VEM.

The VKF baseline of MixDVAE for audio (``docs/separation_baselines.md``) keeps the audio
observation and assignment model of :class:`mixest.separation.MixDVAESeparator` and gives every
source linear-Gaussian dynamics: in each frequency bin ``f`` its STFT follows a complex
first-order autoregression

.. math::

    s_{n,t,f} = a_{nf}\\, s_{n,t-1,f} + e_{n,t,f}, \\qquad e \\sim N_c(0, q_{nf}), \\qquad
    s_{n,0,f} \\sim N_c(0, q_{nf} / (1 - |a_{nf}|^2)),

so the E-S step is a Kalman filter and Rauch-Tung-Striebel smoother per bin (a scalar complex
state) fed with the assigned bins' evidence, and the M-step re-estimates :math:`a` and
:math:`q` of every source, bin and mixture from the smoothed moments. :math:`a, q` start from
their least-squares fit on the isolated training sources of each type.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from sklearn.utils._param_validation import StrOptions

from mixest._kernels._complex_ar1 import ar1_filter, ar1_smoother
from mixest.mixture._dynamics import Dynamics
from mixest.separation._base import HOP, N_FFT, VEMSeparator
from mixest.separation._separator import MixDVAESeparator, load_spectral_priors
from mixest.separation._stft import stft

__all__ = ["ComplexAR1Dynamics", "VKFSeparator", "fit_complex_ar1"]

#: largest |a| kept: the stationary variance q / (1 - |a|^2) must stay finite
MAX_COEF = 0.999
_LOG_PI = math.log(math.pi)


def fit_complex_ar1(spectra: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares complex AR(1) coefficient and innovation variance per frequency bin.

    Parameters
    ----------
    spectra : list of ndarray of shape (F, T_i)
        Complex STFTs of isolated signals of one source type.

    Returns
    -------
    coef : ndarray of complex of shape (F,)
        :math:`a_f = \\sum_t s_t \\bar s_{t-1} / \\sum_t |s_{t-1}|^2`, shrunk to
        ``|a| <= MAX_COEF``.
    noise_var : ndarray of shape (F,)
        Mean :math:`|s_t - a_f s_{t-1}|^2`.
    """
    s10 = sum((S[:, 1:] * S[:, :-1].conj()).sum(1) for S in spectra)
    s00 = sum((np.abs(S[:, :-1]) ** 2).sum(1) for S in spectra)
    s11 = sum((np.abs(S[:, 1:]) ** 2).sum(1) for S in spectra)
    n = sum(S.shape[1] - 1 for S in spectra)
    tiny = np.finfo(float).tiny
    coef = _shrink(s10 / np.maximum(s00, tiny))
    noise = (s11 - 2.0 * (coef.conj() * s10).real + np.abs(coef) ** 2 * s00) / max(n, 1)
    return coef, np.maximum(noise, tiny)


def _shrink(coef: np.ndarray) -> np.ndarray:
    size = np.abs(coef)
    return np.where(size > MAX_COEF, coef * MAX_COEF / np.maximum(size, MAX_COEF), coef)


class ComplexAR1Dynamics(Dynamics):
    """Per-bin complex AR(1) sources for the VEM engine (E-S: Kalman filter and smoother).

    Parameters
    ----------
    coef : ndarray of complex of shape (M, F)
        AR coefficient of each of the ``M = B * N`` sources (sequence-major) and bin.
    noise_var : ndarray of shape (M, F)
        Innovation variance :math:`q`.
    learn : bool, default=True
        M-step of ``coef`` and ``noise_var`` from the smoothed moments after every E-S step
        (kept for the next one; :attr:`coef_` and :attr:`noise_var_`).

    Notes
    -----
    The filter and smoother are Numba passes per chain (:mod:`mixest._kernels._complex_ar1`,
    with NumPy twins as their oracles). The smoother also gives the part of
    the lower bound that belongs to the dynamics exactly:
    :math:`E_q[\\log p(s)] + H(q(s))` of the whole chain, with the lag-one cross-covariances
    :math:`C_t = P^s_{t+1} \\bar J_t` and the entropy of the chain written as that of its
    backward conditionals, :math:`\\operatorname{Var}(s_t | s_{t+1}, x_{0:t}) = P_t q / P^-_{t+1}`.
    """

    def __init__(self, coef: np.ndarray, noise_var: np.ndarray, learn: bool = True):
        # copies: the M-step writes into them
        self.coef_ = np.array(coef, dtype=np.complex128)
        self.noise_var_ = np.array(noise_var, dtype=float)
        self.learn = bool(learn)
        self._rows: np.ndarray | None = None
        self._bound: np.ndarray | None = None

    def select_sequences(self, sequences: np.ndarray) -> None:
        self._selected = np.asarray(sequences)

    def start_batch(self, n_sequences, n_sources, rng):
        if self.coef_.shape[0] != n_sequences * n_sources:
            raise ValueError(f"coef has {self.coef_.shape[0]} rows for {n_sequences} sequences "
                             f"of {n_sources} sources.")
        self._n_sources = n_sources
        self._selected = None

    def _params(self, M: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._selected is None or M == self.coef_.shape[0]:
            rows = np.arange(self.coef_.shape[0])
        else:  # the engine froze some sequences: their sources' rows
            N = self._n_sources
            rows = (self._selected[:, None] * N + np.arange(N)).ravel()
        return rows, self.coef_[rows], self.noise_var_[rows]

    def forward_pass(self, info_vec, info_prec, m_first):
        self._rows, a, q = self._params(info_prec.shape[0])
        return list(ar1_filter(info_vec, info_prec, a, q))

    def smooth(self, means, covs, pred_mean, pred_var):
        _, a, q = self._params(means.shape[0])
        T, F = means.shape[1:]
        sm, sc, s00, s11, s10, log_det = ar1_smoother(means, covs, pred_mean, pred_var, a, q)
        # E_q[log p(s)]: the stationary first frame, then the innovations; H(q(s)) by log_det
        p0 = q / (1.0 - np.abs(a) ** 2)
        resid = s11 - 2.0 * (a.conj() * s10).real + np.abs(a) ** 2 * s00
        first = np.abs(sm[:, 0]) ** 2 + sc[:, 0]
        log_p = (-(_LOG_PI + np.log(p0)) - first / p0
                 - (T - 1) * (_LOG_PI + np.log(q)) - resid / q).sum(-1)
        self._bound = log_p + T * F * (1.0 + _LOG_PI) + log_det
        if self.learn and T > 1:
            coef = _shrink(s10 / np.maximum(s00, np.finfo(float).tiny))
            noise = (s11 - 2.0 * (coef.conj() * s10).real + np.abs(coef) ** 2 * s00) / (T - 1)
            self.coef_[self._rows] = coef
            self.noise_var_[self._rows] = np.maximum(noise, np.finfo(float).tiny)
        return sm, sc

    def begin(self, m0):  # the whole pass runs in forward_pass
        raise NotImplementedError("ComplexAR1Dynamics runs its E-S pass in forward_pass.")

    def predict(self, state, t):
        raise NotImplementedError("ComplexAR1Dynamics runs its E-S pass in forward_pass.")

    def expected_log_prior(self, means, covs, pred_mean, pred_var):
        if self._bound is None:
            raise RuntimeError("expected_log_prior follows an E-S pass.")
        return self._bound.reshape(means.shape[0], -1).sum(1)


class VKFSeparator(VEMSeparator):
    """Separate single-channel mixtures with the audio VEM and per-bin complex AR(1) sources.

    The variational Kalman filter baseline: the assignment model of
    :class:`~mixest.separation.MixDVAESeparator` with linear-Gaussian dynamics per frequency
    bin (:class:`ComplexAR1Dynamics`), whose coefficients are first fitted on the isolated
    sources of each type and then re-estimated per mixture in the M-step. The sources start
    from the DVAE-init of ``priors`` (each spectral DVAE reconstructs the mixture) or, with
    ``init="oracle"``, from the true sources' powers (a reference, not a method: it needs the
    answer).

    Parameters
    ----------
    priors : sequence of (str, path-like or DVAE), default=("pretrained:speech", \
"pretrained:flute")
        The spectral DVAE priors of the initialisation (as in
        :class:`~mixest.separation.MixDVAESeparator`); not used with ``init="oracle"``.
    init : {"dvae", "oracle"}, default="dvae"
        ``"oracle"``: :meth:`transform` takes the true sources ``y`` and starts from their
        power spectrograms.
    sample_rate, epsilon, max_iter, batch_size, n_jobs, device, random_state, verbose
        As in :class:`~mixest.separation.MixDVAESeparator` (``device``: where the
        initialisation's priors run), except that ``epsilon`` defaults to the paper's 0.03:
        the AR(1) model separates better with it than with MixDVAE's 0.003
        (``docs/separation.md``, "The observation noise").

    Attributes
    ----------
    coef_ : ndarray of complex of shape (n_sources, 513)
        AR(1) coefficient per source type and bin, fitted on ``y``.
    noise_var_ : ndarray of shape (n_sources, 513)
        Innovation variance per source type and bin.
    priors_ : list of DVAE or None
        The initialisation's priors (None with ``init="oracle"``).
    n_sources_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.baselines import VKFSeparator
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(4 * 12800) / 16000
    >>> y = np.stack([np.sin(2 * np.pi * 440 * t), rng.standard_normal(t.size) * 0.1])
    >>> sep = VKFSeparator(init="oracle", max_iter=3).fit(y.sum(0)[None], y[None])
    >>> sep.transform(y.sum(0)[None], y[None]).shape
    (1, 2, 51200)
    """

    _sources_dtype: ClassVar[type] = np.complex128  # the Kalman recursion runs in float64

    _parameter_constraints: ClassVar[dict] = {
        "priors": [list, tuple],
        "init": [StrOptions({"dvae", "oracle"})],
        **VEMSeparator._vem_constraints,
    }
    _test_params: ClassVar[dict] = {"priors": MixDVAESeparator._test_params["priors"],
                                    "max_iter": 2}

    def __init__(
        self,
        priors=("pretrained:speech", "pretrained:flute"),
        *,
        init: str = "dvae",
        sample_rate: int = 16000,
        epsilon: float = 0.03,
        max_iter: int = 70,
        batch_size: int = 16,
        n_jobs: int | None = None,
        device: str = "cpu",
        random_state: object = None,
        verbose: bool = False,
    ):
        self.priors = priors
        self.init = init
        self.sample_rate = sample_rate
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, X: object, y: object = None) -> VKFSeparator:
        """Fit each source type's AR(1) per bin on ``y`` and load the initialisation's priors.

        Parameters
        ----------
        X : array-like of shape (n_mixtures, n_samples)
            Mixtures (only checked).
        y : array-like of shape (n_mixtures, n_sources, n_samples)
            Isolated sources: the AR(1) fits (and unfitted priors' training).

        Returns
        -------
        self
        """
        self._validate_params()
        if self.init == "oracle" and (tuple(self.priors) != ("pretrained:speech",
                                                              "pretrained:flute")
                                      or self.device != "cpu"):
            raise ValueError("priors and device are the DVAE-init's; init='oracle' does not use "
                             "them (leave them at their defaults).")
        X, y = self._check_training_sources(X, y, None, required=True)
        if self.init == "dvae" and y.shape[1] != len(self.priors):
            raise ValueError(f"y has {y.shape[1]} sources, priors {len(self.priors)}.")
        if y.shape[1] < 2:
            raise ValueError(f"y must hold at least two sources, got {y.shape[1]}.")
        if y.shape[-1] < N_FFT + HOP:
            raise ValueError(f"y must hold at least {N_FFT + HOP} samples at 16 kHz (two STFT "
                             f"frames) to fit the AR(1) dynamics, got {y.shape[-1]}.")
        self._resolve_device()
        fits = [fit_complex_ar1(list(stft(y[:, n], n_fft=N_FFT, hop_length=HOP)))
                for n in range(y.shape[1])]
        self.coef_ = np.stack([c for c, _ in fits])
        self.noise_var_ = np.stack([q for _, q in fits])
        self.priors_ = (None if self.init == "oracle"
                        else load_spectral_priors(self.priors, y, self.random_state))
        self.n_sources_ = y.shape[1]
        return self

    def _dynamics(self, n_mixtures):
        # every mixture starts from its source types' fitted AR(1) and learns its own
        return ComplexAR1Dynamics(np.tile(self.coef_, (n_mixtures, 1)),
                                  np.tile(self.noise_var_, (n_mixtures, 1)))

    def _initial_variances(self, obs, references):
        # (transform has checked that the true sources come exactly with init='oracle')
        if self.init == "oracle":
            return np.abs(np.moveaxis(references, -1, 1)) ** 2  # (B, T, N, F)
        from mixest.separation._vem_models import SpectralDVAEDynamics

        priors = SpectralDVAEDynamics([p.module_ for p in self.priors_], device=self.device_)
        return priors.reconstruct(np.abs(obs) ** 2)

    def transform(self, X: object, y: object = None) -> np.ndarray:
        """Separate the mixtures.

        Parameters
        ----------
        X : array-like of shape (n_mixtures, n_samples)
        y : array-like of shape (n_mixtures, n_sources, n_samples), optional
            The true sources, required with ``init="oracle"`` (the initialisation) and refused
            otherwise.

        Returns
        -------
        sources : ndarray of shape (n_mixtures, n_sources, n_samples)
        """
        if y is None and self.init == "oracle":
            raise ValueError("init='oracle' starts from the true sources: call "
                             "transform(X, y) with them.")
        if y is not None and self.init != "oracle":
            raise ValueError("y is read by init='oracle' only; this separator uses init='dvae'.")
        return self._transform(X, y)

    def score(self, X: object, y: object) -> float:
        """Mean SI-SDR (dB) against ``y`` (with ``init="oracle"``, ``y`` is also the start)."""
        from mixest.separation._base import check_sources
        from mixest.separation._metrics import si_sdr

        y = check_sources(y)
        est = self.transform(X, y if self.init == "oracle" else None)
        return float(np.mean(si_sdr(y, est)))
