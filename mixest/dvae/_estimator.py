"""The scikit-learn style :class:`DVAE` estimator and its weight file format."""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
from numbers import Integral, Real
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixest.base import SequenceEstimator, check_sequences
from mixest.dvae._modules import MODULE_OPTIONS, DVAEModule, build_module
from mixest.dvae._training import (
    TrainingHistory,
    jitter,
    resolve_device,
    torch_threads,
    train_dvae,
)

__all__ = ["DVAE", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "mixest-dvae"
FORMAT_VERSION = 1


def _digest(flat: torch.Tensor, layout: list) -> str:
    """sha256 of the packed weights and their layout: detects a corrupted file."""
    h = hashlib.sha256(repr(layout).encode())
    h.update(flat.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _pack(state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list]:
    """All float32 tensors of a state dict as one flat tensor + ``[name, shape]`` layout.

    One tensor instead of ~30 keeps the bundled files small (each zip record costs bytes).
    """
    layout = [[k, list(v.shape)] for k, v in state.items()]
    flat = torch.cat([v.detach().cpu().reshape(-1).float() for v in state.values()])
    return flat, layout


def _unpack(flat: torch.Tensor, layout: list) -> dict[str, torch.Tensor]:
    state, i = {}, 0
    for name, shape in layout:
        n = int(np.prod(shape, dtype=np.int64))
        if i + n > flat.numel():
            raise ValueError("the packed weights are shorter than their layout")
        state[name] = flat[i : i + n].reshape(shape).clone()
        i += n
    if i != flat.numel():
        raise ValueError("the packed weights are longer than their layout")
    return state


def _in_threads(method):
    """Run an estimator method under its ``n_threads`` torch setting."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with torch_threads(getattr(self, "n_threads", None)):
            return method(self, *args, **kwargs)

    return wrapper


def _seed_from(random_state: object) -> int:
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


class DVAE(SequenceEstimator):
    """Dynamical variational autoencoder (SRNN or VRNN) for single-source sequences.

    The generative model of DESIGN §3 with the SRNN architecture:

    .. math::

        h_t = \\mathrm{LSTM}(g(x_{t-1}), h_{t-1}),\\quad
        p(z_t | h_t, z_{t-1}) = \\mathcal N(\\mu_p, \\sigma_p^2),\\quad
        p(x_t | h_t, z_t) = \\mathcal N(\\mu_\\theta, v_\\theta)

    trained by maximising the evidence lower bound

    .. math::

        \\frac1T \\sum_t \\mathbb E_q[\\log p(x_t | h_t, z_t)]
        - \\beta\\, \\mathrm{KL}(q(z_t | z_{t-1}, h_t, x_{t:T}) \\| p(z_t | h_t, z_{t-1})).

    Parameters
    ----------
    architecture : {"srnn", "vrnn"}, default="srnn"
    likelihood : {"gaussian", "itakura_saito"}, default="gaussian"
        Gaussian for trajectories; Itakura-Saito for power spectra (zero-mean complex Gaussian).
    z_dim : int, default=4
    rnn_dim : int, default=8
        Forward LSTM size (and backward encoder LSTM size).
    dense_dims : tuple of int, default=(16, 8)
        Hidden layers of the dense blocks.
    encoder_rnn : bool, default=True
        Backward LSTM over ``x_{t:T}`` in the encoder (False: the encoder reads ``x_t`` only).
    residual_order : {0, 1, 2}, default=2
        Gaussian only: the decoder predicts ``x_t`` (0), ``x_t - x_{t-1}`` (1) or the deviation
        from constant velocity ``x_t - 2 x_{t-1} + x_{t-2}`` (2), each rescaled by its
        training-set scale.
    velocity_input : bool, default=None
        Also feed ``x_{t-1} - x_{t-2}`` to the LSTM (None: True for Gaussian data).
    gated_extrapolation : bool, default=False
        With ``residual_order=1`` (Gaussian): the decoder mean is
        ``x_{t-1} + sigmoid(g_v) v_{t-1} + sigmoid(g_a) a_{t-1} + s_1 r``, gates ``g_v, g_a``
        and residual ``r`` from the decoder, ``v`` and ``a`` the last velocity and acceleration
        of the inputs, which the LSTM also reads (see :class:`mixest.dvae.SRNN`).
    gate_init : float, default=0.0
        With ``gated_extrapolation``: initial bias of the velocity gate's logit (``+gate_init``)
        and of the acceleration gate's logit (``-gate_init``). 0 starts both gates at 1/2; 4
        starts the decoder near constant velocity (gates 0.98 and 0.02), from which it learns
        when to use the acceleration, instead of settling on constant acceleration, whose
        saturated gate then hardly moves.
    noise_level_input : bool, default=False
        The recurrence also reads the noise level of its inputs: in training each sequence's
        jitter factor (0 for the ``input_noise_clean`` share, else its ``input_noise_random``
        draw; needs ``input_noise > 0``), afterwards the ``level`` argument of
        :meth:`predict_next`, :meth:`score`, :meth:`score_samples`, :meth:`transform` and
        :meth:`sample` (0 for exact frames; default 1, the largest training jitter, which is
        also what a tracker feeds unless told otherwise). One network then predicts from exact
        frames as well as it denoises jittered ones, instead of hedging between the two.
    predictive_weight : float, default=0.0
        Gaussian only. Subtract this multiple of an auxiliary term from the training objective:
        the mean error (squared or absolute, ``predictive_loss``), in units of the first
        differences' scale, of the one-step prediction from exact inputs, i.e. of the decoder
        mean at the prior's *mean* latent :math:`E_p[z_t | h_t, z_{t-1}]` (what
        :meth:`predict_next` and a tracker use), over the
        training sequences left unjittered (all of them without ``input_noise``). The ELBO
        trains that prediction only through its KL term: the posterior, which sees
        :math:`x_t`, absorbs what the prior fails to predict, and a learned variance can cover
        a poor mean. 0: the plain ELBO (the paper). Early stopping reads the same objective on
        the validation sequences.
    predictive_loss : {"squared", "absolute"}, default="squared"
        The error of that auxiliary term. Squared errors are dominated by the few large
        misses at changes of motion; absolute errors also weigh the many small ones of smooth
        motion (a parabola's constant acceleration, say), which is what a mean absolute error
        counts.
    min_std : "auto" or float, default="auto"
        Floor of the decoder standard deviation in data units; "auto" is 1e-3 of each
        dimension's standard deviation in the training data. It keeps the prior's variance
        realistic when the training data are noise-free.
    input_noise : float, default=0.0
        Standard deviation of Gaussian jitter added to every training batch: in data units, or
        a fraction of the box size with ``input_noise_relative``.
    noise_targets : bool, default=True
        Jitter the reconstruction targets too (True: the whole batch is jittered, the model
        learns noisy trajectories) or only the conditioning inputs (False: denoising training;
        the recurrence, the encoder and the residual base read jittered frames and the decoder
        must predict the clean next frame, as inside a tracker fed noisy posterior means). The
        input standardisation (velocity and residual scales) is then taken from one jittered
        copy of the training data unless ``jittered_scales=False``.
    jittered_scales : bool, default=True
        With ``noise_targets=False``: take the input standardisation from one jittered copy of
        the training data (True) or from the clean data (False). The residual is output in
        units of the first or second differences' scale, and a network's outputs are only so
        precise: jittered scales (several times the clean motion, 15 times for box heights
        jittered by 0.1 of the box size) cap how exactly it can predict from exact frames.
        Clean scales suit ``noise_level_input=True``, which asks for both.
    input_noise_relative : bool, default=False
        ``input_noise`` is a fraction of each frame's box width (x coordinates) and height
        (y coordinates). Needs Gaussian box data ``(x1, y1, x2, y2)`` (D = 4).
    input_noise_random : bool, default=False
        Draw each training sequence's jitter level uniformly between 0 and ``input_noise``
        (noise-level augmentation), so that one prior learns both to extrapolate clean
        trajectories and to denoise noisy ones, telling them apart from their roughness.
    input_noise_clean : float, default=0.0
        With ``input_noise_random``: the share of training sequences left exactly clean, so
        that noise-free inputs are learned as such (a uniform level is almost never zero).
    input_noise_min : float, default=0.0
        With ``input_noise_random``: draw the other sequences' levels uniformly between
        ``input_noise_min * input_noise`` and ``input_noise`` instead. With
        ``input_noise_clean`` this leaves a gap between clean and noisy sequences that the
        network can detect (see ``docs/dvae.md``).
    n_epochs : int, default=500
    batch_size : int, default=256
    learning_rate : float, default=1e-3
        Adam's step size (of the first epoch with ``final_learning_rate``).
    final_learning_rate : float or None, default=None
        Anneal the step size on a half cosine from ``learning_rate`` at the first epoch to this
        value at epoch ``n_epochs - 1`` (``history_.learning_rate`` records it). Small steps at
        the end let the weights settle where constant steps keep them jittering, which matters
        when the prior must be precise to a fraction of a pixel. None: constant.
    beta : float, default=1.0
        Weight of the KL term.
    kl_warmup : int, default=20
        Epochs over which the KL weight rises linearly to 1.
    ss_start, ss_end : int, default=20, 100
        Scheduled sampling: the probability of feeding the model's own prediction into the
        recurrence rises linearly from 0 at ``ss_start`` to ``ss_max`` at ``ss_end``.
    ss_max : float, default=0.0
        Final scheduled-sampling probability (0 disables it; the paper ramps it in). The first
        two frames are never replaced. With ``residual_order=2`` the fed predictions' errors
        compound along the sequence, so a long ramp (the paper's 80 epochs) is needed for
        ``z`` to learn to correct them; hence off by default.
    validation_fraction : float, default=0.1
        Share of the sequences held out for early stopping (0: none, stop on training loss).
    patience : int or None, default=50
        Early-stopping patience in epochs (None: train all epochs, keep the best).
    grad_clip : float or None, default=5.0
        Maximum gradient norm.
    device : {"cpu", "cuda", "auto"}, default="auto"
    n_threads : int or None, default=1
        torch CPU threads while this estimator computes (restored afterwards); None leaves
        torch's setting alone. The default models are too small to gain from more threads.
    random_state : int, RandomState or None, default=None
        Seeds torch and NumPy: a fixed value gives identical weights on CPU.
    verbose : bool, default=False
        Show a progress bar.

    Attributes
    ----------
    module_ : DVAEModule
        The trained PyTorch module (on ``device_``).
    device_ : torch.device
    history_ : TrainingHistory
        Training loss and validation ELBO per epoch, best epoch, wall time.
    n_features_in_ : int
        Frame size ``D``.
    n_epochs_ : int
        Epochs actually run.
    """

    _parameter_constraints: ClassVar[dict] = {
        "architecture": [StrOptions({"srnn", "vrnn"})],
        "likelihood": [StrOptions({"gaussian", "itakura_saito"})],
        "z_dim": [Interval(Integral, 1, None, closed="left")],
        "rnn_dim": [Interval(Integral, 1, None, closed="left")],
        "dense_dims": [tuple, list],
        "encoder_rnn": ["boolean"],
        "residual_order": [Interval(Integral, 0, 2, closed="both")],
        "velocity_input": ["boolean", None],
        "gated_extrapolation": ["boolean"],
        "gate_init": [Interval(Real, None, None, closed="neither")],
        "noise_level_input": ["boolean"],
        "predictive_weight": [Interval(Real, 0, None, closed="left")],
        "predictive_loss": [StrOptions({"squared", "absolute"})],
        "min_std": [StrOptions({"auto"}), Interval(Real, 0, None, closed="left")],
        "input_noise": [Interval(Real, 0, None, closed="left")],
        "noise_targets": ["boolean"],
        "jittered_scales": ["boolean"],
        "input_noise_relative": ["boolean"],
        "input_noise_random": ["boolean"],
        "input_noise_clean": [Interval(Real, 0, 1, closed="left")],
        "input_noise_min": [Interval(Real, 0, 1, closed="left")],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "final_learning_rate": [Interval(Real, 0, None, closed="left"), None],
        "beta": [Interval(Real, 0, None, closed="left")],
        "kl_warmup": [Interval(Integral, 0, None, closed="left")],
        "ss_start": [Interval(Integral, 0, None, closed="left")],
        "ss_end": [Interval(Integral, 0, None, closed="left")],
        "ss_max": [Interval(Real, 0, 1, closed="both")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left"), None],
        "grad_clip": [Interval(Real, 0, None, closed="neither"), None],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _input_kind: ClassVar[str] = "sequences"
    _test_params: ClassVar[dict] = {
        "z_dim": 2,
        "rnn_dim": 4,
        "dense_dims": (4,),
        "n_epochs": 2,
        "batch_size": 16,
        "kl_warmup": 1,
        "ss_start": 1,
        "ss_end": 2,
        "ss_max": 0.5,
        "validation_fraction": 0.0,
        "device": "cpu",
        "random_state": 0,
    }

    def __init__(
        self,
        architecture: str = "srnn",
        likelihood: str = "gaussian",
        *,
        z_dim: int = 4,
        rnn_dim: int = 8,
        dense_dims: tuple[int, ...] = (16, 8),
        encoder_rnn: bool = True,
        residual_order: int = 2,
        velocity_input: bool | None = None,
        gated_extrapolation: bool = False,
        gate_init: float = 0.0,
        noise_level_input: bool = False,
        predictive_weight: float = 0.0,
        predictive_loss: str = "squared",
        min_std: str | float = "auto",
        input_noise: float = 0.0,
        noise_targets: bool = True,
        jittered_scales: bool = True,
        input_noise_relative: bool = False,
        input_noise_random: bool = False,
        input_noise_clean: float = 0.0,
        input_noise_min: float = 0.0,
        n_epochs: int = 500,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        final_learning_rate: float | None = None,
        beta: float = 1.0,
        kl_warmup: int = 20,
        ss_start: int = 20,
        ss_end: int = 100,
        ss_max: float = 0.0,
        validation_fraction: float = 0.1,
        patience: int | None = 50,
        grad_clip: float | None = 5.0,
        device: str = "auto",
        n_threads: int | None = 1,
        random_state: object = None,
        verbose: bool = False,
    ):
        self.architecture = architecture
        self.likelihood = likelihood
        self.z_dim = z_dim
        self.rnn_dim = rnn_dim
        self.dense_dims = dense_dims
        self.encoder_rnn = encoder_rnn
        self.residual_order = residual_order
        self.velocity_input = velocity_input
        self.gated_extrapolation = gated_extrapolation
        self.gate_init = gate_init
        self.noise_level_input = noise_level_input
        self.predictive_weight = predictive_weight
        self.predictive_loss = predictive_loss
        self.min_std = min_std
        self.input_noise = input_noise
        self.noise_targets = noise_targets
        self.jittered_scales = jittered_scales
        self.input_noise_relative = input_noise_relative
        self.input_noise_random = input_noise_random
        self.input_noise_clean = input_noise_clean
        self.input_noise_min = input_noise_min
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.final_learning_rate = final_learning_rate
        self.beta = beta
        self.kl_warmup = kl_warmup
        self.ss_start = ss_start
        self.ss_end = ss_end
        self.ss_max = ss_max
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.grad_clip = grad_clip
        self.device = device
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ helpers
    def _check_X(self, X: object, reset: bool) -> np.ndarray:
        X = check_sequences(X, ndim=3, axis_names="(n_sequences, T, D)")
        if self.likelihood == "itakura_saito" and (X < 0).any():
            raise ValueError("X must be non-negative power spectra for likelihood='itakura_saito'.")
        if reset:
            self.n_features_in_ = X.shape[-1]
        elif X.shape[-1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[-1]} features per frame, but this DVAE was fitted with "
                f"{self.n_features_in_}."
            )
        return X

    def _tensor(self, X: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(X, dtype=torch.float32, device=self.device_)

    def _generator(self, random_state: object) -> torch.Generator:
        return torch.Generator(device=self.device_).manual_seed(_seed_from(random_state))

    # ------------------------------------------------------------------ fit / use
    @_in_threads
    def fit(self, X: object, y: object = None) -> DVAE:
        """Train the DVAE on single-source sequences.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, D)
            Sequences in data units (Itakura-Saito: non-negative power spectra).
        y : ignored

        Returns
        -------
        self : DVAE
        """
        self._validate_params()
        X = self._check_X(X, reset=True)
        if self.input_noise_relative and (self.likelihood != "gaussian" or X.shape[-1] != 4):
            raise ValueError(
                "input_noise_relative=True scales the jitter by the box size: it needs Gaussian "
                f"box data (x1, y1, x2, y2) with D = 4, got likelihood={self.likelihood!r} and "
                f"D = {X.shape[-1]}."
            )
        if self.noise_level_input and self.input_noise <= 0:
            raise ValueError("noise_level_input=True needs input_noise > 0: the model reads the "
                             "level of the training jitter.")
        rng = check_random_state(self.random_state)
        self.device_ = resolve_device(self.device)
        n = X.shape[0]
        n_val = int(round(self.validation_fraction * n)) if self.validation_fraction > 0 else 0
        if n_val >= n:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} leaves no training sequence "
                f"out of {n}."
            )
        perm = rng.permutation(n)
        X_tr, X_val = X[perm[n_val:]], (X[perm[:n_val]] if n_val > 0 else None)
        devices = [self.device_.index or 0] if self.device_.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(_seed_from(rng))
            options = {k: getattr(self, k) for k in MODULE_OPTIONS}
            module = build_module({"x_dim": X.shape[-1], **options}).to(self.device_)
            if self.gated_extrapolation and self.gate_init != 0:
                with torch.no_grad():  # decoder outputs: mean, log-variance, g_v, g_a
                    gates = module.decoder_net[-1].bias.view(4, -1)
                    gates[2] += self.gate_init
                    gates[3] -= self.gate_init
            t_tr = self._tensor(X_tr)
            if self.min_std == "auto":
                min_std = 1e-3 * t_tr.reshape(-1, X.shape[-1]).std(0)
                if t_tr.reshape(-1, X.shape[-1]).shape[0] < 2:
                    min_std = torch.zeros(X.shape[-1], device=self.device_)
            else:
                min_std = float(self.min_std)
            t_norm = t_tr
            if not self.noise_targets and self.input_noise > 0 and self.jittered_scales:
                # Denoising: the recurrence and the residual base read jittered frames, so the
                # velocity feature and the residual output are scaled by the differences of
                # jittered data (one fixed draw); with clean-data scales a second-order
                # residual would have to output values ~100 times its unit.
                gen = torch.Generator(device=self.device_).manual_seed(_seed_from(rng))
                t_norm = jitter(t_tr, self.input_noise, self.input_noise_relative, gen,
                                self.input_noise_random, self.input_noise_clean,
                                self.input_noise_min)
            module.set_normalization(t_norm, min_std)
            self.history_: TrainingHistory = train_dvae(
                module,
                t_tr,
                None if X_val is None else self._tensor(X_val),
                n_epochs=self.n_epochs,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                beta=self.beta,
                kl_warmup=self.kl_warmup,
                ss_start=self.ss_start,
                ss_end=self.ss_end,
                ss_max=self.ss_max,
                patience=self.patience if X_val is not None else None,
                grad_clip=self.grad_clip,
                input_noise=self.input_noise,
                rng=rng,
                verbose=bool(self.verbose),
                noise_targets=bool(self.noise_targets),
                input_noise_relative=bool(self.input_noise_relative),
                input_noise_random=bool(self.input_noise_random),
                input_noise_clean=float(self.input_noise_clean),
                input_noise_min=float(self.input_noise_min),
                predictive_weight=float(self.predictive_weight),
                predictive_loss=self.predictive_loss,
                final_learning_rate=(None if self.final_learning_rate is None
                                     else float(self.final_learning_rate)),
            )
        self.module_: DVAEModule = module
        self.n_epochs_ = len(self.history_.train_loss)
        return self

    def _check_level(self, level: object) -> float | None:
        """``level`` as a float, or None (the module refuses it without a noise-level input)."""
        if level is None:
            return None
        if isinstance(level, bool) or not isinstance(level, Real):
            raise TypeError(f"level must be a real number, got {type(level).__name__}.")
        if not (math.isfinite(level) and level >= 0):
            raise ValueError(f"level must be a finite number >= 0, got {level!r}.")
        return float(level)

    @torch.no_grad()
    def score(self, X: object, y: object = None, level: float | None = None) -> float:
        """Mean per-frame ELBO (beta 1, one reparameterised sample with a fixed seed).

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, D)
        y : ignored
        level : float, optional
            Noise level of ``X`` (``noise_level_input`` only; 0 for exact frames).

        Returns
        -------
        score : float
        """
        check_is_fitted(self, "module_")
        X = self._check_X(X, reset=False)
        return float(self.score_samples(X, level=level).mean())

    @_in_threads
    @torch.no_grad()
    def score_samples(self, X: object, level: float | None = None) -> np.ndarray:
        """Per-frame ELBO of each sequence, shape (n_sequences,); ``level`` as in :meth:`score`."""
        check_is_fitted(self, "module_")
        X = self._check_X(X, reset=False)
        level = self._check_level(level)
        gen = torch.Generator(device=self.device_).manual_seed(0)
        self.module_.eval()
        out = [
            self.module_.elbo(self._tensor(X[i : i + 1024]), 1.0, generator=gen,
                              level=level).cpu().numpy()
            for i in range(0, X.shape[0], 1024)
        ]
        return np.concatenate(out).astype(np.float64)

    @_in_threads
    @torch.no_grad()
    def transform(self, X: object, level: float | None = None) -> np.ndarray:
        """Posterior latent means (deterministic pass), shape (n_sequences, T, z_dim).

        ``level``: noise level of ``X`` (``noise_level_input`` only; 0 for exact frames).
        """
        check_is_fitted(self, "module_")
        X = self._check_X(X, reset=False)
        level = self._check_level(level)
        self.module_.eval()
        _, m, _ = self.module_.encode(self._tensor(X), sample=False, level=level)
        return m.cpu().numpy().astype(np.float64)

    @_in_threads
    @torch.no_grad()
    def predict_next(self, X: object,
                     level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Causal one-step-ahead prediction: mean and variance of each frame given the past.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, D)
        level : float, optional
            Noise level of ``X`` as a fraction of the largest training jitter
            (``noise_level_input`` only): 0 for exact frames, 1 (the default) for frames
            jittered by ``input_noise``.

        Returns
        -------
        mean, var : ndarray of shape (n_sequences, T, D)
        """
        check_is_fitted(self, "module_")
        X = self._check_X(X, reset=False)
        level = self._check_level(level)
        self.module_.eval()
        m, v = self.module_.predict_next(self._tensor(X), level=level)
        return m.cpu().numpy().astype(np.float64), v.cpu().numpy().astype(np.float64)

    @_in_threads
    @torch.no_grad()
    def sample(
        self,
        n_samples: int = 1,
        T: int = 60,
        random_state: object = None,
        noise: bool = True,
        X_start: object = None,
        level: float | None = None,
    ) -> np.ndarray:
        """Draw sequences from the generative model.

        Parameters
        ----------
        n_samples : int, default=1
        T : int, default=60
        random_state : int, RandomState or None
        noise : bool, default=True
            Sample each frame from the decoder (False: emit the decoder mean).
        X_start : array-like of shape (n_samples, k, D), optional
            Continue these first ``k < T`` frames instead of drawing them (the model's
            first-frame distribution is a diagonal Gaussian around the training mean, so
            unconditional first boxes are rough; continuations show the learned motion).
        level : float, optional
            Noise level the recurrence is told its inputs (``X_start``, then its own draws)
            have (``noise_level_input`` only).

        Returns
        -------
        X : ndarray of shape (n_samples, T, D)
        """
        check_is_fitted(self, "module_")
        level = self._check_level(level)
        for name, v in (("n_samples", n_samples), ("T", T)):
            if not isinstance(v, Integral) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}.")
        x_start = None
        if X_start is not None:
            X_start = self._check_X(X_start, reset=False)
            if X_start.shape[0] != n_samples or X_start.shape[1] >= T:
                raise ValueError(
                    f"X_start must have shape (n_samples={n_samples}, k < T={T}, D), got "
                    f"{X_start.shape}."
                )
            x_start = self._tensor(X_start)
        self.module_.eval()
        x = self.module_.sample(
            int(n_samples), int(T), self._generator(random_state), noise, x_start, level
        )
        out = x.cpu().numpy().astype(np.float64)
        if X_start is not None:
            out[:, : X_start.shape[1]] = X_start  # exact, not float32-rounded
        return out

    # ------------------------------------------------------------------ persistence
    def _payload(self) -> dict:
        flat, layout = _pack(self.module_.state_dict())
        params = self.get_params(deep=False)
        if not isinstance(params["random_state"], (Integral, type(None))):
            params["random_state"] = None  # a RandomState object is not plain data
        params["dense_dims"] = list(params["dense_dims"])
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "params": params,
            "module_config": self.module_.config(),
            "weights": flat,
            "layout": layout,
            "sha256": _digest(flat, layout),
            "n_features_in": int(self.n_features_in_),
            "history": {
                "train_loss": list(self.history_.train_loss),
                "val_elbo": list(self.history_.val_elbo),
                "best_epoch": int(self.history_.best_epoch),
                "best_val_elbo": float(self.history_.best_val_elbo),
                "seconds": float(self.history_.seconds),
            },
        }

    @classmethod
    def _from_payload(cls, payload: object, source: str) -> DVAE:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
            raise ValueError(f"{source} is not a mixest DVAE weight file.")
        version = payload.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{source} has DVAE format version {version!r}; this mixest reads version "
                f"{FORMAT_VERSION}."
            )
        try:
            flat, layout = payload["weights"], payload["layout"]
            if _digest(flat, layout) != payload["sha256"]:
                raise ValueError(f"{source} is corrupted: its weights fail the sha256 check.")
            state = _unpack(flat, layout)
            params = dict(payload["params"])
            params["dense_dims"] = tuple(params["dense_dims"])
            est = cls(**params)
            module = build_module(payload["module_config"])
            module.load_state_dict(state, strict=True)
        except (KeyError, TypeError, RuntimeError, AttributeError) as exc:
            raise ValueError(f"{source} does not match its DVAE configuration: {exc}") from exc
        est._attach(module, payload)
        return est

    def _attach(self, module: DVAEModule, payload: dict) -> None:
        try:
            self.device_ = resolve_device(self.device)
        except RuntimeError:  # saved on a GPU machine, loaded without one
            self.device_ = torch.device("cpu")
        self.module_ = module.to(self.device_).eval()
        self.n_features_in_ = int(payload["n_features_in"])
        h = payload.get("history", {})
        self.history_ = TrainingHistory(
            train_loss=list(h.get("train_loss", [])),
            val_elbo=list(h.get("val_elbo", [])),
            best_epoch=int(h.get("best_epoch", -1)),
            best_val_elbo=float(h.get("best_val_elbo", float("-inf"))),
            seconds=float(h.get("seconds", 0.0)),
        )
        self.n_epochs_ = len(self.history_.train_loss)

    def save(self, path: str | os.PathLike) -> None:
        """Write weights, configuration and format version to ``path`` (a torch file).

        The file loads with ``torch.load(weights_only=True)``: it holds no pickled code.
        """
        check_is_fitted(self, "module_")
        torch.save(self._payload(), Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> DVAE:
        """Read a DVAE written by :meth:`save`.

        Raises
        ------
        ValueError
            If the file is not a DVAE weight file, is corrupted, has another format version, or
            its weights do not match its configuration.
        """
        path = Path(path)
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:  # torch raises several types for a damaged zip/pickle
            raise ValueError(f"{path} is corrupted or not a mixest DVAE file: {exc}") from exc
        return cls._from_payload(payload, str(path))

    @classmethod
    def from_pretrained(cls, name: str) -> DVAE:
        """Load a bundled prior by name (``mixest/pretrained/``, see ``docs/dvae.md``).

        Parameters
        ----------
        name : str
            ``"mot"``: SRNN on image-normalised boxes (x1, y1, x2, y2), y down.
        """
        from mixest.pretrained._registry import weight_path

        return cls.load(weight_path(name))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if "module_" in state:
            buf = io.BytesIO()
            torch.save(self._payload(), buf)
            state["module_"] = buf.getvalue()
            state.pop("device_", None)
            state.pop("history_", None)
        return state

    def __setstate__(self, state: dict) -> None:
        blob = state.pop("module_", None)
        self.__dict__.update(state)
        if blob is not None:
            payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            module = build_module(payload["module_config"])
            module.load_state_dict(_unpack(payload["weights"], payload["layout"]))
            self._attach(module, payload)
