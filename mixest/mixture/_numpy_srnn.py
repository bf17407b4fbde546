"""Inference-only NumPy twin of a trained Gaussian SRNN (:class:`mixest.dvae.SRNN`).

The tracking prior is tiny (about 1.5k parameters) and the VEM calls it one frame at a time on a
batch of ``n_sequences * n_sources`` rows, so torch's per-operation overhead dominates its run
time. This module copies the weights into NumPy arrays and re-implements the two calls the engine
needs: step by step in float64 (``decode_step`` for E-S, ``encode`` for E-Z: the test oracles),
and over the whole batch in one compiled call each (:meth:`NumpySRNN.forward_pass`,
:meth:`NumpySRNN.encode_fast`; :mod:`mixest._kernels._srnn`). :func:`numpy_twin` checks the twin
against the torch module on random inputs and returns None when they disagree (an architecture or
option it does not know), so callers fall back to torch.
"""

from __future__ import annotations

import numpy as np

from mixest._kernels._srnn import (
    _LOGVAR_MAX,
    _LOGVAR_MIN,
    srnn_encode,
    srnn_features,
    srnn_forward,
)

__all__ = ["NumpySRNN", "numpy_twin"]

#: Largest prior variance of a propagated prediction, in the network's (image-normalised) units:
#: a standard deviation of one image, i.e. nothing known. The delta method treats m_{t-1} and
#: m_{t-2} as independent, so through a run of frames without evidence a gated extrapolation
#: (coefficient up to 2) multiplies the variance by up to 4 per frame; uncapped, it overflows
#: after a few hundred frames and the bound is no longer finite.
MAX_PRIOR_VAR = 1.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


class _MLP:
    """``nn.Sequential`` of ``Linear`` and ``Tanh`` layers, as (W^T, b, tanh-after) triples."""

    def __init__(self, seq):
        from mixest.dvae._modules import mlp_layers

        def array(p):
            return p.detach().double().cpu().numpy()

        self.layers = [(array(seq[int(name)].weight).T.copy(), array(seq[int(name)].bias).copy(),
                        act) for name, act in mlp_layers(seq)]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for w, b, act in self.layers:
            x = x @ w + b
            if act:
                x = np.tanh(x)
        return x


class _LSTM:
    def __init__(self, rnn):
        def get(name):
            return getattr(rnn, name).detach().double().cpu().numpy()

        self.w_ih = get("weight_ih_l0").T.copy()
        self.w_hh = get("weight_hh_l0").T.copy()
        self.b = get("bias_ih_l0") + get("bias_hh_l0")
        self.H = self.w_hh.shape[0]

    def step(self, pre: np.ndarray, h: np.ndarray, c: np.ndarray):
        """One step given ``pre = x @ W_ih + b``; gates in torch's order i, f, g, o."""
        g = pre + h @ self.w_hh
        H = self.H
        i, f = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H])
        cell, o = np.tanh(g[:, 2 * H:3 * H]), _sigmoid(g[:, 3 * H:])
        c = f * c + i * cell
        return o * np.tanh(c), c

    def sequence(self, x: np.ndarray) -> np.ndarray:
        """Run over ``x`` of shape (M, T, F) from zero state; hidden states (M, T, H)."""
        M, T, _ = x.shape
        pre = x @ self.w_ih + self.b
        h = np.zeros((M, self.H))
        c = np.zeros((M, self.H))
        out = np.empty((M, T, self.H))
        for t in range(T):
            h, c = self.step(pre[:, t], h, c)
            out[:, t] = h
        return out


