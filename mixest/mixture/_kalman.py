"""The package's one Kalman model: batched filter and smoother, and constant-velocity dynamics.

The functions are a batched linear-Gaussian Kalman filter and Rauch-Tung-Striebel smoother
(NumPy), tested against filterpy; :class:`ConstantVelocityDynamics` runs them as a source model
of the VEM engine (the VKF tracker's E-S step, MixDVAE's online initialisation and its
``prior="constant-velocity"``), and SORT uses them directly.

The recursions run over the time axis while every other leading axis (sequences, sources, ...)
is a batch axis, so a whole E-S step of the VKF tracker is a single call. Missing observations
(any NaN in an observation row) skip the update. Gains are computed with linear solves against
the (symmetric positive definite) innovation and predicted covariances; no matrix is inverted.

The model is

.. math::

    x_0 \\sim \\mathcal{N}(\\mu_0, P_0), \\quad
    x_t = F x_{t-1} + w_t,\\ w_t \\sim \\mathcal{N}(0, Q), \\quad
    z_t = H x_t + v_t,\\ v_t \\sim \\mathcal{N}(0, R_t),

i.e. ``initial_mean`` and ``initial_covariance`` are the prior of the *first* state, which the
first observation updates directly (no prediction step before ``t = 0``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mixest.mixture._dynamics import Dynamics

__all__ = [
    "ConstantVelocityDynamics",
    "KalmanResult",
    "constant_velocity_model",
    "kalman_filter",
    "kalman_predict",
    "kalman_smoother",
    "kalman_update",
    "kalman_update_information",
    "rts_smoother",
]

_LOG_2PI = np.log(2.0 * np.pi)
#: Unit of ConstantVelocityDynamics' noises for points (D != 4), which have no size of their
#: own: 0.05 image widths, about the size of a pedestrian box of the synthetic training data.
POINT_SIZE = 0.05


class KalmanResult(NamedTuple):
    """Output of :func:`kalman_filter` (and, smoothed, of :func:`kalman_smoother`).

    Attributes
    ----------
    means : ndarray of shape (..., T, Dx)
        Filtered (or smoothed) state means.
    covariances : ndarray of shape (..., T, Dx, Dx)
        Filtered (or smoothed) state covariances.
    predicted_means : ndarray of shape (..., T, Dx)
        One-step predicted means ``E[x_t | z_{<t}]`` (the prior at ``t = 0``).
    predicted_covariances : ndarray of shape (..., T, Dx, Dx)
        One-step predicted covariances.
    log_likelihood : ndarray of shape (...)
        Log marginal likelihood ``log p(z_{1:T})`` of the observed (non-missing) rows.
    cross_covariances : ndarray of shape (..., T - 1, Dx, Dx) or None
        Smoothed lag-one covariances ``Cov(x_{t+1}, x_t | z_{1:T})`` (smoother only); they
        are the sufficient statistics of an EM update of ``Q``.
    """

    means: np.ndarray
    covariances: np.ndarray
    predicted_means: np.ndarray
    predicted_covariances: np.ndarray
    log_likelihood: np.ndarray
    cross_covariances: np.ndarray | None = None


def _mT(a: np.ndarray) -> np.ndarray:
    """Transpose of the last two axes."""
    return np.swapaxes(a, -1, -2)


def _symmetrize(a: np.ndarray) -> np.ndarray:
    # Round-off makes covariances drift from symmetry over long sequences.
    return 0.5 * (a + _mT(a))


def kalman_predict(
    mean: np.ndarray,
    covariance: np.ndarray,
    transition_matrix: np.ndarray,
    transition_covariance: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One batched prediction step ``x -> F x``, ``P -> F P F^T + Q``.

    Parameters
    ----------
    mean : ndarray of shape (..., Dx)
    covariance : ndarray of shape (..., Dx, Dx)
    transition_matrix : ndarray of shape (..., Dx, Dx)
        ``F``, broadcast against the batch axes.
    transition_covariance : ndarray of shape (..., Dx, Dx)
        ``Q``, broadcast against the batch axes.

    Returns
    -------
    mean, covariance : ndarray
        Predicted mean ``(..., Dx)`` and covariance ``(..., Dx, Dx)``.
    """
    F = np.asarray(transition_matrix, dtype=float)
    pred_mean = np.einsum("...ij,...j->...i", F, mean)
    pred_cov = F @ covariance @ _mT(F) + transition_covariance
    return pred_mean, _symmetrize(pred_cov)


