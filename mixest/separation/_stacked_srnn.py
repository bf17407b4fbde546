"""The E-S pass of spectral SRNN priors: stacked weights, one compiled loop over the frames.

The E-S recursion of the audio VEM is sequential: the prior variance ``v_t`` of a source's
frame ``t`` comes from its decoder fed the posterior expected power of frame ``t - 1``, and that
posterior needs ``v_{t-1}``. Each frame is some twenty small tensor operations on the batch's
rows. :class:`StackedSRNNPass` holds the weights of several priors of one shape stacked, so
that one operation serves all of them, and :func:`srnn_pass` runs the loop over the frames,
compiled by TorchScript (:func:`mixest._torchscript.scripted`): a pass is one call that
releases the interpreter lock once (two threads separating two batches then run in parallel)
instead of some six thousand calls. :meth:`StackedSRNNPass.encode` is the E-Z step of the same
priors, stacked the same way, from the LSTM states the last E-S pass computed.

:func:`next_feed` is the recursion's update per frame, shared with the plain Python loop that
steps any other prior (``RecurrentSpectralDynamics.forward_pass``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from mixest._torchscript import scripted
from mixest.dvae._modules import (
    _LOGVAR_MAX,
    _LOGVAR_MIN,
    LOG_EPS,
    POWER_LOGVAR_BOUND,
    latent_chain,
    transposed_layers,
)

__all__ = ["StackedSRNNPass", "next_feed", "sampled_power", "srnn_pass"]


def sampled_power(nu: Tensor, iv_re: Tensor, iv_im: Tensor,
                  generator: torch.Generator | None) -> Tensor:
    """:math:`|s|^2` of one draw :math:`s \\sim N_c(\\mu, \\nu)` per bin, :math:`\\mu = \\nu\\,
    iv`: the real and imaginary parts are independent :math:`N(\\mu_r, \\nu / 2)` and
    :math:`N(\\mu_i, \\nu / 2)`, so :math:`E|s|^2 = |\\mu|^2 + \\nu`."""
    shape = [2]
    shape.extend(nu.shape)
    noise = torch.randn(shape, generator=generator, dtype=nu.dtype, device=nu.device)
    scale = (0.5 * nu).sqrt_()
    re = torch.addcmul(nu * iv_re, scale, noise[0])
    im = torch.addcmul(nu * iv_im, scale, noise[1])
    return re.square_().add_(im.square_())


def next_feed(v: Tensor, prec: Tensor, power: Tensor, iv_re: Tensor | None,
              iv_im: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """What the priors read next, from the prior variances ``v`` of a frame and its evidence.

    With :math:`\\nu = (1 / v + ip)^{-1}` and :math:`\\mu = \\nu\\, iv`, the expected power is
    :math:`|\\mu|^2 + \\nu = \\nu^2 |iv|^2 + \\nu` (``prec`` is ``ip``, ``power`` is
    :math:`|iv|^2`); with the evidence's real and imaginary parts ``iv_re``, ``iv_im`` given,
    the power of one draw from the posterior instead (:func:`sampled_power`).
    """
    nu = v.reciprocal().add_(prec).reciprocal_()
    if iv_re is not None and iv_im is not None:
        return sampled_power(nu, iv_re, iv_im, generator)
    return torch.addcmul(nu, nu.square(), power)


class SRNNWeights(NamedTuple):
    """Weights of ``k`` stacked SRNN priors (each ``(k, in, out)``, biases ``(k, 1, out)``),
    their multilayer perceptrons in the sigmoid form of :func:`_sigmoid_form`."""

    feature_w: list[Tensor]
    feature_b: list[Tensor]
    feature_sigmoid: list[bool]
    first_gates: Tensor  # the gates' input share at frame 0 (zero features), bias included
    bias: Tensor
    w_ih: Tensor
    w_hh: Tensor
    dec_h: Tensor  # the h rows of the decoder's first layer (its z rows are precomputed)
    dec_sigmoid: bool
    decoder_w: list[Tensor]  # the decoder's later layers
    decoder_b: list[Tensor]
    decoder_sigmoid: list[bool]
    min_var: Tensor
    log_input: bool
    # the module's constants (TorchScript reads no global numbers)
    log_eps: float = LOG_EPS
    logvar_bound: float = POWER_LOGVAR_BOUND


def _mlp(x: Tensor, ws: list[Tensor], bs: list[Tensor], sigmoid: list[bool]) -> Tensor:
    """Stacked layers in the sigmoid form of :func:`_sigmoid_form`."""
    for i in range(len(ws)):
        x = torch.baddbmm(bs[i], x, ws[i])
        if sigmoid[i]:
            x = x.sigmoid_()
    return x


def _variances(z_part: Tensor, h: Tensor, w: SRNNWeights) -> Tensor:
    """The decoder's variances from the LSTM states ``h`` and the latents' share ``z_part``
    of its first layer (rows of any batch shape ``(k, rows, .)``)."""
    out = torch.baddbmm(z_part, h, w.dec_h)
    if w.dec_sigmoid:
        out = out.sigmoid_()
    out = _mlp(out, w.decoder_w, w.decoder_b, w.decoder_sigmoid)
    out = out.clamp_(-w.logvar_bound, w.logvar_bound)
    return out.exp_().add_(w.min_var)


def srnn_step(fed: Tensor | None, z_part: Tensor, h: Tensor, c: Tensor,
              w: SRNNWeights) -> tuple[Tensor, Tensor, Tensor]:
    """Variances ``(k, B, F)`` of a frame given the powers ``fed`` ``(k, B, F)`` of the frame
    before (None at the first frame: ``x_0 = 0``), the latents' share ``z_part`` of the
    decoder's first layer, and the LSTM state; returns ``(v, h, c)``."""
    H = h.shape[-1]
    if fed is None:  # zero features: the input's share of the gates is a constant
        gates = torch.baddbmm(w.first_gates, h, w.w_hh)
    else:
        # the fed powers are non-negative (|mu|^2 + nu): the module's clamp is the identity
        x = (fed + w.log_eps).log_() if w.log_input else fed
        x = _mlp(x, w.feature_w, w.feature_b, w.feature_sigmoid)
        gates = torch.baddbmm(w.bias, x, w.w_ih).baddbmm_(h, w.w_hh)
    # (narrow and select: one view operation each, where [:, :, a:b] is three)
    sig = gates.narrow(2, 0, 3 * H).sigmoid_()
    c = torch.addcmul(sig.narrow(2, H, H) * c, sig.narrow(2, 0, H),
                      gates.narrow(2, 3 * H, H).tanh_())
    h = sig.narrow(2, 2 * H, H) * c.tanh()
    return _variances(z_part, h, w), h, c


