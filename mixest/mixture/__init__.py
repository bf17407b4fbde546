"""The variational EM engine for mixtures of dynamical sources (E-W, E-S, E-Z, M steps)."""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
    },
)
