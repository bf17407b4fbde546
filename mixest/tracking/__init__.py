"""Multi-object tracking: box conventions, MOTChallenge I/O, windows, MOT metrics, trackers.

Importing this package does not import torch; the trackers load it when they are used.
"""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
        "MixDVAETracker": "._tracker",
        "VEMTracker": "._base",
        "GaussianDetections": "._observation",
        "SizeFrame": "._size_frame",
        "box_noise": "._observation",
        "convert_boxes": "._boxes",
        "normalize_boxes": "._boxes",
        "denormalize_boxes": "._boxes",
        "read_mot": "._motchallenge",
        "write_mot": "._motchallenge",
        "read_seqinfo": "._motchallenge",
        "detections_to_array": "._motchallenge",
        "detection_tables_to_array": "._validation",
        "table_to_tracks": "._motchallenge",
        "tracks_to_table": "._motchallenge",
        "make_windows": "._windows",
        "make_detection_windows": "._windows",
        "simulate_detections": "._detections",
        "iou_matrix": "._metrics",
        "mot_metrics": "._metrics",
        "plot_tracks": "._plot",
        "mota_score": "._metrics",
        "idf1_score": "._metrics",
        "motp_score": "._metrics",
        "hota_metrics": "._hota",
        "hota_score": "._hota",
        "mota_scorer": "._metrics",
        "idf1_scorer": "._metrics",
        "motp_scorer": "._metrics",
    },
)