def srnn_pass(prec: Tensor, power: Tensor, z_part: Tensor, w: SRNNWeights, var: Tensor,
              teacher_fed: Tensor | None, teacher_h: Tensor | None, iv_re: Tensor | None,
              iv_im: Tensor | None, generator: torch.Generator | None) -> None:
    """The E-S recursion of ``k`` stacked priors over all frames.

    ``prec``, ``power`` (the evidence's ``ip`` and :math:`|iv|^2`), ``var`` (written: the
    prior variances) and, when given, ``iv_re``, ``iv_im`` (the sampled feed) and
    ``teacher_fed`` (written: the powers fed) are ``(k, B, T, F)``; ``z_part`` is
    ``(k, B, T, D)``, ``teacher_h`` (written: the LSTM's ``h``) ``(k, B, T, H)``.
    """
    k, B, T, _ = prec.shape
    h = w.bias.new_zeros(k, B, w.w_hh.shape[1])
    c = torch.zeros_like(h)
    fed: Tensor | None = None
    for t in range(T):
        v, h, c = srnn_step(fed, z_part.select(2, t), h, c, w)
        var.select(2, t).copy_(v)
        if teacher_h is not None:
            teacher_h.select(2, t).copy_(h)
        fed = next_feed(v, prec.select(2, t), power.select(2, t),
                        None if iv_re is None else iv_re.select(2, t),
                        None if iv_im is None else iv_im.select(2, t), generator)
        if teacher_fed is not None:
            teacher_fed.select(2, t).copy_(fed)


