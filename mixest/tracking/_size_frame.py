"""The prior's frame: run box dynamics in each source's own position and zoom.

A prior trained on image-normalised boxes knows how boxes of its training sizes move; a
close-up pedestrian, several times larger and faster, is outside that range. :class:`SizeFrame`
wraps any box :class:`~mixest.mixture.Dynamics` so that it reads every source in a frame where
the source looks like the boxes it was trained on, and maps its predictions back.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from mixest.mixture._dynamics import Dynamics

__all__ = ["SizeFrame"]


class SizeFrame(Dynamics):
    """Box dynamics run in each source's own frame :math:`x' = a x + b`.

    The map takes the source's mean centre to the centre of ``reference_box`` and, when the
    source's median box size :math:`\\sqrt{wh}` is larger than that box's, zooms it out to
    that size (:math:`a = \\min(1, \\text{reference size} / \\text{size})`, at least 0.01).
    The wrapped dynamics reads :math:`x'`; its predictions are mapped back
    (:math:`\\mu = (\\mu' - b) / a`, :math:`V = V' / a^2`) and the evidence mapped in, so the
    wrapped model's forward pass never sees data units (its backward pass, a linearised RTS
    smoother, runs in data units: it commutes with the map). Tracking is then equivariant to a
    zoom out. Smaller
    boxes are not zoomed in (that cost accuracy on the synthetic sequences, whose speeds do not
    depend on the box size).

    The map is fixed at the first E-Z step of each VEM run (after :meth:`start_batch`), so the
    model stays the same across iterations; outside a run (the chunked initialisation) it is
    recomputed at every E-Z step.

    Parameters
    ----------
    dynamics : Dynamics
        Box dynamics (``D = 4``, ``(x1, y1, x2, y2)``), e.g. a DVAE prior.
    reference_box : array-like of shape (4,)
        The box the prior knows best: its mean training box.
    """

    def __init__(self, dynamics: Dynamics, reference_box: Any):
        box = np.asarray(reference_box, dtype=float)
        if box.shape != (4,) or not np.all(np.isfinite(box)) or not np.all(box[2:] > box[:2]):
            raise ValueError("reference_box must be a finite box (x1, y1, x2, y2) with "
                             f"x2 > x1 and y2 > y1, got {reference_box!r}.")
        self.dynamics = dynamics
        self.reference_box = box
        self._n_sources = None  # set by start_batch: a VEM run is under way
        self._rows = None  # rows of the next E-Z in the batch (select_sequences)
        self._batch = None  # (a, b) of every source of the run
        self._frame = None  # (a, b) of the rows of the current E-Z / E-S pair
        self._last = None  # (data-unit means, network-frame means) of the last forward pass

    @property
    def stochastic(self) -> bool:
        return self.dynamics.stochastic

    # ------------------------------------------------------------------ the map
    def _fit_frame(self, means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` of shapes (M, 1) and (M, 4): each source's map into the prior's frame."""
        ref = self.reference_box
        ref_size = np.sqrt((ref[2] - ref[0]) * (ref[3] - ref[1]))
        size = np.median(np.sqrt(np.abs((means[..., 2] - means[..., 0])
                                        * (means[..., 3] - means[..., 1]))), axis=1)
        with np.errstate(divide="ignore"):  # a degenerate box is left at its size
            a = np.clip(ref_size / size, 0.01, 1.0)[:, None]
        centre = 0.5 * (means[..., :2] + means[..., 2:]).mean(1)
        return a, np.tile(0.5 * (ref[:2] + ref[2:]) - a * centre, 2)

    def _ab(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        """``a`` and ``b`` shaped for arrays of ``ndim`` dimensions ((M, D) or (M, T, D))."""
        a, b = self._frame
        return (a[:, None], b[:, None]) if ndim == 3 else (a, b)

    def _in(self, x: np.ndarray) -> np.ndarray:
        if x.ndim == 3:  # whole trajectories: one compiled pass
            a, b = self._frame
            out = np.empty_like(x)
            _to_frame(x, a[:, 0], b, out)
            return out
        a, b = self._ab(x.ndim)
        return a * x + b

    def _out(self, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if mean.ndim == 3 and var.ndim == 3:  # a forward pass's moments: one compiled pass
            a, b = self._frame
            out = np.empty_like(mean), np.empty_like(var)  # their layout (time-major) kept
            _from_frame(mean, var, a[:, 0], b, *out)
            return out
        a, b = self._ab(mean.ndim)
        scale = a**2 if var.ndim == mean.ndim else (a**2)[..., None]
        return (mean - b) / a, var / scale

    def _var_in(self, var: np.ndarray, ndim: int) -> np.ndarray:
        a, _ = self._ab(ndim)
        return var * (a**2 if var.ndim == ndim else (a**2)[..., None])

    def _evidence_in(self, info_vec: np.ndarray, info_prec: np.ndarray):
        """Information-form evidence in the prior's frame (precision / a^2)."""
        if info_vec.ndim == 3 and info_prec.ndim == 3:  # one compiled pass
            a, b = self._frame
            out = np.empty_like(info_vec), np.empty_like(info_prec)
            _evidence_to_frame(info_vec, info_prec, a[:, 0], b, *out)
            return out
        a, b = self._ab(info_vec.ndim)
        if info_prec.ndim == info_vec.ndim:
            return info_vec / a + info_prec * b / a**2, info_prec / a**2
        lam_b = np.einsum("...ij,...j->...i", info_prec, np.broadcast_to(b, info_vec.shape))
        return info_vec / a + lam_b / a**2, info_prec / (a**2)[..., None]

    # ------------------------------------------------------------------ Dynamics
    def start_batch(self, n_sequences: int, n_sources: int, rng: np.random.Generator) -> None:
        self._n_sources, self._rows, self._batch = n_sources, None, None
        self.dynamics.start_batch(n_sequences, n_sources, rng)

    def select_sequences(self, sequences: np.ndarray) -> None:
        if self._n_sources is not None:
            N = self._n_sources
            self._rows = (np.asarray(sequences)[:, None] * N + np.arange(N)).ravel()
        self.dynamics.select_sequences(sequences)

    def infer_latents(self, means: np.ndarray, rng: np.random.Generator,
                      covs: np.ndarray | None = None) -> None:
        rows, self._rows = self._rows, None
        if self._n_sources is None:  # outside a run (the chunked initialisation)
            self._frame = self._fit_frame(means)
        else:
            if self._batch is None:
                self._batch = self._fit_frame(means)
                rows = None  # the first E-Z of a run sees every source
            a, b = self._batch
            self._frame = (a, b) if rows is None else (a[rows], b[rows])
        # the exact network-frame means of the last pass let the prior reuse its LSTM states
        reuse = self._last is not None and np.array_equal(self._last[0], means)
        self.dynamics.infer_latents(self._last[1] if reuse else self._in(means), rng)

    def forward_pass(self, info_vec, info_prec, m_first):
        out = self.dynamics.forward_pass(*self._evidence_in(info_vec, info_prec),
                                         self._in(m_first))
        if out is None:
            return None
        means, covs = self._out(out[0], out[1])
        self._last = (means, out[0])
        return [means, covs, *self._out(out[2], out[3])]

    def begin(self, m0: np.ndarray) -> Any:
        self._last = None
        return self.dynamics.begin(self._in(m0))

    def predict(self, state: Any, t: int) -> tuple[np.ndarray, np.ndarray, Any]:
        mean, var, state = self.dynamics.predict(state, t)
        return (*self._out(mean, var), state)

    def update(self, state, t, mean, var, info_vec, info_prec):
        m, s, state = self.dynamics.update(state, t, self._in(mean), self._var_in(var, 2),
                                           *self._evidence_in(info_vec, info_prec))
        return (*self._out(m, s), state)

    def smooth(self, means, covs, pred_mean, pred_var):
        # In data units: a linearised (RTS) backward pass commutes with a fixed affine map per
        # source (its gains are scale-free), so mapping in and out would only cost time.
        out = self.dynamics.smooth(means, covs, pred_mean, pred_var)
        if out[0] is not means:  # smoothed: the next E-Z reads other means than the pass's
            self._last = None
        return out

    def expected_log_prior(self, means, covs, pred_mean, pred_var):
        return self.dynamics.expected_log_prior(means, covs, pred_mean, pred_var)


# The maps of whole (M, T, D) passes as single loops: NumPy's broadcasting of the (M, 1, 1)
# and (M, 1, 4) maps over them runs inner loops of 4 values, and took ten times as long.
@numba.njit(cache=True, nogil=True)
def _to_frame(x, a, b, out):
    """Trajectories in the prior's frame: ``a x + b``."""
    M, T, D = x.shape
    for m in range(M):
        for t in range(T):
            for d in range(D):
                out[m, t, d] = a[m] * x[m, t, d] + b[m, d]


@numba.njit(cache=True, nogil=True)
def _evidence_to_frame(info_vec, info_prec, a, b, out_vec, out_prec):
    """Information-form evidence in the prior's frame: ``(v / a + p b / a^2, p / a^2)``."""
    M, T, D = info_vec.shape
    for m in range(M):
        a2 = a[m] ** 2
        for t in range(T):
            for d in range(D):  # NumPy's expressions, so the same values to the last bit
                out_prec[m, t, d] = info_prec[m, t, d] / a2
                out_vec[m, t, d] = info_vec[m, t, d] / a[m] + info_prec[m, t, d] * b[m, d] / a2


@numba.njit(cache=True, nogil=True)
def _from_frame(mean, var, a, b, out_mean, out_var):
    """Moments back in data units: ``((mu - b) / a, V / a^2)``."""
    M, T, D = mean.shape
    for m in range(M):
        a2 = a[m] ** 2
        for t in range(T):
            for d in range(D):
                out_mean[m, t, d] = (mean[m, t, d] - b[m, d]) / a[m]
                out_var[m, t, d] = var[m, t, d] / a2
