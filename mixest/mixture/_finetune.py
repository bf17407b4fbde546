"""Per-sequence encoder fine-tuning for the E-Z step (the paper's option; docs/tracking.md).

Every sequence of a VEM batch gets its own copy of the SRNN's inference network (``feature_enc``,
``rnn_enc``, ``encoder_net``), stacked along a leading axis and run with batched matrix products,
plus its own Adam state. Each E-Z step takes a few Adam steps on each active sequence's copy,
maximising the DVAE ELBO of that sequence's current mean trajectories (all its sources) with the
decoder, the prior network and the forward LSTM frozen, then encodes with the tuned copy. The
fitted module is never modified (the tuner works on a float64 deep copy), and the copies live only
as long as the tuner, i.e. one ``run_vem`` call.

Sequences do not interact: the loss is a sum of per-sequence ELBOs, each copy only receives the
gradient of its own sequence, and Adam is element-wise. The reparameterisation noise is drawn
once per step with shape ``(n_sources, T, z_dim)`` and shared by all sequences of the batch
(common random numbers), so a sequence's result does not depend on which others share its batch.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from mixest.dvae._modules import _LOGVAR_MAX, _LOGVAR_MIN, gaussian_kl, mlp_layers

__all__ = ["EncoderFineTuner"]


class EncoderFineTuner:
    """Per-sequence copies of an SRNN encoder, tuned by Adam on the ELBO (module docstring).

    Parameters
    ----------
    module : SRNN
        Fitted Gaussian SRNN module (only read).
    n_sequences, n_sources : int
        Batch layout: rows ``b * n_sources + n`` of the trajectories belong to sequence ``b``.
    steps : int
        Adam steps per call of :meth:`encode`.
    lr : float
        Adam learning rate.
    rng : numpy Generator
        Source of the reparameterisation noise.
    """

    _betas = (0.9, 0.999)
    _eps = 1e-8

    def __init__(self, module, n_sequences: int, n_sources: int, steps: int, lr: float,
                 rng: np.random.Generator):
        if (getattr(module, "architecture", None) != "srnn" or module.likelihood != "gaussian"
                or module.encoder_input != "x"):
            raise ValueError("encoder fine-tuning supports Gaussian SRNN priors with "
                             "encoder_input='x' only.")
        self.frozen = copy.deepcopy(module).double().eval().requires_grad_(False)
        self.B, self.N = int(n_sequences), int(n_sources)
        self.steps, self.lr, self.rng = int(steps), float(lr), rng
        fz = self.frozen
        self._mlps = {"feature_enc": mlp_layers(fz.feature_enc),
                      "encoder_net": mlp_layers(fz.encoder_net)}
        params = {}
        for block, layers in self._mlps.items():
            for name, _ in layers:
                lin = getattr(fz, block)[int(name)]
                params[f"{block}.{name}.weight"] = lin.weight
                params[f"{block}.{name}.bias"] = lin.bias
        if fz.encoder_rnn:
            for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                params[f"rnn_enc.{name}"] = getattr(fz.rnn_enc, name)
        # one copy per sequence, and its Adam moments
        self.params = {k: v.detach().unsqueeze(0).repeat((self.B,) + (1,) * v.dim()).clone()
                       for k, v in params.items()}
        self.m1 = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.m2 = {k: torch.zeros_like(v) for k, v in self.params.items()}
        self.count = torch.zeros(self.B, dtype=torch.float64)

    # ------------------------------------------------------------------ batched encoder
    def _mlp(self, p: dict, block: str, x: Tensor) -> Tensor:
        """``x`` (S, L, in) through the per-sequence copies ``p`` of an MLP block."""
        for name, act in self._mlps[block]:
            w, b = p[f"{block}.{name}.weight"], p[f"{block}.{name}.bias"]
            x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))
            if act:
                x = torch.tanh(x)
        return x

    def _posterior(self, p: dict, x: Tensor, hs: Tensor, eps: Tensor | None):
        """``q(z | x)`` per sequence: x (S, N, T, D), hs (S, N, T, H); eps (S or 1, N, T, Z)."""
        fz = self.frozen
        S, N, T, D = x.shape
        f = fz._sequence_features(x.reshape(S * N, T, D)).reshape(S, N * T, -1)
        a = self._mlp(p, "feature_enc", f)
        if fz.encoder_rnn:
            w_ih, w_hh = p["rnn_enc.weight_ih_l0"], p["rnn_enc.weight_hh_l0"]
            b = (p["rnn_enc.bias_ih_l0"] + p["rnn_enc.bias_hh_l0"]).unsqueeze(1)
            pre = torch.baddbmm(b, a, w_ih.transpose(1, 2)).reshape(S, N, T, -1)
            H = w_hh.shape[2]
            h = pre.new_zeros(S, N, H)
            c = pre.new_zeros(S, N, H)
            outs = [None] * T
            for t in range(T - 1, -1, -1):  # backward LSTM: a_t summarises x_{t:T}
                g = pre[:, :, t] + torch.bmm(h, w_hh.transpose(1, 2))
                i, fg, gg, o = g.chunk(4, -1)
                c = torch.sigmoid(fg) * c + torch.sigmoid(i) * torch.tanh(gg)
                h = torch.sigmoid(o) * torch.tanh(c)
                outs[t] = h
            a = torch.stack(outs, 2)
        else:
            a = a.reshape(S, N, T, -1)
        layers = self._mlps["encoder_net"]
        name0, act0 = layers[0]
        w0, b0 = p[f"encoder_net.{name0}.weight"], p[f"encoder_net.{name0}.bias"]
        k = hs.shape[-1] + a.shape[-1]
        inp = torch.cat([hs, a], -1).reshape(S, N * T, k)
        pre0 = torch.baddbmm(b0.unsqueeze(1), inp, w0[:, :, :k].transpose(1, 2))
        pre0 = pre0.reshape(S, N, T, -1)
        w_z = w0[:, :, k:].transpose(1, 2)
        Z = fz.z_dim
        z_prev = x.new_zeros(S, N, Z)
        zs, qms, qlvs = [], [], []
        rest = {"encoder_net": layers[1:]}
        for t in range(T):
            out = pre0[:, :, t] + torch.bmm(z_prev, w_z)
            if act0:
                out = torch.tanh(out)
            for name, act in rest["encoder_net"]:
                w, b = p[f"encoder_net.{name}.weight"], p[f"encoder_net.{name}.bias"]
                out = torch.baddbmm(b.unsqueeze(1), out, w.transpose(1, 2))
                if act:
                    out = torch.tanh(out)
            qm, qlv = out[..., :Z], out[..., Z:].clamp(_LOGVAR_MIN, _LOGVAR_MAX)
            z_t = qm if eps is None else qm + torch.exp(0.5 * qlv) * eps[:, :, t]
            zs.append(z_t)
            qms.append(qm)
            qlvs.append(qlv)
            z_prev = z_t
        return torch.stack(zs, 2), torch.stack(qms, 2), torch.stack(qlvs, 2)

    def _elbo(self, p: dict, x: Tensor, hs: Tensor, eps: Tensor) -> Tensor:
        """Per-sequence ELBO (summed over sources, per frame), decoder and prior frozen."""
        fz = self.frozen
        S, N, T, D = x.shape
        z, qm, qlv = self._posterior(p, x, hs, eps)
        flat = (S * N, T)
        Z, H, X = z.reshape(flat + (-1,)), hs.reshape(flat + (-1,)), x.reshape(flat + (-1,))
        Z_prev = torch.cat([torch.zeros_like(Z[:, :1]), Z[:, :-1]], 1)
        pm, plv = fz.prior_step(H, Z_prev)
        parts = [fz.emission(H[:, :1], Z[:, :1], None, None)]
        if T > 1:
            parts.append(fz.emission(H[:, 1:2], Z[:, 1:2], X[:, :1], None))
        if T > 2:
            parts.append(fz.emission(H[:, 2:], Z[:, 2:], X[:, 1:-1], X[:, :-2]))
        mean = torch.cat([q[0] for q in parts], 1)
        var = torch.cat([q[1] for q in parts], 1)
        recon = fz.log_likelihood(X, mean, var).mean(-1)
        kl = gaussian_kl(qm.reshape(flat + (-1,)), qlv.reshape(flat + (-1,)), pm, plv).mean(-1)
        return (recon - kl).reshape(S, N).sum(1)

    # ------------------------------------------------------------------ public
    def elbo(self, means: np.ndarray, sequences: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """ELBO ``(S,)`` of each listed sequence's trajectories under its current copy.

        ``means`` has shape ``(S * n_sources, T, D)``; ``eps`` ``(n_sources, T, z_dim)``.
        """
        x = torch.as_tensor(means, dtype=torch.float64).reshape(len(sequences), self.N,
                                                                  *means.shape[1:])
        idx = torch.as_tensor(np.asarray(sequences))
        with torch.no_grad():
            hs = self._hidden(x)
            p = {k: v[idx] for k, v in self.params.items()}
            return self._elbo(p, x, hs, torch.as_tensor(eps)[None]).numpy()

    def _hidden(self, x: Tensor) -> Tensor:
        S, N, T, D = x.shape
        with torch.no_grad():
            return self.frozen._hidden_teacher_forced(x.reshape(S * N, T, D)).reshape(
                S, N, T, -1)

    def encode(self, means: np.ndarray, sequences: np.ndarray, n_samples: int = 1,
               eps: np.ndarray | None = None) -> np.ndarray:
        """Tune the listed sequences' copies on ``means``, then encode with them.

        Parameters
        ----------
        means : ndarray of shape (S * n_sources, T, D)
            Current mean trajectories of the ``S`` listed sequences (sequence-major rows).
        sequences : ndarray of int, shape (S,)
            Their indices in the batch (selects the copies).
        n_samples : int, default=1
            Latent rows per source in the output.
        eps : ndarray of shape (S * n_sources * n_samples, T, z_dim), optional
            Noise of the returned latents (posterior means without it).

        Returns
        -------
        z : ndarray of shape (S * n_sources * n_samples, T, z_dim)
        """
        S = len(sequences)
        T = means.shape[1]
        x = torch.as_tensor(means, dtype=torch.float64).reshape(S, self.N, T, -1)
        idx = torch.as_tensor(np.asarray(sequences))
        hs = self._hidden(x)
        p = {k: v[idx].requires_grad_(True) for k, v in self.params.items()}
        m1 = {k: v[idx] for k, v in self.m1.items()}
        m2 = {k: v[idx] for k, v in self.m2.items()}
        count = self.count[idx]
        b1, b2 = self._betas
        for _ in range(self.steps):
            noise = torch.as_tensor(self.rng.standard_normal((self.N, T, self.frozen.z_dim)))
            loss = -self._elbo(p, x, hs, noise[None]).sum()
            grads = torch.autograd.grad(loss, list(p.values()))
            count = count + 1.0
            with torch.no_grad():
                for (k, v), g in zip(p.items(), grads, strict=True):
                    shape = (S,) + (1,) * (v.dim() - 1)
                    m1[k] = b1 * m1[k] + (1.0 - b1) * g
                    m2[k] = b2 * m2[k] + (1.0 - b2) * g * g
                    c1 = (1.0 - b1 ** count).reshape(shape)
                    c2 = (1.0 - b2 ** count).reshape(shape)
                    v -= self.lr * (m1[k] / c1) / ((m2[k] / c2).sqrt() + self._eps)
        with torch.no_grad():
            for k in self.params:
                self.params[k][idx] = p[k].detach()
                self.m1[k][idx] = m1[k]
                self.m2[k][idx] = m2[k]
            self.count[idx] = count
            p = {k: v.detach() for k, v in p.items()}
            if n_samples > 1:
                x = x.repeat_interleave(n_samples, 1)
                hs = hs.repeat_interleave(n_samples, 1)
            e = None
            if eps is not None:
                e = torch.as_tensor(eps).reshape(S, self.N * n_samples, T, -1)
            z, qm, _ = self._posterior(p, x, hs, e)
        z = z if eps is not None else qm
        return z.reshape(S * self.N * n_samples, T, -1).numpy()
