"""Deep AR separator: a deterministic LSTM per source type as the dynamics of the audio VEM.

The Deep AR baseline of MixDVAE for audio (``docs/separation_baselines.md``) keeps the audio
observation and assignment model of :class:`mixest.separation.MixDVAESeparator` and replaces
each source's DVAE by a recurrent network without latent variable that predicts the variance
of the next frame's STFT from the power spectra before it,
:math:`s_{nt} | s_{n,<t} \\sim N_c(0, v_{nt})`, :math:`v_{nt} = f_n(|s_{n,0}|^2, \\dots,
|s_{n,t-1}|^2)`. It is trained by the Itakura-Saito divergence between each frame's power and
its prediction on the same single-source spectra as the DVAE priors. In the VEM the network is
fed the expected power :math:`|\\mu_{t-1}|^2 + \\nu_{t-1}` of the current posterior (the
Wiener-like E-S step of the DVAE, without E-Z); the sources start from each network's
one-step predictions of the mixture's power.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from mixest.separation._base import N_FFT, VEMSeparator, training_sequences
from mixest.separation._vem_models import RecurrentSpectralDynamics

__all__ = ["DeepARSeparator", "SpectralARDynamics", "load_spectral_ar", "train_spectral_ar"]

#: names of the bundled spectral Deep AR networks (``mixest.pretrained._registry``), trained by
#: ``benchmarks/train_priors.py --prior speech-ar`` / ``flute-ar``
PRETRAINED_SPECTRAL_AR = ("speech-ar", "flute-ar")
#: power offset before the log of the network's input (that of the spectral DVAEs)
_LOG_EPS = 1e-10
#: the predicted log-variance is clipped to this range around the training data's mean log power
_LOG_VAR_RANGE = 30.0


def _build_module(n_bins: int, hidden_size: int, loc: np.ndarray | None = None,
                  scale: np.ndarray | None = None) -> Any:
    """The network: standardised log power -> dense -> LSTM -> dense -> log-variance."""
    import torch
    from torch import nn

    class SpectralARModule(nn.Module):
        """One-step predictor of a power spectrum's variance (Deep AR for audio)."""

        def __init__(self) -> None:
            super().__init__()
            self.hidden_size, self.n_bins = hidden_size, n_bins
            dense = 2 * hidden_size
            # standardisation of log(power + eps), per bin, from the training data
            self.register_buffer("x_loc", torch.zeros(n_bins) if loc is None
                                 else torch.as_tensor(loc, dtype=torch.float32))
            self.register_buffer("x_scale", torch.ones(n_bins) if scale is None
                                 else torch.as_tensor(scale, dtype=torch.float32))
            self.embed = nn.Sequential(nn.Linear(n_bins, dense), nn.Tanh())
            self.lstm = nn.LSTM(dense, hidden_size, batch_first=True)
            self.head = nn.Sequential(nn.Linear(hidden_size, dense), nn.Tanh(),
                                      nn.Linear(dense, n_bins))

        def _inputs(self, power):
            return (torch.log(power.clamp_min(0.0) + _LOG_EPS) - self.x_loc) / self.x_scale

        def _variance(self, h):
            out = self.head(h).clamp(-_LOG_VAR_RANGE, _LOG_VAR_RANGE)
            return torch.exp(out * self.x_scale + self.x_loc)

        def initial_state(self, batch: int):
            z = torch.zeros(1, batch, self.hidden_size, dtype=self.x_loc.dtype,
                            device=self.x_loc.device)
            return z, z.clone()

        def step(self, power, state):
            """Variance ``(B, F)`` of the next frame given the last power ``(B, F)`` (None
            before the first frame: the network then reads zeros, as in training)."""
            B = state[0].shape[1]
            x = (torch.zeros(B, self.n_bins, dtype=self.x_loc.dtype, device=self.x_loc.device)
                 if power is None else self._inputs(power))
            h, state = self.lstm(self.embed(x)[:, None], state)
            return self._variance(h[:, 0]), state

        def forward(self, X):
            """Teacher-forced variances of every frame of ``X`` ``(B, T, F)`` from the frames
            before it (zeros before the first)."""
            x = self._inputs(X[:, :-1])
            x = torch.cat([torch.zeros_like(x[:, :1]), x], dim=1)
            h, _ = self.lstm(self.embed(x))
            return self._variance(h)

    return SpectralARModule()


def is_divergence(module: Any, X: Any) -> Any:
    """Mean Itakura-Saito divergence per bin between the powers ``X`` and their one-step
    predictions: :math:`P / v - \\log(P / v) - 1` (the negative log-likelihood of
    :math:`N_c(0, v)` up to terms free of :math:`v`; the power is floored at 1e-10 in the log)."""
    import torch

    var = module(X)
    ratio = X / var
    return (ratio - torch.log((X + _LOG_EPS) / var) - 1.0).mean()


