"""The scikit-learn style :class:`DVAE` estimator and its weight file format."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import math
import os
import warnings
from numbers import Integral, Real
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixest.base import SequenceEstimator, check_sequences
from mixest.dvae._config import RECIPES, Network, ScheduledSampling, TrainingNoise
from mixest.dvae._modules import DVAEModule, build_module
from mixest.dvae._training import TrainingHistory, resolve_device, torch_threads, train_dvae

__all__ = ["DVAE", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "mixest-dvae"
#: Version 2 stores the grouped parameters (:class:`Network`, :class:`TrainingNoise`,
#: :class:`ScheduledSampling`, ``recipe``); version 3 may store the network's parameters in
#: float16 (``save(half_precision=True)``); version 1 files (flat parameters) still load.
FORMAT_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)

# The settings dataclass of each grouped parameter (saved as plain dicts).
_GROUPED = {"network": Network, "noise": TrainingNoise, "scheduled_sampling": ScheduledSampling}


def _digest(flat: torch.Tensor, layout: list, half: tuple | None = None) -> str:
    """sha256 of the packed weights and their layout (and of the float16 part ``half``,
    ``(flat, layout)``, when there is one): detects a corrupted file."""
    h = hashlib.sha256(repr(layout).encode())
    h.update(flat.detach().cpu().contiguous().numpy().tobytes())
    if half is not None:
        h.update(repr(half[1]).encode())
        h.update(half[0].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _pack(state: dict[str, torch.Tensor],
          dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, list]:
    """All tensors of a state dict as one flat ``dtype`` tensor + ``[name, shape]`` layout.

    One tensor instead of ~30 keeps the bundled files small (each zip record costs bytes).
    """
    layout = [[k, list(v.shape)] for k, v in state.items()]
    flat = torch.cat([v.detach().cpu().reshape(-1).to(dtype) for v in state.values()])
    return flat, layout


def _half_part(payload: dict) -> tuple[torch.Tensor, list] | None:
    """The float16 part ``(flat, layout)`` of a payload, or None when it has none."""
    if "half_weights" not in payload:
        return None
    return payload["half_weights"], payload["half_layout"]


def _stored_state(payload: dict) -> dict[str, torch.Tensor]:
    """The state dict a payload stores (its float16 part, if any, as stored: loading casts)."""
    state = _unpack(payload["weights"], payload["layout"])
    half = _half_part(payload)
    if half is not None:
        state.update(_unpack(*half))
    return state


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


def _check_n_threads(estimator: object) -> int | None:
    """``n_threads`` checked before torch sees it (``fit`` validates it only inside)."""
    n = getattr(estimator, "n_threads", None)
    if n is not None and (isinstance(n, bool) or not isinstance(n, Integral) or n < 1):
        from sklearn.utils._param_validation import InvalidParameterError

        raise InvalidParameterError(
            f"The 'n_threads' parameter of {type(estimator).__name__} must be a positive "
            f"integer or None, got {n!r}."
        )
    return n


def _in_threads(method):
    """Run an estimator method under its ``n_threads`` torch setting."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with torch_threads(_check_n_threads(self)):
            return method(self, *args, **kwargs)

    return wrapper


def _seed_from(random_state: object) -> int:
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