def _sigmoid_form(layers: list, reader: tuple[Tensor, Tensor] | None = None) -> tuple:
    """An MLP's layers ``(w, b, tanh)`` rewritten to use the sigmoid, which torch computes
    several times faster than the tanh on the CPU (0.5-0.7 against 3 ns a value).

    ``tanh(u) = 2 sigmoid(2 u) - 1``: a layer that a tanh follows gets its weights and bias
    doubled and a sigmoid ``s`` after it (its flag then means "sigmoid"), and the layer that
    reads its output absorbs the affine map, ``(2 s - 1) @ w + b = s @ (2 w) + (b - 1 @ w)``.
    ``reader``: the ``(w, b)`` that reads the last layer's output, if that is not a layer of
    the block (the LSTM's input weights). A last layer with a tanh and no reader is refused.
    Returns the layers and the reader, rewritten (computed in float64).
    """
    f64 = torch.float64
    out, pending = [], None  # pending: the previous layer ended in a sigmoid
    for w, b, tanh in [*layers, (*reader, False)] if reader is not None else layers:
        w, b = w.to(f64), b.to(f64)
        if pending:
            w, b = 2.0 * w, b - w.sum(0)
        if tanh:
            w, b = 2.0 * w, 2.0 * b
        out.append((w.float(), b.float(), tanh))
        pending = tanh
    if pending:
        raise ValueError("a last layer with a tanh needs the layer that reads it.")
    if reader is None:
        return out, None
    return out[:-1], out[-1][:2]


def _lstm_reading(layers: list, lstm: torch.nn.LSTM) -> tuple[list, torch.nn.LSTM]:
    """A block's layers in the sigmoid form and a copy of the LSTM that reads its output,
    whose input weights absorb the form's affine map (:func:`_sigmoid_form`)."""
    lstm = copy.deepcopy(lstm)
    layers, (w_in, b_in) = _sigmoid_form(layers, (lstm.weight_ih_l0.t(), lstm.bias_ih_l0))
    lstm.weight_ih_l0.copy_(w_in.t())
    lstm.bias_ih_l0.copy_(b_in)
    return layers, lstm


