"""Baseline estimators (installed as :mod:`mixest.baselines`)."""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
        "GreedyTracker": "._greedy",
        "SORTTracker": "._sort",
        "VKFTracker": "._vkf",
        "DeepARTracker": "._deep_ar",
        "NMFSeparator": "._nmf",
        "TemporalNMFSeparator": "._nmf",
        "VKFSeparator": "._vkf_separator",
        "DeepARSeparator": "._deep_ar_separator",
    },
)
