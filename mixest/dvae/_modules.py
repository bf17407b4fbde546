"""PyTorch DVAE modules: the SRNN and the VRNN, with step-by-step public methods.

Both models share one skeleton (:class:`DVAEModule`). At frame ``t`` (0-based below, the paper's
``t + 1``) a model

1. *advances* its recurrent state with the previous frame ``x_{t-1}`` (nothing at ``t = 0``:
   ``x_0 = 0`` in the model's standardised units, i.e. the training mean);
2. draws ``z_t`` from the prior ``p(z_t | h, z_{t-1})`` or the posterior
   ``q(z_t | h, a_t, z_{t-1})``, where ``a_t`` summarises ``x_{t:T}`` (backward LSTM) or
   ``x_t`` alone;
3. *decodes* ``p(x_t | h, z_t)``.

The SRNN's state is ``h_t = LSTM(g(x_{t-1}), h_{t-1})``, built before ``z_t``; the VRNN's is
``h_{t-1} = LSTM([g(x_{t-1}), g_z(z_{t-1})], h_{t-2})`` and its prior ignores ``z_{t-1}``.

Every input standardisation lives in buffers, so callers work in the data's own units: boxes in
``[0, 1]`` go in, means and variances in the same units come out. Likelihoods:

``"gaussian"``
    ``N(x_t; mu, diag v)``. With ``residual_order=1`` the network predicts ``x_t - x_{t-1}``
    (in units of the first differences' scale), with ``residual_order=2`` the deviation from a
    constant-velocity extrapolation ``x_t - (2 x_{t-1} - x_{t-2})`` (in units of the second
    differences' scale), so a tiny model only learns what is not already kinematics. The
    variance is ``v = s^2 exp(l) + min_std^2``: the floor keeps a prior trained on noise-free
    data from claiming sub-pixel certainty inside a tracker.
``"itakura_saito"``
    ``x_t`` is a power spectrum ``|s_t|^2`` of a zero-mean complex Gaussian ``s_t ~ N_c(0, v)``;
    ``-log p = sum_f log(pi v_f) + x_f / v_f``, i.e. the Itakura-Saito divergence
    ``d_IS(x | v)`` up to terms free of ``v``. The network sees ``log(x + eps)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from mixest._torchscript import scripted

__all__ = ["DVAEModule", "DVAEState", "SRNN", "VRNN", "gaussian_kl", "build_module"]

#: The module's constructor options besides ``x_dim`` (:meth:`DVAEModule.config` saves them,
#: :func:`build_module` takes them with ``x_dim``). :class:`mixest.dvae.DVAE` sets them from its
#: ``likelihood``, its :class:`~mixest.dvae.Network` and ``TrainingNoise.level_input``.
MODULE_OPTIONS = (
    "architecture",
    "z_dim",
    "rnn_dim",
    "dense_dims",
    "likelihood",
    "encoder_rnn",
    "residual_order",
    "velocity_input",
    "gated_extrapolation",
    "noise_level_input",
    "latent_dims",
    "encoder_input",
    "log_input",
)

LOG_EPS = 1e-10  # power-spectrum offset before the log (inputs only)
POWER_LOGVAR_BOUND = 60.0  # |log v| of an Itakura-Saito decoder's power variance at most this
_LOGVAR_MIN, _LOGVAR_MAX = -18.0, 12.0  # keeps exp() finite in float32


class DVAEState(NamedTuple):
    """Recurrent state carried between generative steps.

    Attributes
    ----------
    h, c : Tensor of shape (B, rnn_dim)
        LSTM state (SRNN: ``h_{t-1}``; VRNN: ``h_{t-2}``, updated with ``x_{t-1}, z_{t-1}``).
    z : Tensor of shape (B, z_dim)
        The last latent ``z_{t-1}`` (zeros before the first frame).
    x : Tensor of shape (B, x_dim)
        The last frame fed, ``x_{t-1}``, in data units (velocity feature, residual base).
    t : int
        Number of frames already generated (0 before the first frame).
    past : tuple of Tensor of shape (B, x_dim)
        Up to two frames fed before ``x`` (``x_{t-2}, x_{t-3}``), most recent first: the
        acceleration and jerk features and the extrapolation of ``gated_extrapolation=True``
        read them.
    level : Tensor of shape (B, 1) or None
        ``noise_level_input=True`` only: the noise level of the frames fed, which the
        recurrence reads with every frame.
    """

    h: Tensor
    c: Tensor
    z: Tensor
    x: Tensor
    t: int
    past: tuple = ()
    level: Tensor | None = None


def gaussian_kl(mq: Tensor, lq: Tensor, mp: Tensor, lp: Tensor) -> Tensor:
    """KL(N(mq, e^lq) || N(mp, e^lp)) of diagonal Gaussians, summed over the last axis.

    .. math:: \\tfrac12 \\sum_j \\left(l_p - l_q + (e^{l_q} + (m_q - m_p)^2) e^{-l_p} - 1\\right)
    """
    return 0.5 * (lp - lq + (lq.exp() + (mq - mp).pow(2)) * torch.exp(-lp) - 1.0).sum(-1)


def _lstm_step(rnn: nn.LSTM, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """One step of a one-layer ``nn.LSTM`` with its own weights (the fused cell is several
    times faster than calling the sequence module on a length-1 sequence)."""
    return torch.lstm_cell(
        x, (h, c), rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
    )


def _mlp(n_in: int, dims: tuple[int, ...], n_out: int | None) -> nn.Sequential:
    """Dense tanh layers of sizes ``dims`` then an optional linear output layer."""
    layers: list[nn.Module] = []
    for d in dims:
        layers += [nn.Linear(n_in, d), nn.Tanh()]
        n_in = d
    if n_out is not None:
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


def mlp_layers(seq: nn.Sequential) -> list[tuple[str, bool]]:
    """Names of the ``Linear`` layers of an MLP block built by :func:`_mlp` and whether a tanh
    follows each (for code that runs the block with its own copies of the weights)."""
    mods = list(seq.named_children())
    out = []
    for i, (name, mod) in enumerate(mods):
        if isinstance(mod, nn.Linear):
            act = i + 1 < len(mods) and isinstance(mods[i + 1][1], nn.Tanh)
            out.append((name, act))
        elif not isinstance(mod, nn.Tanh):
            raise TypeError(f"unsupported layer {type(mod).__name__}")
    return out


def transposed_layers(seq: nn.Sequential) -> list[tuple[Tensor, Tensor, bool]]:
    """``(weight.T, bias, tanh follows)`` of each ``Linear`` of an MLP block, the weights as
    contiguous ``(in, out)`` copies: on a few rows, ``torch.addmm`` with them costs a fraction of
    the module's own call (differentiable: the copies follow the parameters' gradients)."""
    return [(seq[int(name)].weight.t().contiguous(), seq[int(name)].bias, act)
            for name, act in mlp_layers(seq)]


def latent_chain(pre: Tensor, w_z: Tensor, tanh0: bool, weights: list[Tensor],
                 biases: list[Tensor], tanh: list[bool], sample: bool,
                 generator: torch.Generator | None,
                 logvar_range: tuple[float, float]) -> tuple[Tensor, Tensor, Tensor]:
    """The posterior's recursion over the frames when only ``z_{t-1}`` changes per frame, for
    ``k`` stacked networks of one shape at once (``k = 1`` for a module alone).

    ``pre`` ``(k, B, T, D)`` is the encoder's first layer on what is known for every frame (bias
    included), ``w_z`` ``(k, z_dim, D)`` its ``z_{t-1}`` rows; ``weights``, ``biases``,
    ``tanh`` the block's later layers (:func:`transposed_layers`, stacked: ``(k, in, out)``
    and ``(k, 1, out)``), whose output is the posterior's mean and log-variance (clamped to
    ``logvar_range``). ``z_t`` is the mean, or with ``sample`` one reparameterised draw.
    Returns ``z``, ``z_mean``, ``z_logvar``, each ``(k, B, T, z_dim)``. Plain Python under
    autograd; compiled by TorchScript for inference (:func:`mixest._torchscript.scripted`).
    """
    z = pre.new_zeros(pre.shape[0], pre.shape[1], w_z.shape[1])
    zs: list[Tensor] = []
    means: list[Tensor] = []
    logvars: list[Tensor] = []
    for t in range(pre.shape[2]):
        out = torch.baddbmm(pre[:, :, t], z, w_z)
        if tanh0:
            out = torch.tanh(out)
        for i in range(len(weights)):
            out = torch.baddbmm(biases[i], out, weights[i])
            if tanh[i]:
                out = torch.tanh(out)
        qm, qlv = out.chunk(2, -1)
        qlv = qlv.clamp(logvar_range[0], logvar_range[1])
        if sample:
            noise = torch.randn(qm.shape, dtype=qm.dtype, device=qm.device, generator=generator)
            z = qm + (0.5 * qlv).exp() * noise
        else:
            z = qm
        zs.append(z)
        means.append(qm)
        logvars.append(qlv)
    return torch.stack(zs, 2), torch.stack(means, 2), torch.stack(logvars, 2)


class DVAEModule(nn.Module):
    """Shared skeleton of the DVAE modules (see the module docstring).

    Parameters
    ----------
    x_dim : int
        Size of one frame.
    z_dim : int, default=4
        Size of the latent.
    rnn_dim : int, default=8
        Size of the forward LSTM (and of the backward encoder LSTM).
    dense_dims : tuple of int, default=(16, 8)
        Hidden layers of every dense block (feature extractor, prior, encoder, decoder).
    likelihood : {"gaussian", "itakura_saito"}, default="gaussian"
    encoder_rnn : bool, default=True
        Summarise ``x_{t:T}`` with a backward LSTM in the encoder (else use ``x_t`` only, which
        makes the posterior causal).
    residual_order : {0, 1, 2}, default=2
        Gaussian only: the decoder mean is ``x_t`` (0), ``x_t - x_{t-1}`` (1) or
        ``x_t - 2 x_{t-1} + x_{t-2}`` (2) rescaled; lower orders are used while fewer past frames
        exist.
    velocity_input : bool, optional
        Also feed ``x_{t-1} - x_{t-2}`` to the LSTM (default: ``True`` for Gaussian data).
    gated_extrapolation : bool, default=False
        Gaussian, ``residual_order=1`` only. The decoder also outputs two gates per dimension
        and the mean becomes
        ``x_{t-1} + sigmoid(g_v) (x_{t-1} - x_{t-2}) + sigmoid(g_a) (x_{t-1} - 2 x_{t-2} +
        x_{t-3}) + s_1 r``: the network chooses between a random walk, constant velocity and
        constant acceleration (all exact kinematics, no precision lost through tanh layers)
        and adds its own residual. The LSTM also reads the acceleration and the jerk,
        ``asinh((x_{t-1} - 2 x_{t-2} + x_{t-3}) / c)`` and
        ``asinh((x_{t-1} - 3 x_{t-2} + 3 x_{t-3} - x_{t-4}) / c)``, with ``c`` a thousandth of
        the training second differences' scale (at least 1e-5 of the positions' scale, above
        float32 rounding), so that both the tiny changes of smooth paths
        and the large ones of noisy inputs or turns are legible: a jerk near zero says that
        constant acceleration is exact.
    noise_level_input : bool, default=False
        Every frame's features also carry the noise level of the frames the model reads, a
        number ``u >= 0`` (training: the jitter level of each sequence as a fraction of the
        largest one, 0 for clean sequences). The model then need not guess from the inputs'
        roughness whether they are clean: ``u = 0`` asks for the prediction from exact
        frames, ``u = 1`` from frames jittered at the training's largest level. Methods that
        read frames take it as ``level`` (a number, or one per sequence); without it they use
        the ``noise_level`` buffer (1.0 unless set), the level a tracker feeds by default.
    latent_dims : tuple of int or None, default=None
        Hidden layers of the prior and encoder blocks (the ones that output a latent); None:
        ``dense_dims``. The MixDVAE paper's spectral SRNN uses (64, 32) there and (256,)
        elsewhere.
    encoder_input : {"x", "hx"}, default="x"
        SRNN only. ``"x"``: the backward LSTM reads the frames' features and the posterior MLP
        ``[h_t, a_t, z_{t-1}]``. ``"hx"``: Fraccaro et al.'s layout, the backward LSTM reads
        ``[h_t, x_t]`` and the posterior MLP ``[a_t, z_{t-1}]`` (the published MixDVAE
        priors').
    log_input : bool, default=True
        Itakura-Saito only: the network reads standardised ``log(x + eps)``. False: it reads
        the power itself, unscaled, and the decoder outputs the log-variance itself (the
        published MixDVAE priors' convention; :meth:`set_normalization` then leaves the
        scales at 0 and 1).
    """

    architecture = "base"
    _prior_uses_z = True

    def __init__(
        self,
        x_dim: int,
        z_dim: int = 4,
        rnn_dim: int = 8,
        dense_dims: tuple[int, ...] = (16, 8),
        likelihood: str = "gaussian",
        encoder_rnn: bool = True,
        residual_order: int = 2,
        velocity_input: bool | None = None,
        gated_extrapolation: bool = False,
        noise_level_input: bool = False,
        latent_dims: tuple[int, ...] | None = None,
        encoder_input: str = "x",
        log_input: bool = True,
    ):
        super().__init__()
        if likelihood not in ("gaussian", "itakura_saito"):
            raise ValueError(f"unknown likelihood {likelihood!r}")
        self.x_dim, self.z_dim, self.rnn_dim = int(x_dim), int(z_dim), int(rnn_dim)
        self.dense_dims = tuple(int(d) for d in dense_dims)
        self.likelihood = likelihood
        self.encoder_rnn = bool(encoder_rnn)
        if residual_order not in (0, 1, 2):
            raise ValueError(f"residual_order must be 0, 1 or 2, got {residual_order!r}")
        self.residual_order = int(residual_order) if likelihood == "gaussian" else 0
        self.velocity_input = (
            likelihood == "gaussian" if velocity_input is None else bool(velocity_input)
        )
        self.gated_extrapolation = bool(gated_extrapolation)
        if self.gated_extrapolation and (likelihood != "gaussian" or self.residual_order != 1):
            raise ValueError("gated_extrapolation needs the Gaussian likelihood and "
                             f"residual_order=1, got {likelihood!r} and {residual_order!r}")
        if encoder_input not in ("x", "hx"):
            raise ValueError(f"encoder_input must be 'x' or 'hx', got {encoder_input!r}")
        if encoder_input == "hx" and (self.architecture != "srnn" or not encoder_rnn):
            raise ValueError("encoder_input='hx' needs the SRNN with its backward encoder LSTM "
                             "(its h_t does not depend on z)")
        self.encoder_input = encoder_input
        self.latent_dims = None if latent_dims is None else tuple(int(d) for d in latent_dims)
        self.log_input = bool(log_input)
        if not self.log_input and likelihood != "itakura_saito":
            raise ValueError("log_input=False applies to the Itakura-Saito likelihood only")
        # Standardisation (data units <-> network units), set by set_normalization().
        self.register_buffer("x_loc", torch.zeros(x_dim))
        self.register_buffer("x_scale", torch.ones(x_dim))
        self.register_buffer("dx_scale", torch.ones(x_dim))
        self.register_buffer("ddx_scale", torch.ones(x_dim))
        self.register_buffer("min_var", torch.zeros(x_dim))
        if self.gated_extrapolation:  # unit of the acceleration feature
            self.register_buffer("acc_unit", torch.ones(x_dim))
        self.noise_level_input = bool(noise_level_input)
        if self.noise_level_input:  # the level read when a caller gives none
            self.register_buffer("noise_level", torch.ones(1))

        n_feat = self.n_features
        feat = self.dense_dims[-1] if self.dense_dims else n_feat
        n_out = (2 + 2 * self.gated_extrapolation) * x_dim if likelihood == "gaussian" else x_dim
        latent = self.dense_dims if self.latent_dims is None else self.latent_dims
        reads_h = encoder_input == "hx"
        self.feature_x = _mlp(n_feat, self.dense_dims, None)  # g(.) of the LSTM input
        self.feature_enc = _mlp(n_feat + reads_h * rnn_dim, self.dense_dims, None)
        if self.encoder_rnn:
            self.rnn_enc = nn.LSTM(feat, rnn_dim, batch_first=True)
            n_a = rnn_dim
        else:
            n_a = feat
        self._build_recurrence(feat)
        n_prior = rnn_dim + (z_dim if self._prior_uses_z else 0)
        self.prior_net = _mlp(n_prior, latent, 2 * z_dim)
        self.encoder_net = _mlp((not reads_h) * rnn_dim + n_a + z_dim, latent, 2 * z_dim)
        self.decoder_net = _mlp(rnn_dim + z_dim, tuple(reversed(self.dense_dims)), n_out)

    # ------------------------------------------------------------------ configuration
    @property
    def n_features(self) -> int:
        """Size of one frame's features (position, velocity, acceleration, jerk, noise level)."""
        return (self.x_dim * (1 + self.velocity_input + 2 * self.gated_extrapolation)
                + self.noise_level_input)

    def _build_recurrence(self, feat: int) -> None:
        raise NotImplementedError

    def config(self) -> dict:
        """Constructor keyword arguments (plain Python types), for saving."""
        config = {"x_dim": self.x_dim, **{k: getattr(self, k) for k in MODULE_OPTIONS}}
        config["dense_dims"] = list(self.dense_dims)
        if self.latent_dims is not None:
            config["latent_dims"] = list(self.latent_dims)
        return config

    @torch.no_grad()
    def set_normalization(self, X: Tensor, min_std: float | Tensor = 0.0) -> None:
        """Set the input standardisation and the variance floor from training data.

        Parameters
        ----------
        X : Tensor of shape (n_sequences, T, x_dim)
            Training sequences in data units.
        min_std : float or Tensor of shape (x_dim,)
            Floor of the decoder's standard deviation, in data units.
        """
        X = X.to(self.x_loc)
        if self.likelihood == "itakura_saito":
            if not self.log_input:  # raw power in, log-variance out: nothing to learn here
                self.min_var.copy_(torch.as_tensor(min_std, dtype=X.dtype).pow(2)
                                   .expand(self.x_dim))
                return
            X = torch.log(X + LOG_EPS)
        flat = X.reshape(-1, self.x_dim)
        self.x_loc.copy_(flat.mean(0))
        self.x_scale.copy_(flat.std(0).clamp_min(1e-6))
        if X.shape[1] > 1:
            d = (X[:, 1:] - X[:, :-1]).reshape(-1, self.x_dim)
            self.dx_scale.copy_(d.pow(2).mean(0).sqrt().clamp_min(1e-6))
        if X.shape[1] > 2:
            dd = (X[:, 2:] - 2 * X[:, 1:-1] + X[:, :-2]).reshape(-1, self.x_dim)
            self.ddx_scale.copy_(dd.pow(2).mean(0).sqrt().clamp_min(1e-6))
        if self.gated_extrapolation:  # not below float32 rounding of the positions
            self.acc_unit.copy_(torch.maximum(1e-3 * self.ddx_scale, 1e-5 * self.x_scale))
        self.min_var.copy_(torch.as_tensor(min_std, dtype=X.dtype).pow(2).expand(self.x_dim))

    # ------------------------------------------------------------------ pieces
    def _standardize(self, x: Tensor) -> Tensor:
        if self.likelihood == "itakura_saito":
            x = x.clamp_min(0.0)
            if self.log_input:
                x = torch.log(x + LOG_EPS)
        return (x - self.x_loc) / self.x_scale

    @staticmethod
    def _earlier(state: DVAEState) -> tuple:
        """The frames fed before ``x_{t-1}`` that exist, most recent first (at most three)."""
        frames = (state.x, *state.past)
        return frames[: max(0, min(state.t - 1, len(frames)))]

    def level_column(self, level: float | Tensor | None, batch_size: int) -> Tensor | None:
        """The noise-level feature of ``batch_size`` sequences, shape (batch_size, 1).

        None without ``noise_level_input``. ``level``: a number, one per sequence, or None for
        the ``noise_level`` buffer.
        """
        if not self.noise_level_input:
            if level is not None:
                raise ValueError("level is read by modules built with noise_level_input=True "
                                 "only; this module has no noise-level input.")
            return None
        if level is None:
            level = self.noise_level
        level = torch.as_tensor(level, dtype=self.x_loc.dtype, device=self.x_loc.device)
        if level.numel() == 1:
            return level.reshape(1, 1).expand(batch_size, 1)
        if level.shape != (batch_size,):
            raise ValueError(f"level must be a number or have one value per sequence "
                             f"({batch_size},), got shape {tuple(level.shape)}")
        return level.reshape(batch_size, 1)

    def _frame_features(self, x: Tensor, earlier: tuple = (),
                        level: Tensor | None = None) -> Tensor:
        """Network features of one frame in data units.

        ``earlier``: the frames before ``x`` that exist, most recent first. Velocity w.r.t.
        ``earlier[0]`` and, with ``gated_extrapolation``, acceleration and jerk (zero where
        their frames do not exist). ``level``: the (B, 1) column of :meth:`level_column`,
        appended last (``noise_level_input``).
        """
        xs = self._standardize(x)
        parts = [xs]
        n = len(earlier)
        if self.velocity_input:
            if n == 0:
                parts.append(torch.zeros_like(xs))
            else:
                parts.append((xs - self._standardize(earlier[0])) * (self.x_scale / self.dx_scale))
        if self.gated_extrapolation:
            zeros = torch.zeros_like(xs)
            acc = x - 2.0 * earlier[0] + earlier[1] if n >= 2 else None
            parts.append(zeros if acc is None else torch.asinh(acc / self.acc_unit))
            # the jerk as a difference of accelerations, as in _sequence_features (same rounding)
            jerk = acc - (earlier[0] - 2.0 * earlier[1] + earlier[2]) if n >= 3 else None
            parts.append(zeros if jerk is None else torch.asinh(jerk / self.acc_unit))
        if level is not None:
            parts.append(level)
        return torch.cat(parts, -1) if len(parts) > 1 else xs

    def _sequence_features(self, x: Tensor, level: float | Tensor | None = None) -> Tensor:
        """Features of every frame of ``x`` (B, T, D) -> (B, T, F); velocity 0 at t = 0.

        ``level``: see :meth:`level_column` (``noise_level_input`` only).
        """
        xs = self._standardize(x)
        parts = [xs]
        if self.velocity_input:
            vel = torch.zeros_like(xs)
            vel[:, 1:] = (xs[:, 1:] - xs[:, :-1]) * (self.x_scale / self.dx_scale)
            parts.append(vel)
        if self.gated_extrapolation:
            acc, jerk = torch.zeros_like(xs), torch.zeros_like(xs)
            dd = x[:, 2:] - 2.0 * x[:, 1:-1] + x[:, :-2]
            acc[:, 2:] = torch.asinh(dd / self.acc_unit)
            jerk[:, 3:] = torch.asinh((dd[:, 1:] - dd[:, :-1]) / self.acc_unit)
            parts += [acc, jerk]
        col = self.level_column(level, x.shape[0])
        if col is not None:
            parts.append(col[:, None].expand(-1, x.shape[1], 1))
        return torch.cat(parts, -1) if len(parts) > 1 else xs

    def encoder_summary(self, x: Tensor, level: float | Tensor | None = None,
                        hs: Tensor | None = None) -> Tensor:
        """``a_t`` for every frame: backward-LSTM summary of ``x_{t:T}`` (with
        ``encoder_input="hx"`` of ``[h_{t:T}, x_{t:T}]``, ``hs`` the teacher-forced states if
        known) or features of ``x_t``."""
        f = self._sequence_features(x, level)
        if self.encoder_input == "hx":
            if hs is None:
                hs = self._hidden_teacher_forced(x, level)
            f = torch.cat([hs, f], -1)
        f = self.feature_enc(f)
        if not self.encoder_rnn:
            return f
        a, _ = self.rnn_enc(torch.flip(f, [1]))
        return torch.flip(a, [1])

    def initial_state(self, batch_size: int, level: float | Tensor | None = None) -> DVAEState:
        """Recurrent state before the first frame (``x_0 = 0``, ``z_0 = 0``).

        ``level``: the noise level of the frames to come (``noise_level_input`` only; see
        :meth:`level_column`).
        """
        p = self.x_loc
        zeros = torch.zeros(batch_size, self.rnn_dim, dtype=p.dtype, device=p.device)
        x_zeros = torch.zeros(batch_size, self.x_dim, dtype=p.dtype, device=p.device)
        return DVAEState(
            zeros,
            zeros.clone(),
            torch.zeros(batch_size, self.z_dim, dtype=p.dtype, device=p.device),
            x_zeros,
            0,
            (),
            self.level_column(level, batch_size),
        )

    def advance(self, x_prev: Tensor | None, state: DVAEState) -> tuple[Tensor, DVAEState]:
        """Feed ``x_{t-1}`` (data units; ignored at the first step) and return ``(h, state)``.

        ``h`` is the deterministic state the prior, encoder and decoder of frame ``t`` read.
        """
        raise NotImplementedError

    def prior_step(self, h: Tensor, z_prev: Tensor) -> tuple[Tensor, Tensor]:
        """Prior ``p(z_t | h, z_{t-1})``: mean and log-variance, each (B, z_dim)."""
        inp = torch.cat([h, z_prev], -1) if self._prior_uses_z else h
        m, lv = self.prior_net(inp).chunk(2, -1)
        return m, lv.clamp(_LOGVAR_MIN, _LOGVAR_MAX)

    def posterior_step(self, h: Tensor, a_t: Tensor, z_prev: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior ``q(z_t | z_{t-1}, h, a_t)``: mean and log-variance, each (B, z_dim)."""
        inp = [a_t, z_prev] if self.encoder_input == "hx" else [h, a_t, z_prev]
        m, lv = self.encoder_net(torch.cat(inp, -1)).chunk(2, -1)
        return m, lv.clamp(_LOGVAR_MIN, _LOGVAR_MAX)

    def emission(
        self,
        h: Tensor,
        z_t: Tensor,
        x_prev: Tensor | None,
        x_pprev: Tensor | None = None,
        x_ppprev: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Decoder ``p(x_t | h, z_t)`` in data units: ``(mean, var)``, each (..., x_dim).

        ``x_prev``, ``x_pprev`` and ``x_ppprev`` (``x_{t-1}``, ``x_{t-2}``, ``x_{t-3}``, data
        units, None where they do not exist) are the residual base (``x_ppprev``: gated
        extrapolation only). For Itakura-Saito the mean is zeros and ``var`` the power
        variance.
        """
        out = self.decoder_net(torch.cat([h, z_t], -1))
        if self.likelihood == "itakura_saito":
            var = self.power_variance(out)
            return torch.zeros_like(var), var
        if self.gated_extrapolation:
            raw_m, raw_lv, g_v, g_a = out.chunk(4, -1)
        else:
            raw_m, raw_lv = out.chunk(2, -1)
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
            base, scale = self.x_loc, self.x_scale
        mean = base + scale * raw_m
        if self.gated_extrapolation and order == 1 and x_pprev is not None:
            vel = x_prev - x_pprev
            mean = mean + torch.sigmoid(g_v) * vel
            if x_ppprev is not None:
                mean = mean + torch.sigmoid(g_a) * (vel - x_pprev + x_ppprev)
        var = scale.pow(2) * raw_lv.clamp(_LOGVAR_MIN, _LOGVAR_MAX).exp() + self.min_var
        return mean, var

    def power_variance(self, out: Tensor) -> Tensor:
        """Itakura-Saito decoder: the power variance from the decoder network's output (a
        standardised log-variance)."""
        logv = (self.x_loc + self.x_scale * out).clamp(-POWER_LOGVAR_BOUND, POWER_LOGVAR_BOUND)
        return logv.exp() + self.min_var

    def emission_gates(self, h: Tensor, z_t: Tensor) -> tuple[Tensor, Tensor] | None:
        """Gates ``(sigmoid(g_v), sigmoid(g_a))`` of :meth:`emission` (``gated_extrapolation``).

        Each is (..., x_dim): the weights of the last velocity and acceleration in the mean.
        None for other modules. A tracker needs them to propagate the uncertainty of the
        frames the mean extrapolates from.
        """
        if not self.gated_extrapolation:
            return None
        g_v, g_a = self.decoder_net(torch.cat([h, z_t], -1)).chunk(4, -1)[2:]
        return torch.sigmoid(g_v), torch.sigmoid(g_a)

    def decode_step(
        self, x_prev: Tensor | None, z_t: Tensor, state: DVAEState
    ) -> tuple[Tensor, Tensor, DVAEState]:
        """One generative step: feed ``x_{t-1}``, decode ``p(x_t | h, z_t)``.

        Parameters
        ----------
        x_prev : Tensor of shape (B, x_dim) or None
            Previous frame in data units (ignored, may be None, at the first step).
        z_t : Tensor of shape (B, z_dim)
        state : DVAEState
            From :meth:`initial_state` or the previous call.

        Returns
        -------
        mean, var : Tensor of shape (B, x_dim)
            Decoder mean and variance in data units (Itakura-Saito: zeros and power variance).
        state : DVAEState
            State after frame ``t`` (it remembers ``z_t``).
        """
        x_pprev = state.x if state.t >= 2 else None
        x_ppprev = state.past[0] if state.t >= 3 else None
        h, state = self.advance(x_prev, state)
        mean, var = self.emission(h, z_t, x_prev if state.t > 1 else None, x_pprev, x_ppprev)
        return mean, var, state._replace(z=z_t)

    # ------------------------------------------------------------------ whole sequences
    def _noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.randn(
            like.shape, dtype=like.dtype, device=like.device, generator=generator
        )

    def _hidden_teacher_forced(self, x: Tensor,
                               level: float | Tensor | None = None) -> Tensor | None:
        """All ``h`` at once when they do not depend on ``z`` (SRNN); else None."""
        return None

    def run(
        self,
        x: Tensor,
        *,
        sample: bool = True,
        generator: torch.Generator | None = None,
        z: Tensor | None = None,
        feed_prob: float = 0.0,
        level: float | Tensor | None = None,
        predictive: bool = False,
        decode: bool = True,
        hidden: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Run the inference network and the decoder over a whole sequence.

        Parameters
        ----------
        x : Tensor of shape (B, T, x_dim)
        sample : bool, default=True
            Draw ``z_t`` from the posterior (reparameterised); else use its mean.
        generator : torch.Generator, optional
        z : Tensor of shape (B, T, z_dim), optional
            Use these latents instead of the posterior's (teacher-forced decoding).
        feed_prob : float, default=0.0
            Scheduled sampling: probability, per sequence and frame, of feeding the model's own
            expected frame (detached: the decoder mean, or for Itakura-Saito the expected power,
            the variance) instead of the data into the recurrence (never for the first two
            frames, whose predictions cannot know position and velocity).
        level : float or Tensor of shape (B,), optional
            Noise level of ``x`` (``noise_level_input`` only; see :meth:`level_column`).
        predictive : bool, default=False
            Also return the causal one-step prediction of :meth:`predict_next` (latents chained
            through the prior's means, nothing from the posterior, which reads ``x_{t:T}``),
            differentiable: the prediction a tracker uses.
        decode : bool, default=True
            Also run the prior and the decoder (teacher forcing only); False returns the
            latents alone (``z``, ``z_mean``, ``z_logvar``), what an E-Z step needs.
        hidden : Tensor of shape (B, T, rnn_dim), optional
            The LSTM states teacher-forced on ``x`` (SRNN, ``feed_prob=0``), when known.

        Returns
        -------
        dict of Tensor
            ``z``, ``z_mean``, ``z_logvar``, ``prior_mean``, ``prior_logvar`` (B, T, z_dim) and
            ``x_mean``, ``x_var`` (B, T, x_dim); with ``predictive`` also ``pred_mean``,
            ``pred_var`` (B, T, x_dim).
        """
        B, T, _ = x.shape
        # the teacher-forced states serve the teacher-forced pass and the "hx" encoder only
        if hidden is not None and (self.architecture != "srnn" or feed_prob > 0.0):
            raise ValueError("hidden: teacher-forced LSTM states exist for SRNN modules "
                             "without scheduled sampling only.")
        if hidden is not None and hidden.shape != (B, T, self.rnn_dim):
            raise ValueError(f"hidden must have shape {(B, T, self.rnn_dim)}, got "
                             f"{tuple(hidden.shape)}.")
        if hidden is not None:
            hs = hidden
        elif feed_prob == 0.0 or self.encoder_input == "hx":
            hs = self._hidden_teacher_forced(x, level)
        else:
            hs = None
        a = self.encoder_summary(x, level, hs) if z is None else None
        if feed_prob > 0.0:
            out = self._run_fed(x, a, sample, generator, z, feed_prob, level)
            if predictive:
                out["pred_mean"], out["pred_var"] = self._one_step(x, level, hs)
            return out
        # Teacher forcing: only the posterior recursion (z_t needs z_{t-1}) and, for the VRNN,
        # the LSTM must be stepped; the prior and the decoder run once on the whole sequence.
        if hs is not None and z is None:
            # Only z_{t-1} changes per frame: the encoder's first layer on [h_t, a_t] runs for
            # all t at once, and the chain steps the rest (compiled for inference).
            lin0 = self.encoder_net[0]
            known = a if self.encoder_input == "hx" else torch.cat([hs, a], -1)
            k = known.shape[-1]
            pre = nn.functional.linear(known, lin0.weight[:, :k], lin0.bias)
            (w0, _, tanh0), *rest = transposed_layers(self.encoder_net)
            chain = latent_chain if torch.is_grad_enabled() else scripted(latent_chain)
            Z, qm, qlv = (r[0] for r in chain(
                pre[None], w0[None, k:], tanh0, [w[None] for w, _, _ in rest],
                [b[None, None] for _, b, _ in rest], [t for _, _, t in rest], sample,
                generator, (_LOGVAR_MIN, _LOGVAR_MAX)))
            H = hs
        else:
            state = self.initial_state(B, level)
            h_list, z_list, qm_list, qlv_list = [], [], [], []
            for t in range(T):
                if hs is not None:
                    h = hs[:, t]
                else:
                    h, state = self.advance(None if t == 0 else x[:, t - 1], state)
                    h_list.append(h)
                if z is None:
                    qm, qlv = self.posterior_step(h, a[:, t], state.z)
                    z_t = (qm + (0.5 * qlv).exp() * self._noise(qm, generator) if sample
                           else qm)
                    qm_list.append(qm)
                    qlv_list.append(qlv)
                else:
                    z_t = z[:, t]
                z_list.append(z_t)
                state = state._replace(z=z_t)
            H = hs if hs is not None else torch.stack(h_list, 1)
            Z = torch.stack(z_list, 1)
            qm = torch.stack(qm_list, 1) if qm_list else None
            qlv = torch.stack(qlv_list, 1) if qlv_list else None
        if not decode:
            return {"z": Z, "z_mean": qm, "z_logvar": qlv}
        Z_prev = torch.cat([torch.zeros_like(Z[:, :1]), Z[:, :-1]], 1)
        pm, plv = self.prior_step(H, Z_prev)
        x_mean, x_var = self._emit_sequence(H, Z, x)
        out = {
            "z": Z,
            "z_mean": qm,
            "z_logvar": qlv,
            "prior_mean": pm,
            "prior_logvar": plv,
            "x_mean": x_mean,
            "x_var": x_var,
        }
        if predictive:
            out["pred_mean"], out["pred_var"] = self._one_step(x, level, hs)
        return out

    def _emit_sequence(self, H: Tensor, Z: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher-forced decoder of every frame: ``p(x_t | h_t, z_t)`` with the residual base
        read from ``x`` (lower orders at the first frames)."""
        T = x.shape[1]
        parts = [self.emission(H[:, :1], Z[:, :1], None, None)]
        if T > 1:
            parts.append(self.emission(H[:, 1:2], Z[:, 1:2], x[:, :1], None))
        if T > 2 and self.gated_extrapolation:
            parts.append(self.emission(H[:, 2:3], Z[:, 2:3], x[:, 1:2], x[:, :1]))
            if T > 3:
                parts.append(self.emission(H[:, 3:], Z[:, 3:], x[:, 2:-1], x[:, 1:-2],
                                           x[:, :-3]))
        elif T > 2:
            parts.append(self.emission(H[:, 2:], Z[:, 2:], x[:, 1:-1], x[:, :-2]))
        return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)

    def _run_fed(self, x, a, sample, generator, z, feed_prob, level=None) -> dict[str, Tensor]:
        """Step-by-step pass with scheduled sampling (the decoder is needed inside the loop)."""
        B, T, _ = x.shape
        state = self.initial_state(B, level)
        keys = ("z", "z_mean", "z_logvar", "prior_mean", "prior_logvar", "x_mean", "x_var")
        out: dict[str, list[Tensor]] = {k: [] for k in keys}
        x_fed: Tensor | None = None
        x_pfed: Tensor | None = None
        x_ppfed: Tensor | None = None
        for t in range(T):
            h, state = self.advance(x_fed, state)
            z_prev = state.z
            pm, plv = self.prior_step(h, z_prev)
            if z is None:
                qm, qlv = self.posterior_step(h, a[:, t], z_prev)
                z_t = qm + (0.5 * qlv).exp() * self._noise(qm, generator) if sample else qm
            else:
                qm = qlv = None
                z_t = z[:, t]
            mean, var = self.emission(h, z_t, x_fed, x_pfed, x_ppfed)
            state = state._replace(z=z_t)
            x_ppfed, x_pfed = x_pfed, x_fed
            if t < 2:
                # The first two predictions cannot know the position and the velocity (they
                # have seen at most one frame): feeding them would inject errors that a
                # residual model carries forward for the rest of the sequence.
                x_fed = x[:, t]
            else:
                u = torch.rand(B, 1, dtype=x.dtype, device=x.device, generator=generator)
                # the model's own frame: the decoder mean, or for Itakura-Saito (whose mean is
                # zeros) the expected power, the variance (what a separator's E-S step feeds)
                own = var if self.likelihood == "itakura_saito" else mean
                x_fed = torch.where(u < feed_prob, own.detach(), x[:, t])
            for k, v in zip(keys, (z_t, qm, qlv, pm, plv, mean, var), strict=True):
                out[k].append(v)
        return {k: (torch.stack(v, 1) if v[0] is not None else None) for k, v in out.items()}

    def encode(
        self,
        x: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
        level: float | Tensor | None = None,
        hidden: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Posterior over a whole sequence.

        Parameters
        ----------
        x : Tensor of shape (B, T, x_dim)
        sample : bool, default=False
            Draw (reparameterised) ``z``; with False the means are fed forward as ``z_{t-1}``
            and the result is deterministic.
        generator : torch.Generator, optional
        level : float or Tensor of shape (B,), optional
            Noise level of ``x`` (``noise_level_input`` only).
        hidden : Tensor of shape (B, T, rnn_dim), optional
            SRNN only: the LSTM states teacher-forced on ``x``, when already known (a decoder
            pass fed ``x`` computed them); they are not computed again.

        Returns
        -------
        z, z_mean, z_logvar : Tensor of shape (B, T, z_dim)
        """
        r = self.run(x, sample=sample, generator=generator, level=level, decode=False,
                     hidden=hidden)
        return r["z"], r["z_mean"], r["z_logvar"]

    def log_likelihood(self, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
        """Per-frame ``log p(x_t | ...)`` summed over the last axis."""
        if self.likelihood == "itakura_saito":
            return -(torch.log(math.pi * var) + x / var).sum(-1)
        return -0.5 * (torch.log(2.0 * math.pi * var) + (x - mean).pow(2) / var).sum(-1)

    def elbo(
        self,
        x: Tensor,
        beta: float = 1.0,
        *,
        sample: bool = True,
        generator: torch.Generator | None = None,
        feed_prob: float = 0.0,
        return_terms: bool = False,
        x_cond: Tensor | None = None,
        level: float | Tensor | None = None,
        predictive: bool = False,
    ) -> Tensor | tuple[Tensor, ...]:
        """Per-frame evidence lower bound of each sequence (one reparameterised sample).

        .. math:: \\frac1T \\sum_t \\mathbb E_q[\\log p(x_t | h_t, z_t)]
                  - \\beta\\, \\mathrm{KL}(q(z_t | \\cdot) \\| p(z_t | h_t, z_{t-1}))

        Parameters
        ----------
        x : Tensor of shape (B, T, x_dim)
        beta : float, default=1.0
        sample, generator, feed_prob
            See :meth:`run`.
        return_terms : bool, default=False
            Also return the reconstruction and KL terms (per frame, shape (B,)).
        x_cond : Tensor of shape (B, T, x_dim), optional
            Conditioning sequence (denoising training): what the recurrence, the encoder and
            the residual base read, while ``x`` stays the reconstruction target. None: ``x``
            itself (the plain ELBO; ``x_cond=x`` gives exactly the same value).
        level : float or Tensor of shape (B,), optional
            Noise level of the conditioning sequence (``noise_level_input`` only; see
            :meth:`level_column`).
        predictive : bool, default=False
            With ``return_terms``: also return the absolute error of the one-step prediction
            (the decoder mean at the prior's mean latent, see :meth:`run`) in units of the first
            differences' scale, averaged over the frames from the third on (the first two
            cannot know position and velocity) and over dimensions: an auxiliary training term
            that trains the prediction a tracker uses directly (Gaussian only). Absolute, not
            squared: a squared error is made almost entirely at the few changes of motion and
            hardly sees the many small errors of smooth motion (``docs/dvae.md``).

        Returns
        -------
        elbo : Tensor of shape (B,)
        recon, kl : Tensor of shape (B,), only with ``return_terms``.
        pred_err : Tensor of shape (B,), only with ``return_terms`` and ``predictive``.
        """
        if x_cond is not None and x_cond.shape != x.shape:
            raise ValueError(
                f"x_cond must have the shape of x {tuple(x.shape)}, got {tuple(x_cond.shape)}"
            )
        cond = x if x_cond is None else x_cond
        predictive = predictive and return_terms
        if predictive and self.likelihood != "gaussian":
            raise ValueError("the predictive term needs the Gaussian likelihood.")
        r = self.run(cond, sample=sample, generator=generator, feed_prob=feed_prob, level=level,
                     predictive=predictive)
        recon = self.log_likelihood(x, r["x_mean"], r["x_var"]).mean(-1)
        kl = gaussian_kl(r["z_mean"], r["z_logvar"], r["prior_mean"], r["prior_logvar"]).mean(-1)
        elbo = recon - beta * kl
        if not return_terms:
            return elbo
        if predictive:
            err = ((x[:, 2:] - r["pred_mean"][:, 2:]) / self.dx_scale).abs()
            return elbo, recon, kl, err.mean((1, 2))
        return elbo, recon, kl

    @torch.no_grad()
    def sample(
        self,
        n: int,
        T: int,
        generator: torch.Generator | None = None,
        noise: bool = True,
        x_start: Tensor | None = None,
        level: float | Tensor | None = None,
    ) -> Tensor:
        """Draw ``n`` sequences of ``T`` frames from the generative model.

        Parameters
        ----------
        n, T : int
        generator : torch.Generator, optional
        noise : bool, default=True
            Draw ``x_t`` from the decoder (Itakura-Saito: ``v * Exp(1)`` powers); else emit and
            feed back the decoder mean (Itakura-Saito: the variance, i.e. the expected power).
        x_start : Tensor of shape (n, k, x_dim), optional
            Condition on these first ``k < T`` frames (returned unchanged): the latents run
            through the prior while the recurrence reads them, then the model continues.
        level : float or Tensor of shape (n,), optional
            Noise level the recurrence is told its inputs have (``noise_level_input`` only;
            default the ``noise_level`` buffer).

        Returns
        -------
        x : Tensor of shape (n, T, x_dim)
        """
        state = self.initial_state(n, level)
        x_prev = x_pprev = x_ppprev = None
        frames = []
        k = 0 if x_start is None else x_start.shape[1]
        for t in range(T):
            h, state = self.advance(x_prev, state)
            pm, plv = self.prior_step(h, state.z)
            z_t = pm + (0.5 * plv).exp() * self._noise(pm, generator)
            mean, var = self.emission(h, z_t, x_prev, x_pprev, x_ppprev)
            state = state._replace(z=z_t)
            if self.likelihood == "itakura_saito":
                if noise:
                    e = torch.rand(var.shape, dtype=var.dtype, device=var.device,
                                   generator=generator)
                    x_t = -var * torch.log1p(-e)  # |s|^2 of s ~ N_c(0, v) is v * Exp(1)
                else:
                    x_t = var
            else:
                x_t = mean + var.sqrt() * self._noise(mean, generator) if noise else mean
            if t < k:
                x_t = x_start[:, t]
            frames.append(x_t)
            x_prev, x_pprev, x_ppprev = x_t, x_prev, x_pprev
        return torch.stack(frames, 1)

    @torch.no_grad()
    def predict_next(self, x: Tensor,
                     level: float | Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Causal one-step-ahead prediction of every frame from the frames before it.

        The recurrence reads the data; ``z_t`` is the prior mean given the previous prior mean
        (no posterior, so nothing from ``x_{t:T}`` leaks in). ``level``: the noise level of
        ``x`` (``noise_level_input`` only; 0 for exact frames).

        Returns
        -------
        mean, var : Tensor of shape (B, T, x_dim)
            ``mean[:, t]`` predicts ``x[:, t]`` from ``x[:, :t]``.
        """
        return self._one_step(x, level)

    def _one_step(self, x: Tensor, level: float | Tensor | None = None,
                  hs: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`predict_next` with gradients; ``hs``: the teacher-forced states if known."""
        if hs is None:
            hs = self._hidden_teacher_forced(x, level)
        if hs is not None:  # SRNN: the states do not depend on z; chain the prior, decode once
            z_prev = hs.new_zeros(x.shape[0], self.z_dim)
            pms = []
            for t in range(x.shape[1]):
                z_prev, _ = self.prior_step(hs[:, t], z_prev)
                pms.append(z_prev)
            return self._emit_sequence(hs, torch.stack(pms, 1), x)
        state = self.initial_state(x.shape[0], level)
        x_prev = x_pprev = x_ppprev = None
        means, vars_ = [], []
        for t in range(x.shape[1]):
            h, state = self.advance(x_prev, state)
            pm, _ = self.prior_step(h, state.z)
            mean, var = self.emission(h, pm, x_prev, x_pprev, x_ppprev)
            state = state._replace(z=pm)
            means.append(mean)
            vars_.append(var)
            x_prev, x_pprev, x_ppprev = x[:, t], x_prev, x_pprev
        return torch.stack(means, 1), torch.stack(vars_, 1)


class SRNN(DVAEModule):
    """Stochastic RNN (Fraccaro et al. 2016), the DVAE of the MixDVAE paper.

    ``h_t = LSTM(g(x_{t-1}), h_{t-1})``; ``p(z_t | h_t, z_{t-1})``; ``p(x_t | h_t, z_t)``;
    ``q(z_t | z_{t-1}, h_t, x_{t:T})``. See :class:`DVAEModule` for the parameters.
    """

    architecture = "srnn"
    _prior_uses_z = True

    def _build_recurrence(self, feat: int) -> None:
        self.rnn = nn.LSTM(feat, self.rnn_dim, batch_first=True)

    def advance(self, x_prev: Tensor | None, state: DVAEState) -> tuple[Tensor, DVAEState]:
        if state.t == 0:  # x_0 = 0 in standardised units (every feature 0, the level too)
            f = state.x.new_zeros(state.x.shape[0], self.n_features)
            x_keep, past = state.x, state.past
        else:
            f = self._frame_features(x_prev, self._earlier(state), state.level)
            x_keep, past = x_prev, (state.x, *state.past[:1])
        h, c = _lstm_step(self.rnn, self.feature_x(f), state.h, state.c)
        return h, state._replace(h=h, c=c, x=x_keep, t=state.t + 1, past=past)

    def _hidden_teacher_forced(self, x: Tensor, level: float | Tensor | None = None) -> Tensor:
        # h_t reads x_{t-1}: shift the features right by one frame, x_0 = 0.
        f = self._sequence_features(x, level)
        f = torch.cat([torch.zeros_like(f[:, :1]), f[:, :-1]], 1)
        h, _ = self.rnn(self.feature_x(f))
        return h


class VRNN(DVAEModule):
    """Variational RNN (Chung et al. 2015).

    ``h_{t-1} = LSTM([g(x_{t-1}), g_z(z_{t-1})], h_{t-2})``; ``p(z_t | h_{t-1})``;
    ``p(x_t | h_{t-1}, z_t)``; ``q(z_t | z_{t-1}, h_{t-1}, x_{t:T})``.
    See :class:`DVAEModule` for the parameters.
    """

    architecture = "vrnn"
    _prior_uses_z = False

    def _build_recurrence(self, feat: int) -> None:
        self.feature_z = _mlp(self.z_dim, self.dense_dims[-1:], None)
        n_z = self.dense_dims[-1] if self.dense_dims else self.z_dim
        self.rnn = nn.LSTM(feat + n_z, self.rnn_dim, batch_first=True)

    def advance(self, x_prev: Tensor | None, state: DVAEState) -> tuple[Tensor, DVAEState]:
        if state.t == 0:  # h_0 = 0: nothing observed yet
            return state.h, state._replace(t=1)
        f = self._frame_features(x_prev, self._earlier(state), state.level)
        inp = torch.cat([self.feature_x(f), self.feature_z(state.z)], -1)
        h, c = _lstm_step(self.rnn, inp, state.h, state.c)
        return h, state._replace(h=h, c=c, x=x_prev, t=state.t + 1,
                                 past=(state.x, *state.past[:1]))


_ARCHITECTURES = {"srnn": SRNN, "vrnn": VRNN}


def build_module(config: dict) -> DVAEModule:
    """Build a module from :meth:`DVAEModule.config` output."""
    config = dict(config)
    arch = config.pop("architecture")
    if arch not in _ARCHITECTURES:
        raise ValueError(f"unknown DVAE architecture {arch!r}; known: {sorted(_ARCHITECTURES)}")
    config["dense_dims"] = tuple(config["dense_dims"])
    return _ARCHITECTURES[arch](**config)
