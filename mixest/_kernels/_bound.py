"""Terms of the VEM lower bound for diagonal covariances, each as one Numba pass.

:func:`expected_log_likelihood_diag`: the detections' part,
:math:`\\sum_{tk} E_q[\\log p(o_{tk}, w_{tk} | s)] + H(q(w))` per sequence, the same quantity as
:func:`mixest.tracking._observation.expected_log_likelihood_numpy` (its NumPy oracle) with
diagonal ``phi`` and ``covs``: one loop over ``(b, t, k, n, d)`` instead of a dozen temporaries
of shape ``(B, T, K, N, D)``.

:func:`gaussian_prior_diag`: a real Gaussian dynamics' part,
:math:`\\sum_{tn} E_q[\\log N(s_{tn}; \\mu_{tn}, V_{tn})] + H(q(s))` per sequence (oracle: the
NumPy expression of :meth:`mixest.mixture.Dynamics.expected_log_prior`).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from mixest._kernels._estep_w import clutter_scores

__all__ = ["expected_log_likelihood_diag", "gaussian_prior_diag"]

_LOG_2PI = math.log(2.0 * math.pi)


@numba.njit(cache=True, nogil=True)
def _bound(obs, valid, phi, means, covs, eta, log_prior, log_clutter, out):
    B, T, K, D = obs.shape
    N = means.shape[2]
    C = eta.shape[3]
    for b in range(B):
        acc = 0.0
        for t in range(T):
            for k in range(K):
                if not valid[b, t, k]:
                    continue  # eta = 0: no term
                logdet = 0.0
                for d in range(D):
                    logdet += math.log(phi[b, t, k, d])
                const = -0.5 * (D * _LOG_2PI + logdet)
                for n in range(N):
                    e = eta[b, t, k, n]
                    if e > 0.0:
                        q = 0.0
                        for d in range(D):
                            r = obs[b, t, k, d] - means[b, t, n, d]
                            q += (r * r + covs[b, t, n, d]) / phi[b, t, k, d]
                        acc += e * (log_prior[b, n] + const - 0.5 * q - math.log(e))
                if C > N:
                    e = eta[b, t, k, N]
                    if e > 0.0:
                        acc += e * (log_prior[b, N] + log_clutter[b, t, k] - math.log(e))
        out[b] = acc


def expected_log_likelihood_diag(obs, valid, phi, means, covs, eta, log_prior,
                                 log_clutter) -> np.ndarray:
    """Per-sequence bound term ``(B,)``, diagonal covariances only (see the module docstring)."""
    f64 = np.float64
    out = np.empty(obs.shape[0])
    _bound(np.ascontiguousarray(obs, dtype=f64), np.ascontiguousarray(valid, dtype=np.bool_),
           np.ascontiguousarray(phi, dtype=f64), np.ascontiguousarray(means, dtype=f64),
           np.ascontiguousarray(covs, dtype=f64), np.ascontiguousarray(eta, dtype=f64),
           np.ascontiguousarray(log_prior, dtype=f64), clutter_scores(log_clutter, obs.shape[:3]),
           out)
    return out


@numba.njit(cache=True, nogil=True)
def _prior(means, covs, pred_mean, pred_var, out):
    B, T, N, D = means.shape
    for b in range(B):
        acc = 0.0
        for t in range(T):
            for n in range(N):
                for d in range(D):
                    r = means[b, t, n, d] - pred_mean[b, t, n, d]
                    v = pred_var[b, t, n, d]
                    s = covs[b, t, n, d]
                    # E[log N(s; mu, v)] + entropy of N(m, s)
                    acc += 0.5 * (math.log(s / v) + 1.0 - (r * r + s) / v)
        out[b] = acc


def gaussian_prior_diag(means, covs, pred_mean, pred_var) -> np.ndarray:
    """Per-sequence dynamics term ``(B,)`` from real ``(B, T, N, D)`` arrays."""
    out = np.empty(means.shape[0])
    # contiguous copies: the engine's arrays are views of different memory orders (a network's
    # time-major outputs, source-major posteriors), which no one loop order reads in sequence
    _prior(*(np.ascontiguousarray(a, dtype=np.float64)
             for a in (means, covs, pred_mean, pred_var)), out)
    return out
