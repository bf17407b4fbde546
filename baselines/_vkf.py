"""Variational Kalman filter tracker (VKF; Ban, Alameda-Pineda, Girin, Horaud, TPAMI 2021).

VKF shares MixDVAE's observation and assignment model (the same VEM engine, the same E-W step,
clutter class and M-step) and replaces the DVAE by linear-Gaussian dynamics: the state of every
source is its box and the box's velocity, with a constant-velocity transition ``F`` and process
noise ``Q``. Its E-S step is a Kalman filter and a Rauch-Tung-Striebel smoother, batched over all
sequences and sources, fed per source with the pseudo-observation

.. math::

    R_{tn} = \\Big(\\sum_k \\eta_{tkn} \\Phi_{tk}^{-1}\\Big)^{-1}, \\qquad
    \\bar o_{tn} = R_{tn} \\sum_k \\eta_{tkn} \\Phi_{tk}^{-1} o_{tk},

which the update consumes in information form (no pseudo-observation is ever inverted, and a
frame where nothing is assigned to a source is simply a missing observation).

The tracker's plumbing (units, batching, the observation model) is
:class:`mixest.tracking.VEMTracker`'s, shared with :class:`~mixest.MixDVAETracker` and
:class:`~mixest.baselines.DeepARTracker`.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval

from mixest.mixture._kalman import ConstantVelocityDynamics
from mixest.tracking._base import VEMTracker
from mixest.tracking._boxes import box_iou
from mixest.tracking._observation import box_noise

__all__ = ["VKFTracker"]


# Padding sources (when the sequences of one engine call hold different numbers of sources)
# never exist (see ConstantVelocityDynamics.birth_frames) and rest this far outside the
# normalised image.
_DUMMY_OFFSET = 10.0
# A birth is kept only if the born source then takes at least this mean responsibility for the
# detections of the chain that spawned it.
_BIRTH_ACCEPT = 0.5


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`~mixest.tracking._boxes.box_iou`, 0 where either box is missing."""
    return np.nan_to_num(box_iou(a, b))


