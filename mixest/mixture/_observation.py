"""The observation side of the VEM engine: the :class:`ObservationModel` interface.

An observation model says how the sources are seen: how observations are assigned to sources
(E-W), what evidence the assigned observations give about each source (in information form,
for the dynamics' E-S step), its part of the lower bound and its M-step. The engine
(:func:`mixest.mixture.run_vem`) handles everything per sequence: it slices the model's data and
parameters along their first axis (the sequences still iterating) and keeps each sequence's
best-bound parameters, so both are plain dictionaries of arrays of leading dimension
``n_sequences``. ``docs/engine.md`` shows a complete small model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from mixest.mixture._dynamics import Dynamics

__all__ = ["ObservationModel"]

Arrays = dict[str, np.ndarray]


class ObservationModel:
    """How the sources are observed: the E-W step, the evidence, the bound's data term, the M-step.

    Subclasses implement every method; shapes use ``B`` sequences, ``T`` frames, ``N`` sources
    and ``D`` values per source and frame (box coordinates, frequency bins, ...). ``data`` and
    ``params`` are the dictionaries returned by :meth:`prepare`; every array in them has
    ``B`` as its first dimension.
    """

    def prepare(self, observations: object, n_sources: int) -> tuple[Arrays, Arrays]:
        """Turn the observations into fixed per-sequence ``data`` and the initial ``params``.

        ``params`` holds what the M-step updates (observation noise, assignment prior, ...);
        the engine keeps the best-bound value of each per sequence.
        """
        raise NotImplementedError

    def initialize(
        self,
        data: Arrays,
        params: Arrays,
        n_sources: int,
        dynamics: Dynamics,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """First posterior moments ``means`` ``(B, T, N, D)`` and ``covs`` (same shape for
        diagonal covariances, ``(B, T, N, D, D)`` for full ones). ``dynamics`` is the fitted
        source model, for initialisations that run it."""
        raise NotImplementedError

    def e_w(self, data: Arrays, params: Arrays, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
        """E-W: the assignment posteriors ``eta`` of shape ``(B, ...)`` in the model's layout."""
        raise NotImplementedError

    def evidence(
        self, data: Arrays, params: Arrays, eta: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Evidence of the assigned observations about each source, in information form.

        Returns
        -------
        info_vec : ndarray of shape (B, T, N, D)
            Real or complex.
        info_prec : ndarray of shape (B, T, N, D) or (B, T, N, D, D)
            Diagonal or full precision; zero where nothing is assigned.
        """
        raise NotImplementedError

    def expected_log_likelihood(
        self, data: Arrays, params: Arrays, means: np.ndarray, covs: np.ndarray, eta: np.ndarray
    ) -> np.ndarray:
        """The data's part of the lower bound, per sequence ``(B,)``:
        :math:`E_q[\\log p(x, w | s)] + H(q(w))`."""
        raise NotImplementedError

    def m_step(
        self, data: Arrays, params: Arrays, means: np.ndarray, covs: np.ndarray, eta: np.ndarray
    ) -> Arrays:
        """New parameters (``params`` itself when the model learns nothing)."""
        raise NotImplementedError
