"""Compiled E-Z and E-S passes of a small Gaussian SRNN prior (Numba).

The tracking prior has about 1.5k parameters: its layers are 16 to 64 wide, and the VEM runs it
over ``M = n_sequences * n_sources`` rows of T frames, 70 times per batch. Stepped frame by frame
from Python, every frame cost some fifty NumPy calls on ``(M, 16..64)`` arrays, and their
overhead, the temporaries between them and the C library's tanh were most of the run time.

Here one call runs a whole pass, frame by frame over all ``M`` rows at once. The matrix
products stay BLAS calls (``np.dot``, about 50 multiply-adds per nanosecond on these shapes; a
product written as loops reached a third of that, and products over several frames at once
were slower: their temporaries leave the cache). Everything element-wise between them (biases,
the LSTM cells, the encoder's read-out, the prior's Gaussian product) is a fused loop. The
network's tanh (every sigmoid gate is one, see :func:`mixest.mixture._numpy_srnn._gates`), the
exponential of its log-variances and the arcsinh of its acceleration features are float32
approximations that vectorise (:mod:`mixest._kernels._float32`),
accurate to a few float32 roundings: a call to the C library per value cannot be vectorised,
and cost more than the products. ``error_model="numpy"`` lets their divisions vectorise (there
is no division by zero to check). Float64 networks (the twin's ``dtype``) take the C library's
functions instead, chosen when the kernels are compiled. Every loop is ``fastmath``: no value
here is NaN or infinite (a NaN sentinel would be optimised away; the noise level comes as an
array of zero or one value for that reason).

The weights arrive in the fast layout of :meth:`mixest.mixture._numpy_srnn.NumpySRNN._compile`
(LSTM gates ``(i, f, o, g)`` with the sigmoid inputs halved), each multilayer perceptron as
tuples of weight matrices ``(in, out)``, biases and activation flags. The test oracles are the
twin's step-by-step float64 paths (``encode``, ``decode_step``) and the torch module
(``tests/mixture/test_fast_srnn.py``).
"""

from __future__ import annotations

import numba
import numpy as np

# the BLAS that Numba's np.dot calls, loaded with this module so that the thread limits the
# engine sets before a VEM run (one thread per process) apply to it as well
import scipy.linalg.cython_blas  # noqa: F401

from mixest._kernels._float32 import JIT, arcsinh_into, exp_into, tanh

__all__ = ["srnn_encode", "srnn_features", "srnn_forward"]

#: The clip of the networks' log-variances (the torch module's own, mixest.dvae._modules)
_LOGVAR_MIN, _LOGVAR_MAX = -18.0, 12.0

@numba.njit(inline="always", **JIT)
def _bias_act(y, b, act):
    """``y = act(y + b)`` in place, row by row."""
    N = b.shape[0]
    for i in range(y.shape[0]):
        row = y[i]
        if act:
            for j in range(N):
                row[j] = tanh(row[j] + b[j])
        else:
            for j in range(N):
                row[j] += b[j]


@numba.njit(**JIT)
def _mlp(x, ws, bs, acts):
    """The layers ``(ws[l], bs[l], acts[l])`` on the rows of ``x`` (new arrays, BLAS)."""
    y = np.dot(x, ws[0])
    _bias_act(y, bs[0], acts[0])
    for layer in range(1, len(ws)):
        y = np.dot(y, ws[layer])
        _bias_act(y, bs[layer], acts[layer])
    return y


@numba.njit(inline="always", **JIT)
def _lstm_cells(gates, pre, h, c):
    """One LSTM step of every row, after ``gates = h @ W_hh`` (fast layout): adds the input
    part ``pre``, applies the gates and updates ``h`` and ``c`` (rows, H) in place."""
    H = h.shape[1]
    half = gates.dtype.type(0.5)
    for i in range(gates.shape[0]):
        g = gates[i]
        p = pre[i]
        for j in range(4 * H):
            g[j] = tanh(g[j] + p[j])
        hi = h[i]
        ci = c[i]
        for j in range(H):
            cj = (g[H + j] * half + half) * ci[j] + (g[j] * half + half) * g[3 * H + j]
            ci[j] = cj
            hi[j] = (g[2 * H + j] * half + half) * tanh(cj)


@numba.njit(inline="always", **JIT)
def _average(total, R):
    """``total / R``, without the division for a single latent row (the same value)."""
    return total if R == 1 else total / R


