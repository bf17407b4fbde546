"""The variational EM loop for a mixture of dynamical sources, for any observation model.

Observations :math:`x` are explained by ``N`` sources :math:`s_n` with latent variables
:math:`z_n` and assignments :math:`w` of observations to sources. The posterior is approximated
by :math:`q(w) \\prod_n q(z_n | s_n) q(s_n)` and every iteration maximises the lower bound

.. math::

    \\mathcal L = E_q[\\log p(x, w | s)] + H(q(w))
        + \\sum_{tn} E_q[\\log p(s_{tn} | s_{1:t-1,n}, z_n)] + H(q(s))

block by block: E-W (:meth:`ObservationModel.e_w`), E-Z (:meth:`Dynamics.infer_latents`),
E-S (:func:`e_step_s`: the dynamics' recursion fed with :meth:`ObservationModel.evidence`) and
M (:meth:`ObservationModel.m_step`). The bound is the sum of
:meth:`ObservationModel.expected_log_likelihood` and :meth:`Dynamics.expected_log_prior`; for a
DVAE it is conditional on the latents of the current iteration. Nothing here knows what the
observations are (boxes, spectrogram bins): see ``docs/engine.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mixest.base import ConvergenceMonitor
from mixest.mixture._dynamics import Dynamics, full_covariances
from mixest.mixture._observation import ObservationModel

__all__ = ["VEMResult", "run_vem", "e_step_s"]

_STEPS = ("init", "e_w", "e_z", "e_s", "m", "bound")


@dataclass
class VEMResult:
    """Output of :func:`run_vem`: the best-lower-bound iterate of every sequence.

    Attributes
    ----------
    means : ndarray of shape (B, T, N, D)
        Posterior means of the sources (real or complex, as the dynamics give them).
    covs : ndarray of shape (B, T, N, D) or (B, T, N, D, D)
    eta : ndarray of shape (B, ...)
        Assignment posteriors in the observation model's layout.
    params : dict of ndarray
        The observation model's parameters (after its M-steps) at that iterate.
    lower_bound : ndarray of shape (B,) or None
        Best bound per frame and source (None when ``run_vem`` ran with ``bound=False``).
    best_iter : ndarray of shape (B,)
    n_iter : int
    converged : ndarray of bool, shape (B,)
        Whether each sequence met the stopping rule (always True with ``tol=0``, which asks
        for exactly ``max_iter`` iterations).
    monitor : ConvergenceMonitor
        The bound of every sequence at every iteration (``monitor.history``).
    timings : dict
        Seconds spent in each step.
    """

    means: np.ndarray
    covs: np.ndarray
    eta: np.ndarray
    params: dict
    lower_bound: np.ndarray | None
    best_iter: np.ndarray
    n_iter: int
    converged: np.ndarray
    monitor: ConvergenceMonitor
    timings: dict = field(default_factory=dict)

    @property
    def history(self) -> np.ndarray:
        """Bound per iteration and sequence, shape ``(n_iter, B)``."""
        return np.array(self.monitor.history)


def e_step_s(
    dynamics: Dynamics, info_vec: np.ndarray, info_prec: np.ndarray, m_first: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """E-S step: one forward (and backward) pass of the dynamics, batched over sequences and
    sources.

    Parameters
    ----------
    dynamics : Dynamics
    info_vec, info_prec : ndarray
        Evidence (:meth:`ObservationModel.evidence`), shapes ``(B, T, N, D)`` and
        ``(B, T, N, D[, D])``.
    m_first : ndarray of shape (B, N, D)
        Current first-frame means (to seed the dynamics).

    Returns
    -------
    means, covs, pred_mean, pred_var : ndarray
        Posterior moments ``(B, T, N, D[, D])`` and the dynamics' predictions.
    """
    B, T, N, D = info_vec.shape
    M = B * N

    def flat(a):
        return np.moveaxis(a, 2, 1).reshape((M, T) + a.shape[3:])

    def back(a):
        return np.moveaxis(a.reshape((B, N) + a.shape[1:]), 2, 1)

    out = dynamics.forward_pass(flat(info_vec), flat(info_prec), m_first.reshape(M, D))
    if out is None:
        state = dynamics.begin(m_first.reshape(M, D))
        for t in range(T):
            mu, var, state = dynamics.predict(state, t)
            iv = info_vec[:, t].reshape(M, D)
            ip = info_prec[:, t].reshape((M,) + info_prec.shape[3:])
            m_t, s_t, state = dynamics.update(state, t, mu, var, iv, ip)
            if out is None:  # shapes and dtypes are the model's (full covariances, complex)
                out = [np.empty((M, T) + a.shape[1:], dtype=a.dtype) for a in (m_t, s_t, mu, var)]
            for buf, a in zip(out, (m_t, s_t, mu, var), strict=True):
                buf[:, t] = a
    means, covs = dynamics.smooth(*out)
    return back(means), back(covs), back(out[2]), back(out[3])


def _generator(random_state: object) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, (int, np.integer)):
        return np.random.default_rng(random_state)
    raise TypeError("random_state must be None, an int or a numpy Generator, got "
                    f"{type(random_state).__name__}.")


def run_vem(
    observations: object,
    observation_model: ObservationModel,
    dynamics: Dynamics,
    *,
    n_sources: int,
    max_iter: int = 70,
    tol: float = 1e-4,
    random_state: object = None,
    verbose: bool = False,
    keep: str = "best",
    bound: bool = True,
) -> VEMResult:
    """Run the VEM on a batch of sequences and return each sequence's best-bound iterate.

    Parameters
    ----------
    observations : object
        What ``observation_model`` reads (see its :meth:`~ObservationModel.prepare`): e.g.
        detections ``(B, T, K, D)`` for :class:`mixest.tracking.GaussianDetections`.
    observation_model : ObservationModel
    dynamics : Dynamics
        The source model, shared by all sources and run on ``B * n_sources`` sources at once.
    n_sources : int
    max_iter : int, default=70
    tol : float, default=1e-4
        Stopping rule on each sequence's lower bound per frame and source: a sequence whose
        bound improves by less than ``tol`` is frozen while the others iterate on. ``tol=0``
        runs exactly ``max_iter`` iterations on every sequence. A run that stops at
        ``max_iter`` with sequences still improving warns once
        (:class:`~sklearn.exceptions.ConvergenceWarning`).
    random_state : None, int or numpy Generator
        For stochastic E-Z steps and initialisations.
    verbose : bool, default=False
        Print the mean bound at every iteration.
    keep : {"best", "last"}, default="best"
        Return each sequence's best-bound iterate, or its last one (for models whose E-steps
        are approximate enough that the bound peaks before the estimates stop improving: the
        audio separator, ``docs/separation.md``). ``lower_bound`` and ``best_iter`` are then
        those of the last iterate.
    bound : bool, default=True
        Compute the lower bound at every iteration: the stopping rule, ``keep="best"``,
        ``verbose`` and the result's ``lower_bound`` and ``history`` read it. False skips it
        (a tenth of an audio iteration) for runs that read none of these, and so needs
        ``tol=0``, ``keep="last"`` and ``verbose=False``; ``lower_bound`` is then None and
        ``history`` empty.

    Returns
    -------
    VEMResult
    """
    if int(n_sources) < 1:
        raise ValueError(f"n_sources must be at least 1, got {n_sources!r}.")
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}.")
    if not bound and (tol != 0 or keep != "last" or verbose):
        raise ValueError("bound=False needs tol=0, keep='last' and verbose=False (the stopping "
                         f"rule, the best iterate and the printout read the bound), got "
                         f"tol={tol!r}, keep={keep!r}, verbose={verbose!r}.")
    rng = _generator(random_state)
    monitor = ConvergenceMonitor(tol=tol, max_iter=max_iter, verbose=verbose, name="VEM")
    timings = dict.fromkeys(_STEPS, 0.0)
    tic = time.perf_counter()
    data, params = observation_model.prepare(observations, n_sources)
    means, covs = observation_model.initialize(data, params, n_sources, dynamics, rng)
    timings["init"] += time.perf_counter() - tic
    B, T, N, D = means.shape
    dynamics.start_batch(B, N, rng)  # after the initialisation, which may run the dynamics
    scale = 1.0 / (T * N)  # tol is per frame and source
    lb = np.zeros(B)
    last_iter = np.zeros(B, dtype=np.int64)
    active = np.ones(B, dtype=bool)
    eta = best = None
    n_iter = 0
    while True:
        # converged sequences are frozen (their bound is repeated), the rest iterate on
        idx = slice(None) if active.all() else np.flatnonzero(active)
        d = {k: v[idx] for k, v in data.items()}
        p = {k: v[idx] for k, v in params.items()}
        m_sub, c_sub = means[idx], covs[idx]
        t0 = time.perf_counter()
        e = observation_model.e_w(d, p, m_sub, c_sub)
        t1 = time.perf_counter()
        dynamics.select_sequences(np.arange(B)[idx])
        dynamics.infer_latents(np.moveaxis(m_sub, 2, 1).reshape((-1, T) + m_sub.shape[3:]), rng,
                               covs=np.moveaxis(c_sub, 2, 1).reshape((-1, T) + c_sub.shape[3:]))
        t2 = time.perf_counter()
        m_first = m_sub[:, 0]
        if keep == "last" and isinstance(idx, slice):
            # every sequence iterates and only the newest iterate is returned: nothing reads
            # the previous one again, so it is freed before the E-S step (the audio VEM's
            # largest arrays) instead of being overwritten after it
            m_first = m_first.copy()  # a view would keep the freed iterate alive
            means = covs = eta = m_sub = c_sub = m_new = c_new = pred_mean = pred_var = None
        info_vec, info_prec = observation_model.evidence(d, p, e)
        m_new, c_new, pred_mean, pred_var = e_step_s(dynamics, info_vec, info_prec, m_first)
        del info_vec, info_prec
        t3 = time.perf_counter()
        new_params = observation_model.m_step(d, p, m_new, c_new, e)
        t4 = time.perf_counter()
        if means is None:  # freed above: the new iterate is the whole state (written into
            # later once some sequences are frozen, hence writable)
            means, covs, eta = (a if a.flags.writeable else a.copy() for a in (m_new, c_new, e))
        else:
            if c_new.ndim != covs.ndim:  # dynamics with full covariances
                covs = full_covariances(covs, means.ndim)
            if m_new.dtype != means.dtype:  # complex sources
                means = means.astype(np.result_type(means, m_new))
            if eta is None:
                eta = np.zeros((B,) + e.shape[1:], dtype=e.dtype)
            means[idx], covs[idx], eta[idx] = m_new, c_new, e
        n_iter += 1
        if bound:
            m_new, c_new = means[idx], covs[idx]  # the stored iterate, which the bound reads
            lb[idx] = scale * (observation_model.expected_log_likelihood(d, p, m_new, c_new, e)
                               + dynamics.expected_log_prior(m_new, c_new, pred_mean, pred_var))
            improved = monitor.report(lb)
        if keep == "last":  # the arrays themselves hold the newest iterate: keep its params
            last_iter[idx] = n_iter - 1
            if best is None:
                best = {k: v.copy() for k, v in params.items()}
            for key, val in params.items():  # before this iteration's M-step changes them
                best[key][idx] = val[idx]
        else:
            current = {"means": means, "covs": covs, "eta": eta, **params}
            if best is None:
                best = {k: v.copy() for k, v in current.items()}
            else:
                for key, val in current.items():
                    best[key][improved] = val[improved]
        for key, val in new_params.items():  # the M-step's parameters serve the next iteration
            if val is not p[key]:
                params[key][idx] = val
        timings["bound"] += time.perf_counter() - t4
        for key, dt in (("e_w", t1 - t0), ("e_z", t2 - t1), ("e_s", t3 - t2), ("m", t4 - t3)):
            timings[key] += dt
        if n_iter >= max_iter:
            break
        if tol > 0:  # with tol = 0 every sequence runs max_iter iterations (benchmarks)
            if monitor.converged:
                break
            active &= ~monitor.converged_mask
    converged = np.ones(B, dtype=bool) if tol == 0 else monitor.converged_mask
    if not converged.all():
        monitor.warn_if_not_converged()
    if keep == "last":
        best.update(means=means, covs=covs, eta=eta)
        lower_bound, best_iter = (lb if bound else None), last_iter
    else:
        lower_bound, best_iter = monitor.best_lower_bound, monitor.best_iter
    return VEMResult(
        means=best.pop("means"), covs=best.pop("covs"), eta=best.pop("eta"), params=best,
        lower_bound=lower_bound, best_iter=best_iter,
        n_iter=n_iter, converged=converged, monitor=monitor, timings=timings,
    )
