"""Multi-object tracking: box conventions, MOTChallenge I/O, windows, MOT metrics, trackers.

Importing this package does not import torch; the trackers load it when they are used.
"""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
    },
)
