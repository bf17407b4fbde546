"""E-W step and lower-bound terms of the audio VEM, per time-frequency bin.

The mixture's STFT bin :math:`x_{ft}` (complex) is assigned to one of ``N`` sources, each with a
circular complex Gaussian posterior :math:`q(s_{nft}) = N_c(\\mu_{nft}, \\nu_{nft})`, and
:math:`p(x_{ft} | w_{ft} = n, s) = N_c(x_{ft}; s_{nft}, v_{x,ft})`. The log-responsibility is

.. math::

    \\log \\beta_{nft} = \\log \\pi_n - \\log(\\pi v_{x,ft})
        - \\frac{|x_{ft} - \\mu_{nft}|^2 + \\nu_{nft}}{v_{x,ft}},

and :math:`\\eta_{\\cdot ft}` its softmax over sources, in log space. Arrays are time-major like
the engine's: ``x`` and ``v_x`` ``(B, T, F)``, the posteriors and ``eta`` ``(B, T, N, F)``.

:func:`spectral_e_w` (Numba, complex input kept complex) and :func:`spectral_e_w_numpy` (the
oracle) share this contract; :func:`spectral_data_bound` and :func:`spectral_prior_bound` are the
two parts of the lower bound. :func:`spectral_evidence` (the E-S step's evidence),
:func:`expected_power` (what E-Z reads), :func:`feed_terms` and :func:`source_posteriors` (before
and after the spectral priors' loop over frames) are the other per-bin passes, each with its
NumPy twin. :func:`additive_powers` is the additive model's pass
(:mod:`mixest.separation._additive`): the sources' posterior expected powers given their
prior variances when every bin is the sum of the sources.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from mixest._kernels._float32 import JIT, exp_into

__all__ = ["additive_powers", "additive_powers_numpy", "expected_power",
           "expected_power_numpy", "feed_terms", "feed_terms_numpy",
           "source_posteriors", "source_posteriors_numpy", "spectral_data_bound",
           "spectral_e_w", "spectral_e_w_numpy", "spectral_evidence", "spectral_evidence_numpy",
           "spectral_prior_bound"]

_LOG_PI = math.log(math.pi)


def _complex(a) -> np.ndarray:
    """``a`` as complex64 or complex128 (kept as it is when it is one of them)."""
    a = np.asarray(a)
    return a if a.dtype in (np.complex64, np.complex128) else a.astype(np.complex128)


def _real(a) -> np.ndarray:
    """``a`` as float32 or float64 (kept as it is when it is one of them)."""
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _sequence_major(shape: tuple, dtype) -> np.ndarray:
    """An empty ``(B, T, N, F)`` array whose memory is ``(B, N, T, F)``: the layout in which the
    engine hands the sources to their dynamics (``(B * N, T, F)`` is then a view, not a copy)."""
    B, T, N, F = shape
    return np.empty((B, N, T, F), dtype=dtype).transpose(0, 2, 1, 3)


def spectral_e_w_numpy(x: np.ndarray, v_x: np.ndarray, means: np.ndarray, covs: np.ndarray,
                       log_prior: np.ndarray) -> np.ndarray:
    """E-W in plain NumPy: ``eta`` of shape ``(B, T, N, F)``; ``log_prior`` ``(B, N)``."""
    dist = (np.abs(x[:, :, None] - means) ** 2 + covs) / v_x[:, :, None]
    score = log_prior[:, None, :, None] - dist
    score -= score.max(axis=2, keepdims=True)
    eta = np.exp(score)
    return eta / eta.sum(axis=2, keepdims=True)


@numba.njit(**JIT)
def _e_w(x, v_x, means, covs, log_prior, out):
    B, T, N, F = means.shape
    inv = np.empty(F)
    best = np.empty(F)
    score = np.empty((N, F))
    # the scores relative to their maximum, and their exponentials, in eta's precision: float32
    # for single-precision sources, whose exponential then vectorises (exp_into)
    rel = np.empty((N, F), out.dtype)
    weight = np.empty((N, F), out.dtype)
    total = np.empty(F)
    for b in range(B):
        for t in range(T):
            xt = x[b, t]
            for f in range(F):
                inv[f] = 1.0 / v_x[b, t, f]
            # source by source along the bins: each source's row of the means is contiguous
            for n in range(N):
                m, c, s, lp = means[b, t, n], covs[b, t, n], score[n], log_prior[b, n]
                for f in range(F):
                    dr = xt[f].real - m[f].real
                    di = xt[f].imag - m[f].imag
                    s[f] = lp - (dr * dr + di * di + c[f]) * inv[f]
            best[:] = score[0]
            for n in range(1, N):
                for f in range(F):
                    best[f] = max(best[f], score[n, f])
            for n in range(N):
                for f in range(F):
                    rel[n, f] = score[n, f] - best[f]
            exp_into(rel, weight)
            total[:] = 0.0
            for n in range(N):
                for f in range(F):
                    total[f] += weight[n, f]
            for f in range(F):
                total[f] = 1.0 / total[f]
            for n in range(N):
                o = out[b, t, n]
                for f in range(F):
                    o[f] = weight[n, f] * total[f]


def spectral_e_w(x: np.ndarray, v_x: np.ndarray, means: np.ndarray, covs: np.ndarray,
                 log_prior: np.ndarray) -> np.ndarray:
    """E-W with the Numba kernel (same contract as :func:`spectral_e_w_numpy`).

    ``eta`` is a ``(B, T, N, F)`` view of sequence-major memory, like the evidence
    (:func:`spectral_evidence`); the inputs may have any memory layout. The scores are
    computed in float64; ``eta`` is float32 when the means are complex64 (single-precision
    sources), else float64. In float32 the softmax's exponentials are the vectorised ones of
    :mod:`mixest._kernels._float32` (within a few float32 roundings; in float64 the C
    library's).
    """
    means = _complex(means)
    out = _sequence_major(means.shape, means.real.dtype)
    _e_w(_complex(x), _real(v_x), means, _real(covs), np.asarray(log_prior, dtype=float), out)
    return out


def spectral_evidence_numpy(x: np.ndarray, v_x: np.ndarray,
                            eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Information-form evidence ``(eta x / v_x, eta / v_x)`` of shape ``(B, T, N, F)``."""
    prec = eta / v_x[:, :, None]
    return prec * x[:, :, None], prec


@numba.njit(cache=True, nogil=True)
def _evidence(x, v_x, eta, info_vec, info_prec):
    B, T, N, F = eta.shape
    for b in range(B):
        for t in range(T):
            for n in range(N):
                for f in range(F):
                    p = eta[b, t, n, f] / v_x[b, t, f]
                    info_prec[b, t, n, f] = p
                    info_vec[b, t, n, f] = p * x[b, t, f]


def spectral_evidence(x: np.ndarray, v_x: np.ndarray,
                      eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The evidence with the Numba kernel (same contract as :func:`spectral_evidence_numpy`),
    as views of sequence-major memory (:func:`spectral_e_w`); in single precision (complex64,
    float32) when ``eta`` is float32."""
    eta = _real(eta)
    single = eta.dtype == np.float32
    info_vec = _sequence_major(eta.shape, np.complex64 if single else np.complex128)
    info_prec = _sequence_major(eta.shape, eta.dtype)
    _evidence(_complex(x), _real(v_x), eta, info_vec, info_prec)
    return info_vec, info_prec


@numba.njit(cache=True, nogil=True)
def _data_bound(x, v_x, means, covs, eta, log_prior, out):
    B, T, N, F = means.shape
    for b in range(B):
        acc = 0.0
        for t in range(T):
            for f in range(F):
                xr, xi, v = x[b, t, f].real, x[b, t, f].imag, v_x[b, t, f]
                log_norm = _LOG_PI + math.log(v)
                for n in range(N):
                    e = np.float64(eta[b, t, n, f])  # float64 logs of single-precision input
                    if e <= 0.0:
                        continue
                    m = means[b, t, n, f]
                    dr, di = xr - m.real, xi - m.imag
                    acc += e * (log_prior[b, n] - log_norm
                                - (dr * dr + di * di + covs[b, t, n, f]) / v - math.log(e))
        out[b] = acc


def spectral_data_bound(x, v_x, means, covs, eta, log_prior) -> np.ndarray:
    """:math:`E_q[\\log p(x, w | s)] + H(q(w))` per mixture, shape ``(B,)``."""
    out = np.empty(means.shape[0])
    _data_bound(_complex(x), _real(v_x), _complex(means), _real(covs), _real(eta),
                np.asarray(log_prior, dtype=float), out)
    return out


@numba.njit(cache=True, nogil=True)
def _prior_bound(means, covs, var, out):
    B, T, N, F = means.shape
    for b in range(B):
        acc = 0.0
        for t in range(T):
            for n in range(N):
                for f in range(F):
                    m = means[b, t, n, f]
                    c, v = np.float64(covs[b, t, n, f]), np.float64(var[b, t, n, f])
                    mr, mi = np.float64(m.real), np.float64(m.imag)
                    acc += 1.0 + math.log(c / v) - (mr * mr + mi * mi + c) / v
        out[b] = acc


def spectral_prior_bound(means: np.ndarray, covs: np.ndarray, var: np.ndarray) -> np.ndarray:
    """:math:`\\sum E_q[\\log N_c(s; 0, v)] + H(q(s))` per mixture, shape ``(B,)``.

    Per bin ``-log(pi v) - (|mu|^2 + nu) / v + log(pi e nu)``; ``var`` is the prior variance
    :math:`v_\\theta` the decoder gave in the E-S pass.
    """
    out = np.empty(means.shape[0])
    _prior_bound(_complex(means), _real(covs), _real(var), out)
    return out


# ---------------------------------------------------------------------- around the E-S recursion
# The evidence of a source's bin is information-form, (iv, ip) = (eta x / v_x, eta / v_x). With
# the prior variance v the posterior is nu = (1 / v + ip)^-1, mu = nu iv, so the expected power
# that the recursion feeds forward, |mu|^2 + nu = nu^2 |iv|^2 + nu, needs only the real terms
# ip and |iv|^2: the loop over frames runs in float32 on those, the complex means follow after.


def feed_terms_numpy(info_vec: np.ndarray, info_prec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ip, |iv|^2)`` as float32 arrays of the evidence's shape, in plain NumPy."""
    return info_prec.astype(np.float32), (np.abs(info_vec) ** 2).astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _squared_modulus(iv, power):
    for i in range(iv.size):
        power[i] = iv[i].real * iv[i].real + iv[i].imag * iv[i].imag


def feed_terms(info_vec: np.ndarray, info_prec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The evidence's precision ``ip`` and power ``|iv|^2`` as float32 (the power in one Numba
    pass).

    ``info_vec`` (complex) and ``info_prec`` have the same shape; so do both results. A
    contiguous float32 ``info_prec`` (single-precision sources) is returned as it is, not
    copied.
    """
    prec = np.ascontiguousarray(info_prec, dtype=np.float32)
    power = np.empty(prec.shape, dtype=np.float32)
    _squared_modulus(np.ascontiguousarray(_complex(info_vec)).ravel(), power.ravel())
    return prec, power


def expected_power_numpy(means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """``|mu|^2 + nu`` as float32, in plain NumPy."""
    return (np.abs(means) ** 2 + covs).astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _expected_power(means, covs, out):
    for i in range(means.size):
        out[i] = means[i].real * means[i].real + means[i].imag * means[i].imag + covs[i]


def expected_power(means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """The posterior expected power ``|mu|^2 + nu`` of every bin as float32, in one pass
    (Numba): what the priors' encoders read in E-Z."""
    out = np.empty(np.shape(covs), dtype=np.float32)
    _expected_power(np.ascontiguousarray(_complex(means)).ravel(),
                    np.ascontiguousarray(_real(covs)).ravel(), out.ravel())
    return out


@numba.njit(cache=True, nogil=True)
def _powers_agree(a, b, rtol):
    for i in range(a.size):
        if not abs(a[i] - b[i]) <= rtol * abs(b[i]):  # False on NaN as well
            return False
    return True


def powers_agree(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    """Whether two power arrays of one shape agree to relative precision ``rtol`` in every bin
    (one pass, stopping at the first that does not; NaN agrees with nothing)."""
    if np.shape(a) != np.shape(b):
        return False
    return bool(_powers_agree(np.ascontiguousarray(a).ravel(), np.ascontiguousarray(b).ravel(),
                              float(rtol)))


def source_posteriors_numpy(var: np.ndarray, info_vec: np.ndarray,
                            info_prec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, nu)`` from the prior variances ``var``, in plain NumPy (complex128, float64)."""
    v = var.astype(np.float64)
    nu = v / (1.0 + v * info_prec)
    return nu * info_vec, nu


@numba.njit(cache=True, nogil=True)
def _source_posteriors(var, iv, ip, mu, nu):
    for i in range(var.size):
        v = np.float64(var[i])
        n = v / (1.0 + v * ip[i])
        nu[i] = n
        mu[i] = n * iv[i]


def source_posteriors(var: np.ndarray, info_vec: np.ndarray,
                      info_prec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean ``mu = nu iv`` and variance ``nu = v / (1 + v ip)`` of every bin from
    the prior variances ``var`` (any float dtype), in one pass (Numba), computed in float64
    and stored in the evidence's precision (complex64 and float32 for complex64 ``info_vec``).
    All arrays have the same shape."""
    info_vec = _complex(info_vec)
    mu = np.empty(info_vec.shape, dtype=info_vec.dtype)
    nu = np.empty(info_vec.shape, dtype=info_vec.real.dtype)
    _source_posteriors(np.ascontiguousarray(_real(var)).ravel(),
                       np.ascontiguousarray(info_vec).ravel(),
                       np.ascontiguousarray(_real(info_prec)).ravel(),
                       mu.ravel(), nu.ravel())
    return mu, nu


def additive_powers_numpy(power: np.ndarray, var: np.ndarray, v_x: np.ndarray) -> np.ndarray:
    """:func:`additive_powers` in plain NumPy: ``|mu|^2 + nu`` of the Wiener posterior
    :math:`\\mu_n = g_n x`, :math:`\\nu_n = v_n (1 - g_n)`, :math:`g_n = v_n / (\\sum_m v_m +
    v_x)`, with ``|x|^2`` given as ``power``."""
    gain = var / (var.sum(axis=2, keepdims=True) + v_x[:, :, None])
    return (gain**2 * power[:, :, None] + var * (1.0 - gain)).astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _additive_powers(power, var, v_x, out):
    B, T, N, F = var.shape
    total = np.empty(F)
    for b in range(B):
        for t in range(T):
            total[:] = v_x[b, t]
            for n in range(N):
                total += var[b, t, n]
            for n in range(N):
                for f in range(F):
                    v = var[b, t, n, f]
                    g = v / total[f]
                    out[b, t, n, f] = g * g * power[b, t, f] + v * (1.0 - g)


def additive_powers(power: np.ndarray, var: np.ndarray, v_x: np.ndarray) -> np.ndarray:
    """The sources' posterior expected powers when each bin is the sum of the sources.

    Parameters
    ----------
    power : ndarray of shape (B, T, F)
        The mixtures' bin powers :math:`|x|^2`.
    var : ndarray of shape (B, T, N, F)
        The sources' prior variances.
    v_x : ndarray of shape (B, T, F)
        The observation variance.

    Returns
    -------
    ndarray of shape (B, T, N, F), float32
        :math:`|\\mu_n|^2 + \\nu_n = g_n^2 |x|^2 + v_n (1 - g_n)` with
        :math:`g_n = v_n / (\\sum_m v_m + v_x)`, computed in float64 in one pass (Numba).
    """
    out = np.empty(np.shape(var), dtype=np.float32)
    _additive_powers(np.ascontiguousarray(power, dtype=np.float64),
                     np.ascontiguousarray(var, dtype=np.float64),
                     np.ascontiguousarray(v_x, dtype=np.float64), out)
    return out
