"""Source dynamics for the VEM engine: the :class:`Dynamics` interface and its models.

The engine (:func:`mixest.mixture.run_vem`) never looks inside a source model. It talks to it
through the verbs of :class:`Dynamics`, on a flat batch of ``M = n_sequences * n_sources``
independent sources, sequential in time (E-S), plus the E-Z hook and the model's part of the
lower bound. ``docs/engine.md`` explains how the two injected models and the loop fit together.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from mixest.mixture._numpy_srnn import MAX_PRIOR_VAR

_LOG_2PI = math.log(2.0 * math.pi)

__all__ = [
    "Dynamics",
    "DVAEDynamics",
    "gaussian_product",
    "lagged_smoother",
]


def gaussian_product(
    mean: np.ndarray, var: np.ndarray, info_vec: np.ndarray, info_prec: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior of a Gaussian prior times Gaussian evidence in information form.

    Parameters
    ----------
    mean : ndarray of shape (M, D)
    var : ndarray of shape (M, D) or (M, D, D)
        Prior covariance (diagonal or full).
    info_vec : ndarray of shape (M, D)
    info_prec : ndarray of shape (M, D) or (M, D, D)
        Evidence precision (diagonal or full).

    Returns
    -------
    m, Sigma : ndarray
        Posterior mean ``(M, D)`` and covariance (diagonal ``(M, D)`` when both inputs are
        diagonal, else full ``(M, D, D)``).
    """
    if var.ndim == 2 and info_prec.ndim == 2:
        # element-wise: no matrix algebra at all
        sigma = var / (1.0 + var * info_prec)
        return sigma * (info_vec + mean / var), sigma
    D = mean.shape[-1]
    prior_prec = np.linalg.solve(var, np.broadcast_to(np.eye(D), var.shape)) if var.ndim == 3 else (
        np.eye(D) / var[:, None, :]
    )
    prec = prior_prec + (info_prec if info_prec.ndim == 3 else info_prec[:, :, None] * np.eye(D))
    rhs = info_vec + np.einsum("mij,mj->mi", prior_prec, mean)
    chol = np.linalg.cholesky(prec)
    sigma = _cho_solve(chol, np.broadcast_to(np.eye(D), prec.shape))
    return _cho_solve(chol, rhs[..., None])[..., 0], sigma


