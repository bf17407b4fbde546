"""The grouped settings of :class:`mixest.dvae.DVAE` and its named recipes.

Three small frozen dataclasses (plain values: they clone, compare, pickle and print like
numbers) and the presets built from them:

- :class:`Network`: which recurrent model and how large, and how its decoder forms the mean;
- :class:`TrainingNoise`: denoising training, i.e. how the frames the network reads are
  jittered while it is scored against the clean ones;
- :class:`ScheduledSampling`: feeding the model's own predictions into its recurrence;
- :data:`RECIPES`: named presets of the network, the training noise and the predictive term;
  ``"mot"`` is the training recipe of the bundled box prior (``docs/dvae.md``).

The objects only store what they are given. :class:`~mixest.dvae.DVAE` checks them in ``fit``
(``resolve``/``check``), where the likelihood and the data are known, and names the offending
field in its ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from numbers import Integral, Real
from types import MappingProxyType

__all__ = ["RECIPES", "Network", "ScheduledSampling", "TrainingNoise"]

_ARCHITECTURES = ("srnn", "vrnn")


def _is_int(v: object) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def _fail(name: str, must: str, got: object) -> None:
    raise ValueError(f"{name} must be {must}, got {got!r}.")


@dataclass(frozen=True)
class Network:
    """Shape of a DVAE's networks (the torch module :class:`~mixest.dvae.DVAE` builds).

    The defaults are the bundled ``"mot"`` prior's network, adapted to the likelihood where a
    field is ``None``; only its variance floor differs (the prior used ``min_std=1e-5``, which
    is in image-normalised box units, while ``"auto"`` adapts to any data).

    Parameters
    ----------
    architecture : {"srnn", "vrnn"}, default="srnn"
        :class:`~mixest.dvae.SRNN` (Fraccaro et al. 2016, the MixDVAE paper's) or
        :class:`~mixest.dvae.VRNN` (Chung et al. 2015).
    z_dim : int, default=4
        Size of the latent.
    rnn_dim : int, default=16
        Size of the forward LSTM (and of the backward encoder LSTM).
    dense_dims : tuple of int, default=(32, 16)
        Hidden layers of every dense block (feature extractor, prior, encoder, decoder).
    encoder_rnn : bool, default=True
        Summarise ``x_{t:T}`` with a backward LSTM in the encoder (False: the encoder reads
        ``x_t`` only, a causal posterior).
    residual_order : {0, 1, 2} or None, default=None
        Gaussian likelihood: the decoder predicts ``x_t`` (0), ``x_t - x_{t-1}`` (1) or the
        deviation from constant velocity ``x_t - 2 x_{t-1} + x_{t-2}`` (2), each in units of
        its training-set scale, so that a small network only learns what is not already
        kinematics. None: 1 (a second-order residual fed noisy inputs extrapolates their
        noise, see ``docs/dvae.md``). An Itakura-Saito decoder outputs a variance, no mean:
        only 0 (or None) is accepted.
    velocity_input : bool or None, default=None
        Also feed ``x_{t-1} - x_{t-2}`` to the LSTM. None: True for the Gaussian likelihood,
        False for Itakura-Saito.
    gated_extrapolation : bool or None, default=None
        Gaussian, ``residual_order=1`` only: the decoder mean is
        ``x_{t-1} + sigmoid(g_v) v_{t-1} + sigmoid(g_a) a_{t-1} + s_1 r`` with gates
        ``g_v, g_a`` and residual ``r`` from the decoder and ``v``, ``a`` the last velocity and
        acceleration, which the LSTM also reads (see :class:`~mixest.dvae.DVAEModule`). None:
        True where it applies (Gaussian, first-order residual), else False.
    gate_init : float or None, default=None
        With gated extrapolation: initial bias of the velocity gate's logit (``+gate_init``)
        and of the acceleration gate's (``-gate_init``); 4 starts near constant velocity (gates
        0.98 and 0.02). None: 4.0 with gated extrapolation; without it only None or 0.
    min_std : "auto" or float, default="auto"
        Floor of the decoder standard deviation in data units; "auto" is 1e-3 of each
        dimension's standard deviation in the training data. It keeps the learned variance
        realistic when the training data are noise-free.
    latent_dims : tuple of int or None, default=None
        Hidden layers of the prior and encoder blocks (those that output a latent); None:
        ``dense_dims``.
    encoder_input : {"x", "hx"}, default="x"
        SRNN with ``encoder_rnn`` only. ``"hx"``: the backward LSTM reads ``[h_t, x_t]`` and the
        posterior MLP ``[a_t, z_{t-1}]`` (Fraccaro et al.'s layout, the spectral priors'); ``"x"``:
        it reads the frames only and the MLP ``[h_t, a_t, z_{t-1}]``.
    log_input : bool, default=True
        Itakura-Saito only: the network reads standardised log-power. False: it reads the power
        itself and the decoder outputs the log-variance directly (the convention of the
        MixDVAE authors' released priors, :meth:`~mixest.dvae.DVAE.from_checkpoint`).

    Examples
    --------
    >>> from mixest.dvae import Network
    >>> Network(architecture="vrnn", rnn_dim=32).resolve("gaussian").gated_extrapolation
    True
    """

    architecture: str = "srnn"
    z_dim: int = 4
    rnn_dim: int = 16
    dense_dims: tuple[int, ...] = (32, 16)
    encoder_rnn: bool = True
    residual_order: int | None = None
    velocity_input: bool | None = None
    gated_extrapolation: bool | None = None
    gate_init: float | None = None
    min_std: str | float = "auto"
    latent_dims: tuple[int, ...] | None = None
    encoder_input: str = "x"
    log_input: bool = True

    def resolve(self, likelihood: str) -> Network:
        """Check every field and return the network with each ``None`` replaced by its value.

        Parameters
        ----------
        likelihood : {"gaussian", "itakura_saito"}

        Returns
        -------
        Network
            No field None; ``dense_dims`` a tuple of int.

        Raises
        ------
        ValueError
            Naming the field (``network.<field>``) that is invalid or does not apply.
        """
        gaussian = likelihood == "gaussian"
        if self.architecture not in _ARCHITECTURES:
            _fail("network.architecture", f"one of {_ARCHITECTURES}", self.architecture)
        for name in ("z_dim", "rnn_dim"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                _fail(f"network.{name}", "a positive integer", v)
        if not isinstance(self.dense_dims, (tuple, list)) or not all(
                _is_int(d) and d >= 1 for d in self.dense_dims):
            _fail("network.dense_dims", "a tuple of positive integers", self.dense_dims)
        if not isinstance(self.encoder_rnn, bool):
            _fail("network.encoder_rnn", "a bool", self.encoder_rnn)
        latent = self.latent_dims
        if latent is not None and (not isinstance(latent, (tuple, list)) or not all(
                _is_int(d) and d >= 1 for d in latent)):
            _fail("network.latent_dims", "a tuple of positive integers or None", latent)
        if self.encoder_input not in ("x", "hx"):
            _fail("network.encoder_input", "'x' or 'hx'", self.encoder_input)
        if self.encoder_input == "hx" and (self.architecture != "srnn" or not self.encoder_rnn):
            raise ValueError("network.encoder_input='hx' needs architecture='srnn' with "
                             "encoder_rnn=True (the backward LSTM reads h_t).")
        if not isinstance(self.log_input, bool):
            _fail("network.log_input", "a bool", self.log_input)
        if not self.log_input and gaussian:
            raise ValueError("network.log_input=False applies to the Itakura-Saito likelihood "
                             "only.")
        order = self.residual_order
        if order is not None and (not _is_int(order) or order not in (0, 1, 2)):
            _fail("network.residual_order", "0, 1, 2 or None", order)
        if not gaussian and order not in (None, 0):
            raise ValueError(f"network.residual_order={order!r} needs the Gaussian likelihood: an "
                             "Itakura-Saito decoder outputs a variance, no mean (use 0 or None).")
        order = (1 if gaussian else 0) if order is None else int(order)
        for name in ("velocity_input", "gated_extrapolation"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, bool):
                _fail(f"network.{name}", "a bool or None", v)
        velocity = gaussian if self.velocity_input is None else self.velocity_input
        gated = self.gated_extrapolation
        if gated and (not gaussian or order != 1):
            raise ValueError("network.gated_extrapolation=True needs the Gaussian likelihood and "
                             f"residual_order=1, got likelihood={likelihood!r} and "
                             f"residual_order={order}.")
        gated = (gaussian and order == 1) if gated is None else gated
        gate_init = self.gate_init
        if gate_init is not None and not _is_real(gate_init):
            _fail("network.gate_init", "a finite number or None", gate_init)
        if not gated and gate_init not in (None, 0):
            raise ValueError(f"network.gate_init={gate_init!r} needs gated_extrapolation=True "
                             "(it offsets the gates' initial biases).")
        gate_init = (4.0 if gated else 0.0) if gate_init is None else float(gate_init)
        if self.min_std != "auto" and not (_is_real(self.min_std) and self.min_std >= 0):
            _fail("network.min_std", '"auto" or a finite number >= 0', self.min_std)
        return replace(self, dense_dims=tuple(int(d) for d in self.dense_dims),
                       latent_dims=None if latent is None else tuple(int(d) for d in latent),
                       residual_order=order, velocity_input=velocity, gated_extrapolation=gated,
                       gate_init=gate_init)


@dataclass(frozen=True)
class TrainingNoise:
    """Denoising training: jitter the frames the network reads; score it on the clean ones.

    Inside the variational EM the prior reads posterior means, not clean data. With training
    noise the recurrence, the encoder and the residual base of every training sequence read a
    jittered copy while the decoder is scored against the clean frames, so the prior learns to
    predict the true next frame from noisy past ones, with a variance that covers the error.
    (Jittering the targets too was tried and dropped: it teaches noisy trajectories, a random
    walk once the jitter exceeds the motion; see ``docs/dvae.md``.) The input standardisation is
    taken from the clean training data.

    Parameters
    ----------
    std : float
        Standard deviation of the Gaussian jitter (> 0): in data units, or with ``relative`` a
        fraction of each frame's box size.
    relative : bool, default=False
        ``std`` is a fraction of each frame's box width (x coordinates) and height (y
        coordinates), like the detection protocols. Needs Gaussian box data ``(x1, y1, x2, y2)``
        (D = 4).
    random_level : bool, default=False
        Draw each training sequence's noise level ``u`` uniformly from [0, 1] (jitter
        ``u * std``), so that one prior learns both to extrapolate clean trajectories and to
        denoise noisy ones. False: ``u = 1`` for every jittered sequence.
    clean_fraction : float, default=0.0
        Share of training sequences left exact (``u = 0``): a uniform level is almost never
        zero, and the predictive term is computed on the exact sequences only.
    level_input : bool, default=False
        Tell the network each sequence's level ``u``: every frame's features carry it, and
        afterwards the estimator's methods take it as ``level`` (0 for exact frames, 1, the
        default, for frames jittered by ``std``). One network then trusts exact frames and
        denoises noisy ones without hedging between the two.

    Examples
    --------
    The bundled ``"mot"`` prior's jitter:

    >>> from mixest.dvae import TrainingNoise
    >>> TrainingNoise(0.1, relative=True, random_level=True, clean_fraction=0.3,
    ...               level_input=True)
    TrainingNoise(std=0.1, relative=True, random_level=True, clean_fraction=0.3, level_input=True)
    """

    std: float
    relative: bool = False
    random_level: bool = False
    clean_fraction: float = 0.0
    level_input: bool = False

    def check(self, likelihood: str, n_features: int) -> TrainingNoise:
        """Check every field against the likelihood and the frame size; return ``self``.

        Raises
        ------
        ValueError
            Naming the field (``noise.<field>``) that is invalid or does not apply.
        """
        if not (_is_real(self.std) and self.std > 0):
            _fail("noise.std", "a finite number > 0 (noise=None trains without jitter)",
                  self.std)
        for name in ("relative", "random_level", "level_input"):
            if not isinstance(getattr(self, name), bool):
                _fail(f"noise.{name}", "a bool", getattr(self, name))
        if not (_is_real(self.clean_fraction) and 0 <= self.clean_fraction < 1):
            _fail("noise.clean_fraction", "a number in [0, 1)", self.clean_fraction)
        if self.relative and (likelihood != "gaussian" or n_features != 4):
            raise ValueError(
                "noise.relative=True scales the jitter by the box size: it needs Gaussian box data "
                f"(x1, y1, x2, y2) with D = 4, got likelihood={likelihood!r} and D = "
                f"{n_features}."
            )
        return self


@dataclass(frozen=True)
class ScheduledSampling:
    """Scheduled sampling: feed the model's own predictions into its recurrence in training.

    The probability of feeding the model's own expected frame (the decoder mean; for
    Itakura-Saito the expected power, the variance) instead of the data, per sequence and frame
    (never for the first two frames, whose predictions cannot know position and velocity),
    rises linearly from 0 before epoch ``start`` to ``max_prob`` at epoch ``end`` (the
    MixDVAE paper ramps it in). With a residual decoder the fed predictions' errors compound
    along the sequence, so the ramp must be long; the bundled prior trains without it.

    Parameters
    ----------
    max_prob : float
        Final feeding probability, in (0, 1].
    start : int, default=20
        First epoch (0-based) with a positive probability.
    end : int, default=100
        Epoch at which ``max_prob`` is reached (``end == start``: at once); >= ``start``.
    """

    max_prob: float
    start: int = 20
    end: int = 100

    def check(self) -> ScheduledSampling:
        """Check every field; return ``self``.

        Raises
        ------
        ValueError
            Naming the field (``scheduled_sampling.<field>``) that is invalid.
        """
        if not (_is_real(self.max_prob) and 0 < self.max_prob <= 1):
            _fail("scheduled_sampling.max_prob",
                  "a number in (0, 1] (scheduled_sampling=None trains without it)", self.max_prob)
        for name in ("start", "end"):
            v = getattr(self, name)
            if not _is_int(v) or v < 0:
                _fail(f"scheduled_sampling.{name}", "an integer >= 0", v)
        if self.end < self.start:
            _fail("scheduled_sampling.end", f">= start={self.start}", self.end)
        return self

    def probability(self, epoch: int) -> float:
        """Feeding probability of ``epoch`` (0-based)."""
        if epoch < self.start:
            return 0.0
        if self.end <= self.start:
            return float(self.max_prob)
        return self.max_prob * min(1.0, (epoch - self.start + 1) / (self.end - self.start))


#: Named presets of :class:`~mixest.dvae.DVAE`'s ``network``, ``noise`` and
#: ``predictive_weight`` (``DVAE(recipe=name)``; the training schedule's defaults are the
#: bundled prior's whatever the recipe).
#:
#: ``"mot"``
#:     The bundled box prior's (``DVAE.from_pretrained("mot")``, trained by
#:     ``benchmarks/train_priors.py``; ``docs/dvae.md`` records how it was found): an SRNN
#:     (LSTM 16, dense 32/16) with a gated first-order residual started near constant velocity
#:     and a 1e-5 variance floor; denoising training told the noise level (30% of the sequences
#:     exact, the others jittered by ``u`` x 0.1 of the box size, ``u ~ U[0, 1]``); and the
#:     causal one-step prediction's absolute error from exact boxes weighted by 100. Gaussian
#:     box data ``(x1, y1, x2, y2)`` only.
#: ``"plain"``
#:     The plain ELBO (the MixDVAE paper's objective): the default :class:`Network`, no training
#:     noise, no predictive term. Any likelihood and frame size.
RECIPES: Mapping[str, Mapping[str, object]] = MappingProxyType({
    "mot": MappingProxyType({
        "network": Network(
            architecture="srnn", z_dim=4, rnn_dim=16, dense_dims=(32, 16), encoder_rnn=True,
            residual_order=1, velocity_input=True, gated_extrapolation=True, gate_init=4.0,
            min_std=1e-5,
        ),
        "noise": TrainingNoise(0.1, relative=True, random_level=True, clean_fraction=0.3,
                               level_input=True),
        "predictive_weight": 100.0,
    }),
    "plain": MappingProxyType({
        "network": Network(),
        "noise": None,
        "predictive_weight": 0.0,
    }),
})


def field_names(cls: type) -> tuple[str, ...]:
    """Names of a settings dataclass's fields, in order."""
    return tuple(f.name for f in fields(cls))
