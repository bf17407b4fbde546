"""Variational EM for a mixture of dynamical sources observed through unlabelled detections.

Model (DESIGN §4): observations :math:`o_{tk}` (masked when missing), sources :math:`s_{tn}`,
assignments :math:`w_{tk} \\in \\{1..N\\}` plus an optional clutter class,

.. math::

    p(o_{tk} | w_{tk}=n, s) = N(o_{tk}; s_{tn}, \\Phi_{tk}), \\quad
    p(o_{tk} | w_{tk}=0) = c, \\quad p(w_{tk}=n) = \\pi_n,

with each source following its own dynamics (a DVAE, a Kalman model, an RNN; see
:mod:`mixest.mixture._dynamics`). The posterior is approximated by
:math:`q(w) \\prod_n q(s_n)`, :math:`q(s_n) = \\prod_t N(m_{tn}, \\Sigma_{tn})`. The lower bound is

.. math::

    \\mathcal L = \\sum_{tk} \\mathbb E_q[\\log p(o_{tk}, w_{tk} | s)] + H(q(w))
        + \\sum_{tn} \\mathbb E_q[\\log N(s_{tn}; \\mu_{tn}, V_{tn})] + H(q(s)),

where :math:`N(\\mu_{tn}, V_{tn})` is the dynamics' prediction at ``t`` (for a DVAE: the decoder fed
with :math:`m_{t-1,n}` and the E-Z latents), so the bound is conditional on the latents of the
current iteration.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from mixest._kernels._assignment import min_cost_matching
from mixest._kernels._bound import lower_bound_diag
from mixest._kernels._estep_w import e_w_numba, e_w_numpy, evidence_diag
from mixest.base import ConvergenceMonitor
from mixest.mixture._dynamics import ConstantVelocityDynamics, SourceDynamics

__all__ = [
    "VEMResult",
    "run_vem",
    "e_step_w",
    "e_step_s",
    "evidence",
    "m_step",
    "lower_bound",
    "initial_means",
    "exclusive_assignments",
]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class VEMResult:
    """Output of :func:`run_vem` (the best-lower-bound iterate of every sequence).

    Attributes
    ----------
    means : ndarray of shape (B, T, N, D)
    covs : ndarray of shape (B, T, N, D) or (B, T, N, D, D)
    eta : ndarray of shape (B, T, K, N[+1])
        Assignment probabilities, clutter last.
    lower_bound : ndarray of shape (B,)
    best_iter : ndarray of shape (B,)
    n_iter : int
    history : ndarray of shape (n_iter, B)
    phi : ndarray
        Observation covariances after the M-step.
    log_prior : ndarray of shape (B, N[+1])
    timings : dict
        Seconds spent in each step.
    """

    means: np.ndarray
    covs: np.ndarray
    eta: np.ndarray
    lower_bound: np.ndarray
    best_iter: np.ndarray
    n_iter: int
    history: np.ndarray
    phi: np.ndarray
    log_prior: np.ndarray
    timings: dict = field(default_factory=dict)


def e_step_w(obs, valid, phi, means, covs, log_prior, log_clutter=0.0, temperature=1.0,
             backend="numba"):
    """E-W step: assignment posteriors ``(B, T, K, N[+1])``; see :mod:`mixest._kernels._estep_w`."""
    fn = e_w_numba if backend == "numba" else e_w_numpy
    return fn(obs, valid, phi, means, covs, log_prior, log_clutter, temperature)


def exclusive_assignments(eta: np.ndarray, n_sources: int, n_iter: int = 10) -> np.ndarray:
    """Make soft assignments (nearly) one-to-one within each frame.

    Alternately caps each source's total responsibility in a frame at 1 and renormalises each
    detection's row (Sinkhorn-style balancing; a clutter column is left uncapped). The model's
    E-W lets one source claim two detections of the same frame, which pulls its box between
    two objects; this option encodes "one detection per object and frame" as a constraint on
    :math:`q(w)`. Any :math:`q(w)` keeps :math:`\\mathcal L` a lower bound, so the best-bound
    iterate is still well defined, but the bound need no longer increase monotonically.

    Parameters
    ----------
    eta : ndarray of shape (B, T, K, N[+1])
    n_sources : int
    n_iter : int, default=10

    Returns
    -------
    eta : ndarray of the same shape
    """
    eta = eta.copy()
    valid = eta.sum(-1, keepdims=True) > 0
    for _ in range(n_iter):
        col = eta[..., :n_sources].sum(2, keepdims=True)
        eta[..., :n_sources] /= np.maximum(col, 1.0)
        row = eta.sum(-1, keepdims=True)
        eta = np.where(valid, eta / np.where(row > 0, row, 1.0), 0.0)
    return eta


def evidence(obs, valid, phi, eta_sources):
    """Information-form evidence of the observations for each source.

    Returns ``info_vec`` :math:`\\xi_{tn} = \\sum_k \\eta_{tkn} \\Phi_{tk}^{-1} o_{tk}` of shape
    ``(B, T, N, D)`` and ``info_prec`` :math:`\\Lambda_{tn} = \\sum_k \\eta_{tkn}\\Phi_{tk}^{-1}`,
    ``(B, T, N, D)`` for diagonal ``phi`` or ``(B, T, N, D, D)`` for full ``phi`` (Cholesky solves).
    """
    o = np.where(valid[..., None], obs, 0.0)
    if phi.ndim == 4:
        p = np.where(valid[..., None], phi, 1.0)
        prec = 1.0 / p
        return (np.einsum("btkn,btkd->btnd", eta_sources, o * prec),
                np.einsum("btkn,btkd->btnd", eta_sources, prec))
    D = obs.shape[-1]
    p = np.where(valid[..., None, None], phi, np.eye(D))
    chol = np.linalg.cholesky(p)
    eye = np.broadcast_to(np.eye(D), p.shape)
    prec = np.linalg.solve(np.swapaxes(chol, -1, -2), np.linalg.solve(chol, eye))
    po = np.einsum("btkij,btkj->btki", prec, o)
    return (np.einsum("btkn,btkd->btnd", eta_sources, po),
            np.einsum("btkn,btkij->btnij", eta_sources, prec))


def e_step_s(dynamics: SourceDynamics, info_vec, info_prec, m_first):
    """E-S step: one forward pass of the dynamics, batched over sequences and sources.

    Parameters
    ----------
    dynamics : SourceDynamics
    info_vec, info_prec : ndarray
        Evidence from :func:`evidence`, shapes ``(B, T, N, D)`` and ``(B, T, N, D[, D])``.
    m_first : ndarray of shape (B, N, D)
        Current first-frame means (to seed the dynamics).

    Returns
    -------
    means, covs, pred_mean, pred_var : ndarray
        Posterior moments ``(B, T, N, D[, D])`` and the dynamics' predictions.
    """
    B, T, N, D = info_vec.shape
    M = B * N

    def back(a):
        return np.moveaxis(a.reshape((B, N) + a.shape[1:]), 2, 1)

    fast = getattr(dynamics, "forward_pass", None)
    if fast is not None:  # optional: a model may run its whole forward pass in one call
        flat = [np.moveaxis(a, 2, 1).reshape((M, T) + a.shape[3:]) for a in (info_vec, info_prec)]
        out = fast(*flat, m_first.reshape(M, D))
        if out is not None:
            means, covs = dynamics.smooth(*out)
            return back(means), back(covs), back(out[2]), back(out[3])
    state = dynamics.begin(m_first.reshape(M, D))
    full_info = info_prec.ndim == 5
    means = np.empty((M, T, D))
    covs = pred_m = pred_v = None
    for t in range(T):
        mu, var, state = dynamics.predict(state, t)
        iv = info_vec[:, t].reshape(M, D)
        ip = info_prec[:, t].reshape((M, D, D) if full_info else (M, D))
        m_t, s_t, state = dynamics.update(state, t, mu, var, iv, ip)
        if covs is None:
            covs = np.empty((M, T) + s_t.shape[1:])
            pred_m = np.empty((M, T, D))
            pred_v = np.empty((M, T) + var.shape[1:])
        means[:, t], covs[:, t], pred_m[:, t], pred_v[:, t] = m_t, s_t, mu, var
    means, covs = dynamics.smooth(means, covs, pred_m, pred_v)
    return back(means), back(covs), back(pred_m), back(pred_v)


def _as_full(a, D):
    return a if a.ndim == 5 else a[..., :, None] * np.eye(D)


def lower_bound(obs, valid, phi, means, covs, eta, log_prior, log_clutter, pred_mean, pred_var):
    """Per-sequence lower bound ``(B,)`` (see the module docstring)."""
    B, T, K, D = obs.shape
    N = means.shape[2]
    o = np.where(valid[..., None], obs, 0.0)
    diff = o[:, :, :, None, :] - means[:, :, None]
    if phi.ndim == 4 and covs.ndim == 4:
        p = np.where(valid[..., None], phi, 1.0)
        logdet = np.log(p).sum(-1)
        expect = ((diff**2 + covs[:, :, None]) / p[:, :, :, None]).sum(-1)
        ent_s = 0.5 * (D * (1.0 + _LOG_2PI) + np.log(covs).sum(-1)).sum((1, 2))
    else:
        p = np.where(valid[..., None, None], _as_full(phi, D), np.eye(D))
        c = _as_full(covs, D)
        chol = np.linalg.cholesky(p)
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
        second = diff[..., :, None] * diff[..., None, :] + c[:, :, None]
        pk = np.broadcast_to(p[:, :, :, None], second.shape)
        expect = np.trace(np.linalg.solve(pk, second), axis1=-2, axis2=-1)
        ent_s = 0.5 * (D * (1.0 + _LOG_2PI) + np.linalg.slogdet(c)[1]).sum((1, 2))
    loglik = log_prior[:, None, None, :N] - 0.5 * (D * _LOG_2PI + logdet)[..., None] - 0.5 * expect
    obs_term = (eta[..., :N] * loglik).sum((1, 2, 3))
    if eta.shape[-1] > N:
        obs_term += (eta[..., N] * (log_prior[:, None, None, N] + log_clutter)).sum((1, 2))
    ent_w = -(eta * np.log(np.where(eta > 0, eta, 1.0))).sum((1, 2, 3))
    r = means - pred_mean
    if pred_var.ndim == 4 and covs.ndim == 4:
        prior = -0.5 * (_LOG_2PI + np.log(pred_var) + (r**2 + covs) / pred_var).sum((1, 2, 3))
    else:
        v = _as_full(pred_var, D)
        second = r[..., :, None] * r[..., None, :] + _as_full(covs, D)
        prior = -0.5 * (D * _LOG_2PI + np.linalg.slogdet(v)[1]
                        + np.trace(np.linalg.solve(v, second), axis1=-2, axis2=-1)).sum((1, 2))
    return obs_term + ent_w + prior + ent_s


def m_step(obs, valid, phi_base, means, covs, eta, *, update_phi, update_pi, clutter):
    """M step: scale of the observation noise per coordinate, assignment prior.

    :math:`\\Phi_{tk} = \\operatorname{diag}(\\alpha) \\Phi^0_{tk}` with
    :math:`\\alpha_d = \\sum \\eta_{tkn} ((o_{tkd} - m_{tnd})^2 + \\Sigma_{tnd}) / \\Phi^0_{tkd}
    / \\sum \\eta_{tkn}` per sequence (diagonal ``phi`` only), and
    :math:`\\pi_n \\propto \\sum_{tk} \\eta_{tkn}`.

    Returns
    -------
    phi, log_prior : ndarray or None
        ``None`` where the corresponding update is switched off.
    """
    N = means.shape[2]
    phi = log_prior = None
    if update_phi and phi_base.ndim == 4 and covs.ndim == 4:
        o = np.where(valid[..., None], obs, 0.0)
        p = np.where(valid[..., None], phi_base, 1.0)
        sq = (o[:, :, :, None] - means[:, :, None]) ** 2 + covs[:, :, None]
        num = np.einsum("btkn,btknd->bd", eta[..., :N], sq / p[:, :, :, None])
        den = eta[..., :N].sum((1, 2, 3))[:, None]
        alpha = np.where(den > 0, num / np.maximum(den, 1e-12), 1.0)
        phi = phi_base * np.clip(alpha, 1e-3, 1e3)[:, None, None, :]
    if update_pi:
        counts = eta.sum((1, 2)) + 1e-3  # tiny floor keeps log pi finite
        log_prior = np.log(counts / counts.sum(-1, keepdims=True))
        if not clutter:
            log_prior = log_prior[:, :N]
    return phi, log_prior


def initial_means(obs, valid, n_sources):
    """First-frame initialisation: sources start at the detections of one frame, held still.

    For each sequence the frame used is the first with at least ``n_sources`` detections (or the
    one with the most); sources without a detection start at the mean of that frame's detections.

    Returns
    -------
    m0 : ndarray of shape (B, N, D)
    t0 : ndarray of int, shape (B,)
    """
    B, T, K, D = obs.shape
    counts = valid.sum(-1)  # (B, T)
    enough = counts >= min(n_sources, K)
    t0 = np.where(enough.any(1), enough.argmax(1), counts.argmax(1))
    frame_obs = obs[np.arange(B), t0]  # (B, K, D)
    frame_valid = valid[np.arange(B), t0]
    order = np.argsort(~frame_valid, axis=1, kind="stable")  # valid detections first
    sorted_obs = np.take_along_axis(frame_obs, order[..., None], 1)
    sorted_valid = np.take_along_axis(frame_valid, order, 1)
    fallback = np.nanmean(np.where(frame_valid[..., None], frame_obs, np.nan), axis=1)
    fallback = np.where(np.isnan(fallback), 0.5, fallback)  # a frame with no detection at all
    m0 = np.repeat(fallback[:, None], n_sources, axis=1)
    n_take = min(n_sources, K)
    take = sorted_valid[:, :n_take, None]
    m0[:, :n_take] = np.where(take, sorted_obs[:, :n_take], m0[:, :n_take])
    return m0, t0


def _predictive_match(obs, valid, phi, mean, var, log_prior, log_clutter, temperature):
    """Match one frame's detections one-to-one to the sources under their predictive law.

    Each detection goes to at most one source (or to clutter) and each source takes at most one
    detection, at the least total cost :math:`-\\log \\pi_n - \\log N(o_k; \\mu_n, \\Phi_k + V_n)`
    (:func:`~mixest._kernels._assignment.min_cost_matching`). Used by the online initialisation,
    where the sources' uncertainty is that of a prediction: soft assignments there let two sources
    share the detections of one object and never separate again, and the variational E-W's trace
    penalty would starve an uncertain source of detections.

    Returns
    -------
    eta : ndarray of shape (B, K, N[+1])
        One-hot rows (clutter last), zero for missing or unmatched detections.
    """
    B, K, D = obs.shape
    N = mean.shape[1]
    C = log_prior.shape[1]
    if phi.ndim == 4:
        phi = np.diagonal(phi, axis1=-2, axis2=-1)
    if var.ndim == 4:
        var = np.diagonal(var, axis1=-2, axis2=-1)
    o = np.where(valid[..., None], obs, 0.0)
    p = np.where(valid[..., None], phi, 1.0)[:, :, None] + var[:, None]  # (B, K, N, D)
    r = o[:, :, None] - mean[:, None]
    cost = (-log_prior[:, None, :N]
            + 0.5 * (D * _LOG_2PI + np.log(p).sum(-1))
            + 0.5 / temperature * (r**2 / p).sum(-1))
    if C > N:  # K interchangeable clutter columns, each at the detection's own clutter cost
        clutter_cost = np.broadcast_to(-(log_prior[:, None, N:] + log_clutter), (B, K, K))
        cost = np.concatenate([cost, clutter_cost], -1)
    col = min_cost_matching(cost, valid)
    eta = np.zeros((B, K, C))
    b, k = np.nonzero(col >= 0)
    eta[b, k, np.minimum(col[b, k], C - 1)] = 1.0  # every clutter column is class N
    return eta


def _filter_init(obs, valid, phi, m0, log_prior, log_clutter, temperature, init_dynamics):
    """Online initialisation: one forward pass predicting, matching frame t, updating."""
    B, T, K, D = obs.shape
    N = m0.shape[1]
    dyn = init_dynamics or ConstantVelocityDynamics()
    state = dyn.begin(m0.reshape(B * N, D))
    means = np.empty((B, T, N, D))
    covs = None
    for t in range(T):
        mu, var, state = dyn.predict(state, t)
        sl = slice(t, t + 1)
        eta = _predictive_match(obs[:, t], valid[:, t], phi[:, t], mu.reshape(B, N, D),
                                var.reshape((B, N) + var.shape[1:]), log_prior, log_clutter,
                                temperature)
        iv, ip = evidence(obs[:, sl], valid[:, sl], phi[:, sl], eta[:, None, :, :N])
        m_t, s_t, state = dyn.update(state, t, mu, var, iv[:, 0].reshape(B * N, D),
                                     ip[:, 0].reshape((B * N,) + ip.shape[3:]))
        if covs is None:
            covs = np.empty((B, T, N) + s_t.shape[1:])
        means[:, t] = m_t.reshape(B, N, D)
        covs[:, t] = s_t.reshape((B, N) + s_t.shape[1:])
    return means, covs


def run_vem(
    obs: np.ndarray,
    dynamics: SourceDynamics,
    *,
    n_sources: int,
    phi: np.ndarray,
    max_iter: int = 70,
    tol: float = 1e-4,
    clutter: bool = False,
    clutter_density: float = 1.0,
    clutter_weight: float = 0.05,
    temperature: float = 1.0,
    exclusive: bool = False,
    update_phi: bool = False,
    update_pi: bool = False,
    init: str = "filter",
    init_means: np.ndarray | None = None,
    init_dynamics: SourceDynamics | None = None,
    chunk_size: int = 30,
    n_init_iter: int = 20,
    random_state: np.random.Generator | None = None,
    backend: str = "numba",
    verbose: bool = False,
) -> VEMResult:
    """Run the VEM on a batch of sequences and return each sequence's best-bound iterate.

    Parameters
    ----------
    obs : ndarray of shape (B, T, K, D)
        Observations, NaN rows for missing ones.
    dynamics : SourceDynamics
        Source model (shared by all sources, run on ``B * N`` sources at once).
    n_sources : int
    phi : ndarray of shape (B, T, K, D) or (B, T, K, D, D)
        Observation covariances (diagonal or full).
    max_iter, tol : int, float
        Stopping rule on each sequence's lower bound (per frame and source): a sequence whose
        bound improves by less than ``tol`` is frozen while the others iterate on; ``tol=0``
        runs exactly ``max_iter`` iterations on every sequence.
    clutter : bool
        Add a clutter class of density ``clutter_density`` and prior weight ``clutter_weight``.
    temperature : float
        E-W assignment temperature (1 = the model).
    exclusive : bool
        Balance each frame's assignments towards one detection per source
        (:func:`exclusive_assignments`) in every E-W step.
    update_phi, update_pi : bool
        Run the M-step for the observation noise scale / assignment prior.
    init : {"filter", "first-frame", "chunked"} or None
        ``"first-frame"``: sources start still at one frame's detections;
        ``"filter"``: one online predict/match/update pass of ``init_dynamics`` (a
        constant-velocity Kalman filter by default) from there, each frame's detections matched
        one-to-one to the predicted sources by minimum cost (``-log`` predictive density); a
        soft assignment here lets two sources settle on one object. ``"chunked"``: the paper's
        initialisation, ``n_init_iter`` E-W/E-S passes on chunks of ``chunk_size`` frames, each
        seeded by the end of the previous one. Ignored when ``init_means`` is given.
    init_means : ndarray of shape (B, T, N, D), optional
    random_state : numpy Generator, optional
        For stochastic E-Z.
    backend : {"numba", "numpy"}
        E-W and lower-bound implementation (the NumPy ones are the oracles).
    """
    rng = random_state if random_state is not None else np.random.default_rng(0)
    B, T, K, D = obs.shape
    N = n_sources
    valid = ~np.isnan(obs).any(-1)
    C = N + 1 if clutter else N
    log_prior = np.full((B, C), math.log((1.0 - clutter_weight) / N) if clutter else -math.log(N))
    if clutter:
        log_prior[:, N] = math.log(clutter_weight)
    log_c = math.log(clutter_density)
    phi_base = phi
    timings = dict.fromkeys(("init", "e_w", "e_z", "e_s", "m", "bound"), 0.0)
    tic = time.perf_counter()
    if init_means is not None:
        means = np.array(init_means, dtype=float)
        covs = np.broadcast_to(_init_var(phi, valid), means.shape).copy()
    else:
        m0, _ = initial_means(obs, valid, N)
        if init == "first-frame":
            means = np.repeat(m0[:, None], T, axis=1)
            covs = np.broadcast_to(_init_var(phi, valid), means.shape).copy()
        elif init == "filter":
            means, covs = _filter_init(obs, valid, phi, m0, log_prior, log_c, temperature,
                                       init_dynamics)
        elif init == "chunked":
            means, covs = _chunked_init(obs, valid, phi, m0, dynamics, log_prior, log_c,
                                        temperature, backend, chunk_size, n_init_iter, rng)
        else:
            raise ValueError(f"init must be 'filter', 'first-frame' or 'chunked', got {init!r}.")
    if covs.ndim == 4 and phi.ndim == 5:
        covs = _as_full(covs, D)
    timings["init"] += time.perf_counter() - tic
    start = getattr(dynamics, "start_batch", None)  # optional notices (see _dynamics)
    if start is not None:
        start(B, N, rng)  # after the initialisation, which uses the fitted model
    select = getattr(dynamics, "select_sequences", None)
    monitor = ConvergenceMonitor(tol=tol, max_iter=max_iter, verbose=verbose, name="MixDVAE VEM")
    scale = 1.0 / (T * N)  # tol is per frame and source
    phi = np.array(phi, copy=True)
    eta = np.zeros((B, T, K, C))
    lb = np.zeros(B)
    active = np.ones(B, dtype=bool)
    best = None
    while True:
        # converged sequences are frozen (their bound is repeated), the rest iterate on
        idx = slice(None) if active.all() else np.flatnonzero(active)
        o, v, p, lp = obs[idx], valid[idx], phi[idx], log_prior[idx]
        tic = time.perf_counter()
        e = e_step_w(o, v, p, means[idx], covs[idx], lp, log_c, temperature, backend)
        if exclusive:
            e = exclusive_assignments(e, N)
        t1 = time.perf_counter()
        m_sub = means[idx]
        if select is not None:
            select(np.arange(B)[idx])
        dynamics.infer_latents(m_sub.transpose(0, 2, 1, 3).reshape(-1, T, D), rng)
        t2 = time.perf_counter()
        ev = evidence_diag if p.ndim == 4 and backend == "numba" else evidence
        iv, ip = ev(o, v, p, e[..., :N])
        m_new, c_new, pm, pv = e_step_s(dynamics, iv, ip, m_sub[:, 0])
        t3 = time.perf_counter()
        new_phi, new_lp = m_step(o, v, phi_base[idx], m_new, c_new, e, update_phi=update_phi,
                                 update_pi=update_pi, clutter=clutter)
        t4 = time.perf_counter()
        diag = p.ndim == 4 and c_new.ndim == 4 and pv.ndim == 4
        bound = lower_bound_diag if diag and backend == "numba" else lower_bound
        lb[idx] = bound(o, v, p, m_new, c_new, e, lp, log_c, pm, pv) * scale
        if c_new.ndim != covs.ndim:  # dynamics with full covariances
            covs = _as_full(covs, D)
        means[idx], covs[idx], eta[idx] = m_new, c_new, e
        improved = monitor.report(lb)
        if best is None:
            best = {"means": means.copy(), "covs": covs.copy(), "eta": eta.copy(),
                    "phi": phi.copy(), "log_prior": log_prior.copy()}
        else:
            for key, val in (("means", means), ("covs", covs), ("eta", eta), ("phi", phi),
                             ("log_prior", log_prior)):
                best[key][improved] = val[improved]
        if new_phi is not None:
            phi[idx] = new_phi
        if new_lp is not None:
            log_prior[idx] = new_lp
        t5 = time.perf_counter()
        for key, dt in (("e_w", t1 - tic), ("e_z", t2 - t1), ("e_s", t3 - t2), ("m", t4 - t3),
                        ("bound", t5 - t4)):
            timings[key] += dt
        if monitor.n_iter >= max_iter:
            break
        if tol > 0:  # with tol = 0 every sequence runs max_iter iterations (benchmarks)
            if monitor.converged:
                break
            active &= ~monitor.converged_mask
    return VEMResult(
        means=best["means"], covs=best["covs"], eta=best["eta"],
        lower_bound=monitor.best_lower_bound, best_iter=monitor.best_iter,
        n_iter=monitor.n_iter, history=np.array(monitor.history), phi=best["phi"],
        log_prior=best["log_prior"], timings=timings,
    )


def _init_var(phi, valid):
    """A broad first guess of Sigma: the mean observation noise of each sequence, per source."""
    diag = phi if phi.ndim == 4 else np.diagonal(phi, axis1=-2, axis2=-1)
    w = valid[..., None]
    mean = (np.where(w, diag, 0.0).sum((1, 2)) / np.maximum(w.sum((1, 2)), 1))  # (B, D)
    mean = np.where(mean > 0, mean, 1e-3)
    return mean[:, None, None, :]


def _chunked_init(obs, valid, phi, m0, dynamics, log_prior, log_c, temperature, backend,
                  chunk_size, n_iter, rng):
    """The paper's initialisation: E-W/E-S on successive chunks, each seeded by the last."""
    B, T, K, D = obs.shape
    N = m0.shape[1]
    means = np.empty((B, T, N, D))
    covs = np.empty((B, T, N, D))
    seed = m0
    for start in range(0, T, chunk_size):
        sl = slice(start, min(start + chunk_size, T))
        L = sl.stop - sl.start
        m = np.repeat(seed[:, None], L, axis=1)
        c = np.broadcast_to(_init_var(phi[:, sl], valid[:, sl]), m.shape).copy()
        if phi.ndim == 5:
            c = _as_full(c, D)
        for _ in range(n_iter):
            eta = e_step_w(obs[:, sl], valid[:, sl], phi[:, sl], m, c, log_prior, log_c,
                           temperature, backend)
            dynamics.infer_latents(m.transpose(0, 2, 1, 3).reshape(B * N, L, D), rng)
            iv, ip = evidence(obs[:, sl], valid[:, sl], phi[:, sl], eta[..., :N])
            m, c, _, _ = e_step_s(dynamics, iv, ip, m[:, 0])
        means[:, sl] = m
        if covs.ndim != c.ndim:
            covs = np.empty((B, T, N) + c.shape[3:])
        covs[:, sl] = c
        seed = m[:, -1]
    return means, covs