def _unexplained_chains(
    boxes: np.ndarray, unexplained: np.ndarray, iou_threshold: float, min_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First chain of at least ``min_frames`` unexplained detections of every sequence.

    Consecutive frames are linked by mutual-best IoU (a detection's best match in the next frame
    whose best match back is that detection), accepted when the IoU reaches ``iou_threshold``.

    Parameters
    ----------
    boxes : ndarray of shape (B, T, K, 4)
        Normalised ``xyxy`` detections (NaN rows are missing).
    unexplained : ndarray of bool, shape (B, T, K)
    iou_threshold : float
    min_frames : int

    Returns
    -------
    chain : ndarray of int, shape (B, T)
        Detection index of the chain in every frame, ``-1`` outside it: the chain that starts
        first (the longest of those starting in the same frame).
    start, length : ndarray of int, shape (B,)
        First frame and number of frames of that chain (``length = 0`` when there is none).
    """
    B, T, K, _ = boxes.shape
    cand = np.where(unexplained[..., None], boxes, np.nan)
    iou = _iou(cand[:, :-1], cand[:, 1:])
    nxt, prv = iou.argmax(-1), iou.argmax(-2)  # (B, T-1, K): best match forward / backward
    ks = np.arange(K)
    fwd = (np.take_along_axis(iou, nxt[..., None], -1)[..., 0] >= iou_threshold) & (
        np.take_along_axis(prv, nxt, -1) == ks
    )
    bwd = (np.take_along_axis(iou, prv[..., None, :], -2)[..., 0, :] >= iou_threshold) & (
        np.take_along_axis(nxt, prv, -1) == ks
    )
    # Frames left in the chain from each detection on (a backward recursion over t).
    rest = np.zeros((B, T, K), dtype=int)
    rest[:, -1] = unexplained[:, -1]
    for t in range(T - 2, -1, -1):
        after = np.take_along_axis(rest[:, t + 1], nxt[:, t], -1)
        rest[:, t] = np.where(unexplained[:, t], 1 + np.where(fwd[:, t], after, 0), 0)
    is_start = unexplained.copy()
    is_start[:, 1:] &= ~bwd
    total = np.where(is_start, rest, 0)
    # The earliest chain long enough (the longest of those starting in that frame).
    total = np.where(total >= min_frames, total, 0)
    start = total.any(-1).argmax(1)
    k = total[np.arange(B), start].argmax(-1)
    length = total[np.arange(B), start, k]
    chain = np.full((B, T), -1)
    alive = np.zeros(B, dtype=bool)
    rows = np.arange(B)
    for t in range(T):  # follow the forward links, all sequences at once
        alive |= (t == start) & (length > 0)
        chain[:, t] = np.where(alive, k, -1)
        if t < T - 1:  # k stays the start's detection until the chain begins
            k, alive = np.where(alive, nxt[rows, t, k], k), alive & fwd[rows, t, k]
    return chain, start, length


class VKFTracker(VEMTracker):
    """Variational Kalman filter tracker: MixDVAE's VEM with constant-velocity Kalman dynamics.

    The observation model, the assignment posterior (E-W, with optional clutter) and the M-step
    are MixDVAE's; each source is a linear-Gaussian state ``[box, velocity]`` whose posterior is
    computed by a Kalman filter and RTS smoother fed with the pseudo-observations
    ``R = (sum_k eta Phi_k^{-1})^{-1}``, ``o_bar = R sum_k eta Phi_k^{-1} o_k``.

    Parameters
    ----------
    n_sources : int, default=3
        Number of tracked objects ``N``.
    process_noise : float, default=0.02
        Intensity of the white-noise acceleration in box sizes per frame (``Lambda`` of the
        paper, scaled per source by its box size).
    initial_velocity_std : float, default=0.1
        Prior standard deviation of the first velocity, in box sizes per frame.
    learn_process_noise : bool, default=False
        M-step of the process noise (per source and coordinate) after every E-S step.
    smooth : bool, default=True
        RTS smoothing in the E-S step (``False``: the filtered posterior).
    birth : bool, default=False
        Start new tracks from chains of unexplained detections (see Notes). Needs
        a clutter class (``clutter`` not 0) and boxes. The outputs then have ``max_sources``
        tracks: the first ``n_sources`` ones, then the born ones in order of birth, NaN
        before their first frame (and NaN throughout for unused columns).
    max_sources : int or None, default=None
        Cap on the number of tracks per sequence with ``birth``, at least ``n_sources``;
        ``None`` means ``2 * n_sources``.
    birth_min_frames : int, default=3
        Shortest chain of unexplained detections (consecutive frames) that starts a track.
    birth_threshold : float, default=0.5
        Clutter responsibility above which a detection is unexplained.
    birth_iou : float, default=0.3
        IoU linking the detections of a chain; also the overlap with a current track above
        which a detection is that track's and starts nothing.
    obs_noise : float, default=0.04
        ``r`` of ``Phi_tk = diag((r w_k)^2, (r h_k)^2, (r w_k)^2, (r h_k)^2)``.
    clutter : "auto" or float, default="auto"
        The clutter class, as in :class:`~mixest.MixDVAETracker`: "auto" gives a detection of
        a frame with more detections than objects a clutter prior of their excess share (at
        least the sequence's, in every frame of a sequence with clutter; a box outside the
        image is clutter); a number is a fixed prior; 0: none.
    assignment_temperature : float, default=1.0
        Divides the quadratic term of E-W (the paper's code effectively uses 125).
    update_noise : bool, default=False
        M-step of the scale of ``Phi`` per sequence and coordinate.
    update_weights : bool, default=False
        M-step of the assignment prior ``pi``.
    init : {"auto", "filter", "tracklets", "first-frame", "chunked"}, default="auto"
        VEM initialisation (see :class:`~mixest.tracking.GaussianDetections`); ``"filter"``
        (and ``"auto"`` in sequences without clutter) uses this tracker's own Kalman model,
        filtering only.
    max_iter : int, default=30
        Maximum number of VEM iterations.
    tol : float, default=1e-4
        Convergence threshold on the lower bound per frame and source.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Box convention of ``X``, of ``y`` in :meth:`score` and of the tracks.
    image_size : tuple of (width, height) or None, default=(1920, 1080)
        Image size in the units of ``X``; ``None`` (or ``(1, 1)``) for normalised boxes.
    n_jobs : int or None, default=None
        Worker processes over batches of sequences (joblib; ``-1``: all cores).
    random_state : int, RandomState instance or None, default=None
        Seed of the VEM (VKF itself is deterministic).
    verbose : bool or int, default=False
        True (or 1): a progress bar over the batches of sequences (when there are several);
        2: also the mean lower bound at every VEM iteration.

    Attributes
    ----------
    n_features_in_ : int
        Number of coordinates per detection (4).
    n_iter_ : ndarray of int of shape (n_sequences,)
        VEM iterations of each sequence in the last :meth:`predict` call (with births, of its
        last VEM run).
    n_births_ : ndarray of int of shape (n_sequences,)
        Tracks born in each sequence by the last :meth:`predict` call (zeros without
        ``birth``).

    Notes
    -----
    Any number of coordinates ``D`` works: for ``D != 4`` the observations are points (e.g. 2-D
    positions) divided by ``image_size`` per axis, ``Phi = obs_noise^2 I`` in those units and
    the noises of the dynamics are in units of
    :data:`~mixest.mixture._kalman.POINT_SIZE` (0.05 of the image, the size of a typical box).

    **Track birth** (``birth=True``, off by default: every window of the benchmarks holds the
    same ``N`` objects from its first to its last frame). The engine is fixed-``N``, so births
    happen between VEM runs, one per sequence and round:

    1. run the VEM (the clutter class is required);
    2. call a detection *unexplained* when its clutter responsibility exceeds
       ``birth_threshold`` and it overlaps no current track (IoU < ``birth_iou``, which would
       only duplicate a poorly fitted track);
    3. link unexplained detections of consecutive frames by mutual-best IoU
       (``>= birth_iou``) and take the earliest chain of at least ``birth_min_frames`` frames;
    4. add a source that does not exist before the chain's first frame (flat prior, no
       evidence, no responsibility) and starts there from a birth law: the chain's first box
       (to its observation noise) and mean velocity (see
       :class:`~mixest.mixture.ConstantVelocityDynamics`);
    5. re-run the VEM on those sequences with the enlarged set, initialised online from every
       source's law (the known sources at their first-frame estimates), and keep the birth only
       if the new source then takes more than half of its chain's responsibility;

    until no chain is found or a sequence has ``max_sources`` sources. Re-runs iterate exactly
    ``max_iter`` times (the engine's ``tol=0``; the best-bound iterate is kept), since the
    birth frames are given per source. Births need boxes (``D = 4``).

    Examples
    --------
    >>> from mixest.baselines import VKFTracker
    >>> from mixest.datasets import make_tracking_mixture
    >>> X, y = make_tracking_mixture(2, n_frames=20, random_state=0)
    >>> vkf = VKFTracker().fit(X)
    >>> vkf.predict(X).shape
    (2, 20, 3, 4)
    """

    _test_params = {"n_sources": 2, "max_iter": 3}
    _parameter_constraints: dict = {
        **VEMTracker._common_constraints,
        "process_noise": [Interval(Real, 0, None, closed="neither")],
        "initial_velocity_std": [Interval(Real, 0, None, closed="neither")],
        "learn_process_noise": ["boolean"],
        "smooth": ["boolean"],
        "birth": ["boolean"],
        "max_sources": [Interval(Integral, 1, None, closed="left"), None],
        "birth_min_frames": [Interval(Integral, 2, None, closed="left")],
        "birth_threshold": [Interval(Real, 0, 1, closed="neither")],
        "birth_iou": [Interval(Real, 0, 1, closed="right")],
    }

    def __init__(
        self,
        n_sources: int = 3,
        *,
        process_noise: float = 0.02,
        initial_velocity_std: float = 0.1,
        learn_process_noise: bool = False,
        smooth: bool = True,
        birth: bool = False,
        max_sources: int | None = None,
        birth_min_frames: int = 3,
        birth_threshold: float = 0.5,
        birth_iou: float = 0.3,
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
        self.process_noise = process_noise
        self.initial_velocity_std = initial_velocity_std
        self.learn_process_noise = learn_process_noise
        self.smooth = smooth
        self.birth = birth
        self.max_sources = max_sources
        self.birth_min_frames = birth_min_frames
        self.birth_threshold = birth_threshold
        self.birth_iou = birth_iou
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

    def fit(self, X: object, y: object = None) -> VKFTracker:
        """Validate the parameters and ``X``; return ``self``.

        The constant-velocity model has no prior to train (its process noise is a parameter or
        is learned per sequence by the M-step at :meth:`predict` time), so ``fit`` never tracks.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, 4)
            Detections.
        y : None
            Ignored.

        Returns
        -------
        self : VKFTracker
        """
        self._validate_params()
        self._check_params_common()
        X = self._check_X(X)
        if self.birth:
            if self.clutter == 0:
                raise ValueError(
                    "birth=True needs a clutter class (clutter='auto' or > 0): unexplained "
                    "detections are those the "
                    "clutter class takes."
                )
            if X.shape[-1] != 4:
                raise ValueError(
                    f"birth=True links detections by IoU and needs boxes (D = 4), got "
                    f"D = {X.shape[-1]}."
                )
            if self.max_sources is not None and self.max_sources < self.n_sources:
                raise ValueError(
                    f"max_sources={self.max_sources} must be at least "
                    f"n_sources={self.n_sources}."
                )
        self.n_features_in_ = X.shape[-1]
        return self

    def _birth_law(
        self,
        boxes: np.ndarray,
        phi: np.ndarray,
        chain: np.ndarray,
        start: np.ndarray,
        length: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Birth state ``[box, velocity]`` ``(S, 2 D)`` and covariance from each chain.

        The box is the chain's first detection, known to its observation noise ``Phi``; the
        velocity is the chain's mean displacement per frame, with the variance of a difference
        of two detections ``L - 1`` frames apart plus one frame of process noise.
        """
        S, T = chain.shape
        rows = np.arange(S)
        stop = start + length - 1
        first = boxes[rows, start, chain[rows, start]]
        phi_b = phi[rows, start, chain[rows, start]]
        velocity = (boxes[rows, stop, chain[rows, stop]] - first) / (length - 1)[:, None]
        wh = np.maximum(first[:, 2:] - first[:, :2], 1e-3)
        q2 = (self.process_noise * np.concatenate([wh, wh], -1)) ** 2
        var = np.concatenate([phi_b, 2.0 * phi_b / ((length - 1) ** 2)[:, None] + q2], -1)
        return np.concatenate([first, velocity], -1), var[:, :, None] * np.eye(var.shape[-1])

    def _first_frame_law(self, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """State law ``(B, N, 2 D)``, ``(B, N, 2 D, 2 D)`` of tracks ``means`` at frame 0.

        Their first box, known to the observation noise of a detection of that size, and
        their first displacement (zero for a single frame).
        """
        first = means[:, 0]
        velocity = means[:, 1] - first if means.shape[1] > 1 else np.zeros_like(first)
        phi = box_noise(first, self.obs_noise)
        wh = np.maximum(first[..., 2:] - first[..., :2], 1e-3)
        q2 = (self.process_noise * np.concatenate([wh, wh], -1)) ** 2
        var = np.concatenate([phi, 2.0 * phi + q2], -1)
        return np.concatenate([first, velocity], -1), var[..., :, None] * np.eye(var.shape[-1])

    def _max_sources(self) -> int:
        return 2 * self.n_sources if self.max_sources is None else self.max_sources

    def _track(self, X: object) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means and assignments (normalised units), with births when ``birth``.

        Returns
        -------
        means : ndarray of shape (n_sequences, T, N', D)
        eta : ndarray of shape (n_sequences, T, K, N'[+1])
            ``N' = n_sources`` without birth, ``max_sources`` with it (unused and not-yet-born
            sources are NaN in ``means`` and zero in ``eta``, whose mass goes to clutter).
        """
        if not self.birth:
            result = self._run(X)
            self.n_births_ = np.zeros(len(result.means), dtype=int)
            return result.means, result.eta
        Xn = self._model_input(X)
        result = self._run_model(Xn)
        seed = int(self._seeds(1)[0])
        B, T, K, D = Xn.shape
        N0, N_max = self.n_sources, self._max_sources()
        means = np.full((B, T, N_max, D), np.nan)
        eta = np.zeros((B, T, K, N_max + 1))
        means[:, :, :N0], eta[..., :N0], eta[..., N_max] = (
            result.means, result.eta[..., :N0], result.eta[..., N0]
        )
        count = np.full(B, N0)
        valid = ~np.isnan(Xn).any(-1)
        phi = box_noise(Xn, self.obs_noise)
        # First frame and birth law of every source. The first run's sources keep the default
        # first-frame prior in the VEM, but seed the re-runs' online initialisation at their
        # first-frame estimate; unused columns (T: never born) rest far outside the image.
        born_at = np.full((B, N_max), T)
        born_at[:, :N0] = 0
        far = np.array([_DUMMY_OFFSET, _DUMMY_OFFSET, _DUMMY_OFFSET + 0.05, _DUMMY_OFFSET + 0.05])
        birth_x = np.zeros((B, N_max, 2 * D))
        birth_x[..., :D] = far
        birth_P = np.broadcast_to(np.eye(2 * D), (B, N_max, 2 * D, 2 * D)).copy()
        birth_x[:, :N0], birth_P[:, :N0] = self._first_frame_law(result.means)
        open_ = count < N_max  # sequences still allowed to grow
        while open_.any():  # one birth per sequence and round
            seq = np.flatnonzero(open_)
            # A detection near a known track (IoU >= birth_iou) is that track's, poorly fitted:
            # a chain of those would only duplicate it.
            alive = np.arange(T)[None, :, None] >= born_at[seq, None, :]
            tracks = np.where(alive[..., None], means[seq], np.nan)
            near = _iou(Xn[seq], tracks).max(-1)
            unexplained = (
                valid[seq] & (eta[seq, ..., N_max] > self.birth_threshold)
                & (near < self.birth_iou)
            )
            chain, start, length = _unexplained_chains(
                Xn[seq], unexplained, self.birth_iou, self.birth_min_frames
            )
            found = length > 0
            open_[seq[~found]] = False
            if not found.any():
                break
            seq, chain, start, length = seq[found], chain[found], start[found], length[found]
            new = count[seq]  # column of the born source
            S, N = len(seq), int(new.max()) + 1
            rows = np.arange(S)
            x_b, P_b = self._birth_law(Xn[seq], phi[seq], chain, start, length)
            birth_x[seq, new], birth_P[seq, new], born_at[seq, new] = x_b, P_b, start
            frames = born_at[seq, :N].reshape(-1)
            laws = (birth_x[seq, :N].reshape(S * N, 2 * D),
                    birth_P[seq, :N].reshape(S * N, 2 * D, 2 * D))
            # The VEM: the first run's sources keep their default first-frame prior (NaN law).
            dyn = self._dynamics(birth_frames=frames, birth_covs=laws[1],
                                 birth_means=np.where((frames > 0)[:, None], laws[0], np.nan))
            # Its initialisation: one online pass seeded by every source's law, so the known
            # sources keep their identities and the born one starts at its chain.
            init_dyn = self._init_dynamics(birth_frames=frames, birth_means=laws[0],
                                           birth_covs=laws[1])
            # tol=0: the engine then keeps every sequence in every forward pass, which the
            # per-source birth frames of the dynamics rely on (the best-bound iterate is kept).
            res = self._vem(
                Xn[seq], seed, n_sources=N, dynamics=dyn, init="filter", init_dynamics=init_dyn,
                tol=0.0,
            )
            self.n_iter_[seq] = res.n_iter
            # Keep a birth only if the born source explains the chain that spawned it.
            in_chain = chain >= 0
            took = res.eta[rows[:, None], np.arange(T), np.maximum(chain, 0), new[:, None]]
            kept = np.where(in_chain, took, 0.0).sum(1) / in_chain.sum(1) > _BIRTH_ACCEPT
            undo = seq[~kept]
            born_at[undo, new[~kept]] = T
            open_[undo] = False
            seq, new, res_means, res_eta = seq[kept], new[kept], res.means[kept], res.eta[kept]
            cols = np.arange(N) <= new[:, None]  # known + born, no padding
            means[seq, :, :N] = np.where(cols[:, None, :, None], res_means, np.nan)
            eta[seq, ..., :N] = np.where(cols[:, None, None, :], res_eta[..., :N], 0.0)
            eta[seq, ..., N_max] = res_eta[..., N] + np.where(
                cols[:, None, None, :], 0.0, res_eta[..., :N]
            ).sum(-1)
            count[seq] += 1
            open_ &= count < N_max
        self.n_births_ = count - N0
        # A born source does not exist before its chain: no box, and its responsibilities
        # there go to the clutter class.
        absent = np.arange(T)[None, :, None] < born_at[:, None, :]  # (B, T, N_max)
        means = np.where(absent[..., None], np.nan, means)
        moved = np.where(absent[:, :, None, :], eta[..., :N_max], 0.0)
        eta[..., :N_max] -= moved
        eta[..., N_max] += moved.sum(-1)
        return means, eta

    def predict(self, X: object) -> np.ndarray:
        """Track the objects of every sequence.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, 4) or list of DataFrame
            Detections in ``box_format`` and pixels (NaN rows are missing detections), or
            MOTChallenge-style detection tables, one per sequence.

        Returns
        -------
        tracks : ndarray of shape (n_sequences, T, n_sources, 4)
            Posterior mean boxes in ``box_format``. With ``birth=True`` the shape is
            ``(n_sequences, T, max_sources, 4)``: the first ``n_sources`` tracks, then the born
            ones in order of birth, NaN before their first frame; unused columns are NaN.
        """
        return self._from_model(self._track(X)[0])

    def predict_assignments(self, X: object) -> np.ndarray:
        """Posterior assignment probabilities ``(n_sequences, T, K, n_sources[+1])``.

        The last column is the clutter class when ``clutter`` is not 0; rows of missing detections
        are zero. With ``birth=True`` the shape is ``(n_sequences, T, K, max_sources + 1)``,
        with the columns of :meth:`predict`'s tracks (zero for a source before its birth, the
        mass it would have taken there is given to the clutter class).
        """
        return self._track(X)[1]

    def _dynamics(self, **births) -> ConstantVelocityDynamics:
        return ConstantVelocityDynamics(
            process_noise=self.process_noise, initial_velocity_std=self.initial_velocity_std,
            smooth=self.smooth, learn_process_noise=self.learn_process_noise, **births,
        )

    def _init_dynamics(self, **births) -> ConstantVelocityDynamics:
        return ConstantVelocityDynamics(
            process_noise=self.process_noise, initial_velocity_std=self.initial_velocity_std,
            smooth=False, **births,
        )
