"""Inference-only NumPy twin of a trained Gaussian SRNN (:class:`mixest.dvae.SRNN`).

The tracking prior is tiny (about 1.5k parameters) and the VEM calls it one frame at a time on a
batch of ``n_sequences * n_sources`` rows, so torch's per-operation overhead dominates its run
time. This module copies the weights into float64 NumPy arrays and re-implements the two calls the
engine needs, ``decode_step`` (E-S) and ``encode`` (E-Z). :func:`numpy_twin` checks the twin
against the torch module on random inputs and returns None when they disagree (an architecture or
option it does not know), so callers fall back to torch.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["NumpySRNN", "numpy_twin"]

_LOGVAR_MIN, _LOGVAR_MAX = -18.0, 12.0
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
        :meth:`forward_pass`). ``float32`` is the module's own precision and runs the tanh-bound
        recurrences about twice as fast; the trajectories, variances and Gaussian products around
        the network stay in float64 either way. The step-by-step reference paths are float64.
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
        """:meth:`_sequence_features` as a ``(T, M, F)`` array in the network's precision.

        The same arithmetic in two compiled passes around NumPy's arcsinh: broadcasting
        ``(x_dim,)`` vectors over ``(M, T, x_dim)`` arrays runs one inner loop of ``x_dim``
        values per frame, and took longer than the LSTMs it feeds.
        """
        M, T, D = x.shape
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty((T, M, self.n_features), self.dtype)
        n_acc = 2 if self.gated else 0
        acc = np.empty((n_acc, T, M, D))
        level = np.nan if self.level is None else self.level
        _linear_features(x, self.loc, self.scale, self.dx_scale, self._acc_divisor,
                         self.velocity_input, level, out, acc)
        if n_acc:
            np.arcsinh(acc, out=acc)
            _place_columns(acc, D * (1 + self.velocity_input), out)
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
    # Both passes below step all rows together frame by frame with a handful of NumPy calls per
    # frame (SIMD tanh/exp over the whole batch beat per-row compiled loops, whose scalar libm
    # calls dominate for a model this small). Algebra is rearranged, never approximated:
    # sigmoid(x) = (1 + tanh(x / 2)) / 2 with the 1/2 folded into the weights, gates reordered
    # (i, f, o, g) so that one tanh covers them all, standardisation folded into first layers.

    def _compile(self) -> None:
        """Rearranged weights of the fast paths (once)."""
        if getattr(self, "_fast", None) is not None:
            return
        D, Z, H = self.x_dim, self.z_dim, self.rnn_dim
        w0, b0, act0 = self.encoder_net.layers[0]
        k = w0.shape[0] - Z  # encoder inputs [h_t, a_t, z_{t-1}]
        lstms = [self.rnn_enc, self.rnn] if self.encoder_rnn else [self.rnn]
        # E-S input path: feature MLP then the LSTM's input layer (already in the gate layout);
        # its first layer reads [x_{t-2}, x_{t-1}] in data units (standardisation folded in)
        layers = list(self.feature_x.layers) + [(_gates(self.rnn.w_ih, H),
                                                 _gates(self.rnn.b, H), False)]
        w1, b1, a1 = layers[0]
        w_x = w1[:D] / self.scale[:, None]
        b_x = b1 - (self.loc / self.scale) @ w1[:D]
        if self.level is not None:  # the constant noise-level feature (after frame 0)
            b_x = b_x + self.level * w1[self.n_kinematic]
        w_2 = w_acc = None
        if self.velocity_input:
            w_v = w1[D:2 * D] / self.dx_scale[:, None]
            w_2 = np.concatenate([-w_v, w_x + w_v])
        if self.gated:  # acceleration and jerk features are nonlinear: their rows stay apart
            w_acc = w1[self.n_kinematic - 2 * D:self.n_kinematic]
        g0 = b1[None].copy()  # t = 0: zero features (x_0 = 0 in standardised units)
        if a1:
            np.tanh(g0, out=g0)
        d0, db0, dact0 = self.decoder_net.layers[0]
        self._fast = _cast({
            "enc0": (w0[:k], b0, w0[k:], act0),
            "enc_rest": self.encoder_net.layers[1:],
            "w_in": _block_gates([m.w_ih for m in lstms]),
            "b_in": _block_gates([m.b[None] for m in lstms]).sum(0),
            "w_hh": _block_gates([m.w_hh for m in lstms]),
            "w_hh_rnn": _gates(self.rnn.w_hh, H),
            "enc_only": None if not self.encoder_rnn else (
                _gates(self.rnn_enc.w_ih, H), _gates(self.rnn_enc.b, H),
                _gates(self.rnn_enc.w_hh, H)),
            "feature_x": self.feature_x.layers,
            "feature_enc": self.feature_enc.layers,
            "feat": (w_2, w_x, b_x, a1, layers[1:], _run_layers(g0, layers[1:]), w_acc),
            "dec0": (d0[:H], d0[H:], db0, dact0),
            "dec_rest": self.decoder_net.layers[1:],
        }, self.dtype)

    def encode_fast(self, x: np.ndarray, n_samples: int = 1, eps: np.ndarray | None = None,
                    hidden: np.ndarray | None = None):
        """:meth:`encode` batched frame by frame (the same results to rounding).

        The backward encoder LSTM and the forward LSTM run side by side as one LSTM with
        block-diagonal weights (time-major arrays throughout, one slice per frame).

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
        fast = self._fast
        dt = self.dtype
        M, T, _ = x.shape
        Z, H = self.z_dim, self.rnn_dim
        f = self._time_major_features(x)  # (T, M, F), contiguous
        if hidden is None:
            f_prev = np.concatenate([np.zeros_like(f[:1]), f[:-1]], 0)
            g = _run_layers(f_prev, fast["feature_x"])
            a = _run_layers(f, fast["feature_enc"])
            if self.encoder_rnn:  # backward LSTM on a and forward LSTM on g as one block LSTM
                g = np.concatenate([a[::-1], g], -1)
            w_in, b_in, w_hh = fast["w_in"], fast["b_in"], fast["w_hh"]
        elif self.encoder_rnn:
            g = None  # the encoder features are computed frame by frame below
            w_in, b_in, w_hh = fast["enc_only"]
        else:
            a = _run_layers(f, fast["feature_enc"])
        if hidden is None or self.encoder_rnn:
            # frame by frame: (M, 64) blocks stay in cache, (T, M, 64) arrays do not
            n = w_hh.shape[0]
            h = np.zeros((M, n), dt)
            c = np.zeros((M, n), dt)
            out = np.empty((T, M, n), dt)
            for t in range(T):
                g_t = _run_layers(f[T - 1 - t], fast["feature_enc"]) if g is None else g[t]
                pre = g_t @ w_in
                pre += b_in
                h, c = _lstm_step(pre, h, c, w_hh)
                out[t] = h
        if self.encoder_rnn:
            a = out[::-1, :, :H]
        if hidden is not None:
            out = hidden.astype(dt, copy=False)
        w_ha, b0, w_z, act0 = fast["enc0"]
        k = a.shape[-1]
        w_h, w_a = w_ha[:-k], w_ha[-k:]
        rest = fast["enc_rest"]
        R = n_samples
        MR = M * R
        # time-major: each frame's rows are one block (returned as (M R, T, Z) views)
        zm = np.empty((T, MR, Z), dt)
        zlv = np.empty((T, MR, Z), dt)
        z = zm if eps is None else np.empty((T, MR, Z), dt)
        z_prev = np.zeros((MR, Z), dt)
        for t in range(T):
            p0 = out[t, :, -H:] @ w_h
            p0 += a[t] @ w_a
            p0 += b0
            if R > 1:
                p0 = np.repeat(p0, R, axis=0)
            p0 += z_prev @ w_z
            if act0:
                np.tanh(p0, out=p0)
            _split_latent_moments(_run_layers(p0, rest), zm[t], zlv[t])
            if eps is not None:
                np.multiply(np.exp(0.5 * zlv[t]), eps[:, t], out=z[t])
                z[t] += zm[t]
            z_prev = z[t]
        return tuple(a.transpose(1, 0, 2) for a in (z, zm, zlv))

    def forward_pass(self, info_vec: np.ndarray, info_prec: np.ndarray, z: np.ndarray,
                     n_samples: int = 1, propagate_uncertainty: bool = True,
                     return_hidden: bool = False, return_coefficients: bool = False):
        """E-S forward pass of the decoder fed with its own posterior means.

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
        fast = self._fast
        dt = self.dtype
        M, T, D = info_vec.shape
        R = int(n_samples)
        w_h, w_z, b0, act0 = fast["dec0"]
        rest = fast["dec_rest"]
        w_hh = fast["w_hh_rnn"]
        w_2, w_x, b_x, act1, feat_rest, g0, w_acc = fast["feat"]
        z = z.astype(dt, copy=False)
        order = self.residual_order
        # time-major, so that a frame's rows are contiguous for the compiled emission
        info_vec = np.ascontiguousarray(info_vec.transpose(1, 0, 2))
        info_prec = np.ascontiguousarray(info_prec.transpose(1, 0, 2))
        means = np.empty((T, M, D))
        # the next frame's network inputs, written by the compiled emission: x_{t-2}, x_{t-1}
        # in the network's precision and (gated) x_{t-1}'s acceleration and jerk in float64,
        # before their arcsinh
        feat = np.zeros((M, 2 * D), dt)
        kin = np.zeros((M, 2 * D) if w_acc is not None else (0, 0))
        kin_in = np.zeros((M, 2 * D), dt) if w_acc is not None else None
        covs = np.empty((T, M, D))
        pm = np.empty((T, M, D))
        pv = np.empty((T, M, D))
        coef = np.zeros((3, T, M, D))  # the smoother reads it in this layout
        share = np.ones((T, M, D))
        h = np.zeros((M * R, self.rnn_dim), dt)
        c = np.zeros((M * R, self.rnn_dim), dt)
        hs = np.empty((T, M, self.rnn_dim), dt) if return_hidden else None
        for t in range(T):
            if t == 0:
                g = g0
            else:
                if t >= 2 and w_2 is not None:
                    g = feat @ w_2
                else:  # zero velocity at t = 1
                    g = feat[:, D:] @ w_x
                g += b_x
                if w_acc is not None and t >= 3:  # acceleration and jerk of x_{t-1}
                    np.arcsinh(kin, out=kin_in, casting="same_kind")
                    g += kin_in @ w_acc
                if act1:
                    np.tanh(g, out=g)
                g = _run_layers(g, feat_rest)
            if R > 1 and t > 0:
                g = np.repeat(g, R, axis=0)
            h, c = _lstm_step(g, h, c, w_hh)
            if hs is not None:
                hs[t] = h[::R]  # the R rows of a source share their input, hence their state
            out = h @ w_h
            out += z[:, t] @ w_z
            out += b0
            if act0:
                np.tanh(out, out=out)
            out = _run_layers(out, rest)
            # the rest of the frame in one compiled call (about 20 tiny ufuncs otherwise)
            _emit_and_update(out, t, R, order, self.gated, propagate_uncertainty, self.loc,
                             self.scale, self.dx_scale, self.ddx_scale, self.min_var, info_vec,
                             info_prec, means, covs, pm, pv, coef, share, feat, kin,
                             self._acc_divisor)
        out = tuple(a.transpose(1, 0, 2) for a in (means, covs, pm, pv))
        if return_hidden:
            out += (hs,)
        if return_coefficients:
            out += (coef.transpose(2, 1, 3, 0), share.transpose(1, 0, 2))
        return out


@numba.njit(cache=True, inline="always")
def _average(total, R):
    """``total / R``, without the division for a single latent row (the same value)."""
    return total if R == 1 else total / R


@numba.njit(cache=True)
def _emit_and_update(out, t, R, order, gated, propagate, loc, scale, dx_scale, ddx_scale,
                     min_var, info_vec, info_prec, means, covs, pm, pv, coef, share, feat, kin,
                     acc_unit):
    """Frame ``t`` of :meth:`NumpySRNN.forward_pass` after the decoder network.

    Turns the decoder output ``out`` (M R, 2 D; 4 D with the ``gated`` extrapolation), ``R``
    latent rows per source, into the prior :math:`N(\\mu_t, v_t)` (residual base, gated
    velocity and acceleration, clipped log-variance, variance floor, moment matching over the
    ``R`` rows, propagated input uncertainty) and takes its element-wise Gaussian product with
    the evidence, writing row ``t`` of every output (``coef``: the transition coefficients
    :math:`\\partial \\mu_t / \\partial m_{t-k}`, k = 1, 2, 3; ``share``: the network's own
    share of the prediction's variance). Then the inputs of frame ``t + 1``: ``feat`` gets
    ``(x_{t-1}, x_t)`` in the network's precision, and ``kin`` (unless it has no rows) the
    acceleration and jerk of ``x_t`` over ``acc_unit``, zero where the frames before are
    missing.
    """
    _, M, D = means.shape
    o = min(order, t)
    for m in range(M):
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
            for r in range(R):
                row = m * R + r
                lv = min(max(np.float64(out[row, D + d]), _LOGVAR_MIN), _LOGVAR_MAX)
                mu_r = sc * np.float64(out[row, d])
                if gated and t >= 2:
                    g_v = 1.0 / (1.0 + np.exp(-np.float64(out[row, 2 * D + d])))
                    g_a = 0.0
                    if t >= 3:
                        g_a = 1.0 / (1.0 + np.exp(-np.float64(out[row, 3 * D + d])))
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
                var_sum += np.exp(lv) * sc * sc + min_var[d]
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
            elif o == 1:
                coef[0, t, m, d] = 1.0
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
                var = min(var, MAX_PRIOR_VAR)
            pm[t, m, d] = mu
            pv[t, m, d] = var
            share[t, m, d] = min(own / var, 1.0)
            sigma = var / (var * info_prec[t, m, d] + 1.0)
            covs[t, m, d] = sigma
            means[t, m, d] = sigma * (mu / var + info_vec[t, m, d])
    for m in range(M):  # the next frame's inputs
        for d in range(D):
            feat[m, d] = means[max(t - 1, 0), m, d]
            feat[m, D + d] = means[t, m, d]
            if kin.shape[0] > 0:
                acc = 0.0
                jerk = 0.0
                if t >= 2:
                    acc = means[t, m, d] - 2.0 * means[t - 1, m, d] + means[t - 2, m, d]
                if t >= 3:
                    jerk = acc - (means[t - 1, m, d] - 2.0 * means[t - 2, m, d]
                                  + means[t - 3, m, d])
                kin[m, d] = acc / acc_unit[d]
                kin[m, D + d] = jerk / acc_unit[d]


@numba.njit(cache=True)
def _linear_features(x, loc, scale, dx_scale, acc_unit, velocity, level, out, acc):
    """The features of :meth:`NumpySRNN._sequence_features` that need no arcsinh.

    Writes ``out[t, m]``: the standardised position, the velocity (if ``velocity``) and the
    constant ``level`` (unless NaN) in their columns, and ``acc[0 / 1, t, m]`` the scaled
    acceleration and jerk (zero where the frames before are missing), whose arcsinh the caller
    takes. Expressions as in the NumPy version, so the values are the same.
    """
    M, T, D = x.shape
    F = out.shape[2]
    n_acc = acc.shape[0]
    for m in range(M):
        for t in range(T):
            for d in range(D):
                out[t, m, d] = (x[m, t, d] - loc[d]) / scale[d]
                if velocity:
                    v = 0.0
                    if t >= 1:
                        v = (x[m, t, d] - x[m, t - 1, d]) / dx_scale[d]
                    out[t, m, D + d] = v
                if n_acc:
                    a = 0.0
                    j = 0.0
                    if t >= 2:
                        dd = x[m, t, d] - 2.0 * x[m, t - 1, d] + x[m, t - 2, d]
                        a = dd / acc_unit[d]
                        if t >= 3:
                            dd1 = x[m, t - 1, d] - 2.0 * x[m, t - 2, d] + x[m, t - 3, d]
                            j = (dd - dd1) / acc_unit[d]
                    acc[0, t, m, d] = a
                    acc[1, t, m, d] = j
            if not np.isnan(level):
                out[t, m, F - 1] = level


@numba.njit(cache=True)
def _place_columns(acc, first, out):
    """``out[t, m, first + k D + d] = acc[k, t, m, d]`` (cast to ``out``'s precision)."""
    K, T, M, D = acc.shape
    for t in range(T):
        for m in range(M):
            for k in range(K):
                for d in range(D):
                    out[t, m, first + k * D + d] = acc[k, t, m, d]


@numba.njit(cache=True)
def _split_latent_moments(o, mean, logvar):
    """The encoder's output ``o = [mean, log-variance]`` into ``mean`` and the clipped
    ``logvar`` (one pass; NumPy would copy and clip four values per row at a time)."""
    M, Z = mean.shape
    for m in range(M):
        for k in range(Z):
            mean[m, k] = o[m, k]
            v = o[m, Z + k]
            if v < _LOGVAR_MIN:
                v = _LOGVAR_MIN
            elif v > _LOGVAR_MAX:
                v = _LOGVAR_MAX
            logvar[m, k] = v


@numba.njit(cache=True)
def _lstm_cell(g, c, c_out, o_out):
    """The element-wise part of :func:`_lstm_step` after its tanh (fast gate layout).

    ``g = tanh`` of the gate inputs, sigmoid gates halved beforehand, so ``sigmoid = g / 2 +
    1 / 2``; writes the new cell state and the output gate. One pass over the rows: NumPy on
    the gate columns of ``g`` would run one inner loop per row and gate.
    """
    M, n4 = g.shape
    n = n4 // 4
    half = g.dtype.type(0.5)
    for m in range(M):
        for j in range(n):
            i = g[m, j] * half + half
            f = g[m, n + j] * half + half
            cc = c[m, j] * f
            cc += i * g[m, 3 * n + j]
            c_out[m, j] = cc
            o_out[m, j] = g[m, 2 * n + j] * half + half


def _cast(tree, dtype):
    """Nested tuples, lists and dicts with their float arrays cast to ``dtype``."""
    if isinstance(tree, dict):
        return {k: _cast(v, dtype) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_cast(v, dtype) for v in tree)
    if isinstance(tree, np.ndarray) and tree.dtype.kind == "f":
        return np.ascontiguousarray(tree, dtype=dtype)
    return tree


def _gates(a: np.ndarray, H: int) -> np.ndarray:
    """Torch gate columns (i, f, g, o) -> fast layout (i, f, o, g), sigmoid inputs halved."""
    i, f, g, o = (a[..., j * H:(j + 1) * H] for j in range(4))
    return np.concatenate([0.5 * i, 0.5 * f, 0.5 * o, g], -1)


def _block_gates(ws: list[np.ndarray]) -> np.ndarray:
    """Block-diagonal weights ``(sum of inputs, 4 J H)`` of ``J`` LSTMs run side by side.

    Columns are gate-major in the fast layout, the LSTMs' units side by side inside each gate;
    the rows of LSTM ``j`` read its own inputs only.
    """
    J = len(ws)
    H = ws[0].shape[1] // 4
    rows = np.cumsum([0] + [w.shape[0] for w in ws])
    out = np.zeros((rows[-1], 4, J, H))
    for j, w in enumerate(ws):
        out[rows[j]:rows[j + 1], :, j] = _gates(w, H).reshape(w.shape[0], 4, H)
    return out.reshape(rows[-1], 4 * J * H)


def _lstm_step(pre, h, c, w_hh):
    """One step of LSTMs in the fast layout: ``pre`` is ``x W_ih + b`` of this frame."""
    g = h @ w_hh
    g += pre
    np.tanh(g, out=g)  # SIMD over the whole batch; the compiled cell needs no libm call
    c_new = np.empty_like(c)
    o = np.empty_like(c)
    _lstm_cell(g, c, c_new, o)
    h = np.tanh(c_new)
    h *= o
    return h, c_new


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
