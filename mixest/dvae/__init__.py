"""Dynamical variational autoencoders in PyTorch: models, training loop and the DVAE estimator."""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
        "DVAE": "._estimator",
        "DVAEModule": "._modules",
        "DVAEState": "._modules",
        "Network": "._config",
        "RECIPES": "._config",
        "SRNN": "._modules",
        "ScheduledSampling": "._config",
        "TrainingNoise": "._config",
        "VRNN": "._modules",
        "build_module": "._modules",
        "gaussian_kl": "._modules",
        "train_dvae": "._training",
        "TrainingHistory": "._training",
        "resolve_device": "._training",
    },
)