class NumpySRNN:
    """NumPy inference twin of a Gaussian SRNN module (see the module docstring).

    States are tuples ``(h, c, z, x, t)`` like :class:`mixest.dvae.DVAEState`.

    Parameters
    ----------
    module : mixest.dvae.SRNN
    dtype : {numpy.float64, numpy.float32}, default=numpy.float64
        Precision of the network inside the fast paths (:meth:`encode_fast`,
        :meth:`forward_pass`). ``float32`` is the module's own precision, with vectorised tanh,
        exp and arcsinh accurate to float32 rounding; ``float64`` uses the C library's. The
        trajectories, variances and Gaussian products around the network stay in float64 either
        way. The step-by-step reference paths are float64.
    """

    def __init__(self, module, dtype=np.float64):
        if getattr(module, "architecture", None) != "srnn" or module.likelihood != "gaussian":
            raise TypeError("NumpySRNN supports Gaussian SRNN modules only.")

        def buf(name):
            return getattr(module, name).detach().double().cpu().numpy().copy()

        if module.encoder_input != "x":
            raise ValueError("the NumPy SRNN twin runs trajectory priors with encoder_input='x'; "
                             f"this module has encoder_input={module.encoder_input!r}.")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}.")
        self.x_dim, self.z_dim, self.rnn_dim = module.x_dim, module.z_dim, module.rnn_dim
        self.loc, self.scale = buf("x_loc"), buf("x_scale")
        self.dx_scale, self.min_var = buf("dx_scale"), buf("min_var")
        self.ddx_scale = buf("ddx_scale") if hasattr(module, "ddx_scale") else self.dx_scale
        self.residual_order = int(getattr(module, "residual_order", 1))
        self.velocity_input = bool(module.velocity_input)
        self.gated = bool(getattr(module, "gated_extrapolation", False))
        self.acc_unit = buf("acc_unit") if self.gated else None
        # what the compiled feature passes divide by (they compute the gated features always)
        self._acc_divisor = self.acc_unit if self.gated else np.ones(self.x_dim)
        # noise_level_input: the module's noise_level buffer, a constant last feature
        self.level = float(module.noise_level) if getattr(module, "noise_level_input",
                                                          False) else None
        self.n_kinematic = self.x_dim * (1 + self.velocity_input + 2 * self.gated)
        self.n_features = self.n_kinematic + (self.level is not None)
        self.encoder_rnn = bool(module.encoder_rnn)
        self.feature_x = _MLP(module.feature_x)
        self.feature_enc = _MLP(module.feature_enc)
        self.encoder_net = _MLP(module.encoder_net)
        self.decoder_net = _MLP(module.decoder_net)
        self.rnn = _LSTM(module.rnn)
        self.rnn_enc = _LSTM(module.rnn_enc) if self.encoder_rnn else None

    # -------------------------------------------------------------- generative steps
    def initial_state(self, batch_size: int):
        zeros = np.zeros((batch_size, self.rnn_dim))
        return (zeros, zeros.copy(), np.zeros((batch_size, self.z_dim)),
                np.zeros((batch_size, self.x_dim)), 0, ())

    def _features(self, x, earlier=()):
        """Features of ``x`` given the frames before it that exist, most recent first."""
        xs = (x - self.loc) / self.scale
        parts = [xs]
        n = len(earlier)
        if self.velocity_input:
            if n == 0:
                parts.append(np.zeros_like(xs))
            else:  # = (xs - xs_last) * scale / dx_scale
                parts.append((x - earlier[0]) / self.dx_scale)
        if self.gated:
            parts += [np.zeros_like(xs), np.zeros_like(xs)]
            if n >= 2:
                acc = x - 2.0 * earlier[0] + earlier[1]
                parts[-2] = np.arcsinh(acc / self.acc_unit)
            if n >= 3:
                jerk = acc - (earlier[0] - 2.0 * earlier[1] + earlier[2])
                parts[-1] = np.arcsinh(jerk / self.acc_unit)
        if self.level is not None:
            parts.append(np.full(xs.shape[:-1] + (1,), self.level))
        return np.concatenate(parts, -1)

    def gates(self, h, z):
        """``(sigmoid(g_v), sigmoid(g_a))`` of the gated extrapolation (see the module)."""
        out = self.decoder_net(np.concatenate([h, z], -1))
        D = self.x_dim
        return _sigmoid(out[..., 2 * D:3 * D]), _sigmoid(out[..., 3 * D:])

    def _emission(self, h, z, x_prev, x_pprev, x_ppprev=None):
        out = self.decoder_net(np.concatenate([h, z], -1))
        D = self.x_dim
        raw_m, raw_lv = out[..., :D], out[..., D:2 * D]
        order = self.residual_order
        if x_prev is None:
            order = 0
        elif x_pprev is None:
            order = min(order, 1)
        if order == 2:
            base, scale = 2.0 * x_prev - x_pprev, self.ddx_scale
        elif order == 1:
            base, scale = x_prev, self.dx_scale
        else:
            base, scale = self.loc, self.scale
        mean = base + scale * raw_m
        if self.gated and order == 1 and x_pprev is not None:
            vel = x_prev - x_pprev
            mean = mean + _sigmoid(out[..., 2 * D:3 * D]) * vel
            if x_ppprev is not None:
                mean = mean + _sigmoid(out[..., 3 * D:]) * (vel - x_pprev + x_ppprev)
        var = scale**2 * np.exp(np.clip(raw_lv, _LOGVAR_MIN, _LOGVAR_MAX)) + self.min_var
        return mean, var

    def decode_step(self, x_prev, z_t, state):
        """Feed ``x_{t-1}``, decode ``p(x_t | h_t, z_t)``; mirrors ``DVAEModule.decode_step``."""
        h, c, _, x_state, t, past = state
        x_pprev = x_state if t >= 2 else None
        x_ppprev = past[0] if t >= 3 else None
        if t == 0:
            f = np.zeros((h.shape[0], self.n_features))
            x_keep = x_state
        else:
            earlier = (x_state, *past)[: max(0, min(t - 1, 1 + len(past)))]
            f = self._features(x_prev, earlier)
            x_keep, past = x_prev, (x_state, *past[:1])
        h, c = self.rnn.step(self.feature_x(f) @ self.rnn.w_ih + self.rnn.b, h, c)
        t += 1
        mean, var = self._emission(h, z_t, x_prev if t > 1 else None, x_pprev, x_ppprev)
        return mean, var, (h, c, z_t, x_keep, t, past)

    # -------------------------------------------------------------- inference network
    def _sequence_features(self, x):
        xs = (x - self.loc) / self.scale
        parts = [xs]
        if self.velocity_input:
            vel = np.zeros_like(xs)
            vel[:, 1:] = (x[:, 1:] - x[:, :-1]) / self.dx_scale
            parts.append(vel)
        if self.gated:
            acc, jerk = np.zeros_like(xs), np.zeros_like(xs)
            dd = x[:, 2:] - 2.0 * x[:, 1:-1] + x[:, :-2]
            acc[:, 2:] = np.arcsinh(dd / self.acc_unit)
            jerk[:, 3:] = np.arcsinh((dd[:, 1:] - dd[:, :-1]) / self.acc_unit)
            parts += [acc, jerk]
        if self.level is not None:
            parts.append(np.full(xs.shape[:-1] + (1,), self.level))
        return np.concatenate(parts, -1) if len(parts) > 1 else xs

    def _time_major_features(self, x: np.ndarray) -> np.ndarray:
        """:meth:`_sequence_features` as a ``(T, M, F)`` array in the network's precision, in
        one compiled pass (:func:`mixest._kernels._srnn.srnn_features`)."""
        M, T, D = x.shape
        out = np.empty((T, M, self.n_features), self.dtype)
        level = np.array([] if self.level is None else [self.level])
        srnn_features(np.ascontiguousarray(x, dtype=np.float64), self.loc, self.scale,
                      self.dx_scale, self._acc_divisor, self.velocity_input, self.gated, level,
                      out)
        return out

    def encode(self, x: np.ndarray, rng: np.random.Generator | None = None):
        """Posterior ``q(z | x)`` over whole sequences ``(M, T, x_dim)``.

        Returns ``(z, z_mean, z_logvar)``; ``z`` is the mean unless ``rng`` is given, in which
        case it is drawn (reparameterised, fed forward as ``z_{t-1}``).
        """
        M, T, _ = x.shape
        f = self._sequence_features(x)
        a = self.feature_enc(f)
        if self.encoder_rnn:
            a = self.rnn_enc.sequence(a[:, ::-1])[:, ::-1]
        f_prev = np.concatenate([np.zeros_like(f[:, :1]), f[:, :-1]], 1)
        hs = self.rnn.sequence(self.feature_x(f_prev))
        # first encoder layer on [h_t, a_t] for all t at once; only z_{t-1} is per step
        w0, b0, act0 = self.encoder_net.layers[0]
        k = hs.shape[-1] + a.shape[-1]
        pre = np.concatenate([hs, a], -1) @ w0[:k] + b0
        w_z = w0[k:]
        rest = self.encoder_net.layers[1:]
        z = np.zeros((M, T, self.z_dim))
        zm = np.empty_like(z)
        zlv = np.empty_like(z)
        z_prev = np.zeros((M, self.z_dim))
        for t in range(T):
            out = pre[:, t] + z_prev @ w_z
            if act0:
                out = np.tanh(out)
            for w, b, act in rest:
                out = out @ w + b
                if act:
                    out = np.tanh(out)
            qm = out[:, : self.z_dim]
            qlv = np.clip(out[:, self.z_dim:], _LOGVAR_MIN, _LOGVAR_MAX)
            z_t = qm if rng is None else qm + np.exp(0.5 * qlv) * rng.standard_normal(qm.shape)
            z[:, t], zm[:, t], zlv[:, t] = z_t, qm, qlv
            z_prev = z_t
        return z, zm, zlv

    # -------------------------------------------------------------- fast batched paths
    # Both passes run as one compiled call each (mixest._kernels._srnn): BLAS products over
    # all rows, fused element-wise loops, a vectorised tanh. Algebra is rearranged, never
    # approximated beyond float32 rounding: sigmoid(x) = (1 + tanh(x / 2)) / 2 with the 1/2
    # folded into the weights, gates reordered (i, f, o, g) so that one tanh covers them all,
    # standardisation folded into first layers.

    def _compile(self) -> None:
        """The kernels' weights, rearranged (once)."""
        if getattr(self, "_fast", None) is not None:
            return
        D, Z, H = self.x_dim, self.z_dim, self.rnn_dim
        dt = self.dtype
        w0, b0, act0 = self.encoder_net.layers[0]
        k = w0.shape[0] - Z  # encoder inputs [h_t, a_t, z_{t-1}]
        lstm_in = (_gates(self.rnn.w_ih, H), _gates(self.rnn.b, H), False)
        # E-S input path: feature MLP then the LSTM's input layer (already in the gate layout);
        # its first layer reads [x_{t-2}, x_{t-1}] in data units (standardisation folded in)
        layers = list(self.feature_x.layers) + [lstm_in]
        w1, b1, a1 = layers[0]
        w_x = w1[:D] / self.scale[:, None]
        b_x = b1 - (self.loc / self.scale) @ w1[:D]
        if self.level is not None:  # the constant noise-level feature (after frame 0)
            b_x = b_x + self.level * w1[self.n_kinematic]
        empty = np.zeros((0, 0))
        w_2 = w_acc = empty
        if self.velocity_input:
            w_v = w1[D:2 * D] / self.dx_scale[:, None]
            w_2 = np.concatenate([-w_v, w_x + w_v])
        if self.gated:  # acceleration and jerk features are nonlinear: their rows stay apart
            w_acc = w1[self.n_kinematic - 2 * D:self.n_kinematic]
        g0 = b1[None].copy()  # t = 0: zero features (x_0 = 0 in standardised units)
        if a1:
            np.tanh(g0, out=g0)
        g0 = _run_layers(g0, layers[1:])[0]
        enc_layers = list(self.feature_enc.layers)
        w_hh_e = empty
        if self.encoder_rnn:
            enc_layers.append((_gates(self.rnn_enc.w_ih, H), _gates(self.rnn_enc.b, H), False))
            w_hh_e = _gates(self.rnn_enc.w_hh, H)
        d0, db0, dact0 = self.decoder_net.layers[0]

        def mlp(layers, width):  # (weights, biases, flags); an identity layer for none
            if not layers:
                layers = [(np.eye(width), np.zeros(width), False)]
            return (tuple(_as(w, dt) for w, _, _ in layers),
                    tuple(_as(np.ravel(b), dt) for _, b, _ in layers),
                    tuple(bool(a) for _, _, a in layers))

        w_hh = _as(_gates(self.rnn.w_hh, H), dt)  # the forward LSTM's, read by both passes
        self._fast = {
            "encode": (*mlp(layers, 0), w_hh,
                       *mlp(enc_layers, self.n_features), _as(w_hh_e, dt),
                       _as(w0[:H], dt), _as(w0[H:k], dt), _as(b0, dt), bool(act0),
                       _as(w0[k:], dt), *mlp(self.encoder_net.layers[1:], w0.shape[1])),
            "forward": (_as(g0, dt), _as(w_2, dt), _as(w_x, dt), _as(b_x, dt), bool(a1),
                        _as(w_acc, dt), *mlp(layers[1:], len(b_x)),
                        w_hh, _as(d0[:H], dt), _as(d0[H:], dt),
                        _as(db0, dt), bool(dact0),
                        *mlp(self.decoder_net.layers[1:], d0.shape[1])),
        }

    def encode_fast(self, x: np.ndarray, n_samples: int = 1, eps: np.ndarray | None = None,
                    hidden: np.ndarray | None = None):
        """:meth:`encode` in one compiled call (:func:`mixest._kernels._srnn.srnn_encode`;
        the same results to rounding).

        Parameters
        ----------
        x : ndarray of shape (M, T, x_dim)
        n_samples : int, default=1
            Latent rows per sequence (rows ``m R .. m R + R - 1`` belong to ``x[m]``).
        eps : ndarray of shape (M R, T, z_dim), optional
            Standard normal draws; ``z`` is the posterior mean without them.
        hidden : ndarray of shape (T, M, rnn_dim), optional
            The forward LSTM's states on ``x`` when already known (:meth:`forward_pass`
            computes them when fed ``x``): only the encoder's own LSTM runs then.

        Returns
        -------
        z, z_mean, z_logvar : ndarray of shape (M R, T, z_dim)
        """
        self._compile()
        dt = self.dtype
        M, T, _ = x.shape
        R, Z = int(n_samples), self.z_dim
        f = self._time_major_features(x)  # (T, M, F), contiguous
        # time-major: each frame's rows are one block (returned as (M R, T, Z) views)
        zm = np.empty((T, M * R, Z), dt)
        zlv = np.empty((T, M * R, Z), dt)
        z = zm if eps is None else np.empty((T, M * R, Z), dt)
        hidden = (np.zeros((0, 0, 0), dt) if hidden is None
                  else np.ascontiguousarray(hidden, dtype=dt))
        eps = np.zeros((M * R, 0, Z)) if eps is None else np.asarray(eps, dtype=np.float64)
        srnn_encode(f, *self._fast["encode"], hidden, eps, R, z, zm, zlv)
        return tuple(a.transpose(1, 0, 2) for a in (z, zm, zlv))

    def forward_pass(self, info_vec: np.ndarray, info_prec: np.ndarray, z: np.ndarray,
                     n_samples: int = 1, propagate_uncertainty: bool = True,
                     return_hidden: bool = False, return_coefficients: bool = False):
        """E-S forward pass of the decoder fed with its own posterior means, in one compiled
        call (:func:`mixest._kernels._srnn.srnn_forward`).

        Same results (to rounding) as stepping :meth:`decode_step`, moment-matching over the
        ``n_samples`` latent rows of each source, adding the propagated input uncertainty and
        taking the element-wise Gaussian product, frame by frame (what
        :class:`mixest.mixture.DVAEDynamics` does step by step).

        Parameters
        ----------
        info_vec, info_prec : ndarray of shape (M, T, x_dim)
            Diagonal evidence in information form.
        z : ndarray of shape (M R, T, z_dim)
            Latents, ``R = n_samples`` rows per source.
        n_samples : int, default=1
        propagate_uncertainty : bool, default=True
            See :class:`mixest.mixture.DVAEDynamics`.
        return_hidden : bool, default=False
            Also return the LSTM states ``(T, M, rnn_dim)``: those of the teacher-forced pass on
            the returned means, which :meth:`encode_fast` can reuse.
        return_coefficients : bool, default=False
            Also return the linearisation the smoother holds fixed
            (:func:`mixest.mixture.lagged_smoother`): the coefficients
            :math:`\\partial \\mu_t / \\partial m_{t-k}`, k = 1, 2, 3 (averaged over the latent
            rows; ``(1, 0, 0)`` for a first-order residual, ``(1 + g_v + g_a, -g_v - 2 g_a,
            g_a)`` with gated extrapolation), and the network's own share of ``pred_var``
            (the rest is propagated input uncertainty).

        Returns
        -------
        means, covs, pred_mean, pred_var : ndarray of shape (M, T, x_dim)
        hidden : ndarray of shape (T, M, rnn_dim), only with ``return_hidden``
        coefficients, noise_share : ndarray of shapes (M, T, x_dim, 3) and (M, T, x_dim), only
            with ``return_coefficients``
        """
        self._compile()
        dt = self.dtype
        M, T, D = info_vec.shape
        R = int(n_samples)
        if z.shape[0] != M * R:
            raise ValueError(f"z has {z.shape[0]} rows; expected {M * R} (M * n_samples).")

        def time_major(a, dtype=np.float64):  # free for the transposed views encode_fast returns
            return np.ascontiguousarray(np.transpose(a, (1, 0, 2)), dtype=dtype)

        means, covs, pm, pv = (np.empty((T, M, D)) for _ in range(4))
        coef = np.empty((3, T, M, D))  # the smoother reads it in this layout
        share = np.empty((T, M, D))
        hs = np.empty((T, M, self.rnn_dim) if return_hidden else (0, 0, 0), dt)
        srnn_forward(time_major(info_vec), time_major(info_prec), time_major(z, dt),
                     *self._fast["forward"], self.residual_order, self.gated,
                     bool(propagate_uncertainty), self.loc, self.scale, self.dx_scale,
                     self.ddx_scale, self.min_var, self._acc_divisor, MAX_PRIOR_VAR,
                     means, covs, pm, pv, coef, share, hs)
        out = tuple(a.transpose(1, 0, 2) for a in (means, covs, pm, pv))
        if return_hidden:
            out += (hs,)
        if return_coefficients:
            out += (coef.transpose(2, 1, 3, 0), share.transpose(1, 0, 2))
        return out