# ---------------------------------------------------------------------- plain-data parameters
def _to_plain(value: object) -> object:
    """A settings dataclass as a dict of plain values (weight files hold no pickled classes)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = dataclasses.asdict(value)
        for key in ("dense_dims", "latent_dims"):
            if out.get(key) is not None:
                out[key] = list(out[key])
        return out
    return value


def _from_plain(name: str, value: object) -> object:
    """Inverse of :func:`_to_plain` for the parameter ``name``."""
    if name in _GROUPED and isinstance(value, dict):
        value = dict(value)
        for key in ("dense_dims", "latent_dims"):
            if value.get(key) is not None:
                value[key] = tuple(value[key])
        return _GROUPED[name](**value)
    return value


# The flat parameters of format version 1 (mixest before the grouped settings) and their
# defaults then: files written before a parameter existed load with its old default.
_V1_DEFAULTS = {
    "architecture": "srnn", "likelihood": "gaussian", "z_dim": 4, "rnn_dim": 8,
    "dense_dims": (16, 8), "encoder_rnn": True, "residual_order": 2, "velocity_input": None,
    "gated_extrapolation": False, "gate_init": 0.0, "noise_level_input": False,
    "predictive_weight": 0.0, "predictive_loss": "squared", "min_std": "auto",
    "input_noise": 0.0, "noise_targets": True, "jittered_scales": True,
    "input_noise_relative": False, "input_noise_random": False, "input_noise_clean": 0.0,
    "input_noise_min": 0.0, "n_epochs": 500, "batch_size": 256, "learning_rate": 1e-3,
    "final_learning_rate": None, "beta": 1.0, "kl_warmup": 20, "ss_start": 20, "ss_end": 100,
    "ss_max": 0.0, "validation_fraction": 0.1, "patience": 50, "grad_clip": 5.0,
    "device": "auto", "n_threads": 1, "random_state": None, "verbose": False,
}
_KEPT = ("likelihood", "n_epochs", "batch_size", "learning_rate", "final_learning_rate", "beta",
         "kl_warmup", "validation_fraction", "patience", "grad_clip", "device", "n_threads",
         "random_state", "verbose")


def _params_from_v1(old: dict, module_config: dict | None) -> tuple[dict, list[str]]:
    """Today's parameters for the flat parameters of a version-1 file or pickle.

    Returns the parameters (``recipe="mot"`` or ``"plain"`` with the recipe's settings where
    they match it exactly, else the settings spelled out) and the training options that no
    longer exist (empty when the translation trains exactly as the old parameters did).
    """
    p = {**_V1_DEFAULTS, **old}
    cfg = module_config or {}  # the built module is the truth for the network's shape
    likelihood = p["likelihood"]
    shape = {k: cfg.get(k, p[k]) for k in ("architecture", "z_dim", "rnn_dim", "dense_dims",
                                            "encoder_rnn", "residual_order", "velocity_input",
                                            "gated_extrapolation")}
    gated = bool(shape["gated_extrapolation"])
    network = Network(
        architecture=shape["architecture"], z_dim=int(shape["z_dim"]),
        rnn_dim=int(shape["rnn_dim"]), dense_dims=tuple(int(d) for d in shape["dense_dims"]),
        encoder_rnn=bool(shape["encoder_rnn"]),
        # an Itakura-Saito module always ran with order 0, whatever was asked
        residual_order=int(shape["residual_order"]) if likelihood == "gaussian" else 0,
        velocity_input=shape["velocity_input"], gated_extrapolation=gated,
        gate_init=float(p["gate_init"]) if gated else None,  # (ignored without the gates)
        min_std=p["min_std"],
    )
    lost: list[str] = []
    noise = None
    if p["input_noise"] > 0:
        if p["noise_targets"]:
            lost.append("noise_targets=True")
        elif p["jittered_scales"]:
            lost.append("jittered_scales=True")
        if p["input_noise_random"] and p["input_noise_min"] > 0:
            lost.append(f"input_noise_min={p['input_noise_min']!r}")
        random_level = bool(p["input_noise_random"])
        noise = TrainingNoise(
            std=float(p["input_noise"]), relative=bool(p["input_noise_relative"]),
            random_level=random_level,
            # (without random levels the old jitter ignored the clean share)
            clean_fraction=float(p["input_noise_clean"]) if random_level else 0.0,
            level_input=bool(cfg.get("noise_level_input", p["noise_level_input"])),
        )
    weight = float(p["predictive_weight"])
    if weight > 0 and noise is not None and noise.clean_fraction == 0:
        weight = 0.0  # the term was computed on exact sequences, and there were none
    if weight > 0 and p["predictive_loss"] != "absolute":
        lost.append(f"predictive_loss={p['predictive_loss']!r}")
    sampling = None
    if p["ss_max"] > 0:
        start = int(p["ss_start"])
        sampling = ScheduledSampling(float(p["ss_max"]), start, max(start, int(p["ss_end"])))
    params = {k: p[k] for k in _KEPT}
    params.update(recipe="plain", network=network, noise=noise, predictive_weight=weight,
                  scheduled_sampling=sampling)
    for name in ("mot", "plain"):  # a file trained by a named recipe says so
        preset = RECIPES[name]
        try:
            same = (preset["network"].resolve(likelihood) == network.resolve(likelihood)
                    and preset["noise"] == noise and preset["predictive_weight"] == weight)
        except ValueError:
            same = False
        if same:
            params.update(recipe=name, network="recipe", noise="recipe",
                          predictive_weight="recipe")
            break
    return params, lost


def _warn_lost(source: str, lost: list[str]) -> None:
    if lost:
        warnings.warn(
            f"{source} was trained with options mixest no longer offers ({', '.join(lost)}; "
            "see docs/dvae.md). It loads and predicts exactly as before, but fit() on it would "
            "train the nearest current recipe.",
            UserWarning,
            stacklevel=2,
        )


def _build_network(network: Network, x_dim: int, likelihood: str,
                   noise_level_input: bool = False) -> DVAEModule:
    """The torch module of a resolved :class:`Network` (untrained)."""
    return build_module({
        "x_dim": x_dim, "architecture": network.architecture, "z_dim": network.z_dim,
        "rnn_dim": network.rnn_dim, "dense_dims": network.dense_dims, "likelihood": likelihood,
        "encoder_rnn": network.encoder_rnn, "residual_order": network.residual_order,
        "velocity_input": network.velocity_input,
        "gated_extrapolation": network.gated_extrapolation,
        "latent_dims": network.latent_dims, "encoder_input": network.encoder_input,
        "log_input": network.log_input, "noise_level_input": noise_level_input,
    })


class DVAE(SequenceEstimator):
    """Dynamical variational autoencoder (SRNN or VRNN) for single-source sequences.

    The SRNN of the MixDVAE paper:

    .. math::

        h_t = \\mathrm{LSTM}(g(x_{t-1}), h_{t-1}),\\quad
        p(z_t | h_t, z_{t-1}) = \\mathcal N(\\mu_p, \\sigma_p^2),\\quad
        p(x_t | h_t, z_t) = \\mathcal N(\\mu_\\theta, v_\\theta)

    trained by maximising the evidence lower bound

    .. math::

        \\frac1T \\sum_t \\mathbb E_q[\\log p(x_t | h_t, z_t)]
        - \\beta\\, \\mathrm{KL}(q(z_t | z_{t-1}, h_t, x_{t:T}) \\| p(z_t | h_t, z_{t-1})).

    The defaults train the bundled box prior (``DVAE.from_pretrained("mot")``): with
    ``random_state=0`` and ``device="cpu"``, ``DVAE().fit(make_trajectories(20_000, 60,
    random_state=0))`` is its recipe. ``docs/dvae.md`` explains every choice and records the
    experiments behind it.

    Parameters
    ----------
    likelihood : {"gaussian", "itakura_saito"}, default="gaussian"
        Gaussian for trajectories; Itakura-Saito for power spectra (zero-mean complex Gaussian).
    recipe : {"auto", "mot", "plain"}, default="auto"
        Named preset (:data:`~mixest.dvae.RECIPES`) of the three settings below that are left at
        ``"recipe"``. ``"mot"``: the bundled box prior's (a gated first-order SRNN, denoising
        training told the noise level, the predictive term; Gaussian box data
        ``(x1, y1, x2, y2)``, D = 4). ``"plain"``: the plain ELBO with the default
        :class:`~mixest.dvae.Network`, no training noise, no predictive term (any data).
        ``"auto"``: ``"mot"`` for the Gaussian likelihood, ``"plain"`` for Itakura-Saito.
    network : Network or "recipe", default="recipe"
        Architecture, sizes, residual decoder and variance floor
        (:class:`~mixest.dvae.Network`).
    noise : TrainingNoise, None or "recipe", default="recipe"
        Denoising training (:class:`~mixest.dvae.TrainingNoise`): the frames the network reads
        are jittered, the targets stay clean. None: trained on the data as given.
    predictive_weight : float or "recipe", default="recipe"
        Gaussian only. Subtract this multiple of an auxiliary term from the training objective:
        the mean absolute error, in units of the first differences' scale, of the causal
        one-step prediction (the decoder mean at the prior's *mean* latent, what
        :meth:`predict_next` and a tracker use) over the training sequences read exactly (all
        without ``noise``; with it, its ``clean_fraction``, which must then be > 0). The ELBO
        trains that prediction only through its KL term: the posterior, which sees
        :math:`x_t`, absorbs what the prior fails to predict. 0: the plain ELBO. Early
        stopping reads the same objective on the validation sequences.
    n_epochs : int, default=100
    batch_size : int, default=256
    learning_rate : float, default=3e-3
        Adam's step size (of the first epoch with ``final_learning_rate``).
    final_learning_rate : float or None, default=3e-5
        Anneal the step size on a half cosine from ``learning_rate`` at the first epoch to this
        value at epoch ``n_epochs - 1`` (``history_.learning_rate`` records it): small steps at
        the end let the weights settle. None: constant.
    beta : float, default=1.0
        Weight of the KL term.
    kl_warmup : int, default=5
        Epochs over which the KL weight rises linearly to 1.
    scheduled_sampling : ScheduledSampling or None, default=None
        Feed the model's own predictions into the recurrence in training
        (:class:`~mixest.dvae.ScheduledSampling`); None: teacher forcing throughout.
    validation_fraction : float, default=0.1
        Share of the sequences held out to select the best epoch (0: none, select on the
        training loss).
    patience : int or None, default=None
        Stop after this many epochs without a better validation objective (training loss
        without a validation split). None: train all epochs, keep the best.
    grad_clip : float or None, default=5.0
        Maximum gradient norm.
    device : {"cpu", "cuda", "auto"}, default="auto"
        Torch device; "auto" is CUDA when torch sees one. "cuda" without a CUDA device is
        refused by :meth:`fit` with a ``ValueError``.
    n_threads : int or None, default=1
        torch CPU threads while this estimator computes (restored afterwards); None leaves
        torch's setting alone. These models are too small to gain from more threads.
    random_state : int, RandomState or None, default=None
        Seeds torch and NumPy: a fixed value gives identical weights on CPU.
    verbose : bool, default=False
        Show a progress bar.

    Attributes
    ----------
    module_ : DVAEModule
        The trained PyTorch module (on ``device_``).
    network_ : Network
        The network trained, every field resolved (the recipe's unless given).
    noise_ : TrainingNoise or None
        The training noise used.
    predictive_weight_ : float
        The predictive term's weight used.
    device_ : torch.device
    history_ : TrainingHistory
        Training loss and validation objective per epoch, best epoch, wall time.
    n_features_in_ : int
        Frame size ``D``.
    n_epochs_ : int
        Epochs actually run.

    Examples
    --------
    >>> from mixest.datasets import make_trajectories
    >>> from mixest.dvae import DVAE, Network, TrainingNoise
    >>> X = make_trajectories(32, 15, random_state=0)
    >>> est = DVAE(network=Network(rnn_dim=4, dense_dims=(8,)),  # the mot recipe, smaller
    ...            n_epochs=2, device="cpu", random_state=0).fit(X)
    >>> est.noise_ == TrainingNoise(0.1, relative=True, random_level=True,
    ...                             clean_fraction=0.3, level_input=True)
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        "likelihood": [StrOptions({"gaussian", "itakura_saito"})],
        "recipe": [StrOptions({"auto", *RECIPES})],
        "network": [Network, StrOptions({"recipe"})],
        "noise": [TrainingNoise, None, StrOptions({"recipe"})],
        "predictive_weight": [Interval(Real, 0, None, closed="left"), StrOptions({"recipe"})],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "final_learning_rate": [Interval(Real, 0, None, closed="left"), None],
        "beta": [Interval(Real, 0, None, closed="left")],
        "kl_warmup": [Interval(Integral, 0, None, closed="left")],
        "scheduled_sampling": [ScheduledSampling, None],
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
        "recipe": "plain",
        "network": Network(z_dim=2, rnn_dim=4, dense_dims=(4,), residual_order=2),
        "n_epochs": 2,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "final_learning_rate": None,
        "kl_warmup": 1,
        "scheduled_sampling": ScheduledSampling(0.5, start=1, end=2),
        "validation_fraction": 0.0,
        "device": "cpu",
        "random_state": 0,
    }

    def __init__(
        self,
        *,
        likelihood: str = "gaussian",
        recipe: str = "auto",
        network: Network | str = "recipe",
        noise: TrainingNoise | None | str = "recipe",
        predictive_weight: float | str = "recipe",
        n_epochs: int = 100,
        batch_size: int = 256,
        learning_rate: float = 3e-3,
        final_learning_rate: float | None = 3e-5,
        beta: float = 1.0,
        kl_warmup: int = 5,
        scheduled_sampling: ScheduledSampling | None = None,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        grad_clip: float | None = 5.0,
        device: str = "auto",
        n_threads: int | None = 1,
        random_state: object = None,
        verbose: bool = False,
    ):
        self.likelihood = likelihood
        self.recipe = recipe
        self.network = network
        self.noise = noise
        self.predictive_weight = predictive_weight
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.final_learning_rate = final_learning_rate
        self.beta = beta
        self.kl_warmup = kl_warmup
        self.scheduled_sampling = scheduled_sampling
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

    def _settings(self, n_features: int) -> tuple[Network, TrainingNoise | None, float]:
        """The network (resolved), training noise and predictive weight to train, checked."""
        likelihood = self.likelihood
        recipe = self.recipe
        if recipe == "auto":
            recipe = "mot" if likelihood == "gaussian" else "plain"
        elif recipe == "mot" and likelihood != "gaussian":
            raise ValueError("recipe='mot' is a Gaussian box prior's; likelihood="
                             f"{likelihood!r} needs recipe='plain' (or 'auto').")
        preset = RECIPES[recipe]
        network = preset["network"] if isinstance(self.network, str) else self.network
        noise = preset["noise"] if isinstance(self.noise, str) else self.noise
        weight = (preset["predictive_weight"] if isinstance(self.predictive_weight, str)
                  else float(self.predictive_weight))
        network = network.resolve(likelihood)
        if noise is not None:
            try:
                noise.check(likelihood, n_features)
            except ValueError as exc:
                if not isinstance(self.noise, str):
                    raise
                label = f"recipe={self.recipe!r}"
                if self.recipe == "auto":
                    label += f" (the {recipe!r} recipe for {likelihood} data)"
                raise ValueError(
                    f"{label} trains with {noise!r}: {exc} Pass recipe='plain' (no training "
                    "noise) or noise=TrainingNoise(...) for these data."
                ) from exc
        if weight > 0:
            if likelihood != "gaussian":
                raise ValueError(f"predictive_weight={weight!r} needs the Gaussian likelihood "
                                 "(the term is an error of the predicted mean).")
            if noise is not None and noise.clean_fraction == 0:
                raise ValueError(
                    f"predictive_weight={weight!r} is computed on the training sequences read "
                    "exactly, and with this noise there are none: give noise.clean_fraction > 0, "
                    "or predictive_weight=0."
                )
        return network, noise, weight

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
        if self.scheduled_sampling is not None:
            self.scheduled_sampling.check()
        X = self._check_X(X, reset=True)
        network, noise, weight = self._settings(X.shape[-1])
        rng = check_random_state(self.random_state)
        try:
            self.device_ = resolve_device(self.device)
        except RuntimeError as exc:  # refused here, not as a torch error at predict time
            raise ValueError(
                f"device={self.device!r} but torch sees no CUDA device; use device='cpu' or "
                "'auto'."
            ) from exc
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
            module = _build_network(network, X.shape[-1], self.likelihood,
                                    noise is not None and noise.level_input).to(self.device_)
            if network.gated_extrapolation and network.gate_init != 0:
                with torch.no_grad():  # decoder outputs: mean, log-variance, g_v, g_a
                    gates = module.decoder_net[-1].bias.view(4, -1)
                    gates[2] += network.gate_init
                    gates[3] -= network.gate_init
            t_tr = self._tensor(X_tr)
            if network.min_std == "auto":
                min_std = 1e-3 * t_tr.reshape(-1, X.shape[-1]).std(0)
                if t_tr.reshape(-1, X.shape[-1]).shape[0] < 2:
                    min_std = torch.zeros(X.shape[-1], device=self.device_)
            else:
                min_std = float(network.min_std)
            # Standardised by the clean data, also with training noise: the residual is output
            # in units of the difference scales, and jittered scales (several times the clean
            # motion) cap how exactly the network can predict from exact frames.
            module.set_normalization(t_tr, min_std)
            self.history_: TrainingHistory = train_dvae(
                module,
                t_tr,
                None if X_val is None else self._tensor(X_val),
                n_epochs=self.n_epochs,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                final_learning_rate=(None if self.final_learning_rate is None
                                     else float(self.final_learning_rate)),
                beta=self.beta,
                kl_warmup=self.kl_warmup,
                scheduled_sampling=self.scheduled_sampling,
                noise=noise,
                predictive_weight=weight,
                patience=self.patience,
                grad_clip=self.grad_clip,
                rng=rng,
                verbose=bool(self.verbose),
            )
        self.module_: DVAEModule = module
        self.network_, self.noise_, self.predictive_weight_ = network, noise, weight
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
            Noise level of ``X`` (models trained with ``TrainingNoise(level_input=True)``
            only; 0 for exact frames).

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

        ``level``: noise level of ``X``, as in :meth:`score`.
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
            Noise level of ``X`` as a fraction of the largest training jitter (models trained
            with ``TrainingNoise(level_input=True)`` only): 0 for exact frames, 1 (the default)
            for frames jittered by ``noise.std``.

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
            have (models trained with ``TrainingNoise(level_input=True)`` only).

        Returns
        -------
        X : ndarray of shape (n_samples, T, D)
        """
        check_is_fitted(self, "module_")
        level = self._check_level(level)
        for name, v in (("n_samples", n_samples), ("T", T)):
            if isinstance(v, bool) or not isinstance(v, Integral):
                raise TypeError(f"{name} must be a positive integer, got {v!r}.")
            if v < 1:
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
    def _payload(self, half_precision: bool = False) -> dict:
        state = self.module_.state_dict()
        # the normalisation buffers (tiny variance floors among them) always stay float32
        in_half = {name for name, _ in self.module_.named_parameters()} if half_precision else ()
        flat, layout = _pack({k: v for k, v in state.items() if k not in in_half})
        half = _pack({k: v for k, v in state.items() if k in in_half},
                     torch.float16) if half_precision else None
        params = {k: _to_plain(v) for k, v in self.get_params(deep=False).items()}
        if not isinstance(params["random_state"], (Integral, type(None))):
            params["random_state"] = None  # a RandomState object is not plain data
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "params": params,
            "settings": {
                "network": _to_plain(self.network_),
                "noise": _to_plain(self.noise_),
                "predictive_weight": float(self.predictive_weight_),
            },
            "module_config": self.module_.config(),
            "weights": flat,
            "layout": layout,
            **({} if half is None else {"half_weights": half[0], "half_layout": half[1]}),
            "sha256": _digest(flat, layout, half),
            "n_features_in": int(self.n_features_in_),
            "history": {
                "train_loss": list(self.history_.train_loss),
                "val_elbo": list(self.history_.val_elbo),
                "best_epoch": int(self.history_.best_epoch),
                "best_val_elbo": float(self.history_.best_val_elbo),
                "seconds": float(self.history_.seconds),
            },
        }

    def _fitted_settings(self, payload: dict) -> dict:
        """``network_``, ``noise_`` and ``predictive_weight_`` of a payload of any version."""
        if payload["format_version"] == 1:  # the parameters were translated: resolve them
            network, noise, weight = self._settings(int(payload["n_features_in"]))
            return {"network": network, "noise": noise, "predictive_weight": weight}
        s = payload["settings"]
        return {"network": _from_plain("network", s["network"]),
                "noise": _from_plain("noise", s["noise"]),
                "predictive_weight": float(s["predictive_weight"])}

    @classmethod
    def _from_payload(cls, payload: object, source: str) -> DVAE:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
            raise ValueError(f"{source} is not a mixest DVAE weight file.")
        version = payload.get("format_version")
        if version not in _READABLE_VERSIONS:
            raise ValueError(
                f"{source} has DVAE format version {version!r}; this mixest reads versions "
                f"{', '.join(map(str, _READABLE_VERSIONS))}."
            )
        try:
            if (_digest(payload["weights"], payload["layout"], _half_part(payload))
                    != payload["sha256"]):
                raise ValueError(f"{source} is corrupted: its weights fail the sha256 check.")
            state = _stored_state(payload)
            if version == 1:
                params, lost = _params_from_v1(payload["params"], payload["module_config"])
                _warn_lost(source, lost)
            else:
                params = {k: _from_plain(k, v) for k, v in payload["params"].items()}
            est = cls(**params)
            settings = est._fitted_settings(payload)
            module = build_module(payload["module_config"])
            module.load_state_dict(state, strict=True)
        except (KeyError, TypeError, RuntimeError, AttributeError) as exc:
            raise ValueError(f"{source} does not match its DVAE configuration: {exc}") from exc
        est._attach(module, payload, settings)
        return est

    def _attach(self, module: DVAEModule, payload: dict, settings: dict) -> None:
        try:
            self.device_ = resolve_device(self.device)
        except RuntimeError:  # saved on a GPU machine, loaded without one
            self.device_ = torch.device("cpu")
        self.module_ = module.to(self.device_).eval()
        self.network_ = settings["network"]
        self.noise_ = settings["noise"]
        self.predictive_weight_ = settings["predictive_weight"]
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

    def save(self, path: str | os.PathLike, *, half_precision: bool = False) -> None:
        """Write weights, configuration and format version to ``path`` (a torch file).

        The file loads with ``torch.load(weights_only=True)``: it holds no pickled code (the
        grouped settings are stored as plain dicts).

        Parameters
        ----------
        path : str or path-like
        half_precision : bool, default=False
            Store the network's parameters in float16: half the file, and :meth:`load` casts
            them back to float32 (the outputs then differ from the saved model's by float16
            rounding, about 1e-3 relative per weight). The normalisation buffers stay float32.
        """
        check_is_fitted(self, "module_")
        if not isinstance(half_precision, (bool, np.bool_)):
            raise TypeError(f"half_precision must be a bool, got {half_precision!r}.")
        torch.save(self._payload(bool(half_precision)), Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike) -> DVAE:
        """Read a DVAE written by :meth:`save` (this or an earlier format version).

        Files of format version 1 (flat parameters) are translated to today's parameters;
        their weights load unchanged. A warning names the training options of such a file that
        mixest no longer offers.

        Raises
        ------
        ValueError
            If the file is not a DVAE weight file, is corrupted, has an unknown format version,
            or its weights do not match its configuration.
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
            ``"mot"``: SRNN on image-normalised boxes (x1, y1, x2, y2), y down, trained by
            ``DVAE(recipe="mot", device="cpu", random_state=0)``.
        """
        from mixest.pretrained._registry import weight_path

        return cls.load(weight_path(name))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, config: str | os.PathLike | dict) -> DVAE:
        """Load a spectral SRNN checkpoint released by the MixDVAE authors.

        The file is read as data (``torch.load(weights_only=True)``) and its tensors are mapped
        onto mixest's own SRNN with ``Network(encoder_input="hx", log_input=False)``, the
        layout and input convention of those priors (see ``docs/separation.md``); nothing of
        their code is used.

        Parameters
        ----------
        path : str or path-like
            The ``state_dict`` file, e.g. ``model_scass_wsj.pt``.
        config : str, path-like or dict
            Its ``.ini`` file (``[Network]`` section) or the same keys as a dict.

        Returns
        -------
        DVAE
            Fitted, ``likelihood="itakura_saito"``, on power spectra of ``x_dim`` bins.

        Raises
        ------
        ValueError
            If the file is not a state dict of such an SRNN or does not match the config.
        """
        from mixest.dvae._checkpoint import convert_state_dict, read_network_config

        options = read_network_config(config)
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise ValueError(f"{path} is not a readable PyTorch file: {exc}") from exc
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                                  for v in state.values()):
            raise ValueError(f"{path} is not a state_dict (a dict of tensors).")
        network = Network(z_dim=options["z_dim"], rnn_dim=options["rnn_dim"],
                          dense_dims=options["dense_dims"], latent_dims=options["latent_dims"],
                          encoder_input="hx", log_input=False, min_std=0.0)
        est = cls(likelihood="itakura_saito", recipe="plain", network=network, noise=None,
                  device="cpu")
        network = network.resolve("itakura_saito")
        module = _build_network(network, options["x_dim"], "itakura_saito")
        try:
            module.load_state_dict(convert_state_dict(state, options, module.state_dict()))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        payload = {"n_features_in": options["x_dim"]}
        est._attach(module, payload, {"network": network, "noise": None,
                                      "predictive_weight": 0.0})
        return est

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if "module_" in state:
            buf = io.BytesIO()
            torch.save(self._payload(), buf)
            state["module_"] = buf.getvalue()
            for key in ("device_", "history_", "network_", "noise_", "predictive_weight_"):
                state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        blob = state.pop("module_", None)
        payload = None
        if blob is not None:
            payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        legacy = {k: state.pop(k) for k in list(state) if k in _V1_DEFAULTS
                  and k not in self._parameter_constraints}
        if legacy:  # pickled by mixest before the grouped settings
            old = {k: state.pop(k) for k in list(state) if k in _V1_DEFAULTS}
            params, lost = _params_from_v1({**old, **legacy},
                                           None if payload is None else payload["module_config"])
            _warn_lost("this pickled DVAE", lost)
            state.update(params)
        self.__dict__.update(state)
        if payload is not None:
            module = build_module(payload["module_config"])
            module.load_state_dict(_stored_state(payload))
            self._attach(module, payload, self._fitted_settings(payload))
