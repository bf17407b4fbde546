"""Source dynamics plug-ins for the VEM engine.

The engine in :mod:`mixest.mixture._vem` never looks inside a source model. It talks to it through
four verbs, on a flat batch of ``M = n_sequences * n_sources`` independent sources, sequential in
time:

``begin(m0) -> state``
    Start a forward pass; ``m0`` of shape ``(M, D)`` is the current guess of the first position.
``predict(state, t) -> (mean, var, state)``
    The prior of :math:`s_t` given the past, :math:`p(s_t | s_{1:t-1}) \\approx N(\\mu_t, V_t)`;
    ``var`` has shape ``(M, D)`` (diagonal) or ``(M, D, D)``.
``update(state, t, mean, var, info_vec, info_prec) -> (m_t, Sigma_t, state)``
    Combine the prior with the observations assigned to each source, given in information form:
    ``info_prec`` :math:`= \\sum_k \\eta_{tkn} \\Phi_{tk}^{-1}` and ``info_vec``
    :math:`= \\sum_k \\eta_{tkn} \\Phi_{tk}^{-1} o_{tk}` (zero when nothing is assigned, so no
    pseudo-observation is ever inverted). The default is the element-wise Gaussian product

    .. math::

        \\Sigma_t = (\\Lambda_t + V_t^{-1})^{-1}, \\qquad
        m_t = \\Sigma_t (\\xi_t + V_t^{-1} \\mu_t).

    Models with hidden state (a Kalman filter with a velocity) override it so that the update also
    corrects the hidden part.
``smooth(means, covs, pred_mean, pred_var) -> (means, covs)``
    Optional backward pass after the forward one, given the filtered posteriors and the forward
    pass's predictions (identity by default; an RTS smoother fits here).

and one hook for the E-Z step, ``infer_latents(means, rng)`` (no-op for models without latents).
Two optional notices give per-sequence state a batch layout (no-ops by default):
``start_batch(n_sequences, n_sources, rng)`` at the start of a VEM run, and
``select_sequences(sequences)`` before each E-Z of its main loop (the indices of the sequences
still iterating, whose means come next, sequence-major).
``stochastic`` tells the engine whether ``infer_latents`` draws samples (then the lower bound need
not increase monotonically, and the best iterate is kept).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

__all__ = [
    "SourceDynamics",
    "ConstantVelocityDynamics",
    "DVAEDynamics",
    "gaussian_product",
    "linearised_rts",
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


def linearised_rts(
    means: np.ndarray,
    covs: np.ndarray,
    pred_mean: np.ndarray,
    pred_var: np.ndarray,
    residual_order: int,
    propagated: bool,
    coefficients: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Rauch-Tung-Striebel backward pass through a residual decoder's linearised transition.

    A residual decoder predicts :math:`\mu_{t+1} = a\, s_t + (\text{terms free of } s_t)`
    with :math:`a = 1` (``residual_order=1``: :math:`s_t + f`) or :math:`a = 2`
    (``residual_order=2``: :math:`2 s_t - s_{t-1} + f`); the network's output :math:`f` and
    variance :math:`v` are held at their forward-pass values (the LSTM's own dependence on
    :math:`s_t` is ignored). Under that linear-Gaussian transition the smoothed moments are, for
    ``t = T-2 .. 0`` and element-wise (diagonal covariances),

    .. math::

        P_{t+1} = v_{t+1} + a^2 \Sigma_t (+ \Sigma_{t-1}), \quad
        J_t = a \Sigma_t / P_{t+1}, \\
        m^s_t = m_t + J_t (m^s_{t+1} - \mu_{t+1}), \quad
        \Sigma^s_t = \Sigma_t + J_t^2 (\Sigma^s_{t+1} - P_{t+1}).

    With ``residual_order=1`` this is the exact RTS smoother of a random walk with known drift
    :math:`f_{t+1}`; with 2, the :math:`s_{t-1}` path is dropped. ``residual_order=0`` (the
    decoder predicts absolute positions) has :math:`a = 0`: nothing to smooth.

    Parameters
    ----------
    means, covs : ndarray of shape (M, T, D)
        Filtered posterior moments (diagonal covariances).
    pred_mean, pred_var : ndarray of shape (M, T, D)
        The forward pass's predictions :math:`\mu_t` and their variances.
    residual_order : {0, 1, 2}
    propagated : bool
        Whether ``pred_var`` already contains the propagated input uncertainty
        :math:`a^2 \Sigma_{t-1} (+ \Sigma_{t-2})` (``DVAEDynamics(propagate_uncertainty=True)``).
    coefficients : ndarray of shape (M, T, D), optional
        :math:`a` of every frame's prediction (``coefficients[:, t + 1]`` for the step from
        ``t``), e.g. :math:`1 + g_v + g_a` of a gated extrapolation (the forward pass's gates,
        held fixed like :math:`f`); overrides ``residual_order``'s constant.

    Returns
    -------
    means, covs : ndarray of shape (M, T, D)
    """
    if (residual_order == 0 and coefficients is None) or means.shape[1] < 2:
        return means, covs
    sm, sc = means.copy(), covs.copy()
    for t in range(means.shape[1] - 2, -1, -1):
        second = coefficients is None and residual_order == 2 and t >= 1  # order-2 residual
        a = coefficients[:, t + 1] if coefficients is not None else (2.0 if second else 1.0)
        pred_cov = pred_var[:, t + 1]
        if not propagated:
            pred_cov = pred_cov + a * a * covs[:, t] + (covs[:, t - 1] if second else 0.0)
        gain = a * covs[:, t] / pred_cov
        sm[:, t] = means[:, t] + gain * (sm[:, t + 1] - pred_mean[:, t + 1])
        sc[:, t] = covs[:, t] + gain**2 * (sc[:, t + 1] - pred_cov)
    return sm, sc


