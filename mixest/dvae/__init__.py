"""Dynamical variational autoencoders in PyTorch: models, training loop and the DVAE estimator."""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
    },
)
