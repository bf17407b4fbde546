"""Kalman filter and smoother of independent scalar complex AR(1) chains (the VKF separator).

Every chain ``(m, f)`` of ``M`` sources and ``F`` frequency bins follows
:math:`s_t = a\\, s_{t-1} + e_t`, :math:`e_t \\sim N_c(0, q)`, from the stationary
:math:`s_0 \\sim N_c(0, q / (1 - |a|^2))`, and receives evidence in information form
(``info_vec`` :math:`\\xi_t`, ``info_prec`` :math:`\\lambda_t \\ge 0`) at every frame. Arrays are
``(M, T, F)``; ``a`` (complex) and ``q`` are ``(M, F)``.

:func:`ar1_filter` and :func:`ar1_smoother` are Numba loops over sources, frames and bins (bins
innermost, where memory is contiguous; no temporaries); :func:`ar1_filter_numpy` and
:func:`ar1_smoother_numpy` compute the same with NumPy operations over all chains at once,
frame by frame, and are their test oracles.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["ar1_filter", "ar1_filter_numpy", "ar1_smoother", "ar1_smoother_numpy"]


def ar1_filter_numpy(info_vec, info_prec, a, q):
    """Filtered means and variances and the one-step predictions, each ``(M, T, F)``."""
    M, T, F = info_prec.shape
    m = np.empty((M, T, F), dtype=np.complex128)
    P, pred_m = np.empty((M, T, F)), np.empty((M, T, F), dtype=np.complex128)
    pred_P = np.empty((M, T, F))
    mean, var = np.zeros((M, F), dtype=np.complex128), q / (1.0 - np.abs(a) ** 2)
    for t in range(T):
        if t > 0:
            mean, var = a * m[:, t - 1], np.abs(a) ** 2 * P[:, t - 1] + q
        pred_m[:, t], pred_P[:, t] = mean, var
        P[:, t] = var / (1.0 + var * info_prec[:, t])
        m[:, t] = P[:, t] * (info_vec[:, t] + mean / var)
    return m, P, pred_m, pred_P


@numba.njit(cache=True, nogil=True)
def _filter(info_vec, info_prec, a, q, m, P, pred_m, pred_P):
    M, T, F = info_prec.shape
    for i in range(M):  # frames outside, bins inside: contiguous memory in the inner loop
        for t in range(T):
            for f in range(F):
                ai, qi = a[i, f], q[i, f]
                a2 = ai.real * ai.real + ai.imag * ai.imag
                if t == 0:
                    mean, var = 0j, qi / (1.0 - a2)
                else:
                    mean, var = ai * m[i, t - 1, f], a2 * P[i, t - 1, f] + qi
                pred_m[i, t, f], pred_P[i, t, f] = mean, var
                p = var / (1.0 + var * info_prec[i, t, f])
                P[i, t, f] = p
                m[i, t, f] = p * (info_vec[i, t, f] + mean / var)


def ar1_filter(info_vec, info_prec, a, q):
    """:func:`ar1_filter_numpy` in one Numba pass."""
    M, T, F = info_prec.shape
    m = np.empty((M, T, F), dtype=np.complex128)
    P, pred_m = np.empty((M, T, F)), np.empty((M, T, F), dtype=np.complex128)
    pred_P = np.empty((M, T, F))
    _filter(np.ascontiguousarray(info_vec, dtype=np.complex128),
            np.ascontiguousarray(info_prec, dtype=float),
            np.ascontiguousarray(a, dtype=np.complex128), np.ascontiguousarray(q, dtype=float),
            m, P, pred_m, pred_P)
    return m, P, pred_m, pred_P


def ar1_smoother_numpy(m, P, pred_m, pred_P, a, q):
    """Rauch-Tung-Striebel smoother and the chain's sufficient statistics.

    Returns
    -------
    sm, sc : ndarray of shape (M, T, F)
        Smoothed means and variances.
    s00, s11 : ndarray of shape (M, F)
        :math:`\\sum_{t<T-1} E|s_t|^2` and :math:`\\sum_{t>0} E|s_t|^2`.
    s10 : ndarray of complex of shape (M, F)
        :math:`\\sum_{t>0} E[s_t \\bar s_{t-1}]`, with the lag-one covariances
        :math:`P^s_{t+1} \\bar J_t`.
    log_det : ndarray of shape (M,)
        Log-determinant of each source's posterior covariance over all its chains, summed as
        that of the backward conditionals :math:`P_t q / P^-_{t+1}` and the last frame.
    """
    M, T, F = m.shape
    sm, sc = m.copy(), P.copy()
    cross = np.zeros((M, max(T - 1, 0), F), dtype=np.complex128)
    log_det = np.log(P[:, -1]).sum(-1)
    for t in range(T - 2, -1, -1):
        gain = P[:, t] * a.conj() / pred_P[:, t + 1]
        sm[:, t] = m[:, t] + gain * (sm[:, t + 1] - pred_m[:, t + 1])
        # P + |J|^2 (P^s - P^-) as two non-negative terms: P q / P^- + |J|^2 P^s
        cond = P[:, t] * q / pred_P[:, t + 1]
        sc[:, t] = cond + np.abs(gain) ** 2 * sc[:, t + 1]
        cross[:, t] = sc[:, t + 1] * gain.conj()
        log_det += np.log(cond).sum(-1)
    second = np.abs(sm) ** 2 + sc
    s10 = (sm[:, 1:] * sm[:, :-1].conj() + cross).sum(1)
    return sm, sc, second[:, :-1].sum(1), second[:, 1:].sum(1), s10, log_det


@numba.njit(cache=True, nogil=True)
def _smoother(m, P, pred_m, pred_P, a, q, sm, sc, s00, s11, s10, log_det):
    M, T, F = m.shape
    for i in range(M):  # frames outside, bins inside: contiguous memory in the inner loop
        acc_det = 0.0
        for f in range(F):
            sm[i, T - 1, f], sc[i, T - 1, f] = m[i, T - 1, f], P[i, T - 1, f]
            acc_det += np.log(P[i, T - 1, f])
            last = m[i, T - 1, f]
            e_last = last.real * last.real + last.imag * last.imag + P[i, T - 1, f]
            s00[i, f], s11[i, f], s10[i, f] = 0.0, e_last if T > 1 else 0.0, 0j
        for t in range(T - 2, -1, -1):
            for f in range(F):
                gain = P[i, t, f] * np.conj(a[i, f]) / pred_P[i, t + 1, f]
                nxt_m, nxt_c = sm[i, t + 1, f], sc[i, t + 1, f]
                mt = m[i, t, f] + gain * (nxt_m - pred_m[i, t + 1, f])
                cond = P[i, t, f] * q[i, f] / pred_P[i, t + 1, f]
                ct = cond + (gain.real * gain.real + gain.imag * gain.imag) * nxt_c
                sm[i, t, f], sc[i, t, f] = mt, ct
                acc_det += np.log(cond)
                s10[i, f] += nxt_m * np.conj(mt) + nxt_c * np.conj(gain)
                e_t = mt.real * mt.real + mt.imag * mt.imag + ct
                s00[i, f] += e_t
                if t > 0:
                    s11[i, f] += e_t
        log_det[i] = acc_det


def ar1_smoother(m, P, pred_m, pred_P, a, q):
    """:func:`ar1_smoother_numpy` in one Numba pass."""
    M, T, F = m.shape
    sm = np.empty((M, T, F), dtype=np.complex128)
    sc = np.empty((M, T, F))
    s00, s11 = np.empty((M, F)), np.empty((M, F))
    s10 = np.empty((M, F), dtype=np.complex128)
    log_det = np.empty(M)
    _smoother(np.ascontiguousarray(m, dtype=np.complex128), np.ascontiguousarray(P, dtype=float),
              np.ascontiguousarray(pred_m, dtype=np.complex128),
              np.ascontiguousarray(pred_P, dtype=float),
              np.ascontiguousarray(a, dtype=np.complex128), np.ascontiguousarray(q, dtype=float),
              sm, sc, s00, s11, s10, log_det)
    return sm, sc, s00, s11, s10, log_det