def kalman_update(
    mean: np.ndarray,
    covariance: np.ndarray,
    observation: np.ndarray,
    observation_covariance: np.ndarray,
    observation_matrix: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batched measurement update; rows whose observation has a NaN are left unchanged.

    The covariance uses Joseph's form ``(I - K H) P (I - K H)^T + K R K^T``, which stays
    symmetric positive semi-definite under round-off, and the gain comes from a linear solve
    ``S K^T = H P`` with the innovation covariance ``S = H P H^T + R``.

    Parameters
    ----------
    mean : ndarray of shape (..., Dx)
    covariance : ndarray of shape (..., Dx, Dx)
    observation : ndarray of shape (..., Dz)
        NaN anywhere in a row marks that row as missing.
    observation_covariance : ndarray of shape (..., Dz, Dz)
        ``R``, broadcast against the batch axes.
    observation_matrix : ndarray of shape (..., Dz, Dx)
        ``H``, broadcast against the batch axes.

    Returns
    -------
    mean : ndarray of shape (..., Dx)
        Posterior mean.
    covariance : ndarray of shape (..., Dx, Dx)
        Posterior covariance.
    log_likelihood : ndarray of shape (...)
        ``log N(z; H x, S)`` for observed rows, 0 for missing rows.
    """
    H = np.asarray(observation_matrix, dtype=float)
    observation = np.asarray(observation, dtype=float)
    batch = np.broadcast_shapes(mean.shape[:-1], observation.shape[:-1])
    Dz = observation.shape[-1]
    observed = ~np.isnan(observation).any(axis=-1)
    # Missing rows get a harmless dummy problem (z = Hx, R = I) and are discarded below, so
    # NaN never reaches the shared linear algebra.
    R = np.broadcast_to(observation_covariance, batch + (Dz, Dz))
    R = np.where(observed[..., None, None], R, np.eye(Dz))
    HP = H @ covariance
    S = _symmetrize(HP @ _mT(H) + R)
    predicted_obs = np.einsum("...ij,...j->...i", H, mean)
    residual = np.where(observed[..., None], observation - predicted_obs, 0.0)
    gain = _mT(np.linalg.solve(S, np.broadcast_to(HP, batch + HP.shape[-2:])))
    new_mean = mean + np.einsum("...ij,...j->...i", gain, residual)
    I_KH = np.eye(mean.shape[-1]) - gain @ H
    new_cov = _symmetrize(I_KH @ covariance @ _mT(I_KH) + gain @ R @ _mT(gain))
    chol = np.linalg.cholesky(S)
    white = np.linalg.solve(chol, residual[..., None])[..., 0]
    log_lik = -0.5 * (
        np.sum(white**2, axis=-1)
        + 2.0 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
        + Dz * _LOG_2PI
    )
    new_mean = np.where(observed[..., None], new_mean, mean)
    new_cov = np.where(observed[..., None, None], new_cov, covariance)
    return new_mean, new_cov, np.where(observed, log_lik, 0.0)


def _time_slice(a: np.ndarray, t: int) -> np.ndarray:
    """Slice time step ``t`` of an array shaped ``(..., T, d1, d2)`` (size-1 T broadcasts)."""
    return a[..., 0 if a.shape[-3] == 1 else t, :, :]


def kalman_filter(
    observations: np.ndarray,
    *,
    transition_matrix: np.ndarray,
    observation_matrix: np.ndarray,
    transition_covariance: np.ndarray,
    observation_covariance: np.ndarray,
    initial_mean: np.ndarray,
    initial_covariance: np.ndarray,
) -> KalmanResult:
    """Batched Kalman filter over the second-to-last axis of ``observations``.

    Parameters
    ----------
    observations : ndarray of shape (..., T, Dz)
        Observations; a row with any NaN is missing (no update at that step).
    transition_matrix : ndarray of shape (..., Dx, Dx)
        ``F``, constant in time, broadcast against the batch axes ``...``.
    observation_matrix : ndarray of shape (..., Dz, Dx)
        ``H``, constant in time.
    transition_covariance : ndarray of shape (..., Dx, Dx)
        Process noise ``Q``, constant in time.
    observation_covariance : ndarray of shape (..., T, Dz, Dz)
        Observation noise ``R_t``; a size-1 time axis (or a plain ``(Dz, Dz)`` matrix) means
        constant in time.
    initial_mean : ndarray of shape (..., Dx)
        Prior mean of the first state.
    initial_covariance : ndarray of shape (..., Dx, Dx)
        Prior covariance of the first state.

    Returns
    -------
    result : KalmanResult
        Filtered moments, one-step predictions and the log marginal likelihood, with batch
        shape ``...`` broadcast from all inputs.
    """
    Z = np.asarray(observations, dtype=float)
    if Z.ndim < 2:
        raise ValueError(f"observations must have shape (..., T, Dz), got {Z.shape}.")
    T, Dz = Z.shape[-2:]
    F = np.asarray(transition_matrix, dtype=float)
    H = np.asarray(observation_matrix, dtype=float)
    Q = np.asarray(transition_covariance, dtype=float)
    R = np.asarray(observation_covariance, dtype=float)
    m0 = np.asarray(initial_mean, dtype=float)
    P0 = np.asarray(initial_covariance, dtype=float)
    Dx = m0.shape[-1]
    if H.shape[-2:] != (Dz, Dx) or F.shape[-2:] != (Dx, Dx) or Q.shape[-2:] != (Dx, Dx):
        raise ValueError(
            f"inconsistent model shapes: observations (..., T, {Dz}), initial_mean (..., {Dx}), "
            f"F {F.shape}, H {H.shape}, Q {Q.shape}."
        )
    if R.shape[-2:] != (Dz, Dz):
        raise ValueError(f"observation_covariance must end in ({Dz}, {Dz}), got {R.shape}.")
    if R.ndim == 2:
        R = R[None]
    if R.shape[-3] not in (1, T):
        raise ValueError(
            f"observation_covariance must have a time axis of size 1 or T={T}, got {R.shape}."
        )
    batch = np.broadcast_shapes(
        Z.shape[:-2], m0.shape[:-1], P0.shape[:-2], F.shape[:-2], H.shape[:-2], Q.shape[:-2],
        R.shape[:-3],
    )
    means = np.empty(batch + (T, Dx))
    covs = np.empty(batch + (T, Dx, Dx))
    pred_means = np.empty(batch + (T, Dx))
    pred_covs = np.empty(batch + (T, Dx, Dx))
    log_lik = np.zeros(batch)
    mean = np.broadcast_to(m0, batch + (Dx,)).astype(float)
    cov = np.broadcast_to(P0, batch + (Dx, Dx)).astype(float)
    for t in range(T):
        if t > 0:
            mean, cov = kalman_predict(mean, cov, F, Q)
        pred_means[..., t, :] = mean
        pred_covs[..., t, :, :] = cov
        mean, cov, ll = kalman_update(mean, cov, Z[..., t, :], _time_slice(R, t), H)
        means[..., t, :] = mean
        covs[..., t, :, :] = cov
        log_lik += ll
    return KalmanResult(means, covs, pred_means, pred_covs, log_lik)


def rts_smoother(
    filtered_means: np.ndarray,
    filtered_covariances: np.ndarray,
    *,
    transition_matrix: np.ndarray,
    transition_covariance: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched Rauch-Tung-Striebel smoother from filtered moments.

    With ``P^-_{t+1} = F P_t F^T + Q`` and the smoother gain ``G_t = P_t F^T (P^-_{t+1})^{-1}``
    (computed by the solve ``P^-_{t+1} G_t^T = F P_t``), the backward pass is

    .. math::

        m^s_t = m_t + G_t (m^s_{t+1} - F m_t), \\quad
        P^s_t = P_t + G_t (P^s_{t+1} - P^-_{t+1}) G_t^T.

    Parameters
    ----------
    filtered_means : ndarray of shape (..., T, Dx)
    filtered_covariances : ndarray of shape (..., T, Dx, Dx)
    transition_matrix : ndarray of shape (..., Dx, Dx)
    transition_covariance : ndarray of shape (..., Dx, Dx)

    Returns
    -------
    means : ndarray of shape (..., T, Dx)
        Smoothed means.
    covariances : ndarray of shape (..., T, Dx, Dx)
        Smoothed covariances.
    cross_covariances : ndarray of shape (..., T - 1, Dx, Dx)
        ``Cov(x_{t+1}, x_t | z_{1:T}) = P^s_{t+1} G_t^T``.
    """
    m = np.asarray(filtered_means, dtype=float)
    P = np.asarray(filtered_covariances, dtype=float)
    F = np.asarray(transition_matrix, dtype=float)
    Q = np.asarray(transition_covariance, dtype=float)
    T = m.shape[-2]
    batch = np.broadcast_shapes(m.shape[:-2], P.shape[:-3], F.shape[:-2], Q.shape[:-2])
    Dx = m.shape[-1]
    sm = np.empty(batch + (T, Dx))
    sP = np.empty(batch + (T, Dx, Dx))
    cross = np.empty(batch + (max(T - 1, 0), Dx, Dx))
    sm[..., T - 1, :] = m[..., T - 1, :]
    sP[..., T - 1, :, :] = P[..., T - 1, :, :]
    for t in range(T - 2, -1, -1):
        m_t, P_t = m[..., t, :], P[..., t, :, :]
        pred_m, pred_P = kalman_predict(m_t, P_t, F, Q)
        FP = np.broadcast_to(F @ P_t, batch + (Dx, Dx))
        gain = _mT(np.linalg.solve(np.broadcast_to(pred_P, batch + (Dx, Dx)), FP))
        sm[..., t, :] = m_t + np.einsum("...ij,...j->...i", gain, sm[..., t + 1, :] - pred_m)
        sP[..., t, :, :] = _symmetrize(P_t + gain @ (sP[..., t + 1, :, :] - pred_P) @ _mT(gain))
        cross[..., t, :, :] = sP[..., t + 1, :, :] @ _mT(gain)
    return sm, sP, cross


def kalman_smoother(
    observations: np.ndarray,
    *,
    transition_matrix: np.ndarray,
    observation_matrix: np.ndarray,
    transition_covariance: np.ndarray,
    observation_covariance: np.ndarray,
    initial_mean: np.ndarray,
    initial_covariance: np.ndarray,
) -> KalmanResult:
    """Kalman filter followed by the RTS smoother; same parameters as :func:`kalman_filter`.

    Returns
    -------
    result : KalmanResult
        ``means`` and ``covariances`` are the smoothed moments; ``predicted_*`` and
        ``log_likelihood`` come from the forward pass; ``cross_covariances`` holds the lag-one
        smoothed covariances.
    """
    filt = kalman_filter(
        observations,
        transition_matrix=transition_matrix,
        observation_matrix=observation_matrix,
        transition_covariance=transition_covariance,
        observation_covariance=observation_covariance,
        initial_mean=initial_mean,
        initial_covariance=initial_covariance,
    )
    sm, sP, cross = rts_smoother(
        filt.means,
        filt.covariances,
        transition_matrix=transition_matrix,
        transition_covariance=transition_covariance,
    )
    return filt._replace(means=sm, covariances=sP, cross_covariances=cross)


def constant_velocity_model(
    n_dims: int, process_noise: float | np.ndarray, dt: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constant-velocity (continuous white-noise acceleration) model on a ``n_dims``-D position.

    The state is ``[position, velocity]`` of size ``2 * n_dims``; the process noise is the
    exact discretisation of a white acceleration of intensity ``q^2`` per coordinate,
    ``Q = q^2 [[dt^3/3, dt^2/2], [dt^2/2, dt]]`` on each (position, velocity) pair. Unlike the
    piecewise-constant form ``[[dt^4/4, dt^3/2], [dt^3/2, dt^2]]`` it has full rank, so ``q^2``
    has a closed-form EM update.

    Parameters
    ----------
    n_dims : int
        Number of observed coordinates (4 for boxes).
    process_noise : float or ndarray of shape (..., n_dims)
        Square root ``q`` of the acceleration noise intensity per coordinate (about the
        velocity's standard deviation of change per unit time); extra leading axes give a batch
        of ``Q`` matrices.
    dt : float, default=1.0
        Time step.

    Returns
    -------
    F : ndarray of shape (2 n_dims, 2 n_dims)
        Transition matrix.
    H : ndarray of shape (n_dims, 2 n_dims)
        Observation matrix (positions only).
    Q : ndarray of shape (..., 2 n_dims, 2 n_dims)
        Process noise covariance.
    """
    D = int(n_dims)
    eye = np.eye(D)
    F = np.block([[eye, dt * eye], [np.zeros((D, D)), eye]])
    H = np.hstack([eye, np.zeros((D, D))])
    q2 = np.asarray(process_noise, dtype=float) ** 2
    q2 = np.broadcast_to(q2, q2.shape[:-1] + (D,)) if q2.ndim else np.full(D, q2)
    block = np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
    # Q[..., a*D + i, b*D + j] = block[a, b] * q2[..., i] * delta_ij
    Q = np.einsum("ab,...i,ij->...aibj", block, q2, eye).reshape(q2.shape[:-1] + (2 * D, 2 * D))
    return F, H, Q


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


class ConstantVelocityDynamics(Dynamics):
    """Constant-velocity linear-Gaussian source model for the VEM engine.

    The E-S step of the VKF tracker, MixDVAE's online initialisation (filtering only) and
    ``MixDVAETracker(prior="constant-velocity")``. The state of a source is
    ``[position, velocity]`` (``2 D`` values); for boxes (``D = 4``) noises are expressed in
    units of the source's box size ``(w, h, w, h)`` at the first frame, so one setting works for
    small and large boxes; for other points (``D != 4``) the unit is :data:`POINT_SIZE`. The
    forward pass is a batched Kalman
    filter fed with the pseudo-observations (in information form); :meth:`smooth` runs the RTS
    smoother over the stored filtered states and, with ``learn_process_noise``, the M-step of
    the process-noise intensity per source and coordinate (kept for the next E-S step).

    Parameters
    ----------
    process_noise : float, default=0.02
        Intensity ``q`` of the white-noise acceleration (see
        :func:`constant_velocity_model`), in box sizes per frame.
    initial_position_std : float, default=0.5
        Prior standard deviation of the first position around the engine's first-frame guess,
        in box sizes.
    initial_velocity_std : float, default=0.1
        Prior standard deviation of the first velocity, in box sizes per frame.
    smooth : bool, default=True
        Run the RTS smoother after the filter (``False`` gives a filtering-only E-S step).
    learn_process_noise : bool, default=False
        M-step of ``q^2`` from the smoothed moments after every E-S step.
    birth_frames : ndarray of int of shape (M,), optional
        First frame of each source (track birth). Before it a source does not exist: its prior
        is flat (variance :data:`ABSENT_VAR` per coordinate), it takes no evidence and its
        posterior is that prior, so it claims no detection in E-W and adds nothing to the
        lower bound. At its birth frame its state is drawn afresh from
        ``N(birth_means, birth_covs)`` (no transition from the frame before). ``0`` is an
        ordinary source; ``M`` must then be the number of sources of every forward pass
        (the engine's ``tol=0``, which never drops converged sequences from the batch).
    birth_means : ndarray of shape (M, 2 D), optional
        Birth state ``[box, velocity]`` of each source. Where ``birth_frames == 0`` a NaN row
        keeps the default first-frame prior (around the engine's ``m0``); a finite row replaces
        it. A source with a birth law has its noises scaled by its birth box.
    birth_covs : ndarray of shape (M, 2 D, 2 D), optional
        Birth state covariance.
    """

    #: prior variance (normalised units) of a source that does not exist yet
    ABSENT_VAR = 1.0

    def __init__(
        self,
        process_noise: float = 0.02,
        initial_position_std: float = 0.5,
        initial_velocity_std: float = 0.1,
        smooth: bool = True,
        learn_process_noise: bool = False,
        birth_frames: np.ndarray | None = None,
        birth_means: np.ndarray | None = None,
        birth_covs: np.ndarray | None = None,
    ):
        self.process_noise = process_noise
        self.initial_position_std = initial_position_std
        self.initial_velocity_std = initial_velocity_std
        self.do_smooth = smooth
        self.learn_process_noise = learn_process_noise
        self.birth_frames = birth_frames
        self.birth_means = birth_means
        self.birth_covs = birth_covs
        self.q2_: np.ndarray | None = None  # learned intensity per source and coordinate

    def _scale(self, m0: np.ndarray) -> np.ndarray:
        D = m0.shape[-1]
        if D == 4:  # boxes: (w, h, w, h), floored for degenerate boxes
            wh = np.maximum(m0[..., 2:] - m0[..., :2], 1e-3)
            return np.concatenate([wh, wh], axis=-1)
        return np.full_like(m0, POINT_SIZE)

    def begin(self, m0: np.ndarray) -> dict:
        M, D = m0.shape
        self._law = None
        if self.birth_frames is not None:
            if len(self.birth_frames) != M:
                raise ValueError(
                    f"birth_frames has {len(self.birth_frames)} sources, the forward pass {M}."
                )
            # Sources with a birth law are scaled by their birth box, not by m0.
            self._law = (self.birth_frames > 0) | np.isfinite(self.birth_means).all(-1)
            m0 = np.where(self._law[:, None], self.birth_means[:, :D], m0)
        scale = self._scale(m0)
        if self.q2_ is None or self.q2_.shape != (M, D):
            q2 = (self.process_noise * scale) ** 2
        else:
            q2 = self.q2_
        F, H, Q = constant_velocity_model(D, np.sqrt(q2))
        pos_var = (self.initial_position_std * scale) ** 2
        vel_var = (self.initial_velocity_std * scale) ** 2
        self._F, self._H, self._Q = F, H, Q
        self._history: list = []
        # Coordinates are independent unless a birth law couples them, so the filter can run
        # on 2x2 (position, velocity) blocks element-wise: several times faster than the
        # (2D, 2D) matrices, which remain for births, the M-step and full evidence.
        self._blocks = (self.birth_frames is None and not self.learn_process_noise)
        if self._blocks:
            self._q = (q2 / 3.0, q2 / 2.0, q2)  # Q's (pp, pv, vv) entries per coordinate
            return {"p": m0.astype(float), "v": np.zeros((M, D)), "Ppp": pos_var,
                    "Ppv": np.zeros((M, D)), "Pvv": vel_var}
        return {"x": np.concatenate([m0, np.zeros((M, D))], axis=-1),
                "P": np.concatenate([pos_var, vel_var], -1)[:, :, None] * np.eye(2 * D)}

    def predict(self, state: dict, t: int) -> tuple[np.ndarray, np.ndarray, dict]:
        if self._blocks:
            if t > 0:  # F = [[1, 1], [0, 1]] per coordinate, P' = F P F^T + Q
                qpp, qpv, qvv = self._q
                p, v, Ppp, Ppv, Pvv = (state[k] for k in ("p", "v", "Ppp", "Ppv", "Pvv"))
                state = {"p": p + v, "v": v, "Ppp": Ppp + 2.0 * Ppv + Pvv + qpp,
                         "Ppv": Ppv + Pvv + qpv, "Pvv": Pvv + qvv}
            return state["p"], state["Ppp"], state
        x, P = state["x"], state["P"]
        if t > 0:  # the first frame's prior is the initial one
            x, P = kalman_predict(x, P, self._F, self._Q)
        if self.birth_frames is not None:
            x, P = self._births(x, P, t)
        D = self._H.shape[0]
        return x[:, :D], np.diagonal(P[:, :D, :D], axis1=1, axis2=2).copy(), {"x": x, "P": P}

    def _births(self, x: np.ndarray, P: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Prior at ``t`` of the sources not born yet (flat) or born now (the birth law)."""
        tb = self.birth_frames
        absent, now = t < tb, (t == tb) & self._law
        if not (absent.any() or now.any()):
            return x, P
        flat = self.ABSENT_VAR * np.eye(x.shape[-1])
        x = np.where((absent | now)[:, None], self.birth_means, x)
        P = np.where(absent[:, None, None], flat, np.where(now[:, None, None], self.birth_covs, P))
        return x, P

    def update(
        self,
        state: dict,
        t: int,
        mean: np.ndarray,
        var: np.ndarray,
        info_vec: np.ndarray,
        info_prec: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        if self._blocks and info_prec.ndim == 3:  # full evidence: the matrix filter
            if t > 0:
                raise ValueError("the evidence became full-covariance in mid-pass.")
            state, self._blocks = self._as_matrices(state), False
        if self._blocks:
            return self._update_blocks(state, info_vec, info_prec)
        if self.birth_frames is not None:  # a source that does not exist yet observes nothing
            here = (t >= self.birth_frames)[:, None]
            info_vec = np.where(here, info_vec, 0.0)
            info_prec = np.where(here if info_prec.ndim == 2 else here[..., None], info_prec, 0.0)
        x, P = kalman_update_information(state["x"], state["P"], info_vec, info_prec, self._H)
        self._history.append((x, P))
        return (*self._marginal(x, P, full=info_prec.ndim == 3), {"x": x, "P": P})

    def _update_blocks(self, state: dict, info_vec: np.ndarray, info_prec: np.ndarray):
        """The Kalman update per coordinate, in information form (finite when nothing is
        assigned, ``info_prec = 0``): ``K = P H^T lam / (1 + lam Ppp)``."""
        p, v, Ppp, Ppv, Pvv = (state[k] for k in ("p", "v", "Ppp", "Ppv", "Pvv"))
        denom = 1.0 + info_prec * Ppp
        innov = (info_vec - info_prec * p) / denom  # lam (y - p) / (1 + lam Ppp)
        new = {"p": p + Ppp * innov, "v": v + Ppv * innov, "Ppp": Ppp / denom,
               "Ppv": Ppv / denom, "Pvv": Pvv - Ppv**2 * info_prec / denom}
        self._history.append(new)
        return new["p"], new["Ppp"], new

    def _as_matrices(self, state: dict) -> dict:
        """A block state as the ``(2D,)`` mean and ``(2D, 2D)`` covariance of the matrix filter."""
        D = state["p"].shape[-1]
        P = np.zeros(state["p"].shape[:1] + (2 * D, 2 * D))
        i = np.arange(D)
        P[:, i, i], P[:, i, i + D], P[:, i + D, i] = state["Ppp"], state["Ppv"], state["Ppv"]
        P[:, i + D, i + D] = state["Pvv"]
        return {"x": np.concatenate([state["p"], state["v"]], -1), "P": P}

    def _smooth_blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """Rauch-Tung-Striebel per coordinate on the stored filtered 2x2 blocks."""
        qpp, qpv, qvv = self._q
        hist = self._history
        nxt = hist[-1]
        T = len(hist)
        sm = np.empty((nxt["p"].shape[0], T, nxt["p"].shape[1]))
        sc = np.empty_like(sm)
        sm[:, -1], sc[:, -1] = nxt["p"], nxt["Ppp"]
        for t in range(T - 2, -1, -1):
            f = hist[t]
            # predicted covariance P' = F P F^T + Q, cross term C = P F^T, gain J = C P'^-1
            a = f["Ppp"] + 2.0 * f["Ppv"] + f["Pvv"] + qpp
            b = f["Ppv"] + f["Pvv"] + qpv
            d = f["Pvv"] + qvv
            c11, c12, c21, c22 = f["Ppp"] + f["Ppv"], f["Ppv"], f["Ppv"] + f["Pvv"], f["Pvv"]
            det = a * d - b * b
            j11, j12 = (c11 * d - c12 * b) / det, (c12 * a - c11 * b) / det
            j21, j22 = (c21 * d - c22 * b) / det, (c22 * a - c21 * b) / det
            dp, dv = nxt["p"] - (f["p"] + f["v"]), nxt["v"] - f["v"]
            ep, eb, ed = nxt["Ppp"] - a, nxt["Ppv"] - b, nxt["Pvv"] - d
            nxt = {  # P_s = P + J (P_s' - P') J^T
                "p": f["p"] + j11 * dp + j12 * dv,
                "v": f["v"] + j21 * dp + j22 * dv,
                "Ppp": f["Ppp"] + j11 * j11 * ep + 2.0 * j11 * j12 * eb + j12 * j12 * ed,
                "Ppv": f["Ppv"] + j11 * j21 * ep + (j11 * j22 + j12 * j21) * eb + j12 * j22 * ed,
                "Pvv": f["Pvv"] + j21 * j21 * ep + 2.0 * j21 * j22 * eb + j22 * j22 * ed,
            }
            sm[:, t], sc[:, t] = nxt["p"], nxt["Ppp"]
        return sm, sc

    def _marginal(self, x: np.ndarray, P: np.ndarray, full: bool) -> tuple[np.ndarray, np.ndarray]:
        D = self._H.shape[0]
        cov = P[..., :D, :D]
        return x[..., :D], cov.copy() if full else np.diagonal(cov, axis1=-2, axis2=-1).copy()

    def smooth(
        self, means: np.ndarray, covs: np.ndarray, pred_mean: np.ndarray, pred_var: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if len(self._history) != means.shape[1]:
            # The forward pass did not go through update (should not happen with the engine).
            return means, covs
        if not self.do_smooth:
            return means, covs
        if self._blocks:
            return self._smooth_blocks()
        xf = np.stack([h[0] for h in self._history], axis=1)  # (M, T, 2D)
        Pf = np.stack([h[1] for h in self._history], axis=1)
        xs, Ps, cross = rts_smoother(
            xf, Pf, transition_matrix=self._F, transition_covariance=self._Q
        )
        keep = None
        if self.birth_frames is not None:
            # No transition leads into a birth: before it the posterior is the flat prior.
            before = np.arange(xs.shape[1])[None, :] < self.birth_frames[:, None]  # (M, T)
            xs = np.where(before[..., None], xf, xs)
            Ps = np.where(before[..., None, None], Pf, Ps)
            keep = ~before[:, :-1] & ~(  # transitions t-1 -> t with both ends alive, no reset
                np.arange(1, xs.shape[1])[None, :] == self.birth_frames[:, None]
            )
        if self.learn_process_noise and xs.shape[1] > 1:
            self.q2_ = self._m_step_q2(xs, Ps, cross, keep)
        return self._marginal(xs, Ps, full=covs.ndim == 4)

    def _m_step_q2(
        self, xs: np.ndarray, Ps: np.ndarray, cross: np.ndarray, keep: np.ndarray | None = None
    ) -> np.ndarray:
        """EM update of the acceleration intensity ``q^2`` per source and coordinate.

        With ``e_t = x_t - F x_{t-1}`` and ``Q = q^2 Q_0`` on every (position, velocity) pair,
        ``q^2 = mean_t tr(Q_0^{-1} E[e_t e_t^T]) / 2`` over the 2x2 blocks of ``E[e e^T]``
        (over the transitions in ``keep`` (M, T-1) when given; a source with none keeps its
        current ``q^2``).
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
        per_t = 0.5 * np.trace(np.linalg.solve(Q0, blocks), axis1=-2, axis2=-1)  # (M, T-1, D)
        if keep is None:
            return np.maximum(per_t.mean(1), 1e-12)
        n = keep.sum(1)[:, None]
        q2 = np.where(keep[..., None], per_t, 0.0).sum(1) / np.maximum(n, 1)
        current = np.diagonal(self._Q, axis1=-2, axis2=-1)[:, D:]  # Q_vv = q^2 (dt = 1)
        return np.maximum(np.where(n > 0, q2, current), 1e-12)
