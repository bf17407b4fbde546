"""Detections as the VEM's observation model: Gaussian around their source, or clutter.

Observations :math:`o_{tk}` (detections, NaN rows when missing), sources :math:`s_{tn}`,
assignments :math:`w_{tk} \\in \\{1..N\\}` plus an optional clutter class:

.. math::

    p(o_{tk} | w_{tk}=n, s) = N(o_{tk}; s_{tn}, \\Phi_{tk}), \\quad
    p(o_{tk} | w_{tk}=0) = c, \\quad p(w_{tk}=n) = \\pi_n,

with :math:`\\Phi_{tk}` proportional to each detection's box size (:func:`box_noise`) and
:math:`c = 1` (uniform over the image-normalised frame). :class:`GaussianDetections` plugs this
into :func:`mixest.mixture.run_vem`: E-W and its bound term are Numba kernels
(:mod:`mixest._kernels`) whose NumPy twins here and there are the test oracles.
"""

from __future__ import annotations

import math

import numpy as np

from mixest._kernels._assignment import min_cost_matching
from mixest._kernels._bound import expected_log_likelihood_diag
from mixest._kernels._estep_w import e_w_numba, evidence_diag
from mixest.mixture._dynamics import Dynamics, full_covariances
from mixest.mixture._kalman import ConstantVelocityDynamics
from mixest.mixture._observation import ObservationModel
from mixest.mixture._vem import e_step_s

__all__ = [
    "GaussianDetections",
    "box_noise",
    "evidence",
    "expected_log_likelihood_numpy",
    "initial_means",
]

_LOG_2PI = math.log(2.0 * math.pi)
# Clutter density: uniform over the image-normalised frame [0, 1]^D.
_LOG_CLUTTER = 0.0
# Bound of the clutter log-odds of the "auto" rule: exp(-1000) is 0 in float64, and finite
# values keep 0 * log-odds terms of the bound finite.
_CERTAIN = 1000.0
# Length and number of E-W/E-S passes of the paper's chunked initialisation.
_CHUNK_SIZE, _CHUNK_ITER = 30, 20
# The "filter" initialisation's two constant-velocity models (process noise, initial velocity
# std, in box sizes per frame); each sequence keeps the pass whose matches were likelier in its
# frames without clutter, the slow one on a tie. Slow: a nearly still pedestrian whose velocity
# is learned slowly, because a real detector's jitter (about 0.1 of the box width) is larger than
# a pedestrian's motion per frame (chosen on the first halves of MOT17-02/05/09); fast: the VKF's
# defaults, for objects that move a box width per frame, which the slow model loses
# (docs/tracking.md, "Initialisation").
_INIT_MODELS = ((0.002, 0.01), (0.02, 0.1))
_INITS = ("auto", "filter", "tracklets", "first-frame", "chunked")


def box_noise(obs: np.ndarray, scale: float) -> np.ndarray:
    """Diagonal observation noise proportional to each detection's size.

    For ``xyxy`` boxes :math:`\\Phi_{tk} = \\operatorname{diag}((r w)^2, (r h)^2, (r w)^2,
    (r h)^2)` with :math:`r` = ``scale`` (sizes floored at 1e-6); for other dimensions an
    isotropic :math:`r^2`. Missing (NaN) rows get 1.
    """
    if obs.shape[-1] == 4:
        w = np.abs(obs[..., 2] - obs[..., 0])
        h = np.abs(obs[..., 3] - obs[..., 1])
        size = np.stack([w, h, w, h], axis=-1)
        phi = (scale * np.maximum(size, 1e-6)) ** 2
    else:
        phi = np.full(obs.shape, scale**2)
    return np.where(np.isnan(phi), 1.0, phi)


