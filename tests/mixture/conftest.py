"""Shared oracles of the mixture tests."""

import numpy as np
import pytest


@pytest.fixture
def filterpy_cv():
    """Factory of filterpy constant-velocity Kalman filters (state: D positions, D velocities)."""
    from filterpy.kalman import KalmanFilter

    def make(m0, process_noise, initial_position_std, initial_velocity_std):
        """ConstantVelocityDynamics' model for points, noises in units of 0.05 (its nominal point
        size): a white acceleration of intensity q^2, Q = q^2 [[1/3, 1/2], [1/2, 1]] per
        coordinate."""
        D = len(m0)
        unit = 0.05
        process_noise, initial_position_std, initial_velocity_std = (
            unit * process_noise, unit * initial_position_std, unit * initial_velocity_std)
        eye = np.eye(D)
        kf = KalmanFilter(dim_x=2 * D, dim_z=D)
        kf.F = np.block([[eye, eye], [0 * eye, eye]])
        kf.H = np.hstack([eye, 0 * eye])
        kf.Q = process_noise**2 * np.block([[eye / 3, eye / 2], [eye / 2, eye]])
        kf.x = np.concatenate([m0, np.zeros(D)])
        kf.P = np.diag([initial_position_std**2] * D + [initial_velocity_std**2] * D)
        return kf

    return make
