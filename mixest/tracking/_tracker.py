"""MixDVAETracker: multi-object tracking by variational EM with a DVAE prior per object."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixest.base import SequenceEstimator, check_sequences
from mixest.tracking._boxes import convert_boxes
from mixest.tracking._validation import check_detections

__all__ = ["MixDVAETracker"]


def box_noise(obs: np.ndarray, scale: float) -> np.ndarray:
    """Diagonal observation noise proportional to each detection's size.

    For ``xyxy`` boxes :math:`\\Phi_{tk} = \\operatorname{diag}((r w)^2, (r h)^2, (r w)^2,
    (r h)^2)`; for other dimensions an isotropic :math:`r^2`. Missing rows get 1.
    """
    if obs.shape[-1] == 4:
        w = np.abs(obs[..., 2] - obs[..., 0])
        h = np.abs(obs[..., 3] - obs[..., 1])
        size = np.stack([w, h, w, h], axis=-1)
        phi = (scale * np.maximum(size, 1e-6)) ** 2
    else:
        phi = np.full(obs.shape, scale**2)
    return np.where(np.isnan(phi), 1.0, phi)


class MixDVAETracker(SequenceEstimator):
    """Track a fixed number of objects from unlabelled detections with MixDVAE.

    Each of the ``n_sources`` objects follows a pre-trained DVAE (its *prior*); a variational EM
    assigns every detection to an object (or to clutter) and estimates each object's trajectory,
    per sequence, batched over sequences (see :func:`mixest.mixture.run_vem`). It maximises

    .. math::

        \\mathcal L = \\sum_{tk} \\mathbb E_q[\\log p(o_{tk}, w_{tk} | s)] + H(q(w))
        + \\sum_{tn} \\mathbb E_q[\\log p_\\theta(s_{tn} | m_{t-1,n}, z_{tn})] + H(q(s)).

    Parameters
    ----------
    n_sources : int, default=3
        Number of tracked objects N.
    prior : str or DVAE, default="pretrained:mot"
        ``"pretrained:<name>"`` loads bundled weights; ``"train"`` trains a DVAE on the tracks
        ``y`` passed to :meth:`fit` (or on synthetic trajectories without ``y``);
        ``"constant-velocity"`` uses a Kalman model instead of a DVAE (no torch); a
        :class:`~mixest.dvae.DVAE` instance is used as is when fitted, else fitted like
        ``"train"``.
    max_iter : int, default=70
        Maximum VEM iterations.
    tol : float, default=1e-4
        Stop when every sequence's bound (per frame and object) improves by less.
    obs_noise : float, default=0.04
        Observation noise std as a fraction of the box size (``r`` of DESIGN §4).
    assignment_temperature : float, default=1.0
        Divides the distance term of the E-W step; 1 is the model, the paper's released code
        hard-codes 125 (a factor 0.008), which makes assignments nearly uniform.
    exclusive : bool, default=False
        Balance each frame's soft assignments towards one detection per object (Sinkhorn-style;
        see :func:`mixest.mixture.exclusive_assignments`). Not in the paper's model.
    clutter : bool, default=False
        Add a clutter class with uniform density over the image.
    clutter_weight : float, default=0.05
        Prior probability of the clutter class.
    update_noise, update_weights : bool, default=False
        M-step for the observation noise scale / the assignment prior.
    init : {"filter", "first-frame", "chunked"}, default="filter"
        Initialisation of the tracks (see :func:`mixest.mixture.run_vem`).
    n_z_samples : int, default=1
        Latent samples per object in E-Z (more than 1 implies sampling).
    sample_latents : bool, default=False
        Sample ``z`` from ``q(z | m)`` in E-Z instead of using its mean.
    finetune_steps : int, default=0
        Adam steps of encoder fine-tuning in every E-Z step (0: off). Each sequence gets its own
        copy of the prior's encoder for the duration of one :meth:`predict` call, tuned to
        maximise the DVAE ELBO of its current mean trajectories (decoder and prior frozen); the
        fitted prior is never modified and sequences never share a copy (the paper's released
        code reuses one encoder and one optimiser across sequences). SRNN priors only.
    finetune_lr : float, default=1e-3
        Adam learning rate of the fine-tuning.
    normalize_size : bool, default=True
        Run the prior in each object's own frame: its trajectory is shifted so that its mean
        centre is that of the prior's mean training box and, when its boxes are larger than
        that box, zoomed out to its size; the prior's predictions are mapped back
        (``reference_box`` of :class:`mixest.mixture.DVAEDynamics`). A prior trained on
        image-normalised boxes knows how boxes of its training sizes move; a close-up
        pedestrian, several times larger and faster, is outside that range. False: the prior
        reads the boxes as they are (the paper). Box priors only; ignored for
        ``"constant-velocity"``.
    prior_noise_level : float or None, default=None
        For priors trained with ``noise_level_input=True``: the noise level the prior is told
        the tracks it reads have, as a fraction of its largest training jitter
        (``noise_level`` of :class:`mixest.mixture.DVAEDynamics`). None: the prior's own
        default (1.0). Other priors refuse a value.
    box_format : {"xywh", "xyxy"}, default="xywh"
        Box convention of ``X`` (MOTChallenge: ``xywh``) and of the returned tracks.
    image_size : (width, height), default=(1920, 1080)
        Image size in the units of ``X``; the prior works on image-normalised boxes.
    batch_size : int, default=128
        Largest number of sequences per VEM batch.
    n_jobs : int or None, default=None
        Worker processes (joblib; ``-1``: all cores). Sequences are independent, so the
        sequences are split into at least ``n_jobs`` batches that run in parallel; the results do
        not depend on the split (to rounding) with the default deterministic E-Z.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Device of the DVAE.
    random_state : int, RandomState or None, default=None
    verbose : bool, default=False

    Attributes
    ----------
    prior_ : DVAE or None
        The fitted prior (None for ``"constant-velocity"``).
    n_features_in_ : int
    n_iter_ : ndarray of shape (n_sequences,)
        Iterations run by the last :meth:`predict` per sequence's batch.
    lower_bound_ : ndarray of shape (n_sequences,)
        Best bound per sequence in the last :meth:`predict`.
    timings_ : dict
        Seconds per VEM step in the last :meth:`predict`.

    Examples
    --------
    >>> from mixest import MixDVAETracker
    >>> from mixest.datasets import make_tracking_mixture
    >>> X, y = make_tracking_mixture(4, n_frames=30, random_state=0)
    >>> tracker = MixDVAETracker(prior="constant-velocity", box_format="xyxy", image_size=(1, 1))
    >>> tracker.fit(X).predict(X).shape
    (4, 30, 3, 4)
    """

    _input_kind = "detections"
    _test_params = {"n_sources": 2, "max_iter": 3, "prior": "constant-velocity"}
    _parameter_constraints: dict = {
        "n_sources": [Interval(Integral, 1, None, closed="left")],
        "prior": [str, object],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "obs_noise": [Interval(Real, 0, None, closed="neither")],
        "assignment_temperature": [Interval(Real, 0, None, closed="neither")],
        "exclusive": ["boolean"],
        "smooth": ["boolean"],
        "clutter": ["boolean"],
        "clutter_weight": [Interval(Real, 0, 1, closed="neither")],
        "update_noise": ["boolean"],
        "update_weights": ["boolean"],
        "init": [StrOptions({"filter", "first-frame", "chunked"})],
        "n_z_samples": [Interval(Integral, 1, None, closed="left")],
        "sample_latents": ["boolean"],
        "finetune_steps": [Interval(Integral, 0, None, closed="left")],
        "finetune_lr": [Interval(Real, 0, None, closed="neither")],
        "normalize_size": ["boolean"],
        "prior_noise_level": [Interval(Real, 0, None, closed="left"), None],
        "box_format": [StrOptions({"xywh", "xyxy"})],
        "image_size": [tuple, list, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_jobs": [Integral, None],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_sources: int = 3,
        *,
        prior: object = "pretrained:mot",
        max_iter: int = 70,
        tol: float = 1e-4,
        obs_noise: float = 0.04,
        assignment_temperature: float = 1.0,
        exclusive: bool = False,
        smooth: bool = True,
        clutter: bool = False,
        clutter_weight: float = 0.05,
        update_noise: bool = False,
        update_weights: bool = False,
        init: str = "filter",
        n_z_samples: int = 1,
        sample_latents: bool = False,
        finetune_steps: int = 0,
        finetune_lr: float = 1e-3,
        normalize_size: bool = True,
        prior_noise_level: float | None = None,
        box_format: str = "xywh",
        image_size: tuple[float, float] | None = (1920, 1080),
        batch_size: int = 128,
        n_jobs: int | None = None,
        device: str = "cpu",
        random_state: object = None,
        verbose: bool = False,
    ):
        self.n_sources = n_sources
        self.prior = prior
        self.max_iter = max_iter
        self.tol = tol
        self.obs_noise = obs_noise
        self.assignment_temperature = assignment_temperature
        self.exclusive = exclusive
        self.smooth = smooth
        self.clutter = clutter
        self.clutter_weight = clutter_weight
        self.update_noise = update_noise
        self.update_weights = update_weights
        self.init = init
        self.n_z_samples = n_z_samples
        self.sample_latents = sample_latents
        self.finetune_steps = finetune_steps
        self.finetune_lr = finetune_lr
        self.normalize_size = normalize_size
        self.prior_noise_level = prior_noise_level
        self.box_format = box_format
        self.image_size = image_size
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ input conversion
    def _image_size(self) -> np.ndarray:
        if self.image_size is None:
            return np.ones(2)
        size = np.asarray(self.image_size, dtype=float)
        if size.shape != (2,) or not np.all(size > 0):
            raise ValueError(f"image_size must be (width, height) > 0, got {self.image_size!r}.")
        return size

    def _check_X(self, X: object, name: str = "X") -> np.ndarray:
        return check_detections(X, box_format=self.box_format, boxes_only=False, name=name)

    def _to_model(self, X: np.ndarray) -> np.ndarray:
        """Input units and format -> image-normalised xyxy (boxes only)."""
        if X.shape[-1] != 4:
            return X / np.resize(self._image_size(), X.shape[-1])
        return convert_boxes(X, self.box_format, "xyxy") / np.tile(self._image_size(), 2)

    def _from_model(self, M: np.ndarray) -> np.ndarray:
        if M.shape[-1] != 4:
            return M * np.resize(self._image_size(), M.shape[-1])
        # a box whose corners crossed (possible when unobserved) is returned with ordered corners
        x1, x2 = np.minimum(M[..., 0], M[..., 2]), np.maximum(M[..., 0], M[..., 2])
        y1, y2 = np.minimum(M[..., 1], M[..., 3]), np.maximum(M[..., 1], M[..., 3])
        M = np.stack([x1, y1, x2, y2], axis=-1) * np.tile(self._image_size(), 2)
        return convert_boxes(M, "xyxy", self.box_format)

    # ------------------------------------------------------------------ fit
    def fit(self, X: object, y: object = None) -> MixDVAETracker:
        """Load or learn the dynamics prior (no tracking happens here).

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, D) or list of DataFrame
            Detections (only validated).
        y : array-like of shape (n_sequences, T, N, D), optional
            Single-object tracks to train the prior on when ``prior`` asks for training.

        Returns
        -------
        self : MixDVAETracker
        """
        self._validate_params()
        self._image_size()
        X = self._check_X(X)
        self.n_features_in_ = X.shape[-1]
        prior = self.prior
        if isinstance(prior, str):
            if prior == "constant-velocity":
                self.prior_ = None
            elif prior.startswith("pretrained:"):
                from mixest.dvae import DVAE

                self.prior_ = DVAE.from_pretrained(prior.split(":", 1)[1])
            elif prior == "train":
                from mixest.dvae import DVAE

                self.prior_ = self._train_prior(DVAE(random_state=self.random_state), y)
            else:
                raise ValueError(
                    "prior must be 'pretrained:<name>', 'train', 'constant-velocity' or a DVAE "
                    f"instance, got {prior!r}."
                )
        elif hasattr(prior, "fit") and hasattr(prior, "get_params"):
            fitted = hasattr(prior, "module_")
            self.prior_ = prior if fitted else self._train_prior(prior, y)
        else:
            raise TypeError(f"prior must be a string or a DVAE estimator, got {type(prior)}.")
        if self.prior_ is not None:
            self.prior_.module_.eval()
            x_dim = self.prior_.module_.x_dim
            if x_dim != X.shape[-1]:
                raise ValueError(f"the prior models {x_dim}-D frames, X has D = {X.shape[-1]}.")
        if self.prior_noise_level is not None and not getattr(
                getattr(self.prior_, "module_", None), "noise_level_input", False):
            raise ValueError("prior_noise_level needs a DVAE prior trained with "
                             "noise_level_input=True.")
        return self

    def _train_prior(self, dvae, y):
        from sklearn.base import clone

        if y is None:
            from mixest.datasets import make_trajectories

            Y = make_trajectories(2000, 60, random_state=self.random_state)
        else:
            y = check_sequences(y, name="y", ndim=4, allow_nan=True,
                                axis_names="(n_sequences, T, N, D)")
            Y = self._to_model(y).transpose(0, 2, 1, 3).reshape(-1, y.shape[1], y.shape[-1])
            Y = Y[~np.isnan(Y).any((1, 2))]  # objects present in every frame
            if len(Y) < 2:
                raise ValueError("y holds fewer than 2 complete tracks to train the prior on.")
        return clone(dvae).fit(Y)

    # ------------------------------------------------------------------ inference
    def _dynamics(self):
        from mixest.mixture._dynamics import ConstantVelocityDynamics, DVAEDynamics

        if self.prior_ is None:
            return ConstantVelocityDynamics(smooth=self.smooth)
        device = self.prior_.device_ if self.device == "auto" else self.device
        module = self.prior_.module_.to(device)
        box = _mean_box(module) if self.normalize_size else None
        return DVAEDynamics(module, n_samples=self.n_z_samples,
                            sample=self.sample_latents or self.n_z_samples > 1, device=device,
                            finetune_steps=self.finetune_steps, finetune_lr=self.finetune_lr,
                            smooth=self.smooth, reference_box=box,
                            noise_level=self.prior_noise_level)

    def _run(self, X: np.ndarray):
        from joblib import Parallel, delayed, effective_n_jobs

        check_is_fitted(self, "n_features_in_")
        if X.shape[-1] != self.n_features_in_:
            raise ValueError(f"X has D = {X.shape[-1]}, the tracker was fitted with "
                             f"{self.n_features_in_}.")
        obs = self._to_model(X)
        phi = box_noise(obs, self.obs_noise)
        seeds = check_random_state(self.random_state).randint(2**31 - 1, size=len(obs))
        # every worker gets a share even when all sequences fit in one batch
        size = min(self.batch_size, -(-len(obs) // max(effective_n_jobs(self.n_jobs), 1)))
        starts = range(0, len(obs), size)
        jobs = (delayed(_run_batch)(self, obs[s:s + size], phi[s:s + size], int(seeds[s]))
                for s in starts)
        results = Parallel(n_jobs=self.n_jobs)(jobs)
        self.n_iter_ = np.concatenate([np.full(r.lower_bound.shape, r.n_iter) for r in results])
        self.lower_bound_ = np.concatenate([r.lower_bound for r in results])
        self.timings_ = {k: sum(r.timings[k] for r in results) for k in results[0].timings}
        return results

    def predict(self, X: object) -> np.ndarray:
        """Track the objects.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, D) or list of DataFrame
            Detections in ``box_format`` and image units; NaN rows are missing detections.

        Returns
        -------
        tracks : ndarray of shape (n_sequences, T, n_sources, D)
            Posterior mean trajectories in the input's units and format.
        """
        X = self._check_X(X)
        results = self._run(X)
        return self._from_model(np.concatenate([r.means for r in results]))

    def predict_assignments(self, X: object) -> np.ndarray:
        """Posterior assignment probabilities ``(n_sequences, T, K, n_sources[+1])``.

        The last column is the clutter class when ``clutter=True``; missing detections get zero
        rows.
        """
        X = self._check_X(X)
        return np.concatenate([r.eta for r in self._run(X)])

    def score(self, X: object, y: object) -> float:
        """MOTA of :meth:`predict` against ground-truth tracks ``y`` (same units and format)."""
        from mixest.tracking._metrics import mota_score

        return mota_score(y, self.predict(X), box_format=self.box_format)


def _mean_box(module) -> np.ndarray | None:
    """A box prior's mean training box ``(x1, y1, x2, y2)`` (its input standardisation's
    location), None for other priors."""
    if module.x_dim != 4 or module.likelihood != "gaussian":
        return None
    box = module.x_loc.detach().cpu().double().numpy()
    return box if box[2] > box[0] and box[3] > box[1] else None


def _run_batch(tracker: MixDVAETracker, obs: np.ndarray, phi: np.ndarray, seed: int):
    """One VEM batch (module-level so that joblib can ship it to a worker)."""
    from threadpoolctl import threadpool_limits

    from mixest.mixture._vem import run_vem

    threads = None
    if tracker.prior_ is not None:
        import torch

        # the prior's ops are tiny: one thread avoids synchronisation overhead (and
        # oversubscription when joblib runs batches in parallel)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
    try:
        # the same for BLAS: the VEM's matrix products are (n_sequences * N, <= 64) by (64, 64)
        with threadpool_limits(1, user_api="blas"):
            return _vem(tracker, obs, phi, seed, run_vem)
    finally:
        if threads is not None:
            torch.set_num_threads(threads)


def _vem(tracker, obs, phi, seed, run_vem):
    return run_vem(
        obs, tracker._dynamics(), n_sources=tracker.n_sources, phi=phi,
        max_iter=tracker.max_iter, tol=tracker.tol, clutter=tracker.clutter,
        clutter_density=1.0, clutter_weight=tracker.clutter_weight,
        temperature=tracker.assignment_temperature, exclusive=tracker.exclusive,
        update_phi=tracker.update_noise,
        update_pi=tracker.update_weights, init=tracker.init,
        random_state=np.random.default_rng(seed), verbose=bool(tracker.verbose),
    )

