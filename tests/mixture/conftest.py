"""Shared oracles of the mixture tests."""

import numpy as np
import pytest


@pytest.fixture
def filterpy_cv():
    """Factory of filterpy constant-velocity Kalman filters (state: D positions, D velocities)."""
    from filterpy.kalman import KalmanFilter

    def make(m0, position_noise, velocity_noise, initial_position_var, initial_velocity_var):
        D = len(m0)
        eye = np.eye(D)
        kf = KalmanFilter(dim_x=2 * D, dim_z=D)
        kf.F = np.block([[eye, eye], [0 * eye, eye]])
        kf.H = np.hstack([eye, 0 * eye])
        kf.Q = np.diag([position_noise] * D + [velocity_noise] * D)
        kf.x = np.concatenate([m0, np.zeros(D)])
        kf.P = np.diag([initial_position_var] * D + [initial_velocity_var] * D)
        return kf

    return make