@numba.njit(inline="always", **JIT)
def _emit(out, net_var, gate_v, gate_a, m, t, R, order, gated, propagate, loc, scale, dx_scale,
          ddx_scale, min_var, max_var, info_vec, info_prec, means, covs, pm, pv, coef, share):
    """Row ``m`` at frame ``t`` after the decoder: the prior from its latent rows ``m R ..
    m R + R - 1`` (``out``: the decoder's outputs, of which the raw means; ``net_var``: exp of
    the clipped log-variances; ``gate_v``, ``gate_a``: the gated extrapolation's sigmoids) and
    its product with the evidence."""
    D = means.shape[2]
    o = min(order, t)
    for d in range(D):
        vel = 0.0
        acc = 0.0
        if gated and t >= 2:
            vel = means[t - 1, m, d] - means[t - 2, m, d]
            if t >= 3:
                acc = vel - means[t - 2, m, d] + means[t - 3, m, d]
        c1_sum = 0.0  # delta-method coefficients of m_{t-1}, m_{t-2}, m_{t-3}
        c2_sum = 0.0
        c3_sum = 0.0
        c1_sq = 0.0
        c2_sq = 0.0
        c3_sq = 0.0
        if o == 2:
            base = 2.0 * means[t - 1, m, d] - means[t - 2, m, d]
            sc = ddx_scale[d]
        elif o == 1:
            base = means[t - 1, m, d]
            sc = dx_scale[d]
        else:
            base = loc[d]
            sc = scale[d]
        # moment matching: mean variance plus the spread of the row means (0 for R = 1)
        mu_sum = 0.0
        mu_sq = 0.0
        var_sum = 0.0
        for r in range(m * R, (m + 1) * R):
            mu_r = sc * np.float64(out[r, d])
            if gated and t >= 2:
                g_v = np.float64(gate_v[r, d])
                g_a = np.float64(gate_a[r, d]) if t >= 3 else 0.0
                mu_r += g_v * vel + g_a * acc
                c1 = 1.0 + g_v + g_a
                c1_sum += c1
                c2_sum += g_v + 2.0 * g_a
                c3_sum += g_a
                c1_sq += c1 * c1
                c2_sq += (g_v + 2.0 * g_a) ** 2
                c3_sq += g_a * g_a
            mu_sum += mu_r
            mu_sq += mu_r * mu_r
            var_sum += np.float64(net_var[r, d]) * sc * sc + min_var[d]
        mu_bar = _average(mu_sum, R)
        var = _average(var_sum, R) + (_average(mu_sq, R) - mu_bar * mu_bar)
        mu = base + mu_bar
        if gated and t >= 2:
            coef[0, t, m, d] = _average(c1_sum, R)
            coef[1, t, m, d] = -_average(c2_sum, R)
            coef[2, t, m, d] = _average(c3_sum, R)
        elif o == 2:
            coef[0, t, m, d] = 2.0
            coef[1, t, m, d] = -1.0
            coef[2, t, m, d] = 0.0
        elif o == 1:
            coef[0, t, m, d] = 1.0
            coef[1, t, m, d] = 0.0
            coef[2, t, m, d] = 0.0
        else:
            coef[0, t, m, d] = 0.0
            coef[1, t, m, d] = 0.0
            coef[2, t, m, d] = 0.0
        own = var
        if propagate and order >= 1 and t >= 1:
            if gated and t >= 2:
                var += (_average(c1_sq, R) * covs[t - 1, m, d]
                        + _average(c2_sq, R) * covs[t - 2, m, d])
                if t >= 3:
                    var += _average(c3_sq, R) * covs[t - 3, m, d]
            elif order == 2 and t >= 2:
                var += 4.0 * covs[t - 1, m, d] + covs[t - 2, m, d]
            else:
                var += covs[t - 1, m, d]
            var = min(var, max_var)
        pm[t, m, d] = mu
        pv[t, m, d] = var
        share[t, m, d] = min(own / var, 1.0)
        sigma = var / (var * info_prec[t, m, d] + 1.0)
        covs[t, m, d] = sigma
        means[t, m, d] = sigma * (mu / var + info_vec[t, m, d])


