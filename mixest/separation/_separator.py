"""MixDVAESeparator: single-channel source separation with one spectral DVAE prior per source."""

from __future__ import annotations

import os
from numbers import Integral, Real
from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.base import TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixest.base import SequenceEstimator, check_sequences
from mixest.dvae import DVAE, Network
from mixest.separation._audio_io import resample
from mixest.separation._stft import istft, stft

__all__ = ["MixDVAESeparator"]

#: the rate, window and hop every spectral prior of mixest works at (the paper's STFT)
PRIOR_RATE, N_FFT, HOP = 16000, 1024, 256
#: frames per training sequence when a prior is trained from isolated sources
TRAIN_FRAMES = 50


def _resample_rows(x: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """:func:`resample` along the last axis of an array of signals."""
    flat = x.reshape(-1, x.shape[-1])
    out = np.stack([resample(row, orig_rate, new_rate) for row in flat])
    return out.reshape(x.shape[:-1] + out.shape[-1:])


def _check_waveforms(X: object, name: str = "X") -> np.ndarray:
    return check_sequences(X, name=name, ndim=2, axis_names="(n_mixtures, n_samples)")


def _spectral_sequences(signals: np.ndarray) -> np.ndarray:
    """Power spectra of the isolated sources ``(n, n_samples)``, sequences of 50 frames that
    never straddle two signals (the training data of a prior)."""
    from mixest.datasets import make_spectral_sequences

    if signals.shape[-1] < TRAIN_FRAMES * HOP:
        raise ValueError(f"y must hold at least {TRAIN_FRAMES} STFT frames "
                         f"({TRAIN_FRAMES * HOP} samples at {PRIOR_RATE} Hz) per source to "
                         f"train a prior, got {signals.shape[-1]} samples.")
    return make_spectral_sequences(signals, TRAIN_FRAMES, n_fft=N_FFT, hop_length=HOP)


class MixDVAESeparator(TransformerMixin, SequenceEstimator):
    """Separate single-channel mixtures with MixDVAE: one spectral DVAE prior per source.

    Every STFT bin :math:`x_{ft}` of the mixture is explained by one of ``N`` sources,
    :math:`p(x_{ft} | w_{ft} = n, s) = N_c(x_{ft}; s_{nft}, \\epsilon |x_{ft}|^2)`, each source
    with its DVAE prior on the power spectrum, :math:`s_{nft} | z \\sim N_c(0, v_{\\theta,nft})`.
    A variational EM (:func:`mixest.mixture.run_vem`) alternates the assignment posteriors
    (E-W), the priors' latents (E-Z) and a Wiener-like filter of each source (E-S) for
    ``max_iter`` iterations. (The lower bound is of no use as a stopping rule here: it levels
    off after a few iterations while the separation keeps improving for tens more, see
    ``docs/separation.md``; the last iterate is returned.) The sources are read out as the
    Wiener filters of their posterior expected powers :math:`|\\mu_{nft}|^2 + \\nu_{nft}` (so
    they sum to the mixture), back to waveforms by the inverse STFT (16 kHz, 1024-sample sine
    window, hop 256).

    Parameters
    ----------
    priors : sequence of (str, path-like or DVAE), default=("pretrained:speech", \
"pretrained:flute")
        One prior per source: ``"pretrained:NAME"`` (a bundled prior), the path of a file
        written by :meth:`mixest.dvae.DVAE.save`, a fitted :class:`~mixest.dvae.DVAE` (used as
        it is), or an unfitted one (a copy is trained in :meth:`fit` on the power spectra of the
        isolated sources ``y[:, n]``). Every prior is an Itakura-Saito DVAE on 513 bins.
    sample_rate : int, default=16000
        Rate of the waveforms given and returned; others than 16 kHz are resampled in and out.
    epsilon : float, default=0.03
        Observation variance relative to each bin's power (the paper's ratio).
    max_iter : int, default=70
        VEM iterations (the paper's 70); 0 returns the initialisation ("DVAE-init": each prior
        reconstructs the mixture's power and the sources are the Wiener filters of those
        reconstructions).
    batch_size : int, default=16
        Mixtures per VEM batch (memory grows with it and with the mixtures' length).
    n_jobs : int or None, default=None
        Batches run in parallel processes (joblib; -1: all cores).
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the priors run.
    random_state : int, RandomState or None, default=None
        Seeds the training of unfitted priors.
    verbose : bool, default=False
        Progress bar over batches.

    Attributes
    ----------
    priors_ : list of DVAE
        The fitted priors, one per source.
    n_sources_ : int
    device_ : torch.device
        Where the priors run.

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.dvae import DVAE, Network
    >>> from mixest.separation import MixDVAESeparator
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(4 * 12800) / 16000
    >>> y = np.stack([np.sin(2 * np.pi * 440 * t), rng.standard_normal(t.size) * 0.1])
    >>> small = DVAE(likelihood="itakura_saito", network=Network(z_dim=2, rnn_dim=8,
    ...              dense_dims=(16,)), n_epochs=2, device="cpu", random_state=0)
    >>> sep = MixDVAESeparator(priors=(small, small), max_iter=3).fit(y.sum(0)[None], y[None])
    >>> sep.transform(y.sum(0)[None]).shape
    (1, 2, 51200)
    """

    _parameter_constraints: ClassVar[dict] = {
        "priors": [list, tuple],
        "sample_rate": [Interval(Integral, 1, None, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _input_kind: ClassVar[str] = "waveforms"

    _test_params: ClassVar[dict] = {
        "priors": (DVAE(likelihood="itakura_saito", network=Network(z_dim=2, rnn_dim=4,
                        dense_dims=(8,)), n_epochs=1, batch_size=8, validation_fraction=0.0,
                        device="cpu"),) * 2,
        "max_iter": 2,
    }

    def __init__(
        self,
        priors=("pretrained:speech", "pretrained:flute"),
        *,
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
        self.sample_rate = sample_rate
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ priors
    def _load_prior(self, spec: object, n: int, y: np.ndarray | None, seed: int):
        if isinstance(spec, DVAE):
            if hasattr(spec, "module_"):
                prior = spec
            else:
                if y is None:
                    raise ValueError(f"priors[{n}] is an unfitted DVAE: fit(X, y) needs the "
                                     "isolated sources y to train it.")
                prior = clone(spec).set_params(random_state=seed)
                prior.fit(_spectral_sequences(y[:, n]))
        elif isinstance(spec, str) and spec.startswith("pretrained:"):
            prior = DVAE.from_pretrained(spec.split(":", 1)[1])
        elif isinstance(spec, (str, os.PathLike)):
            path = Path(spec)
            if not path.is_file():
                raise FileNotFoundError(f"priors[{n}]: no DVAE file at {path}.")
            prior = DVAE.load(path)
        else:
            raise TypeError(f"priors[{n}] must be 'pretrained:NAME', a path or a DVAE, got "
                            f"{type(spec).__name__}.")
        if prior.likelihood != "itakura_saito" or prior.n_features_in_ != N_FFT // 2 + 1:
            raise ValueError(f"priors[{n}] must be an Itakura-Saito DVAE on {N_FFT // 2 + 1} "
                             f"bins, got likelihood={prior.likelihood!r} on "
                             f"{prior.n_features_in_} features.")
        return prior

    def fit(self, X: object, y: object = None) -> MixDVAESeparator:
        """Load or train one prior per source.

        Parameters
        ----------
        X : array-like of shape (n_mixtures, n_samples)
            Mixtures (only checked: the priors never see them).
        y : array-like of shape (n_mixtures, n_sources, n_samples), optional
            Isolated sources, needed only to train unfitted priors.

        Returns
        -------
        self
        """
        self._validate_params()
        if len(self.priors) < 2:
            raise ValueError(f"priors must name at least two sources, got {len(self.priors)}.")
        X = _check_waveforms(X)
        if y is not None:
            y = check_sequences(y, name="y", ndim=3, axis_names="(n_mixtures, n_sources, "
                                "n_samples)")
            if y.shape[1] != len(self.priors):
                raise ValueError(f"y has {y.shape[1]} sources, priors {len(self.priors)}.")
            y = self._to_prior_rate(y)
        from mixest.dvae._training import resolve_device

        try:
            self.device_ = resolve_device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"device={self.device!r}: {exc}") from exc
        rng = check_random_state(self.random_state)
        seeds = rng.randint(2**31 - 1, size=len(self.priors))
        self.priors_ = [self._load_prior(p, n, y, int(s))
                        for n, (p, s) in enumerate(zip(self.priors, seeds, strict=True))]
        self.n_sources_ = len(self.priors_)
        return self

    # ------------------------------------------------------------------ separation
    def _to_prior_rate(self, x: np.ndarray) -> np.ndarray:
        if self.sample_rate == PRIOR_RATE:
            return x
        return _resample_rows(x, self.sample_rate, PRIOR_RATE)

    def _dynamics(self):
        from mixest.separation._vem_models import SpectralDVAEDynamics

        return SpectralDVAEDynamics([p.module_ for p in self.priors_], device=self.device_)

    def _separate_batch(self, S: np.ndarray, seed: int) -> np.ndarray:
        """Source STFTs ``(B, N, F, T)`` of mixture STFTs ``(B, F, T)``."""
        from mixest.mixture import run_vem
        from mixest.separation._vem_models import ComplexGaussianBins

        obs = np.ascontiguousarray(np.moveaxis(S, -1, -2))  # time-major (B, T, F)
        model, dynamics = ComplexGaussianBins(self.epsilon), self._dynamics()
        if self.max_iter == 0:  # DVAE-init: Wiener filters of the priors' reconstructions
            data, params = model.prepare(obs, self.n_sources_)
            sources, _ = model.initialize(data, params, self.n_sources_, dynamics, None)
        else:
            result = run_vem(obs, model, dynamics, n_sources=self.n_sources_,
                             max_iter=self.max_iter, tol=0, keep="last",
                             random_state=np.random.default_rng(seed))
            # read-out: the Wiener filter of the posterior expected powers (the sources then
            # sum to the mixture exactly; the means alone are shrunk bin by bin)
            power = np.abs(result.means) ** 2 + result.covs
            sources = power / power.sum(axis=2, keepdims=True) * obs[:, :, None]
        return np.ascontiguousarray(sources.transpose(0, 2, 3, 1))

    def transform(self, X: object) -> np.ndarray:
        """Separate the mixtures.

        Parameters
        ----------
        X : array-like of shape (n_mixtures, n_samples)

        Returns
        -------
        sources : ndarray of shape (n_mixtures, n_sources, n_samples)
            At ``sample_rate``; they sum to the mixtures (up to resampling when
            ``sample_rate`` is not 16 kHz).
        """
        check_is_fitted(self, "priors_")
        X = _check_waveforms(X)
        x = self._to_prior_rate(X)
        S = stft(x, n_fft=N_FFT, hop_length=HOP)
        seeds = check_random_state(self.random_state).randint(2**31 - 1, size=len(S))
        # a silent mixture has silent sources: nothing to separate (and no bound to compute)
        sounding = np.flatnonzero(np.abs(x).max(axis=-1) > 0)
        starts = range(0, len(sounding), self.batch_size)
        batches = [(S[sounding[i:i + self.batch_size]], int(seeds[sounding[i]]))
                   for i in starts]
        from joblib import Parallel, delayed
        from tqdm.auto import tqdm

        jobs = (delayed(_run_batch)(self, s, seed) for s, seed in batches)
        if self.verbose:
            jobs = tqdm(jobs, total=len(batches), desc="separating", unit="batch")
        parts = Parallel(n_jobs=self.n_jobs)(jobs)
        spectra = np.zeros((len(S), self.n_sources_) + S.shape[1:], dtype=S.dtype)
        if parts:
            spectra[sounding] = np.concatenate(parts)
        out = istft(spectra, n_fft=N_FFT, hop_length=HOP, n_samples=x.shape[-1])
        if self.sample_rate != PRIOR_RATE:
            out = _resample_rows(out, PRIOR_RATE, self.sample_rate)
            n = X.shape[-1]
            out = out[..., :n] if out.shape[-1] >= n else np.pad(
                out, [(0, 0), (0, 0), (0, n - out.shape[-1])])
        return out

    def score(self, X: object, y: object) -> float:
        """Mean SI-SDR (dB) of :meth:`transform` against the true sources ``y``."""
        from mixest.separation._metrics import si_sdr

        y = check_sequences(y, name="y", ndim=3, axis_names="(n_mixtures, n_sources, n_samples)")
        return float(np.mean(si_sdr(y, self.transform(X))))


def _run_batch(separator: MixDVAESeparator, S: np.ndarray, seed: int) -> np.ndarray:
    """One VEM batch with one torch thread (module level: joblib ships it to workers)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return separator._separate_batch(S, seed)
    finally:
        torch.set_num_threads(threads)
