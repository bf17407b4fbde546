"""Numba kernels for the hot loops, each with a plain-NumPy twin that is its test oracle."""