@numba.njit(**JIT)
def srnn_features(x, loc, scale, dx_scale, acc_unit, velocity, gated, level, out):
    """The network's input features of trajectories ``x`` (M, T, D), time-major.

    Writes ``out[t, m]``: the standardised position, the velocity over ``dx_scale`` (if
    ``velocity``), the arcsinh of the acceleration and jerk over ``acc_unit`` (if ``gated``)
    and the constant noise ``level`` (if given: an array of one value, else of none), each
    zero where the frames it needs are missing.
    """
    M, T, D = x.shape
    F = out.shape[2]
    first = D * (1 + velocity)
    kin = np.zeros((M, 2 * D))
    kin_out = np.empty((M, 2 * D), out.dtype)
    for t in range(T):
        for m in range(M):
            for d in range(D):
                out[t, m, d] = (x[m, t, d] - loc[d]) / scale[d]
                if velocity:
                    out[t, m, D + d] = (x[m, t, d] - x[m, t - 1, d]) / dx_scale[d] if t else 0.0
                if gated:
                    a = 0.0
                    j = 0.0
                    if t >= 2:
                        dd = x[m, t, d] - 2.0 * x[m, t - 1, d] + x[m, t - 2, d]
                        a = dd / acc_unit[d]
                        if t >= 3:
                            dd1 = x[m, t - 1, d] - 2.0 * x[m, t - 2, d] + x[m, t - 3, d]
                            j = (dd - dd1) / acc_unit[d]
                    kin[m, d] = a
                    kin[m, D + d] = j
            if level.shape[0]:
                out[t, m, F - 1] = level[0]
        if gated:
            arcsinh_into(kin, kin_out)
            for m in range(M):
                for k in range(2 * D):
                    out[t, m, first + k] = kin_out[m, k]


