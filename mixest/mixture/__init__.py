"""The variational EM engine for mixtures of dynamical sources (E-W, E-S, E-Z, M steps)."""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
        "run_vem": "._vem",
        "VEMResult": "._vem",
        "e_step_w": "._vem",
        "e_step_s": "._vem",
        "evidence": "._vem",
        "m_step": "._vem",
        "lower_bound": "._vem",
        "initial_means": "._vem",
        "exclusive_assignments": "._vem",
        "SourceDynamics": "._dynamics",
        "ConstantVelocityDynamics": "._dynamics",
        "DVAEDynamics": "._dynamics",
        "gaussian_product": "._dynamics",
    },
)
