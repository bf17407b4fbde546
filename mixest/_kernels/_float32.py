"""Float32 tanh, exp and arcsinh that vectorise, for the compiled kernels (Numba).

A loop that calls the C library's ``tanh`` or ``exp`` once per value cannot be vectorised, and
in the SRNN passes and the audio E-W those calls cost more than the arithmetic around them.
The float32 versions here are written from range reduction and small polynomials, each within a
few float32 roundings of the exact value (tested against NumPy in float64). Each is chosen by
the dtype when a kernel is compiled (``numba.extending.overload``): float64 arrays get the C
library's functions, so that a double-precision twin keeps its accuracy.

Numba caches each kernel by the file it is defined in (``cache=True``), and these functions are
compiled into kernels of other files (``_srnn.py``, ``_spectral.py``): after editing this
module, delete ``mixest/_kernels/__pycache__`` so that those kernels are compiled again.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

__all__ = ["JIT", "arcsinh_into", "exp_into", "tanh"]

#: The options of the kernels that use these functions: every loop is ``fastmath`` (no value
#: is NaN or infinite) and ``error_model="numpy"`` lets the divisions vectorise.
JIT = dict(cache=True, nogil=True, fastmath=True, error_model="numpy")

#: tanh(x) = x P(x^2) / Q(x^2) on [-9, 9] (clamped outside, where tanh rounds to +-1 in
#: float32), the result clipped to [-1, 1]: a least-squares fit of the relative error with
#: weights 1 / Q, iterated (Loeb's method). Largest error 3.9e-7 (3.3 float32 epsilons, most
#: of it the rounding of its own float32 arithmetic); Q >= 1, so the division is safe.
_P = (0.9999999593187304, 0.12926956666106693, 2.9290265205146665e-03, 9.341829785592754e-06,
      -1.299862276937187e-08, 1.8797688217819718e-11)
_Q = (1.0, 0.46260249295445127, 2.3797122809243607e-02, 2.2923614960006062e-04)
_CLAMP = 9.0


@numba.njit(inline="always", **JIT)
def _tanh32(v):
    """Float32 tanh of one value by the rational fit above (vectorisable, no libm call)."""
    v = v if v < np.float32(_CLAMP) else np.float32(_CLAMP)
    v = v if v > np.float32(-_CLAMP) else np.float32(-_CLAMP)
    u = v * v
    p = np.float32(_P[5])
    p = p * u + np.float32(_P[4])
    p = p * u + np.float32(_P[3])
    p = p * u + np.float32(_P[2])
    p = p * u + np.float32(_P[1])
    p = p * u + np.float32(_P[0])
    q = np.float32(_Q[3])
    q = q * u + np.float32(_Q[2])
    q = q * u + np.float32(_Q[1])
    q = q * u + np.float32(1.0)
    r = v * p / q
    r = r if r < np.float32(1.0) else np.float32(1.0)
    return r if r > np.float32(-1.0) else np.float32(-1.0)


def tanh(v):
    """tanh in the network's precision: :func:`_tanh32` for float32, the C library's for
    float64 (chosen when compiled, so that no loop holds a call it does not need)."""
    return np.tanh(v)


@overload(tanh, jit_options=JIT)
def _tanh_overload(v):
    if isinstance(v, types.Float) and v.bitwidth == 32:
        return lambda v: _tanh32(v)
    return lambda v: np.tanh(v)


def arcsinh_into(values, out):
    """``out[...] = arcsinh(values)`` (same shape, contiguous); see the overload."""
    out[...] = np.arcsinh(values)


@overload(arcsinh_into, jit_options=JIT)
def _arcsinh_into_overload(values, out):
    """Float64 outputs: the C library. Float32 outputs (network inputs): ``log(a + sqrt(a^2 +
    1))`` with the logarithm computed from the float's exponent and mantissa, so that the loops
    vectorise (a C library call per value took a fifth of the E-S pass). Error below 3e-8
    where ``|arcsinh| <= 1`` and 6e-8 relative beyond: float32 rounding."""
    if out.dtype != types.float32:
        return lambda values, out: np.arcsinh(values, out)

    def approximate(values, out):
        v = values.ravel()
        o = out.ravel()
        bits = o.view(np.int32)
        n = v.shape[0]
        for i in range(n):  # w = |v| + sqrt(v^2 + 1) >= 1, stored to read its bits
            a = abs(v[i])
            w = a + np.sqrt(a * a + 1.0) if a < 1e4 else 2.0 * a
            o[i] = np.float32(w)
        exponent = np.empty(n, np.float32)
        for i in range(n):  # w = 2^e m with m in [1, 2)
            b = bits[i]
            exponent[i] = np.float32((b >> 23) - 127)
            bits[i] = (b & 0x007FFFFF) | 0x3F800000
        for i in range(n):  # log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 1/3
            m = o[i]
            e = exponent[i]
            if m > np.float32(1.4142135):  # m in [sqrt(1/2), sqrt(2)): |s| < 0.172
                m *= np.float32(0.5)
                e += np.float32(1.0)
            s = (m - np.float32(1.0)) / (m + np.float32(1.0))
            s2 = s * s
            series = np.float32(1.0 / 9.0)
            series = series * s2 + np.float32(1.0 / 7.0)
            series = series * s2 + np.float32(1.0 / 5.0)
            series = series * s2 + np.float32(1.0 / 3.0)
            series = series * s2 + np.float32(1.0)
            r = e * np.float32(0.6931471805599453) + np.float32(2.0) * s * series
            o[i] = r if v[i] >= 0 else -r
    return approximate


def exp_into(values, out):
    """``out[...] = exp(values)`` (same shape, contiguous); see the overload."""
    out[...] = np.exp(values)


@overload(exp_into, jit_options=JIT)
def _exp_into_overload(values, out):
    """Float64: the C library. Float32: ``2^k e^r`` with ``k`` the nearest integer to ``x /
    log 2``, ``|r| <= log(2) / 2`` and ``e^r`` its Taylor polynomial of degree 7 (relative
    error below 2e-7), ``2^k`` written into a float's exponent bits, so that the loops
    vectorise. Inputs are clamped to [-80, 80] (the networks' log-variances lie within [-18,
    12]; below -80, as in a softmax's far scores, the result is e^-80 = 1.8e-35 for 0)."""
    if out.dtype != types.float32:
        return lambda values, out: np.exp(values, out)

    def approximate(values, out):
        v = values.ravel()
        o = out.ravel()
        n = v.shape[0]
        power = np.empty(n, np.int32)
        for i in range(n):
            x = min(max(v[i], np.float32(-80.0)), np.float32(80.0))
            k = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
            r = x - k * np.float32(0.693359375)  # log 2 in two parts (Cody and Waite)
            r = r + k * np.float32(2.12194440e-4)
            p = np.float32(1.0 / 5040.0)
            p = p * r + np.float32(1.0 / 720.0)
            p = p * r + np.float32(1.0 / 120.0)
            p = p * r + np.float32(1.0 / 24.0)
            p = p * r + np.float32(1.0 / 6.0)
            p = p * r + np.float32(0.5)
            p = p * r + np.float32(1.0)
            o[i] = p * r + np.float32(1.0)
            power[i] = (np.int32(k) + 127) << 23
        scale = power.view(np.float32)
        for i in range(n):
            o[i] *= scale[i]
    return approximate