def _cho_solve(chol: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve ``L L^T x = rhs`` for a batch of lower Cholesky factors."""
    y = np.linalg.solve(chol, rhs)
    return np.linalg.solve(np.swapaxes(chol, -1, -2), y)


def lagged_smoother(
    means: np.ndarray,
    covs: np.ndarray,
    pred_mean: np.ndarray,
    pred_var: np.ndarray,
    coefficients: np.ndarray,
    noise_share: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Rauch-Tung-Striebel smoother of a DVAE prior linearised around its forward pass.

    A residual or gated decoder predicts every coordinate as

    .. math::

        \mu_t = a_{1t}\, m_{t-1} + a_{2t}\, m_{t-2} + a_{3t}\, m_{t-3} + f_t,
        \qquad v_t = q_t + (\text{propagated input uncertainty}),

    with :math:`a_t = (1, 0, 0)` for a first-order residual, :math:`(2, -1, 0)` for a
    second-order one and :math:`(1 + g_v + g_a, -g_v - 2 g_a, g_a)` for the gated extrapolation.
    Holding :math:`a_t`, :math:`f_t` and the network's variance :math:`q_t` at their forward-pass
    values (the LSTM's own dependence on the means is ignored), every coordinate is a
    linear-Gaussian model with state :math:`(s_t, s_{t-1}, s_{t-2})`:

    .. math::

        s_t = a_{1t} s_{t-1} + a_{2t} s_{t-2} + a_{3t} s_{t-3} + f_t + w_t, \quad
        w_t \sim N(0, q_t),

    observed through the evidence the forward pass multiplied in (recovered from its moments:
    precision :math:`1/\Sigma_t - 1/v_t`). This runs that model's Kalman filter and RTS
    smoother exactly, with full 3x3 covariances (:mod:`mixest._kernels._lagged_rts`, Numba), so
    a detection after a gap corrects every frame of the gap the way a constant-velocity Kalman
    smoother does. A prediction whose variance has grown past ``CUT_RATIO`` times its own noise
    passes nothing back (a run of thousands of frames without evidence).

    Parameters
    ----------
    means, covs : ndarray of shape (M, T, D)
        Filtered moments of the forward pass (diagonal covariances).
    pred_mean, pred_var : ndarray of shape (M, T, D)
        Its predictions :math:`\mu_t` and their variances :math:`v_t`.
    coefficients : ndarray of shape (M, T, D, 3)
        :math:`(a_{1t}, a_{2t}, a_{3t})`, zero at ``t = 0``.
    noise_share : ndarray of shape (M, T, D)
        :math:`q_t / v_t`, in ``(0, 1]``.

    Returns
    -------
    means, covs : ndarray of shape (M, T, D)
        Smoothed means and marginal variances.
    """
    from mixest._kernels._lagged_rts import lagged_rts

    M, T, D = means.shape

    def time_major(a, axes=(1, 0, 2)):  # free for the forward pass's own (T, M, D) arrays
        return np.ascontiguousarray(np.transpose(a, axes), dtype=np.float64).reshape(
            -1, T, M * D)

    moments = [time_major(a)[0] for a in (means, covs, pred_mean, pred_var)]
    coefficients = time_major(coefficients, (3, 1, 0, 2))
    out_means, out_covs = np.empty((T, M * D)), np.empty((T, M * D))
    lagged_rts(*moments, coefficients, time_major(noise_share)[0], out_means, out_covs)
    return tuple(np.ascontiguousarray(a.reshape(T, M, D).transpose(1, 0, 2))
                 for a in (out_means, out_covs))


class Dynamics:
    """A source model usable by the VEM engine (E-S, E-Z and its part of the bound).

    Every verb below is declared here with a working default except :meth:`begin` and
    :meth:`predict`; the engine calls all of them and looks nothing up. Arrays are on a flat
    batch of ``M = n_sequences * n_sources`` sources (sequence-major), ``D`` values per frame
    (box coordinates, frequency bins, ...).

    The E-S forward pass is ``state = begin(m0)``, then for every frame ``t``:
    ``mean, var, state = predict(state, t)`` (the prior of :math:`s_t` given the past) and
    ``m_t, Sigma_t, state = update(state, t, mean, var, info_vec, info_prec)`` (the posterior
    given the observations' evidence in information form); then
    ``smooth(means, covs, pred_mean, pred_var)`` (a backward pass, identity by default).
    A model may instead run the whole forward pass in one call (:meth:`forward_pass`).
    """

    #: whether :meth:`infer_latents` or the E-S pass draws random samples (the bound then need
    #: not increase monotonically; the engine keeps the best iterate either way)
    stochastic: bool = False

    def start_batch(self, n_sequences: int, n_sources: int, rng: np.random.Generator) -> None:
        """A VEM run on ``n_sequences`` of ``n_sources`` sources starts (after its
        initialisation). No-op by default."""

    def select_sequences(self, sequences: np.ndarray) -> None:
        """The next :meth:`infer_latents` sees these sequences of the batch (the ones still
        iterating, sequence-major). No-op by default."""

    def infer_latents(self, means: np.ndarray, rng: np.random.Generator,
                      covs: np.ndarray | None = None) -> None:
        """E-Z: update the latent posterior from the current means ``(M, T, D)`` and, for
        models that read them (the expected power of a spectral prior), covariances of the
        same layout (no-op for models without latents)."""

    def begin(self, m0: np.ndarray) -> Any:
        """Start a forward pass from the current first-frame means ``m0`` of shape ``(M, D)``."""
        raise NotImplementedError

    def predict(self, state: Any, t: int) -> tuple[np.ndarray, np.ndarray, Any]:
        """Prior mean ``(M, D)`` and variance ``(M, D)`` or ``(M, D, D)`` of the sources at
        frame ``t`` given the past."""
        raise NotImplementedError

    def update(
        self,
        state: Any,
        t: int,
        mean: np.ndarray,
        var: np.ndarray,
        info_vec: np.ndarray,
        info_prec: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, Any]:
        """Posterior of the sources at frame ``t`` given the evidence in information form.

        ``info_prec`` is the summed precision of what was assigned to each source (zero when
        nothing was, so no pseudo-observation is ever inverted) and ``info_vec`` the matching
        information vector. The default is the element-wise Gaussian product

        .. math::

            \\Sigma_t = (\\Lambda_t + V_t^{-1})^{-1}, \\qquad
            m_t = \\Sigma_t (\\xi_t + V_t^{-1} \\mu_t)

        (:func:`gaussian_product`, complex ``info_vec`` allowed), recorded by :meth:`observe`.
        Models with hidden state (a velocity) override it to correct the hidden part too.
        """
        m, sigma = gaussian_product(mean, var, info_vec, info_prec)
        return m, sigma, self.observe(state, t, m, sigma)

    def observe(self, state: Any, t: int, m: np.ndarray, sigma: np.ndarray) -> Any:
        """Record the posterior at ``t`` in the state (used by the default :meth:`update`)."""
        return state

    def smooth(
        self, means: np.ndarray, covs: np.ndarray, pred_mean: np.ndarray, pred_var: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Backward pass over the filtered ``(M, T, D)`` moments (identity by default).

        ``pred_mean`` and ``pred_var`` are the forward pass's predictions (:meth:`predict`).
        """
        return means, covs

    def forward_pass(
        self, info_vec: np.ndarray, info_prec: np.ndarray, m_first: np.ndarray
    ) -> list[np.ndarray] | None:
        """The whole forward pass in one call: ``[means, covs, pred_mean, pred_var]`` of shape
        ``(M, T, ...)``, or None (the default) to run it frame by frame."""
        return None

    def expected_log_prior(
        self, means: np.ndarray, covs: np.ndarray, pred_mean: np.ndarray, pred_var: np.ndarray
    ) -> np.ndarray:
        """The dynamics' part of the lower bound, per sequence.

        :math:`\\sum_{tn} E_q[\\log N(s_{tn}; \\mu_{tn}, V_{tn})] + H(q(s))` for real
        Gaussian sources, from arrays of shape ``(B, T, N, D)`` (or ``(B, T, N, D, D)`` for
        full covariances). A model of complex sources overrides it.

        Returns
        -------
        bound : ndarray of shape (B,)
        """
        B, D = means.shape[0], means.shape[-1]
        if pred_var.ndim == means.ndim and covs.ndim == means.ndim:
            from mixest._kernels._bound import gaussian_prior_diag

            return gaussian_prior_diag(means, covs, pred_mean, pred_var)  # element-wise, Numba
        r = means - pred_mean
        v, c = full_covariances(pred_var, means.ndim), full_covariances(covs, means.ndim)
        second = r[..., :, None] * r[..., None, :] + c
        log_p = -0.5 * (D * _LOG_2PI + np.linalg.slogdet(v)[1]
                        + np.trace(np.linalg.solve(v, second), axis1=-2, axis2=-1))
        entropy = 0.5 * (D * (1.0 + _LOG_2PI) + np.linalg.slogdet(c)[1])
        return (log_p + entropy).reshape(B, -1).sum(1)


def full_covariances(a: np.ndarray, ndim: int) -> np.ndarray:
    """Covariances of arrays of ``ndim`` dimensions as full matrices: diagonal ones (``ndim``
    dimensions) become ``(..., D, D)``, full ones (``ndim + 1``) are returned as they are."""
    return a if a.ndim > ndim else a[..., :, None] * np.eye(a.shape[-1])


class DVAEDynamics(Dynamics):
    """A trained DVAE (e.g. SRNN) as the source model: decoder for E-S, encoder for E-Z.

    At frame ``t`` the decoder, fed with :math:`m_{t-1}` and :math:`z_t`, gives the prior
    :math:`N(\\mu_\\theta, \\operatorname{diag} v_\\theta)`; with ``n_samples`` > 1 latent
    draws the prior is the moment-matched mixture of the per-sample Gaussians.

    Parameters
    ----------
    module : torch.nn.Module
        Fitted DVAE module exposing ``initial_state``, ``decode_step`` and ``encode``.
    n_samples : int, default=1
        Number of latent samples per source in E-Z.
    sample : bool, default=False
        Draw ``z`` from :math:`q(z|m)`; if False use its mean (deterministic E-Z).
    device : str, default="cpu"
    backend : {"auto", "numpy", "torch"}, default="auto"
        ``"numpy"`` runs E-Z and E-S through a verified NumPy twin of the module
        (:mod:`mixest.mixture._numpy_srnn`: each pass one compiled call over the whole batch,
        :mod:`mixest._kernels._srnn`), much faster than torch's per-call overhead for tiny
        priors on CPU; ``"auto"`` uses it when the module is supported and on the CPU.
    precision : {"float32", "float64"}, default="float32"
        Precision of the network inside the NumPy twin. float32 is the module's own precision;
        its tanh, exp and arcsinh are vectorised approximations accurate to float32 rounding
        (a few units in the last place). The trajectories, variances and Gaussian products
        stay in float64. float64 reproduces the module run in float64 (to 1e-10), with the C
        library's functions, one call per value: E-Z and E-S about ten times slower.
    propagate_uncertainty : bool, default=True
        The decoder is fed the posterior *means* :math:`m_{t-1}, m_{t-2}`; a residual decoder
        (``residual_order`` 1 or 2: :math:`\\mu_t = m_{t-1} + \\dots` or
        :math:`2 m_{t-1} - m_{t-2} + \\dots`) then passes their uncertainty on. This adds the
        first-order (delta-method) term :math:`\\Sigma_{t-1}` or
        :math:`4 \\Sigma_{t-1} + \\Sigma_{t-2}` to :math:`v_\\theta`, so a prior trained on
        noise-free trajectories does not claim more certainty than its noisy inputs allow.
        The propagated variance is capped at
        :data:`~mixest.mixture._numpy_srnn.MAX_PRIOR_VAR` (one image, squared): the delta
        method ignores the correlation of consecutive means, so without evidence it grows
        geometrically.
    finetune_steps : int, default=0
        Adam steps of encoder fine-tuning per E-Z step of the main VEM loop, on a per-sequence
        copy of the encoder (:class:`mixest.mixture._finetune.EncoderFineTuner`; SRNN only). The
        copies last one VEM run; the module is never modified. The initialisation's E-Z steps use
        the fitted encoder.
    finetune_lr : float, default=1e-3
        Adam learning rate of the fine-tuning.
    smooth : bool, default=False
        After the forward (filtering) pass, run :func:`lagged_smoother` backwards, so that every
        frame's posterior also uses the detections after it. The paper's E-S step is the
        forward pass alone (``False``); with the smoother the E-W and E-Z steps see smoothed
        trajectories.
    noise_level : float, optional
        Modules built with ``noise_level_input=True`` only: the noise level the network is told
        its inputs (the posterior means) have, as a fraction of its largest training jitter. A
        copy of the module with this ``noise_level`` buffer is run (the module is never
        modified). None: the module's own buffer (1.0 unless set).
    """

    def __init__(self, module, n_samples: int = 1, sample: bool = False, device: str = "cpu",
                 backend: str = "auto", propagate_uncertainty: bool = True,
                 finetune_steps: int = 0, finetune_lr: float = 1e-3, smooth: bool = False,
                 precision: str = "float32", noise_level: float | None = None):
        if noise_level is not None:
            if not getattr(module, "noise_level_input", False):
                raise ValueError("noise_level needs a DVAE module built with "
                                 "noise_level_input=True.")
            if not (np.isfinite(noise_level) and noise_level >= 0):
                raise ValueError(f"noise_level must be a finite number >= 0, got {noise_level!r}.")
            module = copy.deepcopy(module)
            module.noise_level.fill_(float(noise_level))
        self.module = module
        self.do_smooth = bool(smooth)
        self.finetune_steps = int(finetune_steps)
        self.finetune_lr = float(finetune_lr)
        self._tuner = None
        self._selected = None
        self._last = None  # (means, LSTM states) of the last forward pass
        self.propagate_uncertainty = propagate_uncertainty
        self.residual_order = int(getattr(module, "residual_order",
                                          1 if getattr(module, "residual", False) else 0))
        self.gated = bool(getattr(module, "gated_extrapolation", False))
        self._coef = None  # (coefficients, noise share) of the last forward pass, for the smoother
        self.n_samples = n_samples
        self.sample = sample
        self.device = device
        self.stochastic = bool(sample)
        self._z = None
        self.twin = None
        if backend not in ("auto", "numpy", "torch"):
            raise ValueError(f"backend must be 'auto', 'numpy' or 'torch', got {backend!r}.")
        if precision not in ("float32", "float64"):
            raise ValueError(f"precision must be 'float32' or 'float64', got {precision!r}.")
        if backend != "torch" and str(device).startswith("cpu"):
            from mixest.mixture._numpy_srnn import numpy_twin

            self.twin = numpy_twin(module, dtype=np.dtype(precision))
        if backend == "numpy" and self.twin is None:
            raise ValueError("this DVAE module has no verified NumPy twin; use backend='torch'.")

    @property
    def _R(self) -> int:
        return self.n_samples if self.sample else 1

    def start_batch(self, n_sequences: int, n_sources: int, rng: np.random.Generator) -> None:
        self._selected = None
        self._tuner = None
        if self.finetune_steps > 0:
            from mixest.mixture._finetune import EncoderFineTuner

            self._tuner = EncoderFineTuner(self.module, n_sequences, n_sources,
                                           self.finetune_steps, self.finetune_lr, rng)

    def select_sequences(self, sequences: np.ndarray) -> None:
        self._selected = np.asarray(sequences)

    def infer_latents(self, means: np.ndarray, rng: np.random.Generator,
                      covs: np.ndarray | None = None) -> None:
        R = self._R
        reuse = self._last is not None and np.array_equal(self._last[0], means)
        if self._tuner is not None and self._selected is not None:
            M, T, _ = means.shape
            eps = rng.standard_normal((M * R, T, self.module.z_dim)) if self.sample else None
            z = self._tuner.encode(means, self._selected, R, eps)
            self._selected = None
            if self.twin is None:
                import torch

                z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
            self._z = z
            return
        if self.twin is not None:
            # float64 Numba kernels for the recurrences (verified equal to the torch module)
            M, T, _ = means.shape
            eps = rng.standard_normal((M * R, T, self.twin.z_dim)) if self.sample else None
            # E-S just ran the forward LSTM on these means
            hidden = self._last[1] if reuse else None
            self._z = self.twin.encode_fast(means, R, eps, hidden)[0]
            return
        import torch

        x = np.repeat(means, R, axis=0) if R > 1 else means
        xt = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        gen = None
        if self.sample:
            gen = torch.Generator(device=self.device)
            gen.manual_seed(int(rng.integers(2**63 - 1)))
        with torch.no_grad():
            z, z_mean, _ = self.module.encode(xt, sample=self.sample, generator=gen)
        self._z = (z if self.sample else z_mean).contiguous()

    def forward_pass(self, info_vec: np.ndarray, info_prec: np.ndarray, m_first: np.ndarray):
        """Whole E-S forward pass in one Numba call (twin, diagonal evidence), else None."""
        if self.twin is None or info_prec.ndim != 3:
            return None
        if self._z is None or self._z.shape[0] != m_first.shape[0] * self._R:
            raise RuntimeError("call infer_latents before the E-S pass (E-Z precedes E-S).")
        # with the smoother, E-Z reads the smoothed means: the LSTM states cannot be reused
        out = self.twin.forward_pass(info_vec, info_prec, self._z, self._R,
                                     self.propagate_uncertainty, return_hidden=not self.do_smooth,
                                     return_coefficients=self.do_smooth)
        hidden = None if self.do_smooth else out[4]
        self._coef = tuple(out[4:6]) if self.do_smooth else None
        self._last = None if self.do_smooth else (out[0], hidden)
        return list(out[:4])

    def begin(self, m0: np.ndarray):
        if self._z is None or self._z.shape[0] != m0.shape[0] * self._R:
            raise RuntimeError("call infer_latents before begin (E-Z precedes E-S).")
        MR = self._z.shape[0]
        self._coef = ([], []) if self.do_smooth else None
        if self.twin is not None:
            h = self.twin.initial_state(MR)
        else:
            import torch

            with torch.no_grad():
                h = self.module.initial_state(MR)
        return {"x": None, "h": h, "s1": None, "s2": None, "s3": None}

    def predict(self, state: dict, t: int):
        gates = None
        if self.twin is not None:
            mu, var, h = self.twin.decode_step(state["x"], self._z[:, t], state["h"])
            if self.gated and t >= 2:
                gates = self.twin.gates(h[0], self._z[:, t])
        else:
            import torch

            with torch.no_grad():
                mu, var, h = self.module.decode_step(state["x"], self._z[:, t], state["h"])
                if self.gated and t >= 2:
                    gates = [g.double().cpu().numpy()
                             for g in self.module.emission_gates(h.h, self._z[:, t])]
            mu = mu.double().cpu().numpy()
            var = var.double().cpu().numpy()
        R = self._R
        if R > 1:  # moment matching over the latent samples
            M = mu.shape[0] // R
            mu_r, var_r = mu.reshape(M, R, -1), var.reshape(M, R, -1)
            mu = mu_r.mean(1)
            var = (var_r + mu_r**2).mean(1) - mu**2
        own = var
        if gates is not None:
            coef, var = self._gated_terms(gates, t, var, state)
        else:  # a residual of order min(residual_order, t) (the gated model's first frames: 1)
            coef = np.zeros(mu.shape + (3,))
            order = min(self.residual_order, t)
            coef[..., :order] = (1.0,) if order == 1 else (2.0, -1.0)[:order]
            if self.propagate_uncertainty and state["s1"] is not None:
                if self.residual_order == 2 and state["s2"] is not None:
                    var = var + 4.0 * state["s1"] + state["s2"]
                elif self.residual_order >= 1:
                    var = var + state["s1"]
                var = np.minimum(var, MAX_PRIOR_VAR)
        if self._coef is not None:  # the linearisation the smoother holds fixed
            self._coef[0].append(coef)
            self._coef[1].append(np.minimum(own / var, 1.0))
        return mu, var, {**state, "h": h}

    def _gated_terms(self, gates, t: int, var: np.ndarray,
                     state: dict) -> tuple[np.ndarray, np.ndarray]:
        """Gated extrapolation at frame ``t >= 2``: the transition coefficients of ``m_{t-1},
        m_{t-2}, m_{t-3}`` (means over the R rows) and the variance with their propagated
        uncertainty added."""
        g_v, g_a = gates
        if t < 3:
            g_a = np.zeros_like(g_a)
        c1, c2 = 1.0 + g_v + g_a, g_v + 2.0 * g_a
        M = var.shape[0]

        def over_rows(a):  # average over each source's R latent rows
            return a.reshape(M, self._R, -1).mean(1)

        coef = np.stack([over_rows(c1), -over_rows(c2), over_rows(g_a)], axis=-1)
        if self.propagate_uncertainty:
            var = var + over_rows(c1**2) * state["s1"] + over_rows(c2**2) * state["s2"]
            if t >= 3:
                var = var + over_rows(g_a**2) * state["s3"]
            var = np.minimum(var, MAX_PRIOR_VAR)
        return coef, var

    def smooth(self, means, covs, pred_mean, pred_var):
        if not self.do_smooth or covs.ndim != 3 or pred_var.ndim != 3:
            return means, covs
        coef, share = self._coef
        if isinstance(coef, list):  # collected frame by frame (step-by-step pass)
            coef, share = np.stack(coef, 1), np.stack(share, 1)
        return lagged_smoother(means, covs, pred_mean, pred_var, coef, share)

    def observe(self, state, t, m, sigma):
        R = self._R
        x = np.repeat(m, R, axis=0) if R > 1 else m
        if self.twin is None:
            import torch

            x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        s1 = sigma if sigma.ndim == 2 else np.diagonal(sigma, axis1=1, axis2=2)
        return {"x": x, "h": state["h"], "s1": s1, "s2": state["s1"], "s3": state["s2"]}
