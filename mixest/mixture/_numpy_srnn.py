"""Inference-only NumPy twin of a trained Gaussian SRNN (:class:`mixest.dvae.SRNN`).

The tracking prior is tiny (about 1.5k parameters) and the VEM calls it one frame at a time on a
batch of ``n_sequences * n_sources`` rows, so torch's per-operation overhead dominates its run
time. This module copies the weights into float64 NumPy arrays and re-implements the two calls the
engine needs, ``decode_step`` (E-S) and ``encode`` (E-Z). :func:`numpy_twin` checks the twin
against the torch module on random inputs and returns None when they disagree (an architecture or
option it does not know), so callers fall back to torch.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NumpySRNN", "numpy_twin"]

_LOGVAR_MIN, _LOGVAR_MAX = -18.0, 12.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


class _MLP:
    """``nn.Sequential`` of ``Linear`` and ``Tanh`` layers, as (W^T, b, tanh-after) triples."""

    def __init__(self, seq):
        import torch

        self.layers = []
        mods = list(seq)
        for i, m in enumerate(mods):
            if isinstance(m, torch.nn.Linear):
                act = i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.Tanh)
                self.layers.append((m.weight.detach().double().cpu().numpy().T.copy(),
                                    m.bias.detach().double().cpu().numpy().copy(), act))
            elif not isinstance(m, torch.nn.Tanh):
                raise TypeError(f"unsupported layer {type(m).__name__}")

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
    """

    def __init__(self, module):
        if getattr(module, "architecture", None) != "srnn" or module.likelihood != "gaussian":
            raise TypeError("NumpySRNN supports Gaussian SRNN modules only.")

        def buf(name):
            return getattr(module, name).detach().double().cpu().numpy().copy()

        self.x_dim, self.z_dim, self.rnn_dim = module.x_dim, module.z_dim, module.rnn_dim
        self.loc, self.scale = buf("x_loc"), buf("x_scale")
        self.dx_scale, self.min_var = buf("dx_scale"), buf("min_var")
        self.ddx_scale = buf("ddx_scale") if hasattr(module, "ddx_scale") else self.dx_scale
        self.residual_order = int(getattr(module, "residual_order", 1))
        self.velocity_input = bool(module.velocity_input)
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
                np.zeros((batch_size, self.x_dim)), 0)

    def _features(self, x, x_last):
        xs = (x - self.loc) / self.scale
        if not self.velocity_input:
            return xs
        if x_last is None:
            vel = np.zeros_like(xs)
        else:
            vel = (x - x_last) / self.dx_scale  # = (xs - xs_last) * scale / dx_scale
        return np.concatenate([xs, vel], -1)

    def _emission(self, h, z, x_prev, x_pprev):
        out = self.decoder_net(np.concatenate([h, z], -1))
        raw_m, raw_lv = out[..., : self.x_dim], out[..., self.x_dim:]
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
        var = scale**2 * np.exp(np.clip(raw_lv, _LOGVAR_MIN, _LOGVAR_MAX)) + self.min_var
        return mean, var

    def decode_step(self, x_prev, z_t, state):
        """Feed ``x_{t-1}``, decode ``p(x_t | h_t, z_t)``; mirrors ``DVAEModule.decode_step``."""
        h, c, _, x_state, t = state
        x_pprev = x_state if t >= 2 else None
        if t == 0:
            f = np.zeros((h.shape[0], self.x_dim * (2 if self.velocity_input else 1)))
            x_keep = x_state
        else:
            f = self._features(x_prev, x_state if t >= 2 else None)
            x_keep = x_prev
        h, c = self.rnn.step(self.feature_x(f) @ self.rnn.w_ih + self.rnn.b, h, c)
        t += 1
        mean, var = self._emission(h, z_t, x_prev if t > 1 else None, x_pprev)
        return mean, var, (h, c, z_t, x_keep, t)

    # -------------------------------------------------------------- inference network
    def _sequence_features(self, x):
        xs = (x - self.loc) / self.scale
        if not self.velocity_input:
            return xs
        vel = np.zeros_like(xs)
        vel[:, 1:] = (x[:, 1:] - x[:, :-1]) / self.dx_scale
        return np.concatenate([xs, vel], -1)

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


def numpy_twin(module, rtol: float = 1e-3, atol: float = 1e-5) -> NumpySRNN | None:
    """A verified :class:`NumpySRNN` of ``module``, or None when unsupported or unequal.

    The twin is checked against the torch module on random trajectories (posterior means and a
    few ``decode_step`` calls); float32 torch against float64 NumPy agree to ~1e-6.
    """
    import torch

    try:
        twin = NumpySRNN(module)
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
