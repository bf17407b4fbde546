"""The base of every VEM tracker: detections in, the shared engine, tracks out.

:class:`VEMTracker` holds what :class:`~mixest.MixDVAETracker`,
:class:`~mixest.baselines.VKFTracker` and :class:`~mixest.baselines.DeepARTracker` share: input
checks, the conversion of pixel boxes to image-normalised ``xyxy`` and back, the observation
model (:class:`~mixest.tracking.GaussianDetections`), batching over sequences and worker
processes, the convergence warning, :meth:`predict`, :meth:`predict_assignments` and
:meth:`score`. A subclass says how it learns its prior (``fit``) and which dynamics it runs
(``_dynamics``).
"""

from __future__ import annotations

import sys
import warnings
from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from mixest.base import SequenceEstimator, warn_not_converged
from mixest.mixture._dynamics import Dynamics
from mixest.mixture._vem import VEMResult, run_vem
from mixest.tracking._boxes import _check_image_size, denormalize_boxes, normalize_boxes
from mixest.tracking._observation import GaussianDetections
from mixest.tracking._validation import check_detections, sequences_without_detections

__all__ = ["VEMTracker"]

# Largest number of sequences per engine call of trackers without a batch_size parameter.
_BATCH_SIZE = 128


class VEMTracker(SequenceEstimator, metaclass=ABCMeta):
    """Shared plumbing of the trackers that run :func:`mixest.mixture.run_vem`.

    Subclasses define ``__init__`` (with at least the parameters of
    ``_common_constraints``), ``fit`` (which sets ``n_features_in_``) and :meth:`_dynamics`.
    """

    _input_kind = "detections"
    _boxes_only = False  # True for models whose dynamics need box sizes
    _common_constraints: dict = {
        "n_sources": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "obs_noise": [Interval(Real, 0, None, closed="neither")],
        "assignment_temperature": [Interval(Real, 0, None, closed="neither")],
        "clutter": [StrOptions({"auto"}), Interval(Real, 0, 1, closed="left")],
        "update_noise": ["boolean"],
        "update_weights": ["boolean"],
        "init": [StrOptions({"auto", "filter", "tracklets", "first-frame", "chunked"})],
        "box_format": [StrOptions({"xywh", "xyxy", "cxcywh"})],
        "image_size": [tuple, list, np.ndarray, None],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------ what subclasses build
    @abstractmethod
    def fit(self, X: object, y: object = None) -> VEMTracker:
        """Learn or load the dynamics; set ``n_features_in_``; never track."""

    @abstractmethod
    def _dynamics(self) -> Dynamics:
        """A fresh source model for one engine call."""

    def _init_dynamics(self) -> Dynamics | None:
        """Dynamics of the online initialisation (None: constant velocity)."""
        return None

    def _batch_size(self) -> int:
        return _BATCH_SIZE

    def _observation_model(self, **overrides) -> GaussianDetections:
        options = {
            "obs_noise": self.obs_noise, "clutter": self.clutter,
            "temperature": self.assignment_temperature, "update_noise": self.update_noise,
            "update_weights": self.update_weights, "init": self.init,
            "init_dynamics": self._init_dynamics(),
        }
        return GaussianDetections(**{**options, **overrides})

    # ------------------------------------------------------------------ units
    def _check_params_common(self) -> None:
        """Checks the constraints cannot express (call from ``fit``); a boolean ``clutter`` is
        refused by ``_validate_params`` already."""
        self._image_size()

    def _image_size(self) -> np.ndarray:
        if self.image_size is None:
            return np.ones(2)
        return _check_image_size(self.image_size, np.float64)[:2]

    def _check_X(self, X: object, name: str = "X") -> np.ndarray:
        X = check_detections(X, box_format=self.box_format, boxes_only=self._boxes_only,
                             name=name)
        if hasattr(self, "n_features_in_") and X.shape[-1] != self.n_features_in_:
            raise ValueError(f"{name} has D = {X.shape[-1]} coordinates, the tracker was fitted "
                             f"with {self.n_features_in_}.")
        return X

    def _to_model(self, X: np.ndarray) -> np.ndarray:
        """Input units and format -> image-normalised ``xyxy`` (other points: divided by the
        image size ``(w, h, w, ...)``)."""
        if X.shape[-1] != 4:
            return X / np.resize(self._image_size(), X.shape[-1])
        return normalize_boxes(X, self._image_size(), self.box_format)

    def _from_model(self, M: np.ndarray) -> np.ndarray:
        if M.shape[-1] != 4:
            return M * np.resize(self._image_size(), M.shape[-1])
        # a box whose corners crossed (possible when unobserved) is returned with ordered corners
        x1, x2 = np.minimum(M[..., 0], M[..., 2]), np.maximum(M[..., 0], M[..., 2])
        y1, y2 = np.minimum(M[..., 1], M[..., 3]), np.maximum(M[..., 1], M[..., 3])
        return denormalize_boxes(np.stack([x1, y1, x2, y2], axis=-1), self._image_size(),
                                 self.box_format)

    # ------------------------------------------------------------------ the engine
    def _vem(self, obs: np.ndarray, seed: int, *, n_sources: int | None = None,
             dynamics: Dynamics | None = None, tol: float | None = None,
             **observation_options) -> VEMResult:
        """One engine call on normalised detections ``obs`` (see :func:`run_vem`)."""
        return run_vem(
            obs, self._observation_model(**observation_options),
            self._dynamics() if dynamics is None else dynamics,
            n_sources=self.n_sources if n_sources is None else n_sources,
            max_iter=self.max_iter, tol=self.tol if tol is None else tol,
            random_state=np.random.default_rng(seed), verbose=int(self.verbose) >= 2,
        )

    def _seeds(self, n: int) -> np.ndarray:
        return check_random_state(self.random_state).randint(2**31 - 1, size=max(n, 1))

    def _run(self, X: object) -> VEMResult:
        """Track every sequence of ``X``: batches of sequences, in parallel with ``n_jobs``.

        Sequences are independent, so they are split into at least ``n_jobs`` batches; results
        do not depend on the split (to rounding) when the E-Z step is deterministic. Sets
        ``n_iter_`` (per sequence), ``lower_bound_`` and ``timings_``, and warns once when some
        sequence did not converge.
        """
        return self._run_model(self._model_input(X))

    def _model_input(self, X: object) -> np.ndarray:
        """Validated detections in the model's units (image-normalised ``xyxy`` boxes)."""
        check_is_fitted(self, "n_features_in_")
        return self._to_model(self._check_X(X))

    def _run_model(self, obs: np.ndarray) -> VEMResult:
        """:meth:`_run` on detections already in the model's units."""
        from joblib import Parallel, delayed, effective_n_jobs

        empty = sequences_without_detections(obs)
        seeds = self._seeds(len(obs))
        # every worker gets a share even when all sequences fit in one batch
        size = min(self._batch_size(), -(-len(obs) // max(effective_n_jobs(self.n_jobs), 1)))
        starts = range(0, len(obs), size)
        jobs = (delayed(_run_batch)(self, obs[s:s + size], int(seeds[s])) for s in starts)
        if self.verbose and len(starts) > 1:  # a bar over the batches, as they finish
            from tqdm.auto import tqdm

            jobs = tqdm(jobs, total=len(starts), desc="tracking", unit="batch")
        results = Parallel(n_jobs=self.n_jobs)(jobs)
        self.n_iter_ = np.concatenate([np.full(len(r.lower_bound), r.n_iter) for r in results])
        result = _concatenate(results)
        result.means[empty] = np.nan  # nothing to track: no invented boxes
        self.lower_bound_ = result.lower_bound
        self.timings_ = result.timings
        if not result.converged.all():  # once per call, over every batch
            warn_not_converged("the VEM", result.converged, result.n_iter, self.tol,
                               what="sequence(s)", stacklevel=3)
        return result

    # ------------------------------------------------------------------ public
    def predict(self, X: object) -> np.ndarray:
        """Track the ``n_sources`` objects of every sequence.

        Parameters
        ----------
        X : array-like of shape (n_sequences, T, K, D) or list of DataFrame
            Detections in ``box_format`` and image units (NaN rows are missing detections), or
            MOTChallenge-style detection tables, one per sequence.

        Returns
        -------
        tracks : ndarray of shape (n_sequences, T, n_sources, D)
            Posterior mean trajectories in the input's units and format.
        """
        return self._from_model(self._run(X).means)

    def predict_assignments(self, X: object) -> np.ndarray:
        """Posterior assignment probabilities ``(n_sequences, T, K, n_sources[+1])``.

        The last column is the clutter class when ``clutter`` is not 0; rows of missing detections
        are zero.
        """
        return self._run(X).eta

    def score(self, X: object, y: object) -> float:
        """MOTA of :meth:`predict` against ground-truth tracks ``y`` (same units and format)."""
        from mixest.tracking._metrics import mota_score

        return mota_score(y, self.predict(X), box_format=self.box_format)


def _concatenate(results: list[VEMResult]) -> VEMResult:
    """Several engine calls' results as one, along the sequences."""
    if len(results) == 1:
        return results[0]
    cat = {key: np.concatenate([getattr(r, key) for r in results])
           for key in ("means", "covs", "eta", "lower_bound", "best_iter", "converged")}
    params = {key: np.concatenate([r.params[key] for r in results]) for key in results[0].params}
    return VEMResult(**cat, params=params, n_iter=max(r.n_iter for r in results),
                     monitor=results[0].monitor,
                     timings={k: sum(r.timings[k] for r in results) for k in results[0].timings})


def _run_batch(tracker: VEMTracker, obs: np.ndarray, seed: int) -> VEMResult:
    """One engine call on a batch (module-level so that joblib can ship it to a worker)."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")  # a prior's ops are tiny: one thread avoids contention
    threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        # the same for BLAS: the VEM's matrix products are (n_sequences * N, <= 64) by (64, 64)
        with threadpool_limits(1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the tracker warns once
            return tracker._vem(obs, seed)
    finally:
        if threads is not None:
            torch.set_num_threads(threads)
