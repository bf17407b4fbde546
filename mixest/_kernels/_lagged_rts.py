"""Exact RTS smoother of a linearised third-order autoregressive prior (Numba).

The DVAE priors predict each coordinate as :math:`\\mu_t = a_{1t} m_{t-1} + a_{2t} m_{t-2} +
a_{3t} m_{t-3} + f_t` (a first- or second-order residual, or the gated extrapolation of
velocity and acceleration) with variance :math:`q_t` from the network. Holding
:math:`a_t, f_t, q_t` at their forward-pass values makes each coordinate a linear-Gaussian
state-space model with state :math:`(s_t, s_{t-1}, s_{t-2})`; this kernel runs its Kalman filter
and Rauch-Tung-Striebel smoother exactly (full 3x3 covariances), so a correction seen after a gap
flows back through every lag, as it does for a constant-velocity Kalman model. Its test oracle is
the dense Gaussian posterior of the same model (``tests/mixture/test_smoother.py``).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["lagged_rts"]

#: A prediction whose variance exceeds this multiple of its own process noise has lost what it
#: knew (a long run without evidence): its covariance is reset to that level, uncorrelated, and
#: the smoother passes no information back through it, which keeps the 3x3 covariances finite
#: and well conditioned in gaps of thousands of frames.
CUT_RATIO = 1e10


@numba.njit(cache=True)
def _inverse_sym3(P, out):
    """Inverse of a symmetric positive definite 3x3 matrix by cofactors; False if singular."""
    c00 = P[1, 1] * P[2, 2] - P[1, 2] * P[1, 2]
    c01 = P[0, 2] * P[1, 2] - P[0, 1] * P[2, 2]
    c02 = P[0, 1] * P[1, 2] - P[0, 2] * P[1, 1]
    det = P[0, 0] * c00 + P[0, 1] * c01 + P[0, 2] * c02
    if not (det > 0.0 and np.isfinite(det)):
        return False
    out[0, 0] = c00 / det
    out[0, 1] = out[1, 0] = c01 / det
    out[0, 2] = out[2, 0] = c02 / det
    out[1, 1] = (P[0, 0] * P[2, 2] - P[0, 2] * P[0, 2]) / det
    out[1, 2] = out[2, 1] = (P[0, 1] * P[0, 2] - P[0, 0] * P[1, 2]) / det
    out[2, 2] = (P[0, 0] * P[1, 1] - P[0, 1] * P[0, 1]) / det
    return True


@numba.njit(cache=True)
def lagged_rts(means, covs, pred_mean, pred_var, coefficients, noise_share, out_means, out_covs):
    """Smooth every coordinate of ``(M, T, D)`` forward-pass moments; writes ``out_*``.

    Parameters
    ----------
    means, covs : ndarray of shape (M, T, D)
        The forward pass's filtered moments (the means are what the network read).
    pred_mean, pred_var : ndarray of shape (M, T, D)
        Its predictions :math:`\\mu_t` and their variances (network variance plus propagated
        input uncertainty); with ``covs`` they give back each frame's evidence.
    coefficients : ndarray of shape (M, T, D, 3)
        :math:`(a_1, a_2, a_3)` of every frame's prediction (zero at ``t = 0``).
    noise_share : ndarray of shape (M, T, D)
        :math:`q_t / \\text{pred\\_var}_t`, the network's own share of the prediction variance.
    out_means, out_covs : ndarray of shape (M, T, D)
        Smoothed means and marginal variances.
    """
    M, T, D = means.shape
    xf = np.empty((T, 3))
    Pf = np.empty((T, 3, 3))
    xp = np.empty((T, 3))
    Pp = np.empty((T, 3, 3))
    cut = np.empty(T, dtype=np.bool_)
    inv = np.empty((3, 3))
    x = np.empty(3)
    P = np.empty((3, 3))
    G = np.empty((3, 3))
    PA = np.empty((3, 3))
    diff = np.empty((3, 3))
    tmp = np.empty((3, 3))
    xs = np.empty(3)
    dx = np.empty(3)
    Ps = np.empty((3, 3))
    for m in range(M):
        for d in range(D):
            # ---- forward: exact Kalman filter of the linearised model
            x[:] = 0.0
            P[:, :] = 0.0
            for i in range(3):  # the lags before frame 0 (never read: a_t = 0 there)
                P[i, i] = pred_var[m, 0, d]
            for t in range(T):
                a1 = coefficients[m, t, d, 0]
                a2 = coefficients[m, t, d, 1]
                a3 = coefficients[m, t, d, 2]
                drift = pred_mean[m, t, d]
                if t >= 1:
                    drift -= a1 * means[m, t - 1, d]
                if t >= 2:
                    drift -= a2 * means[m, t - 2, d]
                if t >= 3:
                    drift -= a3 * means[m, t - 3, d]
                q = noise_share[m, t, d] * pred_var[m, t, d]
                r0 = a1 * P[0, 0] + a2 * P[1, 0] + a3 * P[2, 0]
                r1 = a1 * P[0, 1] + a2 * P[1, 1] + a3 * P[2, 1]
                r2 = a1 * P[0, 2] + a2 * P[1, 2] + a3 * P[2, 2]
                xp[t, 0] = a1 * x[0] + a2 * x[1] + a3 * x[2] + drift
                xp[t, 1] = x[0]
                xp[t, 2] = x[1]
                p00 = r0 * a1 + r1 * a2 + r2 * a3 + q
                cut[t] = not (p00 <= CUT_RATIO * q)
                if cut[t]:  # nothing known: a fixed, uncorrelated level (no overflow)
                    Pp[t, :, :] = 0.0
                    for i in range(3):
                        Pp[t, i, i] = CUT_RATIO * q
                else:
                    Pp[t, 0, 0] = p00
                    Pp[t, 0, 1] = Pp[t, 1, 0] = r0
                    Pp[t, 0, 2] = Pp[t, 2, 0] = r1
                    Pp[t, 1, 1] = P[0, 0]
                    Pp[t, 1, 2] = Pp[t, 2, 1] = P[0, 1]
                    Pp[t, 2, 2] = P[1, 1]
                # the evidence the forward pass multiplied in, in information form
                J = max(1.0 / covs[m, t, d] - 1.0 / pred_var[m, t, d], 0.0)
                h = means[m, t, d] / covs[m, t, d] - pred_mean[m, t, d] / pred_var[m, t, d]
                denom = 1.0 + J * Pp[t, 0, 0]
                innov = (h - J * xp[t, 0]) / denom
                for i in range(3):
                    x[i] = xp[t, i] + Pp[t, i, 0] * innov
                    for j in range(3):
                        P[i, j] = Pp[t, i, j] - Pp[t, i, 0] * Pp[t, 0, j] * J / denom
                xf[t, :] = x
                Pf[t, :, :] = P
            # ---- backward: RTS
            xs[:] = xf[T - 1]
            Ps[:, :] = Pf[T - 1]
            out_means[m, T - 1, d] = xs[0]
            out_covs[m, T - 1, d] = Ps[0, 0]
            for t in range(T - 2, -1, -1):
                if cut[t + 1] or not _inverse_sym3(Pp[t + 1], inv):
                    xs[:] = xf[t]
                    Ps[:, :] = Pf[t]
                else:
                    a1 = coefficients[m, t + 1, d, 0]
                    a2 = coefficients[m, t + 1, d, 1]
                    a3 = coefficients[m, t + 1, d, 2]
                    for i in range(3):  # P_t A^T
                        PA[i, 0] = a1 * Pf[t, i, 0] + a2 * Pf[t, i, 1] + a3 * Pf[t, i, 2]
                        PA[i, 1] = Pf[t, i, 0]
                        PA[i, 2] = Pf[t, i, 1]
                    # explicit 3x3 loops: numba's @ on tiny arrays goes through BLAS and allocates
                    for i in range(3):
                        for j in range(3):
                            G[i, j] = (PA[i, 0] * inv[0, j] + PA[i, 1] * inv[1, j]
                                       + PA[i, 2] * inv[2, j])
                    for i in range(3):
                        dx[i] = xs[i] - xp[t + 1, i]
                        for j in range(3):
                            diff[i, j] = Ps[i, j] - Pp[t + 1, i, j]
                    for i in range(3):
                        for j in range(3):
                            tmp[i, j] = (G[i, 0] * diff[0, j] + G[i, 1] * diff[1, j]
                                         + G[i, 2] * diff[2, j])
                    for i in range(3):
                        xs[i] = xf[t, i] + G[i, 0] * dx[0] + G[i, 1] * dx[1] + G[i, 2] * dx[2]
                        for j in range(i + 1):
                            v = Pf[t, i, j] + (tmp[i, 0] * G[j, 0] + tmp[i, 1] * G[j, 1]
                                               + tmp[i, 2] * G[j, 2])
                            Ps[i, j] = v
                            Ps[j, i] = v
                out_means[m, t, d] = xs[0]
                # exact arithmetic keeps 0 < Ps <= Pf; rounding must not cross either bound
                out_covs[m, t, d] = min(max(Ps[0, 0], 1e-9 * Pf[t, 0, 0]), Pf[t, 0, 0])
