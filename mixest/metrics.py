"""Public metrics and scikit-learn scorers for tracking and separation.

Tracking metrics are computed by :mod:`mixest.tracking` (through py-motmetrics, and TrackEval
for HOTA), separation
metrics by :mod:`mixest.separation`; this module gathers them in one place.
"""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # --- tracking (mixest.tracking._metrics) ---
        "iou_matrix": "mixest.tracking._metrics",
        "mot_metrics": "mixest.tracking._metrics",
        "mota_score": "mixest.tracking._metrics",
        "idf1_score": "mixest.tracking._metrics",
        "motp_score": "mixest.tracking._metrics",
        "mota_scorer": "mixest.tracking._metrics",
        "idf1_scorer": "mixest.tracking._metrics",
        "motp_scorer": "mixest.tracking._metrics",
        "hota_metrics": "mixest.tracking._hota",
        "hota_score": "mixest.tracking._hota",
        # --- separation (mixest.separation._metrics) ---
        "si_sdr": "mixest.separation._metrics",
        "si_sdr_improvement": "mixest.separation._metrics",
        "scale_optimal_rmse": "mixest.separation._metrics",
        "pesq_score": "mixest.separation._metrics",
        "estoi_score": "mixest.separation._metrics",
        "si_sdr_scorer": "mixest.separation._metrics",
        "si_sdri_scorer": "mixest.separation._metrics",
        "pesq_scorer": "mixest.separation._metrics",
        "estoi_scorer": "mixest.separation._metrics",
    },
)