def _gates(a: np.ndarray, H: int) -> np.ndarray:
    """Torch gate columns (i, f, g, o) -> fast layout (i, f, o, g), sigmoid inputs halved."""
    i, f, g, o = (a[..., j * H:(j + 1) * H] for j in range(4))
    return np.concatenate([0.5 * i, 0.5 * f, 0.5 * o, g], -1)


def _as(a: np.ndarray, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def _run_layers(x: np.ndarray, layers) -> np.ndarray:
    for w, b, act in layers:
        x = x @ w
        x += b
        if act:
            np.tanh(x, out=x)
    return x


def numpy_twin(module, rtol: float = 1e-3, atol: float = 1e-5,
               dtype=np.float64) -> NumpySRNN | None:
    """A verified :class:`NumpySRNN` of ``module``, or None when unsupported or unequal.

    The twin is checked against the torch module on random trajectories (posterior means and a
    few ``decode_step`` calls); float32 torch against float64 NumPy agree to ~1e-6. ``dtype`` is
    the precision of the twin's fast paths (see :class:`NumpySRNN`).
    """
    import torch

    try:
        twin = NumpySRNN(module, dtype)
    except (TypeError, AttributeError):
        return None
    rng = np.random.default_rng(0)
    x = twin.loc + twin.scale * 0.1 * rng.standard_normal((3, 6, twin.x_dim)).cumsum(1)
    with torch.no_grad():
        xt = torch.as_tensor(x, dtype=torch.float32, device=module.x_loc.device)
        _, zm_t, _ = module.encode(xt, sample=False)
        z, zm, _ = twin.encode(x)
        ok = np.allclose(zm, zm_t.double().cpu().numpy(), rtol=rtol, atol=atol)
        st_t, st = module.initial_state(3), twin.initial_state(3)
        for t in range(4):
            xp = x[:, t - 1] if t > 0 else None
            xpt = xt[:, t - 1] if t > 0 else None
            m_t, v_t, st_t = module.decode_step(xpt, zm_t[:, t], st_t)
            m, v, st = twin.decode_step(xp, z[:, t], st)
            ok = ok and np.allclose(m, m_t.double().cpu().numpy(), rtol=rtol, atol=atol)
            ok = ok and np.allclose(v, v_t.double().cpu().numpy(), rtol=rtol, atol=1e-9)
    return twin if ok else None