class SourceDynamics:
    """Interface of a source model usable by the VEM engine (see the module docstring).

    Subclasses implement :meth:`begin` and :meth:`predict`; the rest has working defaults.
    """

    #: whether :meth:`infer_latents` draws random samples
    stochastic: bool = False

    def infer_latents(self, means: np.ndarray, rng: np.random.Generator) -> None:
        """E-Z hook: update the latent posterior from the current means ``(M, T, D)``."""

    def start_batch(self, n_sequences: int, n_sources: int, rng: np.random.Generator) -> None:
        """A VEM run on ``n_sequences`` of ``n_sources`` sources starts (no-op by default)."""

    def select_sequences(self, sequences: np.ndarray) -> None:
        """The next :meth:`infer_latents` sees these sequences of the batch (no-op)."""

    def begin(self, m0: np.ndarray) -> Any:
        """Start a forward pass from the current first positions ``m0`` of shape ``(M, D)``."""
        raise NotImplementedError

    def predict(self, state: Any, t: int) -> tuple[np.ndarray, np.ndarray, Any]:
        """Prior mean and variance of the sources at frame ``t``."""
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
        """Posterior of the sources at frame ``t`` (default: :func:`gaussian_product`)."""
        m, sigma = gaussian_product(mean, var, info_vec, info_prec)
        return m, sigma, self.observe(state, t, m, sigma)

    def observe(self, state: Any, t: int, m: np.ndarray, sigma: np.ndarray) -> Any:
        """Record the posterior at ``t`` in the state (used by the default :meth:`update`)."""
        return state

    def smooth(
        self, means: np.ndarray, covs: np.ndarray, pred_mean: np.ndarray, pred_var: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Optional backward pass over the filtered ``(M, T, D)`` moments (identity by default).

        ``pred_mean`` and ``pred_var`` are the forward pass's predictions (:meth:`predict`).
        """
        return means, covs


class ConstantVelocityDynamics(SourceDynamics):
    """Linear-Gaussian constant-velocity model with a hidden velocity, one Kalman filter per source.

    State per coordinate: position :math:`p` and velocity :math:`v`,
    :math:`p_t = p_{t-1} + v_{t-1} + \\epsilon_p`, :math:`v_t = v_{t-1} + \\epsilon_v`. Coordinates
    are independent, so the filter runs on 2x2 covariances element-wise (equal to the full
    ``2D``-state Kalman filter with block-diagonal matrices). The update corrects the velocity too.

    Parameters
    ----------
    position_noise, velocity_noise : float
        Process noise variances of position and velocity per frame.
    initial_position_var, initial_velocity_var : float
        Variances of the first frame's prior.
    smooth : bool, default=False
        Run the Rauch-Tung-Striebel smoother (element-wise 2x2) after the filter.
    """

    def __init__(
        self,
        position_noise: float = 1e-5,
        velocity_noise: float = 1e-6,
        initial_position_var: float = 1e-2,
        initial_velocity_var: float = 1e-4,
        smooth: bool = False,
    ):
        self.do_smooth = bool(smooth)
        self._filtered: list[dict] = []
        self.position_noise = position_noise
        self.velocity_noise = velocity_noise
        self.initial_position_var = initial_position_var
        self.initial_velocity_var = initial_velocity_var

    def begin(self, m0: np.ndarray) -> dict:
        M, D = m0.shape
        self._filtered = []
        return {
            "p": m0.astype(float).copy(),
            "v": np.zeros((M, D)),
            "Ppp": np.full((M, D), self.initial_position_var),
            "Ppv": np.zeros((M, D)),
            "Pvv": np.full((M, D), self.initial_velocity_var),
        }

    def predict(self, state: dict, t: int) -> tuple[np.ndarray, np.ndarray, dict]:
        if t > 0:  # the first frame's prior is the initial one
            p, v, Ppp, Ppv, Pvv = (state[k] for k in ("p", "v", "Ppp", "Ppv", "Pvv"))
            state = {
                "p": p + v,
                "v": v,
                "Ppp": Ppp + 2.0 * Ppv + Pvv + self.position_noise,
                "Ppv": Ppv + Pvv,
                "Pvv": Pvv + self.velocity_noise,
            }
        return state["p"], state["Ppp"], state

    def update(self, state, t, mean, var, info_vec, info_prec):
        if info_prec.ndim != 2:
            raise ValueError("ConstantVelocityDynamics supports diagonal observation noise only.")
        p, v, Ppp, Ppv, Pvv = (state[k] for k in ("p", "v", "Ppp", "Ppv", "Pvv"))
        # Kalman gain in information form: K = P H^T lam / (1 + lam Ppp); finite when lam = 0
        denom = 1.0 + info_prec * Ppp
        innov = info_vec - info_prec * p  # lam * (y - p)
        new = {
            "p": p + Ppp * innov / denom,
            "v": v + Ppv * innov / denom,
            "Ppp": Ppp / denom,
            "Ppv": Ppv / denom,
            "Pvv": Pvv - Ppv**2 * info_prec / denom,
        }
        if self.do_smooth:
            self._filtered.append(new)
        return new["p"], new["Ppp"], new

    def smooth(self, means, covs, pred_mean, pred_var):
        if not self.do_smooth or len(self._filtered) != means.shape[1]:
            return means, covs
        # RTS with F = [[1, 1], [0, 1]] per coordinate, on the stored filtered 2x2 states
        nxt = self._filtered[-1]
        sm, sc = means.copy(), covs.copy()
        for t in range(len(self._filtered) - 2, -1, -1):
            f = self._filtered[t]
            # predicted covariance P' = F P F^T + Q and cross term C = P F^T
            a = f["Ppp"] + 2.0 * f["Ppv"] + f["Pvv"] + self.position_noise
            b = f["Ppv"] + f["Pvv"]
            d = f["Pvv"] + self.velocity_noise
            c11, c12, c21, c22 = f["Ppp"] + f["Ppv"], f["Ppv"], f["Ppv"] + f["Pvv"], f["Pvv"]
            det = a * d - b * b
            # gain J = C P'^{-1}
            j11, j12 = (c11 * d - c12 * b) / det, (c12 * a - c11 * b) / det
            j21, j22 = (c21 * d - c22 * b) / det, (c22 * a - c21 * b) / det
            dp = nxt["p"] - (f["p"] + f["v"])
            dv = nxt["v"] - f["v"]
            ep, eb, ed = nxt["Ppp"] - a, nxt["Ppv"] - b, nxt["Pvv"] - d
            nxt = {
                "p": f["p"] + j11 * dp + j12 * dv,
                "v": f["v"] + j21 * dp + j22 * dv,
                # P_s = P + J (P_s' - P') J^T
                "Ppp": f["Ppp"] + j11 * j11 * ep + 2.0 * j11 * j12 * eb + j12 * j12 * ed,
                "Ppv": f["Ppv"] + j11 * j21 * ep + (j11 * j22 + j12 * j21) * eb + j12 * j22 * ed,
                "Pvv": f["Pvv"] + j21 * j21 * ep + 2.0 * j21 * j22 * eb + j22 * j22 * ed,
            }
            sm[:, t], sc[:, t] = nxt["p"], nxt["Ppp"]
        return sm, sc


class DVAEDynamics(SourceDynamics):
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
        (:mod:`mixest.mixture._numpy_srnn`: the recurrences batched frame by frame, the whole
        E-S forward pass in one call for diagonal evidence), much faster than torch's per-call
        overhead for tiny priors on CPU; ``"auto"`` uses it when the module is supported and on
        the CPU.
    precision : {"float32", "float64"}, default="float32"
        Precision of the network inside the NumPy twin. float32 is the module's own precision
        and about halves the cost of the tanh-bound recurrences; the trajectories, variances and
        Gaussian products stay in float64. float64 reproduces the module run in float64.
    propagate_uncertainty : bool, default=True
        The decoder is fed the posterior *means* :math:`m_{t-1}, m_{t-2}`; a residual decoder
        (``residual_order`` 1 or 2: :math:`\\mu_t = m_{t-1} + \\dots` or
        :math:`2 m_{t-1} - m_{t-2} + \\dots`) then passes their uncertainty on. This adds the
        first-order (delta-method) term :math:`\\Sigma_{t-1}` or
        :math:`4 \\Sigma_{t-1} + \\Sigma_{t-2}` to :math:`v_\\theta`, so a prior trained on
        noise-free trajectories does not claim more certainty than its noisy inputs allow.
    finetune_steps : int, default=0
        Adam steps of encoder fine-tuning per E-Z step of the main VEM loop, on a per-sequence
        copy of the encoder (:class:`mixest.mixture._finetune.EncoderFineTuner`; SRNN only). The
        copies last one VEM run; the module is never modified. The initialisation's E-Z steps use
        the fitted encoder.
    finetune_lr : float, default=1e-3
        Adam learning rate of the fine-tuning.
    smooth : bool, default=False
        After the forward (filtering) pass, run :func:`linearised_rts` backwards, so that every
        frame's posterior also uses the detections after it. The paper's E-S step is the
        forward pass alone (``False``); with the smoother the E-W and E-Z steps see smoothed
        trajectories.
    reference_box : array-like of shape (4,), optional
        Box priors (``(x1, y1, x2, y2)``, D = 4) only: run the network in a per-source frame,
        :math:`x' = a x + b`, that takes the source's mean centre to the centre of
        ``reference_box`` and, when the source's median box size :math:`\\sqrt{wh}` is larger
        than that box's, zooms it out to that size (:math:`a = \\min(1, \\text{reference
        size} / \\text{size})`, at least 0.01). The network reads :math:`x'`, its predictions
        are mapped back (:math:`\\mu = (\\mu' - b) / a`, :math:`v = v' / a^2`). Pass the
        prior's mean training box: close-up objects, whose boxes are larger and move faster
        than those the prior was trained on, then look like objects it knows, and tracking them
        is equivariant to a zoom. Smaller boxes are not zoomed in (that cost accuracy on the
        synthetic sequences, whose speeds do not depend on the box size). The map is fixed at
        the first E-Z step of each VEM run (after :meth:`start_batch`; recomputed at every call
        before it, as in the chunked initialisation), so the model stays the same across
        iterations. ``None``: the network reads the boxes as they are.
    noise_level : float, optional
        Modules built with ``noise_level_input=True`` only: the noise level the network is told
        its inputs (the posterior means) have, as a fraction of its largest training jitter. A
        copy of the module with this ``noise_level`` buffer is run (the module is never
        modified). None: the module's own buffer (1.0 unless set).
    """

    def __init__(self, module, n_samples: int = 1, sample: bool = False, device: str = "cpu",
                 backend: str = "auto", propagate_uncertainty: bool = True,
                 finetune_steps: int = 0, finetune_lr: float = 1e-3, smooth: bool = False,
                 precision: str = "float32", reference_box: Any = None,
                 noise_level: float | None = None):
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
        self._last = None  # (means, network-frame means, LSTM states) of the last E-S pass
        self.reference_box = None
        if reference_box is not None:
            if int(getattr(module, "x_dim", 4)) != 4:
                raise ValueError("reference_box needs a box prior (x1, y1, x2, y2), D = 4.")
            box = np.asarray(reference_box, dtype=float)
            if box.shape != (4,) or not np.all(np.isfinite(box)) or not np.all(box[2:] > box[:2]):
                raise ValueError("reference_box must be a finite box (x1, y1, x2, y2) with "
                                 f"x2 > x1 and y2 > y1, got {reference_box!r}.")
            self.reference_box = box
        self._n_sources = None  # set by start_batch: a VEM run is under way
        self._rows = None  # rows of the next infer_latents in the batch (select_sequences)
        self._frame_batch = None  # (a, b) of every source of the batch
        self._frame = None  # (a, b) of the rows of the current E-Z / E-S pair
        self.propagate_uncertainty = propagate_uncertainty
        self.residual_order = int(getattr(module, "residual_order",
                                          1 if getattr(module, "residual", False) else 0))
        self.gated = bool(getattr(module, "gated_extrapolation", False))
        self._coef = None  # gated extrapolation: the last forward pass's transition coefficients
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
        self._n_sources = n_sources
        self._rows = self._frame_batch = None
        if self.finetune_steps > 0:
            from mixest.mixture._finetune import EncoderFineTuner

            self._tuner = EncoderFineTuner(self.module, n_sequences, n_sources,
                                           self.finetune_steps, self.finetune_lr, rng)

    def select_sequences(self, sequences: np.ndarray) -> None:
        self._selected = np.asarray(sequences)
        if self._n_sources is not None:
            N = self._n_sources
            self._rows = (self._selected[:, None] * N + np.arange(N)).ravel()

    # ------------------------------------------------------------------ size frame
    def _size_frame(self, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` of shapes (M, 1) and (M, D): each source's map into the prior's frame."""
        ref = self.reference_box
        ref_size = np.sqrt((ref[2] - ref[0]) * (ref[3] - ref[1]))
        size = np.median(np.sqrt(np.abs((means[..., 2] - means[..., 0])
                                        * (means[..., 3] - means[..., 1]))), axis=1)
        with np.errstate(divide="ignore"):  # a degenerate box is left at its size
            a = np.clip(ref_size / size, 0.01, 1.0)[:, None]
        centre = 0.5 * (means[..., :2] + means[..., 2:]).mean(1)
        return a, np.tile(0.5 * (ref[:2] + ref[2:]) - a * centre, 2)

    def _select_frame(self, means: np.ndarray) -> None:
        """Fix the frame of this E-Z step and the E-S pass after it (see ``reference_box``)."""
        rows, self._rows = self._rows, None
        if self.reference_box is None:
            self._frame = None
        elif self._n_sources is None:  # outside a run (the chunked initialisation)
            self._frame = self._size_frame(means)
        else:
            if self._frame_batch is None:
                self._frame_batch = self._size_frame(means)
                rows = None  # the first E-Z of a run sees every source
            a, b = self._frame_batch
            self._frame = (a, b) if rows is None else (a[rows], b[rows])

    def _to_net(self, x: np.ndarray) -> np.ndarray:
        """Data units -> the network's frame; ``x`` is (M, D) or (M, T, D)."""
        if self._frame is None:
            return x
        a, b = self._frame
        return (a * x + b) if x.ndim == 2 else (a[:, None] * x + b[:, None])

    def _from_net(self, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Means and diagonal variances, (M, D) or (M, T, D), back to data units."""
        if self._frame is None:
            return mean, var
        a, b = self._frame
        if mean.ndim == 3:
            a, b = a[:, None], b[:, None]
        return (mean - b) / a, var / a**2

    def infer_latents(self, means: np.ndarray, rng: np.random.Generator) -> None:
        R = self._R
        self._select_frame(means)
        reuse = self._last is not None and np.array_equal(self._last[0], means)
        means = self._last[1] if reuse else self._to_net(means)
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
            # E-S just ran the forward LSTM on these means (in this frame)
            hidden = self._last[2] if reuse else None
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
        if self._frame is not None:  # the evidence in the network's frame
            a = self._frame[0][:, None]
            info_vec = info_vec / a + info_prec * self._frame[1][:, None] / a**2
            info_prec = info_prec / a**2
        # with the smoother, E-Z reads the smoothed means: the LSTM states cannot be reused
        out = self.twin.forward_pass(info_vec, info_prec, self._z, self._R,
                                     self.propagate_uncertainty, return_hidden=not self.do_smooth,
                                     return_coefficients=self.gated)
        hidden = None if self.do_smooth else out[4]
        self._coef = out[-1] if self.gated else None
        means, covs = self._from_net(out[0], out[1])
        pm, pv = self._from_net(out[2], out[3])
        self._last = None if self.do_smooth else (means, out[0], hidden)
        return [means, covs, pm, pv]

    def begin(self, m0: np.ndarray):
        if self._z is None or self._z.shape[0] != m0.shape[0] * self._R:
            raise RuntimeError("call infer_latents before begin (E-Z precedes E-S).")
        MR = self._z.shape[0]
        self._coef = [] if self.gated else None
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
        mu, var = self._from_net(mu, var)
        if gates is not None:
            return mu, self._gated_terms(gates, t, var, state), {**state, "h": h}
        if self.gated:  # the first two frames: a plain first-order residual
            self._coef.append(np.ones_like(mu))
        if self.propagate_uncertainty and state["s1"] is not None:
            if self.residual_order == 2 and state["s2"] is not None:
                var = var + 4.0 * state["s1"] + state["s2"]
            elif self.residual_order >= 1:
                var = var + state["s1"]
        return mu, var, {**state, "h": h}

    def _gated_terms(self, gates, t: int, var: np.ndarray, state: dict) -> np.ndarray:
        """Gated extrapolation at frame ``t >= 2``: record the transition coefficient and add
        the propagated uncertainty of ``m_{t-1}, m_{t-2}, m_{t-3}`` (moments over the R rows).
        """
        g_v, g_a = gates
        if t < 3:
            g_a = np.zeros_like(g_a)
        c1, c2 = 1.0 + g_v + g_a, g_v + 2.0 * g_a
        M = var.shape[0]

        def over_rows(a):  # average over each source's R latent rows
            return a.reshape(M, self._R, -1).mean(1)

        self._coef.append(over_rows(c1))
        if self.propagate_uncertainty:
            var = var + over_rows(c1**2) * state["s1"] + over_rows(c2**2) * state["s2"]
            if t >= 3:
                var = var + over_rows(g_a**2) * state["s3"]
        return var

    def smooth(self, means, covs, pred_mean, pred_var):
        if not self.do_smooth or covs.ndim != 3 or pred_var.ndim != 3:
            return means, covs
        coef = self._coef
        if isinstance(coef, list):  # collected frame by frame (step-by-step pass)
            coef = np.stack(coef, 1)
        return linearised_rts(means, covs, pred_mean, pred_var, self.residual_order,
                              self.propagate_uncertainty, coef)

    def observe(self, state, t, m, sigma):
        R = self._R
        x = self._to_net(m)
        x = np.repeat(x, R, axis=0) if R > 1 else x
        if self.twin is None:
            import torch

            x = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        s1 = sigma if sigma.ndim == 2 else np.diagonal(sigma, axis1=1, axis2=2)
        return {"x": x, "h": state["h"], "s1": s1, "s2": state["s1"], "s3": state["s2"]}
