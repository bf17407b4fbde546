"""The variational EM engine for mixtures of dynamical sources.

One loop (:func:`run_vem`) and two injected models: an :class:`ObservationModel` (how the
sources are observed: E-W, evidence, M-step) and a :class:`Dynamics` (how a source evolves:
E-S, E-Z). See ``docs/engine.md``.
"""

from mixest._lazy import attach

__getattr__, __dir__, __all__ = attach(
    __name__,
    {
        # name: module that defines it (add one line per public name)
        "run_vem": "._vem",
        "VEMResult": "._vem",
        "e_step_s": "._vem",
        "ObservationModel": "._observation",
        "Dynamics": "._dynamics",
        "ConstantVelocityDynamics": "._kalman",
        "DVAEDynamics": "._dynamics",
        "gaussian_product": "._dynamics",
        "lagged_smoother": "._dynamics",
    },
)
