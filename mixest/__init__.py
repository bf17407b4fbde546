"""mixest: multi-source trajectory modelling and separation with dynamical VAEs.

The estimators follow scikit-learn's conventions. Importing :mod:`mixest` is cheap: torch and
the Numba kernels are loaded only when an estimator that needs them is used.
"""

from mixest._lazy import attach

__version__ = "0.1.0.dev0"

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # estimators
        "DVAE": ".dvae",
        "MixDVAETracker": ".tracking",
        "MixDVAESeparator": ".separation",
        # subpackages
        "baselines": ".baselines",
        "datasets": ".datasets",
        "dvae": ".dvae",
        "metrics": ".metrics",
        "mixture": ".mixture",
        "separation": ".separation",
        "tracking": ".tracking",
    },
)
__all__ = [*__all__, "__version__"]