def train_spectral_ar(
    X: np.ndarray,
    *,
    hidden_size: int = 128,
    max_epochs: int = 100,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    patience: int = 10,
    validation_fraction: float = 0.1,
    random_state: int | np.random.RandomState | None = None,
    verbose: bool = False,
) -> tuple[dict, dict]:
    """Train a spectral Deep AR network on single-source power spectra.

    Parameters
    ----------
    X : ndarray of shape (n_sequences, T, F)
        Power spectra (e.g. :func:`mixest.datasets.make_spectral_sequences`), ``T >= 2``.
    hidden_size : int, default=128
        Width of the LSTM (the dense layers are twice as wide).
    max_epochs, batch_size, learning_rate, patience, validation_fraction : see
        :func:`mixest.baselines._deep_ar.train_deep_ar`.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation, the split and the batches.
    verbose : bool, default=False
        Progress bar over the epochs.

    Returns
    -------
    weights : dict
        ``{"hidden_size", "n_bins", "state_dict"}`` (NumPy arrays), the best validation weights.
    history : dict
        ``train_nll`` and ``val_nll`` (mean IS divergence per bin, per epoch), ``best_epoch``,
        ``best_val_nll``, ``seconds``.
    """
    from mixest.baselines._deep_ar import fit_network

    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3 or X.shape[1] < 2 or not np.isfinite(X).all() or (X < 0).any():
        raise ValueError("X must be finite non-negative power spectra of shape (n_sequences, T, "
                         f"F) with T >= 2, got shape {X.shape}.")
    log = np.log(X.reshape(-1, X.shape[-1]).astype(np.float64) + _LOG_EPS)
    loc, scale = log.mean(0), np.maximum(log.std(0), 1e-3)

    def build():
        return _build_module(X.shape[-1], hidden_size, loc, scale)

    state, history = fit_network(build, lambda m, xb, gen: is_divergence(m, xb), is_divergence,
                                 X, max_epochs=max_epochs, batch_size=batch_size,
                                 learning_rate=learning_rate, patience=patience,
                                 validation_fraction=validation_fraction,
                                 random_state=random_state, verbose=verbose, desc="spectral AR")
    return {"hidden_size": hidden_size, "n_bins": X.shape[-1], "state_dict": state}, history


def module_from_weights(weights: dict) -> Any:
    """The torch module of weights returned by :func:`train_spectral_ar` (evaluation mode)."""
    import torch

    module = _build_module(int(weights["n_bins"]), int(weights["hidden_size"]))
    module.load_state_dict({k: torch.as_tensor(v) for k, v in weights["state_dict"].items()})
    return module.eval()


def load_spectral_ar(name: str) -> dict:
    """Bundled spectral Deep AR weights by name (``"speech-ar"``, ``"flute-ar"``), with their
    training summary under ``"meta"``."""
    import torch

    if name not in PRETRAINED_SPECTRAL_AR:
        raise ValueError(f"unknown pretrained spectral Deep AR model {name!r}; available: "
                         f"{sorted(PRETRAINED_SPECTRAL_AR)}.")
    from mixest.pretrained._registry import weight_path

    payload = torch.load(weight_path(name), map_location="cpu", weights_only=True)
    return {"hidden_size": int(payload["hidden_size"]), "n_bins": int(payload["n_bins"]),
            "state_dict": {k: v.numpy() for k, v in payload["state_dict"].items()},
            "meta": dict(payload.get("meta", {}))}


def save_spectral_ar(weights: dict, path: object, meta: dict | None = None) -> None:
    """Write weights of :func:`train_spectral_ar` where :func:`load_spectral_ar` reads them."""
    import torch

    torch.save({"hidden_size": int(weights["hidden_size"]), "n_bins": int(weights["n_bins"]),
                "state_dict": {k: torch.as_tensor(v) for k, v in weights["state_dict"].items()},
                "meta": dict(meta or {})}, path)


class SpectralARDynamics(RecurrentSpectralDynamics):
    """Deep AR networks as the sources' dynamics of the audio VEM (one per source type).

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        Networks of :func:`train_spectral_ar` (:func:`module_from_weights`), one per source.
    device : torch.device or str, default="cpu"
    """

    def reconstruct(self, power: np.ndarray) -> np.ndarray:
        """Each network's one-step predictions of a power spectrogram ``(B, T, F)``, as
        ``(B, T, N, F)`` (the initialisation of the sources' variances)."""
        import torch

        with torch.no_grad():
            P = self._tensor(power)
            return np.stack([m(P).double().cpu().numpy() for m in self.modules], axis=2)

    def _initial_state(self, n, batch):
        return self.modules[n].initial_state(batch)

    def _step(self, n, fed, t, state):
        return self.modules[n].step(fed, state)


