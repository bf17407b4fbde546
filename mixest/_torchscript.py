"""TorchScript for the few loops over frames that run many small tensor operations.

A per-frame loop of a VEM step calls some twenty tensor operations per frame on a few rows.
Run from Python, each call costs microseconds of interpreter and dispatch time and releases and
re-takes the interpreter lock, so two threads running such loops serialise on it. The same
function compiled by TorchScript runs its whole loop in C++ with the lock released once.

TorchScript is deprecated in favour of ``torch.compile``, which needs a C++ compiler at run time
and tens of seconds per shape: too slow for a library call. The functions given to
:func:`scripted` are plain Python too, so where TorchScript is missing, or cannot read their
source (a frozen application), they run as they are, with the same operations and results.
A function TorchScript refuses is a bug here: that error is raised.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

import torch

__all__ = ["scripted"]

_compiled: dict[Callable, Callable] = {}
_lock = threading.Lock()  # threads separating in parallel compile each function once


def scripted(fn: Callable) -> Callable:
    """``fn`` compiled by TorchScript (once per process), or ``fn`` itself where TorchScript
    is unavailable or cannot read ``fn``'s source."""
    out = _compiled.get(fn)
    if out is None:
        with _lock:
            out = _compiled.get(fn)
            if out is None:
                out = _compiled[fn] = _script(fn)
    return out


def _script(fn: Callable) -> Callable:
    script = getattr(torch.jit, "script", None)
    if script is None:
        return fn
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        try:
            return script(fn)
        except OSError:  # no source to read
            return fn
