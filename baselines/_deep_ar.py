"""Deep autoregressive tracker: a deterministic LSTM as the source dynamics of the VEM.

The Deep AR baseline of MixDVAE (``docs/baselines.md``) keeps the observation and assignment
model and replaces the DVAE by a deterministic recurrent network that predicts the next frame's
mean and (diagonal) variance from the past, trained by the Gaussian negative log-likelihood on the
same single-source trajectories as the DVAE prior. Without a latent variable there is no E-Z step.

The network works in units of the box: its input at frame ``t`` is the last displacement
``(x_{t-1} - x_{t-2}) / s_{t-1}`` and the log box size, where ``s = (w, h, w, h)``, and it
outputs ``mu_t = x_{t-1} + s_{t-1} d_t`` and ``v_t = s_{t-1}^2 exp(l_t)``, so the same weights
serve small and large, slow and fast boxes anywhere in the image. torch is imported only inside
the functions that need it: ``import mixest.baselines`` stays light.
"""

from __future__ import annotations

import copy
import math
import time
from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from mixest.base import check_sequences
from mixest.mixture._dynamics import Dynamics
from mixest.tracking._base import VEMTracker

__all__ = ["DeepARDynamics", "DeepARTracker", "fit_network", "load_deep_ar", "train_deep_ar"]

#: Names of the bundled Deep AR weights (files listed in ``mixest.pretrained._registry``),
#: trained by ``benchmarks/train_priors.py --prior mot-ar``.
PRETRAINED_AR = ("mot-ar",)
_SIZE_FLOOR = 1e-3  # normalised units: keeps degenerate boxes from dividing by zero
_VAR_FLOOR = 1e-4  # in squared box sizes: the network may not claim sub-pixel certainty


def _features(x: Any, x_prev: Any) -> tuple[Any, Any]:
    """Network input and box scale from the last two boxes (torch tensors ``(..., 4)``)."""
    import torch

    wh = torch.clamp(x[..., 2:] - x[..., :2], min=_SIZE_FLOOR)
    scale = torch.cat([wh, wh], dim=-1)
    return torch.cat([(x - x_prev) / scale, torch.log(wh)], dim=-1), scale


def _build_module(hidden_size: int, n_dims: int = 4) -> Any:
    import torch
    from torch import nn

    class DeepARModule(nn.Module):
        """Dense -> LSTM -> (mean displacement, log-variance) in box units."""

        def __init__(self) -> None:
            super().__init__()
            self.hidden_size = hidden_size
            self.embed = nn.Sequential(nn.Linear(n_dims + 2, hidden_size), nn.Tanh())
            # nn.LSTM runs the time loop in C++ for training; inference steps one frame at a time
            self.lstm = nn.LSTM(hidden_size, hidden_size, batch_first=True)
            self.head = nn.Linear(hidden_size, 2 * n_dims)

        def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
            z = torch.zeros(1, batch, self.hidden_size, dtype=self.head.weight.dtype)
            return z, z.clone()

        def _output(self, x, scale, h):
            d, log_v = self.head(h).chunk(2, dim=-1)
            var = scale**2 * (torch.exp(log_v) + _VAR_FLOOR)
            return x + scale * d, var

        def step(self, x, x_prev, state):
            """One step: boxes ``x_{t-1}``, ``x_{t-2}`` (B, 4) -> mean and variance of ``x_t``."""
            feat, scale = _features(x, x_prev)
            h, state = self.lstm(self.embed(feat)[:, None], state)
            mu, var = self._output(x, scale, h[:, 0])
            return mu, var, state

        def forward(self, X):
            """Teacher-forced one-step predictions of ``X[:, 1:]`` from ``X[:, :-1]``."""
            x = X[:, :-1]
            x_prev = torch.cat([X[:, :1], X[:, :-2]], dim=1)  # x_{-1} := x_0 (no displacement)
            feat, scale = _features(x, x_prev)
            h, _ = self.lstm(self.embed(feat))
            return self._output(x, scale, h)

    return DeepARModule()


