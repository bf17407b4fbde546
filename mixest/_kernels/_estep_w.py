"""E-W step of the MixDVAE VEM: posterior assignment of observations to sources.

For every sequence ``b``, frame ``t`` and observation ``k`` the (unnormalised) log-responsibility
of source ``n`` is

.. math::

    \\log \\beta_{tkn} = \\log \\pi_n - \\tfrac12 \\log |2\\pi \\Phi_{tk}|
        - \\frac{1}{2\\tau} \\Big[(o_{tk} - m_{tn})^\\top \\Phi_{tk}^{-1} (o_{tk} - m_{tn})
        + \\operatorname{tr}(\\Phi_{tk}^{-1} \\Sigma_{tn})\\Big],

with an optional clutter class of log-score :math:`\\log \\pi_0 + \\log c` (uniform density
:math:`c`), stored as the *last* column. :math:`\\eta_{tk\\cdot}` is the softmax of
:math:`\\log\\beta_{tk\\cdot}` over sources (and clutter), computed in log space; masked (missing)
observations get :math:`\\eta = 0`. :math:`\\tau` is the assignment temperature (1 for the model's
E-W; the paper's released code effectively uses :math:`\\tau = 125`).

Two implementations share this contract: :func:`e_w_numba` (the Numba kernel used at run time)
and :func:`e_w_numpy` (plain NumPy, the test oracle).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["e_w", "e_w_numba", "e_w_numpy", "evidence_diag"]

_LOG_2PI = math.log(2.0 * math.pi)


def _check(obs, valid, phi, means, covs, log_prior):
    B, T, K, D = obs.shape
    N = means.shape[2]
    full = phi.ndim == 5
    if means.shape[:2] != (B, T) or means.shape[3] != D:
        raise ValueError(f"means must have shape ({B}, {T}, N, {D}), got {means.shape}.")
    if valid.shape != (B, T, K):
        raise ValueError(f"valid must have shape {(B, T, K)}, got {valid.shape}.")
    if covs.ndim != phi.ndim:
        raise ValueError("phi and covs must both be diagonal (…, D) or both full (…, D, D).")
    if log_prior.shape != (B, N) and log_prior.shape != (B, N + 1):
        raise ValueError(f"log_prior must have shape ({B}, N[+1]), got {log_prior.shape}.")
    return full, log_prior.shape[1] == N + 1


def e_w_numpy(
    obs: np.ndarray,
    valid: np.ndarray,
    phi: np.ndarray,
    means: np.ndarray,
    covs: np.ndarray,
    log_prior: np.ndarray,
    log_clutter: float | np.ndarray = 0.0,
    temperature: float = 1.0,
) -> np.ndarray:
    """E-W step in plain NumPy (the oracle of :func:`e_w_numba`).

    Parameters
    ----------
    obs : ndarray of shape (B, T, K, D)
        Observations; entries of masked observations are ignored (may be NaN).
    valid : ndarray of bool, shape (B, T, K)
        Which observations are present.
    phi : ndarray of shape (B, T, K, D) or (B, T, K, D, D)
        Observation noise covariance: its diagonal, or the full matrix.
    means : ndarray of shape (B, T, N, D)
        Posterior means :math:`m_{tn}` of the sources.
    covs : ndarray of shape (B, T, N, D) or (B, T, N, D, D)
        Posterior covariances :math:`\\Sigma_{tn}` (same form as ``phi``).
    log_prior : ndarray of shape (B, N) or (B, N + 1)
        :math:`\\log \\pi`; an extra last column switches the clutter class on.
    log_clutter : float or ndarray of shape (B, T, K), default=0.0
        Log density :math:`\\log c` of the clutter class (per observation when an array:
        clutter models whose weight changes by frame fold it in here).
    temperature : float, default=1.0
        Divides the quadratic and trace terms.

    Returns
    -------
    eta : ndarray of shape (B, T, K, N) or (B, T, K, N + 1)
        Assignment probabilities (clutter last); zero rows for masked observations.
    """
    full, clutter = _check(obs, valid, phi, means, covs, log_prior)
    D = obs.shape[-1]
    o = np.where(valid[..., None], obs, 0.0)
    diff = o[:, :, :, None, :] - means[:, :, None, :, :]  # (B, T, K, N, D)
    if full:
        chol = np.linalg.cholesky(np.where(valid[..., None, None], phi, np.eye(D)))
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)  # (B, T, K)
        inv = np.linalg.inv(chol)  # oracle only: clarity over speed
        white = np.einsum("btkij,btknj->btkni", inv, diff)
        quad = (white**2).sum(-1)
        prec = np.einsum("btkji,btkjl->btkil", inv, inv)
        trace = np.einsum("btkij,btnji->btkn", prec, covs)
    else:
        p = np.where(valid[..., None], phi, 1.0)
        logdet = np.log(p).sum(-1)
        quad = (diff**2 / p[:, :, :, None, :]).sum(-1)
        trace = np.einsum("btkd,btnd->btkn", 1.0 / p, covs)
    log_beta = (
        log_prior[:, None, None, : means.shape[2]]
        - 0.5 * (D * _LOG_2PI + logdet)[..., None]
        - 0.5 / temperature * (quad + trace)
    )
    if clutter:
        log_c = log_prior[:, None, None, -1:] + np.asarray(log_clutter)[..., None]
        log_c = np.broadcast_to(log_c, log_beta.shape[:3] + (1,))
        log_beta = np.concatenate([log_beta, log_c], axis=-1)
    log_beta = log_beta - log_beta.max(-1, keepdims=True)
    eta = np.exp(log_beta)
    eta /= eta.sum(-1, keepdims=True)
    return np.where(valid[..., None], eta, 0.0)


def clutter_scores(log_clutter: float | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``log_clutter`` (a number or an array of the observations' shape ``(B, T, K)``) as the
    contiguous float64 array the kernels read."""
    return np.ascontiguousarray(np.broadcast_to(np.asarray(log_clutter, dtype=np.float64), shape))


