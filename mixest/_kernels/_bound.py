"""Lower bound of the MixDVAE VEM for diagonal covariances, as one Numba pass.

Same quantity as :func:`mixest.mixture._vem.lower_bound` (its NumPy oracle) with diagonal
``phi``, ``covs`` and ``pred_var``: one loop over ``(b, t, k, n, d)`` instead of a dozen
temporaries of shape ``(B, T, K, N, D)``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["lower_bound_diag"]

_LOG_2PI = math.log(2.0 * math.pi)


@numba.njit(cache=True, nogil=True)
def _bound(obs, valid, phi, means, covs, eta, log_prior, log_clutter, pred_mean, pred_var, out):
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
                        acc += e * (log_prior[b, N] + log_clutter - math.log(e))
            for n in range(N):
                for d in range(D):
                    r = means[b, t, n, d] - pred_mean[b, t, n, d]
                    v = pred_var[b, t, n, d]
                    s = covs[b, t, n, d]
                    # E[log N(s; mu, v)] + entropy of N(m, s)
                    acc += 0.5 * (math.log(s / v) + 1.0 - (r * r + s) / v)
        out[b] = acc


def lower_bound_diag(obs, valid, phi, means, covs, eta, log_prior, log_clutter, pred_mean,
                     pred_var) -> np.ndarray:
    """Per-sequence lower bound ``(B,)``, diagonal covariances only (see the module docstring)."""
    f64 = np.float64
    out = np.empty(obs.shape[0])
    _bound(np.ascontiguousarray(obs, dtype=f64), np.ascontiguousarray(valid, dtype=np.bool_),
           np.ascontiguousarray(phi, dtype=f64), np.ascontiguousarray(means, dtype=f64),
           np.ascontiguousarray(covs, dtype=f64), np.ascontiguousarray(eta, dtype=f64),
           np.ascontiguousarray(log_prior, dtype=f64), float(log_clutter),
           np.ascontiguousarray(pred_mean, dtype=f64), np.ascontiguousarray(pred_var, dtype=f64),
           out)
    return out