def _nll(module: Any, X: Any) -> Any:
    """Mean Gaussian negative log-likelihood per frame and coordinate of ``X[:, 1:]``."""
    import torch

    mu, var = module(X)
    target = X[:, 1:]
    return 0.5 * (torch.log(2 * math.pi * var) + (target - mu) ** 2 / var).mean()


def train_deep_ar(
    X: np.ndarray,
    *,
    hidden_size: int = 32,
    max_epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    patience: int = 10,
    validation_fraction: float = 0.1,
    input_noise: float = 0.08,
    random_state: int | np.random.RandomState | None = None,
    verbose: bool = False,
) -> tuple[dict, dict]:
    """Train the Deep AR network on single-source box trajectories.

    Parameters
    ----------
    X : ndarray of shape (n_sequences, T, 4)
        Image-normalised ``xyxy`` trajectories without NaN, ``T >= 3``.
    hidden_size : int, default=32
        Width of the dense layer and of the LSTM.
    max_epochs : int, default=100
        Maximum number of passes over the training sequences.
    batch_size : int, default=256
    learning_rate : float, default=1e-3
        Adam step size.
    patience : int, default=10
        Stop after this many epochs without a better validation NLL.
    validation_fraction : float, default=0.1
        Share of the sequences held out for early stopping (at least one sequence).
    input_noise : float, default=0.08
        Standard deviation, in box sizes, of the noise added to the *inputs* (not the targets)
        during training: in the VEM the network is fed posterior means, not clean boxes, and a
        network trained on clean inputs is overconfident about them (see docs/baselines.md).
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation, the split, the batches and the noise.
    verbose : bool, default=False
        Show a progress bar over the epochs with the latest losses.

    Returns
    -------
    weights : dict
        ``{"hidden_size": int, "state_dict": {name: ndarray}}``, the best validation weights.
    history : dict
        ``train_nll``, ``val_nll`` (per epoch), ``best_epoch``, ``best_val_nll``, ``seconds``.
    """
    def train_loss(module, xb, gen):
        return _noisy_nll(module, xb, input_noise, gen)

    weights, history = fit_network(lambda: _build_module(hidden_size), train_loss, _nll, X,
                                   max_epochs=max_epochs, batch_size=batch_size,
                                   learning_rate=learning_rate, patience=patience,
                                   validation_fraction=validation_fraction,
                                   random_state=random_state, verbose=verbose, desc="Deep AR")
    return {"hidden_size": hidden_size, "state_dict": weights}, history


