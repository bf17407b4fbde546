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

This module also holds :class:`_VEMTrackerBase`, the input/output plumbing shared with
:class:`~mixest.baselines.DeepARTracker` (pixel boxes in, normalised ``xyxy`` inside, pixel
boxes out).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixest.base import SequenceEstimator, check_sequences
from mixest.mixture._dynamics import SourceDynamics

from ._kalman import constant_velocity_model, kalman_predict, rts_smoother

__all__ = ["KalmanDynamics", "VKFTracker", "kalman_update_information"]


def _mT(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def kalman_update_information(
    mean: np.ndarray,
    covariance: np.ndarray,
    info_vec: np.ndarray,
    info_prec: np.ndarray,
    observation_matrix: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Kalman update by evidence given in information form (batched).

    The evidence ``xi = Lambda o_bar`` and ``Lambda = R^{-1}`` (possibly singular, e.g. zero when
    nothing is assigned) enters through ``K = P H^T (I + Lambda H P H^T)^{-1} Lambda``, which is
    the usual gain ``P H^T (H P H^T + R)^{-1}`` without ever forming ``R``:

    .. math::

        m^+ = m + P H^T (I + \\Lambda C)^{-1} (\\xi - \\Lambda H m), \\quad
        P^+ = (I - K H) P (I - K H)^T + K \\Lambda^{-1} K^T,

    with ``C = H P H^T`` and ``K Lambda^{-1} K^T = P H^T A^{-1} Lambda A^{-T} H P``,
    ``A = I + Lambda C`` (Joseph's form, finite for any ``Lambda >= 0``).

    Parameters
    ----------
    mean : ndarray of shape (..., Dx)
    covariance : ndarray of shape (..., Dx, Dx)
    info_vec : ndarray of shape (..., Dz)
        ``xi = sum_k eta_k Phi_k^{-1} o_k``.
    info_prec : ndarray of shape (..., Dz) or (..., Dz, Dz)
        ``Lambda = sum_k eta_k Phi_k^{-1}``: its diagonal, or the full matrix.
    observation_matrix : ndarray of shape (Dz, Dx)

    Returns
    -------
    mean, covariance : ndarray
        Posterior ``(..., Dx)`` and ``(..., Dx, Dx)``.
    """
    H = np.asarray(observation_matrix, dtype=float)
    Dz = H.shape[0]
    lam = info_prec if info_prec.ndim == covariance.ndim else info_prec[..., :, None] * np.eye(Dz)
    PHt = covariance @ H.T
    C = H @ PHt
    A = np.eye(Dz) + lam @ C
    innov = info_vec - np.einsum("...ij,...j->...i", lam, np.einsum("ij,...j->...i", H, mean))
    step = np.linalg.solve(A, innov[..., None])[..., 0]
    new_mean = mean + np.einsum("...ij,...j->...i", PHt, step)
    # K = P H^T A^{-1} Lambda, via the solve A^T Y = ... : K^T = Lambda A^{-T} H P.
    AinvT_HP = np.linalg.solve(_mT(A), _mT(PHt))  # A^{-T} H P
    gain = _mT(lam @ AinvT_HP)
    I_KH = np.eye(mean.shape[-1]) - gain @ H
    noise = _mT(AinvT_HP) @ lam @ AinvT_HP  # P H^T A^{-1} Lambda A^{-T} H P
    new_cov = I_KH @ covariance @ _mT(I_KH) + noise
    return new_mean, 0.5 * (new_cov + _mT(new_cov))


class KalmanDynamics(SourceDynamics):
    """Constant-velocity linear-Gaussian source model for the VEM engine (VKF's E-S step).

    The state of a source is ``[box, velocity]`` (``2 D`` values); noises are expressed in units
    of the source's box size ``(w, h, w, h)`` at the first frame, so one setting works for small
    and large boxes. The forward pass is a batched Kalman filter fed with the pseudo-observations
    (in information form); :meth:`smooth` runs the RTS smoother over the stored filtered states
    and, with ``learn_process_noise``, the M-step of the process-noise intensity per source and
    coordinate (kept for the next E-S step).

    Parameters
    ----------
    process_noise : float, default=0.02
        Intensity ``q`` of the white-noise acceleration (see
        :func:`~mixest.baselines._kalman.constant_velocity_model`), in box sizes per frame.
    initial_position_std : float, default=0.5
        Prior standard deviation of the first position around the engine's first-frame guess,
        in box sizes.
    initial_velocity_std : float, default=0.1
        Prior standard deviation of the first velocity, in box sizes per frame.
    smooth : bool, default=True
        Run the RTS smoother after the filter (``False`` gives a filtering-only E-S step).
    learn_process_noise : bool, default=False
        M-step of ``q^2`` from the smoothed moments after every E-S step.
    """

    def __init__(
        self,
        process_noise: float = 0.02,
        initial_position_std: float = 0.5,
        initial_velocity_std: float = 0.1,
        smooth: bool = True,
        learn_process_noise: bool = False,
    ):
        self.process_noise = process_noise
        self.initial_position_std = initial_position_std
        self.initial_velocity_std = initial_velocity_std
        self.do_smooth = smooth
        self.learn_process_noise = learn_process_noise
        self.q2_: np.ndarray | None = None  # learned intensity per source and coordinate

    def _scale(self, m0: np.ndarray) -> np.ndarray:
        D = m0.shape[-1]
        if D == 4:  # boxes: (w, h, w, h), floored for degenerate boxes
            wh = np.maximum(m0[..., 2:] - m0[..., :2], 1e-3)
            return np.concatenate([wh, wh], axis=-1)
        return np.ones_like(m0)

    def begin(self, m0: np.ndarray) -> dict:
        M, D = m0.shape
        scale = self._scale(m0)
        if self.q2_ is None or self.q2_.shape != (M, D):
            q2 = (self.process_noise * scale) ** 2
        else:
            q2 = self.q2_
        F, H, Q = constant_velocity_model(D, np.sqrt(q2))
        std = np.concatenate(
            [self.initial_position_std * scale, self.initial_velocity_std * scale], axis=-1
        )
        self._F, self._H, self._Q = F, H, Q
        self._history: list[tuple[np.ndarray, np.ndarray]] = []
        return {"x": np.concatenate([m0, np.zeros((M, D))], axis=-1),
                "P": std[:, :, None] ** 2 * np.eye(2 * D)}

    def predict(self, state: dict, t: int) -> tuple[np.ndarray, np.ndarray, dict]:
        x, P = state["x"], state["P"]
        if t > 0:  # the first frame's prior is the initial one
            x, P = kalman_predict(x, P, self._F, self._Q)
        D = self._H.shape[0]
        return x[:, :D], np.diagonal(P[:, :D, :D], axis1=1, axis2=2).copy(), {"x": x, "P": P}

    def update(
        self,
        state: dict,
        t: int,
        mean: np.ndarray,
        var: np.ndarray,
        info_vec: np.ndarray,
        info_prec: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        x, P = kalman_update_information(state["x"], state["P"], info_vec, info_prec, self._H)
        self._history.append((x, P))
        return (*self._marginal(x, P, full=info_prec.ndim == 3), {"x": x, "P": P})

    def _marginal(self, x: np.ndarray, P: np.ndarray, full: bool) -> tuple[np.ndarray, np.ndarray]:
        D = self._H.shape[0]
        cov = P[..., :D, :D]
        return x[..., :D], cov.copy() if full else np.diagonal(cov, axis1=-2, axis2=-1).copy()

    def smooth(self, means: np.ndarray, covs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self._history) != means.shape[1]:
            # The forward pass did not go through update (should not happen with the engine).
            return means, covs
        if not self.do_smooth:
            return means, covs
        xf = np.stack([h[0] for h in self._history], axis=1)  # (M, T, 2D)
        Pf = np.stack([h[1] for h in self._history], axis=1)
        xs, Ps, cross = rts_smoother(
            xf, Pf, transition_matrix=self._F, transition_covariance=self._Q
        )
        if self.learn_process_noise and xs.shape[1] > 1:
            self.q2_ = self._m_step_q2(xs, Ps, cross)
        return self._marginal(xs, Ps, full=covs.ndim == 4)

    def _m_step_q2(self, xs: np.ndarray, Ps: np.ndarray, cross: np.ndarray) -> np.ndarray:
        """EM update of the acceleration intensity ``q^2`` per source and coordinate.

        With ``e_t = x_t - F x_{t-1}`` and ``Q = q^2 Q_0`` on every (position, velocity) pair,
        ``q^2 = mean_t tr(Q_0^{-1} E[e_t e_t^T]) / 2`` over the 2x2 blocks of ``E[e e^T]``.
        """
        F = self._F
        D = F.shape[0] // 2
        r = xs[:, 1:] - np.einsum("ij,mtj->mti", F, xs[:, :-1])
        FPc = F @ _mT(cross)  # F Cov(x_{t-1}, x_t)
        E = (
            r[..., :, None] * r[..., None, :]
            + Ps[:, 1:]
            - FPc
            - _mT(FPc)
            + F @ Ps[:, :-1] @ F.T
        )  # (M, T-1, 2D, 2D)
        idx = np.arange(D)
        blocks = np.stack(
            [
                np.stack([E[..., idx, idx], E[..., idx, idx + D]], -1),
                np.stack([E[..., idx + D, idx], E[..., idx + D, idx + D]], -1),
            ],
            -2,
        )  # (M, T-1, D, 2, 2)
        Q0 = np.array([[1.0 / 3.0, 0.5], [0.5, 1.0]])
        q2 = 0.5 * np.trace(np.linalg.solve(Q0, blocks), axis1=-2, axis2=-1).mean(1)  # (M, D)
        return np.maximum(q2, 1e-12)

    def infer_latents(self, means: np.ndarray, rng: np.random.Generator) -> None:
        """No latent variables: nothing to infer."""


class _VEMTrackerBase(SequenceEstimator):
    """Input/output plumbing of the VEM trackers of :mod:`mixest.baselines`.

    Subclasses implement ``fit`` (learn or load the dynamics) and ``_dynamics()`` (a fresh
    :class:`~mixest.mixture._dynamics.SourceDynamics`); this class runs the shared engine
    (:func:`mixest.mixture._vem.run_vem`) with MixDVAE's observation model.
    """

    _input_kind = "detections"
    _boxes_only = False  # True for models whose dynamics need box sizes
    _common_constraints: dict = {
        "n_sources": [Interval(Integral, 1, None, closed="left")],
        "obs_noise": [Interval(Real, 0, None, closed="neither")],
        "clutter": ["boolean"],
        "clutter_weight": [Interval(Real, 0, 1, closed="neither")],
        "assignment_temperature": [Interval(Real, 0, None, closed="neither")],
        "update_noise": ["boolean"],
        "update_weights": ["boolean"],
        "init": [StrOptions({"filter", "first-frame", "chunked"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "box_format": [StrOptions({"xywh", "xyxy", "cxcywh"})],
        "image_size": [tuple, list, np.ndarray, None],
        "random_state": ["random_state"],
        "verbose": ["boolean"],
    }

    def _check_X(self, X: object) -> np.ndarray:
        if isinstance(X, list) and X and hasattr(X[0], "columns"):
            # MOTChallenge-style detection tables, one per sequence (xywh pixels)
            from mixest.tracking._boxes import convert_boxes
            from mixest.tracking._motchallenge import detections_to_array

            arrays = [detections_to_array(table) for table in X]
            T = max(a.shape[0] for a in arrays)
            K = max(a.shape[1] for a in arrays)
            out = np.full((len(arrays), T, K, 4), np.nan)
            for i, a in enumerate(arrays):  # one table per sequence: not a hot path
                out[i, : a.shape[0], : a.shape[1]] = a
            X = convert_boxes(out, "xywh", self.box_format)
        if self._boxes_only:
            return check_sequences(
                X, ndim=4, allow_nan=True, last_dim=4, axis_names="(n_sequences, T, K, 4)"
            )
        X = check_sequences(X, ndim=4, allow_nan=True, axis_names="(n_sequences, T, K, D)")
        if hasattr(self, "n_features_in_") and X.shape[-1] != self.n_features_in_:
            raise ValueError(
                f"X has D = {X.shape[-1]} coordinates, the tracker was fitted with "
                f"{self.n_features_in_}."
            )
        return X

    def _size(self) -> tuple[float, float]:
        return (1.0, 1.0) if self.image_size is None else self.image_size

    def _normalise(self, X: np.ndarray) -> np.ndarray:
        """Boxes -> image-normalised ``xyxy``; other points are divided by ``(w, h, w, ...)``."""
        from mixest.tracking._boxes import normalize_boxes

        if X.shape[-1] != 4:
            return X / np.resize(np.asarray(self._size(), dtype=float), X.shape[-1])
        return normalize_boxes(X, self._size(), self.box_format)

    def _phi(self, Xn: np.ndarray) -> np.ndarray:
        """Diagonal observation noise per detection (normalised units).

        ``(r w, r h, r w, r h)^2`` for boxes; an isotropic ``r^2`` for other points.
        """
        if Xn.shape[-1] != 4:
            return np.full(Xn.shape, self.obs_noise**2)
        wh = np.maximum(Xn[..., 2:] - Xn[..., :2], 1e-4)
        phi = (self.obs_noise * np.concatenate([wh, wh], axis=-1)) ** 2
        return np.where(np.isnan(phi), 1.0, phi)

    def _dynamics(self) -> SourceDynamics:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self, X: object) -> Any:
        from mixest.mixture._vem import run_vem

        check_is_fitted(self, "n_features_in_")
        X = self._check_X(X)
        Xn = self._normalise(X)
        rng = np.random.default_rng(check_random_state(self.random_state).randint(2**31 - 1))
        dynamics = self._dynamics()
        result = run_vem(
            Xn,
            dynamics,
            n_sources=self.n_sources,
            phi=self._phi(Xn),
            max_iter=self.max_iter,
            tol=self.tol,
            clutter=self.clutter,
            clutter_weight=self.clutter_weight,
            temperature=self.assignment_temperature,
            update_phi=self.update_noise,
            update_pi=self.update_weights,
            init=self.init,
            init_dynamics=self._init_dynamics(),
            random_state=rng,
            verbose=self.verbose,
        )
        self.n_iter_ = result.n_iter
        return result

    def _init_dynamics(self) -> SourceDynamics | None:
        return None

    def _to_output(self, means: np.ndarray) -> np.ndarray:
        from mixest.tracking._boxes import denormalize_boxes

        if means.shape[-1] != 4:
            return means * np.resize(np.asarray(self._size(), dtype=float), means.shape[-1])
        boxes = np.array(means, copy=True)
        boxes[..., 2:] = np.maximum(boxes[..., 2:], boxes[..., :2])  # keep corners ordered
        return denormalize_boxes(boxes, self._size(), self.box_format)

    def predict(self, X: object) -> np.ndarray:
        """Track the ``n_sources`` objects of every sequence.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, 4) or list of DataFrame
            Detections in ``box_format`` and pixels (NaN rows are missing detections), or
            MOTChallenge-style detection tables, one per sequence.

        Returns
        -------
        tracks : ndarray of shape (n_sequences, T, n_sources, 4)
            Posterior mean boxes in ``box_format``.
        """
        return self._to_output(self._run(X).means)

    def predict_assignments(self, X: object) -> np.ndarray:
        """Posterior assignment probabilities ``(n_sequences, T, K, n_sources[+1])``.

        The last column is the clutter class when ``clutter=True``; rows of missing detections
        are zero.
        """
        return self._run(X).eta

    def score(self, X: object, y: object) -> float:
        """MOTA of :meth:`predict` against ground-truth tracks ``y`` (same units and format)."""
        from mixest.tracking._metrics import mota_score

        return mota_score(y, self.predict(X), box_format=self.box_format)


class VKFTracker(_VEMTrackerBase):
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
    obs_noise : float, default=0.04
        ``r`` of ``Phi_tk = diag((r w_k)^2, (r h_k)^2, (r w_k)^2, (r h_k)^2)``.
    clutter : bool, default=False
        Add a clutter class with a uniform density over the image.
    clutter_weight : float, default=0.05
        Prior probability of the clutter class.
    assignment_temperature : float, default=1.0
        Divides the quadratic term of E-W (the paper's code effectively uses 125).
    update_noise : bool, default=False
        M-step of the scale of ``Phi`` per sequence and coordinate.
    update_weights : bool, default=False
        M-step of the assignment prior ``pi``.
    init : {"filter", "first-frame", "chunked"}, default="filter"
        VEM initialisation (see :func:`mixest.mixture._vem.run_vem`); ``"filter"`` uses this
        tracker's own Kalman model, filtering only.
    max_iter : int, default=30
        Maximum number of VEM iterations.
    tol : float, default=1e-4
        Convergence threshold on the lower bound per frame and source.
    box_format : {"xywh", "xyxy", "cxcywh"}, default="xywh"
        Box convention of ``X``, of ``y`` in :meth:`score` and of the tracks.
    image_size : tuple of (width, height) or None, default=(1920, 1080)
        Image size in the units of ``X``; ``None`` (or ``(1, 1)``) for normalised boxes.
    random_state : int, RandomState instance or None, default=None
        Seed of the VEM (VKF itself is deterministic).
    verbose : bool, default=False
        Print the lower bound at every iteration.

    Attributes
    ----------
    n_features_in_ : int
        Number of coordinates per detection (4).
    n_iter_ : int
        VEM iterations of the last :meth:`predict` call.

    Notes
    -----
    Any number of coordinates ``D`` works: for ``D != 4`` the observations are points (e.g. 2-D
    positions) divided by ``image_size`` per axis, ``Phi = obs_noise^2 I`` in those units and
    the noises of the dynamics are in the same units (no box scale).

    Track birth (starting a new source from detections that no source explains) is not part of
    this fixed-``N`` implementation: every window of the benchmarks holds the same ``N`` objects
    from its first to its last frame.

    Examples
    --------
    >>> from mixest.baselines import VKFTracker
    >>> from mixest.datasets import make_tracking_mixture
    >>> X, y = make_tracking_mixture(2, n_frames=20, random_state=0)
    >>> vkf = VKFTracker(box_format="xyxy", image_size=(1, 1)).fit(X)
    >>> vkf.predict(X).shape
    (2, 20, 3, 4)
    """

    _test_params = {"n_sources": 2, "max_iter": 3}
    _parameter_constraints: dict = {
        **_VEMTrackerBase._common_constraints,
        "process_noise": [Interval(Real, 0, None, closed="neither")],
        "initial_velocity_std": [Interval(Real, 0, None, closed="neither")],
        "learn_process_noise": ["boolean"],
        "smooth": ["boolean"],
    }

    def __init__(
        self,
        n_sources: int = 3,
        *,
        process_noise: float = 0.02,
        initial_velocity_std: float = 0.1,
        learn_process_noise: bool = False,
        smooth: bool = True,
        obs_noise: float = 0.04,
        clutter: bool = False,
        clutter_weight: float = 0.05,
        assignment_temperature: float = 1.0,
        update_noise: bool = False,
        update_weights: bool = False,
        init: str = "filter",
        max_iter: int = 30,
        tol: float = 1e-4,
        box_format: str = "xywh",
        image_size: tuple[float, float] | None = (1920, 1080),
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ):
        self.n_sources = n_sources
        self.process_noise = process_noise
        self.initial_velocity_std = initial_velocity_std
        self.learn_process_noise = learn_process_noise
        self.smooth = smooth
        self.obs_noise = obs_noise
        self.clutter = clutter
        self.clutter_weight = clutter_weight
        self.assignment_temperature = assignment_temperature
        self.update_noise = update_noise
        self.update_weights = update_weights
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.box_format = box_format
        self.image_size = image_size
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
        X = self._check_X(X)
        self.n_features_in_ = X.shape[-1]
        return self

    def _dynamics(self) -> KalmanDynamics:
        return KalmanDynamics(
            process_noise=self.process_noise,
            initial_velocity_std=self.initial_velocity_std,
            smooth=self.smooth,
            learn_process_noise=self.learn_process_noise,
        )

    def _init_dynamics(self) -> KalmanDynamics:
        return KalmanDynamics(
            process_noise=self.process_noise,
            initial_velocity_std=self.initial_velocity_std,
            smooth=False,
        )
