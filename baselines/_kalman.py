"""Batched linear-Gaussian Kalman filter and Rauch-Tung-Striebel smoother (NumPy).

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

__all__ = [
    "KalmanResult",
    "constant_velocity_model",
    "kalman_filter",
    "kalman_predict",
    "kalman_smoother",
    "kalman_update",
    "rts_smoother",
]

_LOG_2PI = np.log(2.0 * np.pi)


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
