"""Shared estimator conventions: input validation and the EM convergence monitor.

Every mixest estimator follows scikit-learn's contract: ``__init__`` only stores its keyword
arguments, ``fit`` validates them against ``_parameter_constraints`` and returns ``self``, fitted
state ends in ``_``, and ``random_state`` makes runs reproducible. Sequence estimators (trackers,
separators, DVAEs) take arrays of more than two dimensions, so scikit-learn's own input checks do
not apply; :func:`check_sequences` is their shared replacement.
"""

from __future__ import annotations

import numbers
import warnings
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning

__all__ = [
    "ConvergenceMonitor",
    "SequenceEstimator",
    "check_int",
    "check_no_bool_numbers",
    "check_sequences",
    "ConvergenceWarning",
]


def check_int(value: object, name: str, minimum: int = 1) -> int:
    """Validate an integer argument of a function (estimators use ``_parameter_constraints``).

    Parameters
    ----------
    value : object
        The argument; ``bool`` is rejected even though it is an ``int`` subclass.
    name : str
        Argument name used in error messages.
    minimum : int, default=1
        Smallest accepted value.

    Returns
    -------
    value : int

    Raises
    ------
    TypeError
        If ``value`` is not an integer.
    ValueError
        If it is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


def check_sequences(
    X: object,
    *,
    name: str = "X",
    ndim: int | tuple[int, ...],
    allow_nan: bool = False,
    axis_names: str | None = None,
    last_dim: int | None = None,
    min_length: int = 1,
    dtype: type = np.float64,
) -> np.ndarray:
    """Validate an array of sequences and return it as a C-contiguous float array.

    Parameters
    ----------
    X : array-like
        The input to check.
    name : str, default="X"
        Argument name used in error messages.
    ndim : int or tuple of int
        Accepted number(s) of dimensions.
    allow_nan : bool, default=False
        Whether NaN entries are valid (missing detections, absent tracks). Infinite values are
        always rejected.
    axis_names : str, optional
        Human-readable description of the expected shape, e.g. ``"(n_sequences, T, K, D)"``.
    last_dim : int, optional
        Required size of the last axis.
    min_length : int, default=1
        Minimum size of every axis.
    dtype : numpy dtype, default=np.float64
        Output dtype (real floating or complex).

    Returns
    -------
    X : ndarray
        Validated array (a copy only when a conversion was needed).

    Raises
    ------
    TypeError
        If ``X`` is not numeric.
    ValueError
        If its shape is wrong, it contains infinite values, or NaN where they are not allowed.
    """
    ndims = (ndim,) if isinstance(ndim, numbers.Integral) else tuple(ndim)
    shape_text = axis_names or " or ".join(f"{d}-D" for d in ndims)
    if isinstance(X, (str, bytes)) or X is None:
        raise TypeError(f"{name} must be an array of shape {shape_text}, got {type(X).__name__}.")
    arr = np.asarray(X)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise TypeError(
            f"{name} must be a numeric array of shape {shape_text}, got dtype {arr.dtype}."
        )
    if np.iscomplexobj(arr) and not np.issubdtype(dtype, np.complexfloating):
        raise TypeError(f"{name} must be real-valued, got a complex array.")
    if arr.ndim not in ndims:
        raise ValueError(
            f"{name} must have shape {shape_text}, got an array with {arr.ndim} dimension(s) "
            f"and shape {arr.shape}."
        )
    if any(s < min_length for s in arr.shape):
        raise ValueError(f"{name} must have at least {min_length} entry per axis, got {arr.shape}.")
    if last_dim is not None and arr.shape[-1] != last_dim:
        raise ValueError(
            f"{name} must have {last_dim} entries on its last axis {shape_text}, got {arr.shape}."
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if np.isinf(arr).any():
        raise ValueError(f"{name} contains infinite values.")
    if not allow_nan and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN values.")
    return arr


def check_no_bool_numbers(estimator: BaseEstimator) -> None:
    """Refuse ``True``/``False`` for parameters whose constraints only allow numbers.

    ``bool`` is an ``int`` subclass, so scikit-learn's ``Interval(Integral, ...)`` (and
    ``Interval(Real, ...)``) accept ``n_sources=True`` as 1. Call this after
    ``_validate_params()``; :class:`SequenceEstimator` does it for its subclasses. A parameter
    that also lists ``"boolean"`` (or another constraint a bool satisfies) keeps accepting
    booleans.

    Parameters
    ----------
    estimator : BaseEstimator
        An estimator with a ``_parameter_constraints`` dict.

    Raises
    ------
    sklearn.utils._param_validation.InvalidParameterError
        (a ``TypeError`` and a ``ValueError``) naming the first such parameter.
    """
    from sklearn.utils._param_validation import (
        Interval,
        InvalidParameterError,
        make_constraint,
    )

    for name, constraints in getattr(estimator, "_parameter_constraints", {}).items():
        value = estimator.get_params(deep=False).get(name)
        if not isinstance(value, bool) or constraints == "no_validation":
            continue
        satisfied = [c for c in map(make_constraint, constraints) if c.is_satisfied_by(value)]
        if satisfied and all(isinstance(c, Interval) for c in satisfied):
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be a number, not a "
                f"bool; got {value!r}."
            )


class SequenceEstimator(BaseEstimator):
    """Base class of mixest's sequence estimators.

    Subclasses declare ``_parameter_constraints`` (scikit-learn's format) and call
    ``self._validate_params()`` at the top of ``fit``; it also refuses booleans for numeric
    parameters (:func:`check_no_bool_numbers`), which scikit-learn accepts as 0 and 1. Two
    class attributes drive ``tests/test_common.py``:

    ``_input_kind``
        ``"tabular"`` (2-D, runs scikit-learn's own ``parametrize_with_checks``),
        ``"sequences"`` ``(n_sequences, T, D)``, ``"detections"`` ``(n_sequences, T, K, D)``
        or ``"waveforms"`` ``(n_mixtures, n_samples)``.
    ``_test_params``
        Small, fast keyword arguments for the common checks (a few epochs, a few iterations).
    ``_deterministic``
        ``True`` for estimators without random draws; all others take ``random_state``.
    """

    _input_kind: ClassVar[str] = "sequences"
    _test_params: ClassVar[dict] = {}
    _deterministic: ClassVar[bool] = False

    def _validate_params(self) -> None:
        """scikit-learn's parameter validation, plus :func:`check_no_bool_numbers`."""
        super()._validate_params()
        check_no_bool_numbers(self)


class ConvergenceMonitor:
    """Track the lower bound of an EM-style loop over a batch of independent problems.

    Each of ``n_problems`` problems (sequences, mixtures) has its own lower bound; a problem has
    converged once its bound improves by less than ``tol`` between two iterations. The monitor
    also remembers, per problem, the iteration with the highest bound so that callers can return
    the best iterate rather than the last one (the E-Z step can be stochastic, so the bound need
    not increase monotonically).

    Parameters
    ----------
    tol : float
        Convergence threshold on the per-iteration improvement of each lower bound.
    max_iter : int
        Maximum number of iterations.
    verbose : bool, default=False
        Print the mean lower bound at every iteration.
    name : str, default="EM"
        Name used in messages and in the :class:`~sklearn.exceptions.ConvergenceWarning`.

    Attributes
    ----------
    history : list of ndarray of shape (n_problems,)
        Lower bound of every problem at every reported iteration.
    best_lower_bound : ndarray of shape (n_problems,)
        Highest lower bound seen for each problem.
    best_iter : ndarray of shape (n_problems,)
        Iteration (0-based) at which it was reached.
    """

    def __init__(self, tol: float, max_iter: int, verbose: bool = False, name: str = "EM"):
        if not tol >= 0:
            raise ValueError(f"tol must be non-negative, got {tol}.")
        if max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {max_iter}.")
        self.tol = tol
        self.max_iter = max_iter
        self.verbose = verbose
        self.name = name
        self.history: list[np.ndarray] = []
        self.best_lower_bound: np.ndarray | None = None
        self.best_iter: np.ndarray | None = None

    @property
    def n_iter(self) -> int:
        """Number of iterations reported so far."""
        return len(self.history)

    def report(self, lower_bound: float | np.ndarray) -> np.ndarray:
        """Record one iteration's lower bounds.

        Parameters
        ----------
        lower_bound : float or array of shape (n_problems,)

        Returns
        -------
        improved : ndarray of bool, shape (n_problems,)
            Problems whose bound is the best seen so far: the caller should keep this iterate.
        """
        lb = np.atleast_1d(np.asarray(lower_bound, dtype=np.float64)).copy()
        if not np.all(np.isfinite(lb)):
            raise FloatingPointError(
                f"{self.name}: the lower bound is not finite at iteration {self.n_iter} "
                f"({np.count_nonzero(~np.isfinite(lb))} of {lb.size} problems)."
            )
        if self.best_lower_bound is None:
            improved = np.ones(lb.shape, dtype=bool)
            self.best_lower_bound = lb.copy()
            self.best_iter = np.zeros(lb.shape, dtype=np.int64)
        else:
            if lb.shape != self.best_lower_bound.shape:
                raise ValueError(
                    f"lower_bound has shape {lb.shape}, earlier iterations had "
                    f"{self.best_lower_bound.shape}."
                )
            improved = lb > self.best_lower_bound
            self.best_lower_bound[improved] = lb[improved]
            self.best_iter[improved] = self.n_iter
        self.history.append(lb)
        if self.verbose:
            print(f"{self.name} iteration {self.n_iter:4d}: mean lower bound {lb.mean():.6g}")
        return improved

    @property
    def converged_mask(self) -> np.ndarray:
        """Per-problem convergence: improvement below ``tol`` at the last iteration."""
        if len(self.history) < 2:
            return np.zeros(self.history[-1].shape if self.history else 0, dtype=bool)
        return (self.history[-1] - self.history[-2]) < self.tol

    @property
    def converged(self) -> bool:
        """True once every problem has converged or ``max_iter`` iterations were run."""
        return self.n_iter >= self.max_iter or bool(np.all(self.converged_mask))

    def warn_if_not_converged(self) -> None:
        """Emit a :class:`~sklearn.exceptions.ConvergenceWarning` for unconverged problems."""
        if self.n_iter >= 2 and not np.all(self.converged_mask):
            warn_not_converged(self.name, self.converged_mask, self.n_iter, self.tol)


def warn_not_converged(name: str, converged: np.ndarray, n_iter: int, tol: float,
                       what: str = "problem(s)", stacklevel: int = 2) -> None:
    """One :class:`~sklearn.exceptions.ConvergenceWarning` counting the ``what`` of the boolean
    mask ``converged`` that did not converge in ``n_iter`` iterations (``stacklevel`` counts
    from the caller, as for :func:`warnings.warn`)."""
    n_bad = int(np.count_nonzero(~np.asarray(converged)))
    warnings.warn(
        f"{name} did not converge for {n_bad} of {np.size(converged)} {what} in {n_iter} "
        f"iterations (tol={tol}); increase max_iter or tol.",
        ConvergenceWarning,
        stacklevel=stacklevel + 1,
    )