@numba.njit(**JIT)
def srnn_encode(f, ws_x, bs_x, acts_x, w_hh, ws_a, bs_a, acts_a, w_hh_e, w_h, w_a, b0, act0,
                w_z, ws_rest, bs_rest, acts_rest, hidden, eps, R, z, zm, zlv):
    """E-Z: the posterior ``q(z | x)`` of every row.

    Parameters
    ----------
    f : ndarray of shape (T, M, F)
        The network's input features of ``x`` (time-major, contiguous, network precision).
    ws_x, bs_x, acts_x : tuples
        Feature MLP of the forward LSTM, its last layer the LSTM's input layer (gate layout).
    w_hh : ndarray of shape (H, 4 H)
        The forward LSTM's recurrent weights.
    ws_a, bs_a, acts_a : tuples
        The encoder's feature MLP, and after it, if ``w_hh_e`` has rows, the input layer of the
        backward encoder LSTM run over the features in reverse.
    w_hh_e : ndarray of shape (H_e, 4 H_e)
        The backward encoder LSTM's recurrent weights (shape (0, 0): the module has none).
    w_h, w_a, b0, act0, w_z : arrays and flag
        The encoder's first layer, split by its inputs ``[h_t, a_t, z_{t-1}]``.
    ws_rest, bs_rest, acts_rest : tuples
        The encoder's other layers; the last one outputs ``[mean, log-variance]``.
    hidden : ndarray of shape (T, M, H)
        The forward LSTM's states when already known (``T = 0``: run here).
    eps : ndarray of shape (M R, T, Z)
        Standard normal draws (``T = 0``: ``z`` is the posterior mean).
    R : int
        Latent rows per row of ``f`` (rows ``m R .. m R + R - 1`` belong to row ``m``).
    z, zm, zlv : ndarray of shape (T, M R, Z)
        Outputs, time-major (``z`` may be ``zm``).
    """
    T, M, F = f.shape
    Z = w_z.shape[0]
    H = w_hh.shape[0]
    dt = f.dtype
    backward = w_hh_e.shape[0] > 0
    # the encoder features a_t: a feature MLP, then (if any) a backward LSTM over them
    a_seq = np.empty((T, M, w_a.shape[0]), dt)
    h_e = np.zeros((M, w_hh_e.shape[0]), dt)
    c_e = np.zeros_like(h_e)
    gates = np.empty((M, 4 * h_e.shape[1]), dt)
    for s in range(T):
        t = T - 1 - s
        y = _mlp(f[t], ws_a, bs_a, acts_a)
        if backward:
            np.dot(h_e, w_hh_e, gates)
            _lstm_cells(gates, y, h_e, c_e)
            a_seq[t] = h_e
        else:
            a_seq[t] = y
    h = np.zeros((M, H), dt)
    c = np.zeros_like(h)
    gates = np.empty((M, 4 * H), dt)
    reuse = hidden.shape[0] > 0
    n0 = b0.shape[0]
    p0 = np.empty((M, n0), dt)
    p0_a = np.empty((M, n0), dt)
    zeros = np.zeros((M, F), dt)
    draw = eps.shape[1] > 0
    half = dt.type(0.5)
    p = np.empty((M * R, n0), dt)
    z_prev = np.zeros((M * R, Z), dt)
    for t in range(T):
        if reuse:
            h[:] = hidden[t]
        else:  # the forward LSTM reads the features of x_{t-1} (zeros at t = 0)
            y = _mlp(f[t - 1] if t > 0 else zeros, ws_x, bs_x, acts_x)
            np.dot(h, w_hh, gates)
            _lstm_cells(gates, y, h, c)
        # the encoder's first layer: [h_t, a_t] once per row, z_{t-1} once per latent row
        np.dot(h, w_h, p0)
        np.dot(a_seq[t], w_a, p0_a)
        np.dot(z_prev, w_z, p)
        for row in range(M * R):
            pr = p[row]
            base = p0[row // R]
            base_a = p0_a[row // R]
            for j in range(n0):
                v = pr[j] + base[j] + base_a[j] + b0[j]
                pr[j] = tanh(v) if act0 else v
        out = _mlp(p, ws_rest, bs_rest, acts_rest)
        for row in range(M * R):
            for k in range(Z):
                lv = min(max(out[row, Z + k], dt.type(_LOGVAR_MIN)), dt.type(_LOGVAR_MAX))
                zm[t, row, k] = out[row, k]
                zlv[t, row, k] = lv
                value = out[row, k]
                if draw:
                    value += np.exp(half * lv) * dt.type(eps[row, t, k])
                z[t, row, k] = value
                z_prev[row, k] = value


@numba.njit(**JIT)
def srnn_forward(info_vec, info_prec, z, g0, w_2, w_x, b_x, act1, w_acc, ws_f, bs_f, acts_f,
                 w_hh, w_dh, w_dz, db0, dact0, ws_d, bs_d, acts_d, order, gated, propagate,
                 loc, scale, dx_scale, ddx_scale, min_var, acc_unit, max_var,
                 means, covs, pm, pv, coef, share, hs):
    """E-S forward pass: the prior fed its own posterior means, frame by frame, every row.

    At frame ``t`` the decoder's LSTM reads the features of the posterior mean ``m_{t-1}``
    (position, velocity, and with the ``gated`` extrapolation the arcsinh of its acceleration
    and jerk), the decoder gives the prior :math:`N(\\mu_t, v_t)` from its state and each of
    the row's ``R`` latent rows (moment matched over them; the residual base, gated velocity
    and acceleration terms, clipped log-variance, variance floor and, with ``propagate``, the
    delta-method variance of its inputs, capped at ``max_var``), and its element-wise Gaussian
    product with the evidence is the posterior at ``t``.

    Parameters
    ----------
    info_vec, info_prec : ndarray of shape (T, M, D)
        Evidence in information form (time-major, float64).
    z : ndarray of shape (T, M R, Z)
        Latent rows, ``R`` per row, time-major (network precision).
    g0 : ndarray of shape (4 H,)
        The LSTM's input at ``t = 0`` (features of ``x_0 = 0``).
    w_2, w_x, b_x, act1, w_acc
        First feature layer on ``[m_{t-2}, m_{t-1}]`` (``w_2``; shape (0, 0) without the
        velocity input), on ``m_{t-1}`` alone (``w_x``), and on the arcsinh of the scaled
        acceleration and jerk (``w_acc``; shape (0, 0) without the gated extrapolation).
    ws_f, bs_f, acts_f : tuples
        The feature MLP's other layers, the last one the LSTM's input layer (gate layout).
    w_hh : ndarray of shape (H, 4 H)
    w_dh, w_dz, db0, dact0, ws_d, bs_d, acts_d
        The decoder's first layer split by its inputs ``[h_t, z_t]``, and its other layers.
    order, gated, propagate
        Residual order, gated extrapolation, propagated input uncertainty.
    loc, scale, dx_scale, ddx_scale, min_var, acc_unit : ndarray of shape (D,)
        The module's scales (float64).
    max_var : float
        Cap of a propagated prediction's variance.
    means, covs, pm, pv : ndarray of shape (T, M, D)
        Outputs: posterior and prior moments (time-major, float64).
    coef : ndarray of shape (3, T, M, D)
        Output: the prediction's coefficients on ``m_{t-1}, m_{t-2}, m_{t-3}``.
    share : ndarray of shape (T, M, D)
        Output: the network's own share of the prediction's variance.
    hs : ndarray of shape (T, M, H)
        Output: the LSTM's states (shape (0, 0, 0): not kept).
    """
    T, M, D = info_vec.shape
    R = z.shape[1] // M
    H = w_hh.shape[0]
    dt = z.dtype
    velocity = w_2.shape[0] > 0
    keep = hs.shape[0] > 0
    feat = np.zeros((M, 2 * D), dt)  # m_{t-2}, m_{t-1}
    kin_raw = np.zeros((M, 2 * D))  # m_{t-1}'s acceleration and jerk over acc_unit
    kin = np.zeros((M, 2 * D), dt)  # their arcsinh
    h = np.zeros((M, H), dt)
    c = np.zeros((M, H), dt)
    gates = np.empty((M, 4 * H), dt)
    pre = np.empty((M, 4 * H), dt)
    d0 = np.empty((M, db0.shape[0]), dt)
    p = np.empty((M * R, db0.shape[0]), dt)
    log_var = np.empty((M * R, D), dt)
    net_var = np.empty((M * R, D), dt)
    gate_v = np.zeros((M * R, D), dt)
    gate_a = np.zeros((M * R, D), dt)
    half = dt.type(0.5)
    for t in range(T):
        if t == 0:  # the LSTM's input: features of m_{t-1} (x_0 = 0 at t = 0)
            for i in range(M):
                pre[i] = g0
        else:
            for i in range(M):
                for d in range(D):
                    feat[i, d] = means[max(t - 2, 0), i, d]
                    feat[i, D + d] = means[t - 1, i, d]
            if velocity and t >= 2:
                x1 = np.dot(feat, w_2)
            else:  # no velocity yet at t = 1
                x1 = np.dot(np.ascontiguousarray(feat[:, D:]), w_x)
            if gated and t >= 3:
                for i in range(M):
                    for d in range(D):
                        acc = means[t - 1, i, d] - 2.0 * means[t - 2, i, d] + means[t - 3, i, d]
                        jerk = 0.0
                        if t >= 4:
                            jerk = acc - (means[t - 2, i, d] - 2.0 * means[t - 3, i, d]
                                          + means[t - 4, i, d])
                        kin_raw[i, d] = acc / acc_unit[d]
                        kin_raw[i, D + d] = jerk / acc_unit[d]
                arcsinh_into(kin_raw, kin)
                x1 += np.dot(kin, w_acc)
            _bias_act(x1, b_x, act1)
            pre[:] = _mlp(x1, ws_f, bs_f, acts_f)
        np.dot(h, w_hh, gates)
        _lstm_cells(gates, pre, h, c)  # the R latent rows share the LSTM's input and state
        if keep:
            hs[t] = h
        np.dot(h, w_dh, d0)
        np.dot(np.ascontiguousarray(z[t]), w_dz, p)
        for row in range(M * R):
            pr = p[row]
            base = d0[row // R]
            for j in range(db0.shape[0]):
                v = pr[j] + base[j] + db0[j]
                pr[j] = tanh(v) if dact0 else v
        dec = _mlp(p, ws_d, bs_d, acts_d)
        # the decoder's transcendental read-outs in whole-frame loops, which vectorise
        for row in range(M * R):
            for d in range(D):
                log_var[row, d] = min(max(dec[row, D + d], dt.type(_LOGVAR_MIN)),
                                      dt.type(_LOGVAR_MAX))
                if gated:
                    gate_v[row, d] = half + half * tanh(half * dec[row, 2 * D + d])
                    gate_a[row, d] = half + half * tanh(half * dec[row, 3 * D + d])
        exp_into(log_var, net_var)
        for m in range(M):
            _emit(dec, net_var, gate_v, gate_a, m, t, R, order, gated, propagate, loc, scale,
                  dx_scale, ddx_scale, min_var, max_var, info_vec, info_prec, means, covs, pm,
                  pv, coef, share)
