"""Common checks run on every public estimator of mixest and mixest.baselines.

Estimators are discovered from the packages' ``__all__``, so new ones are picked up
automatically. Estimators whose ``_input_kind`` is ``"tabular"`` run scikit-learn's own
``parametrize_with_checks``; sequence estimators run the mixest checks below with small data of
their kind and the fast settings in their ``_test_params``.
"""

from __future__ import annotations

import importlib
import inspect
import pickle

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
    parametrize_with_checks,
)

PACKAGES = [
    "mixest",
    "mixest.baselines",
    "mixest.datasets",
    "mixest.dvae",
    "mixest.mixture",
    "mixest.separation",
    "mixest.tracking",
]


def _public_estimators() -> list[type]:
    found: dict[str, type] = {}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
                if not inspect.isabstract(obj) and not name.startswith("_"):
                    found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[key] for key in sorted(found)]


ESTIMATORS = _public_estimators()
TABULAR = [cls for cls in ESTIMATORS if getattr(cls, "_input_kind", "tabular") == "tabular"]
SEQUENCE = [cls for cls in ESTIMATORS if cls not in TABULAR]


def _make(cls: type, **extra) -> BaseEstimator:
    params = dict(getattr(cls, "_test_params", {}))
    params.update(extra)
    return cls(**params)


def _seed(cls: type) -> dict:
    """``random_state=0`` for estimators that draw random numbers (the others declare
    ``_deterministic = True``)."""
    return {} if getattr(cls, "_deterministic", False) else {"random_state": 0}


def _data(kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Small inputs of each kind: X, and y when fit needs it."""
    if kind == "sequences":
        from mixest.datasets import make_trajectories

        return make_trajectories(12, 16, random_state=0), None
    if kind == "detections":
        from mixest.datasets import make_tracking_mixture

        # the generator's default convention is the trackers' (xywh pixels, 1920x1080)
        return make_tracking_mixture(3, n_sources=2, n_frames=16, random_state=0)[0], None
    if kind == "signals":
        return np.random.RandomState(0).standard_normal((3, 4096)), None
    if kind == "waveforms":
        rng = np.random.RandomState(0)
        sources = rng.standard_normal((3, 2, 12800))  # 50 STFT frames: one prior sequence
        return sources.sum(axis=1), sources
    raise ValueError(f"unknown _input_kind {kind!r}")


def _fit(est: BaseEstimator, X: np.ndarray, y: np.ndarray | None) -> BaseEstimator:
    return est.fit(X) if y is None else est.fit(X, y)


def _output(est: BaseEstimator, X: np.ndarray) -> np.ndarray:
    method = "predict" if hasattr(est, "predict") else "transform"
    return np.asarray(getattr(est, method)(X))


def test_estimators_are_discovered():
    names = {cls.__name__ for cls in ESTIMATORS}
    assert names, "no public estimator found"


if TABULAR:

    @parametrize_with_checks([_make(cls) for cls in TABULAR])
    def test_sklearn_compatible(estimator, check):
        check(estimator)


def _ids(classes):
    return [cls.__name__ for cls in classes]


@pytest.mark.parametrize("cls", SEQUENCE, ids=_ids(SEQUENCE))
def test_construction_follows_sklearn(cls):
    name = cls.__name__
    est = _make(cls)
    check_no_attributes_set_in_init(name, est)
    check_parameters_default_constructible(name, est)
    check_get_params_invariance(name, est)
    check_set_params(name, est)
    params = est.get_params(deep=False)
    assert clone(est).get_params(deep=False).keys() == params.keys()
    if not getattr(cls, "_deterministic", False):
        assert "random_state" in params, f"{name} must take a random_state"


@pytest.fixture(scope="module")
def fitted():
    """Fit each sequence estimator once, lazily, and cache it with its data."""
    cache: dict[type, tuple] = {}

    def get(cls):
        if cls not in cache:
            X, y = _data(cls._input_kind)
            est = _make(cls, **_seed(cls))
            assert _fit(est, X, y) is est, f"{cls.__name__}.fit must return self"
            cache[cls] = (est, X, y)
        return cache[cls]

    return get


@pytest.mark.parametrize("cls", SEQUENCE, ids=_ids(SEQUENCE))
def test_not_fitted_error(cls):
    X, _ = _data(cls._input_kind)
    method = "predict" if hasattr(cls, "predict") else "transform"
    with pytest.raises(NotFittedError):
        getattr(_make(cls), method)(X)


@pytest.mark.parametrize("cls", SEQUENCE, ids=_ids(SEQUENCE))
def test_fitted_attributes_and_pickle_round_trip(cls, fitted):
    est, X, _ = fitted(cls)
    fitted_attrs = [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]
    assert fitted_attrs, f"{cls.__name__} has no fitted attribute ending in '_'"
    before = _output(est, X)
    assert np.isfinite(before[~np.isnan(before)]).all()
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(_output(restored, X), before, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", SEQUENCE, ids=_ids(SEQUENCE))
def test_same_seed_same_result(cls, fitted):
    est, X, y = fitted(cls)
    other = _fit(_make(cls, **_seed(cls)), X, y)
    np.testing.assert_allclose(_output(other, X), _output(est, X), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", SEQUENCE, ids=_ids(SEQUENCE))
def test_bad_input_is_rejected_clearly(cls, fitted):
    est, X, y = fitted(cls)
    method = "predict" if hasattr(est, "predict") else "transform"
    # One dimension too few.
    with pytest.raises(ValueError, match="X"):
        getattr(est, method)(X[0])
    with pytest.raises(ValueError, match="X"):
        _fit(_make(cls), X[0], y)
    bad = np.array(X, dtype=np.float64, copy=True)
    bad.flat[0] = np.inf
    with pytest.raises(ValueError, match="infinite|inf"):
        getattr(est, method)(bad)
    with pytest.raises(ValueError, match="infinite|inf"):
        _fit(_make(cls), bad, y)
    with pytest.raises(TypeError):
        getattr(est, method)("not an array")