def evidence(obs, valid, phi, eta_sources):
    """Information-form evidence of the detections for each source (NumPy; any ``phi``).

    Returns ``info_vec`` :math:`\\xi_{tn} = \\sum_k \\eta_{tkn} \\Phi_{tk}^{-1} o_{tk}` of shape
    ``(B, T, N, D)`` and ``info_prec`` :math:`\\Lambda_{tn} = \\sum_k \\eta_{tkn}\\Phi_{tk}^{-1}`,
    ``(B, T, N, D)`` for diagonal ``phi`` or ``(B, T, N, D, D)`` for full ``phi`` (Cholesky
    solves). The oracle of :func:`mixest._kernels._estep_w.evidence_diag`.
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


def expected_log_likelihood_numpy(obs, valid, phi, means, covs, eta, log_prior, log_clutter):
    """:math:`\\sum_{tk} E_q[\\log p(o_{tk}, w_{tk} | s)] + H(q(w))` per sequence ``(B,)``.

    NumPy, diagonal or full ``phi`` and ``covs``; the oracle of
    :func:`mixest._kernels._bound.expected_log_likelihood_diag`.
    """
    B, T, K, D = obs.shape
    N = means.shape[2]
    o = np.where(valid[..., None], obs, 0.0)
    diff = o[:, :, :, None, :] - means[:, :, None]
    if phi.ndim == 4 and covs.ndim == 4:
        p = np.where(valid[..., None], phi, 1.0)
        logdet = np.log(p).sum(-1)
        expect = ((diff**2 + covs[:, :, None]) / p[:, :, :, None]).sum(-1)
    else:
        p = np.where(valid[..., None, None], full_covariances(phi, 4), np.eye(D))
        chol = np.linalg.cholesky(p)
        logdet = 2.0 * np.log(np.diagonal(chol, axis1=-2, axis2=-1)).sum(-1)
        second = diff[..., :, None] * diff[..., None, :] + full_covariances(covs, 4)[:, :, None]
        pk = np.broadcast_to(p[:, :, :, None], second.shape)
        expect = np.trace(np.linalg.solve(pk, second), axis1=-2, axis2=-1)
    loglik = log_prior[:, None, None, :N] - 0.5 * (D * _LOG_2PI + logdet)[..., None] - 0.5 * expect
    term = (eta[..., :N] * loglik).sum((1, 2, 3))
    if eta.shape[-1] > N:
        term += (eta[..., N] * (log_prior[:, None, None, N] + log_clutter)).sum((1, 2))
    return term - (eta * np.log(np.where(eta > 0, eta, 1.0))).sum((1, 2, 3))


def initial_means(obs: np.ndarray, valid: np.ndarray, n_sources: int):
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
    n_valid = frame_valid.sum(1)[:, None]
    total = np.where(frame_valid[..., None], frame_obs, 0.0).sum(1)
    # a sequence with no detection at all starts mid-image (the trackers return NaN for it)
    fallback = np.where(n_valid > 0, total / np.maximum(n_valid, 1), 0.5)
    m0 = np.repeat(fallback[:, None], n_sources, axis=1)
    n_take = min(n_sources, K)
    take = sorted_valid[:, :n_take, None]
    m0[:, :n_take] = np.where(take, sorted_obs[:, :n_take], m0[:, :n_take])
    return m0, t0


def _predictive_match(obs, valid, phi, mean, var, log_prior, log_clutter, temperature):
    """Match one frame's detections one-to-one to the sources under their predictive law.

    ``log_clutter`` is the clutter log density, a number or one per detection ``(B, K)``.

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
    cost : ndarray of shape (B,)
        The matching's total cost: the sum of its cells, :math:`-\\log \\pi_n - \\log
        N(o_k; \\mu_n, \\Phi_k + V_n)` per detection given to a source (distance term divided
        by ``temperature``) and the clutter cost per detection given to clutter.
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
        log_c = np.broadcast_to(np.asarray(log_clutter, dtype=float), (B, K))[:, :, None]
        clutter_cost = np.broadcast_to(-(log_prior[:, None, N:] + log_c), (B, K, K))
        cost = np.concatenate([cost, clutter_cost], -1)
    col = min_cost_matching(cost, valid)
    eta = np.zeros((B, K, C))
    b, k = np.nonzero(col >= 0)
    eta[b, k, np.minimum(col[b, k], C - 1)] = 1.0  # every clutter column is class N
    return eta, np.bincount(b, weights=cost[b, k, col[b, k]], minlength=B)


def _auto_clutter_log_odds(valid: np.ndarray, inside: np.ndarray, n_sources: int) -> np.ndarray:
    """Log-odds of clutter per detection under the ``clutter="auto"`` rule, ``(B, T, K)``.

    :math:`\\log(\\pi_t / (1 - \\pi_t))` with :math:`\\pi_t = \\max((K_t - N)^+ / K_t,
    \\bar\\pi)` and :math:`\\bar\\pi = \\sum_t (K_t - N)^+ / \\sum_t K_t` over the sequence
    (0 for a sequence without clutter), clipped to :math:`\\pm 1000` (0 and 1 in float64);
    +1000 for a box entirely outside the image (``valid`` but not ``inside``), which
    :math:`K_t` does not count.
    """
    count = inside.sum(-1, keepdims=True)  # K_t: an outside box is clutter anyway
    extra = np.maximum(count - n_sources, 0)
    # a sequence with clutter can have it in any frame: a frame of at most N boxes may hold
    # another person's box, which without this floor must go to some source
    mean = extra.sum(1, keepdims=True) / np.maximum(count.sum(1, keepdims=True), 1)
    share = np.maximum(extra / np.maximum(count, 1), mean)
    with np.errstate(divide="ignore"):
        log_odds = np.log(share) - np.log1p(-share)
    log_odds = np.broadcast_to(np.clip(log_odds, -_CERTAIN, _CERTAIN), valid.shape).copy()
    log_odds[valid & ~inside] = _CERTAIN
    return log_odds


def _outside_image(obs: np.ndarray) -> np.ndarray:
    """Boxes (normalised ``xyxy``) lying entirely outside ``[0, 1]^2``, ``(B, T, K)``; none
    for other observations."""
    if obs.shape[-1] != 4:
        return np.zeros(obs.shape[:-1], dtype=bool)
    with np.errstate(invalid="ignore"):
        return (obs[..., 2] < 0) | (obs[..., 0] > 1) | (obs[..., 3] < 0) | (obs[..., 1] > 1)


def _noise_diagonal(phi):
    """The detections' per-coordinate noise ``(B, T, K, D)``, from diagonal or full ``phi``."""
    return phi if phi.ndim == 4 else np.diagonal(phi, axis1=-2, axis2=-1)


def _init_var(phi, valid):
    """A broad first guess of Sigma: the mean observation noise of each sequence, per source."""
    diag = _noise_diagonal(phi)
    w = valid[..., None]
    mean = (np.where(w, diag, 0.0).sum((1, 2)) / np.maximum(w.sum((1, 2)), 1))  # (B, D)
    mean = np.where(mean > 0, mean, 1e-3)
    return mean[:, None, None, :]


class GaussianDetections(ObservationModel):
    """Detections Gaussian around their source, or uniform clutter: tracking's observation model.

    Observations for :func:`mixest.mixture.run_vem` are detections ``(B, T, K, D)`` (NaN rows
    for missing ones; image-normalised ``xyxy`` boxes when ``D = 4``), or a pair
    ``(detections, phi)`` with explicit observation covariances ``phi`` of shape
    ``(B, T, K, D)`` (diagonal) or ``(B, T, K, D, D)`` (full).

    Parameters
    ----------
    obs_noise : float, default=0.04
        Observation noise standard deviation as a fraction of the box size (:func:`box_noise`);
        unused when ``phi`` is given.
    clutter : "auto" or float, default="auto"
        The clutter class (uniform density over the image). ``"auto"``: a detection of frame
        ``t`` is clutter with prior probability :math:`(K_t - N)^+ / K_t`, where :math:`K_t`
        is the frame's number of detections (at most one detection per source, so at least
        :math:`K_t - N` of them are clutter), at least the sequence's share of extra
        detections :math:`\\sum_t (K_t - N)^+ / \\sum_t K_t` (a sequence with clutter can
        have it in a frame of at most ``N`` boxes too), and with probability 1 when it is a box
        that lies entirely outside the image (which :math:`K_t` does not count); a sequence in
        which no frame holds more than ``N`` detections has no clutter, so clean detections
        are tracked exactly as without a clutter class. A number in (0, 1): that fixed prior
        probability in every frame. 0: no clutter class.
    temperature : float, default=1.0
        Divides the distance term of the E-W step (1: the model).
    update_noise : bool, default=False
        M-step of the observation noise scale per sequence and coordinate:
        :math:`\\Phi_{tk} = \\operatorname{diag}(\\alpha) \\Phi^0_{tk}` with
        :math:`\\alpha_d = \\sum \\eta_{tkn} ((o_{tkd} - m_{tnd})^2 + \\Sigma_{tnd}) / \\Phi^0_{tkd}
        / \\sum \\eta_{tkn}` (diagonal ``phi`` only).
    update_weights : bool, default=False
        M-step of the assignment prior, :math:`\\pi_n \\propto \\sum_{tk} \\eta_{tkn}`.
    init : {"auto", "filter", "tracklets", "first-frame", "chunked"}, default="auto"
        ``"first-frame"``: sources start still at one frame's detections (:func:`initial_means`);
        ``"tracklets"`` (boxes only): from there along chains of tracklets, boxes of
        consecutive frames linked by overlap (:mod:`mixest.tracking._tracklets`), each source's
        variance that of its box's observation noise; ``"auto"``: ``"tracklets"`` for the
        sequences of boxes in which some frame holds more detections than sources (clutter,
        where a motion model matching one frame at a time follows neighbours), ``"filter"``
        for the others;
        ``"filter"``: an online predict/match/update pass (see ``init_dynamics``) from there,
        each frame's detections matched one-to-one to the predicted sources by minimum cost
        (``-log`` predictive density; a soft assignment here lets two sources settle on one
        object); ``"chunked"``: the paper's, 20 E-W/E-S passes of the VEM's own dynamics on
        chunks of 30 frames, each seeded by the end of the previous one.
    init_dynamics : Dynamics, optional
        Dynamics of the ``"filter"`` initialisation. Default: two passes of
        :class:`~mixest.mixture.ConstantVelocityDynamics` (``smooth=False``), a slow one
        (``process_noise=0.002, initial_velocity_std=0.01``) and a fast one (``0.02, 0.1``);
        each sequence keeps the pass whose matches had the higher predictive likelihood (the
        lower total matching cost) over its frames with at most ``N`` detections, the slow one
        on a tie. Frames with more detections are left out of the choice: there a pass that
        follows a neighbour's box explains it better than clutter does.
    """

    def __init__(
        self,
        obs_noise: float = 0.04,
        clutter: float | str = "auto",
        temperature: float = 1.0,
        update_noise: bool = False,
        update_weights: bool = False,
        init: str = "auto",
        init_dynamics: Dynamics | None = None,
    ):
        if not (np.isfinite(obs_noise) and obs_noise > 0):
            raise ValueError(f"obs_noise must be a finite number > 0, got {obs_noise!r}.")
        if not (isinstance(clutter, str) and clutter == "auto") and (
                isinstance(clutter, (bool, str)) or not 0.0 <= clutter < 1.0):
            raise ValueError(f"clutter must be 'auto' or a probability in [0, 1), got "
                             f"{clutter!r}.")
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}.")
        if init not in _INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, _INITS))}, got "
                             f"{init!r}.")
        self.obs_noise = float(obs_noise)
        self.clutter = clutter if clutter == "auto" else float(clutter)
        self.temperature = float(temperature)
        self.update_noise = bool(update_noise)
        self.update_weights = bool(update_weights)
        self.init = init
        self.init_dynamics = init_dynamics

    # ------------------------------------------------------------------ ObservationModel
    def prepare(self, observations, n_sources):
        if isinstance(observations, tuple):
            obs, phi = (np.asarray(a, dtype=float) for a in observations)
            if phi.shape not in (obs.shape, obs.shape + obs.shape[-1:]):
                raise ValueError(f"phi must have shape {obs.shape} or "
                                 f"{obs.shape + obs.shape[-1:]}, got {phi.shape}.")
        else:
            obs = np.asarray(observations, dtype=float)
            phi = None
        if obs.ndim != 4:
            raise ValueError(f"detections must have shape (B, T, K, D), got {obs.shape}.")
        if phi is None:
            phi = box_noise(obs, self.obs_noise)
        B, N = obs.shape[0], n_sources
        valid = ~np.isnan(obs).any(-1)
        # the boxes that count, for the clutter rule and the initialisation: one lying
        # entirely outside the image is clutter for certain
        inside = valid & ~_outside_image(obs)
        log_clutter = np.full(valid.shape, _LOG_CLUTTER)
        offset = np.zeros(B)
        if self.clutter == "auto":
            # per-detection log-odds of clutter, folded into the clutter score; the bound's
            # share of the sources' prior, sum log(1 - pi_c), is a constant of the sequence
            log_odds = _auto_clutter_log_odds(valid, inside, N)
            log_clutter += log_odds
            offset = -np.where(valid, np.logaddexp(0.0, log_odds), 0.0).sum((1, 2))
            log_prior = np.full((B, N + 1), -math.log(N))
            log_prior[:, N] = 0.0
        elif self.clutter > 0:
            log_prior = np.full((B, N + 1), math.log((1.0 - self.clutter) / N))
            log_prior[:, N] = math.log(self.clutter)
        else:
            log_prior = np.full((B, N), -math.log(N))
        data = {"obs": obs, "valid": valid, "inside": inside, "phi_base": phi,
                "log_clutter": log_clutter, "bound_offset": offset}
        return data, {"phi": phi.copy(), "log_prior": log_prior}

    def initialize(self, data, params, n_sources, dynamics, rng):
        obs, valid, phi = data["obs"], data["valid"], params["phi"]
        T = obs.shape[1]
        m0, t0 = initial_means(obs, valid, n_sources)
        if self.init == "tracklets" and obs.shape[-1] != 4:
            raise ValueError("init='tracklets' links boxes by their overlap: it needs xyxy "
                             f"boxes (D = 4), got D = {obs.shape[-1]}.")
        if self.init == "first-frame":
            means = np.repeat(m0[:, None], T, axis=1)
            covs = np.broadcast_to(_init_var(phi, valid), means.shape).copy()
        elif self.init == "chunked":
            means, covs = self._chunked_init(data, params, m0, dynamics, rng)
        else:
            # "auto": tracklets where some frame holds more boxes than sources (clutter)
            inside = data["inside"]
            linked = np.zeros(len(obs), dtype=bool)
            if obs.shape[-1] == 4 and self.init != "filter":
                linked = (inside.sum(-1) > n_sources).any(1) | (self.init == "tracklets")
            means = np.repeat(m0[:, None], T, axis=1)
            var0 = _init_var(phi, valid)
            covs = np.broadcast_to(var0, means.shape).copy()
            if not linked.all():
                u = ~linked
                m, c = self._filter_init(obs[u], valid[u], phi[u], m0[u],
                                         params["log_prior"][u], data["log_clutter"][u])
                if c.ndim == 5:
                    covs = full_covariances(covs, 4)
                means[u], covs[u] = m, c
            if linked.any():
                from mixest.tracking._tracklets import tracklet_means

                # each source starts as sure as its box's detection: the boxes' observation
                # noise is carried along the chains with them
                # a source without a tracklet is held at its first guess
                start = np.concatenate([m0, np.broadcast_to(var0[:, 0], m0.shape)], -1)
                both = tracklet_means(obs[linked], inside[linked], start[linked], t0[linked],
                                      np.concatenate([obs, _noise_diagonal(phi)], -1)[linked])
                means[linked] = both[..., :4]
                covs[linked] = (both[..., 4:] if covs.ndim == 4
                                else full_covariances(both[..., 4:], 4))
        if covs.ndim == 4 and phi.ndim == 5:
            covs = full_covariances(covs, 4)
        return means, covs

    def e_w(self, data, params, means, covs):
        return e_w_numba(data["obs"], data["valid"], params["phi"], means, covs,
                         params["log_prior"], data["log_clutter"], self.temperature)

    def evidence(self, data, params, eta):
        N = eta.shape[-1] - (self.clutter != 0)
        phi = params["phi"]
        fn = evidence_diag if phi.ndim == 4 else evidence
        return fn(data["obs"], data["valid"], phi, eta[..., :N])

    def expected_log_likelihood(self, data, params, means, covs, eta):
        phi = params["phi"]
        fn = (expected_log_likelihood_diag if phi.ndim == 4 and covs.ndim == 4
              else expected_log_likelihood_numpy)
        return fn(data["obs"], data["valid"], phi, means, covs, eta, params["log_prior"],
                  data["log_clutter"]) + data["bound_offset"]

    def m_step(self, data, params, means, covs, eta):
        new = dict(params)
        N = means.shape[2]
        phi_base = data["phi_base"]
        if self.update_noise and phi_base.ndim == 4 and covs.ndim == 4:
            valid = data["valid"]
            o = np.where(valid[..., None], data["obs"], 0.0)
            p = np.where(valid[..., None], phi_base, 1.0)
            sq = (o[:, :, :, None] - means[:, :, None]) ** 2 + covs[:, :, None]
            num = np.einsum("btkn,btknd->bd", eta[..., :N], sq / p[:, :, :, None])
            den = eta[..., :N].sum((1, 2, 3))[:, None]
            alpha = np.where(den > 0, num / np.maximum(den, 1e-12), 1.0)
            new["phi"] = phi_base * np.clip(alpha, 1e-3, 1e3)[:, None, None, :]
        if self.update_weights:
            # the "auto" rule sets the clutter weight per frame: only the sources' shares learn
            learned = eta[..., :N] if self.clutter == "auto" else eta
            counts = learned.sum((1, 2)) + 1e-3  # tiny floor keeps log pi finite
            new["log_prior"] = params["log_prior"].copy()
            new["log_prior"][:, :counts.shape[1]] = np.log(counts / counts.sum(-1, keepdims=True))
        return new

    # ------------------------------------------------------------------ initialisations
    def _filter_init(self, obs, valid, phi, m0, log_prior, log_clutter):
        """Online initialisation: the ``init_dynamics`` pass, or of the default slow and fast
        passes the likelier one per sequence."""
        if self.init_dynamics is not None:
            return self._filter_pass(self.init_dynamics, obs, valid, phi, m0, log_prior,
                                     log_clutter)[:2]
        passes = [self._filter_pass(ConstantVelocityDynamics(
            process_noise=q, initial_velocity_std=v, smooth=False), obs, valid, phi, m0,
            log_prior, log_clutter) for q, v in _INIT_MODELS]
        best = np.argmin([cost for _, _, cost in passes], axis=0)  # (B,)
        means = np.stack([m for m, _, _ in passes])[best, np.arange(len(best))]
        covs = np.stack([c for _, c, _ in passes])[best, np.arange(len(best))]
        return means, covs

    def _filter_pass(self, dyn, obs, valid, phi, m0, log_prior, log_clutter):
        """One forward pass predicting, matching frame t, updating; also returns each
        sequence's total matching cost ``(B,)`` over its frames with at most ``N``
        detections."""
        B, T, K, D = obs.shape
        N = m0.shape[1]
        state = dyn.begin(m0.reshape(B * N, D))
        means = np.empty((B, T, N, D))
        covs = None
        total = np.zeros(B)
        for t in range(T):
            mu, var, state = dyn.predict(state, t)
            sl = slice(t, t + 1)
            eta, cost = _predictive_match(obs[:, t], valid[:, t], phi[:, t], mu.reshape(B, N, D),
                                          var.reshape((B, N) + var.shape[1:]), log_prior,
                                          log_clutter[:, t], self.temperature)
            total += np.where(valid[:, t].sum(-1) <= N, cost, 0.0)
            iv, ip = evidence(obs[:, sl], valid[:, sl], phi[:, sl], eta[:, None, :, :N])
            m_t, s_t, state = dyn.update(state, t, mu, var, iv[:, 0].reshape(B * N, D),
                                         ip[:, 0].reshape((B * N,) + ip.shape[3:]))
            if covs is None:
                covs = np.empty((B, T, N) + s_t.shape[1:])
            means[:, t] = m_t.reshape(B, N, D)
            covs[:, t] = s_t.reshape((B, N) + s_t.shape[1:])
        return means, covs, total

    def _chunked_init(self, data, params, m0, dynamics, rng):
        """The paper's initialisation: E-W/E-S on successive chunks, each seeded by the last."""
        obs, valid, phi = data["obs"], data["valid"], params["phi"]
        B, T, K, D = obs.shape
        N = m0.shape[1]
        means = np.empty((B, T, N, D))
        covs = None
        seed = m0
        for start in range(0, T, _CHUNK_SIZE):
            sl = slice(start, min(start + _CHUNK_SIZE, T))
            chunk = {"obs": obs[:, sl], "valid": valid[:, sl],
                     "log_clutter": data["log_clutter"][:, sl]}
            chunk_params = {"phi": phi[:, sl], "log_prior": params["log_prior"]}
            m = np.repeat(seed[:, None], sl.stop - sl.start, axis=1)
            c = np.broadcast_to(_init_var(phi[:, sl], valid[:, sl]), m.shape).copy()
            if phi.ndim == 5:
                c = full_covariances(c, 4)
            for _ in range(_CHUNK_ITER):
                eta = self.e_w(chunk, chunk_params, m, c)
                dynamics.infer_latents(np.moveaxis(m, 2, 1).reshape(B * N, -1, D), rng)
                iv, ip = self.evidence(chunk, chunk_params, eta)
                m, c, _, _ = e_step_s(dynamics, iv, ip, m[:, 0])
            means[:, sl] = m
            if covs is None:
                covs = np.empty((B, T, N) + c.shape[3:])
            covs[:, sl] = c
            seed = m[:, -1]
        return means, covs
