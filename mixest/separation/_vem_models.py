"""The audio half of the VEM engine: STFT bins as observations, spectral DVAEs as dynamics.

:class:`ComplexGaussianBins` is the observation model: every bin :math:`x_{ft}` of the mixture's
STFT belongs to one source, :math:`p(x_{ft} | w_{ft} = n, s) = N_c(x_{ft}; s_{nft}, v_{x,ft})`
with :math:`v_x = \\epsilon |x|^2 + \\text{floor}`. :class:`SpectralDVAEDynamics` is the source
model: one spectral DVAE per source, :math:`s_{nft} | z \\sim N_c(0, v_{\\theta,nft})`, whose
decoder at frame ``t`` is fed the expected power :math:`|\\mu_{t-1}|^2 + \\nu_{t-1}` of the
source's current posterior. With the evidence of :meth:`ComplexGaussianBins.evidence` the engine's
default Gaussian product is the Wiener-like E-S update

.. math::

    \\nu = (\\eta / v_x + 1 / v_\\theta)^{-1}, \\qquad \\mu = \\nu\\, \\eta\\, x / v_x.

``docs/separation.md`` explains the model and its initialisation.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch

from mixest._kernels._spectral import (
    expected_power,
    feed_terms,
    powers_agree,
    source_posteriors,
    spectral_data_bound,
    spectral_e_w,
    spectral_evidence,
    spectral_prior_bound,
)
from mixest.mixture._dynamics import Dynamics
from mixest.mixture._observation import ObservationModel
from mixest.separation._stacked_srnn import StackedSRNNPass, next_feed, sampled_power

__all__ = ["ComplexGaussianBins", "RecurrentSpectralDynamics", "SpectralDVAEDynamics",
           "sampled_power", "variance_floor"]

#: the observation variance's floor, relative to the mixture's mean bin power: keeps v_x > 0 in
#: digitally silent bins without changing any audible one
RELATIVE_FLOOR = 1e-8
#: E-Z reuses the LSTM states of the last E-S pass when the powers it reads agree with the ones
#: that pass fed to this relative precision (they differ by float32 rounding only)
_SAME_POWER_RTOL = 1e-4
#: smallest posterior variance kept (relative to the mixture's mean bin power), for log(nu)
_MIN_NU = 1e-12


class ComplexGaussianBins(ObservationModel):
    """Mixture STFT bins, each assigned to one source (the audio VEM's observation model).

    Parameters
    ----------
    epsilon : float, default=0.03
        Observation variance relative to the bin's power, :math:`v_x = \\epsilon |x|^2 +`
        floor (the MixDVAE paper's ratio).
    initial_variances : ndarray of shape (B, T, N, F), optional
        The sources' variances to start from (e.g. the true sources' powers: an oracle
        initialisation). None: each source's dynamics reconstructs the mixture's power
        (``dynamics.reconstruct``, "DVAE-init").
    dtype : {numpy.complex64, numpy.complex128}, default=numpy.complex64
        Precision in which the sources' posteriors, the responsibilities and the evidence are
        stored (the per-bin passes compute in float64 either way). Single precision halves
        the VEM's memory and the bytes its passes stream; float32 networks gain nothing from
        more. Dynamics whose own recursion is in double precision return double-precision
        posteriors, which the engine then keeps.

    Notes
    -----
    ``prepare`` takes the complex STFT of ``B`` mixtures, time-major ``(B, T, F)``. The
    assignment prior is uniform and fixed (no M-step). The initialisation is "DVAE-init": each
    source's prior reconstructs the mixture's power spectrogram, and the sources start as the
    Wiener filters of those reconstructions, :math:`\\mu_n = v_n / \\sum_m v_m \\, x` with the
    matching posterior variance.
    """

    def __init__(self, epsilon: float = 0.03, initial_variances: np.ndarray | None = None,
                 dtype: type = np.complex64):
        self.epsilon = float(epsilon)
        self.initial_variances = initial_variances
        if np.dtype(dtype) not in (np.complex64, np.complex128):
            raise ValueError(f"dtype must be numpy.complex64 or numpy.complex128, got {dtype!r}.")
        self.dtype = np.dtype(dtype)

    def prepare(self, observations: object, n_sources: int) -> tuple[dict, dict]:
        x = np.asarray(observations)
        if x.ndim != 3 or not np.iscomplexobj(x):
            raise ValueError("observations must be complex STFTs of shape (B, T, F), got "
                             f"{x.dtype} of shape {x.shape}.")
        power = np.abs(x) ** 2
        floor = RELATIVE_FLOOR * np.maximum(power.mean(axis=(1, 2)), np.finfo(float).tiny)
        data = {"x": x.astype(np.complex128, copy=False), "power": power,
                "v_x": self.epsilon * power + floor[:, None, None],
                "scale": floor / RELATIVE_FLOOR}
        B = x.shape[0]
        params = {"log_prior": np.full((B, n_sources), -math.log(n_sources))}
        return data, params

    def initialize(self, data, params, n_sources, dynamics, rng):
        v = self.initial_variances
        if v is None:
            v = dynamics.reconstruct(data["power"])  # (B, T, N, F)
        elif v.shape != data["x"].shape[:2] + (n_sources,) + data["x"].shape[2:]:
            raise ValueError(f"initial_variances must have shape (B, T, N, F), got {v.shape}.")
        floor = variance_floor(data)
        v = np.maximum(v, floor)
        total = v.sum(axis=2, keepdims=True)
        mask = v / total
        means = (mask * data["x"][:, :, None]).astype(self.dtype, copy=False)
        covs = np.maximum(v * (1.0 - mask), floor)
        return means, covs.astype(means.real.dtype, copy=False)

    def e_w(self, data, params, means, covs):
        return spectral_e_w(data["x"], data["v_x"], means, covs, params["log_prior"])

    def evidence(self, data, params, eta):
        return spectral_evidence(data["x"], data["v_x"], eta)

    def expected_log_likelihood(self, data, params, means, covs, eta):
        return spectral_data_bound(data["x"], data["v_x"], means, covs, eta, params["log_prior"])

    def m_step(self, data, params, means, covs, eta):
        return params


def variance_floor(data: dict) -> np.ndarray:
    """The smallest variance a source keeps, ``(B, 1, 1, 1)``: ``_MIN_NU`` of each mixture's
    mean bin power (``data`` from :meth:`ComplexGaussianBins.prepare`), so that log(nu) and the
    Wiener ratios stay finite in digitally silent bins."""
    return _MIN_NU * data["scale"][:, None, None, None]


def _device_of(module) -> torch.device:
    return next(module.buffers()).device


class RecurrentSpectralDynamics(Dynamics):
    """One recurrent network per source type predicting each frame's power-spectrum variance.

    At frame ``t`` the network of source ``n``, fed the source's expected power
    :math:`|\\mu_{t-1}|^2 + \\nu_{t-1}` under the current posterior, gives the prior variance
    :math:`v_{nt}` of :math:`s_{nt} \\sim N_c(0, v_{nt})`, and the E-S step is the Wiener-like
    update per bin. Subclasses say how a network starts (:meth:`_initial_state`) and steps
    (:meth:`_step`), and how it reconstructs a power spectrogram (:meth:`reconstruct`, the
    initialisation); a subclass whose networks can run several sources' passes at once also
    overrides :meth:`_groups` and :meth:`_pass_group`. Source ``n`` of every mixture uses
    ``modules[n]``; the engine runs the ``B * N`` sources sequence-major.

    Parameters
    ----------
    modules : sequence of torch.nn.Module
        One per source, all on the same number of frequency bins.
    device : torch.device or str, default="cpu"
        Where the networks run (a copy is moved there when a module lives elsewhere).
    """

    #: what the network reads of frame t - 1: "expected" (|mu|^2 + nu) or "sample" (the power
    #: of one draw from the posterior, through ``self._generator``)
    feed = "expected"
    _generator: torch.Generator | None = None

    def __init__(self, modules: Sequence, device: object = "cpu"):
        self.device = torch.device(device)
        # the networks stay where their owners keep them: a copy runs on another device
        self.modules = [(m if _device_of(m) == self.device else copy.deepcopy(m).to(self.device))
                        for m in modules]

    @property
    def n_sources(self) -> int:
        return len(self.modules)

    def _per_source(self, a: np.ndarray) -> np.ndarray:
        """(M, ...) sequence-major -> (B, N, ...)."""
        return a.reshape((-1, self.n_sources) + a.shape[1:])

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)

    def start_batch(self, n_sequences, n_sources, rng):
        if n_sources != self.n_sources:
            raise ValueError(f"{self.n_sources} priors for {n_sources} sources.")

    def reconstruct(self, power: np.ndarray) -> np.ndarray:
        """Each network's variance for a power spectrogram ``(B, T, F)``, as ``(B, T, N, F)``
        (the initialisation of the sources' variances)."""
        raise NotImplementedError

    def _initial_state(self, n: int, batch: int) -> object:
        raise NotImplementedError

    def _step(self, n: int, fed: torch.Tensor | None, t: int,
              state: object) -> tuple[torch.Tensor, object]:
        """Variance ``(B, F)`` of frame ``t`` of source ``n`` given the power fed at ``t - 1``
        (None at ``t = 0``), and the next state."""
        raise NotImplementedError

    def _groups(self) -> list[tuple[int, int]]:
        """Runs ``(a, b)`` of sources whose E-S pass runs together (one each by default)."""
        return [(n, n + 1) for n in range(self.n_sources)]

    def _pass_group(self, a: int, b: int, prec: torch.Tensor, power: torch.Tensor,
                    var: torch.Tensor, iv: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        """The E-S recursion of sources ``a .. b - 1`` over all frames: writes their prior
        variances into ``var``. ``prec``, ``power`` (the evidence's ``ip`` and ``|iv|^2``),
        ``var`` and ``iv`` (its real and imaginary parts, for the sampled feed) are
        ``(b - a, B, T, F)``. By default each source steps alone (:meth:`_step`), frame by
        frame in Python."""
        for i, n in enumerate(range(a, b)):
            state = self._initial_state(n, prec.shape[1])
            fed = None
            for t in range(prec.shape[2]):
                v, state = self._step(n, fed, t, state)
                var[i, :, t] = v
                fed = next_feed(v, prec[i, :, t], power[i, :, t],
                                None if iv is None else iv[0][i, :, t],
                                None if iv is None else iv[1][i, :, t], self._generator)

    @torch.no_grad()
    def forward_pass(self, info_vec, info_prec, m_first):
        iv = self._per_source(info_vec)
        ip = self._per_source(info_prec)
        B, N, T, F = ip.shape
        # The recursion needs only real powers: with nu = (1 / v + ip)^-1 and mu = nu iv, the
        # power fed at t + 1 is |mu|^2 + nu = nu^2 |iv|^2 + nu (next_feed). The complex means
        # and the posterior variances follow after the loop, in one pass over the bins.
        prec, evidence_power = (self._tensor(a).transpose(0, 1) for a in feed_terms(iv, ip))
        parts = None
        if self.feed == "sample":
            parts = tuple(self._tensor(a).transpose(0, 1) for a in (iv.real, iv.imag))
        var = torch.empty((B, N, T, F), dtype=prec.dtype, device=prec.device)
        # prec, evidence_power, the draws' terms and var_k are source-major (N, B, T, F)
        # views: the sources a .. b - 1 of a group are [a:b]
        var_k = var.transpose(0, 1)
        for a, b in self._groups():
            self._pass_group(a, b, prec[a:b], evidence_power[a:b], var_k[a:b],
                             None if parts is None else (parts[0][a:b], parts[1][a:b]))
        del prec, evidence_power, parts  # freed before the posteriors are allocated
        var = var.cpu().numpy()  # the prior variances, float32: what the bound reads
        mu, nu = source_posteriors(var, iv, ip)
        flat = [a.reshape(B * N, T, F) for a in (mu, nu, var)]
        return [flat[0], flat[1], np.zeros((B * N, T, F)), flat[2]]

    def begin(self, m0):  # the whole pass runs in forward_pass
        raise NotImplementedError(f"{type(self).__name__} runs its E-S pass in forward_pass.")

    def predict(self, state, t):
        raise NotImplementedError(f"{type(self).__name__} runs its E-S pass in forward_pass.")

    def expected_log_prior(self, means, covs, pred_mean, pred_var):
        return spectral_prior_bound(means, covs, pred_var)


class SpectralDVAEDynamics(RecurrentSpectralDynamics):
    """One spectral DVAE prior per source: the decoder for E-S, the encoder for E-Z.

    Parameters
    ----------
    modules : sequence of DVAEModule
        Itakura-Saito modules, one per source, all with the same number of frequency bins.
    sample : bool, default=False
        E-Z draws ``z`` from the encoder's posterior (one reparameterised sample); False uses
        its means.
    feed : {"expected", "sample"}, default="expected"
        What each decoder reads of frame ``t - 1`` in E-S: the posterior expected power
        :math:`|\\mu|^2 + \\nu`, or the power of one complex Gaussian draw from the posterior
        (:func:`sampled_power`; a periodogram, like the spectra the priors were trained on).
        With ``sample=False`` and ``feed="expected"`` the whole iteration is deterministic.
    device : torch.device or str, default="cpu"
    """

    def __init__(self, modules: Sequence, sample: bool = False, feed: str = "expected",
                 device: object = "cpu"):
        super().__init__(modules, device)
        if feed not in ("expected", "sample"):
            raise ValueError(f"feed must be 'expected' or 'sample', got {feed!r}.")
        self.sample = bool(sample)
        self.feed = feed
        # runs of SRNN priors run their E-S pass stacked and compiled; any other prior steps
        # alone through decode_step (the base class's per-source loop)
        self._group_list = StackedSRNNPass.groups(self.modules)
        self._stacked = {(a, b): StackedSRNNPass(self.modules[a:b])
                         for a, b in self._group_list
                         if StackedSRNNPass.supports(self.modules[a])}
        self.stochastic = self.sample or feed == "sample"
        self._z: list[torch.Tensor] | None = None
        self._generator: torch.Generator | None = None
        # what the last E-S pass fed each SRNN group and its LSTM states, (k, B, T, ...) each:
        # when E-Z reads the same powers, those are its teacher-forced states
        self._teacher: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def reconstruct(self, power: np.ndarray) -> np.ndarray:
        """Each prior's reconstruction (decoder variance at the posterior means) of ``power``
        ``(B, T, F)``, as ``(B, T, N, F)`` (the DVAE-init of the sources' variances)."""
        return self._reconstruct([self._tensor(power)] * self.n_sources)

    def reconstruct_each(self, powers: np.ndarray) -> np.ndarray:
        """Prior ``n``'s reconstruction of ``powers[:, :, n]`` for every ``n``: ``(B, T, N, F)``
        in, ``(B, T, N, F)`` out (the additive model's E-Z and E-S)."""
        return self._reconstruct([self._tensor(powers[:, :, n]) for n in range(self.n_sources)])

    @torch.no_grad()
    def _reconstruct(self, powers: list[torch.Tensor]) -> np.ndarray:
        v = []
        for a, b in self._group_list:
            stacked = self._stacked.get((a, b))
            if stacked is not None and stacked.encodes:  # the group at once
                v += stacked.reconstruct(torch.stack(powers[a:b])).unbind(0)
            else:
                v += [self.modules[n].run(powers[n], sample=False)["x_var"] for n in range(a, b)]
        return torch.stack(v, 2).double().cpu().numpy()

    def start_batch(self, n_sequences, n_sources, rng):
        super().start_batch(n_sequences, n_sources, rng)
        seed = int(rng.integers(2**63 - 1))
        self._generator = torch.Generator(device=self.device).manual_seed(seed)
        self._teacher = {}

    @torch.no_grad()
    def infer_latents(self, means, rng, covs=None):
        if covs is None:
            raise ValueError("spectral priors read the expected power |mu|^2 + nu: pass covs.")
        power = self._per_source(expected_power(means, covs))  # (B, N, T, F)
        self._z = []
        for a, b in self._group_list:
            stacked = self._stacked.get((a, b))
            x = self._tensor(np.moveaxis(power[:, a:b], 1, 0))  # (b - a, B, T, F)
            hidden = [self._teacher_forced(n, x[n - a]) for n in range(a, b)]
            if stacked is not None and stacked.encodes and all(h is not None for h in hidden):
                # the group's E-Z at once, from the states the E-S pass left
                self._z += stacked.encode(x, self._teacher[a, b][1], self.sample,
                                          self._generator).unbind(0)
                continue
            for n, h in zip(range(a, b), hidden, strict=True):
                self._z.append(self.modules[n].encode(x[n - a], sample=self.sample,
                                                      generator=self._generator,
                                                      hidden=h)[0])
        self._teacher = {}

    def _teacher_forced(self, n: int, power: torch.Tensor) -> torch.Tensor | None:
        """The LSTM states of prior ``n`` teacher-forced on ``power`` ``(B, T, F)`` if the last
        E-S pass fed it these powers (to float32 rounding; not with ``feed="sample"``), else
        None: E-Z then runs the LSTM itself."""
        for (a, b), (fed, hidden) in self._teacher.items():
            if a <= n < b and powers_agree(power.cpu().numpy(), fed[n - a].cpu().numpy(),
                                           _SAME_POWER_RTOL):
                return hidden[n - a]
        return None

    def forward_pass(self, info_vec, info_prec, m_first):
        if self._z is None:
            raise RuntimeError("call infer_latents before the E-S pass (E-Z precedes E-S).")
        return super().forward_pass(info_vec, info_prec, m_first)

    def _groups(self):
        return self._group_list

    def _initial_state(self, n, batch):
        return self.modules[n].initial_state(batch)

    def _step(self, n, fed, t, state):
        _, v, state = self.modules[n].decode_step(fed, self._z[n][:, t], state)
        return v, state

    def _pass_group(self, a, b, prec, power, var, iv):
        stacked = self._stacked.get((a, b))
        if stacked is None:
            return super()._pass_group(a, b, prec, power, var, iv)
        teacher = None
        if iv is None:  # the expected feed: E-Z may reuse the LSTM states (_teacher_forced)
            B, T = prec.shape[1:3]
            teacher = self._teacher[a, b] = (
                torch.empty((b - a, B, T, self.modules[a].x_dim), device=self.device),
                torch.empty((b - a, B, T, stacked.rnn_dim), device=self.device))
        stacked.run(self._z[a:b], prec, power, var, teacher, iv, self._generator)