class DeepARSeparator(VEMSeparator):
    """Separate single-channel mixtures with the audio VEM and a Deep AR network per source.

    Like :class:`~mixest.separation.MixDVAESeparator` with each DVAE replaced by a
    deterministic LSTM that predicts the variance of a source's next STFT frame from its past
    power spectra (no latent variable, no E-Z step). The sources start from each network's
    one-step predictions of the mixture's power (the Deep AR analogue of DVAE-init).

    Parameters
    ----------
    priors : sequence of str or dict, default=("pretrained:speech-ar", "pretrained:flute-ar")
        One network per source: ``"pretrained:NAME"`` (bundled weights, trained by
        ``benchmarks/train_priors.py --prior speech-ar`` / ``flute-ar``), ``"train"`` (trained
        in :meth:`fit` on the power spectra of the isolated sources ``y[:, n]``), or weights
        returned by :func:`train_spectral_ar`.
    hidden_size : int, default=128
        LSTM width of the networks trained in :meth:`fit` (the bundled ones use 128).
    max_epochs : int, default=100
        Training epochs of those networks (early stopping on a 10% split, patience 10; the
        bundled networks' setting).
    sample_rate, epsilon, max_iter, batch_size, n_jobs, device, verbose
        As in :class:`~mixest.separation.MixDVAESeparator` (``epsilon`` 0.003 as there: better
        than the paper's 0.03 for these networks too, ``docs/separation.md``).
    random_state : int, RandomState or None, default=None
        Seeds the training of the networks trained in :meth:`fit`.

    Attributes
    ----------
    weights_ : list of dict
        Each source's network weights (NumPy arrays).
    n_sources_ : int
    device_ : torch.device

    Examples
    --------
    >>> import numpy as np
    >>> from mixest.baselines import DeepARSeparator
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(4 * 12800) / 16000
    >>> y = np.stack([np.sin(2 * np.pi * 440 * t), rng.standard_normal(t.size) * 0.1])
    >>> sep = DeepARSeparator(priors=("train", "train"), hidden_size=8, max_epochs=2,
    ...                       max_iter=3, random_state=0).fit(y.sum(0)[None], y[None])
    >>> sep.transform(y.sum(0)[None]).shape
    (1, 2, 51200)
    """

    _parameter_constraints: ClassVar[dict] = {
        "priors": [list, tuple],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        **VEMSeparator._vem_constraints,
    }
    _test_params: ClassVar[dict] = {"priors": ("train", "train"), "hidden_size": 4,
                                    "max_epochs": 1, "max_iter": 2}

    def __init__(
        self,
        priors=("pretrained:speech-ar", "pretrained:flute-ar"),
        *,
        hidden_size: int = 128,
        max_epochs: int = 100,
        sample_rate: int = 16000,
        epsilon: float = 0.003,
        max_iter: int = 70,
        batch_size: int = 16,
        n_jobs: int | None = None,
        device: str = "cpu",
        random_state: object = None,
        verbose: bool = False,
    ):
        self.priors = priors
        self.hidden_size = hidden_size
        self.max_epochs = max_epochs
        self.sample_rate = sample_rate
        self.epsilon = epsilon
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _weights(self, spec: object, n: int, y: np.ndarray | None, seed: int) -> dict:
        if isinstance(spec, dict):
            return spec
        if isinstance(spec, str) and spec.startswith("pretrained:"):
            weights = load_spectral_ar(spec.split(":", 1)[1])
            weights.pop("meta")
            return weights
        if spec != "train":
            raise ValueError(f"priors[{n}] must be 'pretrained:NAME', 'train' or weights from "
                             f"train_spectral_ar, got {spec!r}.")
        if y is None:
            raise ValueError(f"priors[{n}] is 'train': fit(X, y) needs the isolated sources y.")
        weights, _ = train_spectral_ar(training_sequences(y[:, n]),
                                       hidden_size=self.hidden_size, max_epochs=self.max_epochs,
                                       random_state=seed, verbose=self.verbose)
        return weights

    def fit(self, X: object, y: object = None) -> DeepARSeparator:
        """Load or train one network per source.

        Parameters
        ----------
        X : array-like of shape (n_mixtures, n_samples)
            Mixtures (only checked).
        y : array-like of shape (n_mixtures, n_sources, n_samples), optional
            Isolated sources, needed for the networks to train.

        Returns
        -------
        self
        """
        self._validate_params()
        if len(self.priors) < 2:
            raise ValueError(f"priors must name at least two sources, got {len(self.priors)}.")
        if "train" not in self.priors and (self.hidden_size != 128 or self.max_epochs != 100):
            raise ValueError("hidden_size and max_epochs apply to networks trained in fit "
                             "(priors='train'); none is.")
        X, y = self._check_training_sources(X, y, len(self.priors), required=False)
        self._resolve_device()
        seeds = check_random_state(self.random_state).randint(2**31 - 1, size=len(self.priors))
        self.weights_ = [self._weights(p, n, y, int(s))
                         for n, (p, s) in enumerate(zip(self.priors, seeds, strict=True))]
        bins = {int(w["n_bins"]) for w in self.weights_}
        if bins != {N_FFT // 2 + 1}:
            raise ValueError(f"every network must predict {N_FFT // 2 + 1} bins, got {bins}.")
        self.n_sources_ = len(self.weights_)
        return self

    def _dynamics(self, n_mixtures: int):
        return SpectralARDynamics([module_from_weights(w) for w in self.weights_], self.device_)