@numba.njit(cache=True, nogil=True, inline="always")
def _softmax_into(scores, best, N, clutter_score, out, b, t, k):
    """Write the softmax of ``scores[:C]`` into ``out[b, t, k]`` (C = out.shape[3]);
    ``scores[:N]`` holds the sources' log scores with maximum ``best``, and with C > N
    ``clutter_score`` is added first."""
    C = out.shape[3]
    if C > N:
        s = clutter_score
        scores[N] = s
        if s > best:
            best = s
    normalise_scores(scores, best, C)
    for c in range(C):
        out[b, t, k, c] = scores[c]


@numba.njit(cache=True, nogil=True, inline="always")
def normalise_scores(scores, best, C):
    """Turn the log scores ``scores[:C]`` (maximum ``best``) into their softmax, in place."""
    total = 0.0
    for c in range(C):
        e = math.exp(scores[c] - best)
        scores[c] = e
        total += e
    for c in range(C):
        scores[c] /= total


@numba.njit(cache=True, nogil=True)
def _e_w_diag(obs, valid, phi, means, covs, log_prior, log_clutter, inv_temp, out):
    B, T, K, D = obs.shape
    N = means.shape[2]
    C = out.shape[3]
    scores = np.empty(C)
    for b in range(B):
        for t in range(T):
            for k in range(K):
                if not valid[b, t, k]:
                    for c in range(C):
                        out[b, t, k, c] = 0.0
                    continue
                logdet = 0.0
                for d in range(D):
                    logdet += math.log(phi[b, t, k, d])
                const = -0.5 * (D * _LOG_2PI + logdet)
                best = -np.inf
                for n in range(N):
                    acc = 0.0
                    for d in range(D):
                        r = obs[b, t, k, d] - means[b, t, n, d]
                        acc += (r * r + covs[b, t, n, d]) / phi[b, t, k, d]
                    s = log_prior[b, n] + const - 0.5 * inv_temp * acc
                    scores[n] = s
                    if s > best:
                        best = s
                # (log_prior[b, -1] is the clutter prior when there is a clutter class)
                _softmax_into(scores, best, N, log_prior[b, -1] + log_clutter[b, t, k], out,
                              b, t, k)


