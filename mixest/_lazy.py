"""Lazy attribute access for package ``__init__`` modules.

``import mixest`` must stay cheap and must not import torch, so public names that live in
torch-backed modules are resolved on first access instead of at import time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def attach(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]], list[str]]:
    """Return ``__getattr__``, ``__dir__`` and ``__all__`` for a package with lazy names.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    names : mapping of str to str
        Public name -> module (relative to ``package`` when it starts with a dot) that defines it.
        A name that maps to its own module path (``"tracking": ".tracking"``) is a submodule.
    """
    names = dict(names)

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name], package)
        value = module if module.__name__.rsplit(".", 1)[-1] == name else getattr(module, name)
        globals_ = importlib.import_module(package).__dict__
        globals_[name] = value  # cache: later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__, sorted(names)
