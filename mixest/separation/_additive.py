"""The additive observation model of the audio separators: every bin holds every source.

MixDVAE's VEM (:mod:`mixest.separation._vem_models`) assigns each bin of the mixture's STFT to
one source. The additive model lets each bin hold all of them,

.. math::

    x_{ft} = \\sum_n s_{nft} + e_{ft}, \\qquad s_{nft} | z_n \\sim N_c(0, v_{\\theta,nft}),
    \\qquad e_{ft} \\sim N_c(0, v_{x,ft}),

with :math:`v_x = \\epsilon |x|^2 +` floor as in the assignment model. Given the prior variances
the sources' joint posterior is Gaussian, and its means are the Wiener filters:

.. math::

    \\mu_n = \\frac{v_n}{\\sum_m v_m + v_x}\\, x, \\qquad
    \\nu_n = v_n \\Big(1 - \\frac{v_n}{\\sum_m v_m + v_x}\\Big).

One iteration of :func:`additive_em`: each prior reads its source's posterior expected power
:math:`|\\mu_n|^2 + \\nu_n`; its encoder gives the latents (posterior means: E-Z) and its
decoder, fed the same powers frame by frame, the variances :math:`v_n` (E-S); then the joint
posterior above. That posterior couples the sources in every bin, so it is not the engine's
per-source E-S (:func:`mixest.mixture.run_vem`) and runs here as its own loop. The start is
the assignment model's: each prior reconstructs the mixture's power ("DVAE-init").
``docs/separation.md`` ("The additive model") compares the two models.
"""

from __future__ import annotations

import numpy as np

from mixest._kernels._spectral import additive_powers
from mixest.separation._vem_models import ComplexGaussianBins, variance_floor

__all__ = ["additive_em", "joint_posterior"]


def joint_posterior(x: np.ndarray, var: np.ndarray,
                    v_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sources' posterior means and variances given their prior variances.

    Parameters
    ----------
    x : ndarray of shape (B, T, F), complex
        The mixtures' STFT bins.
    var : ndarray of shape (B, T, N, F)
        The sources' prior variances :math:`v_n`.
    v_x : ndarray of shape (B, T, F)
        The observation variance.

    Returns
    -------
    means : ndarray of shape (B, T, N, F), complex
    covs : ndarray of shape (B, T, N, F)
    """
    gain = var / (var.sum(axis=2, keepdims=True) + v_x[:, :, None])
    return gain * x[:, :, None], var * (1.0 - gain)


def additive_em(observations: np.ndarray, dynamics, epsilon: float,
                max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """``max_iter`` iterations of the additive model from DVAE-init.

    Parameters
    ----------
    observations : ndarray of shape (B, T, F), complex
        The mixtures' STFT, time-major.
    dynamics : SpectralDVAEDynamics
        One prior per source (:meth:`~SpectralDVAEDynamics.reconstruct` and
        :meth:`~SpectralDVAEDynamics.reconstruct_each`).
    epsilon : float
        Observation variance relative to each bin's power.
    max_iter : int
        Iterations after the initialisation (0: the joint posterior of DVAE-init's variances).

    Returns
    -------
    means : ndarray of shape (B, T, N, F), complex128
    covs : ndarray of shape (B, T, N, F), float64
    """
    # the observation variance and its floor are the assignment model's
    data, _ = ComplexGaussianBins(epsilon).prepare(observations, dynamics.n_sources)
    floor = variance_floor(data)
    var = np.maximum(dynamics.reconstruct(data["power"]), floor)
    for _ in range(max_iter):  # only the posterior's expected powers are read in between
        powers = additive_powers(data["power"], var, data["v_x"])
        var = np.maximum(dynamics.reconstruct_each(powers), floor)
    return joint_posterior(data["x"], var, data["v_x"])