@numba.njit(cache=True, nogil=True)
def _e_w_full(obs, valid, phi, means, covs, log_prior, log_clutter, inv_temp, out):
    B, T, K, D = obs.shape
    N = means.shape[2]
    C = out.shape[3]
    scores = np.empty(C)
    chol = np.empty((D, D))
    inv = np.empty((D, D))  # inverse of the Cholesky factor, by forward substitution
    r = np.empty(D)
    for b in range(B):
        for t in range(T):
            for k in range(K):
                if not valid[b, t, k]:
                    for c in range(C):
                        out[b, t, k, c] = 0.0
                    continue
                chol[:, :] = np.linalg.cholesky(phi[b, t, k])
                logdet = 0.0
                for d in range(D):
                    logdet += 2.0 * math.log(chol[d, d])
                # L^-1 column by column (triangular solves of L x = e_j)
                for j in range(D):
                    for i in range(D):
                        acc = 1.0 if i == j else 0.0
                        for l in range(i):
                            acc -= chol[i, l] * inv[l, j]
                        inv[i, j] = acc / chol[i, i]
                const = -0.5 * (D * _LOG_2PI + logdet)
                best = -np.inf
                for n in range(N):
                    for d in range(D):
                        r[d] = obs[b, t, k, d] - means[b, t, n, d]
                    quad = 0.0
                    for i in range(D):
                        w = 0.0
                        for j in range(i + 1):
                            w += inv[i, j] * r[j]
                        quad += w * w
                    # tr(Phi^-1 Sigma) = ||L^-1 Sigma^(1/2)||^2 = sum_ij (L^-1 Sigma L^-T)_ii
                    trace = 0.0
                    for i in range(D):
                        for j in range(i + 1):
                            for l in range(i + 1):
                                trace += inv[i, j] * covs[b, t, n, j, l] * inv[i, l]
                    s = log_prior[b, n] + const - 0.5 * inv_temp * (quad + trace)
                    scores[n] = s
                    if s > best:
                        best = s
                # (log_prior[b, -1] is the clutter prior when there is a clutter class)
                _softmax_into(scores, best, N, log_prior[b, -1] + log_clutter[b, t, k], out,
                              b, t, k)


def e_w_numba(
    obs: np.ndarray,
    valid: np.ndarray,
    phi: np.ndarray,
    means: np.ndarray,
    covs: np.ndarray,
    log_prior: np.ndarray,
    log_clutter: float | np.ndarray = 0.0,
    temperature: float = 1.0,
) -> np.ndarray:
    """E-W step as a Numba kernel; same contract as :func:`e_w_numpy`.

    Diagonal ``phi`` costs ``O(B T K N D)`` with no allocation per observation; full ``phi`` is
    factorised once per observation (Cholesky) and reused for every source.
    """
    full, _ = _check(obs, valid, phi, means, covs, log_prior)
    f64 = np.float64
    args = (
        np.ascontiguousarray(obs, dtype=f64),
        np.ascontiguousarray(valid, dtype=np.bool_),
        np.ascontiguousarray(phi, dtype=f64),
        np.ascontiguousarray(means, dtype=f64),
        np.ascontiguousarray(covs, dtype=f64),
        np.ascontiguousarray(log_prior, dtype=f64),
        clutter_scores(log_clutter, obs.shape[:3]),
        1.0 / float(temperature),
    )
    out = np.empty(obs.shape[:3] + (log_prior.shape[1],))
    (_e_w_full if full else _e_w_diag)(*args, out)
    return out


e_w = e_w_numba


@numba.njit(cache=True, nogil=True)
def _evidence_diag(obs, valid, phi, eta, iv, ip):
    B, T, K, D = obs.shape
    N = iv.shape[2]
    iv[:] = 0.0
    ip[:] = 0.0
    for b in range(B):
        for t in range(T):
            for k in range(K):
                if not valid[b, t, k]:
                    continue
                for d in range(D):
                    prec = 1.0 / phi[b, t, k, d]
                    po = prec * obs[b, t, k, d]
                    for n in range(N):
                        e = eta[b, t, k, n]
                        iv[b, t, n, d] += e * po
                        ip[b, t, n, d] += e * prec


def evidence_diag(obs, valid, phi, eta_sources):
    """Information-form evidence for diagonal ``phi`` (Numba; oracle ``mixture._vem.evidence``).

    Returns ``info_vec`` :math:`\\sum_k \\eta_{tkn} \\Phi_{tk}^{-1} o_{tk}` and ``info_prec``
    :math:`\\sum_k \\eta_{tkn} \\Phi_{tk}^{-1}`, both of shape ``(B, T, N, D)``.
    """
    B, T, K, D = obs.shape
    N = eta_sources.shape[-1]
    iv, ip = np.empty((B, T, N, D)), np.empty((B, T, N, D))
    f64 = np.float64
    _evidence_diag(np.ascontiguousarray(obs, dtype=f64), np.ascontiguousarray(valid),
                   np.ascontiguousarray(phi, dtype=f64),
                   np.ascontiguousarray(eta_sources, dtype=f64), iv, ip)
    return iv, ip
