"""MixDVAETracker: multi-object tracking by variational EM with a DVAE prior per object."""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from mixest.base import check_sequences
from mixest.tracking._base import VEMTracker

__all__ = ["MixDVAETracker"]

# Adam step size of the per-sequence encoder fine-tuning (finetune_steps).
_FINETUNE_LR = 1e-3


class MixDVAETracker(VEMTracker):
    """Track a fixed number of objects from unlabelled detections with MixDVAE.

    Each of the ``n_sources`` objects follows a pre-trained DVAE (its *prior*); a variational EM
    assigns every detection to an object (or to clutter) and estimates each object's trajectory,
    per sequence, batched over sequences (:func:`mixest.mixture.run_vem` with the
    :class:`~mixest.tracking.GaussianDetections` observation model). It maximises

    .. math::

        \\mathcal L = \\sum_{tk} \\mathbb E_q[\\log p(o_{tk}, w_{tk} | s)] + H(q(w))
        + \\sum_{tn} \\mathbb E_q[\\log p_\\theta(s_{tn} | m_{t-1,n}, z_{tn})] + H(q(s)).

    Parameters
    ----------
    n_sources : int, default=3
        Number of tracked objects N.
    prior : str or DVAE, default="pretrained:mot"
        ``"pretrained:<name>"`` loads bundled weights; ``"train"`` trains ``DVAE()`` (the
        bundled prior's recipe, ``docs/dvae.md``) on the tracks ``y`` passed to :meth:`fit`
        (or on 2000 synthetic trajectories without ``y``);
        ``"constant-velocity"`` uses a Kalman model instead of a DVAE (no torch); a
        :class:`~mixest.dvae.DVAE` instance is used as is when fitted, else fitted like
        ``"train"``. The prior's own settings travel with it: a box prior runs in each
        object's own frame (:class:`~mixest.tracking.SizeFrame`, centred on and, for larger
        boxes, zoomed out to its mean training box), and a prior with a noise-level input is
        told the level stored with its weights.
    max_iter : int, default=70
        Maximum VEM iterations.
    tol : float, default=1e-4
        Stop when every sequence's bound (per frame and object) improves by less.
    obs_noise : float, default=0.04
        Observation noise standard deviation as a fraction of the box size (``r`` in
        ``docs/tracking.md``).
    assignment_temperature : float, default=1.0
        Divides the distance term of the E-W step; 1 is the model, the paper's released code
        hard-codes 125 (a factor 0.008), which makes assignments nearly uniform.
    smooth : bool, default=True
        Smoothed E-S: after the prior's forward pass, a Rauch-Tung-Striebel pass through its
        linearised transition lets every box use the detections after it too. False: the
        paper's forward pass alone.
    clutter : "auto" or float, default="auto"
        The clutter class (uniform density over the image) that takes the detections no object
        explains. ``"auto"``: in a frame with :math:`K_t` detections, more than the ``N``
        objects, each is clutter with prior probability :math:`(K_t - N) / K_t`, and a box
        entirely outside the image always is; in the other frames of such a sequence, with the
        sequence's share of extra detections, :math:`\\sum_t (K_t - N)^+ / \\sum_t K_t`; a
        sequence in which no frame holds more than ``N`` detections has no clutter, so clean
        detections are tracked as without the class. A number: that fixed prior probability
        in every frame. 0: no clutter class.
    update_noise, update_weights : bool, default=False
        M-step for the observation noise scale / the assignment prior.
    init : {"auto", "filter", "tracklets", "first-frame", "chunked"}, default="auto"
        Initialisation of the tracks (see :class:`~mixest.tracking.GaussianDetections`):
        ``"auto"`` links the boxes into tracklets by overlap in sequences with more detections
        than objects in some frame (clutter), and runs the online filter elsewhere.
    n_z_samples : int, default=0
        E-Z: 0 uses the mean of the encoder's :math:`q(z | m)`; ``R >= 1`` draws ``R`` samples
        per object and moment-matches the prior over them.
    finetune_steps : int, default=0
        Adam steps (step size 1e-3) of encoder fine-tuning in every E-Z step (0: off). Each
        sequence gets its own copy of the prior's encoder for the duration of one
        :meth:`predict` call, tuned to maximise the DVAE ELBO of its current mean trajectories
        (decoder and prior frozen); the fitted prior is never modified and sequences never share
        a copy (the paper's released code reuses one encoder and one optimiser across
        sequences). SRNN priors only.

    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Box convention of ``X`` (MOTChallenge: ``xywh``) and of the returned tracks.
    image_size : (width, height), default=(1920, 1080)
        Image size in the units of ``X``; the prior works on image-normalised boxes.
    batch_size : int, default=128
        Largest number of sequences per VEM batch (bounds the memory).
    n_jobs : int or None, default=None
        Worker processes (joblib; ``-1``: all cores). Sequences are independent, so the
        sequences are split into at least ``n_jobs`` batches that run in parallel; the results do
        not depend on the split (to rounding) with the default deterministic E-Z.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Device of the DVAE.
    random_state : int, RandomState or None, default=None
    verbose : bool or int, default=False
        True (or 1): a progress bar over the batches of sequences (when there are several) and
        over the prior's training in :meth:`fit`; 2: also the mean lower bound at every VEM
        iteration.

    Attributes
    ----------
    prior_ : DVAE or None
        The fitted prior (None for ``"constant-velocity"``).
    n_features_in_ : int
    n_iter_ : ndarray of shape (n_sequences,)
        Iterations run by the last :meth:`predict` per sequence's batch. A call that stops at
        ``max_iter`` with sequences still improving warns once
        (:class:`~sklearn.exceptions.ConvergenceWarning`).
    lower_bound_ : ndarray of shape (n_sequences,)
        Best bound per sequence in the last :meth:`predict`.
    timings_ : dict
        Seconds per VEM step in the last :meth:`predict`.

    Examples
    --------
    >>> from mixest import MixDVAETracker
    >>> from mixest.datasets import make_tracking_mixture
    >>> X, y = make_tracking_mixture(4, n_frames=30, random_state=0)
    >>> tracker = MixDVAETracker(prior="constant-velocity")
    >>> tracker.fit(X).predict(X).shape
    (4, 30, 3, 4)
    """

    _test_params = {"n_sources": 2, "max_iter": 3, "prior": "constant-velocity"}
    _parameter_constraints: dict = {
        **VEMTracker._common_constraints,
        "prior": [str, object],
        "smooth": ["boolean"],
        "n_z_samples": [Interval(Integral, 0, None, closed="left")],
        "finetune_steps": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
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
        smooth: bool = True,
        clutter: float | str = "auto",
        update_noise: bool = False,
        update_weights: bool = False,
        init: str = "auto",
        n_z_samples: int = 0,
        finetune_steps: int = 0,
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
        self.smooth = smooth
        self.clutter = clutter
        self.update_noise = update_noise
        self.update_weights = update_weights
        self.init = init
        self.n_z_samples = n_z_samples
        self.finetune_steps = finetune_steps
        self.box_format = box_format
        self.image_size = image_size
        self.batch_size = batch_size
        self.n_jobs = n_jobs
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

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
        self._check_params_common()
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

                untrained = DVAE(random_state=self.random_state, verbose=bool(self.verbose))
                self.prior_ = self._train_prior(untrained, y)
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
    def _batch_size(self) -> int:
        return self.batch_size

    def _dynamics(self):
        from mixest.mixture._dynamics import DVAEDynamics
        from mixest.mixture._kalman import ConstantVelocityDynamics
        from mixest.tracking._size_frame import SizeFrame

        if self.prior_ is None:
            return ConstantVelocityDynamics(smooth=self.smooth)
        device = self.prior_.device_ if self.device == "auto" else self.device
        module = self.prior_.module_.to(device)
        dynamics = DVAEDynamics(module, n_samples=max(self.n_z_samples, 1),
                                sample=self.n_z_samples > 0, device=device,
                                finetune_steps=self.finetune_steps, finetune_lr=_FINETUNE_LR,
                                smooth=self.smooth)
        box = _mean_box(module)
        return dynamics if box is None else SizeFrame(dynamics, box)


def _mean_box(module) -> np.ndarray | None:
    """A box prior's mean training box ``(x1, y1, x2, y2)`` (its input standardisation's
    location), None for other priors."""
    if module.x_dim != 4 or module.likelihood != "gaussian":
        return None
    box = module.x_loc.detach().cpu().double().numpy()
    return box if box[2] > box[0] and box[3] > box[1] else None