def _standardisation_folded(module, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """A first layer ``(w, b)`` (``w`` ``(x_dim, out)``) that reads the standardised input,
    as the layer that reads the input itself: ``(x - loc) / scale @ w + b = x @ (w / scale) +
    (b - loc / scale @ w)``, computed in float64."""
    scale, loc, w64 = (a.to(torch.float64) for a in (module.x_scale, module.x_loc, w))
    return (w64 / scale[:, None]).float(), (b - (loc / scale) @ w64).float()


class StackedSRNNPass:
    """The E-S pass, the E-Z step and the reconstructions of ``k`` spectral SRNN priors of one
    shape at once.

    A per-frame step (:func:`srnn_step`) multiplies a few rows (the batch's mixtures) by each
    weight matrix and makes some twenty element-wise calls on them. So the priors' weights are
    held transposed (MKL's few-row products are 1.5-2x faster in ``(in, out)`` layout than
    through ``nn.Linear``) and stacked, ``(k, in, out)``: one batched product or element-wise
    call serves every prior (two priors: 0.47 ms a step of 12 mixtures against 2 x 0.37 ms).
    The standardisation of the input and the affine map of the decoder's output to a log-variance
    are folded into the first and last layers, every tanh layer takes the sigmoid form
    (:func:`_sigmoid_form`), the LSTM's gates are reordered so that one sigmoid covers three of
    them, and the latents' share of the decoder's first layer is computed for all frames at
    once. :meth:`run` makes one E-S pass; :meth:`encode` (E-Z) and :meth:`reconstruct`
    (DVAE-init, the additive model) run over whole sequences. The arithmetic is the modules'
    to float32 rounding: tested against ``decode_step``, ``encode`` and ``run``.
    """

    @torch.no_grad()
    def __init__(self, modules: Sequence):
        modules = list(modules)
        H = modules[0].rnn_dim
        feature, decoder, w_ih, w_hh, bias, first = [], [], [], [], [], []
        self._rnns = []  # the LSTMs, their input weights in the sigmoid form's terms
        for m in modules:
            device = m.x_loc.device
            order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H),
                               torch.arange(2 * H, 3 * H)]).to(device)  # (i,f,g,o) -> (i,f,o,g)
            # frame 0 reads zero features (the standardised zero): the gates' input share there,
            # bias included, a constant, computed once from the module's own weights
            b = m.rnn.bias_ih_l0 + m.rnn.bias_hh_l0
            first.append((b + m.feature_x(torch.zeros(1, m.x_dim, device=device))
                          @ m.rnn.weight_ih_l0.t())[:, order])
            (w, b0, tanh), *rest = transposed_layers(m.feature_x)
            layers, rnn = _lstm_reading([(*_standardisation_folded(m, w, b0), tanh), *rest],
                                        m.rnn)
            self._rnns.append(rnn)
            feature.append(layers)
            w_ih.append(rnn.weight_ih_l0[order].t())
            w_hh.append(rnn.weight_hh_l0[order].t())
            bias.append((rnn.bias_ih_l0 + rnn.bias_hh_l0)[order])
            *head, (w, b, tanh) = transposed_layers(m.decoder_net)
            # log-variance = loc + scale * out: folded into the last layer
            decoder.append(_sigmoid_form(
                [*head, (w * m.x_scale, m.x_loc + m.x_scale * b, tanh)])[0])
        feature, decoder = self._stack(feature), self._stack(decoder)
        w_ih, w_hh = torch.stack(w_ih).contiguous(), torch.stack(w_hh).contiguous()
        bias = torch.stack(bias)[:, None]
        (dec_w, dec_b, dec_sigmoid), *later = decoder  # reads [h_t, z_t]: h steps, z does not
        self.dec_z, self.dec_b = dec_w[:, H:].contiguous(), dec_b
        feature_block = self._columns(feature)
        # the features of frame 0 (k, 1, D) for the teacher-forced LSTMs: the input of the
        # standardised zero is x_loc
        self._first_features = _mlp(torch.stack([m.x_loc for m in modules])[:, None],
                                    *feature_block)
        self.weights = SRNNWeights(
            *feature_block, torch.stack(first), bias, w_ih, w_hh, dec_w[:, :H].contiguous(),
            dec_sigmoid, *self._columns(later),
            torch.stack([m.min_var for m in modules])[:, None],
            modules[0].log_input)
        self.rnn_dim = H
        # E-Z stacked needs the backward LSTM (the SRNN's default); groups share the input
        self._encoder = (self._encoder_weights(modules) if modules[0].encoder_rnn else None)

    @staticmethod
    def supports(module) -> bool:
        """An SRNN whose frame features are the standardised power alone."""
        return (module.architecture == "srnn" and module.likelihood == "itakura_saito"
                and module.n_features == module.x_dim)

    def _encoder_weights(self, modules: list) -> dict:
        """The encoder's layers stacked: the first layer of its frame features, which reads
        ``[h_t, x_t]`` (``encoder_input="hx"``) or ``x_t``, split into its ``h`` rows and its
        ``x`` rows (with the standardisation folded in), its later layers, and the posterior
        network's first layer split into the rows of ``h_t`` (``"x"`` only), of the backward
        summary ``a_t`` and of ``z_{t-1}``. The features are in the sigmoid form
        (:func:`_sigmoid_form`), read by copies of the backward LSTMs."""
        H = self.rnn_dim
        reads_h = modules[0].encoder_input == "hx"
        rows = H if reads_h else 0
        first, rest, posterior, self._encoders = [], [], [], []
        for m in modules:
            (w, b, tanh), *later = transposed_layers(m.feature_enc)
            # (the split of the first layer into its h and x rows commutes with the form)
            x_w, x_b = _standardisation_folded(m, w[rows:], b)
            layers, rnn = _lstm_reading([(torch.cat([w[:rows], x_w]), x_b, tanh), *later],
                                        m.rnn_enc)
            self._encoders.append(rnn)
            first.append(layers[0])
            rest.append(layers[1:])
            posterior.append(transposed_layers(m.encoder_net))
        (w0, b0, tanh0), *later = self._stack(posterior)
        n_a = modules[0].rnn_enc.hidden_size
        return {"h": torch.stack([w[:rows] for w, _, _ in first]).contiguous(),
                "x": torch.stack([w[rows:] for w, _, _ in first]).contiguous(),
                "b": torch.stack([b for _, b, _ in first])[:, None],
                "sigmoid": first[0][2], "later": self._columns(self._stack(rest)),
                "post_h": None if reads_h else w0[:, :H].contiguous(),
                "post_a": w0[:, H - rows:H - rows + n_a].contiguous(),
                "post_z": w0[:, H - rows + n_a:].contiguous(), "b0": b0, "tanh0": tanh0,
                "posterior": self._columns(later)}

    @classmethod
    def groups(cls, modules: Sequence) -> list[tuple[int, int]]:
        """Runs of consecutive priors one stacked step can serve (same shapes and input)."""
        def key(m):
            if not cls.supports(m):
                return None
            return (m.log_input, tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()))

        out = []
        for n, m in enumerate(modules):
            if out and key(m) is not None and key(m) == key(modules[out[-1][0]]):
                out[-1] = (out[-1][0], n + 1)
            else:
                out.append((n, n + 1))
        return out

    @staticmethod
    def _columns(layers: list) -> tuple[list[Tensor], list[Tensor], list[bool]]:
        """Layers ``(w, b, flag)`` as the three lists :func:`_mlp` and ``latent_chain`` read."""
        return [w for w, _, _ in layers], [b for _, b, _ in layers], [t for _, _, t in layers]

    @staticmethod
    def _stack(per_module: list) -> list[tuple[Tensor, Tensor, bool]]:
        return [(torch.stack([layers[i][0] for layers in per_module]).contiguous(),
                 torch.stack([layers[i][1] for layers in per_module])[:, None],
                 per_module[0][i][2]) for i in range(len(per_module[0]))]

    def z_part(self, z: list[Tensor] | Tensor) -> Tensor:
        """The latents' share ``(k, B, T, D)`` of the decoder's first layer, which reads
        ``[h_t, z_t]``, for all frames at once from ``z`` (one ``(B, T, Z)`` per prior, or
        their stack)."""
        z = torch.stack(z) if isinstance(z, list | tuple) else z  # (k, B, T, Z)
        k, B, T, Z = z.shape
        return torch.baddbmm(self.dec_b, z.reshape(k, B * T, Z), self.dec_z).reshape(k, B, T, -1)

    @property
    def encodes(self) -> bool:
        """Whether :meth:`encode` serves these priors (an encoder with its backward LSTM)."""
        return self._encoder is not None

    def encode(self, power: Tensor, hidden: Tensor, sample: bool = False,
               generator: torch.Generator | None = None) -> Tensor:
        """E-Z of the stacked priors: their latents ``(k, B, T, z_dim)`` (the posterior means,
        or with ``sample`` one draw each) for the powers ``power`` ``(k, B, T, F)``, prior
        ``i`` reading ``power[i]``, given their LSTM states ``hidden`` ``(k, B, T, H)``
        teacher-forced on those powers. The modules' own ``encode`` to float32 rounding."""
        e = self._encoder
        if e is None:
            raise ValueError("encode needs priors whose encoder has its backward LSTM "
                             "(encoder_rnn=True).")
        return self._encode(self._input(power), hidden, sample, generator)

    def _input(self, power: Tensor) -> Tensor:
        """What the networks read of powers ``(k, B, T, F)``: their logarithm, or themselves
        (expected powers are non-negative: the module's clamp is the identity)."""
        return (power + LOG_EPS).log_() if self.weights.log_input else power

    def _encode(self, x: Tensor, hidden: Tensor, sample: bool,
                generator: torch.Generator | None) -> Tensor:
        e = self._encoder
        k, B, T, F = x.shape
        hidden = hidden.reshape(k, B * T, -1)
        f = torch.baddbmm(e["b"], x.reshape(k, B * T, F), e["x"])
        if e["post_h"] is None:  # "hx": the features read h_t as well
            f = f.baddbmm_(hidden, e["h"])
        if e["sigmoid"]:
            f = f.sigmoid_()
        f = _mlp(f, *e["later"]).reshape(k, B, T, -1)
        # a_t summarises [h, x] of frames t..T: the backward LSTM of each prior (its own call)
        a = torch.stack([rnn(f[i].flip(1))[0] for i, rnn in enumerate(self._encoders)]).flip(2)
        pre = torch.baddbmm(e["b0"], a.reshape(k, B * T, -1), e["post_a"])
        if e["post_h"] is not None:  # "x": the posterior network reads h_t
            pre = pre.baddbmm_(hidden, e["post_h"])
        return scripted(latent_chain)(
            pre.reshape(k, B, T, -1), e["post_z"], e["tanh0"], *e["posterior"], sample,
            generator, (_LOGVAR_MIN, _LOGVAR_MAX))[0]

    def reconstruct(self, power: Tensor) -> Tensor:
        """Each stacked prior's reconstruction of its powers ``(k, B, T, F)``, prior ``i``
        reading ``power[i]``: the decoder's variances at the posterior means, the modules'
        ``run(x, sample=False)["x_var"]`` to float32 rounding. Teacher-forced, every layer
        runs over whole sequences at once (DVAE-init; the additive model's iterations)."""
        if self._encoder is None:
            raise ValueError("reconstruct needs priors whose encoder has its backward LSTM "
                             "(encoder_rnn=True).")
        k, B, T, F = power.shape
        x = self._input(power)
        # h_t reads x_{t-1}, and frame 0 zero features: the features shifted by one frame
        w = self.weights
        feat = _mlp(x[:, :, :-1].reshape(k, B * (T - 1), F), w.feature_w, w.feature_b,
                    w.feature_sigmoid)
        first = self._first_features[:, None]
        feat = torch.cat([first.expand(k, B, 1, -1),
                          feat.reshape(k, B, T - 1, first.shape[-1])], 2)
        hidden = torch.stack([rnn(feat[i])[0] for i, rnn in enumerate(self._rnns)])
        z = self._encode(x, hidden, False, None)
        return _variances(self.z_part(z).reshape(k, B * T, -1), hidden.reshape(k, B * T, -1),
                          w).reshape(k, B, T, F)

    def run(self, z: list[Tensor], prec: Tensor, power: Tensor, var: Tensor,
            teacher: tuple | None = None, iv: tuple[Tensor, Tensor] | None = None,
            generator: torch.Generator | None = None) -> None:
        """The whole pass with the latents ``z`` (:func:`srnn_pass`, compiled): writes ``var``
        and, when given, ``teacher`` ``(fed, h)``; ``iv`` ``(re, im)``: the sampled feed."""
        fed, h = (None, None) if teacher is None else teacher
        re, im = (None, None) if iv is None else iv
        scripted(srnn_pass)(prec, power, self.z_part(z), self.weights, var, fed, h, re, im,
                            generator)
