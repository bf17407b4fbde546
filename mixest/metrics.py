"""Public metrics and scikit-learn scorers for tracking and separation.

Tracking metrics are computed by :mod:`mixest.tracking` (through py-motmetrics), separation
metrics by :mod:`mixest.separation`; this module gathers them in one place.
"""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # --- tracking (mixest.tracking._metrics) ---
        # --- separation (mixest.separation._metrics) ---
    },
)
