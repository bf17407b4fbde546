"""mixest.base: input validation and the EM convergence monitor."""

import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from mixest.base import (
    ConvergenceMonitor,
    SequenceEstimator,
    check_int,
    check_no_bool_numbers,
    check_sequences,
)


class TestCheckSequences:
    def test_returns_contiguous_float(self):
        X = np.arange(24).reshape(2, 3, 4)[:, ::-1]
        out = check_sequences(X, ndim=3)
        assert out.dtype == np.float64 and out.flags.c_contiguous
        np.testing.assert_array_equal(out, X)

    def test_nan_allowed_only_when_asked(self):
        X = np.zeros((2, 3, 4))
        X[0, 1] = np.nan
        assert np.isnan(check_sequences(X, ndim=3, allow_nan=True)).sum() == 4
        with pytest.raises(ValueError, match="X contains NaN"):
            check_sequences(X, ndim=3)

    @pytest.mark.parametrize(
        ("X", "kwargs", "error", "match"),
        [
            (np.zeros((2, 3)), {"ndim": 3}, ValueError, r"X must have shape .*2 dimension"),
            (np.zeros((2, 3, 5)), {"ndim": 3, "last_dim": 4}, ValueError, "4 entries"),
            (np.full((2, 3, 4), np.inf), {"ndim": 3, "allow_nan": True}, ValueError, "infinite"),
            (np.zeros((0, 3, 4)), {"ndim": 3}, ValueError, "at least 1"),
            ("abc", {"ndim": 3}, TypeError, "X must be an array"),
            (np.array([["a"]]), {"ndim": 2}, TypeError, "numeric"),
            (np.zeros((2, 2), complex), {"ndim": 2}, TypeError, "real-valued"),
        ],
    )
    def test_rejects_bad_input(self, X, kwargs, error, match):
        with pytest.raises(error, match=match):
            check_sequences(X, **kwargs)

    def test_error_names_the_argument(self):
        with pytest.raises(ValueError, match="^tracks must"):
            check_sequences(np.zeros(3), name="tracks", ndim=4, axis_names="(n, T, N, D)")


class TestConvergenceMonitor:
    def test_tracks_best_iterate_per_problem(self):
        monitor = ConvergenceMonitor(tol=1e-3, max_iter=10)
        assert monitor.report([1.0, 5.0]).tolist() == [True, True]
        assert monitor.report([2.0, 4.0]).tolist() == [True, False]
        assert monitor.report([1.5, 6.0]).tolist() == [False, True]
        np.testing.assert_array_equal(monitor.best_lower_bound, [2.0, 6.0])
        np.testing.assert_array_equal(monitor.best_iter, [1, 2])
        assert monitor.n_iter == 3

    def test_converges_when_every_problem_stalls(self):
        monitor = ConvergenceMonitor(tol=0.1, max_iter=100)
        monitor.report([0.0, 0.0])
        monitor.report([1.0, 0.05])
        assert monitor.converged_mask.tolist() == [False, True]
        assert not monitor.converged
        monitor.report([1.05, 0.06])
        assert monitor.converged

    def test_stops_at_max_iter_and_warns(self):
        monitor = ConvergenceMonitor(tol=1e-6, max_iter=3, name="VEM")
        for value in range(3):
            monitor.report(float(value))
        assert monitor.converged
        with pytest.warns(ConvergenceWarning, match="VEM did not converge for 1 of 1"):
            monitor.warn_if_not_converged()

    def test_no_warning_when_converged(self):
        monitor = ConvergenceMonitor(tol=1.0, max_iter=5)
        monitor.report(1.0)
        monitor.report(1.5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            monitor.warn_if_not_converged()

    def test_rejects_non_finite_bound_and_shape_changes(self):
        monitor = ConvergenceMonitor(tol=1e-3, max_iter=5)
        with pytest.raises(FloatingPointError, match="not finite"):
            monitor.report([np.nan])
        monitor = ConvergenceMonitor(tol=1e-3, max_iter=5)
        monitor.report([1.0, 2.0])
        with pytest.raises(ValueError, match="shape"):
            monitor.report([1.0])

    @pytest.mark.parametrize(("tol", "max_iter"), [(-1.0, 5), (0.1, 0)])
    def test_bad_settings(self, tol, max_iter):
        with pytest.raises(ValueError):
            ConvergenceMonitor(tol=tol, max_iter=max_iter)


class TestCheckInt:
    def test_returns_a_python_int(self):
        value = check_int(np.int64(3), "n")
        assert value == 3 and type(value) is int

    @pytest.mark.parametrize(
        ("value", "error", "match"),
        [
            (2.0, TypeError, "n must be an integer, got float"),
            (True, TypeError, "n must be an integer, got bool"),
            (1, ValueError, "n must be at least 2, got 1"),
        ],
    )
    def test_rejects(self, value, error, match):
        with pytest.raises(error, match=match):
            check_int(value, "n", minimum=2)


class TestNoBoolNumbers:
    """``bool`` is an ``int``: scikit-learn's Interval constraints would take True as 1."""

    @staticmethod
    def _estimators():
        import importlib
        import inspect

        from sklearn.base import BaseEstimator

        found = {}
        for package in ("mixest", "mixest.baselines", "mixest.dvae", "mixest.mixture",
                        "mixest.separation", "mixest.tracking"):
            module = importlib.import_module(package)
            for name in module.__all__:
                obj = getattr(module, name)
                if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
                    if not inspect.isabstract(obj):
                        found[name] = obj
        return list(found.values())

    def test_every_interval_parameter_refuses_bools(self):
        from sklearn.utils._param_validation import Interval, InvalidParameterError, make_constraint

        checked = []
        for cls in self._estimators():
            for name, constraints in cls._parameter_constraints.items():
                if constraints == "no_validation":
                    continue
                made = [make_constraint(c) for c in constraints]
                allows_bool = any(
                    c.is_satisfied_by(True) for c in made if not isinstance(c, Interval)
                )
                if allows_bool or not any(isinstance(c, Interval) for c in made):
                    continue
                est = cls().set_params(**{name: True})
                with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
                    est._validate_params()
                    check_no_bool_numbers(est)  # for estimators outside SequenceEstimator
                checked.append(f"{cls.__name__}.{name}")
        assert "GreedyTracker.n_sources" in checked and "STFTTransformer.hop_length" in checked
        assert "DVAE.n_threads" in checked

    def test_fit_refuses_n_sources_true(self):
        from mixest.baselines import GreedyTracker

        X = np.random.default_rng(0).uniform(size=(1, 3, 2, 4))
        with pytest.raises(TypeError, match="'n_sources' parameter of GreedyTracker must be a"):
            GreedyTracker(n_sources=True).fit(X)
        assert GreedyTracker(n_sources=1).fit(X).predict(X).shape == (1, 3, 1, 4)

    def test_boolean_parameters_still_accept_bools(self):
        from sklearn.utils._param_validation import Interval

        class Est(SequenceEstimator):
            _parameter_constraints: ClassVar[dict] = {
                "verbose": [Interval(Integral, 0, None, closed="left"), "boolean"],
                "rate": [Interval(Real, 0, None, closed="left")],
            }

            def __init__(self, verbose=0, rate=1.0):
                self.verbose = verbose
                self.rate = rate

        Est(verbose=True)._validate_params()
        with pytest.raises(TypeError, match="'rate' parameter of Est must be a number"):
            Est(rate=False)._validate_params()

    def test_check_int_refuses_bools(self):
        with pytest.raises(TypeError, match="n_sources must be an integer, got bool"):
            check_int(True, "n_sources")