def fit_network(build, train_loss, val_loss, X: np.ndarray, *, max_epochs: int, batch_size: int,
                learning_rate: float, patience: int, validation_fraction: float,
                random_state: object, verbose: bool, desc: str) -> tuple[dict, dict]:
    """The training loop of the Deep AR networks (boxes and spectra): Adam with gradient
    clipping, early stopping on a held-out split, one torch thread.

    Parameters
    ----------
    build : callable
        ``build()`` returns the untrained module (called under the seeded torch RNG).
    train_loss, val_loss : callable
        ``train_loss(module, batch, generator)`` and ``val_loss(module, X)``: mean losses.
    X : ndarray of shape (n_sequences, T, D)
    max_epochs, batch_size, learning_rate, patience, validation_fraction, random_state, \
verbose
        As in :func:`train_deep_ar`.
    desc : str
        Label of the progress bar.

    Returns
    -------
    state_dict : dict of ndarray
        The best validation weights.
    history : dict
        ``train_nll``, ``val_nll`` (per epoch), ``best_epoch``, ``best_val_nll``, ``seconds``.
    """
    import torch
    from tqdm.auto import tqdm

    rng = check_random_state(random_state)
    seed = int(rng.randint(2**31 - 1))
    n = X.shape[0]
    n_val = max(1, int(round(validation_fraction * n))) if n > 1 else 0
    order = rng.permutation(n)
    X_val = torch.as_tensor(X[order[:n_val]], dtype=torch.float32)
    X_tr = torch.as_tensor(X[order[n_val:]] if n_val < n else X, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    # The networks are small: one thread is as fast as several, and far faster on a busy machine.
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            module = build()
        opt = torch.optim.Adam(module.parameters(), lr=learning_rate)
        history: dict = {"train_nll": [], "val_nll": [], "best_epoch": -1,
                         "best_val_nll": math.inf}
        best = copy.deepcopy(module.state_dict())
        tic = time.perf_counter()
        bar = tqdm(range(max_epochs), disable=not verbose, desc=desc, unit="epoch")
        for epoch in bar:
            module.train()
            perm = torch.randperm(X_tr.shape[0], generator=gen)
            total = 0.0
            for i in range(0, X_tr.shape[0], batch_size):
                xb = X_tr[perm[i : i + batch_size]]
                loss = train_loss(module, xb, gen)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
                opt.step()
                total += float(loss.detach()) * xb.shape[0]
            history["train_nll"].append(total / X_tr.shape[0])
            module.eval()
            with torch.no_grad():
                val = float(val_loss(module, X_val if n_val else X_tr))
            history["val_nll"].append(val)
            if val < history["best_val_nll"]:
                history["best_val_nll"], history["best_epoch"] = val, epoch
                best = copy.deepcopy(module.state_dict())  # a real copy, not a view
            bar.set_postfix(train_nll=f"{history['train_nll'][-1]:.4f}", val_nll=f"{val:.4f}")
            if epoch - history["best_epoch"] >= patience:
                break
        bar.close()
    finally:
        torch.set_num_threads(n_threads)
    history["seconds"] = time.perf_counter() - tic
    return {k: v.detach().cpu().numpy().copy() for k, v in best.items()}, history


def _noisy_nll(module: Any, X: Any, input_noise: float, gen: Any) -> Any:
    """Training NLL with the inputs (not the targets) jittered by ``input_noise`` box sizes."""
    import torch

    if input_noise <= 0:
        return _nll(module, X)
    wh = torch.clamp(X[..., 2:] - X[..., :2], min=_SIZE_FLOOR)
    scale = torch.cat([wh, wh], dim=-1)
    noisy = X + input_noise * scale * torch.randn(X.shape, generator=gen)
    mu, var = module(noisy)
    target = X[:, 1:]
    return 0.5 * (torch.log(2 * math.pi * var) + (target - mu) ** 2 / var).mean()


def _module_from_weights(weights: dict) -> Any:
    import torch

    module = _build_module(int(weights["hidden_size"]))
    module.load_state_dict({k: torch.as_tensor(v) for k, v in weights["state_dict"].items()})
    module.eval()
    return module


def load_deep_ar(name: str = "mot-ar") -> dict:
    """Load bundled Deep AR weights by name (see ``PRETRAINED_AR``).

    Parameters
    ----------
    name : str, default="mot-ar"

    Returns
    -------
    weights : dict
        As returned by :func:`train_deep_ar`, plus ``"meta"`` (training summary).
    """
    import torch

    if name not in PRETRAINED_AR:
        raise ValueError(f"unknown pretrained Deep AR model {name!r}; available: "
                         f"{sorted(PRETRAINED_AR)}.")
    from mixest.pretrained._registry import weight_path

    path = weight_path(name)
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return {
        "hidden_size": int(payload["hidden_size"]),
        "state_dict": {k: v.numpy() for k, v in payload["state_dict"].items()},
        "meta": dict(payload.get("meta", {})),
    }


class DeepARDynamics(Dynamics):
    """The Deep AR network as a source model of the VEM engine.

    At frame ``t`` the network, fed with the posterior means ``m_{t-1}`` and ``m_{t-2}``, gives
    the prior ``N(mu_t, diag v_t)``; the engine's default Gaussian product makes the update. The
    first frame's prior is centred on the engine's current guess with a standard deviation of
    ``initial_position_std`` box sizes.

    Parameters
    ----------
    module : torch.nn.Module
        A trained Deep AR module.
    initial_position_std : float, default=0.5
    """

    def __init__(self, module: Any, initial_position_std: float = 0.5):
        self.module = module
        self.initial_position_std = initial_position_std

    def begin(self, m0: np.ndarray) -> dict:
        import torch

        x = torch.as_tensor(m0, dtype=torch.float32)
        wh = np.maximum(m0[:, 2:] - m0[:, :2], _SIZE_FLOOR)
        var0 = (self.initial_position_std * np.concatenate([wh, wh], -1)) ** 2
        return {"m0": m0, "var0": var0, "x": x, "x_prev": x, "h": self.module.initial_state(len(x))}

    def predict(self, state: dict, t: int) -> tuple[np.ndarray, np.ndarray, dict]:
        import torch

        if t == 0:
            return state["m0"], state["var0"], state
        with torch.no_grad():
            mu, var, h = self.module.step(state["x"], state["x_prev"], state["h"])
        state = {**state, "h": h}
        return mu.double().numpy(), var.double().numpy(), state

    def observe(self, state: dict, t: int, m: np.ndarray, sigma: np.ndarray) -> dict:
        import torch

        x = torch.as_tensor(m, dtype=torch.float32)
        return {**state, "x_prev": state["x"] if t > 0 else x, "x": x}


class DeepARTracker(VEMTracker):
    """MixDVAE's VEM with a deterministic LSTM (Deep AR) as the source dynamics.

    ``fit`` trains the network on single-source trajectories: the tracks in ``y`` when given,
    else ``n_train_sequences`` synthetic trajectories of the DVAE prior's generator
    (:func:`mixest.datasets.make_trajectories`); with ``prior="pretrained:mot-ar"`` it loads the
    bundled weights instead (trained by ``benchmarks/train_deep_ar.py``). ``predict`` runs the
    VEM (E-W, E-S with the network's one-step predictions as the prior of every frame).

    Parameters
    ----------
    n_sources : int, default=3
        Number of tracked objects ``N``.
    prior : {"train", "pretrained:mot-ar"}, default="train"
        Train the network in ``fit``, or load the bundled one.
    hidden_size : int, default=32
        Width of the network.
    n_train_sequences : int, default=4000
        Synthetic training trajectories when ``y`` is not given.
    max_epochs : int, default=100
        Maximum training epochs (early stopping on a 10% validation split).
    batch_size : int, default=256
    learning_rate : float, default=1e-3
    patience : int, default=10
        Early-stopping patience in epochs.
    input_noise : float, default=0.08
        Training input noise in box sizes (robustness to being fed posterior means).
    initial_position_std : float, default=0.5
        First frame's prior standard deviation in box sizes.
    obs_noise, clutter, assignment_temperature, update_noise, update_weights, init, max_iter, \
tol, box_format, image_size, n_jobs, verbose
        As in :class:`~mixest.baselines.VKFTracker`.
    random_state : int, RandomState instance or None, default=None
        Seed of the training data, the network's initialisation and training, and the VEM.

    Attributes
    ----------
    n_features_in_ : int
        Number of coordinates per detection (4).
    weights_ : dict
        The network's hyper-parameters and weights (NumPy arrays: pickles without torch state).
    history_ : dict or None
        Training history (``train_nll``, ``val_nll`` per epoch, ``best_epoch``,
        ``best_val_nll``, ``seconds``); metadata of the bundled model when loaded.
    n_iter_ : ndarray of int of shape (n_sequences,)
        VEM iterations of each sequence in the last :meth:`predict` call.

    Examples
    --------
    >>> from mixest.baselines import DeepARTracker
    >>> from mixest.datasets import make_tracking_mixture
    >>> X, y = make_tracking_mixture(2, n_frames=20, random_state=0)
    >>> ar = DeepARTracker(n_train_sequences=64, max_epochs=2, random_state=0).fit(X)
    >>> ar.predict(X).shape
    (2, 20, 3, 4)
    """

    _boxes_only = True  # the network's features are box displacements and sizes
    _test_params = {
        "n_sources": 2, "max_iter": 2, "n_train_sequences": 32, "max_epochs": 2, "hidden_size": 8,
    }
    _parameter_constraints: dict = {
        **VEMTracker._common_constraints,
        "prior": [StrOptions({"train", "pretrained:mot-ar"})],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "n_train_sequences": [Interval(Integral, 2, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "input_noise": [Interval(Real, 0, None, closed="left")],
        "initial_position_std": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        n_sources: int = 3,
        *,
        prior: str = "train",
        hidden_size: int = 32,
        n_train_sequences: int = 4000,
        max_epochs: int = 100,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        patience: int = 10,
        input_noise: float = 0.08,
        initial_position_std: float = 0.5,
        obs_noise: float = 0.04,
        clutter: float | str = "auto",
        assignment_temperature: float = 1.0,
        update_noise: bool = False,
        update_weights: bool = False,
        init: str = "auto",
        max_iter: int = 30,
        tol: float = 1e-4,
        box_format: str = "xywh",
        image_size: tuple[float, float] | None = (1920, 1080),
        n_jobs: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ):
        self.n_sources = n_sources
        self.prior = prior
        self.hidden_size = hidden_size
        self.n_train_sequences = n_train_sequences
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.input_noise = input_noise
        self.initial_position_std = initial_position_std
        self.obs_noise = obs_noise
        self.clutter = clutter
        self.assignment_temperature = assignment_temperature
        self.update_noise = update_noise
        self.update_weights = update_weights
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.box_format = box_format
        self.image_size = image_size
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _training_tracks(self, y: object, rng: np.random.RandomState) -> np.ndarray:
        """Single-source ``(n, T, 4)`` normalised trajectories from ``y`` or the generator."""
        if y is None:
            from mixest.datasets import make_trajectories

            return make_trajectories(self.n_train_sequences, 60, random_state=rng)
        y = check_sequences(
            y, name="y", ndim=4, allow_nan=True, last_dim=4, axis_names="(n_sequences, T, N, 4)"
        )
        tracks = self._to_model(y).transpose(0, 2, 1, 3).reshape(-1, y.shape[1], 4)
        complete = tracks[~np.isnan(tracks).any(axis=(1, 2))]
        if complete.shape[0] < 2 or complete.shape[1] < 3:
            raise ValueError(
                "y must hold at least 2 tracks present in every one of at least 3 frames to "
                f"train the Deep AR prior; got {complete.shape[0]} complete tracks of "
                f"{y.shape[1]} frames."
            )
        return complete

    def fit(self, X: object, y: object = None) -> DeepARTracker:
        """Train (or load) the Deep AR prior; never tracks.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, 4)
            Detections (validated only: the prior learns from single-source tracks).
        y : array-like of shape (n_sequences, T, N, 4), optional
            Ground-truth tracks in ``box_format``; the complete ones are the training data.
            Without ``y`` the synthetic generator provides them.

        Returns
        -------
        self : DeepARTracker
        """
        self._validate_params()
        self._check_params_common()
        X = self._check_X(X)
        rng = check_random_state(self.random_state)
        if self.prior.startswith("pretrained:"):
            weights = load_deep_ar(self.prior.split(":", 1)[1])
            self.history_ = weights.pop("meta")
        else:
            tracks = self._training_tracks(y, rng)
            weights, self.history_ = train_deep_ar(
                tracks,
                hidden_size=self.hidden_size,
                max_epochs=self.max_epochs,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                patience=self.patience,
                input_noise=self.input_noise,
                random_state=rng,
                verbose=self.verbose,
            )
        self.weights_ = weights
        self.n_features_in_ = X.shape[-1]
        return self

    def _dynamics(self) -> DeepARDynamics:
        return DeepARDynamics(
            _module_from_weights(self.weights_), initial_position_std=self.initial_position_std
        )
